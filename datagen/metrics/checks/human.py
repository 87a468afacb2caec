"""Do the metrics agree with people? A run's scores set against the reviews a person gave its samples.

`datagen view` stores a verdict (good or bad), 1-5 ratings by criterion and corrections beside each sample
(datagen/dataset/review.py); generating with a `--min-score` gate stores each sample's scores. This module reads both
from the run store and reports, for each metric scored in the run (the composite included):

- its **AUC** of good against bad (`sklearn.metrics.roc_auc_score`: the probability that a random good sample
  scores above a random bad one, ties counting half), with the numbers of good and bad samples;
- its **Spearman** correlation (`scipy.stats.spearmanr`) with the person's 1-5 rating on the criterion of the same
  name (a pipeline's criteria are named after the metrics that measure them: `CRITERIA` in metrics/NAME.py), and,
  for the composite, with the mean of each sample's ratings;

each with n and a 95% percentile-bootstrap interval (RESAMPLES resamples, seeded: the AUC's resamples good and bad
samples apart, so both keep their numbers; Spearman's resamples the (score, rating) pairs). A metric whose AUC is
below 0.5, or whose Spearman is below 0, disagrees with people and is flagged; one whose interval includes chance
(0.5, 0) is flagged as not shown to agree. Fewer than MIN_EACH good or bad samples (MIN_RATED rated ones) are said
plainly, not computed.

And for each bar of a `--min-score` gate, against the verdicts: its **precision** (the share of the samples that
reach the bar which people rated good), its **recall** (the share of the good samples that reach it), and the bar
that would separate good from bad best (the one maximising Youden's J = TPR - FPR on `sklearn.metrics.roc_curve`),
with its precision and recall. That bar is reported, never applied.

How a review counts: verdict "good" is good, verdict "bad" is bad, no verdict is unlabelled, and **a corrected
sample is bad whatever its verdict**. The metrics scored the generated text, not the correction: a sample the
person had to fix is evidence that the generated text was not good as it stood (even when the fixed version was
then approved, which is what makes it exported). Ratings are taken as given, corrected or not.
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_curve

from datagen.dataset.export import check_scored
from datagen.errors import DatagenError
from datagen.metrics.checks.stats import Estimate, auc_estimate, spearman_estimate
from datagen.metrics.scoring import COMPOSITE
from datagen.store import GATE, Review, RunStore
from datagen.util import replacing

RESAMPLES = 2000
MIN_EACH = 2  # good and bad samples an AUC, a precision/recall or a best bar needs of each
MIN_RATED = 3  # (score, rating) pairs a Spearman needs
WHOLE_GATE = "whole gate"  # the gate row of a gate with several bars: a sample passes when it reaches every bar
MEAN_RATING = "mean of the ratings"  # what the composite is set against


@dataclass
class MetricAgreement:
    """One metric against the reviews. `good`, `bad`: labelled samples scored on the metric; `auc`: None when
    not computed (`auc_note` says why). `criterion`: the rating it is set against (a criterion's name, or
    MEAN_RATING for the composite; None when the pipeline rates no criterion of its name); `spearman`: None when
    not computed (`spearman_note` says why)."""

    metric: str
    good: int
    bad: int
    auc: Estimate | None = None
    auc_note: str | None = None
    criterion: str | None = None
    spearman: Estimate | None = None
    spearman_note: str | None = None


@dataclass(frozen=True)
class Cut:
    """A bar on a metric: samples scoring `threshold` or more pass (None: the whole gate's bars). `passing` of them
    do; `precision`, `recall` against the verdicts (precision None when none passes); `j`: Youden's J (TPR - FPR)
    of a bar chosen by it."""

    threshold: float | None
    passing: int
    precision: float | None
    recall: float
    j: float | None = None


@dataclass
class GateCheck:
    """One bar of a gate (or the WHOLE_GATE) against the verdicts, over the `n` labelled samples scored on its
    metric(s), `good` of them good. `at_bar`: the gate as set; `best`: the bar that separates good from bad best
    (None for the whole gate, or when no bar separates them better than keeping every sample); `note`: why a figure
    is missing."""

    metric: str
    bar: float | None
    n: int
    good: int
    at_bar: Cut | None = None
    best: Cut | None = None
    note: str | None = None


@dataclass
class HumanCheck:
    """Everything `human_check` found: the run, its reviews (`reviews` in all; `good`, `bad`, `corrected` among
    them, corrected samples counted as bad; `rated`: reviews with a rating), each metric's agreement, the gate it
    checked (`gate`, {metric: bar}, from `gate_source`: "--min-score", "the run's last gate" or None), each
    bar's check, and one line per flag."""

    run_dir: Path
    pipeline: str
    reviews: int
    good: int
    bad: int
    corrected: int
    rated: int
    metrics: list[MetricAgreement] = field(default_factory=list)
    gate: dict[str, float] = field(default_factory=dict)
    gate_source: str | None = None
    gates: list[GateCheck] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        """Every field as JSON-ready values (dataclasses as objects, a missing figure as None)."""
        data = asdict(self)
        data["run_dir"] = str(self.run_dir)
        return data

    def write_json(self, path: str | Path) -> Path:
        """Write `as_json()` to `path` whole (UTF-8, indented; a file there before is replaced, or left as it was
        when the write fails: DiskError for a full or read-only disk); returns the path."""
        path = Path(path)
        with replacing(path) as partial:
            partial.write_text(json.dumps(self.as_json(), indent=1), encoding="utf-8")
        return path


def verdict_label(review: Review | None) -> bool | None:
    """How a review counts for the metric check: True (good) for verdict "good" without a correction, False (bad)
    for verdict "bad" or any correction (the metrics scored the generated text, which the person had to fix),
    None (unlabelled) otherwise."""
    if review is None:
        return None
    if review.corrected or review.verdict == "bad":
        return False
    return True if review.verdict == "good" else None


def human_check(run_dir: str | Path, min_scores: dict[str, float] | None = None, *, resamples: int = RESAMPLES,
                seed: int = 0) -> HumanCheck:
    """Check the metrics scored in the run at `run_dir` against its reviews (see the module's doc).

    `min_scores` ({metric: bar}, as `--min-score` gives them) is the gate to check; None: the run's last gate (run
    store meta key `min_scores`), if it had one. `resamples` and `seed`: the bootstrap's. Nothing is applied or
    written to the run. Raises DatagenError when `run_dir` is not a run folder, the run has no reviews or no
    scores, or a gate's metric was never scored in it.
    """
    run_dir = Path(run_dir)
    with RunStore.reading(run_dir) as store:
        reviews = store.reviews()
        if not reviews:
            raise DatagenError(f"{run_dir}: no sample has been reviewed yet; review some with datagen view {run_dir}")
        scored = store.scored_metrics()
        if not scored:
            raise DatagenError(f"{run_dir}: no sample has a score to check against the reviews; score them with "
                               "datagen generate ... --min-score METRIC=VALUE (finished chunks are only scored, "
                               "not run again)")
        meta = store.meta()
        source = "--min-score" if min_scores else None
        if not min_scores and json.loads(meta.get(GATE) or "{}"):
            min_scores, source = {k: float(v) for k, v in json.loads(meta[GATE]).items()}, "the run's last gate"
        check_scored(store, min_scores)
        scores = {}
        for chunk_id in sorted({chunk_id for chunk_id, _ in reviews}):
            for index, values in store.sample_scores(chunk_id).items():
                scores[chunk_id, index] = values
    labels = {key: verdict_label(review) for key, review in reviews.items()}
    result = HumanCheck(run_dir, meta.get("pipeline", ""), len(reviews),
                        good=sum(label is True for label in labels.values()),
                        bad=sum(label is False for label in labels.values()),
                        corrected=sum(review.corrected for review in reviews.values()),
                        rated=sum(bool(review.ratings) for review in reviews.values()),
                        gate=dict(min_scores or {}), gate_source=source)
    # Only the reviewed samples that have scores count for the AUC and the gate (those without are scored on none).
    labelled = {key: label for key, label in labels.items() if label is not None and key in scores}
    for metric in sorted(scored, key=lambda name: (name != COMPOSITE, name)):
        row = _agreement(metric, labelled, reviews, scores, resamples, seed)
        result.metrics.append(row)
        result.flags += _flags(row)
    for metric, bar in result.gate.items():
        result.gates.append(_gate(metric, {metric: bar}, labelled, scores))
    if len(result.gate) > 1:
        result.gates.append(_gate(WHOLE_GATE, result.gate, labelled, scores))
    return result


def _agreement(metric: str, labelled: dict, reviews: dict[tuple[str, int], Review], scores: dict,
               resamples: int, seed: int) -> MetricAgreement:
    good = np.array([scores[key][metric] for key, label in labelled.items() if label and metric in scores[key]])
    bad = np.array([scores[key][metric] for key, label in labelled.items() if not label and metric in scores[key]])
    row = MetricAgreement(metric, len(good), len(bad))
    if min(len(good), len(bad)) < MIN_EACH:
        row.auc_note = _too_few(len(good), len(bad))
    else:
        row.auc = auc_estimate(good, bad, resamples, seed)
    pairs = []
    criteria = {name for review in reviews.values() for name in review.ratings}
    row.criterion = MEAN_RATING if metric == COMPOSITE else metric if metric in criteria else None
    for key, review in reviews.items():
        if metric not in scores.get(key, {}):
            continue
        if metric == COMPOSITE and review.ratings:
            pairs.append((scores[key][metric], float(np.mean(list(review.ratings.values())))))
        elif metric in review.ratings:
            pairs.append((scores[key][metric], float(review.ratings[metric])))
    if row.criterion is None:
        row.spearman_note = f"no rating on a criterion named {metric!r}"
    elif len(pairs) < MIN_RATED:
        row.spearman_note = f"too few rated samples: {len(pairs)} (needs {MIN_RATED})"
    else:
        metric_values, ratings = map(np.array, zip(*pairs))
        if np.ptp(ratings) == 0:
            row.spearman_note = f"every rating is {ratings[0]:g}: nothing to rank"
        elif np.ptp(metric_values) == 0:
            row.spearman_note = f"every score is {metric_values[0]:g}: nothing to rank"
        else:
            row.spearman = spearman_estimate(metric_values, ratings, resamples, seed)
    return row


def _too_few(good: int, bad: int) -> str:
    return f"too few labels: {good} good, {bad} bad (needs {MIN_EACH} of each)"


def _flags(row: MetricAgreement) -> list[str]:
    flags = []
    if row.auc is not None:
        a = row.auc
        if a.value < 0.5:
            flags.append(f"{row.metric}: disagrees with people: scores bad samples above good ones (AUC "
                         f"{a.value:.2f}, {row.good} good, {row.bad} bad)")
        elif a.low <= 0.5:
            flags.append(f"{row.metric}: not shown to agree with people: AUC {a.value:.2f}, 95% interval "
                         f"{a.low:.2f} to {a.high:.2f} includes 0.5 ({row.good} good, {row.bad} bad)")
    if row.spearman is not None:
        s, against = row.spearman, ("the mean rating" if row.criterion == MEAN_RATING
                                    else f"the {row.criterion} ratings")
        if s.value < 0:
            flags.append(f"{row.metric}: disagrees with people: ranks against {against} (Spearman {s.value:.2f}, "
                         f"n {s.n})")
        elif s.low <= 0:
            flags.append(f"{row.metric}: not shown to agree with {against}: Spearman {s.value:.2f}, 95% interval "
                         f"{s.low:.2f} to {s.high:.2f} includes 0 (n {s.n})")
    return flags


def _gate(name: str, bars: dict[str, float], labelled: dict, scores: dict) -> GateCheck:
    keys = [key for key in labelled if all(metric in scores[key] for metric in bars)]
    truth = np.array([labelled[key] for key in keys], dtype=bool)
    good, bad = int(truth.sum()), int((~truth).sum())
    check = GateCheck(name, bars[name] if name in bars else None, len(keys), good)
    if min(good, bad) < MIN_EACH:
        check.note = _too_few(good, bad)
        return check
    passing = np.array([all(scores[key][metric] >= bar for metric, bar in bars.items()) for key in keys],
                       dtype=bool)
    check.at_bar = _cut(check.bar, passing, truth)
    if name == WHOLE_GATE:
        return check
    values = np.array([scores[key][name] for key in keys])
    fpr, tpr, thresholds = roc_curve(truth, values, drop_intermediate=False)
    j = tpr[1:] - fpr[1:]  # the first threshold (infinite) passes nothing
    best = int(np.argmax(j)) + 1  # ties: the highest such bar
    if j[best - 1] <= 0:
        check.note = "no bar separates good from bad better than keeping every sample"
    else:
        threshold = float(thresholds[best])
        check.best = _cut(threshold, values >= threshold, truth, float(j[best - 1]))
    return check


def _cut(threshold: float | None, passing: np.ndarray, truth: np.ndarray, j: float | None = None) -> Cut:
    hits = int((passing & truth).sum())
    return Cut(threshold, int(passing.sum()),
               hits / int(passing.sum()) if passing.any() else None, hits / int(truth.sum()), j)
