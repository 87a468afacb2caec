"""Evaluating a pipeline: run it on a dev set, score every sample with every metric, report.

The result is one JSON-able dict (what `datagen.report` renders): per-metric summaries, every sample with its
scores and feedback, the dev items the program failed on, and the tokens spent per model.
"""

import json
import statistics
from datetime import UTC, datetime
from pathlib import Path

import dspy

from datagen.compiled import load_compiled
from datagen.config import Config, find_workspace, load_config
from datagen.distributed import RayCluster
from datagen.devset import DevItem, read_devset
from datagen.errors import DatagenError
from datagen.files import replacing
from datagen.generate import run_chunks
from datagen.models import RoleModel, check_reachable, task_model
from datagen.pipelines import load_program
from datagen.report import write_report
from datagen.scoring import COMPOSITE, MetricContext, Scorer
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
    `metrics` (all of the pipeline's by default), judged by `judge` (default: the judge role's model); or with
    `scorer`, a scorer already built (its metrics fitted and judge chosen), as an optimizer scoring many
    programs passes. With `cluster`, the items run and are scored on Ray actors (datagen.distributed)."""
    workspace = workspace or find_workspace()
    config = config or load_config(workspace)
    if program_path and options:
        raise DatagenError("--option does not apply with --program: a compiled program keeps the options it was "
                           "compiled with")
    if program is None:
        program = (load_compiled(pipeline, program_path, workspace) if program_path
                   else load_program(pipeline, workspace, options))
    items = read_devset(dev, split) if items is None else [item for item in items if split in (None, item.split)]
    if scorer is None:
        context = MetricContext(workspace, config, corpus=[item.chunk.text for item in items])
        if judge is not None:
            context.judge = judge
        scorer = Scorer(pipeline, context, metrics)
    model = task_model(config, model)
    check_reachable(model)
    models = {"task": model.name}
    if any(kind == "judge" for kind in scorer.kinds.values()):
        check_reachable(scorer.context.judge)
        models["judge"] = scorer.context.judge.name
    outcomes = list(run_chunks(program, model, (item.chunk for item in items), concurrency, scorer=scorer,
                               ordered=True, cluster=cluster))
    return {
        "pipeline": pipeline,
        "program": label or (str(program_path) if program_path else "uncompiled"),
        "dev": str(dev) + (f" ({split})" if split else ""),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "models": models,
        "metrics": summarize(scorer.kinds, outcomes),
        "failures": [{"chunk_id": o.chunk.id, "kind": o.failure, "message": o.message} for o in outcomes
                     if o.failure],
        "samples": [sample_record(o, index) for o in outcomes for index in range(len(o.samples))],
        "usage": total_usage(outcomes),
    }


def summarize(kinds: dict[str, str], outcomes: list[Outcome]) -> dict:
    """Mean, spread and range of each metric over every scored sample."""
    summary = {}
    for name, kind in kinds.items():
        values = [scores[name].value for o in outcomes for scores in o.scores if name in scores]
        summary[name] = {"kind": kind, "n": len(values),
                         "mean": statistics.fmean(values) if values else None,
                         "std": statistics.pstdev(values) if values else None,
                         "min": min(values, default=None), "max": max(values, default=None)}
    return summary


def sample_record(outcome: Outcome, index: int) -> dict:
    sample, scores = outcome.samples[index], outcome.scores[index]
    record = {"chunk_id": outcome.chunk.id, "chunk": outcome.chunk.text, "input": sample.input,
              "output": sample.output,
              "scores": {name: {"value": s.value, "feedback": s.feedback} for name, s in scores.items()}}
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
