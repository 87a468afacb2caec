"""Dev sets: small JSONL files of pipeline inputs that metrics and optimizers run on.

One JSON object a line with the pipeline's input, `chunk` (the passage), and optionally where it came from
(`source`, `start`, `end`), its `split` (`train` or `val`) and reference outputs under any other key.

`sample_devset` draws one from a corpus: chunks spread over its files, each put in a split by a hash of its id.
`reviewed_devset` makes a labeled one from a run a person reviewed in `datagen view`: the chunks whose samples
were all approved, each with its reviewed samples and the demos (each step's inputs and outputs, corrections
applied) that `datagen optimize` puts first among a predictor's demos.
"""

import hashlib
import json
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from datagen.text.chunking import DEFAULT_MAX_TOKENS, Chunk, Chunker, chunk_documents, chunk_id, is_cut_from
from datagen.text.sentences import AUTO
from datagen.errors import DatagenError, InputError, RunFolderError
from datagen.util.files import replacing
from datagen.text.ingest import Document, iter_documents
from datagen.dataset.review import approved, as_reviewed
from datagen.samples import Sample
from datagen.store import Review, RunStore, Step
from datagen.text.tokens import count_tokens

log = logging.getLogger(__name__)

SPLITS = ("train", "val")


@dataclass(frozen=True)
class DevItem:
    chunk: Chunk
    split: str | None = None
    references: dict = field(default_factory=dict)  # labelled dev sets: reference outputs by field name


def read_devset(path: str | Path, split: str | None = None) -> list[DevItem]:
    """The items of a dev set (only those of `split` when given), refusing a malformed line by number."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such dev set file")
    items = []
    with path.open("rb") as lines:  # decoded line by line, so that a bad byte is reported with its line
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise InputError(f"{path}:{number}: not valid UTF-8 (byte {exc.start + 1} of the line)") from None
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            items.append(_item(record, path, number))
    if not items:
        raise InputError(f"{path}: the dev set is empty")
    if split is not None:
        if split not in SPLITS:
            raise InputError(f"unknown split {split!r}: use {' or '.join(SPLITS)}")
        items = [item for item in items if item.split == split]
        if not items:
            raise InputError(f"{path}: no items in the {split!r} split")
    return items


def _item(record, path: Path, number: int) -> DevItem:
    where = f"{path}:{number}"
    if not isinstance(record, dict):
        raise InputError(f"{where}: expected a JSON object per line")
    text = record.get("chunk")
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{where}: needs a non-empty \"chunk\" string")
    split = record.get("split")
    if split is not None and split not in SPLITS:
        raise InputError(f"{where}: split must be {' or '.join(SPLITS)}, got {split!r}")
    start = record.get("start") if isinstance(record.get("start"), int) else 0
    end = record.get("end") if isinstance(record.get("end"), int) else start + len(text)
    chunk = Chunk(chunk_id(text), str(record.get("source") or path), start, end, text, count_tokens(text))
    references = {k: v for k, v in record.items() if k not in ("chunk", "id", "source", "start", "end", "split")}
    return DevItem(chunk, split, references)


def split_fraction(chunk_id_: str) -> float:
    """Where a chunk id falls in [0, 1): the first 64 bits of its SHA-256, stable across runs and machines."""
    return int(hashlib.sha256(chunk_id_.encode("utf-8")).hexdigest()[:16], 16) / 2 ** 64


def split_of(chunk_id_: str, val_fraction: float) -> str:
    """The hash rule: a chunk is `val` when its id's fraction is below `val_fraction`, else `train`."""
    return "val" if split_fraction(chunk_id_) < val_fraction else "train"


def _check_sampling(n: int, val_fraction: float, max_tokens: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"--n must be at least 1, got {n}")
    _check_fraction(val_fraction)
    if max_tokens < 16:
        raise InputError(f"--max-tokens must be at least 16, got {max_tokens}")


def _check_fraction(val_fraction: float) -> None:
    if not 0 < val_fraction < 1:
        raise InputError(f"--val-fraction must be between 0 and 1 (exclusive), got {val_fraction}")


def _spread(chunks: list[Chunk], n: int, rng: random.Random) -> list[int]:
    """Indices of `n` chunks taken round-robin over the files in a shuffled order, each file's chunks in a
    shuffled order: every file gets a turn before any gets a second."""
    by_file: dict[str, list[int]] = {}
    for index, piece in enumerate(chunks):
        by_file.setdefault(piece.source, []).append(index)
    files = list(by_file)
    rng.shuffle(files)
    queues = [rng.sample(by_file[name], len(by_file[name])) for name in files]
    picked: list[int] = []
    turn = 0
    while len(picked) < n:
        queue = queues[turn % len(queues)]
        if queue:
            picked.append(queue.pop())
        turn += 1
    return picked


def assign_splits(chunks: list[Chunk], val_fraction: float) -> list[str]:
    """Each chunk's split by the hash rule; with two or more chunks all in one split, the one nearest the
    boundary moves to the other, so a dev set always has items to train on and items to score on."""
    fractions = [split_fraction(piece.id) for piece in chunks]
    splits = ["val" if f < val_fraction else "train" for f in fractions]
    if len(splits) >= 2 and len(set(splits)) == 1:
        if splits[0] == "train":
            splits[min(range(len(fractions)), key=lambda i: (fractions[i], chunks[i].id))] = "val"
        else:
            splits[max(range(len(fractions)), key=lambda i: (fractions[i], chunks[i].id))] = "train"
    return splits


def sample_devset(inputs: Iterable[str | Path], n: int, *, max_tokens: int = DEFAULT_MAX_TOKENS,
                  val_fraction: float = 0.25, seed: int = 0, language: str = AUTO) -> list[dict]:
    """An unlabelled dev set of `n` chunks of the inputs (files or folders), spread across the source files.

    Files take turns in a seeded random order, each giving a seeded-random chunk of its own, so a corpus of many
    files is not represented by its first one. With fewer than `n` chunks in the inputs, all of them are taken
    (and a warning logged). Records come back in corpus order, each `{"chunk", "source", "start", "end",
    "split"}`, the split chosen by `split_of(chunk id, val_fraction)`, except that with two or more records both
    splits are guaranteed (see `assign_splits`). Same inputs and seed: same records. `language` is the
    chunker's (`[chunking] language`), as for `generate`.
    """
    _check_sampling(n, val_fraction, max_tokens)
    chunks = list(chunk_documents(iter_documents(inputs), max_tokens, language))
    if len(chunks) <= n:
        if len(chunks) < n:
            log.warning("the input holds only %d chunk(s) of at most %d tokens (asked for %d): taking them all",
                        len(chunks), max_tokens, n)
        chosen = chunks
    else:
        # chunk_documents yields file by file, in order, so sorting indices restores corpus order.
        chosen = [chunks[i] for i in sorted(_spread(chunks, n, random.Random(seed)))]
    splits = assign_splits(chosen, val_fraction)
    return [{"chunk": piece.text, "source": piece.source, "start": piece.start, "end": piece.end, "split": split}
            for piece, split in zip(chosen, splits)]


def write_devset(records: Iterable[dict], path: str | Path) -> Path:
    """Write dev set records as JSONL (one object a line, UTF-8) atomically: a reader sees the old file or the
    whole new one. Parent folders are made as needed; a path that is a folder is refused."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; the dev set needs a file name")
    lines = [json.dumps(record, ensure_ascii=False) + "\n" for record in records]
    if not lines:
        raise InputError(f"{path}: no dev items to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{path.parent}: cannot create the folder ({exc.strerror or exc})") from None
    try:
        with replacing(path) as temp, temp.open("w", encoding="utf-8", newline="\n") as sink:
            sink.writelines(lines)
    except OSError as exc:
        raise InputError(f"{path}: cannot write the dev set ({exc.strerror or exc})") from None
    return path


@dataclass
class ReviewedDevset:
    """What `reviewed_devset` made: the dev `records`, how many of their samples a person `corrected`, how many
    records have no `demos` because their chunk logged no steps (`no_steps`), and how many done chunks were
    `left_out` because a sample of theirs was rejected or not reviewed (chunks with no samples not counted)."""

    records: list[dict]
    corrected: int = 0
    no_steps: int = 0
    left_out: int = 0


def reviewed_devset(run_dir: str | Path, pipeline: str | None = None, val_fraction: float = 0.25, *,
                    workspace: Path | None = None) -> ReviewedDevset:
    """A labeled dev set from a run reviewed in `datagen view`: one record per done chunk whose samples a person
    all approved (rated good, or corrected; see `datagen.dataset.review.approved`), in chunk order. A chunk with a
    rejected or unreviewed sample is left out whole, so that each record's trace is wholly human-approved.

    Each record holds `chunk`, `source`, `start`, `end`, `split` (as `sample_devset` assigns them:
    `split_of(chunk id, val_fraction)`, both splits guaranteed with two or more records), `samples` (the reviewed
    samples, [{"input", "output"}] with corrections applied and a multi-turn sample's earlier turns as
    `history`) and `demos` ({predictor name: {field: value}}, see `review_demos`; {} for a chunk with no logged
    steps). `read_devset` puts `samples` and `demos` in each DevItem's `references`.

    `pipeline`, when given, must be the run's own (its run meta). With `workspace`, the run's program is loaded
    from there with the run's options, and only the steps of its predictors give demos (a step logged under
    another name, such as a metric's predictor that is not named "judge:METRIC", is passed over with a
    warning). Raises DatagenError when `run_dir` is not a run folder, the pipeline differs, `val_fraction` is not
    in (0, 1), or no chunk has all its samples approved.
    """
    _check_fraction(val_fraction)
    chosen: list[tuple[Chunk, list[dict], dict]] = []
    result = ReviewedDevset([])
    with RunStore.reading(run_dir) as store:
        meta = store.meta()
        made_by = meta.get("pipeline")
        if pipeline is not None and made_by != pipeline:
            raise RunFolderError(f"{run_dir}: a run of pipeline {made_by!r}, not {pipeline!r}: name the run's pipeline")
        known = None
        if workspace is not None and made_by is not None:
            from datagen.workspace.pipelines import load_program

            program = load_program(made_by, workspace, json.loads(meta.get("options") or "{}"))
            known = {name for name, _ in program.named_predictors()}
        passed_over: set[str] = set()
        reviews = store.reviews()
        for piece, samples in store.done():
            if not samples:
                continue
            reviewed = [reviews.get((piece.id, index)) for index in range(len(samples))]
            if not all(approved(review) for review in reviewed):
                result.left_out += 1
                continue
            steps = store.steps(piece.id)
            if known is not None:
                passed_over |= {step.step for step in steps if step.step not in known and ":" not in step.step}
                steps = [step for step in steps if step.step in known]
            result.no_steps += not steps
            result.corrected += sum(review.corrected for review in reviewed)
            chosen.append((piece, [_sample_record(as_reviewed(sample, review))
                                   for sample, review in zip(samples, reviewed)],
                           review_demos(steps, samples, reviewed)))
    if passed_over:
        log.warning("%s: steps of %s are not predictors of the program: no demos from them", run_dir,
                    ", ".join(sorted(passed_over)))
    if not chosen:
        raise DatagenError(f"{run_dir}: no chunk has all its samples approved (rated good or corrected) in datagen "
                           f"view; {result.left_out} done chunk(s) have a sample rejected or not reviewed")
    splits = assign_splits([piece for piece, _, _ in chosen], val_fraction)
    result.records = [{"chunk": piece.text, "source": piece.source, "start": piece.start, "end": piece.end,
                       "split": split, "samples": samples, "demos": demos}
                      for (piece, samples, demos), split in zip(chosen, splits)]
    return result


def _sample_record(sample: Sample) -> dict:
    record = {"input": sample.input, "output": sample.output}
    if sample.history:
        record["history"] = [list(turn) for turn in sample.history]
    return record


def review_demos(steps: list[Step], samples: list[Sample], reviews: list[Review | None]) -> dict[str, dict]:
    """Demos from a chunk's logged steps: {predictor name: {field: value}}, each predictor's inputs and outputs.

    Judge steps ("judge:METRIC") and steps that raised are skipped. A predictor called more than once (one
    question at a time, say) gives one demo, as DSPy's bootstrapping does: its last call that handled a sample's
    text (a field value, or an item of a list value, equal to a sample's generated input or output, ignoring
    surrounding white space), else its last call. Each correction is substituted: a value (or list item) equal
    to a sample's generated input or output becomes the reviewer's corrected text, in the step's inputs as in its
    outputs, so a demo shows the pair the person approved. `reviews` go with `samples` by position (None: none)."""
    corrections: dict[str, str] = {}
    texts: set[str] = set()
    for sample, review in zip(samples, reviews):
        pairs = ((sample.input, review and review.input), (sample.output, review and review.output))
        for generated, corrected in pairs:
            if generated.strip():
                texts.add(generated.strip())
                if corrected is not None and corrected != generated:
                    corrections[generated.strip()] = corrected
    picked: dict[str, tuple[Step, bool]] = {}
    for step in steps:
        if step.step.startswith("judge:") or step.error is not None or step.outputs is None:
            continue
        handled = _mentions({**step.inputs, **step.outputs}.values(), texts)
        if step.step not in picked or handled or not picked[step.step][1]:
            picked[step.step] = (step, handled)
    return {name: {field: _corrected(value, corrections) for field, value in {**step.inputs, **step.outputs}.items()}
            for name, (step, _) in picked.items()}


def _mentions(values, texts: set[str]) -> bool:
    return any(isinstance(v, str) and v.strip() in texts
               or isinstance(v, list) and any(isinstance(i, str) and i.strip() in texts for i in v) for v in values)


def _corrected(value, corrections: dict[str, str]):
    if isinstance(value, str):
        return corrections.get(value.strip(), value)
    if isinstance(value, list):
        return [_corrected(item, corrections) if isinstance(item, str) else item for item in value]
    return value


def recut(items: list[DevItem], max_tokens: int, root: Path, language: str = AUTO) -> list[DevItem]:
    """The dev set cut again at another chunk budget: each source re-chunked as `generate` would cut it, keeping (in
    `language`, the chunker's) the chunks where the items start, each in its item's split. A chunk that now spans
    items of both splits is held out (`val`), so no train item overlaps a val one. Sources are found as recorded,
    relative to `root` (or the working directory); a missing source, or one whose text changed since, is an error
    naming it."""
    by_source: dict[str, list[DevItem]] = {}
    for item in items:
        by_source.setdefault(item.chunk.source, []).append(item)
    splits: dict[Chunk, set[str]] = {}
    for source, sourced in by_source.items():
        path = next((p for p in (root / source, Path(source)) if p.is_file()), None)
        if path is None:
            raise InputError(f"{source}: the dev set's source is not found (needed to cut it at {max_tokens} tokens)")
        document = next(iter_documents([path]))
        if not all(is_cut_from(document.text, i.chunk) for i in sourced):
            raise InputError(f"{source}: changed since the dev set was drawn from it")
        pieces = list(Chunker(max_tokens, language=language).chunks(Document(source, document.text)))
        for item in sourced:
            piece = next((p for p in pieces if p.end > item.chunk.start), pieces[-1])
            splits.setdefault(piece, set()).add(item.split or "train")
    return [DevItem(piece, "val" if "val" in kinds else "train") for piece, kinds in splits.items()]
