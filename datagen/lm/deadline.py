"""The role's `timeout` bounds a whole LM call, wall clock, on either engine.

HTTP clients bound each wait for the next byte, not the call: a server sending a byte every half second is never
timed out, however long the answer takes. DSPy 3.4 makes each attempt of a call in `dspy.clients.execution.
_attempt`, in the calling thread; both engines' clients (httpx under LiteLLM, lm15's own transport) read the
answer with blocking `recv` calls on that thread's socket. While an attempt of an LM with a numeric `timeout`
runs, its thread has a deadline, and no read waits past it: a read at the deadline raises `socket.timeout`, and
the attempt ends in DSPy's `LMTimeoutError`, which DSPy retries like any other (each attempt gets the whole
timeout). An async attempt (`_aattempt`, on an event loop) is bounded by `asyncio.timeout` instead, which cancels
it at the deadline. Either way the error says the call's wall-clock limit was reached, not what the client saw
last (lm15 calls the cut read "no bytes for 1s" when bytes came every half second; litellm "Request timed out").

Only the threads datagen runs an LM attempt on observe a deadline. The socket methods are wrapped for the whole
process (a socket's class is the only place a read can be bounded), but a thread with no deadline set, which is
every thread outside an attempt and every thread of another library, goes straight to the original method: one
thread-local lookup, its socket and timeout untouched. Non-blocking sockets (asyncio) are never touched either.

The wrappers are made here and installed by `datagen.lm.hooks.install`, which decides their order.
"""

import asyncio
import socket
import threading
import time

from dspy.utils.exceptions import LMTimeoutError


class _Deadline(threading.local):
    at: float | None = None  # time.monotonic() the attempt running in this thread must end by; None: no attempt
    reached: bool = False  # a read of this attempt was cut at the deadline


_deadline = _Deadline()


def bound_read(read):
    """A socket's `read` method (`recv` or `recv_into`) that, in a thread with a deadline, waits no longer than
    the deadline.

    Args:
        read: the socket class's own method.

    Returns:
        The wrapper, to be set on the class. In a thread without a deadline it calls `read` at once.
    """
    def read_by_deadline(sock, *args, **kwargs):
        at = _deadline.at
        if at is None:  # not a thread running an LM attempt: the socket is not datagen's to bound
            return read(sock, *args, **kwargs)
        before = sock.gettimeout()
        if before == 0.0:  # a non-blocking socket
            return read(sock, *args, **kwargs)
        left = at - time.monotonic()
        if left <= 0:
            _deadline.reached = True
            raise socket.timeout("the LM call took longer than its timeout")
        if before is not None and before <= left:
            return read(sock, *args, **kwargs)
        sock.settimeout(left)
        try:
            return read(sock, *args, **kwargs)
        except socket.timeout:
            _deadline.reached = True  # the deadline, not the socket's own timeout, was the shorter wait
            raise
        finally:
            sock.settimeout(before)
    return read_by_deadline


def _seconds(lm) -> float | None:
    """The LM's `timeout` when it is a number of seconds (else None: DSPy's own handling stands)."""
    seconds = getattr(lm, "kwargs", {}).get("timeout")
    return None if isinstance(seconds, bool) or not isinstance(seconds, int | float) else seconds


def _over_time(lm, seconds: float) -> LMTimeoutError:
    """The error an attempt ended at its deadline raises: the limit it reached, in the user's terms."""
    return LMTimeoutError(f"no complete answer within the timeout of {seconds:g} s (a wall-clock limit on the "
                          "whole call, however steadily the answer arrives); if the model needs longer, raise it: "
                          "the role's timeout in datagen.toml, DATAGEN_<ROLE>_TIMEOUT, or a dspy.LM's timeout=",
                          model=lm.model)


def bound_attempt(attempt):
    """DSPy's `_attempt`, ending by the LM's `timeout` seconds from its start: the attempt's thread gets that
    deadline (see `bound_read`) while it runs.

    Args:
        attempt: `dspy.clients.execution._attempt` (what the wrapper calls).

    Returns:
        The wrapper, with `attempt`'s signature. An attempt inside another (a deadline already set) keeps the
        outer one's.
    """
    def attempt_within_timeout(lm, *args, **kwargs):
        seconds = _seconds(lm)
        if seconds is None or _deadline.at:
            return attempt(lm, *args, **kwargs)
        _deadline.at, _deadline.reached = time.monotonic() + seconds, False
        try:
            return attempt(lm, *args, **kwargs)
        except Exception as exc:
            if _deadline.reached:
                raise _over_time(lm, seconds) from exc
            raise
        finally:
            _deadline.at = None
    return attempt_within_timeout


def bound_aattempt(aattempt):
    """DSPy's `_aattempt`, cancelled `timeout` seconds from its start (the LM's number; else as DSPy makes it):
    the LMTimeoutError that ends it is retried like any other.

    Args:
        aattempt: `dspy.clients.execution._aattempt` (what the wrapper awaits).

    Returns:
        The wrapper, a coroutine function with `aattempt`'s signature.
    """
    async def aattempt_within_timeout(lm, *args, **kwargs):
        seconds = _seconds(lm)
        if seconds is None:
            return await aattempt(lm, *args, **kwargs)
        scope = asyncio.timeout(seconds)
        try:
            async with scope:
                return await aattempt(lm, *args, **kwargs)
        except TimeoutError as exc:
            if scope.expired():  # the deadline's, not a client's own read timeout
                raise _over_time(lm, seconds) from exc
            raise
    return aattempt_within_timeout
