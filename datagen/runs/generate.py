"""Running a pipeline over a corpus: chunks in, a run store and ShareGPT JSONL out.

A chunk that fails (the model's answer did not parse, the provider gave up after retries) is recorded and
skipped. Failures that no other chunk would escape (bad key, unknown model, unreachable server) stop the run.
"""

import asyncio
import concurrent.futures
import contextvars
import hashlib
import json
import logging
import queue
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dspy
from threadpoolctl import threadpool_limits

from datagen.lm.adapters import holds_invalid_text
from datagen.lm.calllog import CallLog, step_names
from datagen.text.chunking import Chunk, chunk_documents
from datagen.workspace.compiled import load_compiled, read_manifest
from datagen.workspace.config import Config, find_workspace, load_config
from datagen.lm.batch import batch_model
from datagen.runs.batch import BatchSummary, JobStatus, run_batches
from datagen.lm.failures import BATCH_KINDS, FATAL, FailureKind, failure_kind, first_line
from datagen.runs.cost import CostMeter, batch_key, run_prices
from datagen.errors import DatagenError, InputError
from datagen.dataset.export import dataset_card, run_samples, sharegpt_record, write_card
from datagen.util.files import replacing
from datagen._version import __version__
from datagen.text.ingest import iter_documents, iter_files
from datagen.util.locking import exclusive
from datagen.lm.roles import (SCAFFOLD_TOKENS, RoleModel, bounded, check_reachable, default_max_tokens, task_model,
                             track_usage)
from datagen.util.redaction import redact
from datagen.workspace.pipelines import code_fingerprint, load_program
from datagen.runs.cluster import RayCluster
from datagen.lm.gate import CallGate, gated
from datagen.metrics.scoring import MetricContext, Scorer
from datagen.store import Outcome, RunStore
from datagen.store import GATE
from datagen.text.tokens import count_tokens

log = logging.getLogger(__name__)

DATA_FILE = "sharegpt.jsonl"
FILES_STAMP = "files"  # run store meta key: the input files' stamp when the store last chunked them
LOCK_FILE = "run.lock"  # held by the generate writing the run folder
METADATA_FILE = "metadata.jsonl"
# Run store meta keys of --batch runs: the generation whose requests are being asked, and the last one finished.
BATCH_GENERATION, BATCH_DONE = "batch_generation", "batch_done"
# Errors no other chunk would escape: continuing would only repeat them.
# When this many chunks fail in a row before any succeeds, the problem is not the chunks: stop spending.
FAILURES_BEFORE_FIRST_SUCCESS = 5
# Passages of the corpus that metrics may use as the author's references (style judges, stylometry).
CORPUS_SAMPLE = 200


@dataclass(frozen=True)
class RunSettings:
    """How a run goes, whatever the program: `max_tokens`, the chunk budget in tokens (None: the config's, else
    512); `limit`, the first N chunks only (None: all); `concurrency`, chunks in flight (at least 1), and the
    most LM requests in flight to each model (fewer while it answers 429); `rpm`, the task model's LM calls a
    minute at most, spaced evenly, and `tpm` its tokens a minute (None: the config's `[models.task]` rpm/tpm, else
    no cap); `max_failures`, stop cleanly after that many failed chunks (None: never); `max_cost`, stop cleanly
    before the run's spend passes this many US dollars (None: no cap; needs prices, see datagen/cost.py);
    `force`, reuse a run folder made by another program or other inputs, starting afresh; `batch`, send the
    task model's requests as provider batch jobs (OpenAI's Batch API, half price; see datagen/batch.py), polled
    every `batch_poll` seconds, at most `batch_size` requests a job; `cluster`, run the chunks on Ray actors
    (datagen.runs.cluster; None: in this process)."""

    max_tokens: int | None = None
    limit: int | None = None
    concurrency: int = 1
    rpm: float | None = None
    tpm: int | None = None
    max_failures: int | None = None
    max_cost: float | None = None
    force: bool = False
    batch: bool = False
    batch_poll: float = 30.0
    batch_size: int = 50_000
    cluster: RayCluster | None = None


@dataclass(frozen=True)
class RunStatus:
    """Where a run stands after a chunk finishes: chunks `done` and `failed` by this call, `left` to run; US
    dollars `spent` by the run folder so far (earlier calls included) and `projected` for the whole run (spent +
    spent per chunk x chunks left), None where a model's price is unknown; the task model's requests in flight
    allowed now (`level`, cut on 429s) and 429s seen (`rate_limited`)."""

    done: int
    failed: int
    left: int
    spent: float | None
    projected: float | None
    level: int
    rate_limited: int


@dataclass(frozen=True)
class Callbacks:
    """What the caller hears while a run goes: `on_start(n)` with the number of chunks about to run,
    `on_outcome(outcome)` with each chunk's `Outcome` as it finishes (in the order they finish), and
    `on_status(status)` with a `RunStatus` after each, and with `--batch` `on_batch(status)` with each batch
    job's `JobStatus` as it changes."""

    on_start: Callable[[int], None] | None = None
    on_outcome: Callable[[Outcome], None] | None = None
    on_status: Callable[[RunStatus], None] | None = None
    on_batch: Callable[[JobStatus], None] | None = None


@dataclass
class Report:
    """What `generate` did: the program's name and the task model's; where the dataset went (`data_path`,
    ShareGPT JSONL, and `metadata_path`); chunks run and samples made by this call; failed chunks by kind
    (`failures`) with an example message of each; seconds; chunks already done before (`resumed`); samples in
    the export, earlier calls' included (`exported`) and kept out by `min_scores` (`held_back`); candidates the
    program's own checks dropped, by reason; and why it stopped early (`stopped`, `interrupted` for Ctrl-C)."""

    pipeline: str
    model: str
    data_path: Path
    metadata_path: Path
    chunks: int = 0
    samples: int = 0
    failures: Counter = field(default_factory=Counter)
    failure_examples: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    resumed: int = 0  # chunks already done in the run directory before this call
    exported: int = 0  # samples in the export, this call's and earlier ones'
    held_back: int = 0  # samples in the store kept out of the export by --min-score
    dropped: Counter = field(default_factory=Counter)  # candidates the pipeline itself rejected, by reason
    stopped: str | None = None  # why the run stopped before its last chunk
    advice: str = "run the same command again to resume"  # what to do about a stop
    interrupted: bool = False  # stopped by Ctrl-C
    deferred: int = 0  # chunks waiting for a batch job's answers (generate --batch)
    batch: "BatchSummary | None" = None  # what the batch jobs did (generate --batch)


def prompt_overhead(program: dspy.Module, model: RoleModel) -> int:
    """Tokens of the largest prompt the program sends, with its inputs left empty."""
    largest = 0
    for _, predictor in program.named_predictors():
        signature = predictor.signature
        messages = model.adapter.format(signature, predictor.demos,
                                        {name: "" for name in signature.input_fields})
        largest = max(largest, sum(count_tokens(str(m.get("content", ""))) for m in messages))
    return largest


def check_budget(program: dspy.Module, model: RoleModel, budget: int) -> None:
    """Refuse a chunk budget that cannot fit the model's context window with the prompt and the answer."""
    if model.context_window is None:
        return
    prompt = prompt_overhead(program, model)
    cap = model.lm.kwargs.get("max_tokens")
    # With no cap on the answer, reserve as much as the chunk: a rewrite is about as long as its input.
    answer = cap or budget
    if prompt + budget + answer > model.context_window:
        room = model.context_window - prompt
        fits = room - cap if cap else room // 2
        advice = f"use --max-tokens {fits} or less" if fits >= 16 else "lower the model's max_tokens"
        raise DatagenError(
            f"chunks of {budget} tokens do not fit {model.name}'s {model.context_window}-token context "
            f"(prompt ~{prompt} + chunk {budget} + answer up to {answer}): {advice}")


def bound_answers(program: dspy.Module, model: RoleModel, chunk_tokens: int,
                  chunks: Iterable[Chunk] = ()) -> RoleModel:
    """The task model with its answers capped, when the user set no max_tokens for it (see `models.bounded`, which
    warns once): at `models.default_max_tokens("task", n)` (twice the chunk + 256), n the larger of `chunk_tokens`
    (the chunk budget, tiktoken o200k_base tokens) and the largest of `chunks` (a dev set's items); or less where
    the model's known context window leaves less room after the program's largest prompt and the chunk (never less
    than the chunk itself: a budget the window cannot hold is `check_budget`'s to refuse). Used by generate,
    evaluate and optimize; a model with a cap of the user's is returned as it is."""
    if model.max_tokens is not None and not model.default_cap:
        return model
    chunk_tokens = max([chunk_tokens, *(chunk.tokens for chunk in chunks)])
    cap = default_max_tokens("task", chunk_tokens)
    why = f"twice the {chunk_tokens}-token chunk + {SCAFFOLD_TOKENS} for the output fields"
    if model.context_window is not None:
        room = max(model.context_window - prompt_overhead(program, model) - chunk_tokens, chunk_tokens)
        if room < cap:
            cap, why = room, f"what {model.name}'s {model.context_window}-token context leaves after the prompt"
    return bounded(model, cap, why)


def _run_one(program: dspy.Module, model: RoleModel, chunk: Chunk, settings: dict, scorer: Scorer | None,
             names: dict[int, str], loop: "_Loop | None") -> Outcome:
    started = time.monotonic()
    # Usage is tracked per chunk, so tokens spent on a chunk that then fails are still counted. Each chunk gets a
    # trace of its own: DSPy's shared one keeps the last 10,000 predictions, inputs included, for the whole run.
    # And a call log of its own (its steps, its LM calls), stored with its result.
    log = CallLog(names)
    with (model.context(**{**settings, "callbacks": [*settings["callbacks"], log]}, trace=[]),
          track_usage() as tracker):
        outcome = _outcome(program, chunk, loop)
        cut = log.truncated  # the program's answers cut off; a judge's, later, costs only its metric (scoring.measure)
        if scorer is not None and outcome.failure is None:
            _score(scorer, outcome)
    if cut and outcome.failure != FailureKind.DEFERRED:
        # Whatever came of it, a sample or a parse error, it was made from a cut-off answer.
        cap = model.lm.kwargs.get("max_tokens") or model.lm.kwargs.get("max_completion_tokens")
        outcome.failure, outcome.samples, outcome.scores = "truncated", [], []
        outcome.message = (f"the model's answer was cut off at max_tokens={cap or 'the server default'} "
                           "(finish_reason length): raise the model's max_tokens")
    outcome.usage = tracker.get_total_tokens()
    outcome.steps, outcome.calls = log.steps, log.calls
    outcome.seconds = time.monotonic() - started
    return outcome


def is_async(program: dspy.Module) -> bool:
    """Whether `program` defines `aforward`: then `acall` runs it, on an event loop."""
    return callable(getattr(program, "aforward", None))


def _outcome(program: dspy.Module, chunk: Chunk, loop: "_Loop | None") -> Outcome:
    try:
        if loop is not None:
            prediction = loop.run(program.acall(chunk=chunk.text))
        else:
            prediction = program(chunk=chunk.text)
    except Exception as exc:  # recorded per chunk; the caller decides what is fatal
        return Outcome(chunk, failure=failure_kind(exc), message=first_line(exc),
                       raw=redact(getattr(exc, "lm_response", None)))
    outputs = {key: value for key, value in prediction.items() if key != "samples"}
    outcome = Outcome(chunk, outputs=outputs)
    samples = list(getattr(prediction, "samples", None) or [])
    if holds_invalid_text([outputs, [[s.input, s.output, s.history] for s in samples]]):
        # What an adapter of the caller's own let through (datagen's fail the call): it could not be stored.
        return Outcome(chunk, failure=FailureKind.ENCODING, message="the program's outputs are not valid Unicode "
                       "(a lone surrogate)")
    if not samples and outputs.get("dropped"):
        return outcome  # candidates were made and the program's own checks rejected them all: done, not failed
    if not samples:
        outcome.failure, outcome.message = "no_samples", "the program returned no samples"
    elif any(not s.input.strip() or not s.output.strip() for s in samples):
        outcome.failure, outcome.message = "empty_output", "a sample has an empty input or output"
    else:
        outcome.samples = samples
    return outcome


def _drop_reason(dropped) -> str:
    """Why a pipeline rejected a candidate: the "reason" of its `dropped` entry (see programs/factual_qa.py)."""
    return str(dropped.get("reason") or "unspecified") if isinstance(dropped, dict) else "unspecified"


def _score(scorer: Scorer, outcome: Outcome) -> None:
    """Score each sample. A metric that fails on a sample costs only its own score (a `scoring.Failed`, which the
    run store does not keep: a gate on that metric holds the sample back, and a resumed run scores it again); a
    failure no other sample would escape (`UNRECOVERABLE`: a bad key, nothing listening) fails the chunk as
    `judge_<kind>` (it is retried on resume), so that a run whose judge cannot answer at all stops when its first
    chunks have all failed, as one whose model cannot does."""
    try:
        outcome.scores = [scorer.score(outcome.chunk.text, sample) for sample in outcome.samples]
    except Exception as exc:
        outcome.failure, outcome.message = FailureKind.of_judge(failure_kind(exc)), first_line(exc)
        outcome.raw = redact(getattr(exc, "lm_response", None))
        outcome.samples = []


def run_chunks(program: dspy.Module, model: RoleModel, chunks: Iterable[Chunk], concurrency: int = 1,
               rpm: float | None = None, scorer: Scorer | None = None,
               interrupt: "Interrupt | None" = None, retried: Collection[str] = (), *,
               gates: Mapping[str, CallGate] | None = None, admit: Callable[[int], bool] | None = None,
               ordered: bool = False, retry_model: RoleModel | None = None,
               cluster: RayCluster | None = None, every: bool = False) -> Iterator[Outcome]:
    """Outcomes as chunks finish (in `chunks`' order with `ordered`), with at most `concurrency` chunks in flight
    and no more read ahead; each sample scored by `scorer` when given. Each chunk in flight has a worker thread;
    a program with `aforward` runs it (`acall`) on one asyncio event loop shared by the run, its worker waiting.
    `chunks` is read, and outcomes are yielded, in the calling thread (the run store's).

    LM requests pass `gates` ({model name as DSPy knows it: CallGate}; see datagen/limits.py), by default one
    gate for the task model: `rpm` requests a minute, and requests in flight cut on 429s. Before each chunk
    starts, `admit(in_flight)` may refuse it (e.g. a spending cap), which ends the run as an interrupt does. Once
    `interrupt` is requested no chunk starts; those in flight finish and are yielded. Chunks whose ids are in
    `retried` (they failed before) ask the model afresh, past DSPy's cache (with `retry_model`, when given).
    With `cluster`, the chunks run on Ray actors instead of threads (datagen.runs.cluster: each actor has the
    program, the models, the scorer and its share of the gates); outcomes still come back here, to be committed.
    Raises DatagenError for a failure no other chunk would escape (bad key, unknown model, nothing listening),
    or when the first chunks all fail (unless `every`: a dev set is scored whole, each failed item counting 0,
    its size bounding the spend)."""
    if concurrency < 1:
        raise InputError(f"--concurrency must be at least 1, got {concurrency}")
    if gates is None:
        gates = {model.lm.model: CallGate(concurrency, rpm=rpm)}
    # A corpus run keeps no history of its calls in memory: the run store is the record. The caller's callbacks
    # are handed on explicitly: DSPy's context does not follow work into this pool's threads.
    settings = {"disable_history": True, "callbacks": list(dspy.settings.get("callbacks", []))}
    names = step_names(program, scorer.metrics if scorer else ())
    # DSPy caches an answer that came back, whether or not it then parsed: a failed chunk would get its bad answer
    # (malformed, empty, cut off) again from the cache, and a cut-off one, unflagged then, would pass as a sample.
    fresh = retry_model or model.with_settings(cache=False)
    succeeded = False
    failed_first = 0
    loop = None
    # Chunks in flight are the parallelism: a BLAS thread pool per numpy call (the offline metrics' MiniLM
    # embedding) on top of them oversubscribes the cores. 8 chunks in flight scored by the embedding metric on 2
    # cores: 2.0 chunks/s with numpy's default pool, 9.3 with one thread a call (bench/README.md, issue 17).
    # threadpoolctl sets it for the whole process, until the run ends. Ray already runs each actor so.
    blas = threadpool_limits(limits=1) if concurrency > 1 and cluster is None else None
    if cluster is not None:
        pool = cluster.executor(program, model, fresh, scorer, gates, concurrency)
        submit = pool.submit
    else:
        loop = _Loop() if is_async(program) else None
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="datagen")

        def submit(chunk: Chunk, retried: bool) -> concurrent.futures.Future:
            return pool.submit(_gated_run, gates, program, fresh if retried else model, chunk, settings, scorer,
                               names, loop)
    finished: queue.SimpleQueue = queue.SimpleQueue()
    in_flight = 0
    order: dict[str, int] = {}  # with `ordered`: chunk id -> its place, and the outcomes waiting for their turn
    waiting: dict[int, Outcome] = {}
    next_out = 0
    source = iter(chunks)
    try:
        while True:
            while (in_flight < concurrency and not (interrupt and interrupt.requested)
                   and (admit is None or admit(in_flight)) and (chunk := next(source, None)) is not None):
                if ordered:
                    order[chunk.id] = len(order)
                future = submit(chunk, chunk.id in retried)
                future.add_done_callback(finished.put)
                in_flight += 1
            if not in_flight and not waiting:
                return
            outcome = _next(finished)
            in_flight -= 1
            if outcome.failure == FailureKind.DEFERRED:  # a batch round: asked, not yet answered
                yield outcome
                continue
            fatal = outcome.failure in FATAL or (outcome.failure == FailureKind.TRANSPORT and not succeeded)
            if fatal:
                raise DatagenError(f"{model.name}: {outcome.message}")
            succeeded = succeeded or outcome.failure is None
            # A batch job's failure came in with its whole job, already paid: no reason to stop the others.
            failed_first += not succeeded and outcome.failure not in BATCH_KINDS
            if not ordered:
                yield outcome
            else:
                waiting[order[outcome.chunk.id]] = outcome
                while next_out in waiting:
                    yield waiting.pop(next_out)
                    next_out += 1
            if failed_first >= FAILURES_BEFORE_FIRST_SUCCESS and not every:
                raise DatagenError(f"the first {failed_first} chunks all failed ({outcome.failure}: "
                                   f"{outcome.message}); stopped before spending more")
    finally:
        # Stopped at once (a second Ctrl-C): calls in flight are abandoned, not waited for.
        forced = bool(interrupt and interrupt.forced)
        if loop is not None:
            loop.close(wait=not forced)
        pool.shutdown(wait=not forced, cancel_futures=True)
        if blas is not None:
            blas.restore_original_limits()


def _next(finished: queue.SimpleQueue) -> Outcome:
    """The next outcome (raising here what a chunk raised past its own handling, e.g. KeyboardInterrupt); waiting
    in short steps, so that Ctrl-C reaches this (the main) thread at once."""
    while True:
        try:
            return finished.get(timeout=0.5).result()
        except queue.Empty:
            continue


def _gated_run(gates: Mapping[str, CallGate], program, model, chunk: Chunk, *args) -> Outcome:
    with gated(gates):
        try:
            return _run_one(program, model, chunk, *args)
        except Exception as exc:  # datagen's own bookkeeping failed: the chunk fails, the run goes on
            log.exception("chunk %s: %s", chunk.id, exc)
            return Outcome(chunk, failure=failure_kind(exc), message=first_line(exc))


class _Loop:
    """An asyncio event loop in a thread of its own, for programs with `aforward`: a worker thread hands it a
    chunk's coroutine and waits for the result. DSPy's async LMs do their I/O on it, without a thread a call."""

    def __init__(self):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="datagen-loop", daemon=True)
        self._thread.start()

    def run(self, coroutine):
        """Run `coroutine` on the loop, in the calling thread's context (DSPy's settings, the chunk's call log and
        gates), and wait for its result (or its exception)."""
        context = contextvars.copy_context()
        done = concurrent.futures.Future()

        def start():
            task = self._loop.create_task(coroutine, context=context)
            task.add_done_callback(lambda t: done.cancel() if t.cancelled() else (
                done.set_exception(t.exception()) if t.exception() else done.set_result(t.result())))
        self._loop.call_soon_threadsafe(start)
        return done.result()

    def close(self, wait: bool) -> None:
        """Stop the loop: with `wait` once its tasks are done (their workers have their results), else at once,
        cancelling them."""
        async def stop():
            tasks = [t for t in asyncio.all_tasks(self._loop) if t is not asyncio.current_task()]
            if not wait:
                for task in tasks:
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._loop.stop()
        asyncio.run_coroutine_threadsafe(stop(), self._loop)
        if wait:
            self._thread.join()
            self._loop.close()


class Interrupt:
    """Ctrl-C during a run, as a SIGINT handler: the first press lets the chunks in flight finish (they are
    paid for) and starts no more; a second stops at once with KeyboardInterrupt."""

    def __init__(self):
        self.requested = False
        self.forced = False

    def __call__(self, signum, frame) -> None:
        if self.requested:
            self.forced = True
            raise KeyboardInterrupt
        self.requested = True
        log.warning("stopping: nothing new starts; what is in flight finishes and is kept (batch jobs stay with the "
                    "run); Ctrl-C again to stop at once")

    @contextmanager
    def handling(self) -> Iterator["Interrupt"]:
        """Handle SIGINT this way for the duration (only the main thread can set a signal handler)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.signal(signal.SIGINT, self)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


def _score_finished(store: RunStore, scorer: Scorer, concurrency: int) -> None:
    """Score the finished samples that lack a score the gate needs (a run resumed with a new --min-score):
    only the metrics run, not the pipeline. A sample whose scoring fails stays unscored, so out of the export."""
    def score(item: tuple[Chunk, list]) -> tuple[Chunk, list | None, dict]:
        chunk, samples = item
        with track_usage() as tracker:  # a judge's tokens are paid for, whether or not scoring succeeds
            try:
                scores = [scorer.score(chunk.text, sample) for sample in samples]
            except Exception as exc:
                log.warning("chunk %s: scoring failed: %s: %s", chunk.id, failure_kind(exc), first_line(exc))
                scores = None
        return chunk, scores, tracker.get_total_tokens()

    unscored = [(chunk, samples) for chunk, samples in store.done()
                if any(set(scorer.names) - set(store.sample_scores(chunk.id).get(i, {})) for i in range(len(samples)))]
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="datagen-score") as pool:
        # Written here: the store's connection is this thread's.
        for chunk, scores, usage in pool.map(score, unscored):
            if scores is not None:
                store.set_scores(chunk.id, scores)
            store.add_usage(chunk.id, usage)


def _run_batched(store: RunStore, report: Report, program: dspy.Module, model: RoleModel, scorer: Scorer | None,
                 settings: RunSettings, interrupt: "Interrupt", gates: dict[str, CallGate],
                 on_outcome: Callable[[Outcome], None] | None, meter: CostMeter,
                 on_batch: Callable[[JobStatus], None] | None) -> BatchSummary:
    """The pending chunks carried through provider batch jobs, round by round (datagen/batch.py). The task model's
    requests go into jobs, so they pass no gate; judges, when scoring, are called as usual. A chunk that failed
    in an earlier call asks afresh: its requests are keyed apart (salted by the batch generation, which moves on
    only once a batch call has finished, so a killed call's resume finds its own jobs again)."""
    meta = store.meta()
    generation = int(meta.get(BATCH_GENERATION, 0))
    if meta.get(BATCH_DONE) == str(generation):
        generation += 1
        store.set_meta({BATCH_GENERATION: str(generation)})
    interactive = {name: gate for name, gate in gates.items() if name != model.lm.model}
    retried = store.failed_ids()

    def run_round(batched: RoleModel) -> int:
        report.deferred = 0
        retry = batch_model(model, book=batched.lm.engine.book.salted(f"retry {generation}"))
        outcomes = run_chunks(program, batched, store.pending(settings.limit), settings.concurrency, scorer=scorer,
                              interrupt=interrupt, retried=retried, gates=interactive, retry_model=retry)
        _run_pending(store, report, _charged_as_batch(outcomes, model.name), settings.max_failures, on_outcome,
                     meter)
        return 0 if report.stopped else report.deferred

    summary = run_batches(store, model, run_round, poll_seconds=settings.batch_poll, batch_size=settings.batch_size,
                          on_status=on_batch, should_stop=lambda: interrupt.requested)
    if not summary.stopped and not report.stopped:
        store.set_meta({BATCH_DONE: str(generation)})
    return summary


def _charged_as_batch(outcomes: Iterator[Outcome], model: str) -> Iterator[Outcome]:
    """`outcomes` with `model`'s tokens under its `batch_key`: they were charged at batch prices (a judge's,
    called as usual, were not)."""
    with closing(outcomes):
        for outcome in outcomes:
            outcome.usage = {batch_key(name) if name == model else name: used for name, used in outcome.usage.items()}
            yield outcome


def _meter(store: RunStore, config: Config, model: RoleModel, scorer: Scorer | None,
           settings: RunSettings) -> CostMeter:
    """The run folder's spend so far, priced by the config and litellm's list. With `max_cost`, every model the
    run calls must have a price (DatagenError naming the one without)."""
    models = [model.name] + ([scorer.context.judge.name] if scorer and "judge" in scorer.kinds.values() else [])
    spent = store.usage()
    # Every key the run's usage has or will have, priced by the config: earlier calls' too, and batch tokens.
    prices = run_prices({*models, *spent, *([batch_key(model.name)] if settings.batch else [])}, config)
    meter = CostMeter(prices)
    counts = store.counts()
    meter.add(spent, chunks=counts["done"] + counts["failed"])
    if settings.max_cost is not None and (unpriced := [name for name in models if prices[name] is None]):
        raise DatagenError(f"--max-cost needs the price of {unpriced[0]}: set input_price and output_price "
                           "(US dollars per million tokens) in its [models.ROLE] of datagen.toml")
    return meter


class _Budget:
    """--max-cost: a chunk starts only while the chunks in flight, and it, fit under the cap at the cost per
    chunk so far, and never once the spend has reached the cap. Before the first chunk finishes what a chunk costs
    is unknown: the first `concurrency` chunks start."""

    def __init__(self, limit: float | None, meter: CostMeter):
        self.limit, self.meter, self.refused = limit, meter, False

    def admit(self, in_flight: int) -> bool:
        fits = self.meter.chunks_within(self.limit)
        if fits is None:
            return True
        self.refused = in_flight + 1 > fits
        return not self.refused

    def why(self) -> str:
        """Why the run stopped, in one line: the cap, the spend, and by how much the first chunks passed it."""
        spent, each = self.meter.spent, self.meter.per_chunk
        line = f"--max-cost ${self.limit:g} reached: ${spent:.4f} spent"
        if each is not None:
            line += f", ${each:.4f} a chunk"
        if spent > self.limit:  # the first chunks start before what a chunk costs is known
            line += f" (passed by ${spent - self.limit:.4f}: the first chunks start before their cost is known)"
        return line


def _reporting(callbacks: Callbacks, report: Report, meter: CostMeter, gate: CallGate,
               total: int) -> Callable[[Outcome], None] | None:
    """`callbacks.on_outcome`, followed by `callbacks.on_status` with where the run stands (told once at once:
    a resumed run's spend is known before its first chunk)."""
    if not callbacks.on_status:
        return callbacks.on_outcome

    def status() -> RunStatus:
        left = max(total - report.chunks, 0)
        return RunStatus(report.chunks, sum(report.failures.values()), left, meter.spent,
                         meter.projected(meter.chunks, left), gate.level, gate.rate_limited)

    def heard(outcome: Outcome) -> None:
        if callbacks.on_outcome:
            callbacks.on_outcome(outcome)
        callbacks.on_status(status())
    callbacks.on_status(status())
    return heard


def run_gates(config: Config, model: RoleModel, scorer: Scorer | None, settings: RunSettings) -> dict[str, CallGate]:
    """One CallGate per model the run calls (the task model's, and the judges' when scoring), each with its
    role's rpm/tpm from the config; `settings.rpm`/`tpm` override the task model's. A judge that is the task
    model shares its gate, as it shares the provider's limits."""
    roles = [("task", model)]
    if scorer is not None and "judge" in scorer.kinds.values():
        roles.append(("judge", scorer.context.judge))
    gates: dict[str, CallGate] = {}
    for role, role_model_ in roles:
        own = config.role(role)
        rpm, tpm = own.rpm, own.tpm
        if role == "task":
            rpm, tpm = settings.rpm or rpm, settings.tpm or tpm
        gates.setdefault(role_model_.lm.model, CallGate(settings.concurrency, rpm=rpm, tpm=tpm))
    return gates


def program_fingerprint(program: dspy.Module, model: RoleModel) -> str:
    """Hash of what decides a chunk's result: each predictor's fields, instructions and demos, and the model
    with its sampling settings."""
    # A cap datagen set (`bound_answers`) follows from the chunk budget, which the inputs' fingerprint holds: left
    # out, a run begun before datagen set caps resumes as the same run.
    cap = None if model.default_cap else model.lm.kwargs.get("max_tokens")
    parts = {"model": [model.name, model.lm.kwargs.get("temperature"), cap]}
    for name, predictor in program.named_predictors():
        signature = predictor.signature
        parts[name] = {
            "fields": [[f, str(info.annotation), info.json_schema_extra.get("desc")]
                       for f, info in signature.fields.items()],
            "instructions": signature.instructions,
            "demos": [dict(demo) for demo in predictor.demos],
        }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _files_stamp(inputs: Iterable[str | Path], budget: int, language: str) -> str:
    """What the chunks of `inputs` depend on, read without reading the files: each file's path, size and
    modification time, the chunk budget and the sentence splitter's language, and the chunker's version."""
    digest = hashlib.sha256(f"{__version__}\0{budget}\0{language}\n".encode())
    for path, _ in iter_files(inputs):
        stat = path.stat()
        digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _inputs_fingerprint(chunks: Iterable[Chunk]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk.id.encode())
    return digest.hexdigest()


def _write_exports(store: RunStore, report: "Report", min_scores: dict[str, float] | None) -> None:
    """ShareGPT and metadata JSONL from the store, in chunk order, replacing the previous export whole, and
    the dataset card (README.md) beside them; samples scored below `min_scores` are left out."""
    exported = 0
    with (replacing(report.data_path) as partial_data, replacing(report.metadata_path) as partial_meta,
          partial_data.open("w", encoding="utf-8") as data, partial_meta.open("w", encoding="utf-8") as meta):
        for chunk, _, sample in run_samples(store, min_scores):
            exported += 1
            data.write(json.dumps(sharegpt_record(sample), ensure_ascii=False) + "\n")
            meta.write(json.dumps({"chunk_id": chunk.id, "source": chunk.source, "start": chunk.start,
                                   "end": chunk.end, "pipeline": report.pipeline, "model": report.model},
                                  ensure_ascii=False) + "\n")
    report.exported = exported
    card = dataset_card(store, "sharegpt", [report.data_path.name, report.metadata_path.name], exported,
                        min_scores=min_scores)
    try:
        write_card(report.data_path.parent, card)
    except DatagenError as exc:  # a README.md that is not ours: keep it, the dataset itself is written
        log.warning("no dataset card: %s", exc)


def _run_pending(store: RunStore, report: Report, outcomes: Iterator[Outcome], max_failures: int | None,
                 on_outcome: Callable[[Outcome], None] | None, meter: CostMeter | None = None) -> None:
    """Record each chunk's outcome as it comes, counting it in `report` and its spend in `meter`; stop after
    `max_failures`."""
    with closing(outcomes):  # closed at once on a stop: the chunks in flight are then waited for, not leaked
        for outcome in outcomes:
            if outcome.failure == FailureKind.DEFERRED:  # a batch round: its answer comes in a later round
                report.deferred += 1
                continue
            store.record(outcome)
            if meter is not None:  # a chunk's tokens, every step's, counted once: when it is recorded
                meter.add(outcome.usage)
            report.chunks += 1
            report.samples += len(outcome.samples)
            report.dropped.update(_drop_reason(d) for d in outcome.outputs.get("dropped") or [])
            if outcome.failure:
                report.failures[outcome.failure] += 1
                report.failure_examples.setdefault(outcome.failure, outcome.message or "")
                log.warning("chunk %s (%s): %s: %s", outcome.chunk.id, outcome.chunk.source, outcome.failure,
                            outcome.message)
            if on_outcome:
                on_outcome(outcome)
            if max_failures is not None and sum(report.failures.values()) >= max_failures:
                report.stopped = f"stopped after {max_failures} failed chunks (--max-failures)"
                return


def _program(program: "str | dspy.Module", workspace: Path, options: dict | None, compiled: str | Path | None,
             min_scores: dict | None) -> tuple[str, dspy.Module]:
    """The run's pipeline name and program: a program object as it is (named by its class), or the named
    pipeline's, built with `options` or loaded from `compiled`."""
    if isinstance(program, dspy.Module):
        name = type(program).__name__
        for given, what in ((options, "options"), (compiled, "compiled"), (min_scores, "min_scores")):
            if given:
                raise DatagenError(f"{what} applies to a pipeline given by name, not to the program object {name} "
                                   "(build it with its options, load compiled state with .load(), score it with "
                                   "datagen.evaluate)")
        return name, program
    if not isinstance(program, str):
        raise DatagenError(f"program {program!r}: expected a dspy.Module or a pipeline name")
    if compiled is not None and options:
        raise DatagenError("--option does not apply with --compiled: a compiled program keeps the options it was "
                           "compiled with")
    return program, (load_compiled(program, compiled, workspace) if compiled
                     else load_program(program, workspace, options))


def generate(program: "str | dspy.Module", inputs: Iterable[str | Path], out_dir: str | Path, *,
             model: "RoleModel | dspy.LM | None" = None, settings: RunSettings = RunSettings(),
             options: dict | None = None, compiled: str | Path | None = None,
             min_scores: dict[str, float] | None = None, callbacks: Callbacks = Callbacks(),
             workspace: Path | None = None, config: Config | None = None) -> Report:
    """Chunk `inputs`, run `program` on every chunk, and write ShareGPT JSONL plus metadata to `out_dir`.

    `program` is a dspy.Module whose `forward(chunk: str)` returns a dspy.Prediction with `samples` (a list of
    `datagen.Sample`), or the name of a pipeline (programs/NAME.py of `workspace`, else the built-in one).
    `inputs` are files or folders (searched recursively) of text, Markdown, PDF, EPUB, DOCX or HTML. `model` (a
    dspy.LM or a `RoleModel`) is the task model; without it, the LM set by `dspy.configure`/`dspy.context`, else
    the config's task role (by default the embedded model). `settings` (`RunSettings`): chunk budget, limit,
    concurrency, rate, failures before stopping, force. `workspace` defaults to the nearest folder with
    datagen.toml or programs/ (else the current one), `config` to its datagen.toml.

    `out_dir` is a run directory: its store (run.db) keeps every result as it finishes, so calling this again
    with the same arguments resumes, sending only unfinished chunks to the model. A run directory made by
    another program or other inputs is refused unless `settings.force`; `settings.max_failures` stops the run
    (cleanly: everything finished is kept and exported) once that many chunks have failed.
    For a pipeline given by name, `options` are its program's constructor arguments; `compiled` runs a program
    compiled by `datagen optimize` instead (with the options it was compiled with, and the temperature and chunk
    budget a search tuned, `settings.max_tokens` overriding the budget); `min_scores` ({metric: bar}, bars in
    [0, 1]) scores each sample with those metrics of the pipeline and keeps the samples below a bar out of the
    export (they stay in the store with their scores; finished samples never scored on them are scored first).
    `callbacks` (`Callbacks`) hears of the run's start and of each chunk's outcome.

    Ctrl-C (SIGINT, when called from the main thread) stops the run cleanly: no chunk starts, those in flight
    finish and are kept, the export is written, and `stopped` says so; a second Ctrl-C raises KeyboardInterrupt
    at once (what is in the store stays there). Only one call at a time may write a run directory.

    Returns a `Report`. Raises DatagenError, in one line naming the culprit, for bad input (an unknown
    pipeline, a missing file, a run directory of another run, a budget the model's context cannot hold, ...).
    """
    workspace = workspace or find_workspace()
    config = config or load_config(workspace)
    pipeline, program = _program(program, workspace, options, compiled, min_scores)
    model = task_model(config, model)
    # A program found by `datagen optimize --trials` runs with the temperature and chunk budget it was tuned at.
    manifest = read_manifest(compiled) if compiled else {}
    tuned = manifest.get("settings") or {}
    if tuned.get("temperature") is not None:
        model = model.with_settings(temperature=tuned["temperature"])
    budget = settings.max_tokens or tuned.get("chunk_tokens") or config.chunking.max_tokens
    check_budget(program, model, budget)
    model = bound_answers(program, model, budget)
    check_reachable(model)
    if settings.batch and settings.cluster is not None:
        raise DatagenError("--batch sends the requests to the provider's batch API from here: not with --executor ray")
    if settings.batch and settings.max_cost is not None:
        raise DatagenError("--max-cost does not apply with --batch: a batch job's cost is known only once it ends "
                           "(use --limit to bound a batch run)")

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; --out takes a folder")
    report = Report(pipeline, model.name, out / DATA_FILE, out / METADATA_FILE)

    def chunks():
        return chunk_documents(iter_documents(inputs), budget, config.chunking.language)

    started = time.monotonic()
    stamp = _files_stamp(inputs, budget, config.chunking.language)
    # One run at a time per folder: two would both send its pending chunks to the model, paying twice.
    with (exclusive(out / LOCK_FILE, str(out), "wait for the run there to finish, or use another --out"),
          RunStore(out) as store):
        # Files unchanged since the store last chunked them (a resume): their chunks are in the store already.
        # Otherwise chunked twice (cheap next to one LM call): once to identify the inputs, once to store them,
        # so that the store is never written to before it is known to belong to this run.
        stored = store.meta()
        unchanged = stored.get(FILES_STAMP) == stamp
        identity = {"pipeline": pipeline, "program": program_fingerprint(program, model),
                    "code": code_fingerprint(program),
                    "inputs": stored["inputs"] if unchanged else _inputs_fingerprint(chunks()),
                    "model": model.name}
        run_options = (manifest.get("options") if compiled else options) or {}
        if run_options:  # e.g. factual_qa's questions=5 changes results without changing any predictor
            identity["options"] = json.dumps(run_options, sort_keys=True)
        store.claim(identity, settings.force)
        if not unchanged or not store.counts()["chunks"]:
            store.add_chunks(chunks())
            store.set_meta({FILES_STAMP: stamp})
        report.resumed = store.counts()["done"]
        scorer = None
        if min_scores:
            context = MetricContext(workspace, config, corpus=store.chunk_texts(CORPUS_SAMPLE))
            scorer = Scorer(pipeline, context, list(min_scores))
            _score_finished(store, scorer, settings.concurrency)
        total = store.pending_count(settings.limit)
        if callbacks.on_start:
            callbacks.on_start(total)
        interrupt = Interrupt()
        gates = run_gates(config, model, scorer, settings)
        meter = _meter(store, config, model, scorer, settings)
        budget = _Budget(settings.max_cost, meter)
        on_outcome = _reporting(callbacks, report, meter, gates[model.lm.model], total)
        with interrupt.handling():
            if settings.batch:
                report.batch = _run_batched(store, report, program, model, scorer, settings, interrupt, gates,
                                            on_outcome, meter, callbacks.on_batch)
            else:
                outcomes = run_chunks(program, model, store.pending(settings.limit), settings.concurrency,
                                      scorer=scorer, interrupt=interrupt, retried=store.failed_ids(), gates=gates,
                                      admit=budget.admit if settings.max_cost is not None else None,
                                      cluster=settings.cluster)
                _run_pending(store, report, outcomes, settings.max_failures, on_outcome, meter)
        if interrupt.requested and store.pending_count(settings.limit):
            report.stopped, report.interrupted = "interrupted (Ctrl-C)", True
        elif budget.refused and store.pending_count(settings.limit):
            report.stopped, report.advice = budget.why(), "raise --max-cost to continue"
        _write_exports(store, report, min_scores)
        store.set_meta({GATE: json.dumps(min_scores or {})})  # for `datagen status`: the gate the export passed
        report.held_back = store.sample_count() - report.exported
    report.seconds = time.monotonic() - started
    return report
