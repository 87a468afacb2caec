"""The signals that ask a command to stop, all treated as Ctrl-C is.

Ctrl-C sends SIGINT; service managers and schedulers send SIGTERM (`kill PID`, systemd, Docker, Kubernetes, Slurm,
each before a SIGKILL some seconds later); a closed terminal sends SIGHUP. Python turns only SIGINT into
KeyboardInterrupt and lets the other two end the process at once, losing what was in flight. datagen gives all
three the same meaning: a command stops as its first Ctrl-C stops it (generate lets the chunks that have sent a
request finish, `datagen view` shuts its server down), and exits with the shell's status for the signal, 128 + its
number.

A signal the process was started with ignored stays ignored: `nohup` ignores SIGHUP, and a shell ignores SIGINT
in the commands it puts in the background. After SIGHUP, what would have gone to the terminal (now gone) goes
nowhere, so that the command still finishes and exits as it should.
"""

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from datagen.errors import Interrupted

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def signal_label(signum: int) -> str:
    """How messages name a stop signal: "Ctrl-C" for SIGINT, else its name ("SIGTERM", "SIGHUP")."""
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


class Stopped(KeyboardInterrupt):
    """The KeyboardInterrupt a stop signal raises (as Python raises one for Ctrl-C), saying which signal it was.

    Args:
        signum: the signal's number (signal.SIGINT, SIGTERM or SIGHUP).
    """

    def __init__(self, signum: int):
        super().__init__(signal_label(signum))
        self.signum = signum


def stop_signal(exc: KeyboardInterrupt) -> int:
    """The signal behind a KeyboardInterrupt: a `Stopped`'s own, else SIGINT (Python's own, for Ctrl-C)."""
    return getattr(exc, "signum", signal.SIGINT)


def interrupted(exc: KeyboardInterrupt, advice: str = "") -> Interrupted:
    """The one-line error of a command a stop signal ended: "interrupted (SIGTERM): ADVICE", with the signal's exit
    status.

    Args:
        exc: the KeyboardInterrupt the signal raised (a `Stopped`, or Python's own for Ctrl-C).
        advice: what was kept and how to go on; default none.
    """
    signum = stop_signal(exc)
    return Interrupted(f"interrupted ({signal_label(signum)})" + (f": {advice}" if advice else ""), signum)


def _leave_hung_up_terminal() -> None:
    """Point stdout and stderr at /dev/null where they can no longer be written: after a terminal hangs up (what
    SIGHUP says), every write to it fails (EIO), which would fail the command's last words and its exit status with
    them. An empty write tells: it fails on a hung-up terminal and does nothing anywhere else."""
    with open(os.devnull, "wb") as null:
        for fd in (1, 2):
            try:
                os.write(fd, b"")
            except OSError:
                os.dup2(null.fileno(), fd)


def raise_stopped(signum: int, frame) -> None:
    """A signal handler raising `Stopped` in the main thread, as Python's own SIGINT handler raises
    KeyboardInterrupt."""
    raise Stopped(signum)


@contextmanager
def handling_stop_signals(handler: Callable[[int, object], None] = raise_stopped) -> Iterator[None]:
    """Handle every stop signal with `handler` for the duration, then restore the handlers there were.

    Only the main thread can set a signal handler: elsewhere this does nothing. A signal ignored when this is
    entered (SIG_IGN: `nohup`, a background job) stays ignored.

    Args:
        handler: a signal handler, `handler(signum, frame)`; default `raise_stopped`.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}

    def handle(signum: int, frame) -> None:
        if signum == signal.SIGHUP:
            _leave_hung_up_terminal()
        handler(signum, frame)

    for signum, before in previous.items():
        if before is not signal.SIG_IGN:
            signal.signal(signum, handle)
    try:
        yield
    finally:
        for signum, before in previous.items():
            if before is not None:  # None: a handler not set from Python, which cannot be restored
                signal.signal(signum, before)
