"""Running chunks on a Ray cluster (`--executor ray`): actors hold the program, its models and the scorer, and run
the chunks the driver hands them; the driver stays the only writer of the run store.

Each actor is a threaded Ray actor running chunks as the local runner does (datagen.runs.runner's `ChunkRunner`:
DSPy's call log, usage, scoring, gates of its own); a chunk's `Outcome` (samples, scores, steps, LM calls, usage)
comes back to the driver, which commits it. So everything the store guarantees on one machine holds: per-chunk
commit, resume, exactly-once exports, the run-folder lock, Ctrl-C. An actor whose process dies loses only its
chunks in flight: each is handed to another actor (a new one takes the dead one's place), at most
`MAX_HANDOFFS` times before the chunk fails as `worker_died`.

The program, its models and the scorer travel to the actors pickled (Ray's cloudpickle); the workspace's modules
(programs/, signatures/, metrics/) travel by value, so a node needs datagen installed but not the workspace. Rate
limits are shared out: each of N actors gets 1/N of every gate's rpm, tpm and requests in flight.
"""

import concurrent.futures
import logging
import math
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import dspy

from datagen.errors import DatagenError, FailureKind
from datagen.lm import CallGate, remember_configured
from datagen.runs.runner import ChunkRunner
from datagen.store import Outcome
from datagen.text import Chunk
from datagen.util import redact
from datagen.workspace import WORKSPACE_PACKAGES

log = logging.getLogger(__name__)

RAY_MISSING = "--executor ray needs Ray, an optional extra: pip install 'datagen[ray]'"
MAX_HANDOFFS = 3  # times a chunk whose actor died is handed to another before it fails


def ray_module():
    """The `ray` package, or a one-line DatagenError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise DatagenError(RAY_MISSING) from None
    # Importing Ray sets its loggers to INFO; its start-up notices would drown the run's own output (-v shows them).
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("ray").setLevel(logging.ERROR)
    return ray


class ChunkWorker:
    """What each Ray actor runs: the chunks it is handed, with the program, models, scorer and gates it was built
    with (gates as (concurrency, rpm, tpm) by model name, made into CallGates here: locks do not travel), and
    DSPy's cache set as the driver's is (`cache`: dspy.configure_cache's arguments)."""

    def __init__(self, program, model, fresh, scorer, gates: dict, cache: dict):
        configure_worker(model, fresh, scorer, cache)
        self.model, self.fresh = model, fresh
        self.runner = ChunkRunner(program, scorer, {name: CallGate(*limits) for name, limits in gates.items()})

    def run(self, chunk: Chunk, retried: bool) -> Outcome:
        """One chunk's outcome (a failure is an outcome too; this raises only if the process dies)."""
        return self.runner.run_one(chunk, self.fresh if retried else self.model)


def configure_worker(model, fresh, scorer, cache: dict) -> None:
    """Set up a worker process (a Ray actor's, datagen.runs.processes' worker) as the driver is: DSPy's cache
    (`cache`: dspy.configure_cache's arguments, see `cache_settings`), and each model's name as the user configured
    it (datagen.lm.names), so that usage and messages name it so here too."""
    dspy.configure_cache(**cache)
    # (The judge only if the scorer built it: `judge` is a cached_property, read without building it.)
    for role_model in (model, fresh, scorer and scorer.context.__dict__.get("judge")):
        if role_model is not None:
            remember_configured(role_model)


class RayExecutor:
    """Hands chunks to `actors` Ray actors, least busy first, as futures (`submit`): a `ChunkExecutor` for
    datagen.runs.runner. `address`: a running cluster's ("auto", "ray://HOST:10001", "HOST:6379"); None starts a
    local one for the run, with as many CPUs as actors, stopped at `shutdown`. `concurrency`: chunks in flight over
    all actors (each gets its share of threads). Raises DatagenError when Ray is not installed or the cluster
    cannot be reached."""

    lookahead = 0  # chunks beyond `concurrency` are measured on this process's event loop only (runner.LOOKAHEAD)

    def __init__(self, program, model, fresh, scorer, gates: Mapping[str, CallGate], *, actors: int,
                 concurrency: int, address: str | None = None):
        if actors < 1:
            raise DatagenError(f"--actors must be at least 1, got {actors}")
        ray = ray_module()
        self._ray = ray
        _ship_workspace_by_value(ray)
        self._started = not ray.is_initialized()
        if self._started:
            # ray.init makes SIGTERM end the driver at once (sys.exit); the run's own handler stays instead, so that
            # SIGTERM stops a run on Ray as Ctrl-C does (datagen.util.signals).
            with _keeping_sigterm_handler():
                try:
                    ray.init(address=address, num_cpus=None if address else actors, include_dashboard=False,
                             log_to_driver=False, configure_logging=False)
                except (ConnectionError, RuntimeError, ValueError) as exc:
                    raise DatagenError(f"cannot reach the Ray cluster at {address}: {exc}") from None
        per_actor = max(1, math.ceil(concurrency / actors))
        shared = {name: (max(1, math.ceil(gate.concurrency / actors)), *gate.shared_rates(actors))
                  for name, gate in gates.items()}
        self._remote = ray.remote(num_cpus=1, max_concurrency=per_actor, max_restarts=0)(ChunkWorker)
        cache = cache_settings()
        self._spawn = lambda: self._remote.remote(program, model, fresh, scorer, shared, cache)
        self._actors = {n: self._spawn() for n in range(actors)}
        self._busy = dict.fromkeys(self._actors, 0)
        self._lock = threading.Lock()

    def submit(self, chunk: Chunk, retried: bool) -> concurrent.futures.Future:
        """The chunk's outcome, to come: run by the least busy actor, handed on if that actor dies."""
        done: concurrent.futures.Future = concurrent.futures.Future()
        self._send(chunk, retried, done, handoffs=0)
        return done

    def _send(self, chunk: Chunk, retried: bool, done: concurrent.futures.Future, handoffs: int) -> None:
        with self._lock:
            number = min(self._busy, key=self._busy.get)
            self._busy[number] += 1
            actor = self._actors[number]
        future = actor.run.remote(chunk, retried).future()
        future.add_done_callback(lambda f: self._finished(f, number, actor, chunk, retried, done, handoffs))

    def _finished(self, future, number: int, actor, chunk: Chunk, retried: bool, done, handoffs: int) -> None:
        with self._lock:
            self._busy[number] -= 1
        error = future.exception()
        if error is None:
            done.set_result(redacted(future.result()))
            return
        if not isinstance(error, self._ray.exceptions.RayActorError):
            done.set_exception(error)
            return
        with self._lock:  # the actor died: a new one takes its place (once, however many of its chunks report it)
            if self._actors.get(number) is actor:
                log.warning("a Ray actor died (%s); its chunks in flight go to the others", error.__class__.__name__)
                self._actors[number] = self._spawn()
        if handoffs >= MAX_HANDOFFS:
            done.set_result(Outcome(chunk, failure=FailureKind.WORKER_DIED,
                                    message=f"the Ray actor running this chunk died {handoffs + 1} times: "
                                    f"{str(error).splitlines()[0]}"))
            return
        self._send(chunk, retried, done, handoffs + 1)

    def give_back(self) -> None:
        """Nothing: each chunk handed to a worker finishes there (with no chunk beyond `concurrency`, few wait)."""

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Stop the actors (and the local cluster this started). The runner waits for chunks in flight itself."""
        for actor in self._actors.values():
            self._ray.kill(actor)
        if self._started:
            self._ray.shutdown()


@contextmanager
def _keeping_sigterm_handler() -> Iterator[None]:
    """Put SIGTERM's handler back as it was on the way out (in the main thread, the only one that can)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if before is not None:
            signal.signal(signal.SIGTERM, before)


def redacted(outcome: Outcome) -> Outcome:
    """The outcome with every API key known here blanked out of its messages (a worker, a Ray actor or a worker
    process, knows only the keys in its own environment; the store is written here)."""
    outcome.message, outcome.raw = redact(outcome.message), redact(outcome.raw)
    for entry in (*outcome.steps, *outcome.calls):
        entry.error = redact(entry.error)
    for call in outcome.calls:
        call.response = redact(call.response)
    return outcome


def cache_settings() -> dict:
    """The driver's DSPy cache settings (a run turns the memory cache off, a benchmark both), for the workers."""
    cache = dspy.cache
    return {"enable_disk_cache": cache.enable_disk_cache, "enable_memory_cache": cache.enable_memory_cache,
            "disk_cache_dir": cache.disk_cache_dir}


def _ship_workspace_by_value(ray) -> None:
    """Pickle the workspace's modules (programs/, signatures/, metrics/) by value: an actor on another node (or
    without the workspace on its path) unpickles the program without importing them."""
    from ray import cloudpickle

    for name, module in list(sys.modules.items()):
        if name.split(".")[0] in WORKSPACE_PACKAGES and module is not None:
            try:
                cloudpickle.register_pickle_by_value(module)
            except ValueError:  # already registered, or a namespace package
                pass



@dataclass(frozen=True)
class RayCluster:
    """Where a run's chunks go with `--executor ray` (`RunSettings(cluster=...)`): to Ray actors.

    Args:
        actors: how many Ray actors run the chunks (at least 1).
        address: a running cluster's address ("auto", "ray://HOST:10001", "HOST:6379"); None: a local cluster
            started for the run (as many CPUs as actors) and stopped after it.
    """

    actors: int = 2
    address: str | None = None

    def executor(self, program, model, fresh, scorer, gates: Mapping[str, CallGate], concurrency: int) -> RayExecutor:
        """The actors, started, with everything a chunk needs (see RayExecutor): the runner's `Cluster`."""
        return RayExecutor(program, model, fresh, scorer, gates, actors=self.actors, concurrency=concurrency,
                           address=self.address)
