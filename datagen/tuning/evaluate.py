"""Evaluating a pipeline: run it on a dev set, score every sample with every metric, report.

The result is one JSON-able dict (what `datagen.tuning.report` renders): per-metric summaries, every sample with its
scores and feedback, the dev items the program failed on, and the tokens spent per model.

Every dev item counts in every mean, as `dspy.Evaluate` counts it: an item the program failed on (no answer, an
answer that did not parse, every candidate dropped by the pipeline's own checks) counts 0 on every metric, and an
item whose sample a metric failed on (a judge call that failed or was cut off: see datagen.metrics.scoring) counts 0 on
that metric only. Each summary gives `n` (the items), how many of them `failed`, and the `failures` by kind beside
the mean, so that a mean over 4 items that all made a sample is never read against one over 1 item that did. A part
of the composite that failed on an item counts 0 in the composite without failing it: the composite's summary names
such parts (`parts_failed`), so that a composite dragged down by failed judge calls is read as such.
"""

import json
import statistics
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import dspy

from datagen.workspace.compiled import load_compiled
from datagen.workspace.config import Config, find_workspace, load_config
from datagen.runs.cluster import RayCluster
from datagen.dataset.devset import DevItem, read_devset
from datagen.errors import DatagenError
from datagen.util.files import replacing
from datagen.runs.generate import _drop_reason, bound_answers, run_chunks
from datagen.lm.roles import RoleModel, check_reachable, task_model
from datagen.workspace.pipelines import load_program
from datagen.tuning.report import write_report
from datagen.metrics.scoring import COMPOSITE, Failed, MetricContext, Scorer
from datagen.store import Outcome

RESULT_FILE = "eval.json"
REPORT_FILE = "report.html"


def evaluate(pipeline: str, dev: str | Path, *, workspace: Path | None = None, config: Config | None = None,
             program_path: str | Path | None = None, options: dict | None = None,
             metrics: list[str] | None = None, split: str | None = None, concurrency: int = 1,
             model: RoleModel | None = None, program: dspy.Module | None = None,
             judge: RoleModel | None = None, label: str | None = None, items: list[DevItem] | None = None,
             scorer: Scorer | None = None, cluster: RayCluster | None = None) -> dict:
    """Run `pipeline` (loaded with `options`; or compiled, from `program_path`; or `program` as given) on the dev
    set (its `split` only, when given; or on `items`, e.g. the dev set cut anew) and score each sample with
    `metrics` (all of the pipeline's by default; a composite named with metrics that count in it is made of those,
    their weights renormalised: see `scorer_for`), judged by `judge` (default: the judge role's model); or with
    `scorer`, a scorer already built (its metrics fitted and judge chosen), as an optimizer scoring many
    programs passes. Style metrics are fitted on every item of the dev set (or of `items`), whichever `split` is
    scored: a score must not depend on which items happen to be scored with it. With `cluster`, the items run and
    are scored on Ray actors (datagen.runs.cluster). Raises DatagenError for an unknown metric."""
    workspace = workspace or find_workspace()
    config = config or load_config(workspace)
    if program_path and options:
        raise DatagenError("--option does not apply with --program: a compiled program keeps the options it was "
                           "compiled with")
    if program is None:
        program = (load_compiled(pipeline, program_path, workspace) if program_path
                   else load_program(pipeline, workspace, options))
    every = read_devset(dev) if items is None else list(items)
    items = [item for item in every if split in (None, item.split)]
    if scorer is None:
        context = MetricContext(workspace, config, corpus=[item.chunk.text for item in every])
        if judge is not None:
            context.judge = judge
        scorer = scorer_for(pipeline, context, metrics)
    model = bound_answers(program, task_model(config, model), config.chunking.max_tokens, [i.chunk for i in items])
    check_reachable(model)
    models = {"task": model.name}
    if any(kind == "judge" for kind in scorer.kinds.values()):
        check_reachable(scorer.context.judge)
        models["judge"] = scorer.context.judge.name
    # Every item, failed ones too: an optimizer's uncompiled baseline may fail most items (a small model that
    # cannot follow the format), which is what the compiled program is measured against.
    outcomes = list(run_chunks(program, model, (item.chunk for item in items), concurrency, scorer=scorer,
                               ordered=True, cluster=cluster, every=True))
    return {
        "pipeline": pipeline,
        "program": label or (str(program_path) if program_path else "uncompiled"),
        "dev": str(dev) + (f" ({split})" if split else ""),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "models": models,
        "metrics": summarize(scorer.kinds, outcomes, scorer.composite.weights if scorer.composite else ()),
        "failures": item_failures(outcomes),
        "samples": [sample_record(o, index) for o in outcomes for index in range(len(o.samples))],
        "usage": total_usage(outcomes),
    }


def scorer_for(pipeline: str, context: MetricContext, metrics: list[str] | None) -> Scorer:
    """The scorer for `metrics` as `--metric` names them (None: every metric and the composite). With the
    composite and metrics that count in it, the composite is made of those alone (their configured weights,
    renormalised), as `optimize --metric` makes it; with the composite alone, or beside metrics that do not count
    in it (chrf), it is the configured one. Raises DatagenError for an unknown metric."""
    if not metrics or COMPOSITE not in metrics:
        return Scorer(pipeline, context, metrics)
    weighted = Scorer(pipeline, context, [COMPOSITE]).weights if len(set(metrics)) > 1 else {}
    parts = [name for name in metrics if weighted.get(name)]
    return Scorer(pipeline, context, metrics, parts=parts or None)


def item_failure(outcome: Outcome) -> str | None:
    """Why a dev item made no sample: its failure's kind, "dropped" when the pipeline's own checks rejected every
    candidate (see programs/factual_qa.py), or None when it made samples."""
    if outcome.failure:
        return outcome.failure
    return None if outcome.samples else "dropped"


def item_failures(outcomes: list[Outcome]) -> list[dict]:
    """The items that made no sample: chunk id, kind, message (a dropped item's: its drop reasons, counted)."""
    failures = []
    for o in outcomes:
        kind = item_failure(o)
        if kind == "dropped":
            reasons = Counter(_drop_reason(d) for d in o.outputs.get("dropped") or ())
            failures.append({"chunk_id": o.chunk.id, "kind": kind, "message": "the pipeline dropped every candidate"
                             + (f" ({', '.join(f'{r} {n}' for r, n in reasons.most_common())})" if reasons else "")})
        elif kind:
            failures.append({"chunk_id": o.chunk.id, "kind": kind, "message": o.message})
    return failures


def summarize(kinds: dict[str, str], outcomes: list[Outcome], parts: Iterable[str] = ()) -> dict:
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
            scores = [s[name] for s in o.scores if name in s] if not item_failure(o) else []
            own = next((s.kind for s in scores if isinstance(s, Failed)), None)
            failed = item_failure(o) or own
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


def sample_record(outcome: Outcome, index: int) -> dict:
    """One sample as evaluate's result lists it: its chunk, text, and each metric's value and feedback (and the
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


def total_usage(outcomes: list[Outcome]) -> dict:
    total: dict[str, dict[str, int]] = {}
    for outcome in outcomes:
        for name, usage in outcome.usage.items():
            into = total.setdefault(name, {"prompt_tokens": 0, "completion_tokens": 0})
            for key in into:
                into[key] += usage.get(key) or 0
    return total


def write_evaluation(result: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """The result as JSON and as a self-contained HTML report, in `out_dir`."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DatagenError(f"{out}: exists and is not a folder; --out takes a folder")
    out.mkdir(parents=True, exist_ok=True)
    data = out / RESULT_FILE
    with replacing(data) as partial:
        partial.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    return data, write_report(result, out / REPORT_FILE)
