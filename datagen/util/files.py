"""Writing a file (or a folder) whole or not at all."""

import json
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from datagen.util.disk import writing


@contextmanager
def replacing(target: Path) -> Iterator[Path]:
    """A fresh path beside `target` for the block to write, as a file or a folder; when the block ends without
    error it takes `target`'s place by renaming, otherwise it is removed.

    Readers see the old version or the new one, never part of one; a process killed mid-write leaves at most a
    `*.partial*` beside the target; two processes writing one target each write their own, and the last wins.
    The name keeps the target's suffix, for writers that choose a format by it (DSPy's `save`).

    Raises:
        DiskError: the disk refused a write of the block (full, read-only, no permission: see datagen.util.disk);
            the partial file is removed, and `target` is as it was.
    """
    temp = target.with_name(f"{target.stem}.{uuid.uuid4().hex[:8]}.partial{target.suffix}")
    try:
        with writing(target):
            yield temp
            if temp.is_dir():
                _swap_folder(temp, target)
            else:
                temp.replace(target)
    except BaseException:
        _remove(temp)
        raise


@contextmanager
def jsonl_sink(path: Path) -> Iterator:
    """`path` open for writing JSON lines (see `json_line`) under a temporary name, renamed over `path` when the
    block ends without error (`replacing`)."""
    with replacing(path) as partial, partial.open("w", encoding="utf-8") as sink:
        yield sink


def json_line(record: dict) -> str:
    """One JSONL line: the record as JSON, non-ASCII kept as it is, and a newline."""
    return json.dumps(record, ensure_ascii=False) + "\n"


def write_jsonl(path: Path, records: Iterable[dict]) -> int:
    """Write records as JSONL under a temporary name, then rename it over `path`; returns how many."""
    count = 0
    with jsonl_sink(path) as sink:
        for record in records:
            sink.write(json_line(record))
            count += 1
    return count


def _swap_folder(new: Path, target: Path) -> None:
    """Put folder `new` in `target`'s place (a folder cannot be renamed over another that has files in it)."""
    old = target.with_name(f"{target.name}.{uuid.uuid4().hex[:8]}.old")
    if target.exists():
        target.rename(old)
    new.rename(target)
    _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
