"""Datasets: exports for trainers, pushes to the Hugging Face Hub, human reviews, and dev sets."""

from datagen.dataset.devset import DevItem, read_devset, recut, reviewed_devset, sample_devset, write_devset
from datagen.dataset.card import dataset_card
from datagen.dataset.export import (FORMATS, check_scored, run_samples, sample_id, write_chat_export,
                                    write_export)
from datagen.dataset.hub import PushResult, push_run
from datagen.dataset.review import NOT_REJECTED, REVIEWED, VERDICTS, checked_review

__all__ = ["DevItem", "FORMATS", "NOT_REJECTED", "PushResult", "REVIEWED", "VERDICTS", "check_scored",
           "checked_review", "dataset_card", "push_run", "read_devset", "recut", "reviewed_devset", "run_samples",
           "sample_devset", "sample_id", "write_chat_export", "write_devset", "write_export"]
