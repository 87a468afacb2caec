"""Running chunks: each through the program and then the scorer, with a bounded number in flight, on worker threads
of this process or on a cluster's workers; outcomes come back to the calling thread (the run store's).

A chunk that fails (the model's answer did not parse, the provider gave up after retries) is an outcome like any
other, recorded and skipped. Failures that no other chunk would escape (bad key, unknown model, unreachable server)
stop the run.
"""

import asyncio
import concurrent.futures
import contextvars
import itertools
import logging
import queue
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from typing import Protocol

import dspy
from threadpoolctl import threadpool_limits

from datagen.errors import DatagenError, FailureKind, InputError
from datagen.lm import (BATCH_KINDS, CALL_LOG, FATAL, CallGate, CallLog, ModelGates, RoleModel, Turn, failure_kind,
                        first_line, gated, holds_invalid_text, step_names, track_usage)
from datagen.metrics import Scorer
from datagen.runs.event_loop import EventLoopThread
from datagen.runs.interrupt import Interrupt
from datagen.store import Outcome
from datagen.text import Chunk
from datagen.util import redact

log = logging.getLogger(__name__)

# When this many chunks fail in a row before any succeeds, the problem is not the chunks: stop spending.
FAILURES_BEFORE_FIRST_SUCCESS = 5
# Chunks on the event loop beyond `concurrency`: formatted, their request waiting at the gate for a slot, so that a
# request goes out as soon as one comes back, not after a whole chunk's preparation (its adapter's format and
# DSPy's thread hops, about 10-20 ms with 32 in flight). 16 more: 131 to 136 samples/s at 32 x 200 ms, and 32 or 64
# more were slower than 16 at 64 in flight (bench/README.md, issue 29's seventh pass).
LOOKAHEAD = 16


class ChunkExecutor(Protocol):
    """Where a run's chunks are run: `ThreadExecutor` here, `datagen.runs.cluster.RayExecutor` on Ray actors.
    `lookahead`: chunks it may be given beyond `concurrency`, which wait, prepared, at the rate gate for a request's
    slot (0: none)."""

    lookahead: int

    def submit(self, chunk: Chunk, retried: bool) -> concurrent.futures.Future:
        """The chunk's `Outcome`, to come; `retried`: it failed before, so it asks the model afresh."""

    def give_back(self) -> None:
        """The run is ending: chunks in flight that have sent no request yet may end unrun, their futures cancelled
        (a later run runs them). Quick; from any thread."""

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Stop: with `wait` once the chunks in flight are done, else at once."""


class Cluster(Protocol):
    """Machines a run's chunks can go to (`datagen.runs.cluster.RayCluster`), as the runner sees them."""

    def executor(self, program: dspy.Module, model: RoleModel, fresh: RoleModel, scorer: Scorer | None,
                 gates: Mapping[str, CallGate], concurrency: int) -> ChunkExecutor:
        """Workers started with everything a chunk needs; `fresh` is the model for chunks asked afresh."""


def is_async(program: dspy.Module) -> bool:
    """Whether `program` defines `aforward`: then `acall` runs it, on an event loop."""
    return callable(getattr(program, "aforward", None))


def drop_reason(dropped) -> str:
    """Why a pipeline rejected a candidate: the "reason" of its `dropped` entry (see programs/factual_qa.py)."""
    return str(dropped.get("reason") or "unspecified") if isinstance(dropped, dict) else "unspecified"


class ChunkRunner:
    """Runs a chunk through the program, then its samples through the scorer, with every LM call passing the gates:
    what a worker thread of this process and a Ray actor both do, for as many threads at once as call it.

    Args:
        program: the DSPy program; one with `aforward` runs on an event loop of the runner's own.
        scorer: scores each sample; None: no scores.
        gates: {model name as DSPy knows it: CallGate} for the LM calls.
        callbacks: DSPy callbacks that hear each chunk's calls, besides the chunk's own call log.
    """

    def __init__(self, program: dspy.Module, scorer: Scorer | None, gates: Mapping[str, CallGate],
                 callbacks: Iterable = ()):
        self.program, self.scorer, self.gates = program, scorer, gates
        # A corpus run keeps no history of its calls in memory: the run store is the record. The caller's callbacks
        # are handed on explicitly: DSPy's context does not follow work into worker threads.
        self.settings = {"disable_history": True, "callbacks": list(callbacks)}
        self.names = step_names(program, scorer.metrics if scorer else ())
        self.loop = EventLoopThread() if is_async(program) else None
        # Each chunk's rank at the gates, in the order they start: a chunk's later calls go before the first calls
        # of the chunks after it (datagen.lm.gate), so that chunks waiting beyond `concurrency` do not hold it back.
        self._ranks = itertools.count()
        self._turns: set[Turn] = set()  # the turns of the chunks on the event loop

    def run_one(self, chunk: Chunk, model: RoleModel) -> Outcome:
        """The chunk's outcome with `model` as the task model: a failure is an outcome too (this raises only what
        a chunk raises past its own handling, e.g. KeyboardInterrupt). A program with `aforward` runs on the
        runner's event loop, this thread waiting for it (`submit` runs it there without a thread)."""
        if (task := self.submit(chunk, model)) is not None:
            return task.result()
        with gated(self.gates, Turn(next(self._ranks))):
            try:
                return self._run(chunk, model)
            except Exception as exc:  # datagen's own bookkeeping failed: the chunk fails, the run goes on
                return _bookkeeping_failed(chunk, exc)

    def submit(self, chunk: Chunk, model: RoleModel) -> concurrent.futures.Future | None:
        """The chunk's outcome, to come, as `run_one`'s. A program with `aforward`, on a model that answers
        asynchronously (`RoleModel.asynchronous`), runs as a task of the runner's event loop, with no thread of its
        own waiting for it (a thread a chunk in flight cost CPU at hundreds in flight); `None` otherwise: the caller
        runs `run_one` in a thread."""
        if self.loop is None or not model.asynchronous:
            return None
        turn = Turn(next(self._ranks))
        self._turns.add(turn)
        future = self.loop.submit(self._arun(chunk, model, turn), contextvars.Context())
        future.add_done_callback(lambda _: self._turns.discard(turn))
        return future

    def give_back(self) -> None:
        """Withdraw the turns (`Turn.withdraw`) of the chunks on the event loop that have sent no request yet: each
        ends unrun, its future cancelled, and costs nothing (a later run runs it); the others finish. Quick; from
        any thread."""
        if self.loop is not None:
            turns = list(self._turns)  # the loop thread discards turns meanwhile
            self.loop.call_soon(lambda: [turn.withdraw() for turn in turns])

    def close(self, wait: bool) -> None:
        """Stop the event loop, if any: with `wait` once its chunks are done, else at once."""
        if self.loop is not None:
            self.loop.close(wait=wait)

    def _run(self, chunk: Chunk, model: RoleModel) -> Outcome:
        started, call_log = time.monotonic(), CallLog(self.names)
        with self._chunk_context(model, call_log) as tracker:
            outcome = _outcome(self.program, chunk)
            cut = call_log.truncated  # the program's answers cut off; a judge's, later, costs only its metric
            if self.scorer is not None and outcome.failure is None:
                _score(self.scorer, outcome)
        return _finished(outcome, model, call_log, cut, tracker, started)

    async def _arun(self, chunk: Chunk, model: RoleModel, turn: Turn) -> Outcome:
        """`run_one` as a task of the event loop, its requests taking `turn` at the gates: the scorer (synchronous,
        its judges' calls blocking) runs in a thread, so that the loop goes on with the other chunks."""
        with gated(self.gates, turn):
            try:
                started, call_log = time.monotonic(), CallLog(self.names)
                with self._chunk_context(model, call_log) as tracker:
                    outcome = await _aoutcome(self.program, chunk)
                    cut = call_log.truncated
                    if self.scorer is not None and outcome.failure is None:
                        await asyncio.to_thread(_score, self.scorer, outcome)
                return _finished(outcome, model, call_log, cut, tracker, started)
            except Exception as exc:
                return _bookkeeping_failed(chunk, exc)

    @contextmanager
    def _chunk_context(self, model: RoleModel, call_log: CallLog) -> Iterator:
        """The chunk's DSPy settings: the model, the caller's callbacks and the chunk's call log (which hears its
        steps and LM calls: datagen.lm.calllog); a trace of its own (DSPy's shared one keeps the last 10,000
        predictions, inputs included, for the whole run); and a usage tracker of its own, yielded, so that tokens
        spent on a chunk that then fails are still counted."""
        with model.context(**self.settings, trace=[], **{CALL_LOG: call_log}), track_usage() as tracker:
            yield tracker


def _bookkeeping_failed(chunk: Chunk, exc: Exception) -> Outcome:
    """datagen's own bookkeeping of a chunk failed: the chunk fails, the run goes on."""
    log.exception("chunk %s: %s", chunk.id, exc)
    return Outcome(chunk, failure=failure_kind(exc), message=first_line(exc))


def _finished(outcome: Outcome, model: RoleModel, call_log: CallLog, cut: int, tracker, started: float) -> Outcome:
    """The outcome with its usage, steps, LM calls and time; failed as truncated when `cut` (the program's answers
    cut off at max_tokens) is not zero."""
    if cut and outcome.failure != FailureKind.DEFERRED:
        # Whatever came of it, a sample or a parse error, it was made from a cut-off answer.
        cap = model.lm.kwargs.get("max_tokens") or model.lm.kwargs.get("max_completion_tokens")
        outcome.failure, outcome.samples, outcome.scores = FailureKind.TRUNCATED, [], []
        outcome.message = (f"the model's answer was cut off at max_tokens={cap or 'the server default'} "
                           "(finish_reason length): raise the model's max_tokens")
    outcome.usage = tracker.get_total_tokens()
    outcome.steps, outcome.calls = call_log.steps, call_log.calls
    outcome.seconds = time.monotonic() - started
    return outcome


def _outcome(program: dspy.Module, chunk: Chunk) -> Outcome:
    try:
        prediction = program(chunk=chunk.text)
    except Exception as exc:  # recorded per chunk; the caller decides what is fatal
        return _program_failed(chunk, exc)
    return _predicted(chunk, prediction)


async def _aoutcome(program: dspy.Module, chunk: Chunk) -> Outcome:
    try:
        prediction = await program.acall(chunk=chunk.text)
    except Exception as exc:
        return _program_failed(chunk, exc)
    return _predicted(chunk, prediction)


def _program_failed(chunk: Chunk, exc: Exception) -> Outcome:
    return Outcome(chunk, failure=failure_kind(exc), message=first_line(exc),
                   raw=redact(getattr(exc, "lm_response", None)))


def _predicted(chunk: Chunk, prediction: dspy.Prediction) -> Outcome:
    """The outcome of the program's prediction: its samples, or why it made none."""
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
        outcome.failure, outcome.message = FailureKind.NO_SAMPLES, "the program returned no samples"
    elif any(not s.input.strip() or not s.output.strip() for s in samples):
        outcome.failure, outcome.message = FailureKind.EMPTY_OUTPUT, "a sample has an empty input or output"
    else:
        outcome.samples = samples
    return outcome


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


class ThreadExecutor:
    """Chunks on worker threads of this process, one a chunk in flight (a `ChunkExecutor`).

    Args:
        program: the DSPy program.
        model: the task model.
        fresh: the task model for chunks asked afresh (past DSPy's cache).
        scorer: scores each sample; None: no scores.
        gates: {model name as DSPy knows it: CallGate} for the LM calls.
        concurrency: worker threads.
    """

    def __init__(self, program: dspy.Module, model: RoleModel, fresh: RoleModel, scorer: Scorer | None,
                 gates: Mapping[str, CallGate], concurrency: int):
        self._model, self._fresh = model, fresh
        self._runner = ChunkRunner(program, scorer, gates, dspy.settings.get("callbacks", []))
        # A chunk on the event loop waits at the gate without a thread; on a worker thread it would hold one.
        on_loop = self._runner.loop is not None and model.asynchronous and fresh.asynchronous
        self.lookahead = min(concurrency, LOOKAHEAD) if on_loop else 0
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="datagen")
        # Chunks in flight are the parallelism: a BLAS thread pool per numpy call (the offline metrics' MiniLM
        # embedding) on top of them oversubscribes the cores. 8 chunks in flight scored by the embedding metric on 2
        # cores: 2.0 chunks/s with numpy's default pool, 9.3 with one thread a call (bench/README.md, issue 17).
        # threadpoolctl sets it for the whole process, until the run ends. Ray already runs each actor so.
        self._blas = threadpool_limits(limits=1) if concurrency > 1 else None

    def submit(self, chunk: Chunk, retried: bool) -> concurrent.futures.Future:
        """The chunk's outcome, to come: from a task of the runner's event loop, or from a worker thread."""
        model = self._fresh if retried else self._model
        return self._runner.submit(chunk, model) or self._pool.submit(self._runner.run_one, chunk, model)

    def give_back(self) -> None:
        """Chunks on the event loop that have sent nothing yet end unrun (`ChunkRunner.give_back`); those on worker
        threads finish."""
        self._runner.give_back()

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Stop the event loop and the threads (with `wait`, once the chunks in flight are done), and give numpy
        its BLAS threads back."""
        self._runner.close(wait=wait)
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)
        if self._blas is not None:
            self._blas.restore_original_limits()


def run_chunks(program: dspy.Module, model: RoleModel, chunks: Iterable[Chunk], concurrency: int = 1, *,
               scorer: Scorer | None = None, gates: Mapping[str, CallGate] | None = None,
               cluster: Cluster | None = None, ordered: bool = False, every: bool = False,
               interrupt: "Interrupt | None" = None, admit: Callable[[int], bool] | None = None,
               retried: Collection[str] = (), retry_model: RoleModel | None = None,
               lookahead: bool = True) -> Iterator[Outcome]:
    """Run every chunk through the program, at most `concurrency` requests in flight, and no more chunks read ahead
    than are in flight.

    `chunks` is read, and outcomes are yielded, in the calling thread (the run store's). A program with `aforward`
    runs it (`acall`) on one asyncio event loop shared by the run, each chunk's worker waiting, when the model
    answers asynchronously (`RoleModel.asynchronous`); else its `forward` runs in the worker.

    Args:
        program: the DSPy program.
        model: the task model.
        chunks: the chunks to run.
        concurrency: requests in flight at most (at least 1), each model's gate holding them (`gates`); chunks in
            flight: as many, and on the event loop, once a chunk has succeeded, up to LOOKAHEAD more, waiting at the
            task model's gate (none with `admit`, nor without `lookahead`).
        scorer: scores each sample; None: no scores.
        gates: {model name as DSPy knows it: CallGate} for the LM calls; a model not in it (None: any model) gets a
            gate of `concurrency` when first called (`datagen.lm.ModelGates`), its requests in flight cut on 429s.
        cluster: run the chunks on its workers (e.g. a `RayCluster`'s actors); None: on threads of this process.
        ordered: yield the outcomes in `chunks`' order, not as they finish.
        every: run every chunk even when the first ones all fail (a dev set, its size bounding the spend).
        interrupt: once it is ending no chunk starts; those in flight that have sent a request finish and are
            yielded, those that have not are given back (no outcome: a later run runs them).
        admit: asked `admit(in_flight)` before each chunk starts (e.g. a spending cap); False: none starts now,
            and the run ends once none is in flight.
        retried: ids of chunks that failed before: they ask the model afresh, past DSPy's cache.
        retry_model: the task model for those (None: `model` with DSPy's cache off).
        lookahead: whether chunks beyond `concurrency` may wait at the gate (False where the caller stops at a count
            of failures, --max-failures: a failed request's slot would go to a waiting chunk before the count).

    Yields:
        Each chunk's `Outcome`.

    Raises:
        InputError: `concurrency` below 1.
        DatagenError: a failure no other chunk would escape (bad key, unknown model, nothing listening), or the
            first chunks all failed (unless `every`): raised once the chunks in flight that had sent a request are
            yielded.
    """
    if concurrency < 1:
        raise InputError(f"--concurrency must be at least 1, got {concurrency}")
    # A gate for every model the chunks call: with chunks beyond `concurrency`, they no longer bound its requests.
    gates = ModelGates(gates or {}, concurrency)
    # DSPy caches an answer that came back, whether or not it then parsed: a failed chunk would get its bad answer
    # (malformed, empty, cut off) again from the cache, and a cut-off one, unflagged then, would pass as a sample.
    fresh = retry_model or model.with_settings(cache=False)
    executor = (ThreadExecutor(program, model, fresh, scorer, gates, concurrency) if cluster is None
                else cluster.executor(program, model, fresh, scorer, gates, concurrency))
    # Chunks beyond `concurrency`, their requests held at the gates, but not under a spending cap (the first chunks
    # start before what a chunk costs is known, and each more would pass it further), nor where failures are counted
    # (a failed request's slot would go at once to a waiting chunk, before the caller could stop).
    ahead = executor.lookahead if admit is None and lookahead else 0
    in_order = _InOrder() if ordered else None
    stop = _StopRule(model.name, every)

    def may_start(in_flight: int) -> bool:
        return not (interrupt and interrupt.ending) and (admit is None or admit(in_flight))

    stopped = False
    try:
        slots = _Slots(executor, in_order.numbered(chunks) if in_order else iter(chunks), concurrency, ahead,
                       may_start, retried)
        with interrupt.calling(executor.give_back) if interrupt else nullcontext():
            yield from _outcomes(slots, stop, in_order, admit is None)
    except KeyboardInterrupt:
        stopped = True
        raise
    finally:
        if not stopped:  # the run ends (it is done, or stops on an error): what has sent nothing is not sent now
            executor.give_back()
        # Stopped at once (a stop signal with no `interrupt` to let the chunks in flight finish, as in evaluate and
        # optimize, or a second one): calls in flight are abandoned, not waited for.
        executor.shutdown(wait=not stopped, cancel_futures=True)


def _outcomes(slots: "_Slots", stop: "_StopRule", in_order: "_InOrder | None", refill: bool) -> Iterator[Outcome]:
    """The outcomes of `slots`, in order with `in_order`; after a success the next chunk starts before the outcome
    is yielded when `refill`. When `stop` stops the run (a fatal failure, its first chunks all failed), no chunk
    starts and those that have sent nothing are given back; the outcomes of the others still come (they are paid
    for), but for fatal failures (not kept: they would fail again), and then its DatagenError is raised."""
    error: DatagenError | None = None
    for outcome in slots.outcomes():
        if outcome.failure == FailureKind.DEFERRED:  # a batch round: asked, not yet answered
            yield outcome
            continue
        if (fatal := stop.fatal(outcome)) is not None:
            error = error or fatal
            slots.stop()
            continue
        if outcome.failure is None and refill:
            # The finished chunk's slot is not left idle while the caller records its outcome (a store write, a
            # thread switch). After a failure it waits: the caller may stop there (--max-failures), and so may
            # the run (its first chunks all failed); and a spending cap's `admit` must first see what it cost.
            slots.fill()
        yield from in_order.put(outcome) if in_order else (outcome,)
        if error is None and (error := stop.first_failures(outcome)) is not None:
            slots.stop()
    if error is not None:
        raise error


class _Slots:
    """The chunks in flight, at most `concurrency` (`ahead` more once one has succeeded: a chunk waiting would send
    as soon as a failed one frees its slot), started while `may_start(in_flight)` allows and not stopped (`stop`);
    their outcomes as they finish (none for a chunk given back)."""

    def __init__(self, executor: ChunkExecutor, chunks: Iterator[Chunk], concurrency: int, ahead: int,
                 may_start: Callable[[int], bool], retried: Collection[str]):
        self._executor, self._chunks, self._concurrency, self._ahead = executor, chunks, concurrency, ahead
        self._may_start, self._retried = may_start, retried
        self._finished: queue.SimpleQueue = queue.SimpleQueue()
        self._in_flight = 0
        self._stopped = False

    def fill(self) -> None:
        """Start chunks while there are free slots, chunks left, and `may_start` allows it."""
        while (not self._stopped and self._in_flight < self._concurrency and self._may_start(self._in_flight)
               and (chunk := next(self._chunks, None)) is not None):
            self._executor.submit(chunk, chunk.id in self._retried).add_done_callback(self._finished.put)
            self._in_flight += 1

    def stop(self) -> None:
        """Start no more chunks, and give back those in flight that have sent nothing (`ChunkExecutor.give_back`)."""
        self._stopped = True
        self._executor.give_back()

    def outcomes(self) -> Iterator[Outcome]:
        """The outcomes as the chunks finish, the slots filled before each wait, until none is in flight."""
        while True:
            self.fill()
            if not self._in_flight:
                return
            finished = _next(self._finished)
            self._in_flight -= 1
            if not finished.cancelled():  # else given back, unrun
                outcome = finished.result()  # raising what a chunk raised past its own handling (KeyboardInterrupt)
                if outcome.failure is None:
                    self._concurrency, self._ahead = self._concurrency + self._ahead, 0
                yield outcome


def _next(finished: queue.SimpleQueue) -> concurrent.futures.Future:
    """The next chunk's future to finish; waiting in short steps, so that Ctrl-C reaches this thread at once."""
    while True:
        try:
            return finished.get(timeout=0.5)
        except queue.Empty:
            continue


class _InOrder:
    """Outcomes put back in their chunks' order: each waits for those before it."""

    def __init__(self):
        self._places: dict[str, int] = {}  # chunk id -> its place
        self._waiting: dict[int, Outcome] = {}
        self._next = 0

    def numbered(self, chunks: Iterable[Chunk]) -> Iterator[Chunk]:
        """`chunks`, each given its place as it is read."""
        for chunk in chunks:
            self._places[chunk.id] = len(self._places)
            yield chunk

    def put(self, outcome: Outcome) -> list[Outcome]:
        """The outcomes whose turn has come, now that `outcome` is in."""
        self._waiting[self._places[outcome.chunk.id]] = outcome
        ready = []
        while self._next in self._waiting:
            ready.append(self._waiting.pop(self._next))
            self._next += 1
        return ready


class _StopRule:
    """When a run stops on its own: at a failure no other chunk would escape, or when its first chunks all fail."""

    def __init__(self, model_name: str, every: bool):
        self.model_name, self.every = model_name, every
        self.succeeded = False
        self.failed_first = 0

    def fatal(self, outcome: Outcome) -> DatagenError | None:
        """The error that stops the run if `outcome` is a fatal failure (nothing listening counts only before any
        chunk succeeded), else None, the outcome counted."""
        if outcome.failure in FATAL or (outcome.failure == FailureKind.TRANSPORT and not self.succeeded):
            return DatagenError(f"{self.model_name}: {outcome.message}")
        self.succeeded = self.succeeded or outcome.failure is None
        # A batch job's failure came in with its whole job, already paid: no reason to stop the others.
        self.failed_first += not self.succeeded and outcome.failure not in BATCH_KINDS
        return None

    def first_failures(self, outcome: Outcome) -> DatagenError | None:
        """The error that stops the run once its first chunks have all failed (never with `every`), else None."""
        if self.failed_first >= FAILURES_BEFORE_FIRST_SUCCESS and not self.every:
            return DatagenError(f"the first {self.failed_first} chunks all failed ({outcome.failure}: "
                                f"{outcome.message}); stopped before spending more")
        return None
