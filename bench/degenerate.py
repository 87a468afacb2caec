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

    python -m bench.degenerate --cpu      # the check's CPU per text, this tree against --against (about 2 minutes)

`--cpu` runs every check the three parts make, the rephrases bench/throughput_bench.py's fake model answers
(`generate`'s workload: one check per sample) and random strings of many scripts and kinds of character, through
this tree's `degenerate` and through the one at `--against` (a git revision, loaded from `git show`), and prints
each set's CPU time per check (the least of --rounds, process CPU, not wall), side by side. Any text the two
judge differently (another reason, or one drops it and the other not) is printed and fails the run (exit 1).
"""

import argparse
import json
import random
import re
import string
import subprocess
import time
import types
from collections import Counter
from pathlib import Path

import regex

from datagen.text.chunking import chunk_documents  # datagen first: it keeps litellm from fetching its price list
from datagen.text.degenerate import REWRITE_MIN_LENGTH_RATIO, copy_measures, degenerate, length, word_bag_f1
from datagen.text.ingest import iter_documents

ROOT = Path(__file__).resolve().parents[1]
CORPORA = ROOT.parent / "shared" / "corpora"
FIELD = "generic"
# The last commit before the check was made cheaper (issue 29): --cpu's default --against.
BEFORE_CHEAPER = "6039820"


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


# --- --cpu: the check's CPU per text, against another revision ------------------------------------------------

def module_at(revision: str) -> types.ModuleType:
    """datagen/text/degenerate.py as it is at a git `revision`, loaded as a module of its own."""
    shown = subprocess.run(["git", "show", f"{revision}:datagen/text/degenerate.py"], cwd=ROOT, capture_output=True,
                           text=True)
    if shown.returncode != 0:
        raise SystemExit(f"--against {revision}: no datagen/text/degenerate.py there ({shown.stderr.strip()})")
    module = types.ModuleType(f"degenerate_at_{revision}")
    exec(compile(shown.stdout, f"{revision}:datagen/text/degenerate.py", "exec"), module.__dict__)
    return module


def random_texts(rng: random.Random, count: int) -> list[str]:
    """Random strings of letters of many scripts (accented, cased, ligatures), marks, digits, symbols,
    punctuation, spaces and invisible characters, in words: every path of the check, not only prose's."""
    pool = ("abcdeiouyxzqwrtsßÆŒĳﬁÉéàçñİıДджиоыЁΑαωήΣς中文好かなカナ한국ابתשअकी่ก" "́̈0123456789٣"
            "$€+=<>©™😀─.,;:!?'\"()[]{}_-/\\~*#@‘’“”«»—–…" "\u200b\u00a0\t\n  ")
    texts = []
    for _ in range(count):
        alphabet, plain = rng.sample(pool, rng.randint(2, 24)), rng.random()  # each text its own mix
        words = [("".join(rng.choices(alphabet, k=rng.randint(1, 9))) if rng.random() > plain
                  else rng.choice(_PLAIN_WORDS)) for _ in range(rng.randint(1, 40))]
        texts.append(" ".join(words))
    return texts


_PLAIN_WORDS = ("the passage river NYPD BBC passage_text1234.csv http://x.org/a ~/a/b C:\\x v2 1923, "
                "шесть слов σήμερα 今日は 很好 الكتاب hello.").split()


def check_sets(pairs: dict[str, list[dict]]) -> dict[str, list[tuple[str, dict]]]:
    """Every check the three parts make, generate's rephrases and random texts: {set: [(text, keywords)]}."""
    from bench.fake_server import reworded
    from bench.throughput_bench import passage

    rewrite = {"field": FIELD, "min_length_ratio": REWRITE_MIN_LENGTH_RATIO}
    bench = [passage("P.", index, 30) for index in range(1280)]
    sets = {"generate's rephrases (throughput_bench)": [(reworded(p), {"source": p, **rewrite}) for p in bench]}
    prose = [text for novel in sorted(CORPORA.glob("*.txt")) for texts in novel_texts(novel).values() for text in texts]
    prose += [r[side] for records in pairs.values() for r in records for side in ("styled", "plain", "plain_basic")
              if r.get(side)]
    sets["1. real prose, no source"] = [(text, {"field": FIELD}) for text in prose]
    sets["2. human rewrites"] = [(r[side], {"source": r["styled"], **rewrite}) for records in pairs.values()
                                 for r in records for side in ("plain", "plain_basic") if r.get(side)]
    rng = random.Random(0)
    sets["3. degenerate output"] = [(text, {"source": r["styled"], **rewrite}) for records in pairs.values()
                                    for r in records
                                    for text in degenerate_cases(r["styled"], r["plain"], rng).values()]
    sets["random texts"] = [(text, kwargs) for text in random_texts(random.Random(1), 3000)
                            for kwargs in ({"field": FIELD}, {"source": text[::-1], **rewrite})]
    return sets


def cpu_per_check(pairs: dict[str, list[dict]], revision: str, rounds: int) -> None:
    """Prints each set's CPU per check, this tree's `degenerate` against `revision`'s; exits 1 on any other verdict."""
    before = module_at(revision)
    print(f"CPU per degenerate() check (least of {rounds} rounds, process CPU): {revision} -> this tree")
    print(f"   {'set':<42} {'checks':>7} {'before us':>10} {'now us':>8} {'now/before':>10}")
    differ = []
    for name, checks in check_sets(pairs).items():
        times, verdicts = {}, {}
        for label, check in (("before", before.degenerate), ("now", degenerate)) * rounds:
            start = time.process_time()
            verdicts[label] = [check(text, **kwargs) for text, kwargs in checks]
            spent = time.process_time() - start
            times[label] = min(times.get(label, spent), spent)
        differ += [(name, text, old, new) for (text, _), old, new in zip(checks, verdicts["before"], verdicts["now"])
                   if old != new]
        print(f"   {name:<42} {len(checks):>7} {1e6 * times['before'] / len(checks):>10.1f} "
              f"{1e6 * times['now'] / len(checks):>8.1f} {times['now'] / times['before']:>10.2f}")
    for name, text, old, new in differ[:20]:
        print(f"   DIFFERENT in {name}: {old} -> {new}: {text[:90]!r}")
    if differ:
        raise SystemExit(f"{len(differ)} checks judged differently from {revision}")
    print("   every verdict the same")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="time the check against --against instead (see above)")
    parser.add_argument("--against", default=BEFORE_CHEAPER, metavar="REVISION",
                        help=f"the git revision --cpu compares with (default {BEFORE_CHEAPER}, before issue 29's fix)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="--cpu's timed rounds per set, the least kept (default 3)")
    args = parser.parse_args()
    if args.rounds < 1:
        raise SystemExit(f"--rounds {args.rounds}: must be at least 1")
    if not CORPORA.is_dir():
        raise SystemExit(f"{CORPORA}: not found (the benchmark reads the shared corpora beside the repository)")
    pairs = read_pairs()
    if args.cpu:
        cpu_per_check(pairs, args.against, args.rounds)
        return
    prose_false_positives(pairs)
    rewrite_false_positives(pairs)
    catch_rate(pairs)


if __name__ == "__main__":
    main()
