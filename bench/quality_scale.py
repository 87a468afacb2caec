"""The dataset-level quality measures (datagen/dataset/quality/) at scale: 100,000 synthetic samples made from the
novels in ../shared/corpora/ (not shipped: a benchmark, not a test), each measure's seconds and peak memory, and
precision and recall on what was planted.

- samples: three 12-word spans from random places of the novels;
- near-duplicates: 10% of the samples are copies of another with a tenth of the words edited (two swapped, one
  deleted, one inserted, one replaced by a word of the novels); found by `lexical_pairs` + `duplicates`;
- semantic: the blocked cosine search over 100,000 x 384 random unit rows, the copies' rows their original's plus
  noise (cosine about 0.95): a measure of time and memory, not of the model; `--real N` embeds N real samples and
  their copies with all-MiniLM-L6-v2 (the model's judgment, and its rate: embedding is the dear part at scale);
- template collapse: 24% of the originals open with one of two rephrase formulas (12% each), and so do their
  copies unless an edit broke the formula; found by `collapsed`;
- contamination: 1,500 protected 60-word passages, disjoint, from the first 2/5 of the novels' words (the samples'
  spans come from the rest), 2% of the samples quoting 13 to 25 words of one; found by `NgramIndex.check`;
- diversity: `compare` of the samples with the novels' 64-token chunks; calibration: the most common opening's
  share in the chunks (OPENING_BAR) and how far two halves of the chunks differ (NARROWED_MARGIN).

Each measure runs in a forked child: its peak RSS is the child's, the corpus (in the parent) included.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -m bench.quality_scale [--corpus ../shared/corpora] [--samples 100000]
"""

import argparse
import multiprocessing
import random
import resource
import time
from pathlib import Path

import numpy as np

from datagen.dataset.quality import NgramIndex, Protected, collapsed, compare, duplicates, lexical_pairs, \
    semantic_pairs
from datagen.dataset.quality.diversity import opening_of
from datagen.text import chunk_documents, iter_documents

FORMULAS = ("Here is a rephrased version:", "Sure! Here is the passage rewritten:")
SPAN = 12
PROTECTED = 1500


def _edited(text: str, rng: random.Random, vocabulary: list[str]) -> str:
    words = text.split()
    for _ in range(max(1, len(words) // 10)):
        i = rng.randrange(len(words) - 1)
        op = rng.choice(("swap", "delete", "insert", "replace"))
        if op == "swap":
            words[i], words[i + 1] = words[i + 1], words[i]
        elif op == "delete":
            del words[i]
        else:
            words[i:i + (op == "replace")] = [rng.choice(vocabulary)]
    return " ".join(words)


def build(words: list[str], count: int, rng: random.Random):
    """(samples, {copy: original}, {formula-opened}, protected passages, {contaminated sample: passage source})."""
    spans = lambda k: " ".join(" ".join(words[s:s + SPAN]) for s in (rng.randrange(len(words) - SPAN)
                                                                      for _ in range(k)))
    cut = len(words) * 2 // 5  # protected passages from the first 2/5, samples from the rest: no overlap by making
    protected = [Protected(f"held-out {k}", " ".join(words[s:s + 60]))  # disjoint passages
                 for k, s in enumerate(rng.sample(range(0, cut - 60, 60), PROTECTED))]
    words = words[cut:]
    originals = count - count // 10
    samples = [spans(3) for _ in range(originals)]
    for position in rng.sample(range(originals), originals * 24 // 100):  # before the copies, which keep it
        samples[position] = f"{FORMULAS[position % 2]} {samples[position]}"
    copies = {}
    for position in range(originals, count):
        copies[position] = rng.randrange(originals)
        samples.append(_edited(samples[copies[position]], rng, words))
    contaminated = {}
    untouched = sorted(set(range(originals)) - set(copies.values()))  # a quote must not blur a planted copy
    for position in rng.sample(untouched, count // 50):
        passage = rng.choice(protected)
        quote = passage.text.split()
        start = rng.randrange(60 - 25)
        samples[position] += " " + " ".join(quote[start:start + rng.randint(13, 25)])
        contaminated[position] = passage.source
    formulas = {position for position, text in enumerate(samples)  # open as a formula does, edited or not
                if opening_of(text) in {opening_of(formula) for formula in FORMULAS}}
    return samples, copies, formulas, protected, contaminated


def measured(what, *args):
    """(result, seconds, peak RSS in MiB) of what(*args), run in a forked child."""
    queue = multiprocessing.get_context("fork").SimpleQueue()

    def child():
        started = time.perf_counter()
        result = what(*args)
        queue.put((result, time.perf_counter() - started,
                   resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    answer = queue.get()
    process.join()
    return answer


def pr(found: set, planted: set) -> str:
    hits = len(found & planted)
    return f"precision {hits / max(len(found), 1):.3f}, recall {hits / max(len(planted), 1):.3f}"


def _lexical(samples):
    return duplicates(len(samples), lexical_pairs(samples))


def _semantic(matrix):
    return duplicates(len(matrix), semantic_pairs(matrix))


def synthetic_embeddings(count: int, copies: dict[int, int], rng: np.random.Generator) -> np.ndarray:
    matrix = rng.standard_normal((count, 384), dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    for position, original in copies.items():
        row = matrix[original] + 0.016 * rng.standard_normal(384, dtype=np.float32)
        matrix[position] = row / np.linalg.norm(row)
    return matrix


def calibration(chunks: list[str]) -> None:
    half = len(chunks) // 2
    halves = compare(chunks[:half], chunks[half:])
    top = compare(chunks, chunks).source.openings[0]
    print(f"calibration: {len(chunks)} chunks of 64 tokens; most common opening '{top.text}' {top.share:.2%}; "
          f"halves: distinct-2 {halves.samples.distinct_2} / {halves.source.distinct_2}, compression "
          f"{halves.samples.compression_ratio} / {halves.source.compression_ratio}")


def real_embeddings(samples: list[str], count: int, rng: random.Random, words: list[str]) -> None:
    from datagen.metrics.overlap import embed, embedding_available

    if not count or not embedding_available():
        return
    base = [text for text in samples[:count * 2] if not text.startswith(FORMULAS)][:count]
    texts = base + [_edited(text, rng, words) for text in base[:count // 4]]
    started = time.perf_counter()
    matrix = embed(texts)
    seconds = time.perf_counter() - started
    found = {d.index for d in duplicates(len(texts), semantic_pairs(matrix))}
    print(f"real embeddings: {len(texts)} texts in {seconds:.1f} s ({len(texts) / seconds:.0f} texts/s); "
          f"{pr(found, set(range(count, len(texts))))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("../shared/corpora"))
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--real", type=int, default=400, help="real samples to embed with the model (0: none)")
    args = parser.parse_args()
    novels = sorted(args.corpus.glob("*.txt"))
    words = " ".join(path.read_text(encoding="utf-8") for path in novels).split()
    rng = random.Random(0)
    samples, copies, formulas, protected, contaminated = build(words, args.samples, rng)
    chunks = [chunk.text for chunk in chunk_documents(iter_documents(novels), 64)]
    print(f"{len(samples)} samples ({len(copies)} edited copies, {len(formulas)} formula openings, "
          f"{len(contaminated)} contaminated) from {len(words)} words of {len(novels)} novels; "
          f"parent RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    flagged, seconds, peak = measured(_lexical, samples)
    print(f"lexical near-duplicates: {seconds:6.1f} s, peak {peak:5.0f} MiB, {len(flagged)} flagged, "
          f"{pr({d.index for d in flagged}, set(copies))}")
    matrix = synthetic_embeddings(len(samples), copies, np.random.default_rng(0))
    flagged, seconds, peak = measured(_semantic, matrix)
    print(f"semantic near-duplicates (synthetic 384-d rows): {seconds:6.1f} s, peak {peak:5.0f} MiB, "
          f"{pr({d.index for d in flagged}, set(copies))}")
    del matrix
    found, seconds, peak = measured(collapsed, samples)
    print(f"template collapse: {seconds:6.1f} s, peak {peak:5.0f} MiB, {pr(set(found), formulas)}")
    found, seconds, peak = measured(lambda: NgramIndex(protected).check(samples))
    right = {c.index for c in found if contaminated.get(c.index) == c.source}
    print(f"contamination (n=13, {len(protected)} protected): {seconds:6.1f} s, peak {peak:5.0f} MiB, "
          f"{pr({c.index for c in found}, set(contaminated))}, {len(right)} named right")
    comparison, seconds, peak = measured(compare, samples, chunks)
    print(f"diversity (compare with {len(chunks)} chunks): {seconds:6.1f} s, peak {peak:5.0f} MiB")
    for name, figures in (("samples", comparison.samples), ("chunks", comparison.source)):
        print(f"  {name}: {figures.measured_units} units of {figures.measured_texts} texts, distinct-1 "
              f"{figures.distinct_1}, distinct-2 {figures.distinct_2}, compression {figures.compression_ratio}, "
              f"top opening '{figures.openings[0].text}' {figures.openings[0].share:.1%}")
    print("  narrowed: " + "; ".join(comparison.narrowed))
    calibration(chunks)
    real_embeddings(samples, args.real, rng, words)


if __name__ == "__main__":
    main()
