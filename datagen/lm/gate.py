"""Admission of LM requests: requests a minute, tokens a minute, and requests in flight adapted to 429s.

Every request a run sends (each attempt of each call, retries included, sync or async) passes a `CallGate` first:
DSPy 3.4 makes each attempt in `dspy.clients.execution._attempt` / `_aattempt`, which this module's wrappers wrap
(`gate_attempt`, installed by datagen.lm.hooks). The gate of a call is found by its LM's model name in the gates the
running chunk was given (`gated`), so a judge that is the task model shares the task model's limits, as it shares
the provider's. Before any gate, a `RequestWatcher` among DSPy's callbacks may count a request or refuse it, and a
retry waits at most MAX_RETRY_AFTER for a provider's Retry-After.

- `rpm`: starts at least 60/rpm seconds apart (never a burst a per-second limit would refuse).
- `tpm`: a token bucket of `tpm` tokens refilling over a minute (a generic cell rate algorithm, as in ATM traffic
  shaping and most API gateways): a request books its estimated tokens (the prompt's characters / 4, plus
  `max_tokens`, or as much again as the prompt without a cap) and the estimate is corrected by the usage the
  provider reports once it answers.
- Requests in flight: at most `limit`, which starts at `concurrency` and follows AIMD, TCP's congestion rule
  (Jacobson 1988): the first 429 of a burst (of requests sent before the cut) cuts it by a quarter and each
  further one of the burst takes one more away (the provider had no room for it either); each success adds
  1/limit (about one more request in flight per round of successes), up to `concurrency`, and PROBE_SLOWDOWN
  times slower within one request of the level the last cut came at.
- Who goes first: a free slot goes to the waiting request of the chunk that started first (its `Turn`'s rank, given
  by `gated`), then to the one that came first. A chunk's later calls waiting (its next step, a retry, its judge)
  go before the first calls of chunks that started after it, so that those do not hold it back.
"""

import asyncio
import contextvars
import functools
import heapq
import itertools
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import dspy
from dspy.utils.callback import BaseCallback

from datagen.lm.errors import causes
from datagen.store import cached_tokens

CUT = 0.75  # a 429 leaves this share of the requests in flight
# Near the level a 429 last cut (its "ceiling"), recovery is this many times slower: the provider's limit is about
# there, and each probe above it costs a refused request. Measured with the fake server admitting K at once
# (tests/test_ratelimit.py, tests/test_async_programs.py): with one cut per burst and full-speed recovery, 30-43
# requests were refused against 76 answered (K = 4, 24 chunks in flight) and 48 against 48 (K = 2, 12); with the
# burst counted and this slowdown, 13-18 and 13.
PROBE_SLOWDOWN = 8
CHARS_PER_TOKEN = 4  # an estimate good enough to book a budget: the provider's usage corrects it


@dataclass
class _Waiter:
    wake: Callable[[], None]
    handed: bool = False  # given a slot (which it must give back if it no longer wants it)


@dataclass(eq=False)
class Turn:
    """A chunk's place at the gates, for the requests made within `gated(gates, turn)`: a lower `rank` is let
    through a full gate first; `sent` counts those let through. A turn withdrawn (`withdraw`) before it sent any
    sends none: its requests waiting on an event loop, and any it makes there later, raise asyncio.CancelledError
    (a chunk given back unpaid when a run stops: datagen.runs.runner)."""

    rank: int = 0
    sent: int = 0
    withdrawn: bool = False
    _waiting: set[asyncio.Future] = field(default_factory=set, repr=False)  # its requests waiting for a slot

    def withdraw(self) -> None:
        """Withdraw the turn, unless it has sent a request or been handed a slot for one. Call it on the event loop
        its requests wait on."""
        if self.sent or any(future.done() for future in self._waiting):
            return
        self.withdrawn = True
        for future in self._waiting:
            future.cancel()


@dataclass
class Ticket:
    """One admitted request: when it started (on the gate's clock) and the tokens it booked."""

    started: float
    tokens: int


class CallGate:
    """Admits LM requests under `rpm` (requests a minute, None: no cap), `tpm` (tokens a minute, None: no cap) and
    at most `concurrency` in flight, fewer while the provider answers 429 (see the module's docstring). `clock`
    (seconds, monotonic) and the sleeps are the gate's own, so tests can give a clock that stands still.
    Thread-safe; sync callers block, async ones await. Raises ValueError for a non-positive limit."""

    def __init__(self, concurrency: int, rpm: float | None = None, tpm: float | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        for name, value in (("concurrency", concurrency), ("rpm", rpm), ("tpm", tpm)):
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        self.concurrency = concurrency
        self.limit = float(concurrency)  # requests in flight allowed now: AIMD between 1 and concurrency
        self.in_flight = 0
        self.rate_limited = 0  # 429s seen
        self.requests = 0
        self._interval = 60.0 / rpm if rpm else 0.0
        self._seconds_per_token = 60.0 / tpm if tpm else 0.0
        self._next_start = float("-inf")  # rpm: the earliest start of the next request
        self._tokens_due = float("-inf")  # tpm: when the tokens booked so far have all been refilled
        self._last_cut = float("-inf")
        self._ceiling = float("inf")  # the level the last 429 cut came at
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._waiters: list[tuple[int, int, _Waiter]] = []  # a heap: (rank, arrival, waiter)
        self._arrivals = itertools.count()

    def shared_rates(self, parts: int) -> tuple[float | None, float | None]:
        """This gate's rpm and tpm split into `parts` equal shares (None: no cap), for gates of `parts` processes
        that together keep to this one's limits (datagen.runs.cluster)."""
        rpm = 60.0 / self._interval / parts if self._interval else None
        tpm = 60.0 / self._seconds_per_token / parts if self._seconds_per_token else None
        return rpm, tpm

    @property
    def level(self) -> int:
        """The requests in flight the gate allows now (what a progress display shows)."""
        return int(self.limit)

    def book(self, tokens: int) -> float:
        """Book a request of about `tokens` tokens: the time on `clock` it may start (now, or later)."""
        with self._lock:
            now = self._clock()
            # The bucket holds a minute of tokens: a request may start once all that is booked, itself included,
            # is at most a minute's refill ahead.
            self._tokens_due = max(self._tokens_due, now) + tokens * self._seconds_per_token
            start = max(now, self._next_start, self._tokens_due - 60.0)
            self._next_start = start + self._interval
            self.requests += 1
        return start

    def _take(self, rank: int) -> bool:
        """Under the lock: a slot now, if one is free and nobody of this `rank` or before waits for one."""
        if self.in_flight < self.level and (not self._waiters or rank < self._waiters[0][0]):
            self.in_flight += 1
            return True
        return False

    def _queue(self, rank: int, wake: Callable[[], None]) -> tuple[int, int, _Waiter]:
        """Under the lock: a waiter of `rank` queued, woken by `wake` once handed a slot."""
        entry = (rank, next(self._arrivals), _Waiter(wake))
        heapq.heappush(self._waiters, entry)
        return entry

    def _admitted(self, turn: "Turn", tokens: int) -> Ticket:
        """A request of `turn` let through: counted as sent, its ticket taken now."""
        turn.sent += 1
        return Ticket(self._clock(), tokens)

    def _hand_on(self) -> None:
        """Under the lock: give free slots to the waiters, the lowest rank first, then the first come."""
        while self._waiters and self.in_flight < self.level:
            _, _, waiter = heapq.heappop(self._waiters)
            waiter.handed = True
            self.in_flight += 1
            waiter.wake()

    def enter(self, tokens: int) -> Ticket:
        """Wait (blocking this thread) for the request's turn and a slot; `exit` it when it is answered."""
        if (wait := self.book(tokens) - self._clock()) > 0:
            self._sleep(wait)
        turn = _turn.get()
        with self._lock:
            if self._take(turn.rank):
                return self._admitted(turn, tokens)
            if _on_event_loop():
                # A synchronous call inside an `aforward` (e.g. `self.step(...)` not awaited) blocks the loop whose
                # requests would free the slot it waits for: waiting would never end. It goes at once, one over the
                # limit at most: while it blocks, no other request of the loop starts.
                self.in_flight += 1
                return self._admitted(turn, tokens)
            woken = threading.Event()
            self._queue(turn.rank, woken.set)
        woken.wait()
        return self._admitted(turn, tokens)

    async def aenter(self, tokens: int) -> Ticket:
        """`enter` for a coroutine: waits without blocking the event loop. Raises asyncio.CancelledError for a request
        of a withdrawn `Turn`."""
        turn = _turn.get()
        if turn.withdrawn:
            raise asyncio.CancelledError
        if (wait := self.book(tokens) - self._clock()) > 0:
            await asyncio.sleep(wait)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            if self._take(turn.rank):
                return self._admitted(turn, tokens)
            entry = self._queue(turn.rank, lambda: loop.call_soon_threadsafe(_settle, future))
        turn._waiting.add(future)
        try:
            await future
        except asyncio.CancelledError:
            with self._lock:
                if entry[2].handed:  # given a slot it will not use: on to the next
                    self.in_flight -= 1
                    self._hand_on()
                else:
                    self._waiters.remove(entry)
                    heapq.heapify(self._waiters)
            raise
        finally:
            turn._waiting.discard(future)
        return self._admitted(turn, tokens)

    def exit(self, ticket: Ticket, used: int | None, rate_limited: bool) -> None:
        """The request is over: `used` tokens (the provider's count; None if unknown, keeping the estimate), and
        whether it was refused with a 429."""
        with self._lock:
            self.in_flight -= 1
            if used is not None:
                self._tokens_due += (used - ticket.tokens) * self._seconds_per_token
            if rate_limited:
                self.rate_limited += 1
                if ticket.started >= self._last_cut:  # the first 429 of a burst cuts by a quarter
                    self._ceiling = self.limit
                    self.limit = max(1.0, self.limit * CUT)
                    self._last_cut = self._clock()
                else:  # each further one of the burst was a request the provider had no room for either
                    self.limit = max(1.0, self.limit - 1)
            else:
                grow = 1.0 / self.limit
                if self.limit >= self._ceiling - 1:
                    grow /= PROBE_SLOWDOWN
                self.limit = min(float(self.concurrency), self.limit + grow)
            self._hand_on()


def _settle(future: asyncio.Future) -> None:
    """Wake a waiter's future (on its loop), unless it was cancelled meanwhile."""
    if not future.done():
        future.set_result(None)


def _on_event_loop() -> bool:
    """Whether this thread runs an asyncio event loop (a blocking wait here would stop it)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class ModelGates(Mapping):
    """A run's gates by model name (`lm.model`), a gate of `concurrency` made for a model first met: a program's own
    second LM (`dspy.context(lm=...)`), an evaluation's judge. Every model a run calls then has at most
    `concurrency` requests in flight, whatever the chunks in flight (datagen.runs.runner.LOOKAHEAD)."""

    def __init__(self, gates: Mapping[str, CallGate], concurrency: int):
        self._gates, self._concurrency = dict(gates), concurrency
        self._lock = threading.Lock()

    def __getitem__(self, model: str) -> CallGate:
        if model is None:  # an LM without a model name: nothing to count its requests by
            raise KeyError(model)
        gate = self._gates.get(model)  # every request asks: no lock once the model has its gate
        if gate is None:
            with self._lock:
                gate = self._gates.setdefault(model, CallGate(self._concurrency))
        return gate

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._gates))

    def __len__(self) -> int:
        return len(self._gates)


_gates: contextvars.ContextVar[Mapping[str, CallGate]] = contextvars.ContextVar("datagen_gates", default={})
_turn: contextvars.ContextVar[Turn] = contextvars.ContextVar("datagen_turn", default=Turn())


@contextmanager
def gated(gates: Mapping[str, CallGate], turn: Turn | None = None) -> Iterator[None]:
    """Requests made within (in this thread or task, and in the threads and tasks it starts) pass `gates[model]`,
    `model` being the LM's model name as DSPy knows it (`lm.model`); a model `gates` lacks passes freely (a
    `ModelGates` has one for every model).

    Args:
        gates: {model name: CallGate}.
        turn: the requests' place at a full gate, and the count of what they did (a chunk's own, ranked in the order
            the chunks started). None: a turn of rank 0 of their own, first come first served.
    """
    tokens = _gates.set(gates), _turn.set(turn or Turn())
    try:
        yield
    finally:
        _gates.reset(tokens[0])
        _turn.reset(tokens[1])


def estimate_tokens(lm, call) -> int:
    """Tokens a request will cost, before it is sent: its messages' characters / CHARS_PER_TOKEN, plus the
    answer's cap (`max_tokens`), or as much again as the prompt without one (a rewrite is about as long as its
    input)."""
    if call.messages is None:
        text = call.prompt or ""
    else:
        text = "".join(str(m.get("content", "")) for m in call.messages)
    prompt = len(text) // CHARS_PER_TOKEN + 1
    kwargs = getattr(lm, "kwargs", {})
    return prompt + (kwargs.get("max_tokens") or kwargs.get("max_completion_tokens") or prompt)


def _used(results: list, before: int) -> int | None:
    usage = results[-1].usage if len(results) > before else None
    if not usage:
        return None
    return (usage.get("prompt_tokens") or 0) + (usage.get("completion_tokens") or 0)


def is_rate_limit(exc: BaseException) -> bool:
    """Whether `exc`, or an error under it, is a provider's 429 (litellm's, lm15's or DSPy's wrapping of them)."""
    return any(getattr(cause, "status_code", None) == 429 or "RateLimit" in type(cause).__name__
               for cause in causes(exc))


def gate_attempt(attempt):
    """DSPy's `_attempt`, admitted first by the gate of its model in the running chunk's gates (`gated`); the
    gate learns how it ended (the tokens used, a 429).

    Args:
        attempt: what the wrapper calls (`dspy.clients.execution._attempt`, as wrapped by the deadline).

    Returns:
        The wrapper, with `attempt`'s signature. An LM with no gate is passed straight through.
    """
    def attempt_gated(lm, call, backend, request, provider, state, results):
        gate = _gates.get().get(getattr(lm, "model", None))
        if gate is None:
            return attempt(lm, call, backend, request, provider, state, results)
        ticket, before = gate.enter(estimate_tokens(lm, call)), len(results)
        limited = False
        try:
            return attempt(lm, call, backend, request, provider, state, results)
        except Exception as exc:
            limited = is_rate_limit(exc)
            raise
        finally:
            gate.exit(ticket, _used(results, before), limited)
    return attempt_gated


def gate_aattempt(aattempt):
    """`gate_attempt` for DSPy's `_aattempt`: the gate is awaited without blocking the event loop.

    Args:
        aattempt: what the wrapper awaits (`dspy.clients.execution._aattempt`, as wrapped by the deadline).

    Returns:
        The wrapper, a coroutine function with `aattempt`'s signature.
    """
    async def aattempt_gated(lm, call, backend, request, provider, state, results):
        gate = _gates.get().get(getattr(lm, "model", None))
        if gate is None:
            return await aattempt(lm, call, backend, request, provider, state, results)
        ticket, before = await gate.aenter(estimate_tokens(lm, call)), len(results)
        limited = False
        try:
            return await aattempt(lm, call, backend, request, provider, state, results)
        except Exception as exc:
            limited = is_rate_limit(exc)
            raise
        finally:
            gate.exit(ticket, _used(results, before), limited)
    return aattempt_gated


class RequestWatcher(BaseCallback):
    """A DSPy callback told of each LM request about to be sent (each attempt of a call, a retry too; an answer
    from DSPy's cache sends none), before any gate or server: `sending` may count it, or refuse it by raising.
    Active where it is among DSPy's callbacks (`dspy.context(callbacks=[...])`, which DSPy's own workers and
    datagen's run_chunks hand on). Subclasses say what `sending` does (e.g. datagen.tuning.budget.CallCounter)."""

    def sending(self, lm) -> None:
        """One request of `lm` is about to be sent; raise to refuse it."""
        raise NotImplementedError

    def answered(self, lm, usage: dict) -> None:
        """A request of `lm` told of by `sending` came back (answered, or failed after the server reported what it
        spent), with the tokens it spent as the provider reported them ({"prompt_tokens": int,
        "completion_tokens": int, ...}; {} when it reported none). Once per request, in the thread that sent it.
        Does nothing unless a subclass says otherwise."""


def _watchers() -> list[RequestWatcher]:
    return [c for c in dspy.settings.get("callbacks", []) if isinstance(c, RequestWatcher)]


def watch_attempt(attempt):
    """DSPy's `_attempt`, shown first to the RequestWatchers among DSPy's callbacks.

    Args:
        attempt: what the wrapper calls (`dspy.clients.execution._attempt`, as wrapped by the server spread).

    Returns:
        The wrapper, with `attempt`'s signature.
    """
    def attempt_watched(lm, call, backend, request, provider, state, results):
        watchers = _watchers()
        for watcher in watchers:
            watcher.sending(lm)
        sent = len(results)  # DSPy appends what each attempt spent (`results`), whether it ends well or not
        try:
            return attempt(lm, call, backend, request, provider, state, results)
        finally:
            _tell_answered(watchers, lm, results[sent:])
    return attempt_watched


def watch_aattempt(aattempt):
    """`watch_attempt` for DSPy's `_aattempt`.

    Args:
        aattempt: what the wrapper awaits.

    Returns:
        The wrapper, a coroutine function with `aattempt`'s signature.
    """
    async def aattempt_watched(lm, call, backend, request, provider, state, results):
        watchers = _watchers()
        for watcher in watchers:
            watcher.sending(lm)
        sent = len(results)
        try:
            return await aattempt(lm, call, backend, request, provider, state, results)
        finally:
            _tell_answered(watchers, lm, results[sent:])
    return aattempt_watched


def _tell_answered(watchers: list[RequestWatcher], lm, spent: list) -> None:
    """Each watcher told what one request spent: the usage of the results its attempt added ({"prompt_tokens",
    "completion_tokens", "cached_tokens"}: the prompt tokens the provider read from its prompt cache; none: {})."""
    if not watchers:  # every attempt of a generate run passes here, with none to tell
        return
    usage: dict = {}
    for result in spent:
        counts = getattr(result, "usage", None) or {}
        for key in ("prompt_tokens", "completion_tokens"):
            usage[key] = usage.get(key, 0) + int(counts.get(key) or 0)
        usage["cached_tokens"] = usage.get("cached_tokens", 0) + cached_tokens(counts)
    for watcher in watchers:
        watcher.answered(lm, usage)


# The longest Retry-After a retry waits for: DSPy's own backoff cap. DSPy waits for any Retry-After, however long
# (a spent daily quota says 3600+), holding the chunk, and with every chunk the run, for that long.
MAX_RETRY_AFTER = 60.0


def cap_retry_wait(delay):
    """DSPy's wait before a retry, except that a wait over MAX_RETRY_AFTER re-raises the error: the chunk fails
    now, as a rate limit, and a resume retries it.

    Args:
        delay: `dspy.clients.execution._delay(exc, attempt)`, which DSPy calls in its `except` block.

    Returns:
        The wrapper, with `delay`'s signature.
    """
    def delay_or_give_up(exc, attempt):
        wait = delay(exc, attempt)
        if wait > MAX_RETRY_AFTER:
            raise exc
        return wait
    return delay_or_give_up


# DSPy 3.4 builds its native engine's router with lm15's default pool of 100 connections, a hidden cap on the
# requests in flight under the gate's: 256 chunks in flight at 2 s a call ran at 48.6 samples/s = 100 / 2 s
# (bench/throughput_bench.py). Connections are opened as needed, so a high bound costs nothing; the gate bounds
# what is in flight.
MAX_CONNECTIONS = 4096


def widen_connection_pool(router_config):
    """DSPy's `RouterConfig` (lm15's settings of its native engine) with MAX_CONNECTIONS connections a pool.

    Args:
        router_config: `dspy.clients.execution.RouterConfig`.

    Returns:
        `router_config` with `max_connections` given.
    """
    return functools.partial(router_config, max_connections=MAX_CONNECTIONS)
