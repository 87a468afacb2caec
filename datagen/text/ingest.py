"""Reading raw text: files and folders in, decoded documents out.

Text and Markdown files are decoded as they are; PDF, EPUB, DOCX and HTML files have their text extracted
(datagen.text.formats). `read_document` is the one way to a source's text, since chunk offsets index into it.

A file named on the command line that cannot be used is an error (the user asked for it); a file found while
walking a folder is skipped with a warning, so one stray binary does not stop a corpus run.
"""

import codecs
import logging
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from datagen.errors import DatagenError, InputError
from datagen.text.formats import READERS

log = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt", ".md", ".markdown")
# What a folder is searched for.
SUFFIXES = TEXT_SUFFIXES + tuple(READERS)
_SNIFF_BYTES = 8192


@dataclass(frozen=True)
class Document:
    """A source file's text. Chunk offsets index into `text`, as `read_document(source)` returns it."""

    source: str
    text: str


class UnusableFile(DatagenError):
    """A file that holds no text datagen can use (empty, binary, unreadable)."""


def read_text(path: Path) -> str:
    """Decode a text file as UTF-8 (a byte-order mark is dropped, invalid bytes become U+FFFD).

    Newlines are kept as they are in the file, so character offsets recover the original text exactly: the text
    is `open(path, encoding="utf-8-sig", errors="replace", newline="").read()` (a plain `open(path).read()` keeps
    the mark and translates "\r\n" to "\n").
    """
    raw = _read_bytes(path)
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


def read_document(path: Path) -> str:
    """A file's text: extracted for the formats datagen.text.formats reads (by suffix), decoded for any other file."""
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        return read_text(path)
    raw = _read_bytes(path)
    try:
        text = reader(raw)
    except Exception as exc:  # a damaged file makes parsers raise anything: zip, XML, key, value errors, ...
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise UnusableFile(f"{path}: cannot read as {path.suffix[1:].upper()} ({reason})") from exc
    if not text.strip():
        raise UnusableFile(f"{path}: holds no text")
    return text


def _read_bytes(path: Path) -> bytes:
    try:
        if not path.is_file():  # a FIFO or a device would block or never end; a dangling symlink is not found
            raise UnusableFile(f"{path}: not a regular file ({_what_is_there(path)})")
        return path.read_bytes()
    except OSError as exc:
        raise UnusableFile(f"{path}: cannot read ({exc.strerror or exc})") from exc


def _what_is_there(path: Path) -> str:
    """What `path` is, when it is not a regular file: the error of following it, or its kind."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:  # a dangling symlink, a symlink loop
        return f"{'a symlink: ' if path.is_symlink() else ''}{exc.strerror or exc}"
    return "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"


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
            if name.lower().endswith(SUFFIXES) and not name.startswith("."):
                yield Path(root) / name


def iter_files(paths: Iterable[str | Path]) -> Iterator[tuple[Path, bool]]:
    """The files that files and folders name, in a stable order, each with whether it was found in a
    folder (an unusable file found there is skipped; one named outright is an error)."""
    for given in paths:
        path = Path(given)
        if not path.exists():
            why = f" ({_what_is_there(path)})" if path.is_symlink() else ""
            raise InputError(f"{path}: no such file or folder{why}")
        if path.is_dir():
            candidates = list(_walk(path))
            if not candidates:
                raise InputError(f"{path}: folder holds no text files ({', '.join(SUFFIXES)})")
            yield from ((file, True) for file in candidates)
        else:
            yield path, False


def iter_documents(paths: Iterable[str | Path]) -> Iterator[Document]:
    """Documents from files and folders (searched recursively for files with the SUFFIXES), in a stable order."""
    found_any = False
    for file, in_folder in iter_files(paths):
        try:
            text = read_document(file)
        except UnusableFile as exc:
            if not in_folder:
                raise
            log.warning("skipped %s", exc)
            continue
        found_any = True
        yield Document(_display(file), text)
    if not found_any:
        raise InputError("no usable text in the given input")
