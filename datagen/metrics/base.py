"""What every metric is: a name, and a score in [0, 1] with a short feedback for one sample.

A metric sees the chunk the sample was made from and the sample itself (its input, what the fine-tuned model
will be given, and its output, what it should answer). LLM judges and offline metrics share this shape, so the
composite metric, `datagen evaluate` and quality gating treat them alike.
"""

from typing import Protocol

from datagen.samples import Failed, Sample, Score

__all__ = ["Failed", "Metric", "Score", "clamp"]


class Metric(Protocol):
    """What every metric is: a name, a kind, an aspect, and a call that scores one sample.

    Attributes:
        name: the metric's name, as metrics/PIPELINE.py's `METRICS`, the weights and reports name it.
        kind: "judge" (an LLM call per score) or "offline" (no LLM).
        aspect: what it measures, for `datagen judge-check --pairs/--authors` (datagen.metrics.checks.pairs):
            "style" (the output reads as the author's), "genericness" (the input is free of the author's style),
            "content" (input and output say the same), "boundaries"; a metric without one is left out of those
            checks.
    """

    name: str
    kind: str  # "judge" (an LLM call per score) or "offline" (no LLM)
    # What it measures, for `datagen judge-check --pairs/--authors` (datagen.metrics.checks.pairs): "style" (the
    # output reads as the author's), "genericness" (the input is free of the author's style), "content" (input and
    # output say the same), "boundaries"; a metric without one is left out of those checks.
    aspect: str

    def __call__(self, chunk: str, sample: Sample) -> Score:
        """Score one sample.

        Args:
            chunk: the text of the chunk the sample was made from.
            sample: the sample: its input, what the fine-tuned model will be given, and its output, what it should
                answer.

        Returns:
            The sample's `Score`: its value in [0, 1] (higher is better) and a short feedback.

        Raises:
            Exception: a metric may raise anything (a judge's failed call, say); `datagen.metrics.scoring.measure`
                turns it into a `Failed` score, unless no other sample would escape it.
        """
        ...


def clamp(value: float) -> float:
    return min(1.0, max(0.0, float(value)))
