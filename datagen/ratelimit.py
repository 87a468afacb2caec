"""A requests-per-minute limit on LM calls, shared by every worker thread."""

import threading
import time
from collections.abc import Callable

from dspy.utils.callback import BaseCallback


class RateLimiter(BaseCallback):
    """Starts LM calls at least 60/rpm seconds apart: never more than `rpm` in any minute, and no bursts
    that a provider's per-second limits would reject. A DSPy callback, so it sees every call, retries and
    the calls of multi-step programs included. `clock` and `sleep` are the time it keeps (tests give their own)."""

    def __init__(self, rpm: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if rpm <= 0:
            raise ValueError(f"rpm must be positive, got {rpm}")
        self.interval = 60.0 / rpm
        self._clock, self._sleep = clock, sleep
        self._next_start = float("-inf")
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Book the next call's start on `clock`: now, or `interval` after the start booked before, if later."""
        with self._lock:
            start = max(self._clock(), self._next_start)
            self._next_start = start + self.interval
        return start

    def on_lm_start(self, call_id, instance, inputs):
        if (wait := self.reserve() - self._clock()) > 0:
            self._sleep(wait)
