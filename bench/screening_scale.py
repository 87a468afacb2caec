"""A run's screening end to end at scale: a real run store of 100,000 samples (bench/quality_scale.py's synthetic
samples from the novels, with its planted edited copies, formula openings and quoted protected passages), then the
installed commands a user runs, `datagen quality RUN --protect FILE` and `datagen export RUN --format jsonl
--protect FILE`, timed whole (process start, SQLite reads and writes included), with the precision and recall of
what the export left out against what was planted. After it, the peer a user would reach for: distilabel's
MinHashDedup step with its defaults (datasketch, the set of a text's words, 128 permutations, MinHashLSH at 0.9, a
text dropped when the index already holds a near one; src/distilabel/steps/filtering/minhash.py), with lower-cased
whitespace words in place of nltk's word_tokenize (not installed here), on the same texts, in this process, beside
ours on the same field alone (the commands measure both fields, contamination and diversity).

Each sample is one chunk: the input is the planted text, the output a unique span (so every flag is the input's).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -m bench.screening_scale [--corpus ../shared/corpora] [--samples 100000]
"""

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.quality_scale import build, pr
from datagen.dataset.quality import duplicates, lexical_pairs
from datagen.dataset.splits import draw_splits
from datagen.samples import Sample
from datagen.store import RunStore
from datagen.store.records import Outcome
from datagen.text.chunking import Chunk
from datagen.workspace import SplitSettings


def make_run(folder: Path, samples: list[str], outputs: list[str]) -> None:
    """A run store holding one done chunk per sample (the chunk's text its output), and its held-out split
    drawn with no test chunks (the planted contamination is by --protect file)."""
    with RunStore(folder / "run") as store:
        chunks = [Chunk(f"c{i:06d}", f"doc{i // 1000}.txt", 0, len(out), out, len(out.split()))
                  for i, out in enumerate(outputs)]
        store.add_chunks(chunks)
        store.set_meta({"pipeline": "style_clone"})
        for chunk, text in zip(chunks, samples):
            store.record(Outcome(chunk, [Sample(text, chunk.text)]))
        draw_splits(store, SplitSettings(test_fraction=0))


def timed(command: list[str], cwd: Path) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode:
        sys.exit(f"{' '.join(command)} failed: {result.stderr}")
    return seconds, result.stderr + result.stdout


def peer_minhash(texts: list[str], threshold: float = 0.9) -> set[int]:
    """distilabel's MinHashDedup with its defaults: each text's set of words, 128 permutations, MinHashLSH at
    `threshold`, a text dropped when the LSH index already holds a near one (the first kept)."""
    from datasketch import MinHash, MinHashLSH

    lsh, dropped = MinHashLSH(threshold=threshold, num_perm=128), set()
    for i, text in enumerate(texts):
        signature = MinHash(num_perm=128)
        signature.update_batch([word.encode() for word in set(text.lower().split())])
        if lsh.query(signature):
            dropped.add(i)
        else:
            lsh.insert(str(i), signature)
    return dropped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("../shared/corpora"))
    parser.add_argument("--samples", type=int, default=100_000)
    args = parser.parse_args()
    words = " ".join(path.read_text(encoding="utf-8") for path in sorted(args.corpus.glob("*.txt"))).split()
    rng = random.Random(0)
    samples, copies, formulas, protected, contaminated = build(words, args.samples, rng)
    outputs = [f"output {i}: " + " ".join(rng.choice(words) for _ in range(20)) for i in range(len(samples))]
    datagen = str(Path(sys.executable).with_name("datagen"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        make_run(folder, samples, outputs)
        evals = folder / "evals.jsonl"
        evals.write_text("".join(json.dumps({"text": p.text}) + "\n" for p in protected), encoding="utf-8")
        print(f"{len(samples)} samples ({len(copies)} edited copies, {len(formulas)} formula openings, "
              f"{len(contaminated)} quoting one of {len(protected)} protected passages) stored in "
              f"{time.perf_counter() - started:.0f} s")
        seconds, said = timed([datagen, "quality", "run", "--protect", str(evals), "--show", "0"], folder)
        print(f"datagen quality (measure and record): {seconds:6.1f} s")
        print("  " + "\n  ".join(line for line in said.splitlines() if "collapse" in line or "samples" in line))
        seconds, said = timed([datagen, "export", "run", "--format", "jsonl", "--val-fraction", "0", "--protect",
                               str(evals)], folder)
        print(f"datagen export (read back, screen, write): {seconds:6.1f} s; {said.splitlines()[0]}")
        written = {int(json.loads(line)["chunk_id"][1:]) for line in (folder / "run/samples.jsonl").open()}
        left, planted = set(range(len(samples))) - written, set(copies) | set(contaminated)
        print(f"  left out {len(left)}: {pr(left, planted)}; recall of the copies "
              f"{len(left & set(copies)) / len(copies):.3f}, of the quotes "
              f"{len(left & set(contaminated)) / len(contaminated):.3f}")
        print(f"  peak RSS of the commands: {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MiB")
    started = time.perf_counter()
    flagged = {d.index for d in duplicates(len(samples), lexical_pairs(samples))}
    print(f"ours on the same field alone (lexical, 0.6): {time.perf_counter() - started:6.1f} s, "
          f"{pr(flagged, set(copies))}")
    started = time.perf_counter()
    dropped = peer_minhash(samples)
    print(f"peer, distilabel-style MinHashDedup (word 1-grams, LSH 0.9): {time.perf_counter() - started:6.1f} s, "
          f"{pr(dropped, set(copies))}")


if __name__ == "__main__":
    main()
