"""The run store's record of dataset-level quality (datagen.dataset.screening): near-duplicate sample pairs, samples
that share n-grams with protected text, and the sentence embeddings computed for them."""

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from datagen.store.schema import QUALITY

# One sample of a run: (chunk id, its index among the chunk's samples).
SampleKey = tuple[str, int]


class QualityRecords:
    """RunStore's quality records (its `path`, `_db` and `_transaction`)."""

    path: Path
    _db: sqlite3.Connection

    def set_quality(self, pairs: Iterable[tuple], contamination: Iterable[tuple], summary: str) -> None:
        """Replace the run's quality records in one transaction: `pairs` (field, kind, chunk id, sample, other
        chunk id, other sample, similarity), `contamination` (chunk id, sample, field, source, shared, share) and
        the `summary` (JSON, meta key QUALITY)."""
        with self._transaction():
            self._db.execute("DELETE FROM near_duplicates")
            self._db.execute("DELETE FROM contamination")
            self._db.executemany("INSERT OR REPLACE INTO near_duplicates VALUES (?, ?, ?, ?, ?, ?, ?)", pairs)
            self._db.executemany("INSERT OR REPLACE INTO contamination VALUES (?, ?, ?, ?, ?, ?)", contamination)
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (QUALITY, summary))

    def near_duplicate_pairs(self) -> list[tuple[str, str, SampleKey, SampleKey, float]]:
        """Every stored pair: (field, kind, earlier sample, later sample, similarity)."""
        return [(field, kind, (a, i), (b, j), similarity) for field, kind, a, i, b, j, similarity in self._db.execute(
            "SELECT field, kind, chunk_id, sample, other_chunk, other_sample, similarity FROM near_duplicates")]

    def contaminated(self) -> list[tuple[SampleKey, str, str, int, float]]:
        """Every stored contaminated sample field: (sample, field, source, shared, share)."""
        return [((chunk_id, sample), field, source, shared, share) for chunk_id, sample, field, source, shared, share
                in self._db.execute("SELECT chunk_id, sample, field, source, shared, share FROM contamination "
                                    "ORDER BY rowid")]

    def embeddings(self, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored embeddings of the texts whose sha256 is in `hashes` (float32 rows), by hash."""
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(hashes), 500):  # under SQLite's limit on a statement's variables
            batch = list(hashes[start:start + 500])
            marks = ", ".join("?" * len(batch))
            for key, blob in self._db.execute(f"SELECT text_hash, vector FROM embeddings WHERE text_hash IN ({marks})",
                                              batch):
                found[key] = np.frombuffer(blob, dtype=np.float16).astype(np.float32)
        return found

    def add_embeddings(self, rows: Iterable[tuple[str, np.ndarray]]) -> None:
        """Store (text sha256, embedding) rows, as float16 (half the bytes; cosines move by under 0.001)."""
        with self._transaction():
            self._db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?)",
                                 ((key, np.asarray(vector, dtype=np.float16).tobytes()) for key, vector in rows))
