"""Stopping a run cleanly: a first stop signal (Ctrl-C, SIGTERM, SIGHUP) or the caller's own reason ends it after
what is in flight; a second signal stops it at once."""

import logging
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from datagen.util import Stopped, handling_stop_signals, signal_label

log = logging.getLogger(__name__)


class Interrupt:
    """A stop signal during a run (Ctrl-C, SIGTERM, SIGHUP; see datagen.util.signals), as their handler: the first
    starts no more chunks and lets those that have sent a request finish (they are paid for), the others given
    back by the runner it tells (`calling`); a second stops at once with KeyboardInterrupt (`Stopped`, naming the
    signal)."""

    def __init__(self):
        self.signum: int | None = None  # the first stop signal received; None: none yet
        self.forced = False
        self._finishing = False
        self._on_ending: list[Callable[[], None]] = []

    @property
    def requested(self) -> bool:
        """A stop signal was received."""
        return self.signum is not None

    @property
    def ending(self) -> bool:
        """No chunk starts any more: a stop signal was received, or `finish` was called."""
        return self.requested or self._finishing

    def finish(self) -> None:
        """Start no more chunks, for a reason of the caller's own (no signal), as after a first stop signal: the
        chunks in flight that have sent a request finish, and their outcomes come (they are paid for)."""
        if not self.ending:
            self._finishing = True
            self._ended()

    @property
    def label(self) -> str:
        """The first stop signal as messages name it ("Ctrl-C", "SIGTERM", "SIGHUP")."""
        return signal_label(self.signum if self.signum is not None else signal.SIGINT)

    def __call__(self, signum, frame) -> None:
        if self.requested:
            self.forced = True
            raise Stopped(signum)
        self.signum = signum
        if not self._finishing:
            self._ended()
        again = "Ctrl-C again" if signum == signal.SIGINT else f"{self.label} again (or Ctrl-C)"
        log.warning("stopping (%s): nothing new starts; what has been sent finishes and is kept (batch jobs stay "
                    "with the run); %s to stop at once", self.label, again)

    @contextmanager
    def handling(self) -> Iterator["Interrupt"]:
        """Handle the stop signals this way for the duration (in the main thread; elsewhere signals are left
        alone)."""
        with handling_stop_signals(self):
            yield self

    @contextmanager
    def calling(self, on_ending: Callable[[], None]) -> Iterator[None]:
        """Within: `on_ending()` is called once the run starts ending (at once if it has): in the signal handler
        (the main thread) for a first stop signal, in `finish`'s caller's thread for `finish`. It must be quick and
        must not raise (e.g. a runner giving back the chunks that have sent nothing yet)."""
        self._on_ending.append(on_ending)
        try:
            if self.ending:
                on_ending()
            yield
        finally:
            self._on_ending.remove(on_ending)

    def _ended(self) -> None:
        for on_ending in list(self._on_ending):
            on_ending()
