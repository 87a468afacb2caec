"""The one way datagen opens its SQLite files (the run store, the answer store): write-ahead logging, a commit that
a power cut may lose but never corrupts, explicit transactions, a write the disk refuses said in one line
(`DiskError`), and a way in for reading alone that works on a read-only disk."""

import re
import shutil
import sqlite3
import tempfile
from collections.abc import Collection, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from datagen.errors import RunFolderError
from datagen.util.disk import disk_error, unwritable, writing

_TABLE = re.compile(r"^\s*CREATE TABLE IF NOT EXISTS (\w+)", re.M)


def open_database(path: Path, schema: str, what: str) -> sqlite3.Connection:
    """Open (or make) the SQLite database at `path` with `schema` (CREATE ... IF NOT EXISTS statements).

    Args:
        path: the database file; its folder is made when missing.
        schema: the SQL run on every open, which creates what is missing and changes nothing else.
        what: what the file should be, for the error (e.g. "datagen run store").

    Returns:
        A connection in autocommit mode (isolation_level None: `transaction` groups writes), WAL journal,
        synchronous NORMAL: in WAL mode a power cut may lose the last commits, never corrupt the database.

    Raises:
        RunFolderError: the file is not a SQLite database (or not one this schema fits): "`path`: not a `what`".
        DiskError: the folder cannot be made or written: its disk is full or read-only, or permission is denied.
    """
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    db = None
    try:
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(schema)
    except sqlite3.DatabaseError as exc:
        if db is not None:
            db.close()
        raise disk_error(exc, path) or _not_a(path, what, str(exc)) from None
    return db


@contextmanager
def transaction(db: sqlite3.Connection, path: Path) -> Iterator[None]:
    """One write transaction on an autocommit connection to the database at `path`: committed when the block ends,
    rolled back when it raises (Ctrl-C included). BEGIN IMMEDIATE takes the write lock at once, so two writers wait
    rather than fail half-way. A write the disk refuses (full, read-only: see datagen.util.disk) raises DiskError
    naming `path`'s folder, after the rollback: the database is as the last commit left it."""
    with writing(path):
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # a failed COMMIT may have rolled back already
                db.execute("ROLLBACK")
            raise


def open_read_only(path: Path, schema: str, what: str, required: Collection[str], *,
                   check_same_thread: bool = True) -> sqlite3.Connection:
    """Open the SQLite database at `path` to read it, on any disk: nothing in the file is written.

    SQLite's read-only mode (`mode=ro`) reads the database as any reader does, a write-ahead log (-wal) included,
    so a database another process is writing is read as it stands. On a WAL database it needs the shared-memory
    file (-shm) beside it, which it makes where it can. Where it cannot (a read-only disk, a folder without write
    permission, a disk with less than 1 MiB free) and the -wal and -shm are not both there already:
      - with no -wal, or an empty one, every commit is in the file: it is opened immutable (no locks, no -shm).
        That is only safe while nothing writes the file, and nothing does: a writer would first have to make the
        -wal beside it, where this process could not make a -shm (a writer with other permissions, or space freed,
        during the read is the one case left: it cannot damage the file, only this read);
      - a -wal holding commits cannot be read in place (immutable would skip them): the database and its -wal are
        copied to a temporary folder and read into memory, commits included.
    A table of `schema` the file lacks (a store made by an older version) is read as empty (a temporary table).

    Args:
        path: the database file.
        schema: the CREATE TABLE IF NOT EXISTS statements of the file's current layout.
        what: what the file should be, for the error (e.g. "datagen run store").
        required: tables every such file holds, however old; a file lacking one is refused, never read as empty.
        check_same_thread: sqlite3.connect's (False for a connection other threads use).

    Returns:
        A connection on which every write raises sqlite3.OperationalError ("attempt to write a readonly database").

    Raises:
        RunFolderError: the file is not a SQLite database, or lacks a `required` table: "`path`: not a `what`".
        DiskError: a -wal that has to be copied meets a full or read-only temporary folder.
    """
    try:
        db = _reader(path, check_same_thread)
    except sqlite3.DatabaseError as exc:
        raise _not_a(path, what, str(exc)) from None
    try:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        missing = [table for table in required if table not in tables]
        if missing:
            raise _not_a(path, what, f"no {missing[0]} table")
        for statement in _statements(schema):
            made = _TABLE.search(statement)
            if made and made.group(1) not in tables:
                db.execute(statement.replace("CREATE TABLE", "CREATE TEMP TABLE", 1))
        db.execute("PRAGMA query_only = ON")  # after the temporary tables: a write to one would vanish unseen
    except BaseException as exc:
        db.close()
        if isinstance(exc, sqlite3.DatabaseError):
            raise _not_a(path, what, str(exc)) from None
        raise
    return db


def _reader(path: Path, check_same_thread: bool) -> sqlite3.Connection:
    """A connection that reads `path` (see open_read_only): mode=ro, else immutable, else a copy in memory."""
    uri = Path(path).resolve().as_uri()  # percent-encoded: a folder name with '?' or '#' stays a path
    wal, shm = (path.with_name(path.name + suffix) for suffix in ("-wal", "-shm"))
    # mode=ro makes a missing -shm (and -wal) where it can: on a disk that cannot take them, do without them at once
    # (leaving nothing behind), unless both are there (SQLite then reads them as they are).
    if unwritable(path.parent) is None or (wal.is_file() and shm.is_file()):
        db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=10, check_same_thread=check_same_thread)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the file and its -wal opened now
            return db
        except sqlite3.DatabaseError as exc:
            db.close()
            if disk_error(exc, path) is None:  # only a disk that could not take the -shm after all
                raise
    if not wal.is_file() or wal.stat().st_size == 0:
        return sqlite3.connect(f"{uri}?immutable=1", uri=True, check_same_thread=check_same_thread)
    return _copied(path, wal, check_same_thread)


def _copied(path: Path, wal: Path, check_same_thread: bool) -> sqlite3.Connection:
    """The database at `path` with the commits its `wal` holds, copied into memory through a temporary folder (where
    SQLite can make the -shm it needs to read them)."""
    memory = sqlite3.connect(":memory:", check_same_thread=check_same_thread)
    try:
        with tempfile.TemporaryDirectory(prefix="datagen-read-") as folder:
            copy = Path(folder) / path.name
            with writing(Path(folder)):
                shutil.copyfile(path, copy)
                shutil.copyfile(wal, copy.with_name(wal.name))
                with closing(sqlite3.connect(copy)) as source:
                    source.backup(memory)
    except BaseException:
        memory.close()
        raise
    return memory


def _not_a(path: Path, what: str, why: str) -> RunFolderError:
    return RunFolderError(f"{path}: not a {what} ({why})")


def _statements(script: str) -> Iterator[str]:
    """The statements of an SQL script, each with the comment lines before it."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            yield statement
            statement = ""
