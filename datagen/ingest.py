"""Reading raw text: files and folders in, decoded documents out.

A file named on the command line that cannot be used is an error (the user asked for it); a file found while
walking a folder is skipped with a warning, so one stray binary does not stop a corpus run.
"""

import codecs
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from datagen.errors import DatagenError

log = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt", ".md", ".markdown")
_SNIFF_BYTES = 8192


@dataclass(frozen=True)
class Document:
    """A source file's text. Chunk offsets index into `text`, as `read_text(source)` returns it."""

    source: str
    text: str


class UnusableFile(DatagenError):
    """A file that holds no text datagen can use (empty, binary, unreadable)."""


def read_text(path: Path) -> str:
    """Decode a text file as UTF-8 (a byte-order mark is dropped, invalid bytes become U+FFFD).

    Newlines are kept as they are in the file, so character offsets recover the original text exactly.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UnusableFile(f"{path}: cannot read ({exc.strerror or exc})") from exc
    bom = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    if b"\x00" in raw[:_SNIFF_BYTES]:
        raise UnusableFile(f"{path}: looks like a binary file (it contains NUL bytes), not text")
    try:
        text = raw[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        text = raw[bom:].decode("utf-8", errors="replace")
        log.warning("%s: not valid UTF-8 (first bad byte at offset %d); invalid bytes replaced with U+FFFD",
                    path, bom + exc.start)
    if not text.strip():
        raise UnusableFile(f"{path}: file is empty")
    return text


def _display(path: Path) -> str:
    """The source path recorded with each chunk: relative to the working directory where possible."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def _walk(folder: Path) -> Iterator[Path]:
    # os.walk does not follow symlinked folders by default, so symlink loops cannot trap it; sorted for
    # a deterministic order across machines.
    for root, dirs, files in os.walk(folder, onerror=lambda e: log.warning("%s: cannot list (%s)", e.filename,
                                                                             e.strerror)):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.lower().endswith(TEXT_SUFFIXES) and not name.startswith("."):
                yield Path(root) / name


def iter_files(paths: Iterable[str | Path]) -> Iterator[tuple[Path, bool]]:
    """The text files that files and folders name, in a stable order, each with whether it was found in a
    folder (an unusable file found there is skipped; one named outright is an error)."""
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise DatagenError(f"{path}: no such file or folder")
        if path.is_dir():
            candidates = list(_walk(path))
            if not candidates:
                raise DatagenError(f"{path}: folder holds no text files ({', '.join(TEXT_SUFFIXES)})")
            yield from ((file, True) for file in candidates)
        else:
            yield path, False


def iter_documents(paths: Iterable[str | Path]) -> Iterator[Document]:
    """Documents from files and folders (searched recursively for .txt and .md files), in a stable order."""
    found_any = False
    for file, in_folder in iter_files(paths):
        try:
            text = read_text(file)
        except UnusableFile as exc:
            if not in_folder:
                raise
            log.warning("skipped %s", exc)
            continue
        found_any = True
        yield Document(_display(file), text)
    if not found_any:
        raise DatagenError("no usable text in the given input")
