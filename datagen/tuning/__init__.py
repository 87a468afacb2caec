"""Tuning: evaluating a program on a dev set (evaluate), compiling it with DSPy's optimizers against a metric
(optimize, its optimizers' presets, the estimate of its spend, with the caps of budget and the demo checks of
demos), the samples' diversity and the pipeline's diversity bar (diversity_report), the HTML report (report), and
the pipeline-level search (search).

`datagen.tuning.search` is reached by its path: it loads optuna, which importing this package does not.
"""

from datagen.tuning.budget import CallBudgetExhausted, CallCounter
from datagen.tuning.demos import MAX_DEMOS, DemoCheck, labeled_demos, with_labeled_demos
from datagen.tuning.diversity_report import bar_broken, bar_line, field_diversity
from datagen.tuning.evaluate import (DSPyMetric, Evaluator, MetricScorer, dev_label, evaluate_pipeline,
                                     write_evaluation)
from datagen.tuning.optimize import Result, Session, comparison, held_out_line, optimize_pipeline
from datagen.tuning.presets import OPTIMIZERS, PRESETS, check_optimizers, estimate_calls
from datagen.tuning.report import failed_text, render_report, write_report

__all__ = ["MAX_DEMOS", "OPTIMIZERS", "PRESETS", "CallBudgetExhausted", "CallCounter", "DSPyMetric", "DemoCheck",
           "Evaluator", "MetricScorer", "Result", "Session", "bar_broken", "bar_line", "check_optimizers", "comparison",
           "dev_label", "estimate_calls", "evaluate_pipeline", "failed_text", "field_diversity", "held_out_line",
           "labeled_demos", "optimize_pipeline", "render_report", "with_labeled_demos", "write_evaluation",
           "write_report"]
