"""Several servers for one model: a role whose `api_base` is a list spreads its LM requests over them.

Each request goes to the least loaded healthy server (requests in flight in this process; ties in turn). A request
that fails for the server's sake (no connection, a reset, a timeout, a 5xx) is sent at once to another server not
yet tried for it, and the failing server is taken out for `cooldown` seconds; after that one request is let
through as a trial (the others still avoid it): an answer puts it back, a failure takes it out again. With every
server out, the one due back first is tried all the same (a role never waits on its own bookkeeping). So a server
going down mid-run costs no sample while another answers, and one coming back gets its share again.

How: DSPy 3.4 makes each attempt of an LM call in `dspy.clients.execution._attempt` / `_aattempt`, with the engine
it chose for the LM's `api_base` (DSPy's own retries go through it again). datagen wraps both (`spread_attempt`,
installed by datagen.lm.hooks), around the rate gate of datagen.lm.gate and the deadline of datagen.lm.deadline (so
each try on a server passes the gate and gets the whole timeout): for an LM built with several servers
(`lm._datagen_servers`, a `ServerSet`) the attempt is made
on the chosen server's engine instead, the one DSPy itself keeps for that `api_base` (its native engine and
connection pool, or litellm). An LM without servers passes straight through (one attribute lookup). The LM carries
only the URLs and settings, so it pickles (Ray actors); health and load are this process's own.

A request that goes through a LM call logged by a chunk's CallLog is recorded on that call (`Call.servers`: role,
api_base and error of each try), which the run store sums per server (`datagen status`).

litellm's Router was considered and is not used: DSPy 3.4's LM calls `litellm.completion` or its native lm15
engine, never a Router, so a Router would need a custom DSPy engine, which forgoes the native engine (a quarter of
litellm's client CPU a call), DSPy's provider-aware usage and pricing, and the per-call `api_base`/`timeout`;
and a Router does not pickle (Ray).
"""

import contextvars
import dataclasses
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from dspy.clients import execution

from datagen.lm.errors import causes
from datagen.lm.names import configured_name
from datagen.util.redaction import redact

log = logging.getLogger(__name__)

DEFAULT_COOLDOWN = 10.0  # seconds a failing server is left out before a trial request
ERROR_CHARS = 300  # of a try's error, as recorded


@dataclass(frozen=True)
class ServerSet:
    """The servers of one role's model (`urls`, at least two), and how long a failing one is left out (seconds).
    Attached to the dspy.LM as `_datagen_servers` (see `spread`); `role` is the role it was built for."""

    role: str
    urls: tuple[str, ...]
    cooldown: float = DEFAULT_COOLDOWN


def spread(lm, servers: ServerSet):
    """Make `lm` spread its requests over `servers` (its own `api_base` stays the first one's); returns `lm`."""
    lm._datagen_servers = servers
    return lm


def servers_of(lm) -> ServerSet | None:
    """The servers `lm` spreads its requests over; None for an LM with one `api_base` (or none)."""
    return getattr(lm, "_datagen_servers", None)


# --- health and load, per process ----------------------------------------------------------------------------


@dataclass
class Health:
    """One server's state on a `Board`: requests in flight to it, and whether (and why) it is out of service."""

    in_flight: int = 0
    out_until: float | None = None  # None: in service; else the clock time its cooldown ends
    trial: bool = False  # a trial request is in flight (after a cooldown): the others keep away meanwhile
    reason: str | None = None  # why it was taken out


class Board:
    """Every server's health and load in this process, by URL (two roles on the same server share them).

    The process has one, `BOARD`; a board of one's own (a test's) takes the `clock` it reads (seconds, monotonic).
    Thread-safe.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._lock = threading.Lock()
        self._health: dict[str, Health] = {}
        self._turn = itertools.count()

    def _of(self, url: str) -> Health:
        return self._health.setdefault(url, Health())

    def choose(self, urls: tuple[str, ...], tried: list[str]) -> tuple[str, bool] | None:
        """The server for a request's next try, and whether it is a trial (a server back from a cooldown, or one
        tried while out); None when every server left to try is out and this request has tried one already."""
        with self._lock:
            now = self.clock()
            first = next(self._turn) % len(urls)
            best = back = None
            due = []  # out, or on trial: (when it is back, url)
            for url in urls[first:] + urls[:first]:
                if url in tried:
                    continue
                health = self._of(url)
                if health.out_until is not None and (health.trial or health.out_until > now):
                    due.append((health.out_until, url))
                elif health.out_until is not None:
                    back = back or url  # its cooldown is over: it gets the next request, as a trial
                elif best is None or health.in_flight < self._health[best].in_flight:
                    best = url
            if back is not None:
                best, trial = back, True
            elif best is not None:
                trial = False
            elif tried or not due:
                return None
            else:
                best, trial = min(due)[1], True  # every server is out: the one due back first, all the same
            health = self._health[best]
            health.trial = health.trial or trial
            health.in_flight += 1
            return best, trial

    def release(self, url: str, trial: bool, ended: str | None, failure: str | None, cooldown: float) -> bool:
        """A try on `url` is over: `ended` "answered" (an answer or an error of the request's own: the server is
        alive), "failed" (`failure` says why: it is taken out for `cooldown` seconds) or None (cancelled: nothing
        learnt). True when this took a server in service out."""
        with self._lock:
            health = self._of(url)
            health.in_flight -= 1
            if trial:
                health.trial = False
            if ended == "failed":
                was_in = health.out_until is None
                health.out_until, health.reason = self.clock() + cooldown, failure
                return was_in
            if ended == "answered" and trial:
                health.out_until, health.reason = None, None
            return False

    def take_out(self, url: str, reason: str, cooldown: float) -> None:
        """Take `url` out of service for `cooldown` seconds, for `reason` (a server found down before a run)."""
        with self._lock:
            health = self._of(url)
            health.out_until, health.reason = self.clock() + cooldown, reason

    def state(self, url: str) -> Health:
        """A copy of `url`'s health now."""
        with self._lock:
            return dataclasses.replace(self._of(url))

    def reset(self) -> None:
        """Forget every server: all in service, nothing in flight."""
        with self._lock:
            self._health.clear()


BOARD = Board()


# --- the calls' record ---------------------------------------------------------------------------------------

# The `Call.servers` list of the LM call running in this thread or task (set by datagen.lm.calllog.CallLog): each try
# of the call appends (role, api_base, error or None).
tries: contextvars.ContextVar[list | None] = contextvars.ContextVar("datagen_server_tries", default=None)


def _record(servers: ServerSet, url: str, error: str | None) -> None:
    record = tries.get()
    if record is not None:
        record.append((servers.role, url, error))


def error_line(exc: BaseException, lm=None) -> str:
    """A try's error in one line, without API keys (the LM's own included), at most ERROR_CHARS characters."""
    text = redact(f"{type(exc).__name__}: {exc}".strip()) or type(exc).__name__
    key = getattr(lm, "kwargs", {}).get("api_key")
    if isinstance(key, str) and len(key) >= 8:
        text = text.replace(key, "[redacted]")
    line = text.splitlines()[0] if text.splitlines() else text
    return line[:ERROR_CHARS]


def server_failure(exc: BaseException) -> bool:
    """Whether `exc` (what an engine raised for one try, or an error under it) says the server failed, rather than
    the request: no connection, a reset, a timeout, a 5xx. A 429 is not one (the rate gate answers it)."""
    for cause in causes(exc):
        status = getattr(cause, "status", None) or getattr(cause, "status_code", None)
        if status == 429 or getattr(cause, "status_code", None) == 429 or "RateLimit" in type(cause).__name__:
            return False
        if isinstance(status, int) and status >= 500 and not isinstance(cause, OSError):
            return True
        if isinstance(cause, (ConnectionError, TimeoutError)):
            return True
        if any(word in type(cause).__name__ for word in ("Transport", "Timeout", "Connect", "ServerError",
                                                         "ServiceUnavailable", "InternalServer")):
            return True
    return False


# --- the wrap of DSPy's attempts -----------------------------------------------------------------------------

# The engine DSPy keeps for each server, by the engine it chose for the LM's own api_base: looked up once per
# (engine, server), not per request (DSPy's lookup costs about 0.12 ms a call). Only for its native engines, which
# DSPy keeps per LM and client settings; litellm's it makes per call.
_engines: "weakref.WeakKeyDictionary[object, dict[str, object]]" = weakref.WeakKeyDictionary()
_engines_lock = threading.Lock()


def _on(call, url: str):
    return dataclasses.replace(call, legacy={**call.legacy, "api_base": url})


def _engine_for(lm, call, backend, request, provider, url: str, asynchronous: bool):
    """(call, engine, request, provider) for a try of `call` on the server at `url`."""
    moved = _on(call, url)
    if request is None or not call.managed:  # litellm's path: the engine reads the call's api_base
        return (moved, *execution._engine(lm, moved, asynchronous))
    with _engines_lock:
        known = _engines.get(backend, {}).get(url)
    if known is None:
        known, request_, provider_ = execution._engine(lm, moved, asynchronous)
        if request_ is None or type(known) is not type(backend):  # another route: take it as DSPy chose it
            return moved, known, request_, provider_
        with _engines_lock:
            _engines.setdefault(backend, {})[url] = known
    return moved, known, request, provider


def _spread(lm, call, backend, request, provider, state, results, attempt, servers: ServerSet):
    tried: list[str] = []
    error: Exception | None = None
    while (chosen := BOARD.choose(servers.urls, tried)) is not None:
        url, trial = chosen
        tried.append(url)
        failure = ended = None
        try:
            moved, engine, request_, provider_ = _engine_for(lm, call, backend, request, provider, url, False)
            result = attempt(lm, moved, engine, request_, provider_, state, results)
            ended = "answered"
        except Exception as exc:
            error, failure, ended = exc, *_failed(exc, lm, servers, url)
            if failure is None or state.completed or state.emitted:
                raise
            continue  # to another server; with none left, the error goes to DSPy's retries
        finally:
            _release(lm, servers, url, trial, ended, failure)
        _record(servers, url, None)
        return result
    raise error  # only a request that has tried a server is refused one


async def _aspread(lm, call, backend, request, provider, state, results, attempt, servers: ServerSet):
    tried: list[str] = []
    error: Exception | None = None
    while (chosen := BOARD.choose(servers.urls, tried)) is not None:
        url, trial = chosen
        tried.append(url)
        failure = ended = None
        try:
            moved, engine, request_, provider_ = _engine_for(lm, call, backend, request, provider, url, True)
            result = await attempt(lm, moved, engine, request_, provider_, state, results)
            ended = "answered"
        except Exception as exc:
            error, failure, ended = exc, *_failed(exc, lm, servers, url)
            if failure is None or state.completed or state.emitted:
                raise
            continue
        finally:
            _release(lm, servers, url, trial, ended, failure)
        _record(servers, url, None)
        return result
    raise error


def _release(lm, servers: ServerSet, url: str, trial: bool, ended: str | None, failure: str | None) -> None:
    """A try on `url` is over: the board counts it, and a server it has just left out is logged."""
    if BOARD.release(url, trial, ended, failure, servers.cooldown):
        log.warning("%s: the server at %s failed a request (%s): left out for %g s",
                    configured_name(getattr(lm, "model", "?")), url, failure, servers.cooldown)


def _failed(exc: Exception, lm, servers: ServerSet, url: str) -> tuple[str | None, str]:
    """A try that raised `exc`, recorded: (why the server failed it, None if it did not; how it ended)."""
    line = error_line(exc, lm)
    _record(servers, url, line)
    return (line, "failed") if server_failure(exc) else (None, "answered")


def spread_attempt(attempt):
    """DSPy's `_attempt`, made on the chosen server of an LM built with several (see the module's docstring).

    Args:
        attempt: what the wrapper calls for each try (`dspy.clients.execution._attempt`, as wrapped by the rate
            gate and the deadline).

    Returns:
        The wrapper, with `attempt`'s signature. An LM without servers passes straight through.
    """
    def attempt_spread(lm, call, backend, request, provider, state, results):
        pool = servers_of(lm)
        if pool is None:
            return attempt(lm, call, backend, request, provider, state, results)
        return _spread(lm, call, backend, request, provider, state, results, attempt, pool)
    return attempt_spread


def spread_aattempt(aattempt):
    """`spread_attempt` for DSPy's `_aattempt`.

    Args:
        aattempt: what the wrapper awaits for each try.

    Returns:
        The wrapper, a coroutine function with `aattempt`'s signature.
    """
    async def aattempt_spread(lm, call, backend, request, provider, state, results):
        pool = servers_of(lm)
        if pool is None:
            return await aattempt(lm, call, backend, request, provider, state, results)
        return await _aspread(lm, call, backend, request, provider, state, results, aattempt, pool)
    return aattempt_spread
