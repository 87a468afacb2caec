"""The objects-first API: evaluate and optimize a dspy.Module with a metric of your own, or a pipeline by name.

`datagen.generate` (datagen/runs/generate.py) takes a program object or a pipeline name as it is; `evaluate` and
`optimize` here take a program (a dspy.Module whose `forward(chunk: str)` returns a dspy.Prediction with
`samples`, or a pipeline name), a dev set (a dev.jsonl file, or the chunks themselves) and a metric, and return
typed results. A metric follows DSPy's convention, `metric(example, prediction, trace=None) -> float | bool`,
where `example.chunk` is the chunk's text and `prediction.samples` the program's samples; datagen's
`Composite` is one. With no metric, a named pipeline is scored by its own metrics (metrics/NAME.py).

With no model given, the task model is the LM set by `dspy.configure`/`dspy.context`, else the workspace's
datagen.toml, else the embedded model (see `datagen.lm.roles.task_model`).
"""

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import dspy

from datagen.text.chunking import Chunk, chunk_id
from datagen.workspace.compiled import load_compiled
from datagen.workspace.config import Config, find_workspace, load_config
from datagen.dataset.devset import DevItem, read_devset
from datagen.errors import DatagenError
from datagen.tuning.evaluate import evaluate as evaluate_pipeline
from datagen.tuning.evaluate import item_failures, sample_record, summarize, total_usage
from datagen.runs.generate import bound_answers, run_chunks
from datagen.lm.roles import RoleModel, as_role_model, check_reachable, role_model, task_model, track_usage
from datagen.tuning.optimize import (MAX_DEMOS, OPTIMIZERS, PROPOSING, CallBudgetExhausted, CallCounter, DemoCheck,
                              compile_kwargs, composite_mean, labeled_demos, make_optimizer, with_labeled_demos)
from datagen.tuning.optimize import optimize as optimize_pipeline
from datagen.workspace.pipelines import load_program
from datagen.metrics.base import Score
from datagen.metrics.scoring import COMPOSITE

Metric = Callable[..., "float | bool"]
DevSet = str | Path | Iterable[DevItem | dspy.Example | str]


@dataclass
class Evaluation:
    """What `evaluate` measured. `metrics`: {metric name: {"kind", "n", "failed", "failures", "samples", "mean",
    "std", "min", "max"}} over every dev item, an item that failed counting 0 (see `datagen.tuning.evaluate.summarize`;
    values in [0, 1] for datagen's metrics; whatever the metric returns otherwise); `samples`:
    one dict per sample (chunk_id, chunk, input, output, scores {name: {"value", "feedback"}}); `failures`: the
    dev items that made no sample (chunk_id, kind, message); `usage`: tokens by model name
    ({"prompt_tokens", "completion_tokens"}); `models`: model names by role."""

    program: str
    dev: str
    metrics: dict[str, dict]
    samples: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    usage: dict[str, dict] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)
    pipeline: str = ""
    created: str = ""

    @property
    def score(self) -> float | None:
        """The headline number: the composite's mean when scored with one, else the only metric's mean."""
        if COMPOSITE in self.metrics:
            return self.metrics[COMPOSITE]["mean"]
        means = [summary["mean"] for summary in self.metrics.values()]
        return means[0] if len(means) == 1 else None

    def as_dict(self) -> dict:
        """The JSON-able form `datagen.tuning.evaluate.write_evaluation` and the HTML report take."""
        return {"pipeline": self.pipeline, "program": self.program, "dev": self.dev, "created": self.created,
                "models": self.models, "metrics": self.metrics, "failures": self.failures,
                "samples": self.samples, "usage": self.usage}

    @classmethod
    def from_dict(cls, result: dict) -> "Evaluation":
        return cls(program=result["program"], dev=result["dev"], metrics=result["metrics"],
                   samples=result["samples"], failures=result["failures"], usage=result["usage"],
                   models=result["models"], pipeline=result["pipeline"], created=result["created"])


@dataclass
class Optimization:
    """What `optimize` made: the compiled `program` (None when stopped by `max_calls`), its score on the val
    items `before` and `after` compiling (means of the metric over every val item, a failed one counting 0), the
    LM requests sent by role (`calls`; `cached`: calls answered from DSPy's cache, which send none), tokens by
    model name (`usage`), the bootstrapped `demos` ({"kept": {predictor: n}, "rejected": {reason: n}}: see
    `datagen.tuning.optimize.DemoCheck`), and, for a named pipeline, the compiled state file and its HTML report."""

    program: dspy.Module | None
    before: float | None
    after: float | None
    calls: Counter
    usage: Counter = field(default_factory=Counter)
    stopped: str | None = None
    state: Path | None = None
    report: Path | None = None
    cached: Counter = field(default_factory=Counter)
    demos: dict = field(default_factory=dict)


def dev_items(devset: DevSet, split: str | None = None) -> list[DevItem]:
    """The dev set as items: a dev.jsonl file (see `datagen devset`), or DevItems, dspy.Examples with a `chunk`
    field (an optional `split`, "train" or "val") or plain chunk texts; only `split`'s items when given. Raises
    DatagenError for an item of another kind."""
    if isinstance(devset, (str, Path)):
        return read_devset(devset, split)
    items = []
    for index, item in enumerate(devset):
        if isinstance(item, dspy.Example):
            item = DevItem(_chunk(item.get("chunk"), index), item.get("split"))
        elif isinstance(item, str):
            item = DevItem(_chunk(item, index))
        elif not isinstance(item, DevItem):
            raise DatagenError(f"dev set item {index}: expected a DevItem, a dspy.Example with a chunk, or a "
                               f"string, got {type(item).__name__}")
        items.append(item)
    return [item for item in items if split in (None, item.split)]


def _chunk(text, index: int) -> Chunk:
    if not isinstance(text, str) or not text.strip():
        raise DatagenError(f"dev set item {index}: its chunk is missing or empty")
    return Chunk(chunk_id(text), f"<dev item {index}>", 0, len(text), text, 0)


def _metric_name(metric: Metric) -> str:
    return getattr(metric, "__name__", None) or type(metric).__name__


def _score_outcomes(metric: Metric, outcomes) -> None:
    """Each finished outcome scored by `metric` on its prediction, as one Score per sample."""
    name = _metric_name(metric)
    for outcome in outcomes:
        if outcome.failure is None:
            example = dspy.Example(chunk=outcome.chunk.text).with_inputs("chunk")
            value = float(metric(example, dspy.Prediction(samples=outcome.samples, **outcome.outputs)))
            outcome.scores = [{name: Score(value)} for _ in outcome.samples]


def evaluate(program: "str | dspy.Module", devset: DevSet, metric: Metric | None = None, *,
             model: "RoleModel | dspy.LM | None" = None, split: str | None = None, concurrency: int = 1,
             workspace: Path | None = None, config: Config | None = None, options: dict | None = None,
             metrics: list[str] | None = None) -> Evaluation:
    """Run `program` on every dev item (`split`'s only, when given) and score what it made.

    `program`: a dspy.Module, or a pipeline name (built with `options`). `devset`: see `dev_items`. `metric`: a
    DSPy-convention metric (`metric(example, prediction, trace=None)`, higher is better), called once per item
    the program did not fail on (an item it failed on counts 0); without one, a named pipeline's own metrics
    score each sample (`metrics` names some of them, as `datagen evaluate --metric` does: default all, and the
    composite; the composite named with metrics that count in it is made of those, weights renormalised), their
    style metrics fitted on the whole dev set whatever `split` is scored. `concurrency`: items in flight.

    Returns an `Evaluation`. Raises DatagenError for a program object without a metric, an unknown pipeline or
    metric, or a bad dev set."""
    workspace = workspace or find_workspace()
    config = config or load_config(workspace)
    if metric is None:
        if not isinstance(program, str):
            raise DatagenError(f"evaluate: a program object ({type(program).__name__}) needs a metric")
        return Evaluation.from_dict(evaluate_pipeline(
            program, str(devset) if isinstance(devset, (str, Path)) else "(items)", workspace=workspace,
            config=config, options=options, metrics=metrics, concurrency=concurrency, model=model,
            items=dev_items(devset), split=split))
    if metrics:
        raise DatagenError("evaluate: give `metric` or `metrics` (a pipeline's metric names), not both")
    name, module = _module(program, workspace, options)
    items = dev_items(devset, split)
    run_model = bound_answers(module, task_model(config, model), config.chunking.max_tokens, [i.chunk for i in items])
    check_reachable(run_model)
    outcomes = list(run_chunks(module, run_model, (item.chunk for item in items), concurrency, ordered=True,
                               every=True))
    _score_outcomes(metric, outcomes)
    result = _result(name, devset, run_model, {_metric_name(metric): "metric"}, outcomes)
    return Evaluation.from_dict(result)


def _module(program: "str | dspy.Module", workspace: Path, options: dict | None) -> tuple[str, dspy.Module]:
    if isinstance(program, dspy.Module):
        if options:
            raise DatagenError(f"options apply to a pipeline given by name, not to {type(program).__name__}")
        return type(program).__name__, program
    if isinstance(program, str):
        return program, load_program(program, workspace, options)
    raise DatagenError(f"program {program!r}: expected a dspy.Module or a pipeline name")


def _result(name: str, devset, model: RoleModel, kinds: dict[str, str], outcomes) -> dict:
    """The evaluation's record, in the form `datagen.tuning.evaluate.evaluate` gives."""
    return {"pipeline": name, "program": name, "dev": str(devset) if isinstance(devset, (str, Path)) else "(items)",
            "created": datetime.now(UTC).isoformat(timespec="seconds"), "models": {"task": model.name},
            "metrics": summarize(kinds, outcomes),
            "failures": item_failures(outcomes),
            "samples": [sample_record(o, index) for o in outcomes for index in range(len(o.samples))],
            "usage": total_usage(outcomes)}


def optimize(program: "str | dspy.Module", devset: DevSet, metric: Metric | None = None, *,
             optimizer: str = "bootstrap", model: "RoleModel | dspy.LM | None" = None,
             prompt: "RoleModel | dspy.LM | None" = None, max_calls: int | None = None, seed: int = 0,
             demos: int = MAX_DEMOS, workspace: Path | None = None, config: Config | None = None,
             options: dict | None = None, name: str | None = None, metrics: list[str] | None = None) -> Optimization:
    """Compile `program` with a DSPy optimizer on the dev set's train items against `metric`, and score it on
    the val items before and after (items without a split count as train).

    `program`: a dspy.Module (left as it is: the compiled program is a copy), or a pipeline name. `devset`: see
    `dev_items`; it needs items in both splits. `metric`: DSPy's convention (a float for evaluation; while
    bootstrapping any truthy value passes a demo, from a run that dropped no candidate and made samples: see
    `datagen.tuning.optimize.DemoCheck`). Without a metric, a named pipeline is optimized against its composite by
    `datagen.tuning.optimize.optimize`, which also saves compiled/PIPELINE/NAME.json with a manifest and report (`name`
    defaults to the optimizer's); `metrics` then names the composite's parts (default: every metric it weighs),
    e.g. the offline ones alone when no capable judge is at hand. `optimizer`: one of bootstrap, bootstrap-rs,
    mipro, gepa, copro, simba (the last four need the `prompt` model, default: the config's prompt role).
    `max_calls` caps the LM requests sent, of every role (a call DSPy's cache answers sends none: `cached`): the
    request that would pass it is refused and nothing is compiled (`stopped` says so). `demos`:
    with `metric`, bootstrapped demos kept per predictor (default 3; a named pipeline's composite keeps 3). A
    reviewed dev set (`datagen devset --from-review`) gives human-labeled demos: its train items' go first among
    each predictor's demos after compiling (`datagen.tuning.optimize.with_labeled_demos`, within the same cap).

    Returns an `Optimization`. Raises DatagenError for an unknown optimizer, a dev set lacking a split, a dev
    set with demos for a predictor the program lacks, a program object without a metric, `metrics` with a
    `metric`, or an unknown metric name."""
    workspace = workspace or find_workspace()
    config = config or load_config(workspace)
    if optimizer not in OPTIMIZERS:
        raise DatagenError(f"unknown optimizer {optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
    if metric is None:
        if not isinstance(program, str) or not isinstance(devset, (str, Path)):
            raise DatagenError("optimize: without a metric, give a pipeline name and a dev.jsonl file "
                               "(its metrics/NAME.py scores it)")
        result = optimize_pipeline(program, devset, optimizer, name=name, workspace=workspace, config=config,
                                   options=options, max_calls=max_calls, seed=seed,
                                   model=None if model is None else as_role_model(model),
                                   prompt=None if prompt is None else as_role_model(prompt, "prompt"),
                                   metrics=metrics)
        compiled = load_compiled(program, result.state, workspace) if result.state is not None else None
        return Optimization(compiled, result.before and composite_mean(result.before),
                            result.after and composite_mean(result.after),
                            result.calls, result.usage, result.stopped, result.state, result.report,
                            result.cached, result.demos)
    if metrics:
        raise DatagenError("optimize: give `metric` or `metrics` (a pipeline's metric names), not both")
    _, module = _module(program, workspace, options)
    items = dev_items(devset)
    train = [item for item in items if item.split != "val"]
    val = [item for item in items if item.split == "val"]
    if not train or not val:
        raise DatagenError("optimize: the dev set needs items in both splits (\"split\": \"train\" and \"val\")")
    labeled_demos(val, module)  # checked, never used: val items stay held out
    labeled = labeled_demos(train, module)  # a reviewed dev set's human demos (datagen devset --from-review)
    run_model = bound_answers(module, task_model(config, model), config.chunking.max_tokens, [i.chunk for i in items])
    proposer = None
    if optimizer in PROPOSING:
        proposer = as_role_model(prompt, "prompt") if prompt is not None else role_model(config, "prompt")
    counter = CallCounter(max_calls)
    for role, role_model_ in (("task", run_model), ("prompt", proposer)):
        if role_model_:
            counter.add(role, role_model_.lm)
    usage: Counter = Counter()
    result = Optimization(None, None, None, counter.by_role, usage, cached=counter.cached)

    def held_out(candidate: dspy.Module) -> float | None:
        outcomes = list(run_chunks(candidate, run_model, (item.chunk for item in val), ordered=True, every=True))
        _score_outcomes(metric, outcomes)
        for by_model in (o.usage for o in outcomes):
            for lm_name, used in by_model.items():
                usage[lm_name] += (used.get("prompt_tokens") or 0) + (used.get("completion_tokens") or 0)
        name = _metric_name(metric)
        return summarize({name: "metric"}, outcomes)[name]["mean"]  # every val item, a failed one 0

    trainset = [dspy.Example(chunk=item.chunk.text).with_inputs("chunk") for item in train]
    try:
        with dspy.context(callbacks=[*dspy.settings.get("callbacks", []), counter]):
            result.before = held_out(module)
            check = DemoCheck(metric)
            with run_model.context(), track_usage() as tracker:
                tuner = make_optimizer(optimizer, check, run_model, proposer, seed, demos)
                compiled = tuner.compile(module.deepcopy(), trainset=trainset,
                                         **compile_kwargs(optimizer, trainset, seed))
            with_labeled_demos(compiled, labeled, demos)
            result.demos = {"kept": {name: len(p.demos) for name, p in compiled.named_predictors() if p.demos},
                            "rejected": dict(check.rejected.most_common())}
            for lm_name, used in tracker.get_total_tokens().items():
                usage[lm_name] += (used.get("prompt_tokens") or 0) + (used.get("completion_tokens") or 0)
            result.after = held_out(compiled)
    except CallBudgetExhausted as exc:
        result.stopped = f"{exc}: stopped, nothing compiled"
        return result
    result.program = compiled
    return result

