"""Datasets: exports for trainers, pushes to the Hugging Face Hub, the held-out split, human reviews, and dev sets."""

from datagen.dataset.devset import DevItem, read_devset, recut, reviewed_devset, sample_devset, write_devset
from datagen.dataset.card import dataset_card
from datagen.dataset.export import (FORMATS, check_scored, export_for_trainer, run_samples, sample_id, split_samples,
                                    write_chat_export, write_export)
from datagen.dataset.hub import PushResult, push_run
from datagen.dataset.review import NOT_REJECTED, REVIEWED, VERDICTS, checked_review
from datagen.dataset.splits import draw_splits, recorded_splits
from datagen.dataset.trainers import TRAINERS, TrainerExport, TrainingSettings

__all__ = ["DevItem", "FORMATS", "NOT_REJECTED", "PushResult", "REVIEWED", "TRAINERS", "TrainerExport",
           "TrainingSettings", "VERDICTS", "check_scored", "checked_review", "dataset_card", "draw_splits",
           "export_for_trainer", "push_run", "read_devset", "recut", "recorded_splits", "reviewed_devset",
           "run_samples", "sample_devset", "sample_id", "split_samples", "write_chat_export", "write_devset",
           "write_export"]
