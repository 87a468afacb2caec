"""Dev sets: small JSONL files of pipeline inputs that metrics and optimizers run on.

One JSON object a line with the pipeline's input, `chunk` (the passage), and optionally where it came from
(`source`, `start`, `end`), its `split` (`train` or `val`) and reference outputs under any other key.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from datagen.chunking import Chunk, chunk_id
from datagen.errors import DatagenError
from datagen.tokens import count_tokens

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
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
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
