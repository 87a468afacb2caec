"""A chunk's call log: what each step of the program was given and answered, and every LM call's exact messages
and raw completion, gathered while the chunk runs and written to the run store with its result.

The log hears the calls through `CallRouter`, a DSPy callback put on the program's and the metrics' predictors and
on the LMs they call (`route_calls`), not among DSPy's global callbacks: DSPy runs a global callback's bookkeeping
(inspect.getcallargs, a Protocol isinstance check) on every module, adapter and LM call, seven times a chunk of
style_clone, which was over a quarter of a chunk's CPU on its event loop (py-spy, bench/README.md, issue 29). The
router hands each event to the running chunk's log, the DSPy setting `CALL_LOG`, which the runner sets per chunk
(`dspy.context`: per thread and per asyncio task). A program that runs steps in DSPy's own worker threads
(dspy.Parallel) still reports to its chunk's log (DSPy hands its settings on to them), hence the lock, and the
stack of running steps kept per thread.
"""

import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import dspy
from dspy.clients.legacy_outputs import value
from dspy.utils.callback import BaseCallback

from datagen.lm.adapters import valid_text, valid_values
from datagen.lm.names import configured_name
from datagen.lm.servers import tries as server_tries
from datagen.util.redaction import redact
from datagen.store import Call, Step


CALL_LOG = "datagen_call_log"  # the DSPy setting holding the running chunk's CallLog


def step_names(program: dspy.Module, metrics: Iterable = ()) -> dict[int, str]:
    """Each predictor's name, by identity: its name in the program ("rephrase"), or "judge:METRIC" for a
    predictor a metric holds."""
    return {id(predictor): name for predictor, name in _predictors(program, metrics)}


def route_calls(program: dspy.Module, metrics: Iterable = ()) -> None:
    """Put the `CallRouter` on the program's predictors and on those the metrics hold (once: a second call changes
    nothing); each LM is routed when a routed predictor first calls it (its own `lm`, else DSPy's), and the task
    model's by the runner. The router stays on them, idle outside a chunk (no `CALL_LOG` set). An LM called by
    the program's own code, never through one of these predictors nor as the task model, is not logged."""
    route(*(predictor for predictor, _ in _predictors(program, metrics)))


def route(*instances) -> None:
    """Add the `CallRouter` to each instance's DSPy callbacks (a dspy.Module or a dspy.BaseLM), unless it has one
    (a copy of a routed LM has its own)."""
    for instance in instances:
        callbacks = getattr(instance, "callbacks", None)
        if callbacks is not None and not any(isinstance(c, CallRouter) for c in callbacks):
            instance.callbacks = [*callbacks, _ROUTER]  # a new list: the caller's may be shared


def _predictors(program: dspy.Module, metrics: Iterable) -> Iterator[tuple[dspy.Predict, str]]:
    yield from ((predictor, name) for name, predictor in program.named_predictors())
    for metric in metrics:
        yield from ((value, f"judge:{metric.name}") for value in vars(metric).values()
                    if isinstance(value, dspy.Predict))


class CallRouter(BaseCallback):
    """Hands a routed predictor's and LM's call events to the running chunk's CallLog (the DSPy setting `CALL_LOG`);
    does nothing outside a chunk. Before a predictor runs, the LM it will call is routed too."""

    def on_module_start(self, call_id, instance, inputs):
        if (log := dspy.settings.get(CALL_LOG)) is not None:
            route(getattr(instance, "lm", None) or dspy.settings.lm)
            log.on_module_start(call_id, instance, inputs)

    def on_module_end(self, call_id, outputs, exception=None):
        if (log := dspy.settings.get(CALL_LOG)) is not None:
            log.on_module_end(call_id, outputs, exception)

    def on_lm_start(self, call_id, instance, inputs):
        if (log := dspy.settings.get(CALL_LOG)) is not None:
            log.on_lm_start(call_id, instance, inputs)

    def on_lm_end(self, call_id, outputs, exception=None):
        if (log := dspy.settings.get(CALL_LOG)) is not None:
            log.on_lm_end(call_id, outputs, exception)


_ROUTER = CallRouter()  # holds no state: one for the process


@dataclass
class _InFlight:
    call: Call
    started: float
    counted: int | None  # usage entries the chunk's tracker held for the model when the call started
    alone: bool = True  # no other LM call of the chunk overlapped it, so the usage entry it added is its own


class CallLog:
    """Collects a chunk's steps (predictor calls) and LM calls, in the order they started, from the `CallRouter`:
    set it as the DSPy setting `CALL_LOG` for the chunk's calls (`dspy.context(**{CALL_LOG: log})`)."""

    def __init__(self, names: dict[int, str]):
        self.names = names  # from step_names()
        self.steps: list[Step] = []
        self.calls: list[Call] = []
        self._open_steps: dict[str, Step] = {}
        self._open_calls: dict[str, _InFlight] = {}
        self.truncated = 0  # LM answers cut off at max_tokens (finish_reason "length")
        self._local = threading.local()
        self._lock = threading.Lock()

    def _running(self) -> list[str]:
        """The names of the steps running in this thread, innermost last."""
        if not hasattr(self._local, "steps"):
            self._local.steps = []
        return self._local.steps

    def on_module_start(self, call_id, instance, inputs):
        if not isinstance(instance, dspy.Predict):
            return  # the program, or a wrapper such as ChainOfThought: its predictors are logged themselves
        fields = instance.signature.input_fields
        step = Step(self.names.get(id(instance), instance.signature.__name__),
                    valid_values({key: value for key, value in inputs.get("kwargs", {}).items() if key in fields}))
        with self._lock:
            self.steps.append(step)
            self._open_steps[call_id] = step
        self._running().append(step.step)

    def on_module_end(self, call_id, outputs, exception=None):
        with self._lock:
            step = self._open_steps.pop(call_id, None)
        if step is None:
            return
        self._running().pop()
        if exception is None:
            step.outputs = valid_values(dict(outputs.items()))  # storable, whatever the adapter let through
        else:
            step.error = _error(exception)

    def on_lm_start(self, call_id, instance, inputs):
        running = self._running()
        model = configured_name(instance.model)
        call = Call(running[-1] if running else model, model, _messages(inputs))
        entries = _usage_entries(model)
        with self._lock:
            for other in self._open_calls.values():
                other.alone = False
            self.calls.append(call)
            self._open_calls[call_id] = _InFlight(call, time.monotonic(), None if entries is None else len(entries),
                                                  alone=not self._open_calls)
        server_tries.set(call.servers)  # the requests it sends to a role's servers (this thread's or task's)

    def on_lm_end(self, call_id, outputs, exception=None):
        with self._lock:
            flight = self._open_calls.pop(call_id, None)
        if flight is None:
            return
        server_tries.set(None)
        call = flight.call
        call.seconds = time.monotonic() - flight.started
        if exception is not None:
            call.error = _error(exception)
            return
        call.response = valid_text(redact(_response(outputs)))  # as it came, reasoning and all
        entries = _usage_entries(call.model)
        if flight.alone and flight.counted is not None and entries is not None:
            # DSPy counts no tokens for a cache hit: a call that added no usage entry was answered from the cache.
            added = entries[flight.counted:]
            call.usage, call.cached = (added[0] if added else None), not added


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


def _usage_entries(model: str) -> list | None:
    """The usage entries the chunk's tracker (`datagen.lm.names.track_usage`) holds for `model`; None without one."""
    tracker = dspy.settings.usage_tracker
    return None if tracker is None else tracker.usage_data.get(model, [])


def _messages(inputs: dict) -> list:
    """The messages an LM call sends: the adapter's, or a bare prompt as the one user message DSPy makes of it."""
    return inputs.get("messages") or [{"role": "user", "content": inputs.get("prompt")}]


def _response(outputs) -> str:
    """A completion's text; several completions (or ones with more than text) as JSON."""
    if isinstance(outputs, list) and len(outputs) == 1 and isinstance(outputs[0], str):
        return outputs[0]
    return json.dumps(outputs, ensure_ascii=False, default=str)


def _error(exception: BaseException) -> str:
    # A provider's error may quote the key, or the answer it could not take.
    return valid_text(redact(f"{type(exception).__name__}: {exception}"))
