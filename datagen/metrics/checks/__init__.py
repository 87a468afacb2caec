"""How far a metric can be trusted, the checks of `datagen judge-check`: a pipeline's metrics against perturbed
pairs and several authors (pairs), its style judges against their generic rephrases (judges), a run's scores
against human verdicts (human), and the statistics they share (stats).

Importing this package loads numpy, scipy and scikit-learn; `datagen.metrics` does not import it.
"""

from datagen.metrics.checks.human import MEAN_RATING, WHOLE_GATE, HumanCheck, human_check
from datagen.metrics.checks.judges import Check, check_judges
from datagen.metrics.checks.pairs import (PipelineMetrics, Validity, check_authors, check_pairs, pair_metrics,
                                          perturbations, read_authors, read_pairs)
from datagen.metrics.checks.stats import Estimate

__all__ = ["MEAN_RATING", "WHOLE_GATE", "Check", "Estimate", "HumanCheck", "PipelineMetrics", "Validity",
           "check_authors", "check_judges", "check_pairs", "human_check", "pair_metrics", "perturbations",
           "read_authors", "read_pairs"]
