"""The run store's record of the held-out split (datagen.dataset.splits): each chunk's split and near-duplicate
group, and the text of the train chunks a restarted run dropped."""

import sqlite3
from collections.abc import Iterable


class HeldOutSplit:
    """RunStore's held-out split records (its `_db` and `_transaction`)."""

    _db: sqlite3.Connection

    def splits(self) -> dict[str, tuple[str, str]]:
        """{chunk id: (split, near-duplicate group)} of the chunks with a recorded split (datagen.dataset.splits)."""
        return {chunk_id: (split, grp) for chunk_id, split, grp in self._db.execute(
            "SELECT s.chunk_id, s.split, s.grp FROM splits s JOIN chunks c ON c.id = s.chunk_id")}

    def split_counts(self) -> dict[str, dict[str, int]]:
        """{split: {why: chunks}}, what decided the recorded splits."""
        counts: dict[str, dict[str, int]] = {}
        for split, why, n in self._db.execute("SELECT s.split, s.why, count(*) FROM splits s JOIN chunks c "
                                              "ON c.id = s.chunk_id GROUP BY s.split, s.why"):
            counts.setdefault(split, {})[why] = n
        return counts

    def set_splits(self, rows: Iterable[tuple[str, str, str, str]], meta: dict[str, str]) -> None:
        """Record (chunk id, split, group, why) rows, replacing a chunk's earlier row, and `meta`, in one
        transaction."""
        with self._transaction():
            self._db.executemany("INSERT OR REPLACE INTO splits VALUES (?, ?, ?, ?)", rows)
            self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", meta.items())

    def retire_trained(self) -> None:
        """Keep the text of the run's train chunks before they are dropped (generate --force): a model may have
        trained on them, so no chunk like them may be held out by the run that replaces this one."""
        self._db.execute("INSERT OR IGNORE INTO retired SELECT c.text FROM chunks c JOIN splits s "
                         "ON s.chunk_id = c.id WHERE s.split = 'train'")

    def retired_texts(self) -> list[str]:
        """The texts `retire_trained` kept."""
        return [text for (text,) in self._db.execute("SELECT text FROM retired")]
