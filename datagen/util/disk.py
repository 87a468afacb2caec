"""A write the disk refuses, said in one line: a full disk, a read-only one, or a folder without write permission.

Every place datagen writes (its SQLite stores, the files it writes whole, its lock files) runs the write in
`writing`, which turns the operating system's or SQLite's refusal into a DiskError naming the folder and what to do,
instead of a traceback. What was written before stays as it was: SQLite rolls the transaction back, a file written
whole leaves the previous version in place.
"""

import errno
import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from datagen.errors import DatagenError, DiskError

FULL, READ_ONLY, DENIED = "full", "read-only", "denied"
# What each errno of a refused write means (EACCES and EPERM only for a file the write names: see disk_error).
_ERRNOS = {errno.ENOSPC: FULL, errno.EDQUOT: FULL, errno.EROFS: READ_ONLY, errno.EACCES: DENIED,
           errno.EPERM: DENIED}
# Errnos that are refused writes wherever they come from (`refused_write`).
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
# Below this much free space a disk counts as full: SQLite cannot count on making its -shm (32 KiB) or its next
# -wal frames, and an I/O error it could not name more precisely is taken for a full disk.
_NEARLY_FULL = 1 << 20


def unwritable(folder: Path) -> str | None:
    """Why `folder` cannot be written: READ_ONLY (its file system is mounted read-only), DENIED (the process may not
    write it), FULL (its disk has less than 1 MiB free), or None (it can be, or it does not exist)."""
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return READ_ONLY
    except OSError:
        return None
    if not os.access(folder, os.W_OK):
        return DENIED
    return FULL if _free(folder) < _NEARLY_FULL else None


def disk_error(exc: BaseException, path: Path) -> DiskError | None:
    """The DiskError `exc` amounts to, when it is a write to `path` that the disk refused; None when it is not.

    Args:
        exc: what the write raised: an OSError (ENOSPC, EDQUOT, EROFS; EACCES or EPERM on a named file), or a
            sqlite3.Error (SQLITE_FULL, SQLITE_READONLY; SQLITE_CANTOPEN or SQLITE_IOERR where the folder cannot be
            written or its disk is full); or an error raised from one (a library's wrapper, such as SQLAlchemy's).
            An OSError about a file outside `path`'s folder is not this write's.
        path: the file (or folder) being written; the error names the nearest existing folder that holds it.

    Returns:
        A DiskError whose one-line message names that folder, says what happened (for a full disk, how much space is
        free) and what to do; None for any other error.
    """
    folder = _holder(Path(path))
    cause = _cause(exc)
    kind = None
    if isinstance(cause, sqlite3.Error):
        code = (getattr(cause, "sqlite_errorcode", None) or 0) & 0xFF  # the primary code of an extended one
        if code == sqlite3.SQLITE_FULL:
            kind = FULL
        elif code == sqlite3.SQLITE_READONLY:  # a store opened read-only because its disk was full says full
            kind = unwritable(folder) or READ_ONLY
        elif code in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR):
            kind = unwritable(folder)
    elif isinstance(cause, OSError) and _about(cause, folder):
        kind = _ERRNOS.get(cause.errno)
        if kind == DENIED and not cause.filename:  # a socket's, say: a refused write names its file
            kind = None
    return None if kind is None else DiskError(_message(kind, folder))


def refused_write(exc: OSError) -> DiskError | None:
    """`disk_error` for an OSError caught far from its write (the CLI's last resort, for a folder made on the way):
    only an errno that is a refused write wherever it comes from (ENOSPC, EDQUOT, EROFS) and names its file; None
    for any other."""
    if exc.errno not in _WRITE_ERRNOS or not exc.filename:
        return None
    return disk_error(exc, Path(os.fsdecode(exc.filename)))


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Run the block's write to `path` (a file or a folder): an error the disk gave it (see `disk_error`) is raised as
    that DiskError instead; any other error as it is."""
    try:
        yield
    except DatagenError:
        raise  # said already (a DiskError of a write inside this one among them)
    except Exception as exc:
        error = disk_error(exc, path)
        if error is None:
            raise
        raise error from exc


def _message(kind: str, folder: Path) -> str:
    if kind == FULL:
        return (f"{folder}: no space left on its disk ({_size(_free(folder))} free): free some space there (or choose "
                "a folder on another disk) and run the command again; nothing written before is lost")
    if kind == READ_ONLY:
        return (f"{folder}: on a read-only disk: datagen reads it but cannot write there; use a folder on a writable "
                "disk (a run folder can be copied to one), or make it writable")
    return (f"{folder}: no permission to write there: datagen reads it but cannot write there; use another folder, "
            "or get write permission for it")


def _cause(exc: BaseException) -> BaseException | None:
    """The OSError or sqlite3.Error that `exc` is, or was raised from; None when there is none."""
    while exc is not None and not isinstance(exc, (OSError, sqlite3.Error)):
        exc = exc.__cause__ or getattr(exc, "orig", None)  # orig: SQLAlchemy's DB-API error
    return exc


def _about(exc: OSError, folder: Path) -> bool:
    """Whether `exc` is about `folder` or something in it (one that names no file is about the write being made)."""
    if not exc.filename:
        return True
    return Path(os.path.abspath(os.fsdecode(exc.filename))).is_relative_to(os.path.abspath(folder))


def _holder(path: Path) -> Path:
    """The nearest existing folder above `path` (the run folder of run.db; the parent of a folder being made)."""
    folder = path.parent
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    return folder


def _free(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0


def _size(n: int) -> str:
    value, unit = float(n), "bytes"
    for bigger in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{n} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
