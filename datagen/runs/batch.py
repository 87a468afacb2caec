"""Provider batch jobs (OpenAI's Batch API): every LM request of a run sent as lines of batch jobs, at half price.

Any DSPy program, multi-step ones included, is carried forward round by round. A round runs each unfinished chunk
against the batch engine's LM (datagen.lm.batch), which answers only from the run store: a request whose answer is
stored gets it; one that is not stored yet is recorded and raises `Deferred`, which ends that chunk's attempt for
this round. After the round the recorded requests are submitted as batch jobs, the jobs are polled until they end,
their answers go into the store, and the next round runs: each chunk now gets one step further (a step's request
depends on the answers before it). When a round defers no chunk, the run is done.

Everything lives in the run store (tables `batch_requests` and `batch_jobs`, see datagen.store): a request is
keyed by the sha256 of its canonical JSON body (the line's `custom_id`); a job's row is written before its file is
uploaded, its file id after the upload and its batch id after the batch is created, each committed. A killed run
resumes by polling the same jobs (a job with a file and no batch is first looked up among the provider's batches)
and never submits a request twice.
"""

import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from datagen.errors import DatagenError, FailureKind, InputError
from datagen.lm import RoleModel
from datagen.lm.batch import RequestBook, batch_model, check_batchable
from datagen.runs.batch_results import settle
from datagen.store import RunStore
from datagen.util import writing

log = logging.getLogger(__name__)

ENDPOINT = "/v1/chat/completions"
OPENAI_API_BASE = "https://api.openai.com/v1"  # where litellm sends an openai/ model's batch calls without api_base
COMPLETION_WINDOW = "24h"
MAX_REQUESTS = 50_000  # OpenAI's limit of requests per batch
MAX_FILE_BYTES = 200 * 1000 * 1000  # OpenAI's limit of a batch input file: 200 MB
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
# Kinds of BatchRequestError by the state a job ended in, for the requests it left unanswered.
_KIND_BY_END = {"expired": FailureKind.BATCH_EXPIRED, "cancelled": FailureKind.BATCH_CANCELLED,
                "failed": FailureKind.BATCH_FAILED, "completed": FailureKind.BATCH_FAILED}
# Polls of a job that may fail in a row (the provider unreachable) before the run stops; a re-run resumes it.
MAX_POLL_FAILURES = 10


class NoBatchAPI(DatagenError):
    """A Batch API endpoint (`/v1/files`, `/v1/batches`) answered 404: the server has no Batch API (llama.cpp's and
    vLLM's OpenAI-compatible servers have none). The message names the endpoint and says to run without --batch."""


# --- the provider's Batch API, through litellm -------------------------------------------------------------

@dataclass
class BatchInfo:
    """A batch as the provider reports it: id, status, file ids, counts and the job's own errors (one line)."""

    id: str
    status: str
    input_file_id: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    completed: int = 0
    failed: int = 0
    total: int = 0
    created_at: float | None = None
    errors: str | None = None


def _batch_info(batch) -> BatchInfo:
    counts = getattr(batch, "request_counts", None)
    errors = getattr(getattr(batch, "errors", None), "data", None) or []
    messages = "; ".join(str(getattr(e, "message", None) or getattr(e, "code", None) or e) for e in errors)
    return BatchInfo(batch.id, batch.status, getattr(batch, "input_file_id", None),
                     getattr(batch, "output_file_id", None), getattr(batch, "error_file_id", None),
                     getattr(counts, "completed", 0) or 0, getattr(counts, "failed", 0) or 0,
                     getattr(counts, "total", 0) or 0, getattr(batch, "created_at", None), messages or None)


class OpenAIBatchClient:
    """OpenAI's Batch API through litellm (files and batches), at `api_base` (None: OpenAI's) with `api_key`
    (None: OPENAI_API_KEY). Every method raises what litellm raises (litellm/OpenAI SDK errors)."""

    def __init__(self, api_base: str | None = None, api_key: str | None = None):
        self.options = {"custom_llm_provider": "openai", **({"api_base": api_base} if api_base else {}),
                        **({"api_key": api_key} if api_key else {})}

    @classmethod
    def for_model(cls, model: RoleModel) -> "OpenAIBatchClient":
        """The client for a role model's provider: its api_base and api_key (`model.lm.kwargs`)."""
        return cls(model.lm.kwargs.get("api_base"), model.lm.kwargs.get("api_key"))

    @contextmanager
    def _endpoint(self, path: str) -> Iterator[None]:
        """Raise NoBatchAPI for a 404 of the endpoint `path` (e.g. "/files"): the route itself is not there. Only
        for the calls that name no object (an upload, creating or listing batches): a 404 of a batch or file by id
        says that one is not found."""
        try:
            yield
        except Exception as exc:
            if getattr(exc, "status_code", None) != 404:
                raise
            base = (self.options.get("api_base") or OPENAI_API_BASE).rstrip("/")
            try:  # the URL the request went to, as the OpenAI client built it
                url = str(exc.response.request.url).split("?", 1)[0]
            except (AttributeError, RuntimeError):
                url = base + path
            raise NoBatchAPI(f"{url} answered 404 Not Found: the server at {base} has no Batch API (OpenAI's "
                             "/v1/files and /v1/batches, which --batch needs); run without --batch") from exc

    def upload(self, path: str, name: str) -> str:
        """Upload a JSONL file of requests (purpose "batch"); returns its file id. NoBatchAPI for a 404."""
        import litellm

        with open(path, "rb") as file, self._endpoint("/files"):
            return litellm.create_file(file=(name, file), purpose="batch", **self.options).id

    def create(self, input_file_id: str, metadata: dict[str, str] | None = None) -> BatchInfo:
        """Create a batch of an uploaded file, for /v1/chat/completions within 24 h. NoBatchAPI for a 404."""
        import litellm

        with self._endpoint("/batches"):
            return _batch_info(litellm.create_batch(completion_window=COMPLETION_WINDOW, endpoint=ENDPOINT,
                                                    input_file_id=input_file_id, metadata=metadata, **self.options))

    def retrieve(self, batch_id: str) -> BatchInfo:
        import litellm

        return _batch_info(litellm.retrieve_batch(batch_id=batch_id, **self.options))

    def find(self, input_file_id: str, since: float | None = None) -> BatchInfo | None:
        """The batch made of `input_file_id`, looked up among the provider's batches (newest first, back to those
        created before `since`, epoch seconds); None when there is none. NoBatchAPI for a 404."""
        import litellm

        after = None
        while True:
            with self._endpoint("/batches"):
                page = litellm.list_batches(after=after, limit=100, **self.options)
            batches = list(getattr(page, "data", None) or [])
            for batch in batches:
                if getattr(batch, "input_file_id", None) == input_file_id:
                    return _batch_info(batch)
            older = since is not None and batches and (getattr(batches[-1], "created_at", None) or 0) < since
            if not batches or not getattr(page, "has_more", False) or older:
                return None
            after = batches[-1].id

    def content(self, file_id: str) -> bytes:
        """A file's content (an output or error file)."""
        import litellm

        return litellm.file_content(file_id=file_id, **self.options).content


# --- the driver -----------------------------------------------------------------------------------------------

@dataclass
class JobStatus:
    """A job's state, as `on_status` hears it: the local `job` id, the provider's `batch_id`, its `status`
    ("new", "uploaded", then the provider's: validating, in_progress, finalizing, completed, failed, expired,
    cancelling, cancelled), and its requests: how many, and how many were answered and failed: while it runs, as
    the provider counts them; once it has ended, as the run store holds them (each request once, by the rule of
    datagen.runs.batch_results), which the run's summary adds up."""

    job: int
    batch_id: str | None
    status: str
    requests: int
    completed: int = 0
    failed: int = 0


@dataclass
class BatchSummary:
    """What `run_batches` did: rounds run; jobs and requests it submitted; jobs it resumed (in flight when it
    started); requests answered and failed by the jobs it collected; the tokens of those answers (prompt and
    completion, as the provider counted them); and whether it stopped early (`should_stop`)."""

    rounds: int = 0
    jobs: int = 0
    requests: int = 0
    resumed_jobs: int = 0
    answered: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    stopped: bool = False


def run_batches(store: RunStore, model: RoleModel, run_round: Callable[[RoleModel], int], *,
                poll_seconds: float = 30.0, batch_size: int | None = None,
                on_status: Callable[[JobStatus], None] | None = None,
                should_stop: Callable[[], bool] | None = None,
                client: OpenAIBatchClient | None = None) -> BatchSummary:
    """Carry a run to its end through provider batch jobs.

    `run_round(batch_model)` is the caller's: it runs every unfinished chunk once with the given RoleModel (whose
    LM answers from the store, raising `Deferred` for a request not answered yet and `BatchRequestError` for one
    that failed), records finished and failed chunks itself, and returns how many chunks deferred.

    First, errors stored by earlier runs are cleared (their requests are submitted anew; answers stay), and the
    jobs still in flight are polled to their end (never submitted again). Then, in a loop: a round runs; if no
    chunk deferred, the run is done; else every recorded request no job carries is submitted, in jobs of at most
    `batch_size` requests (None: `MAX_REQUESTS`) and at most 200 MB of JSONL each, and every job in flight is
    polled every `poll_seconds` seconds until it ends: its answers and failed lines are stored, each request once
    (result files that name a request twice, or a request of no job, are settled by the rule of
    datagen.runs.batch_results, and said in a warning), and the requests it left unanswered (expired, cancelled,
    failed) get an error of that kind. Then the next round.

    `should_stop()` (e.g. Ctrl-C) is asked before each round, before submitting and between polls: when true the
    run stops, leaving its jobs in the store for the next run to poll. `on_status(JobStatus)` hears each job's
    state as it changes. `client` defaults to OpenAI's Batch API at the model's api_base with its api_key.

    Returns a `BatchSummary`. Raises DatagenError for a model batch jobs cannot carry, a `batch_size` below 1,
    an upload or batch creation the provider refused (NoBatchAPI for a server without the Batch API, whose job is
    then ended failed), a job that cannot be polled `MAX_POLL_FAILURES` times in a row, or chunks that keep
    deferring with nothing submitted; and whatever `run_round` raises (the requests it recorded are kept, to be
    submitted by the next run).
    """
    batch_size = MAX_REQUESTS if batch_size is None else batch_size
    if batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {batch_size}")
    batch_size = min(batch_size, MAX_REQUESTS)
    check_batchable(model)
    client = client or OpenAIBatchClient.for_model(model)
    stop = should_stop or (lambda: False)
    summary = BatchSummary()
    driver = _Driver(store, client, poll_seconds, on_status, stop, summary)
    if cleared := store.clear_batch_errors():
        log.info("%d batch requests that failed before are submitted again", cleared)
    in_flight = store.batch_jobs(exclude=TERMINAL)
    summary.resumed_jobs = len(in_flight)
    if in_flight and not driver.finish_jobs():
        summary.stopped = True
        return summary
    while True:
        if stop():
            summary.stopped = True
            return summary
        reader = store.batch_reader()
        book = RequestBook(reader)
        try:
            deferred = run_round(batch_model(model, book=book))
        finally:
            store.add_batch_requests(book.take_new())
            reader.close()
        summary.rounds += 1
        if not deferred:
            return summary
        if stop():
            summary.stopped = True
            return summary
        submitted = driver.submit(batch_size)
        if not submitted and not store.batch_jobs(exclude=TERMINAL):
            raise DatagenError(f"{deferred} chunks wait for batch answers that no job will bring (nothing new to "
                               "submit, no job in flight): does the program call the LM outside datagen's round?")
        if not driver.finish_jobs():
            summary.stopped = True
            return summary


class _Driver:
    """Submitting and polling jobs for `run_batches` (in the thread that owns the store)."""

    def __init__(self, store: RunStore, client: OpenAIBatchClient, poll_seconds: float,
                 on_status: Callable[[JobStatus], None] | None, stop: Callable[[], bool], summary: BatchSummary):
        self.store, self.client, self.poll_seconds = store, client, poll_seconds
        self.on_status, self.stop, self.summary = on_status, stop, summary

    def _tell(self, job: dict, completed: int = 0, failed: int = 0) -> None:
        if self.on_status:
            self.on_status(JobStatus(job["id"], job["batch_id"], job["status"], job["requests"], completed, failed))

    def submit(self, batch_size: int) -> int:
        """Submit every request no job carries, in jobs of at most `batch_size` requests and MAX_FILE_BYTES;
        returns how many jobs."""
        jobs = 0
        keys: list[str] = []
        size = 0
        for key, body in self.store.unsubmitted_batch_requests():
            line = len(_line(key, body).encode()) + 1
            if keys and (len(keys) >= batch_size or size + line > MAX_FILE_BYTES):
                self._start(self.store.add_batch_job(keys))
                jobs += 1
                keys, size = [], 0
            keys.append(key)
            size += line
        if keys:
            self._start(self.store.add_batch_job(keys))
            jobs += 1
        return jobs

    def _job(self, job_id: int) -> dict:
        return next(job for job in self.store.batch_jobs() if job["id"] == job_id)

    def _requests_file(self, job_id: int) -> Path:
        """The job's requests as a JSONL file in the temporary folder, for its upload (the caller removes it). A
        full or read-only temporary folder raises DiskError, the file removed."""
        file = tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".jsonl", delete=False)
        path = Path(file.name)
        try:
            with writing(path), file:
                for key, body in self.store.batch_job_requests(job_id):
                    file.write(_line(key, body) + "\n")
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    def _start(self, job_id: int) -> None:
        """Take a job from its row to a created batch: upload its file (unless uploaded), then create its batch
        (unless one of its file exists already), committing each id as soon as it is known."""
        job = self._job(job_id)
        if job["status"] == "new":
            self.summary.jobs += 1
            self.summary.requests += job["requests"]
        uploaded_now = False
        if not job["input_file_id"]:
            requests = self._requests_file(job_id)
            try:
                file_id = self.client.upload(str(requests), f"datagen-job-{job_id}.jsonl")
            except NoBatchAPI as exc:
                self._no_batch_api(job_id, exc)
            except Exception as exc:
                raise DatagenError(f"batch job {job_id}: the upload of its requests failed: {exc}") from exc
            finally:
                requests.unlink()
            self.store.update_batch_job(job_id, input_file_id=file_id, status="uploaded")
            job, uploaded_now = self._job(job_id), True
            self._tell(job)
        # Uploaded by an earlier run, which may have created its batch and been killed before it stored the id.
        try:
            info = None if uploaded_now else self.client.find(job["input_file_id"], since=job["created_at"] - 3600)
            if info is None:
                info = self.client.create(job["input_file_id"], metadata={"datagen_job": str(job_id)})
        except NoBatchAPI as exc:
            self._no_batch_api(job_id, exc)
        except Exception as exc:
            raise DatagenError(f"batch job {job_id}: creating its batch failed: {exc}") from exc
        self.store.update_batch_job(job_id, batch_id=info.id, status=info.status)
        self._tell(self._job(job_id), info.completed, info.failed)

    def _no_batch_api(self, job_id: int, exc: NoBatchAPI) -> None:
        """End a job the server cannot take (it has no Batch API) as failed, its requests with the reason, and
        raise `exc`: no later run waits for the job (`datagen status` lists it failed, not in flight), and a later
        --batch run against a server with the API submits the requests anew."""
        message = str(exc)
        keys = self.store.batch_job_keys(job_id)
        self.store.finish_batch_job(job_id, "failed", {}, {key: (FailureKind.BATCH_FAILED, message) for key in keys})
        self._tell(self._job(job_id), 0, len(keys))
        raise exc

    def finish_jobs(self) -> bool:
        """Poll every job in flight until each has ended, storing what it brought; False when stopped first."""
        active = self.store.batch_jobs(exclude=TERMINAL)
        for job in active:
            if not job["batch_id"]:
                self._start(job["id"])
        failures: dict[int, int] = {}
        active = self.store.batch_jobs(exclude=TERMINAL)
        while active:
            for job in active:
                try:
                    info = self.client.retrieve(job["batch_id"])
                except Exception as exc:
                    failures[job["id"]] = failures.get(job["id"], 0) + 1
                    if failures[job["id"]] >= MAX_POLL_FAILURES:
                        raise DatagenError(f"batch job {job['id']} ({job['batch_id']}) could not be polled "
                                           f"{MAX_POLL_FAILURES} times in a row: {exc}; run again to resume") from exc
                    log.warning("batch job %s: polling failed (%s); trying again", job["id"], exc)
                    continue
                failures.pop(job["id"], None)
                if info.status in TERMINAL:
                    self._tell({**job, "status": info.status}, *self._collect(job, info))
                elif info.status != job["status"]:
                    self.store.update_batch_job(job["id"], status=info.status)
                    self._tell({**job, "status": info.status}, info.completed, info.failed)
            active = self.store.batch_jobs(exclude=TERMINAL)
            if active and _wait(self.poll_seconds, self.stop):
                return False
        return True

    def _collect(self, job: dict, info: BatchInfo) -> tuple[int, int]:
        """Store an ended job's answers and errors, settled one per request (datagen.runs.batch_results), and give
        each request it left unanswered an error of the kind its end says; then mark it ended (all in one
        transaction). Returns (answered, failed): its requests as the store now holds them."""
        keys = self.store.batch_job_keys(job["id"])
        settled = settle(keys, (self.client.content(file_id) for file_id in (info.output_file_id, info.error_file_id)
                                if file_id))
        answers, errors = settled.answers, settled.errors
        why = {"expired": "the batch's 24 h completion window ended before this request was run",
               "cancelled": "the batch was cancelled before this request was run",
               "failed": f"the batch failed: {info.errors or 'no reason given'}",
               "completed": "the batch completed without answering this request"}[info.status]
        for key in keys:
            if key not in answers and key not in errors:
                errors[key] = (_KIND_BY_END[info.status], why)
        self.store.finish_batch_job(job["id"], info.status, answers, errors, info.output_file_id, info.error_file_id)
        self.summary.answered += len(answers)
        self.summary.failed += len(errors)
        self.summary.prompt_tokens += settled.prompt_tokens
        self.summary.completion_tokens += settled.completion_tokens
        if faults := settled.faults():
            log.warning("batch job %s (%s): its result files %s", job["id"], info.id, faults)
        if errors:
            log.warning("batch job %s (%s) ended %s: %d requests answered, %d failed (%s)", job["id"], info.id,
                        info.status, len(answers), len(errors), next(iter(errors.values()))[1])
        return len(answers), len(errors)


def _line(key: str, body: str) -> str:
    """One line of a batch input file (without its newline)."""
    return json.dumps({"custom_id": key, "method": "POST", "url": ENDPOINT, "body": json.loads(body)},
                      ensure_ascii=False, separators=(",", ":"))


def _wait(seconds: float, stop: Callable[[], bool]) -> bool:
    """Wait `seconds`, asking `stop()` every half second at most; True when it said stop."""
    end = time.monotonic() + seconds
    while True:
        if stop():
            return True
        left = end - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(left, 0.5))
