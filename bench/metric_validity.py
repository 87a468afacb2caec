"""Validity of style_clone's offline metrics on public text.

    python -m bench.metric_validity            # from the repository root; reads ../shared/corpora/
    python -m bench.metric_validity --only pairs --pairs 60    # quicker

Parallel text (`--only pairs`): the long pairs (10 verses) and the short ones (2 verses); the King James passages are
the author's corpus, and each check (datagen.metrics.checks.pairs: a copy, another passage's rewrite, half of it, it
padded, gibberish, a placeholder, a stock text) is run with the World English Bible (`plain`) and the Bible in Basic
English (`plain_basic`) as the human plain version, for every offline metric, the offline composite, and the
offline composite as it was before coverage and novelty (generic_offline and embedding 1 : 1, no gate). Authors
(`--only authors`): the novels of ../shared/corpora/, cut into passages of about 200 tokens, before (one expository
reference, absolute genericness) and now. `--only coverage`: coverage and novelty on the novels' passages, where
no rewrite exists: a passage's first half, the next passage of the same book, and the passage itself. `--only
speed`: what the offline composite costs a sample, before and now. Offline metrics only (no LLM). The figures go to
docs/metrics.md; the data is never copied into the project.
"""

import argparse
import time
from pathlib import Path

import numpy as np

from datagen.text.chunking import chunk_documents  # datagen first: it keeps litellm from fetching its price list
from datagen.workspace.config import Config
from datagen.text.ingest import iter_documents
from datagen.samples import Sample
from datagen.metrics.scoring import MetricContext
from datagen.metrics.checks.pairs import (PipelineMetrics, Validity, check_authors, check_pairs, pair_metrics,
                                          perturbations, read_authors, read_pairs)
from datagen.metrics.base import Score, clamp
from datagen.metrics.composite import Composite
from datagen.metrics.coverage import ContentCoverage, Novelty
from datagen.metrics import stylometry
from datagen.metrics.stylometry import CrossFittedClassifier, StylometricFidelity

ROOT = Path(__file__).resolve().parent.parent
CORPORA = ROOT.parent / "shared" / "corpora"
PARALLEL = {"long": CORPORA / "parallel" / "bible_kjv_web_bbe_dev.jsonl",
            "short": CORPORA / "parallel" / "bible_kjv_web_bbe_short.jsonl"}
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


def composite_before(metrics: PipelineMetrics) -> PipelineMetrics:
    """The offline composite as it was before coverage and novelty: generic_offline and embedding 1 : 1, no gate."""
    parts = [metrics.metrics[name] for name in ("generic_offline", "embedding") if name in metrics.metrics]
    metrics.composite = Composite(parts, {metric.name: 1.0 for metric in parts})
    metrics.composite_name = "composite before"
    return metrics


def parallel(pairs_wanted: int, config: Config) -> None:
    for size, path in PARALLEL.items():
        for field in ("plain", "plain_basic"):
            pairs = read_pairs(path, "styled", field)[:pairs_wanted]
            started = time.perf_counter()
            now = check_pairs(pair_metrics(PIPELINE, pairs, workspace=ROOT, config=config, offline=True), pairs)
            seconds = time.perf_counter() - started
            before = check_pairs(composite_before(pair_metrics(PIPELINE, pairs, workspace=ROOT, config=config,
                                                               offline=True)), pairs)
            print(f"\n== parallel, {size}: KJV against {field} ({len(pairs)} pairs; took {seconds:.0f} s) ==\n{HEADER}")
            print("\n".join(rows("now", now) + rows("", Validity("", "", {"composite before": before.figures[
                "composite before"]}))), flush=True)
            pass_mark(pairs, config)


def pass_mark(pairs: list[tuple[str, str]], config: Config) -> None:
    """The offline composite's scores of the true rewrites and of each perturbation (percentiles), and the share
    of each at or above the pass mark: where THRESHOLD sits (the embedding keeps what check_pairs embedded)."""
    metrics = pair_metrics(PIPELINE, pairs, workspace=ROOT, config=config, offline=True)
    threshold = metrics.composite.threshold
    scores: dict[str, list[float]] = {}
    for (styled, plain), against in zip(pairs, perturbations(pairs)):
        for label, text in {"true": plain, **against}.items():
            value = metrics.score(styled, Sample(input=text, output=styled), [])[metrics.composite_name]
            scores.setdefault(label, []).append(value)
    print(f"{'offline composite of':<22} {'p5':>6} {'p10':>6} {'median':>6} {'max':>6}  >= {threshold:g}")
    for label, values in scores.items():
        p5, p10, median = np.percentile(values, [5, 10, 50])
        print(f"{label:<22} {p5:6.3f} {p10:6.3f} {median:6.3f} {max(values):6.3f}  "
              f"{np.mean(np.array(values) >= threshold):.1%}", flush=True)


def authors_side_by_side(authors: dict[str, list[str]], config: Config) -> None:
    started = time.perf_counter()
    now = check_authors(PIPELINE, authors, workspace=ROOT, config=config, offline=True)
    seconds = time.perf_counter() - started
    then = check_authors(PIPELINE, authors, workspace=ROOT, config=config, offline=True,
                         build=lambda ctx: before(PipelineMetrics(PIPELINE, ctx, True), ctx.corpus))
    size = len(next(iter(authors.values())))
    print(f"\n== authors: {', '.join(authors)} ({size} passages each; now took {seconds:.0f} s) ==\n{HEADER}")
    print("\n".join(line for pair in zip(rows("before", then), rows("now", now)) for line in pair), flush=True)


def coverage_on_novels(authors: dict[str, list[str]]) -> None:
    """coverage and novelty where no rewrite exists: each passage against its first half, the next passage of the
    same book (same names and subject), and itself; medians and the 95th percentile."""
    coverage, novelty = ContentCoverage(), Novelty()
    print(f"\n== coverage and novelty on the novels' passages ==\n{'author':<40} {'input':<14} "
          f"{'coverage med':>12} {'p95':>5} {'novelty med':>11}")
    for name, passages in authors.items():
        nexts = passages[1:] + passages[:1]
        for label, inputs in (("first half", [" ".join(p.split()[: len(p.split()) // 2]) for p in passages]),
                              ("next passage", nexts), ("itself", passages)):
            c = [coverage(p, Sample(input=x, output=p)).value for p, x in zip(passages, inputs)]
            n = [novelty(p, Sample(input=x, output=p)).value for p, x in zip(passages, inputs)]
            print(f"{name:<40} {label:<14} {np.median(c):12.3f} {np.percentile(c, 95):5.2f} {np.median(n):11.3f}")


def speed(authors: dict[str, list[str]], config: Config) -> None:
    """What the offline composite costs a sample once fitted, before (generic_offline and embedding) and now (with
    coverage and novelty): rephrases never seen before (the embedding keeps what it has embedded), each chunk's
    own scores computed once beforehand, as in a run."""
    corpus, *others = authors.values()
    texts = [text for passages in others for text in passages][:200]
    for label, build in (("before", composite_before), ("now", lambda m: m)):
        metrics = build(PipelineMetrics(PIPELINE, MetricContext(ROOT, config, corpus=corpus), True))
        for chunk in corpus:
            metrics.score(chunk, Sample(input=chunk, output=chunk), [])
        seen = texts if label == "before" else [text + " " for text in texts]  # new texts: nothing cached
        started = time.perf_counter()
        for i, text in enumerate(seen):
            metrics.score(corpus[i % len(corpus)], Sample(input=text, output=corpus[i % len(corpus)]), [])
        print(f"\noffline composite {label}: {(time.perf_counter() - started) / len(seen) * 1000:.1f} ms a sample "
              f"({', '.join(metrics.composite.weights)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=400, help="parallel pairs to use from each file (220 long, "
                                                              "400 short)")
    parser.add_argument("--passages", type=int, default=120, help="passages per author")
    parser.add_argument("--only", choices=("pairs", "authors", "coverage", "speed"), help="run one part only")
    args = parser.parse_args()
    if not all(path.is_file() for path in PARALLEL.values()):
        raise SystemExit(f"{CORPORA}: not found (the benchmark reads the shared corpora beside the repository)")
    config = Config()
    if args.only in (None, "pairs"):
        parallel(args.pairs, config)
    if args.only == "pairs":
        return
    authors = read_authors(sorted(CORPORA.glob("*.txt")), args.passages)
    if args.only in (None, "authors"):
        authors_side_by_side(authors, config)
    if args.only in (None, "coverage"):
        coverage_on_novels(authors)
    if args.only in (None, "speed"):
        speed(authors, config)


if __name__ == "__main__":
    main()
