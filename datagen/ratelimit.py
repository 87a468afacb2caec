"""A requests-per-minute limit on LM calls, shared by every worker thread."""

import threading
import time

from dspy.utils.callback import BaseCallback


class RateLimiter(BaseCallback):
    """Starts LM calls at least 60/rpm seconds apart: never more than `rpm` in any minute, and no bursts
    that a provider's per-second limits would reject. A DSPy callback, so it sees every call, retries and
    the calls of multi-step programs included."""

    def __init__(self, rpm: float):
        if rpm <= 0:
            raise ValueError(f"rpm must be positive, got {rpm}")
        self.interval = 60.0 / rpm
        self._next_start = 0.0
        self._lock = threading.Lock()

    def on_lm_start(self, call_id, instance, inputs):
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_start)
            self._next_start = start + self.interval
        if start > now:
            time.sleep(start - now)
