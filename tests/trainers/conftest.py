"""The trainers' own code on datagen's exports (`make trainers`): each test file runs in its trainer's venv
(.venv-trainers/<trainer>), on the exports tests/trainers/make_exports.py wrote to $DATAGEN_TRAINER_EXPORTS.
Nothing is downloaded: HF_HUB_OFFLINE=1, and a test that needs a model builds a tiny random one in memory."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def exports() -> Path:
    folder = os.environ.get("DATAGEN_TRAINER_EXPORTS")
    assert folder and Path(folder).is_dir(), "set DATAGEN_TRAINER_EXPORTS to make_exports.py's output (make trainers)"
    return Path(folder)


def folders(exports: Path, trainer: str) -> list[Path]:
    found = sorted(exports.glob(f"{trainer}-*"))
    assert found, f"no {trainer} export in {exports}"
    return found
