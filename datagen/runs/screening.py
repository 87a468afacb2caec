"""The samples' lexical near-duplicate index and their texts' units, kept during a run in a process of its own
(`IndexProcess`).

The export's screening finds the near-duplicate pairs of every sample (datagen.dataset.screening): a few ms a sample,
seconds a run, the longest part of the export at thousands of samples (8.5 s of a 5,120-sample run's 28 s,
`python -m bench.phase_cpu 256 20`). A `SampleIndex` gives the same pairs whatever order its samples come in, so it
can be filled as each sample is recorded, while the run waits on the model, and the export only looks the pairs up.

It runs in a spawned process, not in the run's own: filled from the thread that records the outcomes, it contended
for the GIL with the chunks on the event loop and cost two to three times its own CPU (the run's CPU went from 18 to
38 s to save 6.7 s of export, same command). In a process it takes a core the run leaves idle (a run is one core
at most: the GIL). A machine with one core keeps the pairs for the export, as before.

The process is a fresh interpreter (`datagen.runs.processes.start_child`), not multiprocessing's spawn, which would
run the caller's script again in it. It ignores the terminal's Ctrl-C and SIGHUP (the run decides what a stop
means), and exits when the run's end of its socket closes (the run ended, or died). The run never waits on it while
it goes: the samples go through a thread of their own. Should it die, fail, or stop working (no CPU for
STUCK_SECONDS while an answer is awaited: stopped, deadlocked; it is then ended), the run does its work itself,
with one warning: the dataset is the same.

It also reads each sample's units and 13-grams as it indexes it, and the chunks' units once their groups are found
(datagen.dataset.quality.text_units), and measures the samples' contamination and diversity for the export from
them (`SampleIndex.screened`): at 640 samples 34 ms there, against 88 ms from nothing (`python -m
bench.screen_cost`).

The process also finds the near-duplicate groups of the run's chunks that its held-out split is drawn with
(`SplitDraw`): 0.19 s of the run's own CPU before its first call at 1,280 chunks, 0.1 s at 640 (`python -m
bench.phase_cpu 64 20`), and the same share of every larger run, taken off its start.
"""

import logging
import queue
import threading
import time
from collections.abc import Iterable, Sequence
from functools import partial

import numpy as np
import psutil

from datagen.dataset.quality import Pair
from datagen.dataset.quality.near_duplicates import LEXICAL
from datagen.dataset.screening import Protection, SampleIndex
from datagen.dataset.splits import draw_splits, near_duplicate_groups, reserve_rule
from datagen.runs.processes import exit_child, queued, start_child
from datagen.samples import Sample
from datagen.store import RunStore
from datagen.store.quality import SampleKey
from datagen.workspace import SplitSettings

log = logging.getLogger(__name__)

# What the process adds to its nice value: its work can wait, the run's cannot. At nice 0 it took CPU from the run on
# two cores (the model's server beside them), importing and grouping the chunks while the run sent its first
# requests: at 256 x 200 ms the first 256 went out over 0.67-0.71 s at nice 0, 0.50-0.56 s at 10 (`python -m
# bench.arrivals 256 0.2`, alternated; bench/README.md, issue 29's ninth pass).
NICENESS = 10
# How long the process may take to exit once told to, before it is killed (seconds).
EXIT_SECONDS = 10
# How often a wait for the process's answer checks that it is still there (seconds).
_POLL_SECONDS = 0.5
# How long a wait for its answer sees the process spend no CPU before taking it for stuck (stopped by SIGSTOP or a
# debugger, deadlocked), ending it and finding the answer here (seconds): a process working through a backlog on a
# loaded machine still gets some CPU in that time.
STUCK_SECONDS = 30.0
# How long the samples recorded after one are gathered before they are sent together (seconds): the process then
# wakes once for many. One a message, it spent 1.6 ms of CPU a sample (its working set cold at each wake); 32 a
# message, 1.2 (bench/README.md, issue 29's fifth pass). Those gathered when the run ends are indexed while the
# export waits: at 0.2 s it waited 13-15 ms for the pairs, at 0.05 s 5-9 ms (`WARM=1 PROFILE=40 python -m
# bench.phase_cpu 32 20`, `pairs` in the export's profile, alternated; issue 29's ninth pass).
GATHER_SECONDS = 0.05


class IndexProcess:
    """A `SampleIndex` in a process of its own, with its `add` and `pairs`; a context manager that ends the process
    (at once when leaving on an exception, a Ctrl-C among them).

    `add` hands the samples' texts to a thread that sends them, and returns at once; `pairs` asks for one field's
    pairs and waits for them while the process is there. Once it is gone (it died, or failed), `pairs` finds them in
    this process from the texts it is given, and says so once.

    Raises:
        OSError: the process cannot be started.
    """

    def __init__(self):
        self._process, self._conn = start_child("datagen.runs.screening:serve", niceness=NICENESS)
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()  # messages to send; None: the last
        # Set once a message waits that is not an add, or the run is over (`flush`): samples are no longer gathered.
        self._hurry = threading.Event()
        self._sender = threading.Thread(target=self._send, name="datagen-screening-send", daemon=True)
        self._sender.start()
        self._lost: str | None = None
        self._grouping = False  # asked for groups (`group`), not yet read
        self._said = False  # that the pairs are found here, once

    @property
    def pid(self) -> int:
        """The process's id."""
        return self._process.pid

    def __enter__(self) -> "IndexProcess":
        return self

    def __exit__(self, kind, *exc) -> None:
        self.close(wait=kind is None)

    def add(self, samples: Iterable[Sample]) -> None:
        """Index each of `samples`' fields in the process (nothing once it is gone)."""
        samples = list(samples)
        if samples and self._sender.is_alive():  # else the process is gone: nothing would send them
            self._outbox.put(("add", samples))

    def flush(self) -> None:
        """Send the samples gathered so far at once, and each one added later as it comes: the run has recorded its
        last outcome, and the process indexes them while the export reads the store, not once it asks for pairs
        (the first pairs waited 6-10 ms at 640 samples, then 1-2: issue 29's tenth pass)."""
        self._hurry.set()

    def group(self, texts: Sequence[str]) -> None:
        """Have the process find the near-duplicate groups of `texts` (datagen.dataset.splits.near_duplicate_groups),
        their answer read by `groups`; asked once, before any `pairs`."""
        self._outbox.put(("groups", list(texts)))
        self._grouping = True

    def grouped(self) -> bool:
        """Whether `groups` answers without waiting: the process's groups came, or it is gone."""
        try:
            return self._lost is not None or self._conn.poll(0) or not self._process.is_alive()
        except OSError:  # its end closed: `groups` finds out why
            return True

    def groups(self, texts: Sequence[str]) -> list[int]:
        """The near-duplicate groups of `texts`, the texts given to `group`: the process's answer, waited for; found
        here from `texts` when it is gone, or failed at them (said in a warning)."""
        found = self._answer(loses=False) if self._grouping and self._lost is None else None
        self._grouping = False
        if isinstance(found, list):
            return found
        if self._lost is not None:
            self._say_lost()
        else:
            log.warning("the near-duplicate index's process failed at the held-out split's groups (%s): they are "
                        "found here", found)
        return near_duplicate_groups(texts)

    def pairs(self, name: str, texts: Sequence[str]) -> list[Pair]:
        """The lexical pairs of `texts`, field `name`'s texts in the run's order (`SampleIndex.pairs`)."""
        if self._grouping and self._lost is None:  # its groups are answered first: read past them
            self._answer(loses=False)
        self._grouping = False
        if self._lost is None:
            self._outbox.put(("pairs", (name, list(texts))))
            self._hurry.set()
            found = self._answer()
            if found is not None:
                return [Pair(first, second, similarity, LEXICAL) for first, second, similarity in found]
        self._say_lost()
        return SampleIndex().pairs(name, texts)

    def screened(self, keys: list[SampleKey], texts: dict[str, list[str]], chunks: list[str], protection: Protection,
                 n: int, embeddings: dict[str, np.ndarray | None] | None = None,
                 source_embeddings: np.ndarray | None = None) -> tuple[list[tuple], dict]:
        """`SampleIndex.screened` in the process, from the units it read as the samples came (and the chunks, with
        their groups); measured here, from the texts given, once it is gone or failed."""
        if self._lost is None:
            self._outbox.put(("screened", (keys, texts, chunks, protection, n, embeddings, source_embeddings)))
            self._hurry.set()
            found = self._answer()
            if found is not None:
                return found
        self._say_lost()
        return SampleIndex().screened(keys, texts, chunks, protection, n, embeddings, source_embeddings)

    def _say_lost(self) -> None:
        """Warn, once, that the process is lost and its work (the split's groups, the pairs, the contamination and
        diversity) is done in the run's own process."""
        if not self._said:
            log.warning("the near-duplicate index's process %s: the run does its work itself (the same results)",
                        self._lost)
            self._said = True

    def _send(self) -> None:
        while True:
            first = self._outbox.get()
            if _is_add(first):
                self._hurry.wait(GATHER_SECONDS)
            for message in _merged([first, *queued(self._outbox)]):
                try:
                    self._conn.send(message)
                except OSError:  # gone: `pairs` finds out why
                    return
                if message is None:
                    return

    def _answer(self, loses: bool = True):
        """The process's answer, or None (`_lost` then says why) once it is gone or (`loses`) said it failed; a
        failure said when not `loses` is the answer, a string."""
        progress = None  # read once an answer is slow to come (psutil's first read of a process: 0.5 ms)
        try:
            while not self._conn.poll(_POLL_SECONDS):
                if not self._process.is_alive():  # gone without a word
                    return self._gone()
                progress = progress or _Progress(self.pid)
                if progress.stalled(STUCK_SECONDS):
                    self._process.kill()
                    self._lost = f"spent no CPU for {STUCK_SECONDS:g} s (stopped, or stuck), and was ended"
                    return None
            answer = self._conn.recv()
        except (OSError, EOFError):  # its end closed: it died
            return self._gone()
        if isinstance(answer, str) and loses:
            self._lost = f"failed ({answer})"
            return None
        return answer

    def _gone(self) -> None:
        self._process.join(_POLL_SECONDS)
        code = self._process.exitcode
        self._lost = ("closed its end of the socket" if code is None else
                      f"was killed (signal {-code})" if code < 0 else f"exited (code {code})")

    def close(self, wait: bool = True) -> None:
        """End the process: told to, then killed after EXIT_SECONDS (at once without `wait`). With `wait`, a thread
        of its own waits for it to exit, and this returns at once: the run does not wait for the kernel to free the
        process's memory (12-16 ms of a 640-sample run's end, its index and imports some 140 MB: a time stamp
        patched around `close`, issue 29's tenth pass)."""
        self._outbox.put(None)
        self._hurry.set()
        if wait:
            threading.Thread(target=self._end, args=(EXIT_SECONDS,), name="datagen-screening-end",
                             daemon=True).start()
        else:
            self._end(0)

    def _end(self, seconds: float) -> None:
        """Wait `seconds` at most for the process to exit, kill it if it has not, and let go of its socket."""
        if seconds:
            self._wait_for_exit(seconds)
        self._process.join(seconds)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._sender.join()  # done: its last message sent, or its socket's other end gone with the process
        self._conn.close()

    def _wait_for_exit(self, seconds: float) -> None:
        """Until the process's end of the socket closes as it exits (answers nobody asked for read past), `seconds`
        at most. The socket wakes this at once; `join` alone polls, sleeping twice as long each time up to 50 ms,
        and overshot the exit by up to as much."""
        deadline = time.monotonic() + seconds
        try:
            while self._conn.poll(max(0.0, deadline - time.monotonic())):
                self._conn.recv()
        except (EOFError, OSError):  # it exited: its end closed
            pass


class _Progress:
    """Whether a process spends CPU, checked as one waits for it (its user and system CPU time, by psutil)."""

    def __init__(self, pid: int):
        self._pid, self._cpu, self._since = pid, self._seconds(pid), time.monotonic()

    def stalled(self, seconds: float) -> bool:
        """Whether its CPU time has not moved for `seconds` (False once it cannot be read: the process is gone)."""
        cpu = self._seconds(self._pid)
        if cpu is None or cpu != self._cpu:
            self._cpu, self._since = cpu, time.monotonic()
            return False
        return time.monotonic() - self._since >= seconds

    @staticmethod
    def _seconds(pid: int) -> float | None:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            return None
        return times.user + times.system


def _merged(messages: list) -> list:
    """`messages` in order, each run of adds one add of all their samples."""
    merged = []
    for message in messages:
        if merged and _is_add(message) and _is_add(merged[-1]):
            merged[-1] = ("add", merged[-1][1] + message[1])
        else:
            merged.append(message)
    return merged


def _is_add(message) -> bool:
    """Whether an outbox message is samples to add (not a request for pairs, nor the last: None)."""
    return message is not None and message[0] == "add"


def _groups(texts: Sequence[str]) -> list[int] | str:
    """`near_duplicate_groups(texts)`, or why not in one line: the run then finds them itself."""
    try:
        return near_duplicate_groups(texts)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def serve(conn) -> None:
    """The process (`start_child`): a `SampleIndex` fed ("add", [samples]) and asked ("pairs", (field, texts)) on
    `conn`, answering the pairs as (first, second, similarity) or, failing, why in one line; asked ("screened",
    `SampleIndex.screened`'s arguments), answering its contamination rows and diversity or why not; and asked
    ("groups", texts), answering their near-duplicate groups or why not; until told to stop (None: it exits at
    once, `exit_child`) or its run's end closes."""
    index, failed = SampleIndex(), None
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            exit_child()
        kind, payload = message
        try:
            if failed is None and kind == "add":
                index.add(payload)
            elif kind == "pairs":
                conn.send(failed or [(p.first, p.second, p.similarity) for p in index.pairs(*payload)])
            elif kind == "screened":
                conn.send(failed or index.screened(*payload))
            elif kind == "groups":
                conn.send(_groups(payload))
                index.read(payload)  # the held-out chunks' units, and the diversity's source, read while the run goes
        except Exception as exc:  # said to the run when it asks for pairs: it then finds them itself
            failed = f"{type(exc).__name__}: {exc}"
            if kind in ("pairs", "screened"):
                conn.send(failed)


class SplitDraw:
    """The run's held-out split (datagen.dataset.splits), drawn with the near-duplicate groups of its chunks found in
    the index's process while the run goes, and recorded as soon as they come (`poll`, between outcomes) or at
    `finish`. Only a fresh run's draw waits so (`reserve_rule`: its rule is recorded at once, so that an export of
    the run killed before its draw draws by it); a redraw, or a run without the process, draws here at once. A run
    that ends on an error (or a second Ctrl-C) before its split is recorded has it drawn when resumed.

    Args:
        store, rule, seen, force: as `draw_splits` takes them.
        texts: `split_texts` of the same: the texts to group; None: nothing to draw.
        index: the run's index process; None: none.
    """

    def __init__(self, store: RunStore, rule: SplitSettings, seen: Sequence[str], force: bool,
                 texts: Sequence[str] | None, index: IndexProcess | None):
        self._draw = partial(draw_splits, store, rule, seen, force=force)
        self._texts, self._index = texts, index
        if texts is None:
            return
        if index is not None and reserve_rule(store, rule):
            index.group(texts)
        else:
            self._finish(None)

    def poll(self) -> None:
        """Record the split if its groups have come."""
        if self._texts is not None and self._index.grouped():
            self.finish()

    def finish(self) -> None:
        """Record the split now (nothing when recorded already): with the process's groups when they came, else
        found here, without waiting for a process that is slow (a run too short for it) or stuck."""
        if self._texts is not None:
            self._finish(self._index.groups(self._texts) if self._index.grouped() else None)

    def _finish(self, groups: Sequence[int] | None) -> None:
        self._draw(groups=groups)
        self._texts = None
