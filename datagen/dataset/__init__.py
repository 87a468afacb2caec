"""Datasets: exports for trainers, human reviews, and dev sets."""

from datagen.dataset.devset import DevItem, read_devset, reviewed_devset, sample_devset, write_devset
from datagen.dataset.export import FORMATS, dataset_card, run_samples, write_export
from datagen.dataset.review import VERDICTS, checked_review

__all__ = ["DevItem", "FORMATS", "VERDICTS", "checked_review", "dataset_card", "read_devset", "reviewed_devset",
           "run_samples", "sample_devset", "write_devset", "write_export"]
