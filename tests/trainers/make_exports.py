"""Write the trainer exports that tests/trainers/ checks with each trainer's own code (run by `make trainers` in
datagen's own .venv; the trainers' venvs need not hold datagen): python -m tests.trainers.make_exports OUT

Each export is OUT/<trainer>-<variant>/: lora (a validation split, a system prompt, a multi-turn sample), full
(no validation split), qlora, and run: a real run of style_clone on the sample corpus (a fake model answering),
exported as `datagen export RUN --for TRAINER` writes it, dataset card included.
"""

import sys
from pathlib import Path

from datagen.dataset.export import export_for_trainer
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


def _run(out: Path) -> Path:
    """A style_clone run over the repository's sample corpus, its held-out split drawn (a fake model answers)."""
    from datagen.runs import RunSettings
    from datagen.runs.generate import generate
    from datagen.workspace import Config
    from tests.fakes import FakeEngine
    from tests.test_generate import fake_model

    root = Path(__file__).resolve().parents[2]
    generate("style_clone", [root / "data/samples"], out / "run", workspace=root, config=Config(),
             model=fake_model(FakeEngine()), settings=RunSettings(max_tokens=200))
    return out / "run"


def main(out: Path) -> None:
    run = _run(out)
    for trainer in TRAINERS:
        export = export_for_trainer(run, trainer, TrainingSettings(BASE_MODEL), out / f"{trainer}-run", val_fraction=0.3)
        print(f"{trainer}-run: {', '.join(f.name for f in export.files)}; {export.command}")
    for trainer in TRAINERS:
        for variant, (settings, splits) in VARIANTS.items():
            if trainer == "unsloth" and settings.adapter == "full":
                continue
            export = write_trainer_export(trainer, splits, out / f"{trainer}-{variant}", settings)
            print(f"{trainer}-{variant}: {', '.join(f.name for f in export.files)}; {export.command}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
