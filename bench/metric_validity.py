"""Validity of style_clone's offline metrics on public text, before (one expository reference, absolute
genericness) and now (a plain background of many genres, genericness relative to the chunk), side by side.

    python -m bench.metric_validity            # from the repository root; reads ../shared/corpora/
    python -m bench.metric_validity --pairs 60 --passages 60    # quicker

Parallel text: the King James passages are the author's corpus; each check is run with the World English Bible
(`plain`) and the Bible in Basic English (`plain_basic`) as the human plain version. Authors: the novels of
../shared/corpora/, cut into passages of about 200 tokens. Offline metrics only (no LLM). The figures go to
docs/metrics.md; the data is never copied into the project.
"""

import argparse
import time
from pathlib import Path

from datagen.chunking import chunk_documents  # datagen first: it keeps litellm from fetching its price list
from datagen.config import Config
from datagen.ingest import iter_documents
from datagen.samples import Sample
from datagen.scoring import MetricContext
from datagen.validity import PipelineMetrics, check_authors, check_pairs, pair_metrics, read_authors, read_pairs
from datagen.metrics.base import Score, clamp
from datagen.metrics.composite import Composite
from datagen.metrics import stylometry
from datagen.metrics.stylometry import CrossFittedClassifier, StylometricFidelity

ROOT = Path(__file__).resolve().parent.parent
CORPORA = ROOT.parent / "shared" / "corpora"
PARALLEL = CORPORA / "parallel" / "bible_kjv_web_bbe_dev.jsonl"
PIPELINE = "style_clone"


def neutral_passages() -> list[str]:
    """What the metrics were fitted against before: the one expository text, data/reference/neutral.md."""
    return [c.text for c in chunk_documents(iter_documents([ROOT / "data/reference/neutral.md"]), 200)]


class AbsoluteGenericness:
    """Before: 1 - P(author's style) of the input, from a classifier fitted against neutral.md alone."""

    name, kind, aspect = "generic_offline", "offline", "genericness"

    def __init__(self, classifier: CrossFittedClassifier):
        self.classifier = classifier

    def __call__(self, chunk: str, sample: Sample) -> Score:
        return Score(clamp(1 - self.classifier.probability(sample.input, chunk)))


def before(metrics: PipelineMetrics, corpus: list[str]) -> PipelineMetrics:
    """The metrics as they were: the stylometric ones fitted against neutral.md with the character n-grams weighing
    5, genericness absolute, and the offline composite weighing generic_offline and embedding 1 : 1 (only the
    typography normalisation, which the classifier now does itself, is not undone)."""
    weight, stylometry._CHAR_WEIGHT = stylometry._CHAR_WEIGHT, 5.0  # the n-grams' weight as it was
    try:
        classifier = CrossFittedClassifier(corpus, neutral_passages())
    finally:
        stylometry._CHAR_WEIGHT = weight
    metrics.metrics["generic_offline"] = AbsoluteGenericness(classifier)
    metrics.metrics["style_offline"] = StylometricFidelity(classifier)
    if metrics.composite is not None:
        parts = [metrics.metrics[name] for name in ("generic_offline", "embedding") if name in metrics.metrics]
        metrics.composite = Composite(parts, {metric.name: 1.0 for metric in parts})
    return metrics


def rows(label: str, result) -> list[str]:
    return [f"{label:<7} {name:<20} {check:<20} {f.accuracy:6.3f}  {f.low:.2f}-{f.high:.2f}  "
            f"{'-' if f.auc is None else f'{f.auc:.3f}':>5}  {f.n:4d}"
            for name, checks in result.figures.items() for check, f in checks.items()]


HEADER = f"{'':<7} {'metric':<20} {'check':<20} {'acc':>6}  95% int    {'AUC':>5}  {'n':>4}"


def parallel_side_by_side(pairs_wanted: int, config: Config) -> None:
    for field in ("plain", "plain_basic"):
        pairs = read_pairs(PARALLEL, "styled", field)[:pairs_wanted]
        started = time.perf_counter()
        now = check_pairs(pair_metrics(PIPELINE, pairs, workspace=ROOT, config=config, offline=True), pairs)
        seconds = time.perf_counter() - started
        then = check_pairs(before(pair_metrics(PIPELINE, pairs, workspace=ROOT, config=config, offline=True),
                                  [styled for styled, _ in pairs]), pairs)
        print(f"\n== parallel: KJV against {field} ({len(pairs)} pairs; now took {seconds:.0f} s) ==\n{HEADER}")
        print("\n".join(line for pair in zip(rows("before", then), rows("now", now)) for line in pair), flush=True)


def authors_side_by_side(authors: dict[str, list[str]], config: Config) -> None:
    started = time.perf_counter()
    now = check_authors(PIPELINE, authors, workspace=ROOT, config=config, offline=True)
    seconds = time.perf_counter() - started
    then = check_authors(PIPELINE, authors, workspace=ROOT, config=config, offline=True,
                         build=lambda ctx: before(PipelineMetrics(PIPELINE, ctx, True), ctx.corpus))
    size = len(next(iter(authors.values())))
    print(f"\n== authors: {', '.join(authors)} ({size} passages each; now took {seconds:.0f} s) ==\n{HEADER}")
    print("\n".join(line for pair in zip(rows("before", then), rows("now", now)) for line in pair), flush=True)


def speed(authors: dict[str, list[str]], config: Config) -> None:
    """One generic_offline score of a rephrase of a corpus chunk, the classifier fitted: what a run pays a sample
    (each chunk's own log-odds is computed once and kept)."""
    corpus, *others = authors.values()
    metric = PipelineMetrics(PIPELINE, MetricContext(ROOT, config, corpus=corpus), True).metrics["generic_offline"]
    texts = [text for passages in others for text in passages][:200]
    for chunk in corpus:
        metric(chunk, Sample(input=chunk, output=chunk))
    started = time.perf_counter()
    for i, text in enumerate(texts):
        chunk = corpus[i % len(corpus)]
        metric(chunk, Sample(input=text, output=chunk))
    print(f"\ngeneric_offline: {(time.perf_counter() - started) / len(texts) * 1000:.1f} ms a sample")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=220, help="parallel pairs to use (at most 220)")
    parser.add_argument("--passages", type=int, default=120, help="passages per author")
    parser.add_argument("--only", choices=("pairs", "authors", "speed"), help="run one part only")
    args = parser.parse_args()
    if not PARALLEL.is_file():
        raise SystemExit(f"{CORPORA}: not found (the benchmark reads the shared corpora beside the repository)")
    config = Config()
    if args.only in (None, "pairs"):
        parallel_side_by_side(args.pairs, config)
    authors = read_authors(sorted(CORPORA.glob("*.txt")), args.passages)
    if args.only in (None, "authors"):
        authors_side_by_side(authors, config)
    if args.only in (None, "speed"):
        speed(authors, config)


if __name__ == "__main__":
    main()
