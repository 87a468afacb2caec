"""The one place datagen extends DSPy, and the socket reads under it: `install()` puts every wrapper in place.

DSPy 3.4 offers no hook for what a run needs, so datagen replaces some of its internals with wrappers that call
the originals. Each wrapper is written beside its concept: the per-call deadline (datagen.lm.deadline); the rate
gate, the request watchers and the retry-wait cap (datagen.lm.gate); the spread over several servers
(datagen.lm.servers); the model metadata memo (datagen.lm.metadata_cache); the native engine's provider lookup
on the event loop (datagen.lm.native); the call log's hearing of each step and LM call, and the truncation check of
cached answers (datagen.lm.calllog). This module alone installs them, in the order written below, after checking
that the DSPy it finds has what they wrap.

Importing datagen installs nothing. `install()` runs where LM calls are about to be made: when a role model is
made (`datagen.lm.RoleModel`, so `role_model`, `task_model`, `judge_model` and the batch engine's model) or
unpickled (a Ray actor receives its role models so), and when the embedded model is made. It installs once per
process: a second call changes nothing. Each wrapper's `__wrapped__` is what it wraps, so
`inspect.unwrap(execution._attempt)` is DSPy's own function.
"""

import inspect
import logging
import socket
import ssl
import threading

import dspy
from dspy.clients import capabilities, costs, execution, model_metadata
from dspy.clients.engines.lm15_engine import AsyncLM15Engine

from datagen.errors import DatagenError
from datagen.lm.calllog import (DSPY_LM_LOGGER, TruncationCounter, log_acalls, log_asteps, log_calls, log_steps,
                                warn_of_cut_off)
from datagen.lm.deadline import bound_aattempt, bound_attempt, bound_read
from datagen.lm.gate import (cap_retry_wait, gate_aattempt, gate_attempt, watch_aattempt, watch_attempt,
                             widen_connection_pool)
from datagen.lm.metadata_cache import memoise
from datagen.lm.native import lookup_on_loop
from datagen.lm.servers import spread_aattempt, spread_attempt

DSPY_VERSIONS = ">=3.4.1,<3.5"  # the DSPy these wrappers are written for (pyproject.toml asks for the same)

# What the wrappers replace or call, by module (or class), with the parameters each function is called with: a DSPy
# that lacks one, or changed its parameters, would be wrapped wrongly.
DSPY_INTERNALS = {
    execution: {"_attempt": ("lm", "call", "backend", "request", "provider", "state", "results"),
                "_aattempt": ("lm", "call", "backend", "request", "provider", "state", "results"),
                "_delay": ("exc", "attempt"),
                "_cached": ("lm", "call", "asynchronous"),
                "_engine": ("lm", "call", "asynchronous"),
                "execute": ("lm", "call"),
                "aexecute": ("lm", "call"),
                "RouterConfig": None},
    dspy.Predict: {"__call__": ("self", "args", "kwargs"), "acall": ("self", "args", "kwargs")},
    model_metadata: {"model_info": ("provider", "model", "namespaces")},
    costs: {"model_info": None},
    capabilities: {"model_info": None},
    AsyncLM15Engine: {"complete": ("self", "request"), "resolve": ("self", "model"),
                      "_target": ("self", "request", "streaming")},
}

# Each attempt of an LM call (each try of DSPy's retry loop, sync `_attempt` or async `_aattempt`) passes these,
# applied innermost first, so that a call goes: request watchers -> server spread -> rate gate -> deadline ->
# DSPy's attempt.
# - The deadline is innermost: the gate's wait and the choice of a server are not part of an attempt's time
#   bound, and each try on another server gets the whole timeout.
# - The rate gate is inside the spread: each try on a server is a request the provider counts, so each is
#   admitted, and a 429 on any of them cuts the gate.
# - The spread chooses the server a try is made on, and sends a try the server failed to another one, through
#   the gate again.
# - The watchers are outermost: a request refused there (optimize's --max-calls) never waits on the gate nor
#   takes a server's slot; a try the spread moves to another server is within the same attempt, counted once.
ATTEMPT_WRAPPERS = ((bound_attempt, bound_aattempt),
                    (gate_attempt, gate_aattempt),
                    (spread_attempt, spread_aattempt),
                    (watch_attempt, watch_aattempt))

_lock = threading.Lock()
_installed = False


def install() -> None:
    """Install every wrapper of DSPy's internals and of the socket reads, once per process.

    Raises:
        DatagenError: the installed DSPy lacks an internal the wrappers need (or calls it with other parameters):
            not a DSPy these hooks are written for (DSPY_VERSIONS). Nothing is installed then.
    """
    global _installed
    if _installed:  # the common case, without the lock: a role model is made at every dataclasses.replace
        return
    with _lock:
        if _installed:
            return
        check_dspy()
        _install_attempts()
        _install_rest()
        _installed = True


def check_dspy() -> None:
    """Check that DSPy has what the wrappers replace or call (DSPY_INTERNALS).

    Raises:
        DatagenError: naming each internal that is missing or has other parameters.
    """
    wrong = []
    for module, names in DSPY_INTERNALS.items():
        for name, parameters in names.items():
            found = getattr(module, name, None)
            if found is None or (parameters and tuple(inspect.signature(found).parameters) != parameters):
                wrong.append(f"{module.__name__}.{name}")
    if wrong:
        raise DatagenError(f"DSPy {dspy.__version__} lacks {', '.join(wrong)} as datagen wraps it: datagen needs "
                           f"dspy{DSPY_VERSIONS}")


def _wrapped(inner, wrap):
    """`wrap(inner)`, marked as wrapping `inner` (its `__wrapped__`, which `inspect.unwrap` follows)."""
    wrapper = wrap(inner)
    wrapper.__wrapped__ = inner
    return wrapper


def _install_attempts() -> None:
    attempt, aattempt = execution._attempt, execution._aattempt
    for wrap, awrap in ATTEMPT_WRAPPERS:
        attempt, aattempt = _wrapped(attempt, wrap), _wrapped(aattempt, awrap)
    # DSPy 3.4's retry loops look both functions up at each attempt.
    execution._attempt, execution._aattempt = attempt, aattempt


def _install_rest() -> None:
    # Order does not matter among these: each wraps a function nothing else here wraps.
    # The reads of an attempt's thread end by its deadline (bound_read: other threads are not touched).
    for socket_class in (socket.socket, ssl.SSLSocket):
        for read in ("recv", "recv_into"):
            setattr(socket_class, read, _wrapped(getattr(socket_class, read), bound_read))
    # DSPy 3.4's retry loops (sync and async) look the wait up at each retry.
    execution._delay = _wrapped(execution._delay, cap_retry_wait)
    # execute/aexecute look the cache up at each call.
    execution._cached = _wrapped(execution._cached, warn_of_cut_off)
    # BaseLM.__call__/acall import execute/aexecute at each call.
    execution.execute, execution.aexecute = (_wrapped(execution.execute, log_calls),
                                             _wrapped(execution.aexecute, log_acalls))
    # On the calls, not forward/aforward: a subclass of Predict may replace those.
    dspy.Predict.__call__, dspy.Predict.acall = (_wrapped(dspy.Predict.__call__, log_steps),
                                                 _wrapped(dspy.Predict.acall, log_asteps))
    # DSPy builds each native engine's router with it.
    execution.RouterConfig = _wrapped(execution.RouterConfig, widen_connection_pool)
    # DSPy's async native engine, each of its calls: its provider found on the loop once made.
    AsyncLM15Engine.complete = _wrapped(AsyncLM15Engine.complete, lookup_on_loop)
    # Both modules imported the function by name and look it up at each call; one memo serves both.
    memo = _wrapped(model_metadata.model_info, memoise)
    costs.model_info = capabilities.model_info = memo
    _count_truncations()


def _count_truncations() -> None:
    """The truncation count on DSPy's LM logger (datagen.lm.calllog.TruncationCounter), and the logger never
    quieter than WARNING: a warning not made reaches no filter (the CLI leaves "dspy" at errors only, and sets this
    logger's level itself, DEBUG with -v, which stays)."""
    logger = logging.getLogger(DSPY_LM_LOGGER)
    logger.addFilter(TruncationCounter())
    if logger.level == logging.NOTSET or logger.level > logging.WARNING:
        logger.setLevel(logging.WARNING)
