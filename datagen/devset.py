"""Dev sets: small JSONL files of pipeline inputs that metrics and optimizers run on.

One JSON object a line with the pipeline's input, `chunk` (the passage), and optionally where it came from
(`source`, `start`, `end`), its `split` (`train` or `val`) and reference outputs under any other key.

`sample_devset` draws one from a corpus: chunks spread over its files, each put in a split by a hash of its id.
"""

import hashlib
import json
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from datagen.chunking import AUTO, DEFAULT_MAX_TOKENS, Chunk, Chunker, chunk_documents, chunk_id, is_cut_from
from datagen.errors import DatagenError
from datagen.files import replacing
from datagen.ingest import Document, iter_documents
from datagen.tokens import count_tokens

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
        raise DatagenError(f"{path}: no such dev set file")
    items = []
    with path.open("rb") as lines:  # decoded line by line, so that a bad byte is reported with its line
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise DatagenError(f"{path}:{number}: not valid UTF-8 (byte {exc.start + 1} of the line)") from None
            except json.JSONDecodeError as exc:
                raise DatagenError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            items.append(_item(record, path, number))
    if not items:
        raise DatagenError(f"{path}: the dev set is empty")
    if split is not None:
        if split not in SPLITS:
            raise DatagenError(f"unknown split {split!r}: use {' or '.join(SPLITS)}")
        items = [item for item in items if item.split == split]
        if not items:
            raise DatagenError(f"{path}: no items in the {split!r} split")
    return items


def _item(record, path: Path, number: int) -> DevItem:
    where = f"{path}:{number}"
    if not isinstance(record, dict):
        raise DatagenError(f"{where}: expected a JSON object per line")
    text = record.get("chunk")
    if not isinstance(text, str) or not text.strip():
        raise DatagenError(f"{where}: needs a non-empty \"chunk\" string")
    split = record.get("split")
    if split is not None and split not in SPLITS:
        raise DatagenError(f"{where}: split must be {' or '.join(SPLITS)}, got {split!r}")
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
        raise DatagenError(f"--n must be at least 1, got {n}")
    if not 0 < val_fraction < 1:
        raise DatagenError(f"--val-fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    if max_tokens < 16:
        raise DatagenError(f"--max-tokens must be at least 16, got {max_tokens}")


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


def _assign_splits(chunks: list[Chunk], val_fraction: float) -> list[str]:
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
    splits are guaranteed (see `_assign_splits`). Same inputs and seed: same records. `language` is the
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
    splits = _assign_splits(chosen, val_fraction)
    return [{"chunk": piece.text, "source": piece.source, "start": piece.start, "end": piece.end, "split": split}
            for piece, split in zip(chosen, splits)]


def write_devset(records: Iterable[dict], path: str | Path) -> Path:
    """Write dev set records as JSONL (one object a line, UTF-8) atomically: a reader sees the old file or the
    whole new one. Parent folders are made as needed; a path that is a folder is refused."""
    path = Path(path)
    if path.is_dir():
        raise DatagenError(f"{path}: is a folder; the dev set needs a file name")
    lines = [json.dumps(record, ensure_ascii=False) + "\n" for record in records]
    if not lines:
        raise DatagenError(f"{path}: no dev items to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatagenError(f"{path.parent}: cannot create the folder ({exc.strerror or exc})") from None
    try:
        with replacing(path) as temp, temp.open("w", encoding="utf-8", newline="\n") as sink:
            sink.writelines(lines)
    except OSError as exc:
        raise DatagenError(f"{path}: cannot write the dev set ({exc.strerror or exc})") from None
    return path


def recut(items: list[DevItem], max_tokens: int, root: Path, language: str = AUTO) -> list[DevItem]:
    """The dev set cut again at another chunk budget: each source re-chunked as `generate` would cut it, keeping
    (in `language`, the chunker's) the chunks where the items start, each in its item's split. A chunk that now spans items of both splits is
    held out (`val`), so no train item overlaps a val one. Sources are found as recorded, relative to `root`
    (or the working directory); a missing source, or one whose text changed since, is an error naming it."""
    by_source: dict[str, list[DevItem]] = {}
    for item in items:
        by_source.setdefault(item.chunk.source, []).append(item)
    splits: dict[Chunk, set[str]] = {}
    for source, sourced in by_source.items():
        path = next((p for p in (root / source, Path(source)) if p.is_file()), None)
        if path is None:
            raise DatagenError(f"{source}: the dev set's source is not found (needed to cut it at {max_tokens} tokens)")
        document = next(iter_documents([path]))
        if not all(is_cut_from(document.text, i.chunk) for i in sourced):
            raise DatagenError(f"{source}: changed since the dev set was drawn from it")
        pieces = list(Chunker(max_tokens, language=language).chunks(Document(source, document.text)))
        for item in sourced:
            piece = next((p for p in pieces if p.end > item.chunk.start), pieces[-1])
            splits.setdefault(piece, set()).add(item.split or "train")
    return [DevItem(piece, "val" if "val" in kinds else "train") for piece, kinds in splits.items()]
