"""How datagen/text/degenerate.py's check fares on real prose and on degenerate output: its false positives and its
catch rate, and the measures its bars were set from.

    python -m bench.degenerate            # from the repository root; reads ../shared/corpora/ (about 1 minute)

1. Real prose, no source: the four novels of ../shared/corpora cut into chunks of 300 tokens (as a pipeline
   cuts them), into paragraphs and into sentences, and every field (`styled`, `plain`, `plain_basic`) of the
   parallel pairs. Each is checked as a pipeline checks an output (`degenerate(text, field="generic")`): any
   drop is a false positive.
2. Human rewrites with their source: each pair's `plain` and `plain_basic` against its `styled`, and the
   project's data/style_clone/pairs.jsonl, checked as style_clone checks its rephrase (copy and too_short
   included): any drop is a false positive. Prints the length ratio, similarity and verbatim part measured,
   the figures the bars come from.
3. Degenerate output made from each pair: copies (verbatim, with case, spaces and typography changed, with a
   word in twenty left out, the first half of the source, without its first sentence, followed by a sentence of
   its own or of the rewrite), the rewrite followed by the prompt's own instruction, half of the rewrite, placeholders, serialized
   objects, gibberish of the rewrite's length; each should be caught.
"""

import argparse
import json
import random
import re
import string
from collections import Counter
from pathlib import Path

import regex

from datagen.text.chunking import chunk_documents  # datagen first: it keeps litellm from fetching its price list
from datagen.text.degenerate import REWRITE_MIN_LENGTH_RATIO, copy_measures, degenerate, length, word_bag_f1
from datagen.text.ingest import iter_documents

ROOT = Path(__file__).resolve().parents[1]
CORPORA = ROOT.parent / "shared" / "corpora"
FIELD = "generic"


def novel_texts(novel: Path) -> dict[str, list[str]]:
    """A novel as chunks of 300 tokens, as paragraphs (lines joined) and as sentences."""
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", novel.read_text(encoding="utf-8")) if p.strip()]
    ends = r"(?<=[.!?])\s+|(?<=[.!?][\"'\u201d\u2019])\s+"
    sentences = [s for p in paragraphs for s in re.split(ends, p) if s.strip()]
    chunks = [c.text for c in chunk_documents(iter_documents([novel]), 300)]
    return {"chunks": chunks, "paragraphs": paragraphs, "sentences": sentences}


def read_pairs() -> dict[str, list[dict]]:
    files = {path.stem: path for path in sorted((CORPORA / "parallel").glob("*.jsonl"))}
    files["pairs (project)"] = ROOT / "data" / "style_clone" / "pairs.jsonl"
    return {name: [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            for name, path in files.items()}


def prose_false_positives(pairs: dict[str, list[dict]]) -> None:
    print("1. Real prose, checked without a source (any drop is a false positive)")
    sets: dict[str, list[str]] = {}
    for novel in sorted(CORPORA.glob("*.txt")):
        for kind, texts in novel_texts(novel).items():
            sets.setdefault(f"novels: {kind}", []).extend(texts)
    for name, records in pairs.items():
        for side in ("styled", "plain", "plain_basic"):
            sets.setdefault(f"parallel: {side}", []).extend(r[side] for r in records if r.get(side))
    for name, texts in sets.items():
        dropped = [(reason, text) for text in texts if (reason := degenerate(text, field=FIELD))]
        print(f"   {name:<22} {len(texts):>6} texts, {len(dropped)} dropped {dict(Counter(r for r, _ in dropped))}")
        for (reason, text), n in Counter((reason, text[:90]) for reason, text in dropped).most_common():
            print(f"      {n:>3} x {reason}: {text!r}")


def rewrite_false_positives(pairs: dict[str, list[dict]]) -> None:
    print("\n2. Human rewrites against their source, as style_clone checks its rephrase (any drop is a false "
          "positive)")
    for name, records in pairs.items():
        for side in ("plain", "plain_basic"):
            rewrites = [(r["styled"], r[side]) for r in records if r.get(side)]
            if not rewrites:
                continue
            reasons = Counter(degenerate(plain, source=styled, field=FIELD, min_length_ratio=REWRITE_MIN_LENGTH_RATIO)
                              for styled, plain in rewrites)
            measures = [copy_measures(plain, styled) for styled, plain in rewrites]
            bag = max(word_bag_f1(plain, styled) for styled, plain in rewrites)
            ratios = [length(plain) / length(styled) for styled, plain in rewrites]
            dropped = sum(n for reason, n in reasons.items() if reason)
            print(f"   {name} {side}: {len(rewrites)} pairs, {dropped} dropped "
                  f"{ {r: n for r, n in reasons.items() if r} }; length ratio min {min(ratios):.3f}, similarity "
                  f"max {max(m[0] for m in measures):.3f}, verbatim part max {max(m[1] for m in measures):.3f} of the "
                  f"rewrite, {max(m[2] for m in measures):.3f} of the source, words "
                  f"shared in any order (F1) max {bag:.3f}")


def gibberish(rng: random.Random, size: int) -> dict[str, str]:
    """Gibberish about `size` characters long, of several kinds."""
    def words(make) -> str:
        out = []
        while sum(len(w) + 1 for w in out) < size:
            out.append(make())
        return " ".join(out)

    mash_rows = ["asdfghjkl", "qwertyuiop", "zxcvbnm", "sdfjkl", "hjkl"]
    return {
        "random letters": words(lambda: "".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9)))),
        "keyboard mash": words(lambda: "".join(rng.sample(rng.choice(mash_rows), k=4))),
        "one word repeated": words(lambda: "passage"),
        "a sentence repeated": words(lambda: "The passage is here.")[:size],
        "digits": words(lambda: str(rng.randint(0, 99999))),
        "symbols": "".join(rng.choices("#$%&*+=<>@^~|/\\-_", k=size)),
        "identifiers": words(lambda: rng.choice(["passage_text", "chunk_id", "styled_v2"])
                             + str(rng.randint(100, 99999)) + rng.choice([".csv", ".json", ".txt", ""])),
    }


PLACEHOLDERS = ["generic", "{generic}", "{{generic}}", "[generic]", "<generic>", "[[ ## generic ## ]]",
                "{{ passage }}", "GENERIC", "'generic'", "TODO", "...", "N/A",
                "Lorem ipsum dolor sit amet, consectetur adipiscing elit."]


def degenerate_cases(styled: str, plain: str, rng: random.Random) -> dict[str, str]:
    words = styled.split()
    sentences, plain_sentences = (regex.split(r"(?<=[.!?])\s+", text) for text in (styled, plain))
    typographic = styled.replace("'", "\u2019").replace('"', "\u201c").replace(" - ", " \u2014 ")
    cases = {
        "copy": styled,
        "copy, case/spaces/typography": "  ".join(typographic.upper().split()),
        "copy, a word in 20 left out": " ".join(w for i, w in enumerate(words) if i % 20 != 19),
        "copy of the first half": " ".join(words[:len(words) // 2]),
        # What SmolLM2-135M wrote (bench/embedded_models.py): the passage, then a sentence of it again, reworded.
        "copy, then its last sentence again": f"{styled} {sentences[-1]}",
        "copy, then a sentence of the rewrite": f"{styled} {plain_sentences[0]}",
        "copy without its first sentence": " ".join(sentences[1:]) if len(sentences) > 1 else styled,
        "half of the rewrite": " ".join(plain.split()[:len(plain.split()) // 2]),
        "a third of the rewrite": " ".join(plain.split()[:len(plain.split()) // 3]),
        "copy without punctuation": regex.sub(r"[^\w\s’']", "", styled),
        "copy, words shuffled, lower-cased": " ".join(sorted(styled.lower().split(), key=lambda w: rng.random())),
        "copy, sentences reversed": " ".join(reversed(regex.split(r"(?<=[.!?])\s+", styled))),
        "the rewrite's letters shuffled in each word": regex.sub(
            r"\p{L}+", lambda m: "".join(rng.sample(m.group(), len(m.group()))), plain),
        "serialized: JSON object": json.dumps({FIELD: plain}),
        "serialized: dict repr": repr({"introduction": [plain]}),
        "serialized: JSON list": json.dumps(plain.split(". ")),
        "serialized: code block": f"```\n{plain}\n```",
        "serialized: markup": f"<p>{plain}</p>\n<p></p>",
        "empty: .": ".",
        "the rewrite, then the prompt echoed": f"{plain}\n\nRespond with a JSON object in the following order of "
                                               "fields: `generic`.",
    }
    cases.update({f"placeholder: {p}": p for p in PLACEHOLDERS})
    cases.update({f"gibberish: {kind}": text for kind, text in gibberish(rng, len(plain)).items()})
    return cases


def catch_rate(pairs: dict[str, list[dict]]) -> None:
    print("\n3. Degenerate output made from each pair's rewrite, as style_clone checks it (each should be caught)")
    rng = random.Random(0)
    caught: dict[str, Counter] = {}
    for records in pairs.values():
        for record in records:
            for case, text in degenerate_cases(record["styled"], record["plain"], rng).items():
                reason = degenerate(text, source=record["styled"], field=FIELD,
                                    min_length_ratio=REWRITE_MIN_LENGTH_RATIO)
                caught.setdefault(case, Counter())[reason] += 1
    for case, reasons in caught.items():
        total = sum(reasons.values())
        print(f"   {case:<42} caught {total - reasons[None]:>4}/{total}  "
              f"{ {r: n for r, n in reasons.most_common() if r} }")


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    if not CORPORA.is_dir():
        raise SystemExit(f"{CORPORA}: not found (the benchmark reads the shared corpora beside the repository)")
    pairs = read_pairs()
    prose_false_positives(pairs)
    rewrite_false_positives(pairs)
    catch_rate(pairs)


if __name__ == "__main__":
    main()
