"""What `datagen view` shows, read from SQLite: a run's samples paged and filtered in SQL, its overview, a pairing
of two runs sample by sample.

A `Source` is one database in the run store's schema: a run folder's `run.db`, read through a read-only
connection per request (so that a run `generate` is still writing is read as it stands, and the view cannot
damage it; a run folder on a read-only disk is shown all the same, only a review cannot be saved there), or an
evaluation (`eval.json` of `datagen evaluate`, or the one `datagen optimize` writes beside a compiled program)
loaded into an in-memory database of the same tables, read-only to the reviewer.
"""

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from datagen.errors import DatagenError
from datagen.store import DB_FILE, SCHEMA, RunStore, read_only_db
from datagen.workspace.compiled import evaluation_path

PAGE = 50  # samples a list page shows
BINS = 10  # histogram bins over [0, 1]
REVIEW_STATES = ("unreviewed", "reviewed", "good", "bad", "corrected")
EVAL_FILE = "eval.json"


@dataclass
class Source:
    """A run (or an evaluation) the view shows: `name` as the pages call it, `path` of its database, `label` as
    given on the command line; `writable` when reviews can be stored (a run folder's store)."""

    name: str
    label: str
    path: Path | None
    writable: bool
    _memory: sqlite3.Connection | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _cache: dict = field(default_factory=dict, repr=False)

    def cached(self, db: sqlite3.Connection, key: tuple, compute, *, reviews: bool = False):
        """`compute()` as it was for `key` while the store has not changed since (a whole-run figure takes a scan
        of a large store: hundreds of ms at 100,000 samples); with `reviews`, a change of review counts too. The
        state is read in a few ms from indexes: results' count and last rowid (a finished or retried chunk moves
        it), the scores' count, the meta, and the reviews' count and last change."""
        state = db.execute("SELECT (SELECT count(*) FROM results), (SELECT max(rowid) FROM results), "
                           "(SELECT count(*) FROM scores), (SELECT group_concat(value) FROM meta)").fetchone()
        if reviews:
            state += db.execute("SELECT count(*), max(updated_at) FROM reviews").fetchone()
        hit = self._cache.get(key)
        if hit is not None and hit[0] == state:
            return hit[1]
        value = compute()
        self._cache[key] = (state, value)
        return value

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A connection that reads the source as it stands now (a fresh read-only one for a run folder)."""
        if self._memory is not None:
            with self._lock:  # one in-memory connection, shared by the server's threads
                yield self._memory
            return
        db = read_only_db(self.path, check_same_thread=False)
        try:
            yield db
        finally:
            db.close()

    @contextmanager
    def store(self) -> Iterator[RunStore]:
        """The run store, to write a review (a run folder only; made up to date with the schema first). Raises
        DiskError for a run folder on a read-only disk, or one whose disk is full."""
        if not self.writable:
            raise DatagenError(f"{self.label}: an evaluation is read-only; review the samples of a run folder")
        with RunStore(self.path.parent) as store:
            yield store


def open_sources(targets: list[Path]) -> list[Source]:
    """A source per target, in order: a run folder (holding run.db), an evaluation folder (holding eval.json), or an
    evaluation JSON file, such as the NAME.eval.json `datagen optimize` writes beside compiled/PIPELINE/ NAME.json
    (the state's path names it too), which holds the compiled program's held-out samples and the uncompiled one's
    (its `baseline`): then both become sources, "NAME (uncompiled)" and "NAME (compiled)". Raises DatagenError for
    anything else."""
    sources: list[Source] = []
    for target in targets:
        if (target / DB_FILE).is_file():
            read_only_db(target / DB_FILE).close()  # refuses a file that is not a run store; nothing is written
            sources.append(Source(_unique(target.name or str(target), sources), str(target), target / DB_FILE, True))
            continue
        file = target / EVAL_FILE if target.is_dir() else target
        if file.suffix == ".json" and not file.name.endswith(".eval.json") and evaluation_path(file).is_file():
            file = evaluation_path(file)  # a compiled program's state: its held-out evaluations beside it
        if not file.is_file() or file.suffix != ".json":
            raise DatagenError(f"{target}: not a run folder (no {DB_FILE}) nor an evaluation ({EVAL_FILE})")
        try:
            result = json.loads(file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatagenError(f"{file}: not an evaluation (invalid JSON: {exc})") from None
        if not isinstance(result, dict) or not isinstance(result.get("samples"), list):
            raise DatagenError(f"{file}: not an evaluation (no \"samples\" list)")
        stem = (target.name if target.is_dir() else file.name.removesuffix(".json").removesuffix(".eval"))
        if isinstance(result.get("baseline"), dict):
            baseline = result["baseline"]
            sources.append(_evaluation(_unique(f"{stem} (uncompiled)", sources), str(file), baseline))
            sources.append(_evaluation(_unique(f"{stem} (compiled)", sources), str(file), result))
        else:
            sources.append(_evaluation(_unique(stem, sources), str(file), result))
    return sources


def _unique(name: str, sources: list[Source]) -> str:
    taken = {s.name for s in sources}
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name} ({n})", n + 1
    return candidate


def _evaluation(name: str, label: str, result: dict) -> Source:
    """An evaluation's samples and failures in an in-memory database of the run store's tables."""
    db = sqlite3.connect(":memory:", check_same_thread=False)
    db.executescript(SCHEMA)
    db.execute("INSERT INTO meta VALUES ('pipeline', ?)", (str(result.get("pipeline", "")),))
    by_chunk: dict[str, list[dict]] = {}
    texts: dict[str, str] = {}
    for record in result.get("samples") or []:
        chunk_id = str(record.get("chunk_id"))
        by_chunk.setdefault(chunk_id, []).append(record)
        texts[chunk_id] = record.get("chunk") or ""
    for failure in result.get("failures") or []:
        texts.setdefault(str(failure.get("chunk_id")), failure.get("chunk") or "")
    for chunk_id, text in texts.items():
        db.execute("INSERT INTO chunks (id, source, start, \"end\", text, tokens) VALUES (?, ?, 0, ?, ?, 0)",
                   (chunk_id, str(result.get("dev", "")), len(text), text))
    for chunk_id, records in by_chunk.items():
        samples = [[r.get("input", ""), r.get("output", "")] for r in records]
        db.execute("INSERT INTO results (chunk_id, status, samples, finished_at) VALUES (?, 'done', ?, 0)",
                   (chunk_id, json.dumps(samples, ensure_ascii=False)))
        db.executemany("INSERT INTO scores VALUES (?, ?, ?, ?, ?)", (
            (chunk_id, index, metric, score["value"], score.get("feedback"))
            for index, record in enumerate(records) for metric, score in (record.get("scores") or {}).items()
            if isinstance(score, dict) and isinstance(score.get("value"), int | float)))
    for failure in result.get("failures") or []:
        db.execute("INSERT OR IGNORE INTO results (chunk_id, status, failure, message, finished_at) "
                   "VALUES (?, 'failed', ?, ?, 0)", (str(failure.get("chunk_id")), failure.get("kind"),
                                                    failure.get("message")))
    db.commit()
    return Source(name, label, None, False, db)


# --- the sample list -----------------------------------------------------------------------------------------

@dataclass
class Query:
    """A sample list's filters, as the list page's form sends them: `q` (text in the input or output, generated
    or corrected, or in the comment), `source` (a source file), `review` (one of REVIEW_STATES), `metric` with
    `order` "worst" (lowest first) or "best", `below` {metric: bar} (samples under any bar: below the gate), and
    the page (from 1)."""

    q: str = ""
    source: str = ""
    review: str = ""
    metric: str = ""
    order: str = ""
    below: dict[str, float] = field(default_factory=dict)
    page: int = 1
    gate: bool = False  # `below` is the run's own gate (so links ask for it as gate=1)


# CROSS JOIN: SQLite keeps chunks as the outer loop, so corpus order is the scan's own (no sort of every sample),
# and json_each gives a chunk's samples in their order.
_SAMPLES = """
FROM chunks c CROSS JOIN results r ON r.chunk_id = c.id AND r.status = 'done' AND r.samples IS NOT NULL
JOIN json_each(r.samples) s
LEFT JOIN reviews v ON v.chunk_id = c.id AND v.sample = s.key
LEFT JOIN scores m ON m.chunk_id = c.id AND m.sample = s.key AND m.metric = :metric
"""
_REVIEW_WHERE = {"unreviewed": "v.chunk_id IS NULL", "reviewed": "v.chunk_id IS NOT NULL",
                 "good": "v.verdict = 'good'", "bad": "v.verdict = 'bad'",
                 "corrected": "(v.input IS NOT NULL OR v.output IS NOT NULL)"}


def _filter(query: Query) -> tuple[str, dict]:
    """The SQL condition (over _SAMPLES) and parameters of `query`'s filters."""
    where, params = ["1"], {"metric": query.metric}
    if query.q:
        params["q"] = query.q.lower()
        where.append("(instr(lower(json_extract(s.value, '$[0]')), :q) OR instr(lower(json_extract(s.value, '$[1]')), "
                     ":q) OR instr(lower(coalesce(v.input, '')), :q) OR instr(lower(coalesce(v.output, '')), :q) "
                     "OR instr(lower(coalesce(v.comment, '')), :q))")
    if query.source:
        params["source"] = query.source
        where.append("c.source = :source")
    if query.review:
        if query.review not in _REVIEW_WHERE:
            raise DatagenError(f"review filter {query.review!r}: one of {', '.join(REVIEW_STATES)}")
        where.append(_REVIEW_WHERE[query.review])
    for number, (metric, bar) in enumerate(query.below.items()):
        params[f"bm{number}"], params[f"bb{number}"] = metric, bar
    if query.below:  # below the gate: under any of its bars, or never scored on one of its metrics
        where.append("(" + " OR ".join(
            f"coalesce((SELECT g.value FROM scores g WHERE g.chunk_id = c.id AND g.sample = s.key AND "
            f"g.metric = :bm{n}), -1) < :bb{n}" for n in range(len(query.below))) + ")")
    return " AND ".join(where), params


# Samples scored on :metric, walked in the order of the scores_by_metric index (worst or best first, no sort of
# every sample): the list when it is ordered by a metric.
_SCORED = """
FROM scores m CROSS JOIN chunks c ON c.id = m.chunk_id
CROSS JOIN results r ON r.chunk_id = c.id AND r.status = 'done' AND r.samples IS NOT NULL
JOIN json_each(r.samples) s ON s.key = m.sample
LEFT JOIN reviews v ON v.chunk_id = c.id AND v.sample = s.key
"""


def _by_score(query: Query) -> bool:
    return bool(query.metric) and query.order in ("worst", "best")


def _listed(query: Query) -> tuple[str, str, str]:
    """FROM clause, the list's extra condition and its ORDER BY: corpus order over every sample, or the samples
    scored on the metric, worst (lowest) or best first, ties in corpus order."""
    if _by_score(query):
        return _SCORED, " AND m.metric = :metric", f"m.value {'ASC' if query.order == 'worst' else 'DESC'}, c.ord, s.key"
    return _SAMPLES, "", "c.ord"  # see _SAMPLES: the scan's own order


_ROW = ("SELECT c.id, s.key, c.source, c.start, c.\"end\", json_extract(s.value, '$[0]'), json_extract(s.value, '$[1]'), "
        "m.value, v.verdict, (v.input IS NOT NULL OR v.output IS NOT NULL) ")
_ROW_NAMES = ("chunk_id", "index", "source", "start", "end", "input", "output", "score", "verdict", "corrected")


def list_samples(source: Source, query: Query) -> tuple[list[dict], int]:
    """One page of samples matching `query`, in corpus order (or by `query.metric`), and how many match in all.
    Each row: chunk_id, index, source, start, end, input, output, score (of `query.metric`), verdict,
    corrected."""
    condition, params = _filter(query)
    sampled, scored, order = _listed(query)
    condition += scored
    with source.read() as db:
        total = source.cached(db, ("count", sampled, condition, tuple(sorted(params.items()))), lambda: db.execute(
            f"SELECT count(*) {sampled} WHERE {condition}", params).fetchone()[0], reviews=True)
        params.update(limit=PAGE, offset=(max(query.page, 1) - 1) * PAGE)
        rows = db.execute(f"{_ROW} {sampled} WHERE {condition} ORDER BY {order} LIMIT :limit OFFSET :offset",
                          params).fetchall()
    return [dict(zip(_ROW_NAMES, row)) for row in rows], total


def neighbours(source: Source, query: Query, chunk_id: str, index: int) -> tuple[tuple | None, tuple | None]:
    """The samples just before and just after (chunk_id, index) in the order of the list `query` gives, as
    (chunk_id, index), or None at an end: j and k move through a filtered list as the reviewer works. The sample
    itself need not be in the list (it leaves an "unreviewed" list once reviewed): its neighbours are found by
    its place in the order."""
    condition, params = _filter(query)
    params.update(cid=chunk_id, idx=index)
    with source.read() as db:
        here = db.execute(f"SELECT c.ord, m.value {_SAMPLES} WHERE c.id = :cid AND s.key = :idx", params).fetchone()
        if here is None or (_by_score(query) and here[1] is None):
            return None, None
        params.update(o=here[0], v=here[1])
        if _by_score(query):
            found = []
            for forward in (False, True):
                # Worst first, the next sample scores higher (or the same, later in the corpus); best first, lower.
                up = forward == (query.order == "worst")
                further, direction = (">", "ASC") if up else ("<", "DESC")
                place = ">" if forward else "<"
                tie = "ASC" if forward else "DESC"
                row = db.execute(
                    f"SELECT c.id, s.key {_SCORED} WHERE {condition} AND m.metric = :metric AND m.value {further}= :v "
                    f"AND (m.value {further} :v OR (c.ord, s.key) {place} (:o, :idx)) "
                    f"ORDER BY m.value {direction}, c.ord {tie}, s.key {tie} LIMIT 1", params).fetchone()
                found.append(tuple(row) if row else None)
            return found[0], found[1]
        # Corpus order: a range of the chunks' rowid, scanned in order with no sort. json_each gives a chunk's
        # samples in ascending order, so the next sample is the first row after this one; the previous one is the
        # last sample before it in the nearest chunk that has one.
        after = db.execute(f"SELECT c.id, s.key {_SAMPLES} WHERE {condition} AND c.ord >= :o AND (c.ord, s.key) > "
                           "(:o, :idx) ORDER BY c.ord LIMIT 1", params).fetchone()
        nearest = db.execute(f"SELECT c.ord {_SAMPLES} WHERE {condition} AND c.ord <= :o AND (c.ord, s.key) < "
                             "(:o, :idx) ORDER BY c.ord DESC LIMIT 1", params).fetchone()
        before = nearest and db.execute(
            f"SELECT c.id, max(s.key) {_SAMPLES} WHERE {condition} AND c.ord = :near AND (c.ord, s.key) < (:o, :idx)",
            {**params, "near": nearest[0]}).fetchone()
    return (tuple(before) if before else None), (tuple(after) if after else None)


def list_failed(source: Source, page: int = 1) -> tuple[list[dict], int]:
    """One page of failed chunks in corpus order (chunk_id, source, start, end, kind, message, raw), and how
    many failed."""
    with source.read() as db:
        total = db.execute("SELECT count(*) FROM results WHERE status = 'failed'").fetchone()[0]
        rows = db.execute("SELECT c.id, c.source, c.start, c.\"end\", r.failure, r.message, r.raw FROM chunks c "
                          "JOIN results r ON r.chunk_id = c.id WHERE r.status = 'failed' ORDER BY c.ord "
                          "LIMIT ? OFFSET ?", (PAGE, (max(page, 1) - 1) * PAGE)).fetchall()
    names = ("chunk_id", "source", "start", "end", "kind", "message", "raw")
    return [dict(zip(names, row)) for row in rows], total


# --- a run as a whole ----------------------------------------------------------------------------------------

def overview(source: Source) -> dict:
    """Counts (chunks, done, failed, pending, samples, reviewed, good, bad, corrected), failures by kind (count,
    an example message), sources (file: samples), metrics scored, score histograms ({metric: [count per bin of
    1/BINS]}), the run's meta (pipeline, model, the last --min-score gate), and tokens by model."""
    with source.read() as db:
        whole = source.cached(db, ("overview",), lambda: _whole_run(db))
        reviewed, good, bad, corrected = db.execute(
            "SELECT count(*), count(*) FILTER (WHERE verdict = 'good'), count(*) FILTER (WHERE verdict = 'bad'), "
            "count(*) FILTER (WHERE input IS NOT NULL OR output IS NOT NULL) FROM reviews").fetchone()
    counts = {**whole["counts"], "reviewed": reviewed, "good": good, "bad": bad, "corrected": corrected}
    return {**whole, "counts": counts}


def meta(source: Source) -> dict[str, str]:
    """The run's meta (pipeline, model, min_scores: the last gate as JSON, ...), read now."""
    with source.read() as db:
        return dict(db.execute("SELECT key, value FROM meta"))


def gate(source: Source) -> dict[str, float]:
    """The --min-score bars of the run's last generate ({metric: bar}), {} without one."""
    return _gate(meta(source).get("min_scores"))


def _whole_run(db: sqlite3.Connection) -> dict:
    """The figures of `overview` that take a scan of the whole store (all but the review counts)."""
    meta = dict(db.execute("SELECT key, value FROM meta"))
    chunks = db.execute("SELECT count(*) FROM chunks").fetchone()[0]
    by_status = dict(db.execute("SELECT status, count(*) FROM results GROUP BY status"))
    samples = db.execute("SELECT coalesce(sum(json_array_length(samples)), 0) FROM results "
                         "WHERE status = 'done'").fetchone()[0]
    failures = {kind: (n, example or "") for kind, n, example in db.execute(
        "SELECT failure, count(*), min(message) FROM results WHERE status = 'failed' GROUP BY failure "
        "ORDER BY count(*) DESC")}
    sources = dict(db.execute(
        "SELECT c.source, coalesce(sum(json_array_length(r.samples)), 0) FROM chunks c JOIN results r "
        "ON r.chunk_id = c.id AND r.status = 'done' GROUP BY c.source ORDER BY c.source"))
    histograms: dict[str, list[int]] = {}
    for metric, bin_, n in db.execute(f"SELECT metric, min(CAST(value * {BINS} AS INTEGER), {BINS - 1}), count(*) "
                                      "FROM scores WHERE value >= 0 GROUP BY 1, 2 ORDER BY 1"):
        histograms.setdefault(metric, [0] * BINS)[max(bin_, 0)] += n
    usage = {model: {"prompt_tokens": p or 0, "completion_tokens": c or 0} for model, p, c in db.execute(
        "SELECT u.key, sum(json_extract(u.value, '$.prompt_tokens')), "
        "sum(json_extract(u.value, '$.completion_tokens')) FROM results, json_each(results.usage) u "
        "WHERE results.usage IS NOT NULL GROUP BY u.key")}
    done, failed = by_status.get("done", 0), by_status.get("failed", 0)
    gate = _gate(meta.get("min_scores"))
    return {"meta": meta, "gate": gate, "usage": usage, "failures": failures, "sources": sources,
            "histograms": histograms, "metrics": sorted(histograms),
            "counts": {"chunks": chunks, "done": done, "failed": failed, "pending": chunks - done - failed,
                       "samples": samples}}


def _gate(stored: str | None) -> dict[str, float]:
    try:
        gate = json.loads(stored or "{}")
    except json.JSONDecodeError:
        return {}
    return {str(k): float(v) for k, v in gate.items() if isinstance(v, int | float)} if isinstance(gate, dict) else {}


# --- two runs side by side -----------------------------------------------------------------------------------

def compare(first: Source, second: Source, metric: str, page: int = 1) -> tuple[list[dict], int]:
    """The samples both sources hold (the same chunk and place within it), with `metric`'s score in each and
    the change (second - first), largest drop first; one page of them and how many there are. Rows: chunk_id,
    index, first and second ({input, output, score})."""
    sides = [_scored(source, metric) for source in (first, second)]
    shared = sides[0].keys() & sides[1].keys()

    def change(key) -> float:
        a, b = sides[0][key]["score"], sides[1][key]["score"]
        return (b - a) if a is not None and b is not None else float("inf")

    keys = sorted(shared, key=lambda key: (change(key), key))
    start = (max(page, 1) - 1) * PAGE
    rows = [{"chunk_id": key[0], "index": key[1], "first": sides[0][key], "second": sides[1][key],
             "change": None if change(key) == float("inf") else change(key)} for key in keys[start:start + PAGE]]
    return rows, len(keys)


def _scored(source: Source, metric: str) -> dict[tuple[str, int], dict]:
    with source.read() as db:
        rows = db.execute("SELECT c.id, s.key, json_extract(s.value, '$[0]'), json_extract(s.value, '$[1]'), m.value "
                          f"{_SAMPLES}", {"metric": metric})
        return {(chunk_id, index): {"input": input_, "output": output, "score": score}
                for chunk_id, index, input_, output, score in rows}


# --- one sample ----------------------------------------------------------------------------------------------

def sample_detail(source: Source, chunk_id: str, index: int | None) -> dict:
    """Everything about one chunk and, given `index`, one of its samples: chunk (Chunk), status, seconds, usage,
    failure (kind, message, raw) or None, steps and calls (store.Step, store.Call), the samples (input, output,
    history, scores {metric: (value, feedback)}, review or None), and `sample`, the one asked for. Raises
    DatagenError for an unknown chunk or sample."""
    with source.read() as db:
        store = RunStore.over(db)
        chunk = store.chunk(chunk_id)
        if chunk is None:
            raise DatagenError(f"{source.label}: no chunk {chunk_id!r}")
        result = store.result(chunk_id) or {}
        feedback = store.sample_feedback(chunk_id)
        samples = [{"index": i, "input": s.input, "output": s.output, "history": s.history,
                    "scores": dict(sorted(feedback.get(i, {}).items())), "review": store.review(chunk_id, i)}
                   for i, s in enumerate(result.get("samples", []))]
        if index is not None and not 0 <= index < len(samples):
            raise DatagenError(f"{source.label}: chunk {chunk_id!r} has no sample {index}")
        failure = None
        if result.get("status") == "failed":
            failure = {"kind": result["failure"], "message": result["message"], "raw": result["raw"]}
        return {"chunk": chunk, "status": result.get("status", "not run"), "seconds": result.get("seconds"),
                "usage": result.get("usage", {}), "failure": failure, "steps": store.steps(chunk_id),
                "calls": store.calls(chunk_id), "samples": samples,
                "sample": samples[index] if index is not None else None}

