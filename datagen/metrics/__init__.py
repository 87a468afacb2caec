"""The reusable metrics: `Score` and the `Metric` shape (base), LLM judges (judges, factual_qa), offline
stylometry, overlap and coverage metrics, the model metrics that score a trained model's answers (answers, scored
by `AnswerScorer`), and the weighted `Composite`. A workspace's metrics/PIPELINE.py chooses
and weighs them; `Scorer` scores samples with a pipeline's suite (scoring). How far a metric can be trusted:
`datagen.metrics.checks`.

The metric modules themselves (judges, stylometry, overlap, ...) are reached by their paths: some load numpy,
scikit-learn or an embedding model, which importing this package does not.
"""

from datagen.metrics.base import Failed, Metric, Score, clamp
from datagen.metrics.composite import Composite
from datagen.metrics.scoring import (COMPOSITE, AnswerScorer, MetricContext, Scorer, diversity_bar,
                                     parse_thresholds, review_criteria, scorer_for)

__all__ = ["COMPOSITE", "AnswerScorer", "Composite", "Failed", "Metric", "MetricContext", "Score", "Scorer", "clamp",
           "diversity_bar", "parse_thresholds", "review_criteria", "scorer_for"]
