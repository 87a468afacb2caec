"""Write the trainer exports that tests/trainers/ checks with each trainer's own code (run by `make trainers` in
datagen's own .venv; the trainers' venvs need not hold datagen): python -m tests.trainers.make_exports OUT

Each export is OUT/<trainer>-<variant>/: lora (a validation split, a system prompt, a multi-turn sample), full
(no validation split), qlora.
"""

import sys
from pathlib import Path

from datagen.dataset.trainers import TRAINERS, TrainingSettings, write_trainer_export
from datagen.samples import Sample

BASE_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"  # named only: nothing is downloaded
SPLITS = {
    "train": [Sample(f"Plain sentence number {i}.", f"Styled sentence number {i}, with flourish.") for i in range(6)]
    + [Sample("And the third?", "The third answer.", history=(("First?", "First answer."), ("Second?", "Second.")))],
    "validation": [Sample("A plain validation line.", "A styled validation line.")] * 2,
    "test": [Sample("A plain held-out line.", "A styled held-out line.")] * 3,
}
VARIANTS = {
    "lora": (TrainingSettings(BASE_MODEL, system="Rewrite in the author's style."), SPLITS),
    "full": (TrainingSettings(BASE_MODEL, adapter="full", epochs=1.0), {**SPLITS, "validation": []}),
    "qlora": (TrainingSettings(BASE_MODEL, adapter="qlora", sequence_len=2048), SPLITS),
}


def main(out: Path) -> None:
    for trainer in TRAINERS:
        for variant, (settings, splits) in VARIANTS.items():
            if trainer == "unsloth" and settings.adapter == "full":
                continue
            export = write_trainer_export(trainer, splits, out / f"{trainer}-{variant}", settings)
            print(f"{trainer}-{variant}: {', '.join(f.name for f in export.files)}; {export.command}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
