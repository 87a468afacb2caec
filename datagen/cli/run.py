"""The commands of a run: `chunk` a corpus, `generate` a dataset, see a run's `status`, `inspect` its samples and
failures (`export` and `push` are in datagen.cli.dataset)."""

import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table

from datagen.cli.options import (DEFAULT_ACTORS, DEFAULT_WORKERS, INPUTS_HELP, LOCAL, Actors, Executor, MaxTokens,
                                 MinScore, Pipeline, RayAddress, Workers, Workspace, executor_cluster, min_scores,
                                 pipeline_options, task_config, workspace_root)
from datagen.cli.output import diversity_lines, err, out, plural, say
from datagen.cli.quality import left_out_line
from datagen.errors import DatagenError, InputError, Interrupted
from datagen.util import interrupted, json_line, jsonl_sink

RunFolder = Annotated[Path, typer.Argument(help="A run folder made by `datagen generate`.")]

# generate's own options.
Inputs = Annotated[list[Path], typer.Option("--input", "-i", help=INPUTS_HELP)]
OutDir = Annotated[Path, typer.Option("--out", "-o", help="Run folder: the store and the dataset.")]
Limit = Annotated[int | None, typer.Option(min=1, help="Run the first N chunks only.")]
Concurrency = Annotated[int, typer.Option("--concurrency", "-c", min=1, help="Chunks in flight.")]
Rpm = Annotated[float | None, typer.Option(min=0.001, help="At most this many LM calls a minute.")]
Tpm = Annotated[int | None, typer.Option(min=1, help="At most this many tokens a minute.")]
MaxFailures = Annotated[int | None, typer.Option(min=1, help="Stop after this many failed chunks.")]
MaxCost = Annotated[float | None, typer.Option(min=0, help="Stop cleanly before the run's spend passes this many US "
                                                          "dollars.")]
Batch = Annotated[bool, typer.Option("--batch", help="Send the task model's requests as provider batch jobs "
                                     "(OpenAI's Batch API: half price, answers within 24 h); re-run to resume.")]
BatchPoll = Annotated[float, typer.Option(min=0.01, max=3600, help="Seconds between polls of the batch jobs.")]
BatchSize = Annotated[int, typer.Option(min=1, max=50_000, help="Requests per batch job at most.")]
# The task model and the pipeline's options as options.Model, ApiBase and PipelineOptions declare them for evaluate
# and optimize, with an example in their help.
GenerateModel = Annotated[str | None, typer.Option(help="Task model, e.g. openai/gpt-4o-mini (overrides config).")]
GenerateApiBase = Annotated[str | None, typer.Option(help="Base URL of an OpenAI-compatible server for the task "
                                                          "model.")]
GenerateOptions = Annotated[list[str] | None, typer.Option("--option", "-O", help="Pipeline option KEY=VALUE, e.g. "
                                                                                  "repair_boundaries=true "
                                                                                  "(repeatable).")]
Compiled = Annotated[Path | None, typer.Option(help="Run a program compiled by `datagen optimize`: "
                                                    "compiled/PIPELINE/NAME.json, or its NAME.")]
Force = Annotated[bool, typer.Option("--force", help="Reuse an --out made by another program or other inputs, "
                                     "starting it afresh.")]


def chunk(
    inputs: Annotated[list[Path], typer.Argument(help=INPUTS_HELP)],
    out_file: Annotated[Path | None, typer.Option("--out", "-o", help="JSONL file to write (default: stdout).")] = None,
    max_tokens: MaxTokens = None,
    workspace: Workspace = None,
) -> None:
    """Cut text files into chunks that fit a token budget, written as JSONL."""
    from datagen.text import chunk_documents, iter_documents
    from datagen.workspace import load_config

    config = load_config(workspace_root(workspace))
    budget = max_tokens or config.chunking.max_tokens
    if out_file:
        if out_file.is_dir():
            raise InputError(f"{out_file}: is a folder; --out takes a file name")
        out_file.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    # A file is written whole: a full disk or a bad input half-way leaves the one there before as it was.
    with jsonl_sink(out_file) if out_file else nullcontext(sys.stdout) as sink:
        for piece in chunk_documents(iter_documents(inputs), budget, config.chunking.language):
            sink.write(json_line(piece.to_dict()))
            count += 1
    if out_file:
        err.print(f"{count} chunks (at most {budget} tokens each) written to {out_file}")


def generate(
    pipeline: Pipeline,
    inputs: Inputs,
    out_dir: OutDir,
    max_tokens: MaxTokens = None,
    limit: Limit = None,
    concurrency: Concurrency = 1,
    rpm: Rpm = None,
    tpm: Tpm = None,
    max_failures: MaxFailures = None,
    max_cost: MaxCost = None,
    batch: Batch = False,
    batch_poll: BatchPoll = 30.0,
    batch_size: BatchSize = 50_000,
    model: GenerateModel = None,
    api_base: GenerateApiBase = None,
    option: GenerateOptions = None,
    compiled: Compiled = None,
    min_score: MinScore = None,
    force: Force = False,
    executor: Executor = LOCAL,
    actors: Actors = DEFAULT_ACTORS,
    ray_address: RayAddress = None,
    workers: Workers = DEFAULT_WORKERS,
    workspace: Workspace = None,
) -> None:
    """Run a pipeline over text files and write a ShareGPT dataset (re-run to resume)."""
    import dspy

    from datagen.runs import BatchOptions, RunSettings
    from datagen.runs.generate import generate as run_generate

    root = workspace_root(workspace)
    config = task_config(root, model, api_base)
    # Each chunk's answer is distinct, so an in-memory copy of every response only grows; the disk cache
    # and the run store keep them.
    dspy.configure_cache(enable_memory_cache=False)
    # The flags become settings inside the progress display, as in the run itself: a bad one (--executor, --option,
    # --min-score) is reported where the run's own errors are, after the display's closing line.
    with _progress_display() as progress:
        callbacks = _progress_callbacks(progress, pipeline, concurrency)
        try:
            settings = RunSettings(max_tokens=max_tokens, limit=limit, concurrency=concurrency, rpm=rpm, tpm=tpm,
                                   max_failures=max_failures, max_cost=max_cost, force=force,
                                   batch=BatchOptions(poll=batch_poll, size=batch_size) if batch else None,
                                   cluster=executor_cluster(executor, actors, ray_address, workers))
            report = run_generate(pipeline, inputs, out_dir, workspace=root, config=config, settings=settings,
                                  options=pipeline_options(option), compiled=compiled,
                                  min_scores=min_scores(min_score), callbacks=callbacks)
        except KeyboardInterrupt as exc:  # a second stop signal: chunks in flight abandoned, the rest is stored
            kept = (f"finished chunks are kept in {out_dir}; run the same command again to resume"
                    if (out_dir / "run.db").exists() else "stopped before any chunk ran")
            raise interrupted(exc, kept) from None
    summary = _print_report(report, out_dir, config, gated=bool(min_score))
    if report.interrupted:
        raise Interrupted(f"{report.stopped}; {report.advice}", report.stop_signal)
    if report.stopped:
        raise DatagenError(f"{report.stopped}; {report.advice}")
    if report.exported == 0:
        why = summary.why_few_samples() or (f"{left_out_line(report.left_out)} (datagen quality RUN names each)"
                                            if report.left_out else "no chunk produced a sample")
        held = f" for training ({plural(report.held_out, 'sample')} in the held-out test split alone)" \
            if report.held_out else ""
        raise DatagenError(f"the dataset is empty{held}: {why}")


def _progress_display() -> Progress:
    """generate's live line on stderr, cleared when the run ends: chunks done of all, failures, tokens, spend, the
    requests allowed in flight, time spent and left."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[failed]} failed · {task.fields[tokens]:,} tokens · "
                               "{task.fields[cost]} · limit {task.fields[level]} in flight"),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=err, transient=True)


def _progress_callbacks(progress: Progress, pipeline: str, concurrency: int):
    """The run's callbacks (datagen.runs.Callbacks) that keep a new bar of `progress` up to date, and
    print each batch job's changes above it."""
    from datagen.runs import Callbacks

    bar = progress.add_task(pipeline, total=None, failed=0, tokens=0, cost="cost unknown", level=concurrency)
    totals = {"tokens": 0}

    def advance(outcome) -> None:
        totals["tokens"] += sum(u.get("total_tokens") or 0 for u in outcome.usage.values())

    def show(status) -> None:
        progress.update(bar, completed=status.done, failed=status.failed, tokens=totals["tokens"],
                        cost=_cost_line(status), level=status.level)

    return Callbacks(on_start=lambda total: progress.update(bar, total=total), on_outcome=advance, on_status=show,
                     on_batch=lambda job: progress.console.print(_job_line(job)))


def _job_line(job) -> str:
    """A batch job's state change, as the progress display prints it."""
    batch = f" ({job.batch_id})" if job.batch_id else " (not created yet)"
    done = f": {job.completed:,} answered, {job.failed:,} failed" if job.completed or job.failed else ""
    return f"batch job {job.job}{batch}: {job.status}, {job.requests:,} requests{done}"


def _cost_line(status) -> str:
    """The progress line's spend: "run $0.0123 of ~$0.4567" (the run folder's so far, of its projected total),
    or why not."""
    if status.spent is None:
        return "cost unknown"
    projected = f" of ~${status.projected:.4f}" if status.projected is not None and status.left else ""
    return f"run ${status.spent:.4f}{projected}"


def _print_report(report, out_dir: Path, config, gated: bool):
    """What generate prints once the run ends: this call's work on stderr, then the run as a whole (its summary,
    returned), then where the dataset is on stdout, with samples kept out by the quality gate when `gated`."""
    from datagen.lm import EMBEDDED_MODELS

    if report.resumed:
        err.print(f"resumed: {report.resumed} chunks were already done in {out_dir}")
    if report.batch:
        jobs = report.batch
        err.print(f"batch: {plural(jobs.rounds, 'round')}, {plural(jobs.jobs, 'job')} submitted "
                  f"({plural(jobs.requests, 'request')}), {jobs.resumed_jobs} resumed; {jobs.answered:,} answered, "
                  f"{jobs.failed:,} failed")
    rate = f" ({report.chunks / report.seconds:.2f} chunks/s)" if report.seconds and report.chunks else ""
    err.print(f"this call: {report.chunks} chunks through [bold]{report.pipeline}[/] on {report.model} in "
              f"{report.seconds:.1f}s{rate}: {report.samples} samples, {sum(report.failures.values())} failed")
    summary = print_summary(out_dir, config)

    held_back = f", {report.held_back} below --min-score kept out" if gated else ""
    screened = f", {left_out_line(report.left_out)}" if report.left_out else ""
    say(f"dataset: {report.data_path} ({plural(report.exported, 'sample')}{held_back}{screened})")
    if report.test_path is not None:
        say(f"held-out test split: {report.test_path} ({plural(report.held_out, 'sample')}; training leaves "
            "them out)")
    if report.model in EMBEDDED_MODELS:
        say(f"note: {report.model} ({EMBEDDED_MODELS[report.model].about}) keeps everything offline; its rewrites "
            "are not training-grade. Set [models.task] in datagen.toml (or --model) to a capable model for real "
            "data.", to=err)
    return summary


def print_summary(run_dir: Path, config=None):
    """Print the run as a whole, from its store, on stderr: what `status` prints, and `generate` after it.

    Args:
        run_dir: The run folder.
        config: The config whose model prices price the run, where it sets them (None: litellm's prices only).

    Returns:
        The run's summary (datagen.runs.RunSummary).

    Raises:
        RunFolderError: `run_dir` is not a run folder.
    """
    from collections import Counter

    from datagen.runs import summarize
    from datagen.store import cached_tokens

    summary = summarize(run_dir, config)
    say(f"run {run_dir}: {summary.meta.get('pipeline', '?')}, {summary.done}/{summary.chunks} chunks done, "
        f"{summary.failed} failed, {summary.pending} not yet run; {summary.samples} samples", to=err)
    if summary.held_out:
        say(f"  held out: {plural(summary.held_out, 'chunk')} in the test split, left out of training files", to=err)
    for kind, (count, example) in summary.failures.items():
        say(f"  {count} × {kind}: e.g. {example}", to=err)
    for model_name, usage in summary.usage.items():
        cached = f" ({cached_tokens(usage):,} cached)" if cached_tokens(usage) else ""
        say(f"  tokens on {model_name}: {usage['prompt_tokens']:,} prompt{cached} + {usage['completion_tokens']:,} "
            "completion", to=err)
    say(_cost_summary(summary), to=err)
    for server in summary.server_lines():
        say(f"  {server}", to=err)
    if summary.batch_jobs:
        states = Counter(job["status"] for job in summary.batch_jobs)
        running = [job["batch_id"] or f"job {job['id']} (not created yet)" for job in summary.jobs_in_flight]
        say(f"  batch jobs: {', '.join(f'{n} {state}' for state, n in states.items())}"
            + (f" (in flight: {', '.join(str(b) for b in running)}; run generate --batch again to collect them)"
               if running else ""), to=err)
    if summary.dropped:
        say(f"  dropped by the pipeline's own checks: {summary.drops()}", to=err)
    if summary.gate:
        say(f"  quality gate {summary.gate_line()}", to=err)
    for line in _quality_lines(summary):
        say(f"  {line}", to=err)
    if (why := summary.why_few_samples()) is not None:
        say(f"  why so few samples: {why}", to=err)
    return summary


def _cost_summary(summary) -> str:
    """The run's cost in a line: "  cost: $0.0123", saying when cached prompt tokens were priced as plain input,
    or why the cost is unknown."""
    cost = summary.cost
    if cost is None:
        return (f"  cost: unknown (no price for {', '.join(summary.unpriced)}: set input_price and output_price in "
                "its [models.ROLE] of datagen.toml)")
    if full := summary.cached_at_input:
        return f"  cost: ${cost:.4f} (cached tokens of {', '.join(full)} at the input price: set cached_input_price)"
    return f"  cost: ${cost:.4f}"


def _quality_lines(summary) -> list[str]:
    """The run's dataset-level quality in a few lines (datagen quality RUN shows it whole)."""
    from datagen.dataset.quality import THRESHOLDS
    from datagen.dataset.screening import DEFAULT_THRESHOLDS

    quality = summary.quality
    if quality is None:
        return ["quality: not measured for these samples yet (datagen quality RUN)"] if summary.samples else []
    # The semantic kind counts where it was measured, at its default threshold (docs/quality.md).
    thresholds = THRESHOLDS if quality.settings.get("semantic") else DEFAULT_THRESHOLDS
    flagged = len({row[0] for row in quality.groups(thresholds)})
    contaminated = len({row[0] for row in quality.contamination})
    bars = ", ".join(f"{kind} >= {bar:g}" for kind, bar in thresholds.items())
    lines = [f"quality: {plural(flagged, 'near-duplicate')} ({bars}), {contaminated} contaminated, of "
             f"{plural(len(quality.keys), 'sample')} (datagen quality RUN lists them)"]
    for name, comparison in quality.diversity.items():
        lines += diversity_lines(name, comparison)
    return lines


def status(run_dir: RunFolder, workspace: Workspace = None) -> None:
    """Show a run's progress, failures, tokens and cost (finished or interrupted)."""
    from datagen.workspace import CONFIG_FILE, load_config

    root = workspace_root(workspace)
    if workspace is None and not (root / CONFIG_FILE).is_file():  # priced by the run folder's own workspace, if any
        root = workspace_root(run_dir.resolve()) if run_dir.is_dir() else root
    print_summary(run_dir, load_config(root))


def inspect_run(
    run_dir: RunFolder,
    item: Annotated[str | None, typer.Argument(help="A sample id (as exports write it) or a chunk id: what "
                                                    "happened to it. Without one: a list of samples.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many samples (or failed chunks) to list.")] = 5,
    worst: Annotated[bool, typer.Option("--worst", help="List the lowest-scored samples first (composite, else "
                                                        "the lowest score), not a random pick.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the random pick.")] = 0,
    failed: Annotated[bool, typer.Option("--failed", help="List failed chunks, with their failure's kind and "
                                                          "message.")] = False,
    prompts: Annotated[bool, typer.Option("--prompts", help="With an id: every LM call of its chunk, the exact "
                                                            "messages sent and the raw answer.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the same as JSON, for scripts.")] = False,
) -> None:
    """Look into a run: a sample's steps, scores and prompts, or a pick of its samples or failures."""
    from datagen.runs import inspect_item, list_failed, list_samples, render

    if item is not None and (worst or failed):
        raise InputError("--worst and --failed choose what to list: give them without an id")
    if item is None and prompts:
        raise InputError("--prompts shows one chunk's LM calls: give a sample or chunk id")
    if worst and failed:
        raise InputError("--worst orders samples, --failed lists failed chunks: one or the other")
    if item is not None:
        view = inspect_item(run_dir, item, prompts)
    elif failed:
        view = list_failed(run_dir, limit)
    else:
        view = list_samples(run_dir, limit, worst, seed)
    if as_json:
        say(json.dumps(view, ensure_ascii=False, indent=2))
    elif item is not None:
        say(render(view))
    elif failed:
        out.print(_failed_table(view))
    else:
        out.print(_samples_table(view, "lowest-scored first" if worst else f"a random pick, seed {seed}"))


def _failed_table(view: dict) -> Table:
    """`inspect --failed`: the failed chunks listed, with their failure and raw answer shortened."""
    from datagen.runs import shorten

    table = Table("chunk", "source", "kind", "message", "raw answer",
                  title=f"{len(view['failed'])} of {view['total']} failed chunks")
    for row in view["failed"]:
        table.add_row(row["chunk_id"], escape(f"{row['source']} [{row['start']}:{row['end']}]"), row["kind"],
                      escape(shorten(row["message"])), escape(shorten(row["raw"], 80)))
    return table


def _samples_table(view: dict, order: str) -> Table:
    """`inspect` without an id: the samples listed (in `order`, said in the title), with their scores."""
    from datagen.runs import shorten

    table = Table("sample", "source", "input", "output", "scores",
                  title=f"{len(view['samples'])} of {view['total']} samples ({order})")
    for row in view["samples"]:
        table.add_row(row["id"], escape(f"{row['source']} [{row['start']}:{row['end']}]"),
                      escape(shorten(row["input"])), escape(shorten(row["output"])),
                      "\n".join(f"{metric} {value:.3f}" for metric, value in row["scores"].items()))
    return table
