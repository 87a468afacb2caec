"""Optimizing a pipeline against a small dev set: DSPy optimizers climbing the pipeline's composite metric.

The dev set's train items are what the optimizer learns from; its val items are held out, and the program is
scored on them before and after with the same metric and judge, so the gain is measured rather than assumed.
A dev set made from a reviewed run (`datagen devset --from-review`) carries human-labeled demos: those of its
train items go first among each predictor's demos once the optimizer has compiled (`with_labeled_demos`).
Every LM request of every role counts against `max_calls` (each one sent: a retry is another; an answer from
DSPy's cache sends none and is counted apart, as a cache hit); the request that would pass it is refused before it
is sent.

Every held-out item counts in the held-out means (datagen.tuning.evaluate): an item the program failed on counts 0, so a
compiled program that makes a sample for every item is not read as worse than one that made a sample for one. A part
of the composite that failed on an item (a judge call whose answer did not parse) counts 0 in it without failing
the item: the held-out line and the manifest name such parts (`held_out_line`), so that a score dragged down by a
judge that could not answer is not read as the program's.
A bootstrapped demo is kept only when the run that made it dropped no candidate (the pipeline's own checks, see
programs/factual_qa.py) and each of its samples reaches the pass mark alone (`DemoCheck`); the candidates
rejected are counted by reason in the result and the manifest.
"""

import contextlib
import contextvars
import hashlib
import importlib.util
import io
import json
import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import dspy
from dspy.clients import execution
from dspy.utils.callback import BaseCallback

from datagen.workspace.compiled import evaluation_path, report_path, save_compiled
from datagen.workspace.config import Config, find_workspace, load_config
from datagen.dataset.devset import DevItem, read_devset
from datagen.errors import DatagenError
from datagen.tuning.evaluate import evaluate
from datagen.util.files import replacing
from datagen.runs.generate import _drop_reason, bound_answers, program_fingerprint
from datagen.metrics.composite import Composite
from datagen.lm.roles import RoleModel, check_reachable, role_model, task_model, track_usage
from datagen.workspace.pipelines import code_fingerprint, load_program
from datagen.tuning.report import failure_kinds, parts_failed_text, write_report
from datagen.metrics.scoring import COMPOSITE, MetricContext, Scorer

log = logging.getLogger(__name__)

OPTIMIZERS = ("bootstrap", "bootstrap-rs", "mipro", "gepa", "copro", "simba")
# The optimizers that ask a model (the prompt role) to write instructions.
PROPOSING = ("mipro", "gepa", "copro", "simba")
# Demos a bootstrapped program keeps per predictor: enough to show a style, few enough for a small context.
MAX_DEMOS = 3
# DSPy's `max_errors` for a compile: failed candidate runs never stop one (see Session.compile).
UNLIMITED_ERRORS = 2**31
RANDOM_SEARCH_CANDIDATES = 4
GEPA_METRIC_CALLS = 60
COPRO_BREADTH, COPRO_DEPTH = 3, 2
SIMBA_BATCH, SIMBA_CANDIDATES, SIMBA_STEPS = 8, 3, 2


class CallBudgetExhausted(BaseException):
    """Raised by the LM call that would pass --max-calls. A BaseException, so that no optimizer's
    `except Exception` (nor DSPy's callback guard) can swallow it and carry on spending."""


@dataclass
class _Sent:
    role: str
    requests: int = 0


class CallCounter(BaseCallback):
    """Counts the LM requests sent by role (`by_role`; every attempt of a call, as the server sees them) and the
    calls answered from DSPy's cache (`cached`, which send none), and refuses the request that would pass `limit`
    before it is sent. Active where it is among DSPy's callbacks (`dspy.context(callbacks=[...])`, which DSPy's
    own workers and datagen's run_chunks hand on)."""

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


def _counters() -> list[CallCounter]:
    return [c for c in dspy.settings.get("callbacks", []) if isinstance(c, CallCounter)]


def _attempt_counted(lm, call, backend, request, provider, state, results, _attempt=execution._attempt):
    for counter in _counters():
        counter.sending(lm)
    return _attempt(lm, call, backend, request, provider, state, results)


async def _aattempt_counted(lm, call, backend, request, provider, state, results, _aattempt=execution._aattempt):
    for counter in _counters():
        counter.sending(lm)
    return await _aattempt(lm, call, backend, request, provider, state, results)


# Each attempt DSPy 3.4 makes is one request sent (a cache hit makes none; one request per candidate where several
# completions are asked of a native engine, a single one with `n` on litellm's): counted there, outside the rate
# gate of datagen/limits.py, so that a request refused by the cap never waits on the gate.
execution._attempt = _attempt_counted
execution._aattempt = _aattempt_counted


@dataclass
class Result:
    """What `optimize` did: the compiled state file (None when stopped), the held-out evaluations `before` and
    `after` compiling (datagen.tuning.evaluate's results), the LM requests sent by role (`calls`) and the calls answered
    from DSPy's cache (`cached`), the estimate made before, why it stopped, tokens by model name, the report, and
    the bootstrapped `demos`: {"kept": {predictor: demos}, "rejected": {reason: candidates}}."""

    state: Path | None
    before: dict
    after: dict | None
    calls: Counter
    estimate: int
    stopped: str | None = None
    usage: Counter = field(default_factory=Counter)  # tokens by model name
    report: Path | None = None
    cached: Counter = field(default_factory=Counter)
    demos: dict = field(default_factory=dict)


class DemoCheck:
    """The metric an optimizer gets: `metric` as it is where it scores a program, and, where it asks for a verdict
    on a candidate demo (a trace is given: bootstrapping), a verdict a person would agree with: the run that made
    the candidate dropped no candidate of its own (the pipeline's checks: placeholder, copy, gibberish...), made
    samples, and each sample reaches the pass mark alone (a datagen `Composite`: its threshold; any other metric:
    its own verdict on the prediction). Rejected candidates are counted by reason in `rejected`
    ("dropped: REASON", "no samples", "below the pass mark"), accepted ones in `accepted`."""

    def __init__(self, metric):
        self.metric = metric
        self.rejected: Counter = Counter()
        self.accepted = 0
        self._lock = threading.Lock()

    def __call__(self, example, prediction, trace=None):
        if trace is None:
            return self.metric(example, prediction)
        reason = self.rejection(example, prediction, trace)
        with self._lock:
            if reason:
                self.rejected[reason] += 1
            else:
                self.accepted += 1
        return reason is None

    def rejection(self, example, prediction, trace) -> str | None:
        """Why the candidate demos of `prediction` are not to be kept; None to keep them."""
        dropped = Counter(_drop_reason(d) for d in (prediction.get("dropped") or ()))
        if dropped:
            return f"dropped: {dropped.most_common(1)[0][0]}"
        samples = list(getattr(prediction, "samples", None) or [])
        if not samples:
            return "no samples"
        if isinstance(self.metric, Composite):
            passes = all(self.metric.score_sample(example.chunk, sample)[0] >= self.metric.threshold
                         for sample in samples)
        else:
            passes = bool(self.metric(example, prediction, trace))
        return None if passes else "below the pass mark"

    def gepa(self, gold, pred, trace=None, pred_name=None, pred_trace=None):
        """GEPA's five-argument form: the metric's own when it has one (datagen's Composite does), else its value."""
        if hasattr(self.metric, "gepa"):
            return self.metric.gepa(gold, pred, trace, pred_name, pred_trace)
        return float(self.metric(gold, pred, trace))


def estimate_calls(optimizer: str, train: int, val: int, per_example: int, held_out: int = 2,
                   judged: int = 0) -> int:
    """A reading of what the preset will spend, before it starts: LM calls of every role, `held_out`
    evaluations of the val items included. `per_example` is one program run plus the judge calls of one
    metric score, `judged` those judge calls alone."""
    evaluations = held_out * val * per_example
    if optimizer == "bootstrap":  # each train item is tried once until MAX_DEMOS pass
        return evaluations + train * per_example
    if optimizer == "bootstrap-rs":  # each candidate bootstraps, then is scored on the train set
        return evaluations + (RANDOM_SEARCH_CANDIDATES + 3) * 2 * train * per_example
    if optimizer == "mipro":  # MIPROv2 light: demo sets, ~10 instruction proposals, ~10 minibatch trials
        return evaluations + 6 * train * per_example + 12 + 10 * min(35, val) * per_example + val * per_example
    if optimizer == "copro":  # every candidate instruction scored on the whole train set, proposals in batches
        return evaluations + COPRO_BREADTH * COPRO_DEPTH * train * per_example + (COPRO_DEPTH + 1) * COPRO_BREADTH
    if optimizer == "simba":  # per step: the batch run by candidates at two temperatures, rules or demos added
        batch = min(SIMBA_BATCH, train)
        return evaluations + SIMBA_STEPS * (batch * (3 * SIMBA_CANDIDATES + 1) * per_example + 2 * SIMBA_CANDIDATES)
    # gepa: its metric calls, each minibatch scored again for feedback (judges only), and the reflections
    return evaluations + GEPA_METRIC_CALLS * per_example + GEPA_METRIC_CALLS // 2 * judged + GEPA_METRIC_CALLS // 3


def make_optimizer(name: str, metric, task: RoleModel, prompt: RoleModel | None, seed: int, demos: int):
    """The DSPy optimizer for a preset, set for unlabeled dev sets: no labeled demos (input-only demos would be
    silently dropped), and a pass/fail verdict while bootstrapping (`metric`, a `DemoCheck`, gives one under
    `trace`)."""
    if name == "bootstrap":
        return dspy.BootstrapFewShot(metric=metric, max_bootstrapped_demos=demos, max_labeled_demos=0,
                                     max_rounds=1)
    if name == "bootstrap-rs":
        return dspy.BootstrapFewShotWithRandomSearch(metric=metric, max_bootstrapped_demos=demos,
                                                     max_labeled_demos=0, num_candidate_programs=RANDOM_SEARCH_CANDIDATES,
                                                     num_threads=1)
    if name == "mipro":
        return dspy.MIPROv2(metric=metric, prompt_model=prompt.lm, task_model=task.lm, auto="light", max_bootstrapped_demos=demos,
                            max_labeled_demos=0, num_threads=1, seed=seed, verbose=False)
    if name == "copro":
        return dspy.COPRO(prompt_model=prompt.lm, metric=metric, breadth=COPRO_BREADTH, depth=COPRO_DEPTH)
    if name == "simba":
        return dspy.SIMBA(metric=metric, bsize=SIMBA_BATCH, num_candidates=SIMBA_CANDIDATES, max_steps=SIMBA_STEPS,
                          max_demos=demos, prompt_model=prompt.lm, num_threads=1)
    return dspy.GEPA(metric=metric.gepa, reflection_lm=prompt.lm, max_metric_calls=GEPA_METRIC_CALLS,
                     num_threads=1, seed=seed)


def compile_kwargs(name: str, trainset: list, seed: int) -> dict:
    if name == "gepa":  # GEPA needs a set to select candidates on: the train items (val stays held out)
        return {"valset": trainset}
    if name == "copro":
        return {"eval_kwargs": {"num_threads": 1, "display_progress": False}}
    if name == "simba":
        return {"seed": seed}
    return {}


def _require_optuna(optimizers) -> None:
    """MIPROv2 imports optuna only at its third step, after spending LM calls: check before the first."""
    if "mipro" in optimizers and importlib.util.find_spec("optuna") is None:
        raise DatagenError("the mipro optimizer needs optuna: pip install 'optuna>=4,<5'")


def dev_hash(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def labeled_demos(items: list[DevItem], program: dspy.Module) -> dict[str, list[dspy.Example]]:
    """The human-labeled demos of dev items (their `demos` reference, {predictor name: {field: value}}, as
    `datagen devset --from-review` writes it), by predictor name in dev set order: each a dspy.Example of the
    fields the predictor's signature has, as DSPy keeps a labeled demo; one without an input and an output field
    of the signature is skipped (DSPy would not show it). Give only the items demos may come from (train: val
    items stay held out). Raises DatagenError for a predictor the program does not have, or a malformed entry."""
    predictors = dict(program.named_predictors())
    found: dict[str, list[dspy.Example]] = {}
    for item in items:
        demos = item.references.get("demos")
        if demos is None:
            continue
        if not isinstance(demos, dict):
            raise DatagenError(f"dev item from {item.chunk.source}: \"demos\" must be an object "
                               "{predictor name: {field: value}}")
        for name, fields in demos.items():
            if name not in predictors:
                raise DatagenError(f"the dev set has demos for predictor {name!r}, which the program does not have "
                                   f"(its predictors: {', '.join(predictors) or 'none'}); was the run made with "
                                   "other pipeline options?")
            if not isinstance(fields, dict):
                raise DatagenError(f"dev item from {item.chunk.source}: the demo of {name!r} must be an object "
                                   "{field: value}")
            signature = predictors[name].signature
            kept = {key: value for key, value in fields.items() if key in signature.fields}
            if (any(key in signature.input_fields for key in kept)
                    and any(key in signature.output_fields for key in kept)):
                found.setdefault(name, []).append(dspy.Example(**kept))
    return found


def with_labeled_demos(program: dspy.Module, labeled: dict[str, list[dspy.Example]],
                       cap: int = MAX_DEMOS) -> dict[str, int]:
    """Put the `labeled` demos (see `labeled_demos`) first among each named predictor's demos, the program's own
    after them, at most `cap` in all; predictors the program lacks are passed over. Changes `program` in place and
    returns how many labeled demos each predictor got ({} when none)."""
    used: dict[str, int] = {}
    for name, predictor in program.named_predictors():
        human = labeled.get(name, [])[:cap]
        if human:
            predictor.demos = [*human, *(demo for demo in predictor.demos if demo not in human)][:cap]
            used[name] = len(human)
    return used


def count_labeled(program: dspy.Module, labeled: dict[str, list[dspy.Example]]) -> dict[str, int]:
    """How many of each predictor's demos are labeled ones (for the manifest)."""
    return {name: count for name, predictor in program.named_predictors()
            if (count := sum(demo in labeled.get(name, ()) for demo in predictor.demos))}


class _LogLines(io.TextIOBase):
    """Where optimizers' print() goes: debug log lines (shown by `datagen -v`), so stdout carries only results."""

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                log.debug("%s", line)
        return len(text)


class Session:
    """What every compile and held-out score of one optimize (or search) run shares: the dev set's splits, the
    models by role, the metric (the composite, of `metrics` alone when given: see Scorer's `parts`), one call
    counter over every role, so `max_calls` caps the whole run, and the candidate demos rejected, by reason."""

    def __init__(self, pipeline: str, dev: str | Path, optimizers, *, workspace: Path | None = None,
                 config: Config | None = None, options: dict | None = None, max_calls: int | None = None,
                 model: RoleModel | None = None, judge: RoleModel | None = None, prompt: RoleModel | None = None,
                 metrics: list[str] | None = None):
        for name in optimizers:
            if name not in OPTIMIZERS:
                raise DatagenError(f"unknown optimizer {name!r}: use one of {', '.join(OPTIMIZERS)}")
        if max_calls is not None and max_calls < 1:
            raise DatagenError(f"--max-calls must be at least 1, got {max_calls}")
        _require_optuna(optimizers)
        self.pipeline, self.dev, self.options = pipeline, dev, options or {}
        self.workspace = workspace or find_workspace()
        self.config = config or load_config(self.workspace)
        self.program = load_program(pipeline, self.workspace, options)
        self.items = read_devset(dev)
        self.train = [item for item in self.items if item.split != "val"]
        self.val = [item for item in self.items if item.split == "val"]
        if not self.train or not self.val:
            raise DatagenError(f"{dev}: needs items in both splits (\"split\": \"train\" and \"val\"); "
                               "datagen devset makes such a file")
        labeled_demos(self.val, self.program)  # checked, never used: val items stay held out
        self.labeled = labeled_demos(self.train, self.program)  # human-labeled demos (devset --from-review)
        self.model = bound_answers(self.program, task_model(self.config, model), self.config.chunking.max_tokens,
                                   [item.chunk for item in self.items])
        context = MetricContext(self.workspace, self.config, corpus=[item.chunk.text for item in self.items])
        if judge is not None:
            context.judge = judge
        self.scorer = Scorer(pipeline, context, [COMPOSITE], parts=metrics or None)
        self.prompt = None
        if any(name in PROPOSING for name in optimizers):
            self.prompt = prompt or role_model(self.config, "prompt")
            check_reachable(self.prompt)
        check_reachable(self.model)
        judged = [m for m in self.scorer.metrics if m.kind == "judge"]
        self.judge = context.judge if judged else None
        if self.judge:
            check_reachable(self.judge)
        self.judged = len(judged)
        self.per_example = len(self.program.named_predictors()) + self.judged
        self.counter = CallCounter(max_calls)
        for role, role_model_ in (("task", self.model), ("judge", self.judge), ("prompt", self.prompt)):
            if role_model_:
                self.counter.add(role, role_model_.lm)
        self.usage: Counter = Counter()  # tokens (prompt + completion) by model name
        self.rejected: Counter = Counter()  # candidate demos not kept, by reason (DemoCheck), every compile's

    def counting(self):
        """Every DSPy call inside counts against the cap (the caller's own callbacks kept)."""
        return dspy.context(callbacks=[*dspy.settings.get("callbacks", []), self.counter])

    def task_model(self, **settings) -> RoleModel:
        """The task model with other settings (e.g. temperature), its calls counted as the task role's."""
        if not settings:
            return self.model
        model = self.model.with_settings(**settings)
        self.counter.add("task", model.lm)
        return model

    def held_out(self, program: dspy.Module, label: str, *, items=None, model: RoleModel | None = None) -> dict:
        """The program's composite score on the val items (or `items`), by the session's scorer: the metric the
        optimizer climbs, its style metrics fitted once on the whole dev set (a score must not depend on how many
        items the val split happens to hold, nor a trial pay for fitting them again)."""
        result = evaluate(self.pipeline, self.dev, program=program, label=label, workspace=self.workspace,
                          config=self.config, model=model or self.model, split="val", items=items,
                          scorer=self.scorer)
        self._add_usage(result["usage"])
        return result

    def _add_usage(self, by_model: dict) -> None:
        for lm_name, usage in by_model.items():
            self.usage[lm_name] += (usage.get("prompt_tokens") or 0) + (usage.get("completion_tokens") or 0)

    def compile(self, program: dspy.Module, optimizer: str, *, seed: int = 0, demos: int = MAX_DEMOS,
                train=None, model: RoleModel | None = None) -> dspy.Module:
        """`program` tuned by `optimizer` on the train items (or `train`); tokens spent add to `usage`. The dev
        set's human-labeled demos then go first among each predictor's demos, `demos` in all at most."""
        trainset = [dspy.Example(chunk=item.chunk.text).with_inputs("chunk") for item in train or self.train]
        model = model or self.model
        check = DemoCheck(self.scorer.composite)
        try:
            # DSPy's optimizers re-raise a program's error once `max_errors` (default 10) have happened, which ended
            # a real SmolLM2-135M bootstrap with a traceback on its tenth unparseable answer. A failed run is a
            # rejected candidate here, counted below; what no item escapes (a bad key, no server) has already
            # stopped the held-out baseline before any compile.
            with (model.context(max_errors=UNLIMITED_ERRORS), track_usage() as tracker,
                  contextlib.redirect_stdout(_LogLines())):
                tuner = make_optimizer(optimizer, check, model, self.prompt, seed, demos)
                compiled = tuner.compile(program, trainset=trainset, **compile_kwargs(optimizer, trainset, seed))
        finally:
            self.rejected.update(check.rejected)
        # A candidate whose run raised (an answer that did not parse) never reached the check: DSPy counts those.
        self.rejected["program failed"] += getattr(tuner, "error_count", 0)
        self.rejected += Counter()  # no zero counts
        self._add_usage(tracker.get_total_tokens())
        with_labeled_demos(compiled, self.labeled, demos)
        return compiled

    def demos(self, program: dspy.Module) -> dict:
        """The bootstrapped demos `program` keeps by predictor (human-labeled ones left out), and the candidates
        rejected by reason in this session's compiles: {"kept": {...}, "rejected": {...}}."""
        labeled = count_labeled(program, self.labeled)
        kept = {name: len(predictor.demos) - labeled.get(name, 0) for name, predictor in program.named_predictors()}
        return {"kept": {name: n for name, n in kept.items() if n}, "rejected": dict(self.rejected.most_common())}

    def save(self, program: dspy.Module, name: str, before: dict, after: dict, settings: dict) -> tuple[Path, Path]:
        """compiled/PIPELINE/NAME.json with its manifest, and the held-out before/after evaluations beside it: as
        JSON (NAME.eval.json, for datagen view) and as an HTML report."""
        state = save_compiled(program, self.pipeline, name, self.workspace, {
            "options": settings.pop("options", self.options), **settings,
            "models": {"task": self.model.name, "judge": self.judge.name if self.judge else None,
                       "prompt": self.prompt.name if self.prompt else None},
            "program": program_fingerprint(program, self.model), "code": code_fingerprint(program),
            "dev": {"path": str(self.dev), "sha256": dev_hash(self.dev), "train": len(self.train),
                    "val": len(self.val)},
            "scores": {"before": composite_mean(before), "after": composite_mean(after)},
            "held_out": {"before": held_out_line(before), "after": held_out_line(after)},
            "metrics": dict(self.scorer.weights),  # the composite's parts and weights
            "labeled_demos": count_labeled(program, self.labeled),  # by predictor: human demos it kept
            "demos": self.demos(program),
            "calls": dict(self.counter.by_role), "cache_hits": dict(self.counter.cached)})
        held_out = {**after, "baseline": before}
        with replacing(evaluation_path(state)) as partial:
            partial.write_text(json.dumps(held_out, ensure_ascii=False, indent=1), encoding="utf-8")
        return state, write_report(held_out, report_path(state))


def optimize(pipeline: str, dev: str | Path, optimizer: str = "bootstrap", *, name: str | None = None,
             workspace: Path | None = None, config: Config | None = None, options: dict | None = None,
             max_calls: int | None = None, seed: int = 0, model: RoleModel | None = None,
             judge: RoleModel | None = None, prompt: RoleModel | None = None,
             on_estimate=None, metrics: list[str] | None = None) -> Result:
    """Compile `pipeline` with `optimizer` on the dev set's train items, score it before and after on its val
    items, and save it to compiled/PIPELINE/NAME.json (NAME defaults to the optimizer's) with an HTML report of
    both scores beside it. `on_estimate` gets the estimated LM calls before any is made. Models default to the
    task, judge and prompt roles'. `metrics`: the composite's parts (default: every metric weighted in it), with
    their configured weights renormalised, e.g. the offline ones alone when no capable judge is at hand; raises
    DatagenError for an unknown metric or one that does not count in the composite."""
    session = Session(pipeline, dev, [optimizer], workspace=workspace, config=config, options=options,
                      max_calls=max_calls, model=model, judge=judge, prompt=prompt, metrics=metrics)
    estimate = estimate_calls(optimizer, len(session.train), len(session.val), session.per_example,
                              judged=session.judged)
    if on_estimate:
        on_estimate(estimate)
    result = Result(None, {}, None, session.counter.by_role, estimate, usage=session.usage,
                    cached=session.counter.cached)
    try:
        with session.counting():
            result.before = session.held_out(session.program, "uncompiled")
            compiled = session.compile(session.program, optimizer, seed=seed)
            result.demos = session.demos(compiled)
            result.after = session.held_out(compiled, f"compiled ({optimizer})")
    except CallBudgetExhausted as exc:
        result.stopped = f"{exc}: stopped, nothing compiled (raise --max-calls; the estimate was {estimate})"
        result.demos = result.demos or {"kept": {}, "rejected": dict(session.rejected.most_common())}
        return result
    result.state, result.report = session.save(compiled, name or optimizer, result.before, result.after, {
        "optimizer": optimizer, "seed": seed, "max_calls": max_calls})
    return result


def composite_mean(evaluation: dict) -> float | None:
    return evaluation["metrics"][COMPOSITE]["mean"]


def held_out_line(evaluation: dict) -> str:
    """An evaluation's composite with its count, e.g. "0.130 (n 4, 3 failed: parse 2, dropped 1)", and the parts
    that failed on items, which count 0 in it without failing the item, e.g. "0.581 (n 2, 0 failed; parts failed,
    counted 0: content 2, genericness 2)"."""
    summary = evaluation["metrics"][COMPOSITE]
    mean = "-" if summary["mean"] is None else f"{summary['mean']:.3f}"
    kinds, parts = failure_kinds(summary), parts_failed_text(summary)
    return (f"{mean} (n {summary['n']}, {summary['failed']} failed{': ' + kinds if kinds else ''}"
            f"{'; ' + parts if parts else ''})")


def comparison(before: dict, after: dict) -> tuple[str, bool]:
    """The held-out comparison in words, and whether the compiled program is better: its composite mean over the
    same val items (each failed item counting 0 in both) is higher. E.g. ("before 0.130 (n 4, 3 failed: parse 3)
    -> after 0.540 (n 4, 0 failed): better", True)."""
    old, new = composite_mean(before), composite_mean(after)
    better = old is not None and new is not None and new > old
    verdict = "better" if better else ("the same" if new is not None and new == old else "not better")
    return f"before {held_out_line(before)} -> after {held_out_line(after)}: {verdict}", better
