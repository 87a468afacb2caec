"""The composite metric: a weighted mean of several metrics, in the forms DSPy's optimizers call.

Ensembles of different metrics are harder to game than any one of them, and keeping each part's score and
feedback lets reports show style, content and fluency apart instead of one opaque number.
"""

from collections.abc import Sequence

import dspy

from datagen.errors import DatagenError
from datagen.samples import Sample
from datagen.metrics.base import Metric, Score


class Composite:
    """A weighted mean of several metrics, callable as a DSPy metric (`__call__`) and as GEPA's (`gepa`).

    A counted metric with a `floor` attribute is also a gate: the weighted mean is multiplied by
    min(1, score / floor), so a sample that fails it (a copy of its chunk, for style_clone's `novelty`) scores near
    0 however well it does on the rest. A weighted mean alone cannot do that: a copy has all of the chunk's content,
    and the content metrics outweigh what it lacks in style.

    Args:
        metrics: the metrics it may weigh (see `datagen.metrics.base.Metric`), told apart by their `name`.
        weights: {metric name: weight}, the metrics that count and how much (relative weights: the mean divides
            by their sum); a metric left out, or weighted 0, counts for nothing.
        threshold: the composite score, in [0, 1], a prediction needs to pass where DSPy wants a verdict
            (bootstrapping); default 0.5.

    Attributes:
        weights: the non-zero weights, as floats, by metric name.
        metrics: the counted metrics, in the order of `weights`.
        threshold: the pass mark, as given.

    Raises:
        DatagenError: a weight names no metric of `metrics` (the message lists them); or the weights are not all
            non-negative, or are all zero.
    """

    def __init__(self, metrics: Sequence[Metric], weights: dict[str, float], threshold: float = 0.5):
        by_name = {metric.name: metric for metric in metrics}
        unknown = sorted(set(weights) - set(by_name))
        if unknown:
            raise DatagenError(f"metric weight {unknown[0]!r}: no such metric (metrics: {', '.join(by_name)})")
        self.weights = {name: float(w) for name, w in weights.items() if w}
        if not self.weights or any(w < 0 for w in self.weights.values()):
            raise DatagenError("metric weights must be non-negative and not all zero")
        self.metrics = [by_name[name] for name in self.weights]
        self.threshold = threshold

    def score_sample(self, chunk: str, sample: Sample) -> tuple[float, dict[str, Score]]:
        scores = {metric.name: metric(chunk, sample) for metric in self.metrics}
        return self.combine(scores), scores

    def combine(self, scores: dict[str, Score]) -> float:
        """The weighted mean of `scores` ({metric: Score}, every counted metric), times each gate's
        min(1, score / floor)."""
        total = sum(self.weights.values())
        value = sum(self.weights[name] * scores[name].value for name in self.weights) / total
        for metric in self.metrics:
            floor = getattr(metric, "floor", None)
            if floor:
                value *= min(1.0, scores[metric.name].value / floor)
        return value

    def score_prediction(self, example, prediction) -> tuple[float, str]:
        """Mean composite over the prediction's samples (0 when it made none), and the feedback of the worst."""
        samples = list(getattr(prediction, "samples", None) or [])
        if not samples:
            return 0.0, "the program produced no samples"
        scored = [self.score_sample(example.chunk, sample) for sample in samples]
        worst = min(scored, key=lambda item: item[0])[1]
        feedback = "; ".join(f"{name} {score.value:.2f}: {score.feedback}" for name, score in worst.items())
        return sum(value for value, _ in scored) / len(scored), feedback

    def __call__(self, example, prediction, trace=None) -> float | bool:
        """DSPy's metric convention: a float for evaluation, a pass/fail verdict while bootstrapping demos.

        While bootstrapping (`trace` is set) it answers a bool, since BootstrapFewShot takes any non-zero float as a
        pass.

        Args:
            example: the dev item, a dspy.Example whose `chunk` is the chunk's text.
            prediction: the program's dspy.Prediction, its `samples` a list of `Sample` (none or missing: scores 0).
            trace: DSPy's trace of the program's calls; default None (evaluation, not bootstrapping).

        Returns:
            With no `trace`: the mean composite score over the prediction's samples, in [0, 1] (0 when it made
            none). With one: whether that mean reaches `threshold`.

        Raises:
            AttributeError: `example` has no `chunk` (when the prediction has samples).
            Exception: whatever a counted metric raises, as it is (this class catches nothing; the `Scorer`'s
                composite counts a failed part as 0 instead).
        """
        value, _ = self.score_prediction(example, prediction)
        return value >= self.threshold if trace is not None else value

    def gepa(self, gold, pred, trace=None, pred_name=None, pred_trace=None) -> dspy.Prediction:
        """GEPA's metric convention: the score with textual feedback for its reflection model to read.

        Args:
            gold: the dev item, a dspy.Example whose `chunk` is the chunk's text.
            pred: the program's dspy.Prediction, its `samples` a list of `Sample`.
            trace: DSPy's trace of the program's calls; unused, default None.
            pred_name: the predictor GEPA is reflecting on; unused (the feedback is the whole program's), default
                None.
            pred_trace: that predictor's trace; unused, default None.

        Returns:
            A dspy.Prediction with `score`, the mean composite over the samples in [0, 1] (0 when there are none),
            and `feedback`, each counted metric's score and feedback on the worst-scored sample ("the program
            produced no samples" when there are none).

        Raises:
            AttributeError: `gold` has no `chunk` (when the prediction has samples).
            Exception: whatever a counted metric raises, as it is.
        """
        value, feedback = self.score_prediction(gold, pred)
        return dspy.Prediction(score=value, feedback=feedback)
