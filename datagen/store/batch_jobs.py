"""The run store's record of provider batch jobs (generate --batch; datagen/runs/batch.py): each LM request a round
could not answer yet, the job that carries it, and the answer or error it got."""

import sqlite3
import time
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path

from datagen.store.batch_reader import BatchReader


class BatchJobs:
    """RunStore's batch requests and jobs (its `path`, `_db` and `_transaction`)."""

    path: Path
    _db: sqlite3.Connection

    def add_batch_requests(self, requests: Iterable[tuple[str, str]]) -> None:
        """Record requests waiting for a batch job ((key, body as JSON) pairs); a key already there is kept as it
        is (its answer, its job)."""
        with self._transaction():
            self._db.executemany("INSERT OR IGNORE INTO batch_requests (key, body) VALUES (?, ?)", requests)

    def clear_batch_errors(self) -> int:
        """Forget the requests batch jobs failed: one asked again (its chunk retried) is recorded and submitted
        anew, and one nobody asks again is not paid for twice; answers stay. Returns how many were forgotten."""
        with self._transaction():
            return self._db.execute("DELETE FROM batch_requests WHERE error_kind IS NOT NULL").rowcount

    def unsubmitted_batch_requests(self) -> Iterator[tuple[str, str]]:
        """(key, body) of the requests no job carries yet, in the order they were recorded."""
        reader = sqlite3.connect(self.path)  # its own snapshot: jobs are written while this is read
        try:
            yield from reader.execute("SELECT key, body FROM batch_requests WHERE job IS NULL AND answer IS NULL "
                                      "AND error_kind IS NULL ORDER BY rowid")
        finally:
            reader.close()

    def unsubmitted_batch_count(self) -> int:
        return self._db.execute("SELECT count(*) FROM batch_requests WHERE job IS NULL AND answer IS NULL "
                                "AND error_kind IS NULL").fetchone()[0]

    def add_batch_job(self, keys: list[str]) -> int:
        """A new job (status "new") carrying the requests `keys`, committed before anything is uploaded; its id."""
        now = time.time()
        with self._transaction():
            job = self._db.execute("INSERT INTO batch_jobs (status, requests, created_at, updated_at) "
                                   "VALUES ('new', ?, ?, ?)", (len(keys), now, now)).lastrowid
            self._db.executemany("UPDATE batch_requests SET job = ? WHERE key = ?", ((job, key) for key in keys))
        return job

    def update_batch_job(self, job: int, **fields) -> None:
        """Set a job's `batch_id`, `input_file_id`, `output_file_id`, `error_file_id` or `status` (committed)."""
        allowed = {"batch_id", "input_file_id", "output_file_id", "error_file_id", "status"}
        if not fields or set(fields) - allowed:
            raise ValueError(f"batch job fields: {sorted(allowed)}, got {sorted(fields)}")
        columns = ", ".join(f"{name} = ?" for name in fields)
        with self._transaction():
            self._db.execute(f"UPDATE batch_jobs SET {columns}, updated_at = ? WHERE id = ?",
                             (*fields.values(), time.time(), job))

    def batch_jobs(self, statuses: Collection[str] | None = None, *, exclude: Collection[str] = ()) -> list[dict]:
        """Jobs as dicts (id, batch_id, input_file_id, output_file_id, error_file_id, status, requests,
        created_at, updated_at), oldest first: those with a status in `statuses` (all by default), less those in
        `exclude`."""
        rows = self._db.execute("SELECT id, batch_id, input_file_id, output_file_id, error_file_id, status, requests, "
                                "created_at, updated_at FROM batch_jobs ORDER BY id")
        names = [d[0] for d in rows.description]
        jobs = [dict(zip(names, row)) for row in rows]
        return [job for job in jobs if (statuses is None or job["status"] in statuses) and job["status"] not in exclude]

    def batch_job_requests(self, job: int) -> Iterator[tuple[str, str]]:
        """(key, body as JSON) of the requests a job carries, in the order they were recorded."""
        reader = sqlite3.connect(self.path)  # its own snapshot, as for unsubmitted_batch_requests
        try:
            yield from reader.execute("SELECT key, body FROM batch_requests WHERE job = ? ORDER BY rowid", (job,))
        finally:
            reader.close()

    def batch_job_keys(self, job: int) -> list[str]:
        """The keys of the requests a job carries."""
        return [key for (key,) in self._db.execute("SELECT key FROM batch_requests WHERE job = ? ORDER BY rowid",
                                                   (job,))]

    def finish_batch_job(self, job: int, status: str, answers: dict[str, str], errors: dict[str, tuple[str, str]],
                         output_file_id: str | None = None, error_file_id: str | None = None) -> None:
        """In one transaction: the job's answers ({key: response body as JSON}) and errors ({key: (kind,
        message)}) stored, and the job set to its final `status`. Keys the job does not carry are ignored."""
        with self._transaction():
            self._db.executemany("UPDATE batch_requests SET answer = ?, error_kind = NULL, error = NULL "
                                 "WHERE key = ? AND job = ?", ((body, key, job) for key, body in answers.items()))
            self._db.executemany("UPDATE batch_requests SET error_kind = ?, error = ? WHERE key = ? AND job = ? "
                                 "AND answer IS NULL", ((kind, message, key, job)
                                                        for key, (kind, message) in errors.items()))
            self._db.execute("UPDATE batch_jobs SET status = ?, output_file_id = ?, error_file_id = ?, updated_at = ? "
                             "WHERE id = ?", (status, output_file_id, error_file_id, time.time(), job))

    def batch_counts(self) -> dict[str, int]:
        """Batch requests by state: answered, failed (an error), in_flight (a job carries them, no answer yet),
        unsubmitted; and jobs."""
        answered, failed, in_flight, unsubmitted = self._db.execute(
            "SELECT count(answer), count(error_kind), "
            "sum(job IS NOT NULL AND answer IS NULL AND error_kind IS NULL), "
            "sum(job IS NULL AND answer IS NULL AND error_kind IS NULL) FROM batch_requests").fetchone()
        jobs = self._db.execute("SELECT count(*) FROM batch_jobs").fetchone()[0]
        return {"answered": answered, "failed": failed, "in_flight": in_flight or 0, "unsubmitted": unsubmitted or 0,
                "jobs": jobs}

    def batch_reader(self) -> "BatchReader":
        """A read-only view of the batch answers for other threads (an LM engine's): see BatchReader."""
        return BatchReader(self.path)
