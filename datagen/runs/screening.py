"""The samples' lexical near-duplicate index, kept during a run in a process of its own (`IndexProcess`).

The export's screening finds the near-duplicate pairs of every sample (datagen.dataset.screening): a few ms a sample,
seconds a run, the longest part of the export at thousands of samples (8.5 s of a 5,120-sample run's 28 s,
`python -m bench.phase_cpu 256 20`). A `SampleIndex` gives the same pairs whatever order its samples come in, so it
can be filled as each sample is recorded, while the run waits on the model, and the export only looks the pairs up.

It runs in a spawned process, not in the run's own: filled from the thread that records the outcomes, it contended
for the GIL with the chunks on the event loop and cost two to three times its own CPU (the run's CPU went from 18 to
38 s to save 6.7 s of export, same command). In a process it takes a core the run leaves idle (a run is one core
at most: the GIL). A machine with one core keeps the pairs for the export, as before.

The process ignores the terminal's Ctrl-C and SIGHUP (the run decides what a stop means), and exits when the run's
end of its pipe closes (the run ended, or died). Should it die or fail, the export finds the pairs itself, with a
warning: the dataset is the same.
"""

import logging
from collections.abc import Iterable, Sequence

from datagen.dataset.quality import Pair
from datagen.dataset.quality.near_duplicates import LEXICAL
from datagen.dataset.screening import FIELDS, SampleIndex
from datagen.runs.processes import ignore_terminal_signals, start_ignoring_terminal
from datagen.samples import Sample
from datagen.util import frozen_heap

log = logging.getLogger(__name__)

# How long the process may take to exit once told to, before it is killed (seconds).
EXIT_SECONDS = 10


class IndexProcess:
    """A `SampleIndex` in a spawned process, with its `add` and `pairs`; a context manager that ends the process.

    `add` sends the samples' texts down a pipe and returns (the pipe's buffer full, it waits for the process to
    catch up); `pairs` asks for one field's pairs and waits for them. Once the process is gone (killed, or it
    failed), `pairs` finds them in this process from the texts it is given.

    Raises:
        OSError: the process cannot be started.
    """

    def __init__(self):
        from multiprocessing import get_context  # spawned, not forked: the run has threads

        context = get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=serve, args=(child,), daemon=True, name="datagen-screening")
        start_ignoring_terminal(self._process)  # the terminal's Ctrl-C reaches the whole process group
        child.close()  # the process's end: when it dies, `recv` here raises EOFError
        self._lost: str | None = None

    def __enter__(self) -> "IndexProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def add(self, samples: Iterable[Sample]) -> None:
        """Index each of `samples`' fields in the process (nothing once it is gone)."""
        texts = [tuple(getattr(sample, name) for name in FIELDS) for sample in samples]
        if texts and self._lost is None:
            self._ask(("add", texts), reply=False)

    def pairs(self, name: str, texts: Sequence[str]) -> list[Pair]:
        """The lexical pairs of `texts`, field `name`'s texts in the run's order (`SampleIndex.pairs`)."""
        if self._lost is None:
            found = self._ask(("pairs", (name, list(texts))), reply=True)
            if found is not None:
                return [Pair(first, second, similarity, LEXICAL) for first, second, similarity in found]
        log.warning("the near-duplicate index's process is gone (%s): the export finds the pairs itself", self._lost)
        index = SampleIndex()
        return index.pairs(name, texts)

    def _ask(self, message: tuple, reply: bool):
        try:
            self._conn.send(message)
            if not reply:
                return None
            answer = self._conn.recv()
        except (OSError, EOFError) as exc:  # the process died: a broken pipe, or its end closed
            self._lost = f"{type(exc).__name__}, exit code {self._process.exitcode}"
            return None
        if isinstance(answer, str):  # it failed: why
            self._lost = answer
            return None
        return answer

    def close(self) -> None:
        """End the process: told to, then killed after EXIT_SECONDS."""
        try:
            self._conn.send(None)
        except OSError:
            pass
        self._conn.close()
        self._process.join(EXIT_SECONDS)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


def serve(conn) -> None:
    """The process: a `SampleIndex` fed ("add", [texts of each field, a sample at a time]) and asked ("pairs",
    (field, texts)) on `conn`, answering the pairs as (first, second, similarity) or, failing, why in one line;
    until told to stop (None) or its run's end closes."""
    ignore_terminal_signals()
    with frozen_heap():  # the imports' objects out of the collector's walks (datagen.util.heap)
        _answer(conn)


def _answer(conn) -> None:
    index, failed = SampleIndex(), None
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        kind, payload = message
        try:
            if failed is None and kind == "add":
                index.add(Sample(*texts) for texts in payload)
            elif kind == "pairs":
                conn.send(failed or [(p.first, p.second, p.similarity) for p in index.pairs(*payload)])
        except Exception as exc:  # said to the run when it asks for pairs: it then finds them itself
            failed = f"{type(exc).__name__}: {exc}"
            if kind == "pairs":
                conn.send(failed)
