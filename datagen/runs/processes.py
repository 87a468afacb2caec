"""Running chunks on worker processes of this machine (`--executor processes`): past one core, without Ray.

One datagen process tops out at about 1 / (its CPU seconds a call) calls a second (about 6 ms a chunk of one call,
DSPy's own share about 1.5 ms: bench/README.md): a machine with spare cores runs more chunks a second with more
processes. Each worker process (a fresh interpreter, `start_child`: not forked, since forking a process that runs
threads is unsafe, nor multiprocessing's spawn, which runs the caller's script again) is built once with the
program, its models, the scorer and its share of the gates, and runs the chunks it is handed exactly as a local
run does (datagen.runs.runner's `ThreadExecutor`: its share of `--concurrency` in threads, or on its event loop for
an `aforward` program). Each chunk's `Outcome` comes back to the driver, the only writer of the run store:
per-chunk commit, resume, exports, the run-folder lock and the stop signals hold as in one process.

A worker ignores the terminal's Ctrl-C and SIGHUP (they reach its process group too): the driver decides what a
stop means. A worker that dies loses only its chunks in flight: each goes to another (a new process takes the dead
one's place), at most `MAX_HANDOFFS` times before it fails as `worker_died`. A worker whose driver dies exits.
"""

import concurrent.futures
import importlib
import itertools
import logging
import math
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import connection
from pathlib import Path
from typing import NoReturn

import cloudpickle

from datagen.errors import DatagenError, FailureKind
from datagen.lm import CallGate, first_line
from datagen.runs.cluster import MAX_HANDOFFS, cache_settings, configure_worker, redacted
from datagen.runs.runner import ThreadExecutor
from datagen.store import Outcome
from datagen.text import Chunk
from datagen.util import frozen_heap

log = logging.getLogger(__name__)

# What a worker ignores: the terminal sends them to the whole process group, the workers included.
WORKER_IGNORES = frozenset({signal.SIGINT, signal.SIGHUP})
STOP_SECONDS = 30  # how long a worker told to stop may take to finish its chunks before it is killed
READY, FAILED = "ready", "failed"  # a worker's first message: built, or why not


@dataclass
class _Task:
    number: int
    chunk: Chunk
    retried: bool
    done: concurrent.futures.Future
    handoffs: int = 0
    worker: "_Worker | None" = None


class _Worker:
    """One worker process, the driver's end of its pipe, and a thread sending it tasks, several to a message."""

    def __init__(self, setup: bytes, slot: int):
        self.slot, self.busy, self.ready, self.dead = slot, 0, False, False
        self.process, self.conn = start_child("datagen.runs.processes:worker_child")
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()  # (number, chunk, retried); None: stop
        self.sender = threading.Thread(target=self._send, args=(setup,), name=f"datagen-worker-{slot}-send",
                                       daemon=True)
        self.sender.start()

    def _send(self, setup: bytes) -> None:
        try:
            self.conn.send_bytes(setup)  # first: what the worker is built from (sent here: it waits for its imports)
        except OSError:
            return
        while True:
            batch = _drained(self.outbox)
            try:
                if tasks := [task for task in batch if task is not None]:
                    self.conn.send(tasks)
                if None in batch:
                    self.conn.send(None)
                    return
            except OSError:  # the worker is gone: the reader hands its chunks on
                return


class ProcessExecutor:
    """Hands chunks to `workers` worker processes (no more than `concurrency`), least busy first, as futures
    (`submit`): a `ChunkExecutor` for datagen.runs.runner. `concurrency`: chunks in flight over all workers (each
    runs its share at once); rate limits are shared out alike: each of N workers keeps to 1/N of every gate's rpm
    and tpm.

    Raises DatagenError when `workers` is below 1 or the program, its models or the scorer cannot be pickled."""

    lookahead = 0  # chunks beyond `concurrency` are measured on this process's event loop only (runner.LOOKAHEAD)

    def __init__(self, program, model, fresh, scorer, gates: Mapping[str, CallGate], *, workers: int,
                 concurrency: int):
        if workers < 1:
            raise DatagenError(f"--workers must be at least 1, got {workers}")
        workers = min(workers, max(concurrency, 1))  # a worker with no chunk in flight to run would only start
        shared = {name: (max(1, math.ceil(gate.concurrency / workers)), *gate.shared_rates(workers))
                  for name, gate in gates.items()}
        per_worker = max(1, math.ceil(concurrency / workers))
        try:
            self._setup = cloudpickle.dumps((program, model, fresh, scorer, shared, cache_settings(),
                                             _log_levels(), per_worker))
        except Exception as exc:
            raise DatagenError(f"--executor processes: the program, its models or the scorer cannot be sent to a "
                               f"worker process: {first_line(exc)}") from None
        self._lock = threading.Lock()
        self._tasks: dict[int, _Task] = {}
        self._numbers = itertools.count()
        self._closing = False
        self._broken: str | None = None  # why workers cannot start: every chunk then fails with it
        self._wake = os.pipe()
        self._workers = [_Worker(self._setup, slot) for slot in range(workers)]
        self._reader = threading.Thread(target=self._read, name="datagen-workers-read", daemon=True)
        self._reader.start()

    def submit(self, chunk: Chunk, retried: bool) -> concurrent.futures.Future:
        """The chunk's outcome, to come: run by the least busy worker, handed on if that worker dies."""
        task = _Task(next(self._numbers), chunk, retried, concurrent.futures.Future())
        self._assign(task)
        return task.done

    def _assign(self, task: _Task) -> None:
        with self._lock:
            if self._broken is None:
                worker = min((w for w in self._workers if not w.dead), key=lambda w: w.busy)
                worker.busy += 1
                task.worker = worker
                self._tasks[task.number] = task
                worker.outbox.put((task.number, task.chunk, task.retried))
                return
        task.done.set_exception(DatagenError(self._broken))

    def _read(self) -> None:
        """The reader thread: outcomes as the workers send them, and deaths (a worker's pipe or process ends)."""
        while True:
            with self._lock:
                watched = {w.conn: w for w in self._workers if not w.dead}
                closing = self._closing
            if closing and not watched:
                return
            for ready in connection.wait([*watched, self._wake[0]]):
                worker = watched.get(ready)
                if worker is None:
                    os.read(self._wake[0], 64)
                elif ready is worker.conn and not worker.dead:
                    try:
                        self._heard(worker, worker.conn.recv())
                    except (EOFError, OSError):
                        self._died(worker)
                elif not worker.dead:
                    self._died(worker)

    def _heard(self, worker: _Worker, message) -> None:
        if isinstance(message, tuple):  # its first message: built, or why not
            kind, why = message
            if kind == READY:
                worker.ready = True
            else:
                self._fail_all(f"a worker process could not be built: {why}")
            return
        for number, outcome, error in message:
            with self._lock:
                task = self._tasks.pop(number, None)
                if task is not None:
                    task.worker.busy -= 1
            if task is not None:
                task.done.set_exception(error) if error is not None else task.done.set_result(redacted(outcome))

    def _died(self, worker: _Worker) -> None:
        """A worker's pipe or process ended: what it sent first is heard, and (unless the run is ending) a new
        process takes its place and its chunks in flight go to the live workers."""
        worker.dead = True
        try:
            while worker.conn.poll():
                self._heard(worker, worker.conn.recv())
        except (EOFError, OSError):
            pass
        worker.outbox.put(None)
        if self._closing:  # shutdown waits for it
            return
        worker.process.kill()  # in case only its pipe broke
        worker.process.join()
        how = _exit_text(worker.process.exitcode)
        if not worker.ready:
            self._fail_all(f"a worker process {how} before it was ready (see the lines above)")
            return
        log.warning("a worker process %s; its chunks in flight go to the others", how)
        with self._lock:
            self._workers[worker.slot] = _Worker(self._setup, worker.slot)
            orphaned = [task for task in self._tasks.values() if task.worker is worker]
            for task in orphaned:
                del self._tasks[task.number]
        for task in orphaned:
            if task.handoffs >= MAX_HANDOFFS:
                task.done.set_result(Outcome(task.chunk, failure=FailureKind.WORKER_DIED, message=(
                    f"the worker process running this chunk died {task.handoffs + 1} times (last: {how})")))
            else:
                task.handoffs += 1
                self._assign(task)

    def _fail_all(self, why: str) -> None:
        """Workers cannot be built: every chunk in flight, and every chunk submitted from now on, fails with `why`
        (a DatagenError: the run stops with it)."""
        with self._lock:
            self._broken = self._broken or why
            tasks, self._tasks = list(self._tasks.values()), {}
        for task in tasks:
            task.done.set_exception(DatagenError(self._broken))

    def give_back(self) -> None:
        """Nothing: each chunk handed to a worker finishes there (with no chunk beyond `concurrency`, few wait)."""

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Stop the workers: with `wait` each finishes what it was handed first (the runner has waited for the
        chunks in flight already), else each is killed at once. No worker process outlives this."""
        with self._lock:
            self._closing = True
            workers = [w for w in self._workers if not w.dead]
        for worker in workers:
            worker.outbox.put(None)  # with `wait`, the worker finishes what it was sent, then exits
            if not wait:
                worker.process.kill()
        for worker in workers:
            worker.process.join(STOP_SECONDS if wait else None)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
        os.write(self._wake[1], b"x")
        self._reader.join()
        for worker in self._workers:
            worker.sender.join()
            worker.conn.close()
        for end in self._wake:
            os.close(end)


@dataclass(frozen=True)
class WorkerProcesses:
    """Where a run's chunks go with `--executor processes` (`RunSettings(cluster=...)`): to worker processes of
    this machine, for runs that one process's CPU bounds (many chunks in flight to a fast server).

    Args:
        workers: how many worker processes run the chunks: at least 1, at most the cores this process may run on
            (`available_cores`); about one per spare core.

    Raises:
        DatagenError: `workers` out of that range.
    """

    workers: int = 2

    def __post_init__(self):
        cores = available_cores()
        if not 1 <= self.workers <= cores:
            # Past one a core a worker adds no throughput, only its memory (DSPy and the program, ~250 MB each).
            raise DatagenError(f"--workers must be between 1 and this machine's {cores} cores, got {self.workers}")

    def executor(self, program, model, fresh, scorer, gates: Mapping[str, CallGate],
                 concurrency: int) -> ProcessExecutor:
        """The workers, started, with everything a chunk needs (see ProcessExecutor): the runner's `Cluster`."""
        return ProcessExecutor(program, model, fresh, scorer, gates, workers=self.workers, concurrency=concurrency)


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system tells it, else the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_child(conn) -> None:
    """A worker process (`start_child`): `worker_main` on `conn`, the setup its first message."""
    try:
        setup = conn.recv_bytes()
    except (EOFError, OSError):  # the driver is gone already
        return
    worker_main(conn, setup)


def worker_main(conn, setup: bytes) -> None:
    """A worker process: build the program, models, scorer and gates from `setup` (cloudpickled), then run the
    chunks the driver sends on `conn` as a local run does, sending their outcomes back, several to a message;
    exit when told to (None: once every chunk handed is done) or at once when the driver is gone."""
    try:
        program, model, fresh, scorer, gates, cache, levels, concurrency = cloudpickle.loads(setup)
        for name, level in levels.items():
            logging.getLogger(name or None).setLevel(level)
        configure_worker(model, fresh, scorer, cache)
        executor = ThreadExecutor(program, model, fresh, scorer,
                                  {name: CallGate(*limits) for name, limits in gates.items()}, concurrency)
    except Exception as exc:
        conn.send((FAILED, f"{exc.__class__.__name__}: {first_line(exc)}"))
        return
    conn.send((READY, None))
    finished: queue.SimpleQueue = queue.SimpleQueue()
    sender = threading.Thread(target=_send_outcomes, args=(conn, finished), name="datagen-send", daemon=True)
    sender.start()
    while (tasks := _receive(conn)) is not None:
        for number, chunk, retried in tasks:
            executor.submit(chunk, retried).add_done_callback(lambda future, n=number: finished.put((n, future)))
    executor.shutdown(wait=True)
    finished.put(None)
    sender.join()


def _receive(conn):
    """The driver's next message; a driver gone (killed) ends this process at once: nobody would hear its
    outcomes."""
    try:
        return conn.recv()
    except (EOFError, OSError):
        os._exit(0)


def _send_outcomes(conn, finished: queue.SimpleQueue) -> None:
    """Send the chunks' outcomes to the driver as they finish, all those finished by then in one message."""
    while True:
        batch = _drained(finished)
        message = [(number, *_result(future)) for number, future in (item for item in batch if item is not None)]
        try:
            if message:
                conn.send(message)
        except (EOFError, OSError):
            os._exit(0)
        if None in batch:
            return


def _result(future: concurrent.futures.Future) -> tuple[Outcome | None, BaseException | None]:
    error = future.exception()
    if error is None:
        return future.result(), None
    # What a chunk raised past its own handling, as one line the driver can unpickle.
    return None, error if isinstance(error, DatagenError) else DatagenError(
        f"{error.__class__.__name__}: {first_line(error)}")


def _drained(items: queue.SimpleQueue) -> list:
    """The next item, waiting for it, and every item queued behind it."""
    return [items.get(), *queued(items)]


def queued(items: queue.SimpleQueue) -> list:
    """Every item queued now, in order, without waiting."""
    found = []
    while True:
        try:
            found.append(items.get_nowait())
        except queue.Empty:
            return found


def _log_levels() -> dict[str, int]:
    """The levels this process's loggers are set to ("": the root's), for the workers (quiet libraries stay so)."""
    loggers = logging.root.manager.loggerDict.items()
    return {"": logging.root.level, **{name: logger.level for name, logger in loggers
                                       if isinstance(logger, logging.Logger) and logger.level}}


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        return f"was killed ({signal.Signals(-code).name})"
    return f"exited (code {code})"


class ChildProcess:
    """A process `start_child` started, with `multiprocessing.Process`'s `pid`, `kill`, `join`, `is_alive` and
    `exitcode` (negative: the signal that killed it)."""

    def __init__(self, popen: subprocess.Popen):
        self._popen = popen
        self.pid = popen.pid

    def kill(self) -> None:
        """SIGKILL it (nothing once it has been waited for)."""
        self._popen.kill()

    def join(self, timeout: float | None = None) -> None:
        """Wait for it to end, `timeout` seconds at most (None: as long as it takes)."""
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    def is_alive(self) -> bool:
        """Whether it has not ended."""
        return self._popen.poll() is None

    @property
    def exitcode(self) -> int | None:
        """Its exit code once ended, else None."""
        return self._popen.poll()


def start_child(call: str, niceness: int = 0) -> tuple[ChildProcess, connection.Connection]:
    """A Python process of this interpreter and `sys.path` that runs `call(conn)` (e.g.
    "datagen.runs.screening:serve"), `conn` its end of a socket pair, and this process's end (both
    `multiprocessing.connection.Connection`s): see `child_main`. `niceness`: added to its nice value before it
    imports anything (0: as this process; 10: it gets a core the others leave idle, and little of a busy one).

    Not multiprocessing's spawn: that imports the caller's main module again in the child, so a script that calls
    `datagen.generate` at its top level, without an `if __name__ == "__main__":` guard, would run a second time
    there (and a script read from stdin cannot be imported at all). The process starts with WORKER_IGNORES blocked,
    and its stdin closed; its output is this process's.

    Raises:
        OSError: the process cannot be started.
    """
    ours, theirs = socket.socketpair()
    # datagen itself imported from where this process has it, first, then the rest by this process's path: a
    # `datagen` folder in the workspace (a clone of another version, on sys.path ahead of the installed one) would
    # otherwise be the child's, and fail to read what this one sends it.
    code = ("import os, sys; os.nice(int(sys.argv[3])); sys.path.insert(0, sys.argv[4]); import datagen; "
            "del sys.path[0]; from datagen.runs.processes import child_main; child_main(sys.argv[1], int(sys.argv[2]))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
    home = str(Path(__file__).resolve().parents[2])  # the folder datagen's package is in
    try:
        with _blocked(WORKER_IGNORES):
            process = subprocess.Popen([sys.executable, "-c", code, call, str(theirs.fileno()), str(niceness), home],
                                       pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env)
    finally:
        theirs.close()
    return ChildProcess(process), connection.Connection(ours.detach())


def child_main(call: str, fd: int) -> None:
    """A `start_child` process: ignore the terminal's WORKER_IGNORES (blocked since it started, so none was lost to
    the default action, exit, while it imported), then run `call` ("module:function") on the connection of file
    descriptor `fd`, the heap it imported kept out of the garbage collector's walks (datagen.util.heap), and exit
    (code 0) once it returns, without the interpreter's teardown: everything it had to say went through `fd`, and
    tearing down the heap DSPy and litellm leave took a third of a second, which the run waited for at its end
    (`python -m bench.phase_cpu 32 20`). A call that raises exits as Python does, its traceback printed."""
    for signum in WORKER_IGNORES:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, WORKER_IGNORES)
    module, function = call.split(":")
    run = getattr(importlib.import_module(module), function)
    with frozen_heap():
        run(connection.Connection(fd))
    exit_child()


def exit_child() -> NoReturn:
    """End this `start_child` process now (code 0), its output flushed, without freeing what it built: a call
    that holds much (the near-duplicate index of a run's samples) ends so rather than return, which frees it first
    (15 to 30 ms more before the process is gone, at 640 samples: a time stamp patched around
    `IndexProcess.close`, issue 29's ninth pass)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@contextmanager
def _blocked(signals: frozenset) -> Iterator[None]:
    """Block `signals` in this thread for the duration (a process started meanwhile starts with them blocked)."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
