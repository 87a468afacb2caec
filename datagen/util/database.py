"""The one way datagen opens its SQLite files (the run store, the answer store): write-ahead logging, a commit that
a power cut may lose but never corrupts, and explicit transactions."""

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from datagen.errors import RunFolderError


def open_database(path: Path, schema: str, what: str) -> sqlite3.Connection:
    """Open (or make) the SQLite database at `path` with `schema` (CREATE ... IF NOT EXISTS statements).

    Args:
        path: the database file; its folder must exist.
        schema: the SQL run on every open, which creates what is missing and changes nothing else.
        what: what the file should be, for the error (e.g. "datagen run store").

    Returns:
        A connection in autocommit mode (isolation_level None: `transaction` groups writes), WAL journal,
        synchronous NORMAL: in WAL mode a power cut may lose the last commits, never corrupt the database.

    Raises:
        RunFolderError: the file is not a SQLite database (or not one this schema fits): "`path`: not a `what`".
    """
    try:
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(schema)
    except sqlite3.DatabaseError as exc:
        raise RunFolderError(f"{path}: not a {what} ({exc})") from None
    return db


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction on an autocommit connection: committed when the block ends, rolled back when it
    raises (Ctrl-C included). BEGIN IMMEDIATE takes the write lock at once, so two writers wait rather than fail
    half-way."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
