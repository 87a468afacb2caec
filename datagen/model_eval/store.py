"""Where `datagen eval-model` keeps the answers and their scores: RUN/model-eval/answers.db, beside the run store,
which it never writes.

Every answer is committed as it comes, so an evaluation stopped by Ctrl-C, a crash or a spending limit goes on
where it stopped: a model is asked again only for the samples it has no answer to, or whose call failed. An answer
is kept under its candidate's fingerprint (model, server, request settings and system prompt: `Candidate.key`), so
another prompt or another model is another set of answers; `forget` drops a candidate's, for a model retrained and
served again under the same name. Scores are kept under the fingerprint of what scored them (`scoring`: the metrics'
code, the training split the style metrics were fitted on, the judge model), so changing any of it scores the
answers again without asking the models again.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from datagen.samples import Failed, Score
from datagen.util.database import open_database, transaction

FOLDER = "model-eval"
DB_FILE = "answers.db"

SCHEMA = """
-- One row per (candidate, held-out sample): the model's answer, or why the call failed.
CREATE TABLE IF NOT EXISTS answers (
    candidate TEXT NOT NULL,  -- the candidate's fingerprint (Candidate.key)
    sample_id TEXT NOT NULL,  -- the held-out sample's id (datagen.dataset.records.sample_id)
    answer TEXT,  -- NULL when the call failed
    error TEXT,  -- the failure, one line (keys redacted)
    kind TEXT,  -- the failure's kind (datagen.lm.failures)
    prompt_tokens INTEGER, completion_tokens INTEGER,
    seconds REAL,  -- the call's wall-clock time, retries included
    finish_reason TEXT,  -- "length": cut off at max_tokens
    answered_at TEXT NOT NULL,
    PRIMARY KEY (candidate, sample_id));
-- One row per (candidate, sample, scoring, metric).
CREATE TABLE IF NOT EXISTS scores (
    candidate TEXT NOT NULL, sample_id TEXT NOT NULL,
    scoring TEXT NOT NULL,  -- the fingerprint of what scored it (the metrics, their training split, the judge)
    metric TEXT NOT NULL, value REAL NOT NULL, feedback TEXT,
    failed TEXT,  -- a Failed score's kind; NULL for a score
    PRIMARY KEY (candidate, sample_id, scoring, metric));
"""


@dataclass(frozen=True)
class Answer:
    """A candidate's answer to one held-out sample, as the store keeps it.

    Args:
        text: the answer; None when the call failed.
        error: the failure, in a line; None for an answer.
        kind: the failure's kind (e.g. "timeout", "rate_limit"); None for an answer.
        prompt_tokens: tokens of the request, as the server counted them; None when it did not say.
        completion_tokens: tokens of the answer; None when the server did not say.
        seconds: the call's wall-clock time, retries included.
        finish_reason: why the answer ended, as the server said ("stop", "length": cut off at max_tokens); None
            for a failed call.
    """

    text: str | None
    error: str | None = None
    kind: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    seconds: float = 0.0
    finish_reason: str | None = None


class AnswerStore:
    """RUN/model-eval/answers.db: the answers of every candidate evaluated on the run, and their scores.

    Args:
        run_dir: the run folder (made by `datagen generate`); model-eval/ is made inside it when missing.

    Raises:
        RunFolderError: answers.db is there but is not a SQLite database of this schema.
        DiskError: model-eval/ cannot be made or written (a full disk, a read-only one, no permission); so does
            keeping an answer or a score on a disk that fills up.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / FOLDER / DB_FILE
        self._db = open_database(self.path, SCHEMA, "datagen answer store")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "AnswerStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def answers(self, candidate: str) -> dict[str, Answer]:
        """{sample id: Answer} of one candidate, failed calls included."""
        rows = self._db.execute("SELECT sample_id, answer, error, kind, prompt_tokens, completion_tokens, seconds, "
                                "finish_reason "
                                "FROM answers WHERE candidate = ?", (candidate,))
        return {row[0]: Answer(*row[1:]) for row in rows}

    def record(self, candidate: str, sample_id: str, answer: Answer) -> None:
        """Keep an answer (replacing the one before, and its scores)."""
        with transaction(self._db, self.path):
            self._db.execute("DELETE FROM scores WHERE candidate = ? AND sample_id = ?", (candidate, sample_id))
            self._db.execute("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (candidate, sample_id, answer.text, answer.error, answer.kind, answer.prompt_tokens,
                              answer.completion_tokens, answer.seconds, answer.finish_reason,
                              datetime.now(UTC).isoformat()))

    def forget(self, candidate: str, sample_ids: Iterable[str]) -> int:
        """Drop a candidate's answers to these samples, and their scores; how many answers were dropped."""
        rows = [(candidate, sample_id) for sample_id in sample_ids]
        with transaction(self._db, self.path):
            self._db.executemany("DELETE FROM scores WHERE candidate = ? AND sample_id = ?", rows)
            return sum(self._db.execute("DELETE FROM answers WHERE candidate = ? AND sample_id = ?", row).rowcount
                       for row in rows)

    def scores(self, candidate: str, scoring: str) -> dict[str, dict[str, Score]]:
        """{sample id: {metric: Score or Failed}} of one candidate's answers, as `scoring` scored them."""
        found: dict[str, dict[str, Score]] = {}
        rows = self._db.execute("SELECT sample_id, metric, value, feedback, failed FROM scores "
                                "WHERE candidate = ? AND scoring = ?", (candidate, scoring))
        for sample_id, metric, value, feedback, failed in rows:
            found.setdefault(sample_id, {})[metric] = (Failed(value, feedback or "", failed) if failed
                                                      else Score(value, feedback or ""))
        return found

    def set_scores(self, candidate: str, sample_id: str, scoring: str, scores: dict[str, Score]) -> None:
        """Keep one answer's scores ({metric: Score}), as `scoring` scored them."""
        rows: Iterable[tuple] = [(candidate, sample_id, scoring, metric, score.value, score.feedback,
                                  score.kind if isinstance(score, Failed) else None)
                                 for metric, score in scores.items()]
        with transaction(self._db, self.path):
            self._db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

