"""Evaluating a program: run it on a dev set, score every sample, and keep one JSON-able record of it all.

An `Evaluator` is one dev set scored one way: by a pipeline's own metrics (a `Scorer`: each sample scored as the
run makes it, judged by the judge role's model) or by a DSPy-convention metric of the caller's (`MetricScorer`:
once per item). Called on a program, it gives the evaluation record (what `datagen.tuning.report` renders and
`datagen evaluate` writes as eval.json): per-metric summaries, every sample with its scores and feedback, the dev
items the program failed on, the tokens spent per model, and the samples' diversity beside the dev chunks' with
the pipeline's diversity bar checked on it (datagen.tuning.diversity_report). `datagen evaluate` and
`datagen.evaluate` build one through `evaluate_pipeline` (or directly, for a metric of the caller's); an optimizer
holds one for its held-out scores (`datagen.tuning.optimize.Session`).

Every dev item counts in every mean, as `dspy.Evaluate` counts it: an item the program failed on (no answer, an
answer that did not parse, every candidate dropped by the pipeline's own checks) counts 0 on every metric, and an
item whose sample a metric failed on (a judge call that failed or was cut off: see datagen.metrics.scoring) counts 0
on that metric only. Each summary gives `n` (the items), how many of them `failed`, and the `failures` by kind
beside the mean, so that a mean over 4 items that all made a sample is never read against one over 1 item that
did. A part of the composite that failed on an item counts 0 in the composite without failing it: the composite's
summary names such parts (`parts_failed`), so that a composite dragged down by failed judge calls is read as such.
"""

import json
import statistics
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

import dspy

from datagen.dataset import DevItem, read_devset
from datagen.errors import DatagenError
from datagen.lm import RoleModel, check_reachable, task_model
from datagen.dataset.quality import DiversityBar
from datagen.metrics import COMPOSITE, Failed, MetricContext, Score, Scorer, diversity_bar, scorer_for
from datagen.runs import RayCluster, WorkerProcesses, bound_answers, drop_reason, run_chunks
from datagen.store import Outcome
from datagen.tuning.diversity_report import measure_diversity
from datagen.tuning.report import write_report
from datagen.util import replacing
from datagen.workspace import Config, find_workspace, load_config, resolve_program

RESULT_FILE = "eval.json"
REPORT_FILE = "report.html"

# A metric in DSPy's convention: `metric(example, prediction, trace=None) -> float | bool`, higher is better.
DSPyMetric = Callable[..., "float | bool"]


def dev_label(dev: "str | Path | Iterable") -> str:
    """How an evaluation record names a dev set: its file's path, or "(items)" for items given as they are."""
    return str(dev) if isinstance(dev, (str, Path)) else "(items)"


class MetricScorer:
    """A DSPy-convention metric as an evaluation scores with it: called once per dev item the program did not fail
    on, with `example.chunk` the item's text and a prediction holding its `samples` (and whatever else the
    program's prediction held); its value is each of the item's samples' score. The metric is named by its
    `__name__`, else its class's name."""

    def __init__(self, metric: DSPyMetric):
        self.metric = metric
        self.name = getattr(metric, "__name__", None) or type(metric).__name__
        self.kinds = {self.name: "metric"}

    def score_outcomes(self, outcomes: list[Outcome]) -> None:
        """Give each finished outcome one Score per sample, the metric's value on its prediction."""
        for outcome in outcomes:
            if outcome.failure is None:
                example = dspy.Example(chunk=outcome.chunk.text).with_inputs("chunk")
                value = float(self.metric(example, dspy.Prediction(samples=outcome.samples, **outcome.outputs)))
                outcome.scores = [{self.name: Score(value)} for _ in outcome.samples]


class Evaluator:
    """One dev set, scored one way; called on a program, it runs the program on the items and gives the
    evaluation record (see the module's doc).

    Args:
        pipeline: the name the record gives the program's pipeline.
        items: the dev set's items, every split.
        scorer: a pipeline's `Scorer` (each sample scored as the run makes it, its metrics fitted beforehand), or
            a `MetricScorer` (each item scored once the run is over).
        config: the workspace's configuration: the task model's default, and the chunk budget its answers are
            capped by when it has no cap of its own.
        dev: how the record names the dev set.
        split: run only the items of this split ("train" or "val"); default: every item.
        concurrency: items in flight.
        cluster: run the items (and a `Scorer`'s scoring) on Ray actors or worker processes instead of threads.
        bar: the pipeline's diversity bar, checked on the samples (`datagen.metrics.diversity_bar`); default
            None: the samples' diversity is measured, no bar checked.
    """

    def __init__(self, pipeline: str, items: list[DevItem], scorer: "Scorer | MetricScorer", config: Config, *,
                 dev: str, split: str | None = None, concurrency: int = 1,
                 cluster: RayCluster | WorkerProcesses | None = None,
                 bar: DiversityBar | None = None):
        self.pipeline, self.items, self.scorer, self.config = pipeline, items, scorer, config
        self.dev, self.split, self.concurrency, self.cluster, self.bar = dev, split, concurrency, cluster, bar

    def __call__(self, program: dspy.Module, label: str, *, model: "RoleModel | dspy.LM | None" = None,
                 items: list[DevItem] | None = None) -> dict:
        """Run `program` on the items (of the split) and score what it made.

        Args:
            program: the program to run.
            label: how the record names the program (e.g. "uncompiled", a compiled state's path).
            model: the task model; default: the LM dspy is configured with, else the config's task role.
            items: other items to run instead of the evaluator's (their split's only), e.g. the dev set cut anew.

        Returns:
            The evaluation record.

        Raises:
            ModelUnreachable: the task model's server (or a `Scorer`'s judge's) does not answer.
        """
        items = [item for item in (self.items if items is None else items) if self.split in (None, item.split)]
        model = bound_answers(program, task_model(self.config, model), self.config.chunking.max_tokens,
                              [item.chunk for item in items])
        check_reachable(model)
        models = {"task": model.name}
        scorer = self.scorer if isinstance(self.scorer, Scorer) else None
        if scorer and any(kind == "judge" for kind in scorer.kinds.values()):
            check_reachable(scorer.context.judge)
            models["judge"] = scorer.context.judge.name
        # Every item, failed ones too: an optimizer's uncompiled baseline may fail most items (a small model that
        # cannot follow the format), which is what the compiled program is measured against.
        outcomes = list(run_chunks(program, model, (item.chunk for item in items), self.concurrency, scorer=scorer,
                                   ordered=True, cluster=self.cluster, every=True))
        if scorer is None:
            self.scorer.score_outcomes(outcomes)
        parts = scorer.composite.weights if scorer and scorer.composite else ()
        # From the samples already made: the diversity figures and the bar cost no LM call.
        diversity, bar = measure_diversity([sample for o in outcomes for sample in o.samples],
                                           [item.chunk.text for item in items], self.bar)
        return {
            "pipeline": self.pipeline,
            "program": label,
            "dev": self.dev,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "models": models,
            "metrics": summarize_metrics(self.scorer.kinds, outcomes, parts),
            "failures": _item_failures(outcomes),
            "samples": [_sample_record(o, index) for o in outcomes for index in range(len(o.samples))],
            "usage": _total_usage(outcomes),
            "diversity": diversity,
            "diversity_bar": bar,
        }


def evaluate_pipeline(pipeline: str, dev: str | Path | list[DevItem], *, workspace: Path | None = None,
                      config: Config | None = None, program_path: str | Path | None = None,
                      options: dict | None = None, metrics: list[str] | None = None, split: str | None = None,
                      concurrency: int = 1, model: "RoleModel | dspy.LM | None" = None,
                      judge: RoleModel | None = None, cluster: RayCluster | WorkerProcesses | None = None) -> dict:
    """Run a named pipeline on a dev set and score each sample with the pipeline's own metrics (`datagen evaluate`).

    Style metrics are fitted on every item of the dev set, whichever `split` is scored: a score must not depend on
    which items happen to be scored with it.

    Args:
        pipeline: the pipeline's name (programs/NAME.py of the workspace, else the built-in one).
        dev: a dev.jsonl file (see `datagen devset`), or its items.
        workspace: the workspace; default: found from the current folder.
        config: its configuration; default: its datagen.toml.
        program_path: a compiled state of the pipeline (`datagen optimize`) to run instead of the uncompiled one.
        options: the pipeline's options (not with `program_path`: a compiled program keeps its own).
        metrics: which of the pipeline's metrics (default: all, and the composite); the composite named with
            metrics that count in it is made of those alone, their weights renormalised (see `scorer_for`).
        split: score only this split's items ("train" or "val").
        concurrency: items in flight.
        model: the task model; default: the LM dspy is configured with, else the config's task role.
        judge: the judges' model; default: the judge role's.
        cluster: run the items and score them on Ray actors (datagen.runs.cluster) or worker processes
            (datagen.runs.processes).

    Returns:
        The evaluation record (see the module's doc); `write_evaluation` writes it with its HTML report.

    Raises:
        DatagenError: `options` with `program_path`, an unknown pipeline or metric, a bad dev set or compiled state,
            or a diversity bar that is not a DiversityBar or out of range (ConfigError; see `diversity_bar`).
        ModelUnreachable: the task or judge model's server does not answer.
    """
    workspace = workspace or find_workspace()
    config = config or load_config(workspace)
    if program_path and options:  # named after evaluate's flag, --program (generate's is --compiled)
        raise DatagenError("--option does not apply with --program: a compiled program keeps the options it was "
                           "compiled with")
    _, program = resolve_program(pipeline, workspace, options, compiled=program_path or None)
    items = read_devset(dev) if isinstance(dev, (str, Path)) else list(dev)
    context = MetricContext(workspace, config, corpus=[item.chunk.text for item in items])
    if judge is not None:
        context.judge = judge
    evaluator = Evaluator(pipeline, items, scorer_for(pipeline, context, metrics), config,
                          dev=dev_label(dev) + (f" ({split})" if split else ""), split=split,
                          concurrency=concurrency, cluster=cluster, bar=diversity_bar(pipeline, workspace, config))
    return evaluator(program, str(program_path) if program_path else "uncompiled", model=model)


def _item_failure(outcome: Outcome) -> str | None:
    """Why a dev item made no sample: its failure's kind, "dropped" when the pipeline's own checks rejected every
    candidate (see programs/factual_qa.py), or None when it made samples."""
    if outcome.failure:
        return outcome.failure
    return None if outcome.samples else "dropped"


def _item_failures(outcomes: list[Outcome]) -> list[dict]:
    """The items that made no sample: chunk id, kind, message (a dropped item's: its drop reasons, counted)."""
    failures = []
    for o in outcomes:
        kind = _item_failure(o)
        if kind == "dropped":
            reasons = Counter(drop_reason(d) for d in o.outputs.get("dropped") or ())
            failures.append({"chunk_id": o.chunk.id, "kind": kind, "message": "the pipeline dropped every candidate"
                             + (f" ({', '.join(f'{r} {n}' for r, n in reasons.most_common())})" if reasons else "")})
        elif kind:
            failures.append({"chunk_id": o.chunk.id, "kind": kind, "message": o.message})
    return failures


def summarize_metrics(kinds: dict[str, str], outcomes: list[Outcome], parts: Iterable[str] = ()) -> dict:
    """Each metric over every dev item, as dspy.Evaluate counts: an item's value is the mean of its samples'
    (a sample the metric failed on counting 0), an item that made no sample counts 0. `n`: items; `failed`: items
    without a value of their own (no sample, or the metric failed on one of its samples), counted by kind in
    `failures` (the item's failure kind, or the metric's: e.g. "judge_content_truncated"); `samples`: samples
    scored; mean, spread (population standard deviation) and range over the n items' values. Given the
    composite's `parts`, its summary also has `parts_failed`: {part: items on which that part failed}, parts that
    never failed left out (a failed part counts 0 in the composite without failing it, so its `failed` alone would
    not show that it was dragged down)."""
    summary, failed_parts = {}, Counter()
    for name, kind in kinds.items():
        values, failures, samples = [], Counter(), 0
        for o in outcomes:
            scores = [s[name] for s in o.scores if name in s] if not _item_failure(o) else []
            own = next((s.kind for s in scores if isinstance(s, Failed)), None)
            failed = _item_failure(o) or own
            if failed:
                failures[failed] += 1
            failed_parts[name] += own is not None
            samples += sum(not isinstance(s, Failed) for s in scores)
            values.append(statistics.fmean(s.value for s in scores) if scores else 0.0)
        summary[name] = {"kind": kind, "n": len(values), "failed": sum(failures.values()),
                         "failures": dict(failures.most_common()), "samples": samples,
                         "mean": statistics.fmean(values) if values else None,
                         "std": statistics.pstdev(values) if values else None,
                         "min": min(values, default=None), "max": max(values, default=None)}
    if COMPOSITE in summary and parts:
        summary[COMPOSITE]["parts_failed"] = {name: failed_parts[name] for name in parts if failed_parts[name]}
    return summary


def _sample_record(outcome: Outcome, index: int) -> dict:
    """One sample as the record lists it: its chunk, text, and each metric's value and feedback (and the
    failure's kind, for a metric that failed on it)."""
    sample, scores = outcome.samples[index], outcome.scores[index]
    record = {"chunk_id": outcome.chunk.id, "chunk": outcome.chunk.text, "input": sample.input,
              "output": sample.output,
              "scores": {name: {"value": s.value, "feedback": s.feedback,
                                **({"failure": s.kind} if isinstance(s, Failed) else {})}
                         for name, s in scores.items()}}
    if sample.history:  # a conversation's earlier turns, oldest first
        record["history"] = [list(turn) for turn in sample.history]
    if COMPOSITE in scores:
        record["composite"] = scores[COMPOSITE].value
    return record


def _total_usage(outcomes: list[Outcome]) -> dict:
    """Prompt and completion tokens by model name, over every outcome."""
    total: dict[str, dict[str, int]] = {}
    for outcome in outcomes:
        for name, usage in outcome.usage.items():
            into = total.setdefault(name, {"prompt_tokens": 0, "completion_tokens": 0})
            for key in into:
                into[key] += usage.get(key) or 0
    return total


def write_evaluation(result: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """Write an evaluation record as JSON and as a self-contained HTML report.

    Args:
        result: the record, as `Evaluator` (or `evaluate_pipeline`) gives it, or `datagen.Evaluation.as_dict()`.
        out_dir: the folder to write in (made when missing).

    Returns:
        The paths of out_dir/eval.json and out_dir/report.html.

    Raises:
        DatagenError: `out_dir` exists and is not a folder.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DatagenError(f"{out}: exists and is not a folder; --out takes a folder")
    out.mkdir(parents=True, exist_ok=True)
    data = out / RESULT_FILE
    with replacing(data) as partial:
        partial.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    return data, write_report(result, out / REPORT_FILE)
