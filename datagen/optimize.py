"""Optimizing a pipeline against a small dev set: DSPy optimizers climbing the pipeline's composite metric.

The dev set's train items are what the optimizer learns from; its val items are held out, and the program is
scored on them before and after with the same metric and judge, so the gain is measured rather than assumed.
Every LM call of every role counts against `max_calls`; the call that would pass it is refused before it is
sent.
"""

import hashlib
import importlib.util
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import dspy
from dspy.utils.callback import BaseCallback

from datagen.compiled import save_compiled
from datagen.config import Config, find_workspace, load_config
from datagen.devset import read_devset
from datagen.errors import DatagenError
from datagen.evaluate import evaluate
from datagen.generate import program_fingerprint
from datagen.models import RoleModel, check_reachable, role_model
from datagen.pipelines import load_program
from datagen.scoring import COMPOSITE, MetricContext, Scorer

OPTIMIZERS = ("bootstrap", "bootstrap-rs", "mipro", "gepa")
# Demos a bootstrapped program keeps per predictor: enough to show a style, few enough for a small context.
MAX_DEMOS = 3
RANDOM_SEARCH_CANDIDATES = 4
GEPA_METRIC_CALLS = 60


class CallBudgetExhausted(BaseException):
    """Raised by the LM call that would pass --max-calls. A BaseException, so that no optimizer's
    `except Exception` (nor DSPy's callback guard) can swallow it and carry on spending."""


class CallCounter(BaseCallback):
    """Counts every LM call by role and refuses the one that would pass `limit`."""

    def __init__(self, roles: dict[int, str], limit: int | None):
        self.roles = roles  # id(lm) -> role
        self.limit = limit
        self.by_role: Counter = Counter()
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        return sum(self.by_role.values())

    def on_lm_start(self, call_id, instance, inputs):
        with self._lock:
            if self.limit is not None and self.total >= self.limit:
                raise CallBudgetExhausted(f"--max-calls {self.limit} reached")
            self.by_role[self.roles.get(id(instance), "other")] += 1


@dataclass
class Result:
    state: Path | None
    before: dict
    after: dict | None
    calls: Counter
    estimate: int
    stopped: str | None = None
    usage: dict = field(default_factory=dict)


def estimate_calls(optimizer: str, train: int, val: int, per_example: int) -> int:
    """A reading of what the preset will spend, before it starts: LM calls of every role, both held-out
    evaluations included. `per_example` is one program run plus the judge calls of one metric score."""
    evaluations = 2 * val * per_example
    if optimizer == "bootstrap":  # each train item is tried once until MAX_DEMOS pass
        return evaluations + train * per_example
    if optimizer == "bootstrap-rs":  # each candidate bootstraps, then is scored on the train set
        return evaluations + (RANDOM_SEARCH_CANDIDATES + 3) * 2 * train * per_example
    if optimizer == "mipro":  # MIPROv2 light: demo sets, ~10 instruction proposals, ~10 minibatch trials
        return evaluations + 6 * train * per_example + 12 + 10 * min(35, val) * per_example + val * per_example
    return evaluations + GEPA_METRIC_CALLS * per_example + GEPA_METRIC_CALLS // 3  # gepa: + reflections


def _optimizer(name: str, metric, prompt: RoleModel | None, seed: int):
    """The DSPy optimizer for a preset, set for unlabeled dev sets: no labeled demos (input-only demos would be
    silently dropped), and a pass/fail verdict while bootstrapping (the composite gives one under `trace`)."""
    if name == "bootstrap":
        return dspy.BootstrapFewShot(metric=metric, max_bootstrapped_demos=MAX_DEMOS, max_labeled_demos=0,
                                     max_rounds=1)
    if name == "bootstrap-rs":
        return dspy.BootstrapFewShotWithRandomSearch(metric=metric, max_bootstrapped_demos=MAX_DEMOS,
                                                     max_labeled_demos=0, num_candidate_programs=RANDOM_SEARCH_CANDIDATES,
                                                     num_threads=1)
    if name == "mipro":
        return dspy.MIPROv2(metric=metric, prompt_model=prompt.lm, auto="light", max_bootstrapped_demos=MAX_DEMOS,
                            max_labeled_demos=0, num_threads=1, seed=seed, verbose=False)
    return dspy.GEPA(metric=metric.gepa, reflection_lm=prompt.lm, max_metric_calls=GEPA_METRIC_CALLS,
                     num_threads=1, seed=seed)


def _require_optuna(optimizer: str) -> None:
    """MIPROv2 imports optuna only at its third step, after spending LM calls: check before the first."""
    if optimizer == "mipro" and importlib.util.find_spec("optuna") is None:
        raise DatagenError("the mipro optimizer needs optuna: pip install 'optuna>=4,<5'")


def dev_hash(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def optimize(pipeline: str, dev: str | Path, optimizer: str = "bootstrap", *, name: str | None = None,
             workspace: Path | None = None, config: Config | None = None, options: dict | None = None,
             max_calls: int | None = None, seed: int = 0, model: RoleModel | None = None,
             judge: RoleModel | None = None, prompt: RoleModel | None = None,
             on_estimate=None) -> Result:
    """Compile `pipeline` with `optimizer` on the dev set's train items, score it before and after on its val
    items, and save it to compiled/PIPELINE/NAME.json (NAME defaults to the optimizer's). `on_estimate` gets
    the estimated LM calls before any is made. Models default to the task, judge and prompt roles'."""
    if optimizer not in OPTIMIZERS:
        raise DatagenError(f"unknown optimizer {optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
    if max_calls is not None and max_calls < 1:
        raise DatagenError(f"--max-calls must be at least 1, got {max_calls}")
    _require_optuna(optimizer)
    workspace = workspace or find_workspace()
    config = config or load_config(workspace)
    program = load_program(pipeline, workspace, options)
    items = read_devset(dev)
    train = [item for item in items if item.split != "val"]
    val = [item for item in items if item.split == "val"]
    if not train or not val:
        raise DatagenError(f"{dev}: needs items in both splits (\"split\": \"train\" and \"val\"); "
                           "datagen devset makes such a file")
    model = model or role_model(config, "task")
    context = MetricContext(workspace, config, corpus=[item.chunk.text for item in items])
    if judge is not None:
        context.judge = judge
    scorer = Scorer(pipeline, context, [COMPOSITE])
    if optimizer in ("mipro", "gepa"):  # the optimizers that ask a model to write instructions
        prompt = prompt or role_model(config, "prompt")
        check_reachable(prompt)
    check_reachable(model)
    judged = [m for m in scorer.metrics if m.kind == "judge"]
    if judged:
        check_reachable(context.judge)
    per_example = len(program.named_predictors()) + len(judged)
    estimate = estimate_calls(optimizer, len(train), len(val), per_example)
    if on_estimate:
        on_estimate(estimate)

    roles = {id(model.lm): "task", **({id(prompt.lm): "prompt"} if prompt else {})}
    if judged:
        roles[id(context.judge.lm)] = "judge"
    counter = CallCounter(roles, max_calls)
    callbacks = [*dspy.settings.get("callbacks", []), counter]
    result = Result(None, {}, None, counter.by_role, estimate)
    held_out = dict(workspace=workspace, config=config, model=model, judge=context.judge if judged else None,
                    metrics=[COMPOSITE], split="val")
    try:
        with dspy.context(callbacks=callbacks):
            result.before = evaluate(pipeline, dev, program=program, label="uncompiled", **held_out)
            trainset = [dspy.Example(chunk=item.chunk.text).with_inputs("chunk") for item in train]
            with model.context(), dspy.track_usage() as tracker:
                compiled = _optimizer(optimizer, scorer.composite, prompt, seed).compile(
                    program, trainset=trainset, **({"valset": trainset} if optimizer == "gepa" else {}))
            result.usage = tracker.get_total_tokens()
            result.after = evaluate(pipeline, dev, program=compiled, label=f"compiled ({optimizer})", **held_out)
    except CallBudgetExhausted as exc:
        result.stopped = f"{exc}: stopped, nothing compiled (raise --max-calls; the estimate was {estimate})"
        return result
    result.state = save_compiled(compiled, pipeline, name or optimizer, workspace, {
        "options": options or {}, "optimizer": optimizer, "seed": seed, "max_calls": max_calls,
        "models": {"task": model.name, "judge": context.judge.name if judged else None, "prompt": prompt.name if prompt else None},
        "program": program_fingerprint(compiled, model), "dev": {"path": str(dev), "sha256": dev_hash(dev),
                                                                 "train": len(train), "val": len(val)},
        "scores": {"before": _mean(result.before), "after": _mean(result.after)},
        "calls": dict(counter.by_role)})
    return result


def _mean(evaluation: dict) -> float | None:
    return evaluation["metrics"][COMPOSITE]["mean"]
