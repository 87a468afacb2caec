"""The batch answers of a run store, read from any thread (the batch LM engine's)."""

import sqlite3
import threading
from pathlib import Path


class BatchReader:
    """Looks batch requests up by key from any thread, through a connection of its own (reads only; the store's
    connection stays its owner thread's). Close it when done."""

    def __init__(self, path: Path):
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._lock = threading.Lock()

    def lookup(self, key: str) -> tuple[bool, str | None, str | None, str | None] | None:
        """None for a key never recorded; else (submitted, answer JSON, error kind, error message)."""
        with self._lock:
            row = self._db.execute("SELECT job IS NOT NULL, answer, error_kind, error FROM batch_requests "
                                   "WHERE key = ?", (key,)).fetchone()
        return None if row is None else (bool(row[0]), row[1], row[2], row[3])

    def close(self) -> None:
        with self._lock:
            self._db.close()
