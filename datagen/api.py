"""The objects-first API: evaluate and optimize a dspy.Module with a metric of your own, or a pipeline by name.

`datagen.generate` (datagen/runs/generate.py) takes a program object or a pipeline name as it is; `evaluate` and
`optimize` here take a program (a dspy.Module whose `forward(chunk: str)` returns a dspy.Prediction with
`samples`, or a pipeline name), a dev set (a dev.jsonl file, or the chunks themselves) and a metric, and return
typed results. A metric follows DSPy's convention, `metric(example, prediction, trace=None) -> float | bool`,
where `example.chunk` is the chunk's text and `prediction.samples` the program's samples; datagen's
`Composite` is one. With no metric, a named pipeline is scored by its own metrics (metrics/NAME.py).

They run the code `datagen evaluate` and `datagen optimize` run (datagen.tuning), and give its results typed.

With no model given, the task model is the LM set by `dspy.configure`/`dspy.context`, else the workspace's
datagen.toml, else the embedded model (see `datagen.lm.roles.task_model`).
"""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import dspy

from datagen.dataset import DevItem, read_devset
from datagen.errors import DatagenError
from datagen.lm import RoleModel, as_role_model
from datagen.metrics import COMPOSITE, diversity_bar
from datagen.text import Chunk, chunk_id
from datagen.tuning import (MAX_DEMOS, DSPyMetric, Evaluator, MetricScorer, Result, Session, check_optimizers,
                            dev_label, evaluate_pipeline, optimize_pipeline)
from datagen.workspace import Config, find_workspace, load_compiled, load_config, resolve_program

DevSet = str | Path | Iterable[DevItem | dspy.Example | str]


@dataclass
class Evaluation:
    """What `evaluate` measured.

    Attributes:
        program: how the program is named: a pipeline's or a program object's class name, or a compiled state.
        dev: how the dev set is named: its file, or "(items)".
        metrics: {metric name: {"kind", "n", "failed", "failures", "samples", "mean", "std", "min", "max"}} over
            every dev item, an item that failed counting 0 (see `datagen.tuning.evaluate.summarize_metrics`);
            values in [0, 1] for datagen's metrics, whatever the metric returns otherwise.
        samples: one dict per sample (chunk_id, chunk, input, output, scores {name: {"value", "feedback"}});
            default [].
        failures: the dev items that made no sample (chunk_id, kind, message); default [].
        usage: tokens by model name ({"prompt_tokens", "completion_tokens"}); default {}.
        models: model names by role; default {}.
        pipeline: the pipeline's name (a program object's class name); default "".
        created: when it was made (ISO 8601, UTC); default "".
        diversity: each sample field's diversity beside the dev chunks', {"input": {"samples", "source",
            "narrowed"}, "output": ...} (a `datagen.dataset.quality.Comparison` as a dict); default {} (no sample).
        diversity_bar: a named pipeline's diversity bar and its verdict, {"opening_share", "distinct_2", "fields",
            "met", "broken"} (met: True, False, or None when nothing was measured; broken: a sentence per
            breach), or None (the default) without a bar (see `datagen.tuning.diversity_report`).
    """

    program: str
    dev: str
    metrics: dict[str, dict]
    samples: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    usage: dict[str, dict] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)
    pipeline: str = ""
    created: str = ""
    diversity: dict[str, dict] = field(default_factory=dict)
    diversity_bar: dict | None = None

    @property
    def score(self) -> float | None:
        """The headline number: the composite's mean when scored with one, else the only metric's mean.

        Returns:
            The composite's mean (in [0, 1]); else the mean of the only metric; None when several metrics and no
            composite were measured, or none.
        """
        if COMPOSITE in self.metrics:
            return self.metrics[COMPOSITE]["mean"]
        means = [summary["mean"] for summary in self.metrics.values()]
        return means[0] if len(means) == 1 else None

    def as_dict(self) -> dict:
        """The JSON-able form `datagen.tuning.write_evaluation` and the HTML report take.

        Returns:
            {"pipeline", "program", "dev", "created", "models", "metrics", "failures", "samples", "usage",
            "diversity", "diversity_bar"}: the fields, by name (the containers themselves, not copies).
        """
        return {"pipeline": self.pipeline, "program": self.program, "dev": self.dev, "created": self.created,
                "models": self.models, "metrics": self.metrics, "failures": self.failures,
                "samples": self.samples, "usage": self.usage, "diversity": self.diversity,
                "diversity_bar": self.diversity_bar}

    @classmethod
    def from_dict(cls, result: dict) -> "Evaluation":
        """The Evaluation of an evaluation record (`as_dict()`'s form, as datagen.tuning.evaluate makes it).

        Args:
            result: the record, with every key `as_dict()` writes (other keys are ignored; "diversity" and
                "diversity_bar" may be missing, in a record written before they were measured).

        Returns:
            The `Evaluation` holding the record's values.

        Raises:
            KeyError: the record lacks one of those keys.
        """
        return cls(program=result["program"], dev=result["dev"], metrics=result["metrics"],
                   samples=result["samples"], failures=result["failures"], usage=result["usage"],
                   models=result["models"], pipeline=result["pipeline"], created=result["created"],
                   diversity=result.get("diversity") or {}, diversity_bar=result.get("diversity_bar"))


@dataclass
class Optimization:
    """What `optimize` made.

    Attributes:
        program: the compiled program (None when stopped by `max_calls`).
        before: the metric's mean on the val items before compiling (a failed item counting 0), or None.
        after: the same, after compiling, or None.
        calls: the LM requests sent, by role (a Counter).
        usage: tokens by model name (a Counter); default empty.
        stopped: why nothing was compiled, or None (the default).
        state: for a named pipeline, the compiled state file; default None.
        report: for a named pipeline, the HTML report of the held-out scores; default None.
        cached: calls answered from DSPy's cache (which send no request), by role (a Counter); default empty.
        demos: the bootstrapped demos, {"kept": {predictor: n}, "rejected": {reason: n}} (see
            `datagen.tuning.DemoCheck`); default {}.
    """

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


def _as_given(devset: DevSet) -> str | Path | list[DevItem]:
    """A dev.jsonl file as it is (its path names it in the results), anything else as its items."""
    return devset if isinstance(devset, (str, Path)) else dev_items(devset)


def evaluate(program: "str | dspy.Module", devset: DevSet, metric: DSPyMetric | None = None, *,
             model: "RoleModel | dspy.LM | None" = None, split: str | None = None, concurrency: int = 1,
             workspace: Path | None = None, config: Config | None = None, options: dict | None = None,
             metrics: list[str] | None = None) -> Evaluation:
    """Run a program on every dev item (of one split, when given) and score what it made.

    Args:
        program: a dspy.Module, or a pipeline name (built with `options`).
        devset: a dev.jsonl file, or DevItems, dspy.Examples with a `chunk` field (and optionally a `split`) or
            chunk texts (see `dev_items`).
        metric: a DSPy-convention metric (`metric(example, prediction, trace=None)`, higher is better), called once
            per item the program did not fail on (an item it failed on counts 0). Without one, a named pipeline's
            own metrics score each sample, their style metrics fitted on the whole dev set whatever `split` is
            scored.
        model: the task model (a dspy.LM or a RoleModel); default: the LM dspy is configured with, else the
            workspace's task role, else the embedded model.
        split: score only this split's items ("train" or "val"); default None: every item.
        concurrency: items in flight at once; default 1.
        workspace: the workspace; default: found from the current folder.
        config: its configuration; default: its datagen.toml.
        options: a named pipeline's options (keyword arguments of its constructor); default None.
        metrics: without `metric`, which of a named pipeline's metrics score it, as `datagen evaluate --metric`
            names them: default all, and the composite; the composite named with metrics that count in it is made
            of those, weights renormalised.

    Returns:
        An `Evaluation`.

    Raises:
        DatagenError: a program object without a metric, `metric` with `metrics`, an unknown pipeline or metric,
            options given with a program object, or a bad dev set.
        PipelineNotFound: `program` names no pipeline of the workspace nor a built-in one.
        InputError: the dev set file is missing, unreadable or empty, or has no items in `split`.
        ConfigError: the workspace's datagen.toml or a DATAGEN_ variable is invalid (with no `config` given).
        ModelUnreachable: the task model's server (or a judge's) does not answer.
    """
    workspace = workspace or find_workspace()
    config = config or load_config(workspace)
    if metric is None:
        if not isinstance(program, str):
            raise DatagenError(f"evaluate: a program object ({type(program).__name__}) needs a metric")
        return Evaluation.from_dict(evaluate_pipeline(
            program, _as_given(devset), workspace=workspace, config=config, options=options, metrics=metrics,
            concurrency=concurrency, model=model, split=split))
    if metrics:
        raise DatagenError("evaluate: give `metric` or `metrics` (a pipeline's metric names), not both")
    name, module = resolve_program(program, workspace, options)
    bar = diversity_bar(name, workspace, config) if isinstance(program, str) else None  # a pipeline's own
    evaluator = Evaluator(name, dev_items(devset), MetricScorer(metric), config, dev=dev_label(devset), split=split,
                          concurrency=concurrency, bar=bar)
    return Evaluation.from_dict(evaluator(module, name, model=model))


def optimize(program: "str | dspy.Module", devset: DevSet, metric: DSPyMetric | None = None, *,
             optimizer: str = "bootstrap", model: "RoleModel | dspy.LM | None" = None,
             prompt: "RoleModel | dspy.LM | None" = None, max_calls: int | None = None, seed: int = 0,
             demos: int = MAX_DEMOS, workspace: Path | None = None, config: Config | None = None,
             options: dict | None = None, name: str | None = None, metrics: list[str] | None = None,
             max_cost: float | None = None) -> Optimization:
    """Compile a program with a DSPy optimizer on the dev set's train items, and score it on the val items before
    and after (items without a split count as train).

    A reviewed dev set (`datagen devset --from-review`) gives human-labeled demos: its train items' go first among
    each predictor's demos after compiling, within the same cap (`datagen.tuning.with_labeled_demos`).

    Args:
        program: a dspy.Module (left as it is: a copy is compiled), or a pipeline name.
        devset: as for `evaluate`; it needs items in both splits.
        metric: a DSPy-convention metric: a float when scoring; while bootstrapping, any truthy value passes a
            demo from a run that dropped no candidate and made samples (see `datagen.tuning.DemoCheck`). Without
            one, a named pipeline and a dev.jsonl file are optimized against the pipeline's composite as
            `datagen optimize` does, which also saves compiled/PIPELINE/NAME.json with a manifest and report.
        optimizer: bootstrap, bootstrap-rs, mipro, gepa, copro or simba (the last four ask the `prompt` model);
            default "bootstrap".
        model: the task model; default as for `evaluate`.
        prompt: the model that proposes instructions; default: the config's prompt role.
        max_calls: a cap on the LM requests sent, every role's (a call DSPy's cache answers sends none: `cached`):
            the request that would pass it is refused and nothing is compiled (`stopped` says so); default None:
            no cap.
        max_cost: a cap on the US dollars spent, every role's tokens priced at the role's price as each request
            comes back: the request that would start once the spend has reached it is refused and nothing is
            compiled; every role's model needs a price (ConfigError otherwise); default None: no cap.
        seed: the optimizer's seed; default 0.
        demos: with `metric`, the bootstrapped demos kept per predictor; default `MAX_DEMOS` (a named pipeline's
            composite keeps 3).
        workspace: the workspace; default: found from the current folder.
        config: its configuration; default: its datagen.toml.
        options: a named pipeline's options (keyword arguments of its constructor); default None.
        name: without `metric`, the compiled program's NAME (default: the optimizer's).
        metrics: without `metric`, the composite's parts (default: every metric it weighs), e.g. the offline ones
            alone when no capable judge is at hand.

    Returns:
        An `Optimization`.

    Raises:
        DatagenError: an unknown optimizer, a dev set lacking a split, a dev set with demos for a predictor the
            program lacks, a program object without a metric, `metrics` with a `metric`, or an unknown metric name.
        PipelineNotFound: `program` names no pipeline of the workspace nor a built-in one.
        InputError: the dev set file is missing, unreadable or empty.
        ConfigError: the workspace's datagen.toml or a DATAGEN_ variable is invalid (with no `config` given).
        ModelUnreachable: a model's server does not answer.
    """
    workspace = workspace or find_workspace()
    config = config or load_config(workspace)
    check_optimizers([optimizer])
    if metric is None:
        if not isinstance(program, str) or not isinstance(devset, (str, Path)):
            raise DatagenError("optimize: without a metric, give a pipeline name and a dev.jsonl file "
                               "(its metrics/NAME.py scores it)")
        result = optimize_pipeline(program, devset, optimizer, name=name, workspace=workspace, config=config,
                                   options=options, max_calls=max_calls, max_cost=max_cost, seed=seed,
                                   model=None if model is None else as_role_model(model),
                                   prompt=None if prompt is None else as_role_model(prompt, "prompt"),
                                   metrics=metrics)
        compiled = load_compiled(program, result.state, workspace) if result.state is not None else None
        return _optimization(result, compiled)
    if metrics:
        raise DatagenError("optimize: give `metric` or `metrics` (a pipeline's metric names), not both")
    session = Session(program.deepcopy() if isinstance(program, dspy.Module) else program, _as_given(devset),
                      [optimizer], metric=metric, workspace=workspace, config=config, options=options,
                      max_calls=max_calls, max_cost=max_cost, model=model,
                      prompt=None if prompt is None else as_role_model(prompt, "prompt"))
    result = session.tune(optimizer, seed=seed, demos=demos)
    return _optimization(result, result.program)


def _optimization(result: Result, program: dspy.Module | None) -> Optimization:
    """The Optimization of an optimize run's Result, its held-out scores as their headline numbers."""
    before, after = (Evaluation.from_dict(record).score if record else None
                     for record in (result.before, result.after))
    return Optimization(program, before, after, result.calls, result.usage, result.stopped, result.state,
                        result.report, result.cached, result.demos)
