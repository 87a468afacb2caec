"""Evaluating models trained on a run's data, on the run's held-out test split (`datagen eval-model`): the
candidate models (candidates), asking and scoring them (evaluate), the answer store (store), bootstrap intervals
and paired comparisons (stats), and the HTML report (report). docs/eval-model.md is the guide."""

from datagen.model_eval.candidates import Candidate, parse_candidates
from datagen.model_eval.evaluate import (RECORDED, REPORT_FILE, RESULT_FILE, EvaluationSettings, HeldOut, Progress,
                                         evaluate_models, held_out_samples)
from datagen.model_eval.stats import mean_interval, paired_comparison, separated
from datagen.model_eval.store import FOLDER, AnswerStore

__all__ = ["FOLDER", "RECORDED", "REPORT_FILE", "RESULT_FILE", "AnswerStore", "Candidate", "EvaluationSettings",
           "HeldOut", "Progress", "evaluate_models", "held_out_samples", "mean_interval", "paired_comparison",
           "parse_candidates", "separated"]
