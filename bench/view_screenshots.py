"""The screenshots of `datagen view` in docs/, made again: two runs, some reviews, four pages in headless Chromium.

    python -m bench.view_screenshots            # from the repository root; writes docs/view-*.png

In a temporary copy of the workspace, two style_clone runs of data/samples on the fake model of the tests (no
network, no key), every sample scored on chrf: `style-v1` rephrases each passage as its words, lower-cased and
without punctuation; `style-v2` keeps the capitals, and leaves out the last quarter of a third of the passages
(so compare shows gains and losses). Six samples of style-v1 are reviewed (as a reviewer would in the browser,
written to the run store directly): the worst and the two best by chrf good, two bad, and one corrected by hand,
rated and commented. Then `datagen view runs/style-v1 runs/style-v2` runs as the installed command, and headless
Chromium (tests/browser.py: Debian's chromium and chromium-driver) takes, at 1300 x 1000:

- docs/view-run.png: the run page of style-v1 (counts, tokens, chrf's histogram);
- docs/view-samples.png: its samples, worst first by chrf, with the reviews;
- docs/view-sample.png: the corrected sample, its word diff, the review form with the correction open;
- docs/view-compare.png: style-v1 against style-v2 by chrf, largest drop first.
"""

import argparse
import hashlib
import os
import re
import sys
import tempfile
from pathlib import Path

from datagen.dataset import checked_review
from datagen.store import RunStore
from tests.browser import ViewServer, chromium, copy_workspace, missing, scored_run
from tests.fakes import plain

ROOT = Path(__file__).resolve().parent.parent
# A reviewer's generic version of one passage of data/samples (the fake model's lost its punctuation).
PASSAGE = "“Are you mad?” I bawled down to him through the hatch."
GENERIC = ("I shouted down through the hatch, asking whether he was mad, and told him to come in before the wind "
           "blew him over the rail. He only looked up with his wet face and smiled. He said that without a light "
           "they needed a bell, because ships listen as well as look, and told me to mend the lamp while he rang. "
           "He did ring it, tied to the gallery rail by his belt, for most of an hour, while the waves rose at him "
           "and the cold numbed his hands.")


def revised(text: str) -> str:
    """style-v2's rephrase: the passage's words with their capitals, a third of the passages cut by a quarter."""
    words = re.findall(r"[\w’']+", text)
    if int(hashlib.sha256(text.encode()).hexdigest(), 16) % 3 == 0:
        words = words[: len(words) * 3 // 4]
    return " ".join(words)


def review(run: Path) -> tuple[str, int]:
    """Reviews in `run`, as described above; returns the corrected sample (chunk id, index)."""
    with RunStore(run) as store:
        samples = {(chunk.id, i): (chunk, sample) for chunk, found in store.done() for i, sample in enumerate(found)}
        chrf = {key: store.sample_scores(key[0])[key[1]]["chrf"] for key in samples}
        worst = sorted(samples, key=lambda key: (chrf[key], key))
        corrected = next((key for key in worst if samples[key][0].text.startswith(PASSAGE)), worst[1])
        bad = [key for key in worst[1:] if key != corrected][:2]
        for key, verdict in [(worst[0], "good"), (worst[-1], "good"), (worst[-2], "good"),
                             *((key, "bad") for key in bad)]:
            store.set_review(checked_review(*key, verdict=verdict))
        chunk, sample = samples[corrected]
        generic = GENERIC if chunk.text.startswith(PASSAGE) else sample.input.capitalize() + "."
        store.set_review(checked_review(
            *corrected, verdict="good", corrected_input=generic,
            ratings={"content": 4, "genericness": 1, "style_fidelity": 5, "boundaries": 4},
            comment="The rephrase kept every word of the original: rewritten as plain prose.", generated=sample,
            criteria=["content", "genericness", "style_fidelity", "boundaries"]))
    return corrected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="folder for the PNG files (default: docs/)")
    parser.add_argument("--width", type=int, default=1300)
    parser.add_argument("--height", type=int, default=1000)
    args = parser.parse_args()
    reason = missing()
    if reason:
        sys.exit(f"no browser: {reason}")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="datagen-view-") as tmp:
        workspace = copy_workspace(ROOT, Path(tmp) / "ws")
        os.chdir(workspace)  # the runs name their source files as data/samples/..., not by a temporary path
        for name, respond in (("style-v1", plain), ("style-v2", revised)):
            scored_run(workspace, Path("runs") / name, respond, inputs=[Path("data/samples")])
        chunk, index = review(Path("runs/style-v1"))
        driver = chromium(Path(tmp) / "profile", args.width, args.height)
        try:
            with ViewServer("runs/style-v1", "runs/style-v2", cwd=workspace) as server:
                pages = {"view-run.png": "/r/0",
                         "view-samples.png": "/r/0/samples?metric=chrf&order=worst",
                         "view-sample.png": f"/r/0/s/{chunk}/{index}?metric=chrf&order=worst",
                         "view-compare.png": "/compare?a=0&b=1&metric=chrf"}
                for name, path in pages.items():
                    driver.get(server.url + path)
                    driver.save_screenshot(str(out / name))
                    print(out / name)
        finally:
            driver.quit()


if __name__ == "__main__":
    main()
