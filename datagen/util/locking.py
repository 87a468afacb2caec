"""One writer at a time: an advisory lock on a lock file beside what is being written.

The lock is the operating system's (flock): it is released when its holder exits, however it exits (a crash,
SIGKILL), so a stale lock never has to be cleared by hand.
"""

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from datagen.errors import DatagenError
from datagen.util.disk import writing


@contextmanager
def exclusive(lock_file: Path, what: str, advice: str) -> Iterator[None]:
    """Hold `lock_file` for the duration, or refuse at once: "`what` is in use by process N; `advice`".

    Raises:
        DatagenError: another process holds the lock.
        DiskError: the lock file cannot be made or written (a full disk, a read-only one, no permission), so
            neither could what it guards.
    """
    with writing(lock_file):
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
            holder = f"process {pid}" if pid else "another process"
            raise DatagenError(f"{what} is in use by {holder}; {advice}") from None
        # The holder's pid, for the message above (only the lock decides; the pid is informative).
        with writing(lock_file):
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
