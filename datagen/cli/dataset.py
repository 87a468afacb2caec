"""The commands that hand a run's dataset on: `export` it as a file format or for a trainer, `push` it to the
Hugging Face Hub."""

from pathlib import Path
from typing import Annotated

import typer

from datagen.cli.options import MinScore, min_scores
from datagen.cli.output import err, plural, say
from datagen.cli.quality import (KeepContaminated, KeepNearDuplicates, NearDuplicates, Ngram, Protect, say_left_out,
                                 screen_from)
from datagen.errors import InputError
from datagen.util import interrupted

RunDir = Annotated[Path, typer.Argument(help="A run folder made by `datagen generate` (holds run.db).")]
System = Annotated[str | None, typer.Option(help="System prompt put first in every conversation.")]
ValFraction = Annotated[float, typer.Option("--val-fraction", help="Share of the non-test samples put in the "
                                            "validation split (by near-duplicate group); 0: none.")]
ReviewedOnly = Annotated[bool, typer.Option("--reviewed-only", help="Only samples a person approved or corrected "
                                            "in datagen view.")]
ExcludeRejected = Annotated[bool, typer.Option("--exclude-rejected", help="Leave out samples a person rated bad "
                                               "in datagen view (and did not correct).")]


def review_filter(reviewed_only: bool, exclude_rejected: bool) -> str | None:
    """--reviewed-only and --exclude-rejected as `run_samples`'s `reviewed` (refusing both at once)."""
    from datagen.dataset.review import NOT_REJECTED, REVIEWED

    if reviewed_only and exclude_rejected:
        raise InputError("--reviewed-only keeps approved samples, which already leaves out rejected ones: give "
                         "one of the two")
    return REVIEWED if reviewed_only else NOT_REJECTED if exclude_rejected else None


def _counts(splits: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in splits.items())


def export_run(
    run_dir: RunDir,
    fmt: Annotated[str | None, typer.Option("--format", "-f", help="sharegpt, alpaca, openai (chat messages), hf "
                                            "(Hugging Face dataset folder), jsonl or parquet.")] = None,
    trainer: Annotated[str | None, typer.Option("--for", help="Write the data and a config for a trainer instead: "
                                                "axolotl, trl, llama-factory or unsloth (docs/training.md).")] = None,
    out_path: Annotated[Path | None, typer.Option("--out", "-o", help="The train split's file (a folder for hf and "
                                                  "--for; default: in the run folder).")] = None,
    system: System = None,
    val_fraction: ValFraction = 0.1,
    min_score: MinScore = None,
    reviewed_only: ReviewedOnly = False,
    exclude_rejected: ExcludeRejected = False,
    base_model: Annotated[str | None, typer.Option("--base-model", help="--for: the Hugging Face id or local path "
                                                   "of the model to fine-tune.")] = None,
    adapter: Annotated[str | None, typer.Option(help="--for: lora, qlora or full (default: lora).")] = None,
    sequence_len: Annotated[int | None, typer.Option("--sequence-len", help="--for: the longest sequence in tokens "
                                                     "(default: measured from the data).")] = None,
    epochs: Annotated[float | None, typer.Option(help="--for: passes over the train split (default: 3).")] = None,
    learning_rate: Annotated[float | None, typer.Option("--learning-rate", help="--for: default 2e-4 for lora and "
                                                        "qlora, 2e-5 for full.")] = None,
    template: Annotated[str | None, typer.Option(help="--for: the trainer's name of a chat template (default: the "
                                                 "base model's own).")] = None,
    near_duplicates: NearDuplicates = None,
    keep_near_duplicates: KeepNearDuplicates = False,
    keep_contaminated: KeepContaminated = False,
    protect: Protect = None,
    ngram: Ngram = 13,
) -> None:
    """Export a run's samples as a file format (--format) or for a trainer (--for), with a dataset card: the train
    split, and the validation and held-out test splits beside it (NAME.validation.jsonl, NAME.test.jsonl; hf: a
    split each; --for: train.jsonl, validation.jsonl, test.jsonl and a config that never names test). A sample a
    person corrected in `datagen view` is exported as corrected. Near-duplicates of an earlier sample and samples
    sharing a 13-gram with the dev set or the held-out split are left out (`datagen quality` lists them)."""
    from datagen.dataset.export import export_for_trainer, write_export
    from datagen.dataset.trainers import TrainingSettings

    if fmt is not None and trainer is not None:
        raise InputError("give --format FORMAT (a file format) or --for TRAINER (data and a config for a trainer), "
                         "not both")
    if fmt is None and trainer is None:
        raise InputError("give --format FORMAT (a file format) or --for TRAINER (data and a config for a trainer)")
    reviewed = review_filter(reviewed_only, exclude_rejected)
    screen = screen_from(near_duplicates, keep_near_duplicates, keep_contaminated, protect, ngram)
    if fmt is not None:
        given = [flag for flag, value in (("--base-model", base_model), ("--sequence-len", sequence_len),
                                          ("--learning-rate", learning_rate), ("--template", template),
                                          ("--adapter", adapter), ("--epochs", epochs)) if value is not None]
        if given:
            raise InputError(f"{given[0]} goes with --for TRAINER, not --format")
        if fmt == "hf":  # the hf export imports datasets, and so huggingface_hub, which parses HF_ENDPOINT
            from datagen.dataset.hub import check_endpoint

            check_endpoint()
        result = write_export(run_dir, fmt, out_path, system, val_fraction, min_scores(min_score), reviewed, screen)
        say(f"{fmt}: {result.path} ({plural(result.samples, 'sample')}: {_counts(result.splits)})")
        say_left_out(result.left_out)
        if result.card is not None:  # None: it could not be written, which a warning has said
            say(f"dataset card: {result.card}", to=err)
        return
    if not base_model:
        raise InputError(f"--for {trainer} needs --base-model: the Hugging Face id or local path of the model to "
                         "fine-tune, e.g. Qwen/Qwen2.5-0.5B-Instruct")
    chosen = {key: value for key, value in (("adapter", adapter), ("epochs", epochs)) if value is not None}
    settings = TrainingSettings(base_model, sequence_len=sequence_len, learning_rate=learning_rate, system=system,
                                template=template, **chosen)  # what is left out: TrainingSettings' defaults
    result = export_for_trainer(run_dir, trainer, settings, out_path, val_fraction=val_fraction,
                                min_scores=min_scores(min_score), reviewed=reviewed, screen=screen)
    say_left_out(result.left_out)
    say(f"{trainer}: {result.folder} ({_counts(result.records)}; sequence length {result.sequence_len}, the "
        f"longest record {result.longest_tokens} tokens)")
    say(f"train with: {result.command}")
    say("test.jsonl is the held-out split: no config names it; evaluate the trained model on it", to=err)


def push_run(
    run_dir: RunDir,
    repo_id: Annotated[str, typer.Argument(help="The dataset repository on the Hub: NAMESPACE/NAME (or NAME, in "
                                                "the token's own namespace); created if it does not exist.")],
    public: Annotated[bool, typer.Option("--public", help="Create the repository public (default: "
                                                          "private).")] = False,
    license_id: Annotated[str | None, typer.Option("--license", help="The data's licence as the Hub names it, e.g. "
                                                   "cc-by-4.0 (default: none in the card).")] = None,
    language: Annotated[list[str] | None, typer.Option("--language", help="A language code for the card, e.g. en "
                                                       "(repeatable).")] = None,
    system: System = None,
    val_fraction: ValFraction = 0.1,
    min_score: MinScore = None,
    reviewed_only: ReviewedOnly = False,
    exclude_rejected: ExcludeRejected = False,
    message: Annotated[str | None, typer.Option("--message", "-m", help="The commit message.")] = None,
    near_duplicates: NearDuplicates = None,
    keep_near_duplicates: KeepNearDuplicates = False,
    keep_contaminated: KeepContaminated = False,
    protect: Protect = None,
    ngram: Ngram = 13,
) -> None:
    """Push a run's samples to the Hugging Face Hub as a dataset: the splits as parquet, a dataset card and the
    provenance, in one commit (private unless --public). The token is HF_TOKEN's, else `hf auth login`'s."""
    from datagen.dataset.hub import check_endpoint
    from datagen.dataset.hub import push_run as push

    check_endpoint()
    screen = screen_from(near_duplicates, keep_near_duplicates, keep_contaminated, protect, ngram)
    import datasets  # noqa: F401  (before quiet_libraries: importing it sets huggingface_hub's log level)

    from datagen.cli.logs import quiet_libraries

    quiet_libraries()
    try:
        result = push(run_dir, repo_id, private=not public, license=license_id, language=language,
                      min_scores=min_scores(min_score), reviewed=review_filter(reviewed_only, exclude_rejected),
                      val_fraction=val_fraction, system=system, message=message, screen=screen)
    except KeyboardInterrupt as exc:
        raise interrupted(exc, "the push may have stopped before its commit or just after it; run the same command "
                               "again to finish it (nothing already uploaded is sent again)") from None
    say_left_out(result.left_out)
    state = "private" if result.private else "public"
    if result.committed:
        say(f"pushed to {result.url} ({state}; {_counts(result.splits)}): commit {result.commit}")
    else:
        say(f"{result.url} ({state}; {_counts(result.splits)}) already holds this dataset: no new commit "
            f"({result.commit})")
