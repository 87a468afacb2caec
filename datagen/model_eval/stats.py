"""How sure a comparison of models is: bootstrap intervals of a mean and of a paired comparison.

Held-out splits are small (a tenth of a run: tens to a few hundred samples), so a mean alone says little: two
models 0.03 apart may be indistinguishable. Each mean gets a 95% bootstrap interval, and each pair of models is
compared sample by sample, on the samples both answered: how often the first scores higher (the win rate, a tie
counting half) and by how much on average, each with a paired bootstrap interval (the resampling keeps each
sample's two scores together, so the variation between samples, which both models share, cancels). Intervals are
scipy.stats.bootstrap's BCa (bias-corrected and accelerated: Efron and Tibshirani 1993, ch. 14), with a fixed seed
so that the same scores always give the same report.
"""

import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 0


def _interval(data: tuple[np.ndarray, ...], statistic, paired: bool) -> tuple[float, float]:
    """The BCa interval of `statistic` over `data`; where every resample gives the same value (all scores equal,
    or one sample), that value at both ends."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns of degenerate data, which the check below handles
        result = stats.bootstrap(data, statistic, paired=paired, vectorized=True, confidence_level=CONFIDENCE,
                                 n_resamples=RESAMPLES, method="BCa", rng=np.random.default_rng(SEED))
    low, high = result.confidence_interval
    if np.isnan(low) or np.isnan(high):
        value = float(statistic(*data, axis=-1))
        return value, value
    return float(low), float(high)


def mean_interval(values: Sequence[float]) -> dict:
    """The mean of `values` with its 95% bootstrap interval.

    Args:
        values: one score per sample, each in [0, 1].

    Returns:
        {"mean", "low", "high", "n"}; mean, low and high are None when `values` is empty.
    """
    data = np.asarray(values, dtype=float)
    if not len(data):
        return {"mean": None, "low": None, "high": None, "n": 0}
    low, high = _interval((data,), np.mean, paired=False) if len(data) > 1 else (float(data[0]),) * 2
    return {"mean": float(data.mean()), "low": low, "high": high, "n": len(data)}


def _win_rate(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean((a > b) + 0.5 * (a == b), axis=axis)


def _difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a - b, axis=axis)


def paired_comparison(first: Sequence[float], second: Sequence[float]) -> dict:
    """How `first` compares with `second`, sample by sample.

    Args:
        first: one model's scores, one per sample.
        second: the other model's scores on the same samples, in the same order.

    Returns:
        {"n", "wins", "ties", "losses", "win_rate", "win_low", "win_high", "difference", "difference_low",
        "difference_high"}: the win rate (a tie counts half) and the mean difference `first - second`, each with
        its paired 95% bootstrap interval; the rates and differences are None when there are no samples.

    Raises:
        ValueError: the two have different lengths.
    """
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired scores of different lengths: {len(a)} and {len(b)}")
    counts = {"n": len(a), "wins": int((a > b).sum()), "ties": int((a == b).sum()), "losses": int((a < b).sum())}
    if not len(a):
        return {**counts, **dict.fromkeys(("win_rate", "win_low", "win_high", "difference", "difference_low",
                                           "difference_high"))}
    win, difference = float(_win_rate(a, b)), float(_difference(a, b))
    win_low, win_high = _interval((a, b), _win_rate, paired=True) if len(a) > 1 else (win, win)
    low, high = _interval((a, b), _difference, paired=True) if len(a) > 1 else (difference, difference)
    return {**counts, "win_rate": win, "win_low": win_low, "win_high": win_high, "difference": difference,
            "difference_low": low, "difference_high": high}


def separated(first: dict, second: dict) -> bool:
    """Whether two `mean_interval`s do not overlap (the first above the second)."""
    return None not in (first["low"], second["high"]) and first["low"] > second["high"]
