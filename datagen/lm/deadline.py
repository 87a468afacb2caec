"""The role's `timeout` bounds a whole LM call, wall clock, on either engine.

HTTP clients bound each wait for the next byte, not the call: a server sending a byte every half second is never
timed out, however long the answer takes. DSPy 3.4 makes each attempt of a call in `dspy.clients.execution.
_attempt`, in the calling thread; both engines' clients (httpx under LiteLLM, lm15's own transport) read the
answer with blocking `recv` calls on that thread's socket. While an attempt of an LM with a numeric `timeout`
runs, its thread has a deadline, and no read waits past it: a read at the deadline raises `socket.timeout`, which
each client reports as a read timeout, and DSPy retries like any other (each attempt gets the whole timeout).
Reads in other threads, in non-blocking sockets (asyncio) and outside an attempt are untouched: an async attempt
(`_aattempt`, on an event loop) is bounded by `asyncio.timeout` instead, which cancels it at the deadline.
"""

import asyncio
import socket
import ssl
import threading
import time

from dspy.clients import execution

_deadline = threading.local()  # .at: time.monotonic() the attempt running in this thread must end by


def _bounded(recv):
    def bounded(sock, *args, **kwargs):
        at = getattr(_deadline, "at", None)
        before = None if at is None else sock.gettimeout()
        if at is None or before == 0.0:  # no attempt running here, or a non-blocking socket
            return recv(sock, *args, **kwargs)
        left = at - time.monotonic()
        if left <= 0:
            raise socket.timeout("the LM call took longer than its timeout")
        if before is not None and before <= left:
            return recv(sock, *args, **kwargs)
        sock.settimeout(left)
        try:
            return recv(sock, *args, **kwargs)
        finally:
            sock.settimeout(before)
    return bounded


def _attempt_within_timeout(lm, *args, _attempt=execution._attempt, **kwargs):
    """DSPy's `_attempt`, ending by the LM's `timeout` seconds from now (a number; else as DSPy makes it)."""
    seconds = getattr(lm, "kwargs", {}).get("timeout")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or getattr(_deadline, "at", None):
        return _attempt(lm, *args, **kwargs)
    _deadline.at = time.monotonic() + seconds
    try:
        return _attempt(lm, *args, **kwargs)
    finally:
        _deadline.at = None


async def _aattempt_within_timeout(lm, *args, _aattempt=execution._aattempt, **kwargs):
    """DSPy's `_aattempt`, cancelled `timeout` seconds from now (the LM's number; else as DSPy makes it): the
    TimeoutError that ends it is retried like any other."""
    seconds = getattr(lm, "kwargs", {}).get("timeout")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return await _aattempt(lm, *args, **kwargs)
    async with asyncio.timeout(seconds):
        return await _aattempt(lm, *args, **kwargs)


for _cls in (socket.socket, ssl.SSLSocket):
    for _name in ("recv", "recv_into"):
        setattr(_cls, _name, _bounded(getattr(_cls, _name)))
# DSPy 3.4 has no setting for this: its retry loop (sync) looks the function up at each attempt.
execution._attempt = _attempt_within_timeout
execution._aattempt = _aattempt_within_timeout
