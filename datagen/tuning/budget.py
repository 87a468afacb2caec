"""The caps of an optimize or search run: every LM request of every role counted, by role, as it is about to be
sent, and the one that would pass `max_calls` refused before it is sent; the tokens each request spent priced as
it comes back, and the request that would start once that spend has reached `max_cost` refused.

A request is each attempt DSPy makes (a retry is another); an answer from DSPy's cache sends none and is counted
apart, as a cache hit.
"""

import contextvars
import threading
from collections import Counter
from dataclasses import dataclass

import dspy

from datagen.lm import RequestWatcher
from datagen.runs import Price


class CallBudgetExhausted(BaseException):
    """Raised by the LM call that would pass --max-calls, or start once --max-cost is reached. A BaseException, so
    that no optimizer's `except Exception` (nor DSPy's callback guard) can swallow it and carry on spending."""


@dataclass
class _Sent:
    """The requests one LM call has sent so far, and the role it is counted under."""

    role: str
    requests: int = 0


class CallCounter(RequestWatcher):
    """Counts the LM requests sent by role (`by_role`; every attempt of a call, as the server sees them) and the
    calls answered from DSPy's cache (`cached`, which send none), and refuses the request that would pass `limit`
    before it is sent. With `max_cost` (US dollars) it prices the tokens each request spent as it comes back
    (`answered`, at the price its role was `add`ed with) into `spent`, and refuses the request that would start once
    `spent` has reached `max_cost`: requests already in flight finish, so a run passes the cap by at most one
    request per thread. A request of a model with no price adds its tokens to `unpriced_tokens`, not to `spent`.
    Active where it is among DSPy's callbacks (`dspy.context(callbacks=[...])`, which DSPy's
    own workers and datagen's run_chunks hand on). Each attempt DSPy 3.4 makes is one request sent (a cache hit
    makes none; one request per candidate where several completions are asked of a native engine, a single one
    with `n` on litellm's): `sending` is told of it outside the rate gate (datagen.lm.hooks), so that a request
    refused by the cap never waits on the gate."""

    def __init__(self, limit: int | None, max_cost: float | None = None):
        self.limit, self.max_cost = limit, max_cost
        self.spent = 0.0  # US dollars, the requests of priced models
        self.unpriced_tokens = 0
        self._prices: dict[str, Price | None] = {}  # by role
        self.by_role: Counter = Counter()
        self.cached: Counter = Counter()
        self._by_id: dict[int, str] = {}
        self._by_name: dict[str, str] = {}
        self._lock = threading.Lock()
        # The requests sent by the LM call running in this context: on_lm_start, the attempts and on_lm_end of
        # one call run in one context (thread, or task), so a call that ended having sent none was a cache hit.
        self._sent: contextvars.ContextVar[_Sent | None] = contextvars.ContextVar("datagen_sent", default=None)

    def add(self, role: str, lm: dspy.LM, price: Price | None = None) -> None:
        """Count `lm`'s calls as `role`'s; so too its copies' (SIMBA samples at other temperatures), unless
        another role's model has the same name (the first role added keeps it). `price`: what the role's tokens
        cost (the first one given for a role is kept); None: unknown."""
        self._by_id[id(lm)] = role
        self._prices.setdefault(role, price)
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
            if self.max_cost is not None and self.spent >= self.max_cost:
                raise CallBudgetExhausted(f"--max-cost ${self.max_cost:g} reached: ${self.spent:.4f} spent")
            self.by_role[self._role(lm)] += 1
        if (sent := self._sent.get()) is not None:
            sent.requests += 1

    def answered(self, lm, usage: dict) -> None:
        """A request of `lm` came back having spent `usage`: its tokens priced at its role's price, the prompt
        tokens read from the provider's prompt cache (`cached_tokens`) at its cached rate."""
        prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
        with self._lock:
            if (price := self._prices.get(self._role(lm))) is None:
                self.unpriced_tokens += prompt + completion
            else:
                self.spent += price.cost(prompt, completion, usage.get("cached_tokens", 0))
