"""The statistics the metric checks share: paired accuracy, AUC and Spearman's rank correlation (each bare, or with
a seeded percentile-bootstrap interval), and the two ways a check takes a few items out of many.

An AUC here is the Mann-Whitney one: the probability that a random positive scores above a random negative, ties
counting half (`sklearn.metrics.roc_auc_score`, which computes exactly that for two classes).
"""

import random
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.stats import mannwhitneyu, pearsonr, rankdata, spearmanr
from sklearn.metrics import roc_auc_score

from datagen.errors import DatagenError

_BATCH_CELLS = 2_000_000  # bootstrap resamples are drawn in batches of about this many values


@dataclass(frozen=True)
class Estimate:
    """A statistic's `value` over `n` samples with its 95% percentile-bootstrap interval [`low`, `high`]."""

    value: float
    low: float
    high: float
    n: int


def wins(better, worse) -> np.ndarray:
    """Each pair's result for its first side: 1 where it scores above the second, 0.5 on a tie, 0 below.

    Args:
        better: the scores of the side that should win, one per pair.
        worse: the other side's scores, in the same order.

    Returns:
        One value per pair, as floats.

    Raises:
        ValueError: the two sides have different lengths.
    """
    better, worse = np.asarray(better, dtype=float), np.asarray(worse, dtype=float)
    if better.shape != worse.shape:
        raise ValueError(f"paired scores of different lengths: {len(better)} and {len(worse)}")
    return (better > worse) + 0.5 * (better == worse)


def paired_accuracy(better, worse) -> float:
    """How often the first side of a pair scores above the second, a tie counting half (see `wins`)."""
    return float(wins(better, worse).mean())


def auc(positives, negatives) -> float:
    """P(a random positive scores above a random negative), ties counting half (the Mann-Whitney AUC).

    Args:
        positives: the scores of the side that should score higher.
        negatives: the other side's scores.

    Returns:
        The AUC, in [0, 1].

    Raises:
        DatagenError: a side is empty.
    """
    if not len(positives) or not len(negatives):
        raise DatagenError("AUC needs at least one passage on each side")
    labels = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
    return float(roc_auc_score(labels, np.r_[np.asarray(positives, dtype=float), np.asarray(negatives, dtype=float)]))


def auc_estimate(good: np.ndarray, bad: np.ndarray, resamples: int, seed: int) -> Estimate:
    """The AUC of `good` (positive) against `bad`, with a stratified percentile bootstrap (good and bad resampled
    apart, so both keep their numbers): the Mann-Whitney U of each resample over its pairs is the same AUC,
    computed for a whole batch of resamples at once.

    Args:
        good: the scores of the samples people rated good.
        bad: the scores of those rated bad.
        resamples: how many bootstrap resamples.
        seed: the resamples' seed.

    Returns:
        The AUC over n = len(good) + len(bad) samples, with its interval.
    """
    value = auc(good, bad)
    rng, draws = np.random.default_rng(seed), []
    for batch in _batches(resamples, len(good) + len(bad)):
        g = good[rng.integers(0, len(good), (batch, len(good)))]
        b = bad[rng.integers(0, len(bad), (batch, len(bad)))]
        draws.append(mannwhitneyu(g, b, axis=1, method="asymptotic").statistic / (len(good) * len(bad)))
    low, high = np.percentile(np.concatenate(draws), [2.5, 97.5])
    return Estimate(value, float(low), float(high), len(good) + len(bad))


def spearman_estimate(values: np.ndarray, ratings: np.ndarray, resamples: int, seed: int) -> Estimate:
    """Spearman's rank correlation of `values` and `ratings` (`scipy.stats.spearmanr`), with a percentile bootstrap
    over the pairs: each resample's rank correlation is the Pearson correlation of its ranks; a resample with no
    spread on a side has none, and is left out.

    Args:
        values: a metric's scores.
        ratings: the ratings of the same samples, in the same order.
        resamples: how many bootstrap resamples.
        seed: the resamples' seed.

    Returns:
        The correlation over n = len(values) pairs, with its interval ([-1, 1] when no resample had one).
    """
    value = spearmanr(values, ratings).statistic
    rng, draws = np.random.default_rng(seed), []
    for batch in _batches(resamples, len(values)):
        picks = rng.integers(0, len(values), (batch, len(values)))
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            draws.append(pearsonr(rankdata(values[picks], axis=1), rankdata(ratings[picks], axis=1),
                                  axis=1).statistic)
    draws = np.concatenate(draws)
    draws = draws[np.isfinite(draws)]
    low, high = np.percentile(draws, [2.5, 97.5]) if len(draws) else (-1.0, 1.0)
    return Estimate(float(value), float(low), float(high), len(values))


def _batches(resamples: int, size: int) -> list[int]:
    step = max(1, _BATCH_CELLS // max(1, size))
    return [min(step, resamples - start) for start in range(0, resamples, step)]


def random_sample(items: list, limit: int, seed: int = 0) -> list:
    """At most `limit` of `items`, drawn at random (seeded); all of them, in their order, when they are no more."""
    return items if len(items) <= limit else random.Random(seed).sample(items, limit)


def evenly_spaced(items: list, limit: int) -> list:
    """At most `limit` of `items`, evenly spaced through the list (an author's whole book, not its first pages)."""
    if len(items) <= limit:
        return items
    return [items[i * len(items) // limit] for i in range(limit)]
