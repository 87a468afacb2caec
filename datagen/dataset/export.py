"""Dataset exports: the record formats, and `write_export`, which writes a run's samples in one of them.

Every export reads the run store in chunk order, so each finished sample appears exactly once; it is written
under a temporary name and renamed into place, and a dataset card (README.md) beside it records where the
data came from: pipeline, program fingerprint, model, counts, failures, date.
"""

import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from datagen.text.chunking import Chunk
from datagen.errors import DatagenError, DiskError
from datagen.util import json_line, jsonl_sink, replacing, write_jsonl
from datagen.dataset.records import (FLAT_FIELDS, alpaca_record, flat_record, openai_record, sample_id,
                                     sharegpt_record)
from datagen.dataset.card import CARD_FILE, check_card, dataset_card, write_card
from datagen.dataset.splits import held_out, recorded_splits, validation_group
from datagen.dataset.trainers import TrainerExport, TrainingSettings, write_trainer_export
from datagen.dataset.trainers import check_settings as check_trainer_settings
from datagen.dataset.review import NOT_REJECTED, REVIEWED, approved, as_reviewed, keeps
from datagen.dataset.screening import KEEP_ALL, Flag, RunQuality, SampleIndex, Screen, measure
from datagen.samples import Sample
from datagen.store import SYSTEM_PROMPT, RunStore

log = logging.getLogger(__name__)

FORMATS = ("sharegpt", "alpaca", "openai", "hf", "jsonl", "parquet")
# generate's dataset is the sharegpt export at its default place, with each sample's chunk and provenance beside it.
METADATA_FILE = "metadata.jsonl"
# Where each format is written in the run folder unless told otherwise (hf is a folder).
DEFAULT_NAMES = {"sharegpt": "sharegpt.jsonl", "alpaca": "alpaca.jsonl", "openai": "openai.jsonl",
                 "jsonl": "samples.jsonl", "parquet": "dataset.parquet", "hf": "hf"}
SPLITS = ("train", "validation", "test")


_CHAT_RECORDS = {"sharegpt": sharegpt_record, "alpaca": alpaca_record, "openai": openai_record}


def run_samples(store: RunStore, min_scores: dict[str, float] | None = None,
                reviewed: str | None = None) -> Iterator[tuple[Chunk, int, Sample]]:
    """Every finished sample once, in chunk order, with its chunk and its index within the chunk, as reviewed (a
    person's correction replaces the generated text: see datagen.dataset.review). With `min_scores` ({metric: bar}),
    only the samples whose score reaches the bar on each, or that a person approved (quality gating: the others
    stay in the store, so a bar can be moved without running anything again); with `reviewed`
    (review.REVIEWED or review.NOT_REJECTED), only the approved samples, or all but the rejected ones."""
    reviews = store.reviews()
    for chunk, samples in store.done():
        scores = store.sample_scores(chunk.id) if min_scores else {}
        for index, sample in enumerate(samples):
            review = reviews.get((chunk.id, index))
            if keeps(review, reviewed) and (approved(review) or passes(scores.get(index, {}), min_scores)):
                yield chunk, index, as_reviewed(sample, review)


def split_samples(store: RunStore, min_scores: dict[str, float] | None = None, reviewed: str | None = None,
                  val_fraction: float = 0.1) -> dict[str, list[tuple[Chunk, int, Sample]]]:
    """The samples `run_samples` keeps, by split, none screened out (`select_samples` with KEEP_ALL)."""
    return select_samples(store, min_scores, reviewed, val_fraction, KEEP_ALL).splits


@dataclass
class Selection:
    """The samples an export writes, `splits` ({"train": [(chunk, index, sample)], "validation": ..., "test":
    ...}, each in chunk order), the ones its screen left out (`left_out`: {(chunk id, index): Flag}), and the
    run's measured `quality` (None: nothing screened)."""

    splits: dict[str, list[tuple[Chunk, int, Sample]]]
    left_out: dict[tuple[str, int], Flag] = field(default_factory=dict)
    quality: RunQuality | None = None

    @property
    def left_out_counts(self) -> dict[str, int]:
        """{reason: samples left out}, for each reason that left one out."""
        return dict(Counter(flag.reason for flag in self.left_out.values()))


def select_samples(store: RunStore, min_scores: dict[str, float] | None = None, reviewed: str | None = None,
                   val_fraction: float = 0.1, screen: Screen = Screen(), *, workspace: Path | None = None,
                   embed=None, lexical_index: SampleIndex | None = None) -> Selection:
    """The samples an export writes, by split: those `run_samples` keeps, less those `screen` leaves out (near-
    duplicates of an earlier kept sample, contaminated ones: datagen.dataset.screening, measured and recorded on
    first use). A sample is in test when its chunk is held out (the run's recorded split, drawn first when the run
    has none: datagen.dataset.splits.recorded_splits); else in validation when its chunk's near-duplicate group is
    carved out by `val_fraction` (`validation_group`), else in train. `workspace`, `embed` and `lexical_index`: as
    `screening.measure` takes them."""
    kept = list(run_samples(store, min_scores, reviewed))
    quality = None if screen == KEEP_ALL else measure(store, screen, workspace=workspace, embed=embed,
                                                                lexical_index=lexical_index)
    flags = quality.flags([(chunk.id, index) for chunk, index, _ in kept], screen) if quality else {}
    splits: dict[str, list] = {name: [] for name in SPLITS}
    recorded = recorded_splits(store)
    for chunk, index, sample in kept:
        if (chunk.id, index) in flags:
            continue
        own = recorded[chunk.id]
        name = "test" if own.split == "test" else "validation" if validation_group(own.group, val_fraction) \
            else "train"
        splits[name].append((chunk, index, sample))
    return Selection(splits, flags, quality)


def passes(scores: dict[str, float], min_scores: dict[str, float] | None) -> bool:
    """Whether a sample's scores reach every bar; a sample never scored on a metric does not reach its bar."""
    return all(scores.get(name, -1.0) >= bar for name, bar in (min_scores or {}).items())


def check_scored(store: RunStore, min_scores: dict[str, float] | None, run: Path | None = None) -> None:
    """Raise DatagenError, naming the run folder (`run`, default the store's), when a bar's metric scored no
    sample."""
    missing = sorted(set(min_scores or {}) - store.scored_metrics())
    if missing:
        raise DatagenError(f"{run or store.path.parent}: no sample has a {missing[0]!r} score; score them with "
                           f"datagen generate ... --min-score {missing[0]}=VALUE (finished chunks are only scored, "
                           "not run again)")


def _record_system_prompt(store: RunStore, system: str | None) -> None:
    """Record in the store the system prompt an export gave its records (None: none): what a model trained on it was
    given, which `datagen eval-model` asks it with. Only `datagen export` records it (generate's own dataset, remade
    on every resume, leaves the prompt of the export a user chose as it was). A run folder on a read-only or full
    disk cannot keep it: said in a warning (the export itself is written)."""
    recorded = store.meta().get(SYSTEM_PROMPT)
    if (json.loads(recorded) if recorded else None) == system:  # none recorded: none given
        return
    try:
        store.set_meta({SYSTEM_PROMPT: json.dumps(system)})
    except DiskError as exc:
        log.warning("this export's system prompt is not recorded, so give datagen eval-model the same --system (or "
                    "--no-system): %s", exc)


# --- exports ------------------------------------------------------------------------------------------------

@dataclass
class Export:
    """What an export wrote: `path`, the train split's file (the folder for hf), with each split's samples."""

    path: Path  # the train split's file, or the folder for hf
    card: Path | None  # None: a README.md datagen did not write is there, and was kept (see write_chat_export)
    samples: int  # in every split
    splits: dict[str, int] = field(default_factory=dict)  # samples by split, for the splits written
    files: dict[str, Path] = field(default_factory=dict)  # the file of each split (not for hf)
    left_out: dict[str, int] = field(default_factory=dict)  # samples the screen left out, by reason


def split_path(target: Path, split: str) -> Path:
    """Where a split of a file export goes: the train split at `target`, the others beside it with the split's
    name before the suffix (openai.jsonl: openai.validation.jsonl, openai.test.jsonl)."""
    return target if split == "train" else target.with_name(f"{target.stem}.{split}{target.suffix}")


def written_splits(store: RunStore, val_fraction: float) -> tuple[str, ...]:
    """The splits an export writes: train; validation when `val_fraction` > 0; test when the run holds one out."""
    return ("train",) + (("validation",) if val_fraction > 0 else ()) + (("test",) if held_out(store) else ())


def _drop_stale(targets: Iterable[Path | None], written: Iterable[str]) -> None:
    """Remove the files an earlier export wrote for a split this one does not write (a validation split gone with
    --val-fraction 0): read beside the new files, they would repeat training samples."""
    gone = [split for split in SPLITS if split not in written]
    for target in (target for target in targets if target is not None):
        for split in gone:
            split_path(target, split).unlink(missing_ok=True)


def write_chat_export(store: RunStore, fmt: str, target: Path, *, system: str | None = None,
                      min_scores: dict[str, float] | None = None, reviewed: str | None = None,
                      val_fraction: float = 0.0, metadata: Path | None = None,
                      provenance: Mapping[str, str] | None = None, screen: Screen = Screen(),
                      lexical_index: SampleIndex | None = None) -> Export:
    """Write a run's samples as chat records, a JSON line each, in chunk order, a file per split, and the
    dataset card beside them.

    Each file is replaced whole: written under a temporary name, then renamed into place.

    Args:
        store: the run's store.
        fmt: "sharegpt", "alpaca" or "openai".
        target: the JSONL file of the train split; the other splits go beside it (`split_path`).
        system: a system prompt put first in every record; None: none.
        min_scores: leave out the samples scored below a bar, {metric: bar} (see `run_samples`).
        reviewed: leave out the samples a person did not approve, or rejected (see `run_samples`).
        val_fraction: the share of the non-test near-duplicate groups in the validation split; 0: no validation
            split (every non-test sample is in train).
        metadata: a second JSONL file, line for line with `target` (a file per split too): each sample's chunk
            id, source and span, then `provenance`; None: none.
        provenance: what each metadata line ends with (generate's: the pipeline and the model).
        screen: the near-duplicates and contaminated samples to leave out (datagen.dataset.screening.Screen);
            default: lexical near-duplicates at 0.6 and samples sharing a 13-gram with the dev set or the held-out
            split; KEEP_ALL: none.
        lexical_index: the samples' lexical near-duplicate pairs, found as a run recorded them
            (datagen.dataset.screening.SampleIndex); None: found here.

    Returns:
        The `Export`. Its `card` is None when the folder holds a README.md that datagen did not write: that one
        is kept, with a warning (`write_export` refuses such a folder before writing anything).
    """
    to_record = _CHAT_RECORDS[fmt]
    selection = select_samples(store, min_scores, reviewed, val_fraction, screen, lexical_index=lexical_index)
    grouped = selection.splits
    files: dict[str, Path] = {}
    with ExitStack() as stack:
        for split in written_splits(store, val_fraction):
            files[split] = split_path(target, split)
            data = stack.enter_context(jsonl_sink(files[split]))
            sidecar = stack.enter_context(jsonl_sink(split_path(metadata, split))) if metadata is not None else None
            for chunk, _, sample in grouped[split]:
                data.write(json_line(to_record(sample, system)))
                if sidecar is not None:
                    sidecar.write(json_line({"chunk_id": chunk.id, "source": chunk.source, "start": chunk.start,
                                         "end": chunk.end, **(provenance or {})}))
    _drop_stale((target, metadata), files)
    counts = {split: len(grouped[split]) for split in files}
    names = [path.name for path in files.values()]
    names += [split_path(metadata, split).name for split in files] if metadata is not None else []
    card = dataset_card(store, fmt, names, sum(counts.values()), system=system, splits=counts,
                        val_fraction=val_fraction, min_scores=min_scores, reviewed=reviewed,
                        screening=(selection, screen))
    try:
        written = write_card(target.parent, card)
    except DatagenError as exc:  # a README.md that is not ours: keep it, the dataset itself is written
        log.warning("no dataset card: %s", exc)
        written = None
    return Export(target, written, sum(counts.values()), counts, files, selection.left_out_counts)


def _check_target(fmt: str, target: Path) -> None:
    """Refuse a target the export would damage: a folder for a file, or a folder that is not a saved dataset."""
    if fmt == "hf":
        if target.exists() and not target.is_dir():
            raise DatagenError(f"{target}: exists and is not a folder; the hf export is a folder")
        if target.is_dir() and any(target.iterdir()) and not (target / "dataset_dict.json").exists():
            raise DatagenError(f"{target}: a folder that is not a saved dataset; the hf export replaces its "
                               "folder whole, so give it a new one")
    else:
        for split in SPLITS:
            if split_path(target, split).is_dir():
                raise DatagenError(f"{split_path(target, split)}: is a folder; the {fmt} export is a file")
        check_card(target.parent / CARD_FILE)


def write_export(run_dir: str | Path, fmt: str, out_path: str | Path | None = None, system: str | None = None,
                 val_fraction: float = 0.1, min_scores: dict[str, float] | None = None,
                 reviewed: str | None = None, screen: Screen = Screen()) -> Export:
    """Export a run directory's samples, each exactly once, in chunk order, split into train, validation and
    the run's held-out test split (datagen.dataset.splits).

    sharegpt, alpaca, openai and jsonl write JSONL (default `RUN/<fmt>.jsonl`, `RUN/samples.jsonl` for jsonl);
    parquet writes `RUN/dataset.parquet`; each the train split, with the other splits beside it
    (`RUN/openai.validation.jsonl`, `RUN/openai.test.jsonl`: `split_path`) and the card at `README.md` in the
    same folder. hf saves a `datasets.DatasetDict` of the splits to the folder `RUN/hf`, card inside.

    Args:
        run_dir: a run folder made by `datagen generate`.
        fmt: one of FORMATS.
        out_path: the train split's file (the folder for hf); default: in the run folder (DEFAULT_NAMES).
        system: a system prompt put first in every conversation (not for the flat jsonl and parquet records).
        val_fraction: the share of the non-test near-duplicate groups in validation, in [0, 0.5]; default 0.1;
            0: no validation split.
        min_scores: {metric: bar}: leave out the samples scored below a bar (see `run_samples`).
        reviewed: review.REVIEWED or review.NOT_REJECTED: leave out the samples a person did not approve, or
            rejected; a person's correction is exported instead of the generated text.
        screen: the near-duplicates and contaminated samples to leave out (see `write_chat_export`).

    Returns:
        The `Export`: the files, the card, the samples by split, and those the screen left out.

    Raises:
        DatagenError: an unknown format, a bad value, a run with nothing finished, a bar no sample was scored on,
            or a target the export would damage (a folder for a file, a README.md datagen did not write).
        DiskError: the target's disk is full or read-only (what it held is left whole; a run folder is only read).
    """
    run = Path(run_dir)
    if fmt not in FORMATS:
        raise DatagenError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    if not 0 <= val_fraction <= 0.5:
        raise DatagenError(f"--val-fraction must be between 0 and 0.5, got {val_fraction}")
    if system is not None and fmt in ("jsonl", "parquet"):
        raise DatagenError(f"--system does not apply to {fmt} (flat records with no turns): use sharegpt, "
                           "alpaca, openai or hf")
    if reviewed not in (None, REVIEWED, NOT_REJECTED):
        raise ValueError(f"reviewed: {REVIEWED!r}, {NOT_REJECTED!r} or None, got {reviewed!r}")
    target = Path(out_path) if out_path is not None else run / DEFAULT_NAMES[fmt]
    with RunStore.existing(run) as store:
        _check_target(fmt, target)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not store.counts()["done"]:
            raise DatagenError(f"{run}: no finished chunks to export yet (run datagen generate)")
        check_scored(store, min_scores)
        if reviewed == REVIEWED and not store.reviews():
            raise DatagenError(f"{run}: no sample has been reviewed yet (review them with datagen view {run})")
        if fmt in _CHAT_RECORDS:
            # Over generate's own dataset (RUN/sharegpt.jsonl), its metadata is rewritten with it, line for line.
            ours = fmt == "sharegpt" and target.resolve() == (run / DEFAULT_NAMES[fmt]).resolve()
            meta = store.meta()
            export = write_chat_export(store, fmt, target, system=system, min_scores=min_scores, reviewed=reviewed,
                                       val_fraction=val_fraction, metadata=run / METADATA_FILE if ours else None,
                                       provenance={key: meta.get(key, "unknown") for key in ("pipeline", "model")},
                                       screen=screen)
            _record_system_prompt(store, system)
            return export
        return _write_data(store, fmt, target, select_samples(store, min_scores, reviewed, val_fraction, screen),
                           dict(system=system, val_fraction=val_fraction, min_scores=min_scores, reviewed=reviewed,
                                screening=screen))


def _write_data(store: RunStore, fmt: str, target: Path, selection: Selection, settings: dict) -> Export:
    """Write the hf folder, or the jsonl or parquet files, of `selection` at `target`, with the card; `settings`:
    the card's (system, val_fraction, min_scores, reviewed) and the `Screen` applied (`screening`)."""
    grouped, left_out = selection.splits, selection.left_out_counts
    names = written_splits(store, settings["val_fraction"])
    counts = {split: len(grouped[split]) for split in names}
    card_settings = {**settings, "screening": (selection, settings["screening"])}
    if fmt == "hf":
        card = dataset_card(store, fmt, [f"{name}/" for name in names], sum(counts.values()), splits=counts,
                            **card_settings)
        _save_hf(hf_dataset({name: grouped[name] for name in names}, settings["system"]), target, card)
        _record_system_prompt(store, settings["system"])
        return Export(target, target / CARD_FILE, sum(counts.values()), counts, left_out=left_out)
    files = {split: split_path(target, split) for split in names}
    for split, path in files.items():
        if fmt == "parquet":
            _write_parquet(grouped[split], path)
        else:
            write_jsonl(path, (flat_record(*item) for item in grouped[split]))
    _drop_stale((target,), files)
    card = write_card(target.parent, dataset_card(store, fmt, [path.name for path in files.values()],
                                                  sum(counts.values()), splits=counts, **card_settings))
    return Export(target, card, sum(counts.values()), counts, files, left_out)


def export_for_trainer(run_dir: str | Path, trainer: str, settings: TrainingSettings,
                       out_dir: str | Path | None = None, *, val_fraction: float = 0.1,
                       min_scores: dict[str, float] | None = None, reviewed: str | None = None,
                       screen: Screen = Screen()) -> TrainerExport:
    """Export a run for a trainer (`datagen export RUN --for TRAINER`): its splits in the record shape the trainer
    reads and a config (or script) that trains on train and evaluates on validation, never naming the held-out
    test split (datagen.dataset.trainers.write_trainer_export), with the dataset card beside them.

    Args:
        run_dir: a run folder made by `datagen generate`.
        trainer: one of datagen.dataset.trainers.TRAINERS.
        settings: the base model and the training numbers (`TrainingSettings`).
        out_dir: the folder to write; default `RUN/for-TRAINER/`.
        val_fraction: the share of the non-test near-duplicate groups in validation, in [0, 0.5]; default 0.1.
        min_scores: {metric: bar}: leave out the samples scored below a bar (see `run_samples`).
        reviewed: review.REVIEWED or review.NOT_REJECTED (see `run_samples`).
        screen: the near-duplicates and contaminated samples to leave out (see `write_chat_export`).

    Returns:
        The `TrainerExport`, the card last among its files.

    Raises:
        DatagenError: a bad value (InputError, naming its flag), a run with nothing finished, a bar no sample was
            scored on, or a folder holding a README.md datagen did not write.
        DiskError: `out_dir` is on a full or read-only disk, or not writable (as for `write_export`).
    """
    run = Path(run_dir)
    if not 0 <= val_fraction <= 0.5:
        raise DatagenError(f"--val-fraction must be between 0 and 0.5, got {val_fraction}")
    check_trainer_settings(trainer, settings)
    folder = Path(out_dir) if out_dir is not None else run / f"for-{trainer}"
    if folder.exists() and not folder.is_dir():
        raise DatagenError(f"{folder}: exists and is not a folder; --for writes a folder")
    with RunStore.existing(run) as store:
        check_card(folder / CARD_FILE)
        if not store.counts()["done"]:
            raise DatagenError(f"{run}: no finished chunks to export yet (run datagen generate)")
        check_scored(store, min_scores)
        selection = select_samples(store, min_scores, reviewed, val_fraction, screen)
        grouped = selection.splits
        export = write_trainer_export(trainer, {name: [sample for _, _, sample in kept]
                                                for name, kept in grouped.items()}, folder, settings)
        _record_system_prompt(store, settings.system)
        names = [path.name for path in export.files]
        card = dataset_card(store, f"{trainer} (base model {settings.base_model})", names,
                            sum(export.records.values()), system=settings.system, splits=export.records,
                            val_fraction=val_fraction, min_scores=min_scores, reviewed=reviewed,
                            screening=(selection, screen))
        export.files.append(write_card(folder, card))
        export.left_out = selection.left_out_counts
    return export


def _write_parquet(kept: Iterable[tuple[Chunk, int, Sample]], target: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = [(name, pa.int64() if name in ("start", "end") else pa.string()) for name in FLAT_FIELDS]
    rows = [flat_record(*item) for item in kept]
    if any("history" in row for row in rows):  # multi-turn samples: a history column, empty for single turns
        columns.append(("history", pa.list_(pa.list_(pa.string()))))
        rows = [{"history": [], **row} for row in rows]
    schema = pa.schema(columns)
    with replacing(target) as partial:
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), partial)
    return len(rows)


def hf_features():
    """The features of the `hf` export and of a Hub push: the chat `messages` (openai form) and the flat fields."""
    import datasets

    return datasets.Features({
        "messages": [{"role": datasets.Value("string"), "content": datasets.Value("string")}],
        **{name: datasets.Value("int64" if name in ("start", "end") else "string") for name in FLAT_FIELDS}})


def hf_dataset(splits: Mapping[str, Iterable[tuple[Chunk, int, Sample]]], system: str | None = None):
    """A `datasets.DatasetDict` with a split per key of `splits` (as `split_samples` returns them), in the order
    given; each record the chat `messages` (`openai_record`, `system` first when given) and the flat fields
    (`flat_record`; a multi-turn sample's history is in its messages)."""
    import datasets

    features = hf_features()
    columns = {split: {name: [] for name in features} for split in splits}
    for split, kept in splits.items():
        for chunk, index, sample in kept:
            record = {**openai_record(sample, system), **flat_record(chunk, index, sample)}
            for name in features:
                columns[split][name].append(record[name])
    return datasets.DatasetDict({split: datasets.Dataset.from_dict(columns[split], features=features)
                                 for split in splits})


def _save_hf(dataset, target: Path, card: str) -> None:
    """save_to_disk into a sibling folder with the card, then swap it in for the previous export."""
    import datasets

    bars = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        with replacing(target) as partial:
            # An empty split (val_fraction 0, a tiny run) would be saved with no shard at all, which
            # load_from_disk cannot read back (datasets 5.2): give it one, empty.
            empty = {name: 1 for name, split in dataset.items() if len(split) == 0}
            dataset.save_to_disk(str(partial), num_shards=empty or None)
            write_card(partial, card)
    finally:
        if bars:
            datasets.enable_progress_bars()
