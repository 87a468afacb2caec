"""The run store: one SQLite database (WAL) per run directory, holding the chunks and each chunk's result.

A result is committed the moment its chunk finishes, so a run killed at any point loses only the chunks in
flight, and re-running the same command continues where it stopped. Exports read the store in chunk order;
a chunk has at most one result, so no sample can be exported twice.
"""

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from datagen.errors import DiskError, RunFolderError
from datagen.samples import Failed, Sample
from datagen.store.batch_jobs import BatchJobs
from datagen.store.held_out import HeldOutSplit
from datagen.store.quality import QualityRecords
from datagen.store.records import Call, Outcome, Review, Step, sum_usage
from datagen.store.schema import CORE_TABLES, DB_FILE, SCHEMA
from datagen.text.chunking import Chunk
from datagen.util import unwritable
from datagen.util.database import open_database, open_read_only, transaction

# How a refusal names a part of a run's identity that changed (others by their key).
_IDENTITY = {"program": "a different program", "inputs": "different inputs",
             "code": "different program code (the pipeline's module, or a workspace module it imports, was edited)"}
_CHUNK_COLUMNS = 'id, source, start, "end", text, tokens'
# Pending chunks read at a time (`RunStore.pending`): a run takes them as slots free up.
_PENDING_PAGE = 256
_JOINED_CHUNK_COLUMNS = ", ".join("c." + col for col in _CHUNK_COLUMNS.split(", "))  # chunks as c in a join


class RunStore(HeldOutSplit, BatchJobs, QualityRecords):
    """A run folder's store (RUN/run.db), made when missing, open for writing.

    Args:
        run_dir: the run folder; made when missing.

    Raises:
        RunFolderError: run.db is there but is not a datagen run store.
        DiskError: the folder cannot be made or written (a full disk, a read-only one, no permission); so does a
            write (a transaction) the disk refuses later, after its rollback.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / DB_FILE
        self._db = open_database(self.path, SCHEMA, "datagen run store")

    @classmethod
    def over(cls, db: sqlite3.Connection, path: Path | None = None) -> "RunStore":
        """A store that reads through `db`, a connection the caller opened and closes (read-only, or an in-memory
        database of this schema: datagen view); nothing is created or migrated. `path`: the run.db it reads, for
        messages (None: an evaluation's in-memory database)."""
        store = cls.__new__(cls)
        store.path, store._db = path, db
        return store

    @classmethod
    def existing(cls, run_dir: str | Path) -> "RunStore":
        """The store of a run folder that `datagen generate` made; refused (never created) when there is none. On a
        folder this process cannot write (a read-only disk, no write permission, a full disk) it is opened
        read-only, as `reading` opens it: everything reads, and a write raises DiskError naming the folder.

        Raises:
            RunFolderError: the folder holds no run.db, or one that is not a datagen run store.
        """
        path = _made_run(run_dir) / DB_FILE
        if unwritable(path.parent) is None and os.access(path, os.W_OK):
            try:
                return cls(path.parent)
            except DiskError:  # the disk filled up meanwhile: what is there can still be read
                pass
        return cls._read_only(path)

    @classmethod
    @contextmanager
    def reading(cls, run_dir: str | Path) -> Iterator["RunStore"]:
        """The store of a run folder that `datagen generate` made, opened read-only for the block, on any disk (a
        read-only one included: see `read_only_db`): nothing in the file is created, migrated or written; a write
        raises DiskError naming the folder.

        Raises:
            RunFolderError: the folder holds no run.db, or one that is not a datagen run store.
        """
        store = cls._read_only(_made_run(run_dir) / DB_FILE)
        try:
            yield store
        finally:
            store.close()

    @classmethod
    def _read_only(cls, path: Path) -> "RunStore":
        return cls.over(read_only_db(path), path)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- identity -------------------------------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, value FROM meta"))

    def set_meta(self, values: dict[str, str]) -> None:
        with self._transaction():
            self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", values.items())

    def claim(self, identity: dict[str, str], force: bool = False) -> None:
        """Bind the store to what produced it (program fingerprint, inputs). A run directory made by something
        else is refused, never silently mixed; `force` adopts it, dropping results the new program would
        not have produced."""
        stored = self.meta()
        changed = [key for key, value in identity.items() if key in stored and stored[key] != value]
        if changed and not force:
            key = changed[0]
            made_with = _IDENTITY.get(key, "a different " + key)
            raise RunFolderError(f"{self.path.parent}: this run was made with {made_with} "
                                 f"({stored[key][:12]} here, {identity[key][:12]} now): use a new --out, "
                                 "or --force to reuse it")
        if changed:
            with self._transaction():
                # Not the held-out split: a chunk id is its text's hash, and a chunk once in train (a model may
                # have trained on it) must not be drawn into test by the run that replaces this one; nor, cut
                # at other boundaries, may its text (retired).
                self.retire_trained()
                for table in ("reviews", "calls", "steps", "results", "chunks", "servers"):
                    self._db.execute(f"DELETE FROM {table}")
        self.set_meta(identity)

    # --- chunks ---------------------------------------------------------------------------------------------

    def add_chunks(self, chunks: Iterable[Chunk]) -> int:
        """Store chunks in order (streamed, in one transaction); returns how many the store now holds."""
        with self._transaction():
            self._db.executemany(
                f"INSERT OR IGNORE INTO chunks ({_CHUNK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                ((c.id, c.source, c.start, c.end, c.text, c.tokens) for c in chunks))
        return self._db.execute("SELECT count(*) FROM chunks").fetchone()[0]

    def chunks(self) -> Iterator[Chunk]:
        """Every chunk of the run, in order."""
        return (Chunk(*row) for row in self._db.execute(f"SELECT {_CHUNK_COLUMNS} FROM chunks ORDER BY ord").fetchall())

    _PENDING = ("FROM (SELECT * FROM chunks ORDER BY ord LIMIT ?) WHERE id NOT IN "
                "(SELECT chunk_id FROM results WHERE status = 'done')")

    def pending_count(self, limit: int | None = None) -> int:
        return self._db.execute(f"SELECT count(*) {self._PENDING}", (-1 if limit is None else limit,)).fetchone()[0]

    def pending(self, limit: int | None = None) -> Iterator[Chunk]:
        """Chunks among the first `limit` (all by default) without a successful result, in order; failed
        ones are tried again."""
        # Read on a connection of its own, which any thread may use: a generator left unfinished (a run killed by an
        # exception) is closed by the garbage collector, in whichever thread it runs.
        reader = sqlite3.connect(self.path, check_same_thread=False)
        try:
            last = reader.execute("SELECT max(ord) FROM (SELECT ord FROM chunks ORDER BY ord LIMIT ?)",
                                  (-1 if limit is None else limit,)).fetchone()[0] or 0
            after = 0  # a chunk's ord is its rowid: 1 and up
            while after < last:
                # A page at a time, each read whole: a statement open for the whole run held a snapshot, behind
                # which SQLite cannot start its write-ahead log over (19 MB at 640 chunks, all copied into the
                # database as the store closed, 9 ms after the run's last answer). Each done chunk looked up by its
                # key, not a list of every done chunk made again for each page.
                rows = reader.execute(
                    f"SELECT ord, {_CHUNK_COLUMNS} FROM chunks WHERE ord > ? AND ord <= ? AND NOT EXISTS (SELECT 1 "
                    "FROM results WHERE chunk_id = chunks.id AND status = 'done') ORDER BY ord LIMIT ?",
                    (after, last, _PENDING_PAGE)).fetchall()
                if not rows:
                    return
                for after, *chunk in rows:
                    yield Chunk(*chunk)
        finally:
            reader.close()

    # --- results --------------------------------------------------------------------------------------------

    def record(self, outcome: Outcome) -> None:
        """Commit one chunk's result now, replacing an earlier failure; the tokens the earlier attempts spent
        are added to this one's (they were paid for)."""
        samples = [_sample_row(s) for s in outcome.samples]
        with self._transaction():
            usage = self._usage_with(outcome.chunk.id, outcome.usage)
            self._db.execute(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (outcome.chunk.id, "failed" if outcome.failure else "done", _json(samples), outcome.failure,
                 outcome.message, outcome.seconds, time.time(), _json(outcome.outputs), outcome.raw,
                 _json(usage)))
            self._replace_scores(outcome.chunk.id, outcome.scores)
            self._replace_log(outcome.chunk.id, outcome.steps, outcome.calls)
            self._add_server_counts(outcome.calls)

    def set_scores(self, chunk_id: str, scores: list[dict]) -> None:
        """Replace a done chunk's sample scores ({metric: Score} per sample)."""
        with self._transaction():
            self._replace_scores(chunk_id, scores)

    def add_usage(self, chunk_id: str, usage: dict) -> None:
        """Add tokens spent on a finished chunk after its run ({model: usage}, e.g. scoring it) to its result's."""
        if usage:
            with self._transaction():
                self._db.execute("UPDATE results SET usage = ? WHERE chunk_id = ?",
                                 (_json(self._usage_with(chunk_id, usage)), chunk_id))

    def _usage_with(self, chunk_id: str, more: dict) -> dict:
        """The tokens the chunk's stored result counts, with `more` added."""
        row = self._db.execute("SELECT usage FROM results WHERE chunk_id = ?", (chunk_id,)).fetchone()
        return sum_usage(_loads(row[0]) if row else None, more)

    def _replace_scores(self, chunk_id: str, scores: list[dict]) -> None:
        # A metric that failed on a sample gave it no score: unscored on it, a gate on it holds the sample back.
        self._db.execute("DELETE FROM scores WHERE chunk_id = ?", (chunk_id,))
        self._db.executemany("INSERT INTO scores VALUES (?, ?, ?, ?, ?)", (
            (chunk_id, index, metric, score.value, score.feedback)
            for index, sample_scores in enumerate(scores) for metric, score in sample_scores.items()
            if not isinstance(score, Failed)))

    def _replace_log(self, chunk_id: str, steps: list[Step], calls: list[Call]) -> None:
        """The chunk's steps and LM calls, replacing an earlier attempt's (in the result's transaction, so that
        the log and the result it led to are never one without the other)."""
        self._db.execute("DELETE FROM steps WHERE chunk_id = ?", (chunk_id,))
        self._db.execute("DELETE FROM calls WHERE chunk_id = ?", (chunk_id,))
        self._db.executemany("INSERT INTO steps VALUES (?, ?, ?, ?, ?, ?)", (
            (chunk_id, seq, s.step, _json(s.inputs), _json(s.outputs), s.error) for seq, s in enumerate(steps)))
        self._db.executemany("INSERT INTO calls VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (
            (chunk_id, seq, c.step, c.model, _json(c.messages), c.response, c.error, _json(c.usage), c.cached,
             c.seconds) for seq, c in enumerate(calls)))

    def _add_server_counts(self, calls: list[Call]) -> None:
        """Add the requests `calls` sent to each server (`Call.servers`) to the run's counts."""
        counts: dict[tuple[str, str, str], list] = {}
        for call in calls:
            for role, api_base, error in call.servers:
                count = counts.setdefault((role, call.model, api_base), [0, 0, None])
                count[0] += 1
                if error is not None:
                    count[1] += 1
                    count[2] = error
        self._db.executemany(
            "INSERT INTO servers VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (role, model, api_base) DO UPDATE SET "
            "calls = calls + excluded.calls, failures = failures + excluded.failures, "
            "last_error = coalesce(excluded.last_error, last_error)",
            ((*key, *count) for key, count in counts.items()))

    def servers(self) -> list[dict]:
        """Each server of a role with several, in the order first used: role, model, api_base, calls (requests sent
        to it), failures (requests that got an error) and last_error. Empty for a store older than the table."""
        try:
            rows = self._db.execute("SELECT role, model, api_base, calls, failures, last_error FROM servers "
                                    "ORDER BY rowid")
        except sqlite3.OperationalError:  # a store opened read-only (RunStore.over) from before the table
            return []
        names = [d[0] for d in rows.description]
        return [dict(zip(names, row)) for row in rows]

    def usage(self) -> dict[str, dict]:
        """Tokens spent per model over the whole run, failed chunks included: {model: {"prompt_tokens": int,
        "completion_tokens": int, "prompt_tokens_details": {"cached_tokens": int}}}, the cached prompt tokens (a
        part of the prompt tokens) as the provider reported them (0 where it reported none; `cached_tokens`)."""
        rows = self._db.execute(
            "SELECT u.key, sum(json_extract(u.value, '$.prompt_tokens')), "
            "sum(json_extract(u.value, '$.completion_tokens')), "
            "sum(json_extract(u.value, '$.prompt_tokens_details.cached_tokens')) "
            "FROM results, json_each(results.usage) u WHERE results.usage IS NOT NULL GROUP BY u.key")
        return {model: {"prompt_tokens": p or 0, "completion_tokens": c or 0,
                        "prompt_tokens_details": {"cached_tokens": k or 0}} for model, p, c, k in rows}

    def failures(self) -> dict[str, tuple[int, str]]:
        """Failed chunks by kind: how many, and one example message."""
        rows = self._db.execute("SELECT failure, count(*), min(message) FROM results WHERE status = 'failed' "
                                "GROUP BY failure ORDER BY count(*) DESC")
        return {kind: (count, example or "") for kind, count, example in rows}

    def dropped(self) -> dict[str, int]:
        """Candidates the pipeline's own checks rejected in finished chunks (each step's `dropped` list), by
        reason (an entry's "reason"), most frequent first."""
        rows = self._db.execute(
            "SELECT coalesce(CASE WHEN d.type = 'object' THEN json_extract(d.value, '$.reason') END, 'unspecified'), "
            "count(*) FROM results r, json_each(r.outputs, '$.dropped') d "
            "WHERE r.status = 'done' AND json_valid(r.outputs) GROUP BY 1 ORDER BY 2 DESC, 1")
        return {str(reason): count for reason, count in rows}

    def sample_count(self) -> int:
        return self._db.execute("SELECT coalesce(sum(json_array_length(samples)), 0) FROM results "
                                "WHERE status = 'done'").fetchone()[0]

    def counts(self) -> dict[str, int]:
        total = self._db.execute("SELECT count(*) FROM chunks").fetchone()[0]
        by_status = dict(self._db.execute("SELECT status, count(*) FROM results GROUP BY status"))
        return {"chunks": total, "done": by_status.get("done", 0), "failed": by_status.get("failed", 0)}

    def failure_counts(self) -> dict[str, int]:
        """Failed chunks by kind ("parse", "timeout", ...), most frequent first."""
        return {kind: count for kind, (count, _) in self.failures().items()}

    def done(self) -> Iterator[tuple[Chunk, list[Sample]]]:
        """Finished chunks with their samples, in chunk order."""
        rows = self._db.execute(
            f"SELECT {_JOINED_CHUNK_COLUMNS}, r.samples "
            "FROM chunks c JOIN results r ON r.chunk_id = c.id WHERE r.status = 'done' ORDER BY c.ord")
        for *chunk, samples in rows:  # NULL: done with no samples (the pipeline's own checks rejected all)
            yield Chunk(*chunk), [_sample(row) for row in _loads(samples) or []]

    def chunk_texts(self, limit: int) -> list[str]:
        """The text of up to `limit` chunks spread evenly over the run (e.g. references of the author's style)."""
        total = self._db.execute("SELECT count(*) FROM chunks").fetchone()[0]
        step = max(1, total // limit)
        return [text for (text,) in self._db.execute(
            "SELECT text FROM chunks WHERE (ord - 1) % ? = 0 ORDER BY ord LIMIT ?", (step, limit))]

    def scored_metrics(self) -> set[str]:
        return {name for (name,) in self._db.execute("SELECT DISTINCT metric FROM scores")}

    def sample_scores(self, chunk_id: str) -> dict[int, dict[str, float]]:
        """A done chunk's scores: {sample index: {metric: value}}."""
        return {index: {metric: value for metric, (value, _) in scores.items()}
                for index, scores in self.sample_feedback(chunk_id).items()}

    def sample_feedback(self, chunk_id: str) -> dict[int, dict[str, tuple[float, str | None]]]:
        """A done chunk's scores with the metric's feedback: {sample index: {metric: (value, feedback)}}."""
        scores: dict[int, dict[str, tuple[float, str | None]]] = {}
        for index, metric, value, feedback in self._db.execute(
                "SELECT sample, metric, value, feedback FROM scores WHERE chunk_id = ?", (chunk_id,)):
            scores.setdefault(index, {})[metric] = (value, feedback)
        return scores

    # --- inspection -----------------------------------------------------------------------------------------

    def chunk(self, chunk_id: str) -> Chunk | None:
        row = self._db.execute(f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE id = ?", (chunk_id,)).fetchone()
        return Chunk(*row) if row else None

    def result(self, chunk_id: str) -> dict | None:
        """A chunk's result (status, samples, failure, message, seconds, outputs, raw, usage), JSON decoded;
        None when the chunk has not been run."""
        cursor = self._db.execute("SELECT status, samples, failure, message, seconds, outputs, raw, usage "
                                  "FROM results WHERE chunk_id = ?", (chunk_id,))
        row = cursor.fetchone()
        if row is None:
            return None
        result = dict(zip((c[0] for c in cursor.description), row))
        for key in ("outputs", "usage"):
            result[key] = _loads(result[key]) or {}
        result["samples"] = [_sample(r) for r in _loads(result["samples"]) or []]
        return result

    def steps(self, chunk_id: str) -> list[Step]:
        rows = self._db.execute("SELECT step, inputs, outputs, error FROM steps WHERE chunk_id = ? ORDER BY seq",
                                (chunk_id,))
        return [Step(step, _loads(inputs) or {}, _loads(outputs), error) for step, inputs, outputs, error in rows]

    def calls(self, chunk_id: str) -> list[Call]:
        rows = self._db.execute("SELECT step, model, messages, response, error, usage, cached, seconds FROM calls "
                                "WHERE chunk_id = ? ORDER BY seq", (chunk_id,))
        return [Call(step, model, _loads(messages), response, error, _loads(usage),
                     None if cached is None else bool(cached), seconds)
                for step, model, messages, response, error, usage, cached, seconds in rows]

    def failed_ids(self) -> set[str]:
        return {chunk_id for (chunk_id,) in self._db.execute("SELECT chunk_id FROM results WHERE status = 'failed'")}

    def failed(self) -> Iterator[tuple[Chunk, str, str | None, str | None]]:
        """Failed chunks in chunk order, each with its failure's kind, message and the raw answer if any."""
        rows = self._db.execute(
            f"SELECT {_JOINED_CHUNK_COLUMNS}, r.failure, r.message, r.raw "
            "FROM chunks c JOIN results r ON r.chunk_id = c.id WHERE r.status = 'failed' ORDER BY c.ord")
        for *chunk, kind, message, raw in rows:
            yield Chunk(*chunk), kind, message, raw

    # --- human reviews (datagen/dataset/review.py) --------------------------------------------------------------------

    def set_review(self, review: Review) -> None:
        """Store a sample's review, replacing the one it had (committed at once). A review with nothing in it
        (no verdict, rating, comment or correction) deletes the sample's."""
        with self._transaction():
            self._db.execute("DELETE FROM reviews WHERE chunk_id = ? AND sample = ?", (review.chunk_id, review.sample))
            if not review.empty:
                self._db.execute("INSERT INTO reviews VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (
                    review.chunk_id, review.sample, review.verdict, _json(review.ratings), review.comment or None,
                    review.input, review.output, time.time()))

    def review(self, chunk_id: str, sample: int) -> Review | None:
        row = self._db.execute(f"SELECT {_REVIEW_COLUMNS} FROM reviews WHERE chunk_id = ? AND sample = ?",
                               (chunk_id, sample)).fetchone()
        return _review(row) if row else None

    def reviews(self) -> dict[tuple[str, int], Review]:
        """Every review, by (chunk id, sample index)."""
        return {(row[0], row[1]): _review(row) for row in self._db.execute(f"SELECT {_REVIEW_COLUMNS} FROM reviews")}

    def _transaction(self):
        return transaction(self._db, self.path)


def read_only_db(path: Path, *, check_same_thread: bool = True) -> sqlite3.Connection:
    """A read-only connection to the run store at `path` (a run folder's run.db), on any disk: SQLite's read-only
    mode, or where the folder cannot be written its immutable mode or a copy in memory (datagen.util.database.
    open_read_only says when each). A store made by an older version reads as the current one, its newer tables
    empty; every write raises sqlite3.OperationalError.

    Raises:
        RunFolderError: the file is not a datagen run store.
    """
    return open_read_only(path, SCHEMA, "datagen run store", CORE_TABLES, check_same_thread=check_same_thread)


def _made_run(run_dir: str | Path) -> Path:
    """`run_dir` as a Path, refused when it holds no run store (datagen generate makes one)."""
    run = Path(run_dir)
    if not (run / DB_FILE).is_file():
        raise RunFolderError(f"{run}: not a datagen run folder (no {DB_FILE}); make one with datagen generate")
    return run


def _sample_row(sample: Sample) -> list:
    """A sample as stored: [input, output], with its earlier turns third when it has any (so single-turn rows
    stay as every store has always written them)."""
    row = [sample.input, sample.output]
    return [*row, [list(turn) for turn in sample.history]] if sample.history else row


def _sample(row: list) -> Sample:
    """A stored row back as a sample (rows written before samples had a history have two elements)."""
    history = row[2] if len(row) > 2 else ()
    return Sample(row[0], row[1], tuple(tuple(turn) for turn in history))


_REVIEW_COLUMNS = "chunk_id, sample, verdict, ratings, comment, input, output, updated_at"


def _review(row: tuple) -> Review:
    chunk_id, sample, verdict, ratings, comment, input_, output, updated_at = row
    return Review(chunk_id, sample, verdict, _loads(ratings) or {}, comment, input_, output, updated_at)


def _loads(value: str | None):
    return json.loads(value) if value else None


def _json(value) -> str | None:
    return json.dumps(value, ensure_ascii=False, default=str) if value else None
