"""The call cap of an optimize or search run: every LM request of every role counted, by role, as it is about to be
sent, and the one that would pass `max_calls` refused before it is sent.

A request is each attempt DSPy makes (a retry is another); an answer from DSPy's cache sends none and is counted
apart, as a cache hit.
"""

import contextvars
import threading
from collections import Counter
from dataclasses import dataclass

import dspy

from datagen.lm import RequestWatcher


class CallBudgetExhausted(BaseException):
    """Raised by the LM call that would pass --max-calls. A BaseException, so that no optimizer's
    `except Exception` (nor DSPy's callback guard) can swallow it and carry on spending."""


@dataclass
class _Sent:
    """The requests one LM call has sent so far, and the role it is counted under."""

    role: str
    requests: int = 0


class CallCounter(RequestWatcher):
    """Counts the LM requests sent by role (`by_role`; every attempt of a call, as the server sees them) and the
    calls answered from DSPy's cache (`cached`, which send none), and refuses the request that would pass `limit`
    before it is sent. Active where it is among DSPy's callbacks (`dspy.context(callbacks=[...])`, which DSPy's
    own workers and datagen's run_chunks hand on). Each attempt DSPy 3.4 makes is one request sent (a cache hit
    makes none; one request per candidate where several completions are asked of a native engine, a single one
    with `n` on litellm's): `sending` is told of it outside the rate gate (datagen.lm.hooks), so that a request
    refused by the cap never waits on the gate."""

    def __init__(self, limit: int | None):
        self.limit = limit
        self.by_role: Counter = Counter()
        self.cached: Counter = Counter()
        self._by_id: dict[int, str] = {}
        self._by_name: dict[str, str] = {}
        self._lock = threading.Lock()
        # The requests sent by the LM call running in this context: on_lm_start, the attempts and on_lm_end of
        # one call run in one context (thread, or task), so a call that ended having sent none was a cache hit.
        self._sent: contextvars.ContextVar[_Sent | None] = contextvars.ContextVar("datagen_sent", default=None)

    def add(self, role: str, lm: dspy.LM) -> None:
        """Count `lm`'s calls as `role`'s; so too its copies' (SIMBA samples at other temperatures), unless
        another role's model has the same name (the first role added keeps it)."""
        self._by_id[id(lm)] = role
        self._by_name.setdefault(lm.model, role)

    @property
    def total(self) -> int:
        return sum(self.by_role.values())

    def _role(self, lm) -> str:
        return self._by_id.get(id(lm)) or self._by_name.get(getattr(lm, "model", None), "other")

    def on_lm_start(self, call_id, instance, inputs):
        self._sent.set(_Sent(self._role(instance)))

    def on_lm_end(self, call_id, outputs, exception=None):
        sent = self._sent.get()
        if exception is None and sent is not None and not sent.requests:
            with self._lock:
                self.cached[sent.role] += 1

    def sending(self, lm) -> None:
        """One request of `lm` about to be sent: counted, or refused (CallBudgetExhausted) past the limit."""
        with self._lock:
            if self.limit is not None and self.total + 1 > self.limit:
                raise CallBudgetExhausted(f"--max-calls {self.limit} reached")
            self.by_role[self._role(lm)] += 1
        if (sent := self._sent.get()) is not None:
            sent.requests += 1
