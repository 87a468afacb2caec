"""`make demo`: the design card's loop, offline, on the demo corpus, one `datagen` command per step.

    python scripts/demo.py            # what `make demo` runs after the install; a few minutes on 2 cores
    python scripts/demo.py --out DIR  # somewhere else than out/demo (the folder is made afresh)

It makes a workspace in out/demo (a datagen.toml: the built-in style_clone pipeline, chunks of 256 tokens, the
offline composite), then runs, each command printed before it runs so that it can be repeated on another corpus:

1. `datagen devset`: draw a dev set from the demo corpus (data/samples);
2. `datagen evaluate`: score the uncompiled pipeline on its held-out (val) items;
3. `datagen optimize`: compile it with the cheapest preset (bootstrap), under a cap on LM calls;
4. `datagen generate`: run the compiled program over the corpus, with the pass mark as quality gate;
5. `datagen export`: write the kept samples as a Hugging Face dataset folder, less the near-duplicates and the
   samples that quote the dev set (screened: docs/quality.md);

and ends with a table of what each step gave (held-out scores before and after with n and failures, samples kept
and dropped by reason, where each file went) and the command that opens the run in a browser. Every role runs on
the embedded model (SmolLM2-135M-Instruct): the figures are a 135M model's, shown as they are.
"""

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = "data/samples"
# The dev set: small enough to run in a minute or two on the embedded model, with a held-out part that is more
# than one or two items.
DEV_ITEMS, VAL_FRACTION = 10, 0.4
# What optimize may spend at most: bootstrap on 6 train items and two held-out evaluations of 4 take about 15.
MAX_CALLS = 60
WIDTH = 110  # of the closing advice, in characters

WORKSPACE_TOML = """\
# The demo's workspace: the built-in style_clone pipeline, every role on the embedded model.

[chunking]
# Short chunks: a 135M model rewrites a paragraph better than a page, and the demo runs in minutes.
max_tokens = 256

[metrics.style_clone]
# The offline part of style_clone's composite (metrics/style_clone.py): style removed, content carried, new
# wording{embedding}. The LLM judges are left out: on a 135M judge they are noise. With a capable judge model,
# delete this table to use the whole composite.
weights = {{ generic_offline = 1.0, coverage = 3.0, novelty = 0.25{embedding_weight} }}

# For real data, point the task role at a capable model: one of these (docs/config.md).
# [models.task]
# model = "openai/gpt-4o-mini"                 # needs OPENAI_API_KEY in the environment
#
# [models.task]
# model = "openai/Qwen2.5-7B-Instruct"         # any OpenAI-compatible server: vLLM, llama.cpp, Ollama...
# api_base = "http://localhost:8000/v1"
"""


def datagen(*args: str, check: bool = True) -> int:
    """Print the command as a user would type it, run it, and return its exit status."""
    print(f"\n$ datagen {shlex.join(args)}", flush=True)
    done = subprocess.run([str(Path(sys.executable).with_name("datagen")), *args], cwd=ROOT)
    if check and done.returncode:
        sys.exit(f"demo: `datagen {args[0]}` failed (exit {done.returncode}); its message is above")
    return done.returncode


def shown(path: Path) -> str:
    """`path` as the commands are given it: relative to the repository root when under it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def held_out(evaluation: dict) -> str:
    """The composite's mean on the scored items, with n and the failures, e.g. "0.31 (n 4; failed 1: dropped 1)"."""
    summary = evaluation["metrics"]["composite"]
    failures = ", ".join(f"{kind} {n}" for kind, n in summary["failures"].items())
    return f"{summary['mean']:.3f} (n {summary['n']}; failed {summary['failed']}{': ' + failures if failures else ''})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="out/demo", help="the demo's workspace folder (default out/demo), made afresh; "
                        "a folder the demo did not make is refused")
    args = parser.parse_args()
    from datagen.lm import EMBEDDED_MODELS
    from datagen.metrics.overlap import embedding_available
    from datagen.dataset.export import select_samples
    from datagen.runs import summarize
    from datagen.store import RunStore
    from datagen.workspace import builtin_workspace, load_metric_suite, read_manifest

    pass_mark = load_metric_suite("style_clone", builtin_workspace()).THRESHOLD  # the gate on the composite

    out = (ROOT / args.out).resolve()  # an absolute --out stays as it is
    made_here = (out / "datagen.toml").is_file() and (out / "datagen.toml").read_text().startswith(WORKSPACE_TOML[:40])
    if out.exists() and not out.is_dir():
        sys.exit(f"demo: {shown(out)} is a file: give --out a folder")
    if out.exists() and any(out.iterdir()) and not made_here:
        sys.exit(f"demo: {shown(out)} exists and is not a workspace the demo made: give another --out")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    embedding = embedding_available()
    (out / "datagen.toml").write_text(WORKSPACE_TOML.format(
        embedding=" and meaning kept (embedding)" if embedding else "",
        embedding_weight=", embedding = 1.0" if embedding else ""), encoding="utf-8")
    ws = ["--workspace", shown(out)]
    dev, run, export, evaluated = (shown(out / name) for name in ("dev.jsonl", "run", "hf", "eval-uncompiled"))
    print(f"A workspace in {shown(out)}: datagen.toml there says what it sets. "
          "(The datagen command is .venv/bin/datagen: `source .venv/bin/activate` puts it on your PATH.)")

    datagen("devset", "style_clone", "--input", CORPUS, "--n", str(DEV_ITEMS), "--val-fraction", str(VAL_FRACTION),
            "--out", dev, *ws)
    # --metric composite: the composite datagen.toml sets and its parts, not every metric of the pipeline (its
    # LLM judges would run on the 135M model too).
    datagen("evaluate", "style_clone", "--dev", dev, "--split", "val", "--metric", "composite", "--out", evaluated,
            *ws)
    datagen("optimize", "style_clone", "--dev", dev, "--optimizer", "bootstrap", "--max-calls", str(MAX_CALLS),
            "--metric", "composite", "--name", "demo", "--yes", *ws)
    generated = datagen("generate", "style_clone", "--input", CORPUS, "--compiled", "demo",
                        "--min-score", f"composite={pass_mark}", "--out", run, *ws, check=False)
    summary = summarize(ROOT / run)
    left_out = {}
    if summary.kept:
        datagen("export", run, "--format", "hf", "--out", export)
        with RunStore.reading(ROOT / run) as store:  # what the export's screen left out, as recorded by it
            left_out = select_samples(store, {"composite": pass_mark}).left_out_counts
    screened = ", ".join(f"{n} {reason}" for reason, n in left_out.items())
    exported = (summary.kept or 0) - sum(left_out.values())

    items = [json.loads(line) for line in (out / "dev.jsonl").read_text().splitlines()]
    before = json.loads((out / "eval-uncompiled/eval.json").read_text())
    state = out / "compiled/style_clone/demo.json"
    manifest = read_manifest(state)
    kept_demos = sum(manifest["demos"]["kept"].values())
    rejected = ", ".join(f"{why} {n}" for why, n in manifest["demos"]["rejected"].items()) or "none"
    dropped = ", ".join(f"{why} {n}" for why, n in summary.dropped.items()) or "none"
    failed = ", ".join(f"{kind} {n}" for kind, (n, _) in summary.failures.items()) or "none"
    rows = [
        ("dev set", f"{len(items)} chunks: {sum(i['split'] == 'train' for i in items)} train, "
                    f"{sum(i['split'] == 'val' for i in items)} val (held out)", dev),
        ("evaluate", f"uncompiled, val items: composite {held_out(before)}", evaluated),
        ("optimize", f"held out: before {manifest['held_out']['before']}", ""),
        ("", f"           after  {manifest['held_out']['after']}", shown(state)),
        ("", f"demos kept {kept_demos}; candidates rejected: {rejected}", ""),
        ("generate", f"{summary.chunks} chunks: {summary.samples} samples made, {summary.kept or 0} pass the "
                     f"pass mark (composite >= {pass_mark})", run),
        ("", f"failed: {failed}", ""),
        ("", f"dropped by the pipeline's checks: {dropped}", ""),
        ("export", f"{exported} samples as a Hugging Face dataset" if summary.kept
                   else "nothing to export: no sample passed", export if summary.kept else ""),
        ("", f"screened out: {screened or 'none'} (datagen quality {run} names them)", ""),
    ]
    width = max(len(row[1]) for row in rows)
    print("\n" + "=" * (width + 24))
    for step, what, where in rows:
        print(f"{step:9} {what:{width}}  {where}")
    print("=" * (width + 24))
    print(f"Read the samples, kept and dropped:  .venv/bin/datagen view {run}")
    task = summary.meta.get("model") or ""
    if task in EMBEDDED_MODELS:
        print(textwrap.fill(f"What you see is the work of {EMBEDDED_MODELS[task].about}, shown as it is: it keeps "
                            "everything offline, and most of its rewrites are dropped or below the pass mark, which "
                            "human plain rewrites reach in 86-100% of pairs (docs/metrics.md).", WIDTH))
    print(textwrap.fill("For real data, point the task role at a capable model (a hosted one, or any OpenAI-compatible "
                        "server): add --model/--api-base to the commands above, or set [models.task] in your own "
                        f"workspace's datagen.toml (`datagen init DIR` makes one; {shown(out)} is remade by each "
                        "demo). See docs/models.md.", WIDTH))
    # An empty dataset is a result the table shows (generate exits 1 on it); a run that did nothing is a failure.
    return 0 if summary.done else generated or 1


if __name__ == "__main__":
    sys.exit(main())
