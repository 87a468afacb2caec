"""A chunk's call log: what each step of the program was given and answered, and every LM call's exact messages
and raw completion, gathered while the chunk runs and written to the run store with its result.

The log hears the calls through two wrappers that `datagen.lm.hooks` installs: `log_steps` on `dspy.Predict`'s
`__call__` and `acall` (a step: one predictor call), and `log_calls` on DSPy's `execute` and `aexecute` (an LM
call, which DSPy's `BaseLM.__call__` and `acall` look up at each call). Each hands the event to the running chunk's
log, the DSPy setting `CALL_LOG`, which the runner sets per chunk (`dspy.context`: per thread and per asyncio task),
and does nothing else outside a chunk. Not DSPy callbacks: DSPy runs a callback's bookkeeping (a uuid, inspect's
getcallargs, a Protocol isinstance check) on every call it hears, a tenth of a chunk's CPU on the event loop at 256
in flight (`python -m bench.phase_cpu 256 20`, py-spy), and only instances that carry it are heard.

The step an LM call belongs to is the innermost step running in its thread or asyncio task (a context variable).
A program that runs steps in DSPy's own worker threads (dspy.Parallel) still reports to its chunk's log (DSPy hands
its settings on to them), hence the lock.
"""

import contextvars
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import dspy
from dspy.clients.legacy_outputs import value

from datagen.lm.adapters import valid_text, valid_values
from datagen.lm.names import configured_name
from datagen.lm.servers import tries as server_tries
from datagen.util.redaction import redact
from datagen.store import Call, Step


CALL_LOG = "datagen_call_log"  # the DSPy setting holding the running chunk's CallLog

# The name of the innermost step running in this thread or task; None: none.
_running_step: contextvars.ContextVar[str | None] = contextvars.ContextVar("datagen_running_step", default=None)
# Whether an LM call is being logged in this thread or task: a call made inside it (a custom LM whose forward calls
# another LM) is part of it, not a call of its own.
_in_call: contextvars.ContextVar[bool] = contextvars.ContextVar("datagen_in_call", default=False)


def step_names(program: dspy.Module, metrics: Iterable = ()) -> dict[int, str]:
    """Each predictor's name, by identity: its name in the program ("rephrase"), or "judge:METRIC" for a
    predictor a metric holds."""
    return {id(predictor): name for predictor, name in _predictors(program, metrics)}


def _predictors(program: dspy.Module, metrics: Iterable) -> Iterator[tuple[dspy.Predict, str]]:
    yield from ((predictor, name) for name, predictor in program.named_predictors())
    for metric in metrics:
        yield from ((value, f"judge:{metric.name}") for value in vars(metric).values()
                    if isinstance(value, dspy.Predict))


class CallLog:
    """Collects a chunk's steps (predictor calls) and LM calls, in the order they started: set it as the DSPy
    setting `CALL_LOG` for the chunk's calls (`dspy.context(**{CALL_LOG: log})`).

    Args:
        names: from `step_names`: each step is named so; a predictor not there by its signature's name.
    """

    def __init__(self, names: dict[int, str]):
        self.names = names
        self.steps: list[Step] = []
        self.calls: list[Call] = []
        self.truncated = 0  # LM answers cut off at max_tokens (finish_reason "length")
        self._lock = threading.Lock()

    @contextmanager
    def step(self, predictor: dspy.Predict, inputs: dict) -> Iterator[Callable]:
        """Log a call of `predictor` given `inputs` as a step for the duration, the innermost step of this thread or
        task; yields `done(prediction)`, which records the prediction's fields and returns it. An exception
        raised inside is recorded as the step's error."""
        fields = predictor.signature.input_fields
        step = Step(self.names.get(id(predictor), predictor.signature.__name__),
                    valid_values({key: value for key, value in inputs.items() if key in fields}))
        with self._lock:
            self.steps.append(step)
        running = _running_step.set(step.step)

        def done(prediction):
            step.outputs = valid_values(dict(prediction.items()))  # storable, whatever the adapter let through
            return prediction
        try:
            yield done
        except BaseException as exc:
            step.error = _error(exc)
            raise
        finally:
            _running_step.reset(running)

    @contextmanager
    def call(self, lm, call) -> Iterator[Callable]:
        """Log an LM call (DSPy's `PreparedCall` `call` to `lm`) for the duration, under the innermost step running
        in this thread or task (else its model's name); yields `done(result)`, which records DSPy's `CallResult`
        (the raw completion, its usage and whether the cache answered) and returns it. An exception raised inside
        is recorded as the call's error."""
        model = configured_name(lm.model)
        logged = Call(_running_step.get() or model, model, call.messages or [{"role": "user", "content": call.prompt}])
        with self._lock:
            self.calls.append(logged)
        started, inside = time.monotonic(), _in_call.set(True)
        server_tries.set(logged.servers)  # the requests it sends to a role's servers (this thread's or task's)

        def done(result):
            logged.response = valid_text(redact(_response(result.outputs)))  # as it came, reasoning and all
            # DSPy counts no tokens for a cache hit (its tracker is given none).
            logged.usage, logged.cached = (None if result.cache_hit else result.usage), result.cache_hit
            return result
        try:
            yield done
        except BaseException as exc:
            logged.error = _error(exc)
            raise
        finally:
            logged.seconds = time.monotonic() - started
            server_tries.set(None)
            _in_call.reset(inside)


def log_steps(call):
    """`dspy.Predict.__call__`, each call inside a chunk logged as a step of its CallLog (`CALL_LOG`), whatever the
    predictor's class does in its `forward` (a subclass may replace it).

    Args:
        call: `Predict.__call__(self, *args, **kwargs)` (positional arguments are refused by it).

    Returns:
        The wrapper, with `call`'s signature.
    """
    def call_logged(self, *args, **kwargs):
        if args or (log := dspy.settings.get(CALL_LOG)) is None:
            return call(self, *args, **kwargs)
        with log.step(self, kwargs) as done:
            return done(call(self, **kwargs))
    return call_logged


def log_asteps(acall):
    """`log_steps` for `dspy.Predict.acall`."""
    async def acall_logged(self, *args, **kwargs):
        if args or (log := dspy.settings.get(CALL_LOG)) is None:
            return await acall(self, *args, **kwargs)
        with log.step(self, kwargs) as done:
            return done(await acall(self, **kwargs))
    return acall_logged


def log_calls(execute):
    """DSPy's `execute(lm, call)` (one LM call, its retries included: a `CallResult`), each call inside a chunk
    logged in its CallLog (`CALL_LOG`) with its messages, raw completion, usage and time; a call made inside
    another (a custom LM whose forward calls another LM) is part of it.

    Args:
        execute: `dspy.clients.execution.execute`, which `BaseLM.__call__` looks up at each call.

    Returns:
        The wrapper, with `execute`'s signature.
    """
    def execute_logged(lm, call):
        if _in_call.get() or (log := dspy.settings.get(CALL_LOG)) is None:
            return execute(lm, call)
        with log.call(lm, call) as done:
            return done(execute(lm, call))
    return execute_logged


def log_acalls(aexecute):
    """`log_calls` for DSPy's `aexecute`, which `BaseLM.acall` looks up at each call."""
    async def aexecute_logged(lm, call):
        if _in_call.get() or (log := dspy.settings.get(CALL_LOG)) is None:
            return await aexecute(lm, call)
        with log.call(lm, call) as done:
            return done(await aexecute(lm, call))
    return aexecute_logged


class TruncationCounter(logging.Filter):
    """Counts truncated answers, in this thread (`truncations`) and in the chunk's CallLog, from the warning DSPy
    logs on DSPY_LM_LOGGER. DSPy's only sign that an answer stopped at max_tokens (finish_reason "length"), on either
    engine, is this warning; the answer itself goes on to the adapter, which parses a field cut off mid-sentence as
    if it were whole. Installed on that logger by `datagen.lm.hooks.install`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith("LM response was truncated"):
            return True
        _seen.truncated = truncations() + 1
        log = dspy.settings.get(CALL_LOG)  # the chunk this thread or task runs
        if log is not None:
            with log._lock:
                log.truncated += 1
        return log is None  # the chunk's failure says it; the warning would only repeat it


_seen = threading.local()


def truncations() -> int:
    """How many LM answers made in this thread so far were cut off at max_tokens, inside a chunk's run or not:
    compared before and after a call, it tells whether that call's answer was (see datagen.metrics.scoring.measure)."""
    return getattr(_seen, "truncated", 0)


DSPY_LM_LOGGER = "dspy.clients.lm"  # where DSPy warns of a truncated answer
TRUNCATED_WARNING = "LM response was truncated; increase max_tokens or inspect history."  # DSPy 3.4's own words


def warn_of_cut_off(cached):
    """DSPy's cache lookup, warning of a cached answer that was cut off at max_tokens as DSPy warns of a fresh one
    (DSPy 3.4 warns only when a response arrives): else an answer cut off when first asked is read from the cache
    as a parse failure, or as a whole answer when it happens to parse (an optimizer's held-out scoring asks the
    same prompts again, and a repeated run asks them all).

    Args:
        cached: `dspy.clients.execution._cached(lm, call, asynchronous)`, which execute/aexecute look up at each call.

    Returns:
        The wrapper, with `cached`'s signature.
    """
    def cached_checked(lm, call, asynchronous):
        result = cached(lm, call, asynchronous)
        if result is not None and _cut_off(result):
            logging.getLogger(DSPY_LM_LOGGER).warning(TRUNCATED_WARNING)
        return result
    return cached_checked


def _cut_off(result) -> bool:
    """Whether a cached CallResult's answer stopped at max_tokens: its native responses' finish reason, or the
    choices of the provider response litellm gave."""
    if result.responses:
        return any(response.finish_reason == "length" for response in result.responses)
    choices = value(result.raw, "choices", []) or []
    return any(value(choice, "finish_reason") == "length" for choice in choices)


def _response(outputs) -> str:
    """A completion's text; several completions (or ones with more than text) as JSON."""
    if isinstance(outputs, list) and len(outputs) == 1 and isinstance(outputs[0], str):
        return outputs[0]
    return json.dumps(outputs, ensure_ascii=False, default=str)


def _error(exception: BaseException) -> str:
    # A provider's error may quote the key, or the answer it could not take.
    return valid_text(redact(f"{type(exception).__name__}: {exception}"))
