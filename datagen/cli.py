"""The `datagen` command: a thin layer over the Python API."""

import functools
import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table

from datagen.errors import DatagenError, Interrupted

app = typer.Typer(help="Turn raw text into training datasets with declarative DSPy pipelines.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
err = Console(stderr=True)
# Piped output is not cut to 80 columns: scripts and greps need whole model names and paths.
out = Console(width=None if sys.stdout.isatty() else 200)

Workspace = Annotated[Path | None, typer.Option("--workspace", "-w", envvar="DATAGEN_WORKSPACE",
                                                help="Workspace folder (default: nearest with datagen.toml "
                                                     "or programs/).")]
MinScore = Annotated[list[str] | None, typer.Option(
    "--min-score", help="Quality gate METRIC=VALUE (e.g. content=0.6): samples scored below stay in the run "
                        "store but out of the dataset (repeatable).")]
INPUTS_HELP = "Text, Markdown, PDF, EPUB, DOCX or HTML files, or folders (searched recursively)."
PIPELINE_HELP = "Pipeline name: programs/NAME.py in the workspace, else the built-in of that name."
Executor = Annotated[str, typer.Option("--executor", help="Where chunks run: local (threads in this process) or ray "
                                                    "(Ray actors; pip install 'datagen[ray]').")]
Actors = Annotated[int, typer.Option("--actors", min=1, help="--executor ray: how many Ray actors run chunks.")]
RayAddress = Annotated[str | None, typer.Option("--ray-address", help="--executor ray: a running Ray cluster's "
                                                "address (default: a local one, started for the run).")]
MaxTokens = Annotated[int | None, typer.Option("--max-tokens", min=16,
                                               help="Token budget per chunk (default: datagen.toml, else 512).")]


def _workspace(path: Path | None) -> Path:
    from datagen.workspace.config import find_workspace

    if path is not None and not path.is_dir():
        raise DatagenError(f"{path}: workspace folder does not exist")
    return find_workspace(path)


@app.callback()
def _setup(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logging.")] = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    if not verbose:
        handler.addFilter(_own_records)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, handlers=[handler], force=True)
    if not verbose:
        _no_progress_bars()
    _quiet_libraries()
    _redact_output()


def _no_progress_bars() -> None:
    """The optimizers' tqdm bars off (DSPy draws them over the command's own status line): tqdm's default for
    `disable`, which it reads from TQDM_DISABLE only when imported, and DSPy imports it before any option is
    read. A bar asked for explicitly (disable=False) still draws."""
    import tqdm

    init = tqdm.tqdm.__dict__["__init__"]
    if not getattr(init, "datagen_quiet", False):  # once per process (the app may run again in one)
        tqdm.tqdm.__init__ = functools.partialmethod(init, disable=True)
        tqdm.tqdm.__init__.datagen_quiet = True


def _own_records(record: logging.LogRecord) -> bool:
    """Without -v, only datagen's own log lines reach stderr: the libraries' (DSPy logs an ERROR line with the
    whole chunk and the raw answer for each example an optimizer could not run, litellm its retries) are what
    datagen reports itself, counted, or noise. Their loggers still run, so datagen's filters on them (the
    truncation count of datagen.lm.calllog) see every record."""
    return record.name == "datagen" or record.name.startswith("datagen.")


def _redact_output() -> None:
    """No API key on stderr: a provider's error may quote the key, and it reaches stderr outside datagen's own
    messages too, in the libraries' log lines (DSPy's optimizers log each failed example with its error) and in
    the traceback of an error nothing catches."""
    from datagen.util.redaction import redact

    make_record = logging.getLogRecordFactory()
    if getattr(make_record, "redacting", False):  # set up already (the app run again in one process)
        return

    def record(*args, **kwargs) -> logging.LogRecord:
        made = make_record(*args, **kwargs)
        try:
            message = made.getMessage()
        except Exception:  # a malformed call: logging reports it when the record is emitted
            return made
        if (cleaned := redact(message)) != message:
            made.msg, made.args = cleaned, ()
        if made.exc_info:  # formatted now, redacted, and kept where the formatter looks for it first
            made.exc_text = redact(logging.Formatter().formatException(made.exc_info))
        return made

    record.redacting = True
    logging.setLogRecordFactory(record)
    sys.excepthook = lambda kind, value, tb: sys.stderr.write(redact("".join(
        traceback.format_exception(kind, value, tb))))


def _quiet_libraries() -> None:
    """Libraries' log lines only with --verbose: their INFO lines drown the command's own output, and their ERROR
    lines repeat, chunk and raw answer included, what datagen reports itself (a failed item, counted by kind).
    Some write through handlers of their own (litellm's, DSPy's stream), past the filter on datagen's handler:
    those are silenced at the source. Called again once DSPy is imported, since importing it sets its loggers
    to INFO."""
    import dspy

    verbose = logging.getLogger().level <= logging.DEBUG
    # pypdf: its warnings do not name the file
    for noisy in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "httpx", "dspy", "pypdf"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.CRITICAL + 1)
    (dspy.enable_logging if verbose else dspy.disable_logging)()
    # Never quieter than WARNING: its warning is DSPy's only sign of an answer cut off at max_tokens (see calllog);
    # the record is counted there, and shown only where a handler lets it through.
    logging.getLogger("dspy.clients.lm").setLevel(logging.DEBUG if verbose else logging.WARNING)


@app.command()
def chunk(
    inputs: Annotated[list[Path], typer.Argument(help=INPUTS_HELP)],
    out_file: Annotated[Path | None, typer.Option("--out", "-o", help="JSONL file to write (default: stdout).")] = None,
    max_tokens: MaxTokens = None,
    workspace: Workspace = None,
) -> None:
    """Cut text files into chunks that fit a token budget, written as JSONL."""
    from datagen.text.chunking import chunk_documents
    from datagen.workspace.config import load_config
    from datagen.text.ingest import iter_documents

    config = load_config(_workspace(workspace))
    budget = max_tokens or config.chunking.max_tokens
    if out_file:
        if out_file.is_dir():
            raise DatagenError(f"{out_file}: is a folder; --out takes a file name")
        out_file.parent.mkdir(parents=True, exist_ok=True)
    sink = out_file.open("w", encoding="utf-8") if out_file else sys.stdout
    count = 0
    try:
        for piece in chunk_documents(iter_documents(inputs), budget, config.chunking.language):
            sink.write(json.dumps(piece.to_dict(), ensure_ascii=False) + "\n")
            count += 1
    finally:
        if out_file:
            sink.close()
    if out_file:
        err.print(f"{count} chunks (at most {budget} tokens each) written to {out_file}")


@app.command()
def generate(
    pipeline: Annotated[str, typer.Argument(help=PIPELINE_HELP)],
    inputs: Annotated[list[Path], typer.Option("--input", "-i", help=INPUTS_HELP)],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run folder: the store and the dataset.")],
    max_tokens: MaxTokens = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Run the first N chunks only.")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, help="Chunks in flight.")] = 1,
    rpm: Annotated[float | None, typer.Option(min=0.001, help="At most this many LM calls a minute.")] = None,
    tpm: Annotated[int | None, typer.Option(min=1, help="At most this many tokens a minute.")] = None,
    max_failures: Annotated[int | None, typer.Option(min=1, help="Stop after this many failed chunks.")] = None,
    max_cost: Annotated[float | None, typer.Option(min=0, help="Stop cleanly before the run's spend passes this "
                                                   "many US dollars.")] = None,
    batch: Annotated[bool, typer.Option("--batch", help="Send the task model's requests as provider batch jobs "
                                        "(OpenAI's Batch API: half price, answers within 24 h); re-run to resume.")
                     ] = False,
    batch_poll: Annotated[float, typer.Option(min=0.01, max=3600, help="Seconds between polls of the batch jobs.")
                          ] = 30.0,
    batch_size: Annotated[int, typer.Option(min=1, max=50_000, help="Requests per batch job at most.")] = 50_000,
    model: Annotated[str | None, typer.Option(help="Task model, e.g. openai/gpt-4o-mini (overrides config).")] = None,
    api_base: Annotated[str | None, typer.Option(help="Base URL of an OpenAI-compatible server for the task "
                                                      "model.")] = None,
    option: Annotated[list[str] | None, typer.Option("--option", "-O", help="Pipeline option KEY=VALUE, e.g. "
                                                     "repair_boundaries=true (repeatable).")] = None,
    compiled: Annotated[Path | None, typer.Option(help="Run a program compiled by `datagen optimize` "
                                                       "(compiled/PIPELINE/NAME.json).")] = None,
    min_score: MinScore = None,
    force: Annotated[bool, typer.Option("--force", help="Reuse an --out made by another program or other "
                                                       "inputs, starting it afresh.")] = False,
    executor: Executor = "local",
    actors: Actors = 2,
    ray_address: RayAddress = None,
    workspace: Workspace = None,
) -> None:
    """Run a pipeline over text files and write a ShareGPT dataset (re-run to resume)."""
    import dspy

    from datagen.runs.generate import Callbacks, RunSettings
    from datagen.runs.generate import generate as run_generate
    from datagen.lm.local import LOCAL_MODEL

    root = _workspace(workspace)
    config = _config(root, model, api_base)
    # Each chunk's answer is distinct, so an in-memory copy of every response only grows; the disk cache
    # and the run store keep them.
    dspy.configure_cache(enable_memory_cache=False)

    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[failed]} failed · {task.fields[tokens]:,} tokens · "
                                   "{task.fields[cost]} · limit {task.fields[level]} in flight"),
                        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=err, transient=True)
    with progress:
        bar = progress.add_task(pipeline, total=None, failed=0, tokens=0, cost="cost unknown", level=concurrency)
        totals = {"tokens": 0}

        def advance(outcome):
            totals["tokens"] += sum(u.get("total_tokens") or 0 for u in outcome.usage.values())

        def show(status):
            progress.update(bar, completed=status.done, failed=status.failed, tokens=totals["tokens"],
                            cost=_cost_line(status), level=status.level)

        try:
            settings = RunSettings(max_tokens=max_tokens, limit=limit, concurrency=concurrency, rpm=rpm, tpm=tpm,
                                   max_failures=max_failures, max_cost=max_cost, force=force, batch=batch,
                                   batch_poll=batch_poll, batch_size=batch_size,
                                   cluster=_cluster(executor, actors, ray_address))
            callbacks = Callbacks(on_start=lambda total: progress.update(bar, total=total), on_outcome=advance,
                                  on_status=show, on_batch=lambda job: progress.console.print(_job_line(job)))
            report = run_generate(pipeline, inputs, out_dir, workspace=root, config=config, settings=settings,
                                  options=_options(option or []), compiled=compiled, min_scores=_min_scores(min_score),
                                  callbacks=callbacks)
        except KeyboardInterrupt:  # a second Ctrl-C: chunks in flight abandoned, the rest is in the store
            raise Interrupted(f"interrupted (Ctrl-C): finished chunks are kept in {out_dir}; run the same "
                              "command again to resume") from None
    if report.resumed:
        err.print(f"resumed: {report.resumed} chunks were already done in {out_dir}")
    if report.batch:
        jobs = report.batch
        err.print(f"batch: {_count(jobs.rounds, 'round')}, {_count(jobs.jobs, 'job')} submitted "
                  f"({_count(jobs.requests, 'request')}), {jobs.resumed_jobs} resumed; {jobs.answered:,} answered, "
                  f"{jobs.failed:,} failed")
    rate = f" ({report.chunks / report.seconds:.2f} chunks/s)" if report.seconds and report.chunks else ""
    err.print(f"this call: {report.chunks} chunks through [bold]{pipeline}[/] on {report.model} in "
              f"{report.seconds:.1f}s{rate}: {report.samples} samples, {sum(report.failures.values())} failed")
    summary = _print_summary(out_dir, config)
    gated = f", {report.held_back} below --min-score kept out" if min_score else ""
    out.print(f"dataset: {report.data_path} ({report.exported} samples{gated})", markup=False, highlight=False,
              soft_wrap=True)
    if report.model == LOCAL_MODEL:
        err.print(f"note: {LOCAL_MODEL} is a 270M base model that keeps everything offline; its rewrites are not "
                  "training-grade. Set [models.task] in datagen.toml (or --model) to a capable model for real data.",
                  soft_wrap=True, highlight=False, markup=False)
    if report.stopped:
        raise (Interrupted if report.interrupted else DatagenError)(
            f"{report.stopped}; {report.advice}")
    if report.exported == 0:
        raise DatagenError(f"the dataset is empty: {summary.why_few_samples() or 'no chunk produced a sample'}")


def _count(n: int, noun: str) -> str:
    """ "1 job", "2 jobs"."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


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


def _cluster(executor: str, actors: int, address: str | None):
    """--executor's Ray cluster (datagen.runs.cluster.RayCluster), or None to run in this process; refused with a
    one-line error when Ray is asked for and not installed, or the Ray options come without it."""
    if executor not in ("local", "ray"):
        raise DatagenError(f"--executor {executor!r}: use local or ray")
    if executor == "local":
        if address is not None or actors != 2:
            raise DatagenError("--actors and --ray-address go with --executor ray")
        return None
    from datagen.runs.cluster import RayCluster, ray_module

    ray_module()
    return RayCluster(actors, address)


def _config(root: Path, model: str | None, api_base: str | None):
    """The workspace's config with the task model's command-line flags on top."""
    from datagen.workspace.config import ModelSettings, flag_settings, load_config

    config = load_config(root)
    flags = flag_settings(model=model, api_base=api_base)  # --api-base may list servers, comma-separated
    config.models["task"] = config.models.get("task", ModelSettings()).merged(flags)
    return config


def _min_scores(pairs: list[str] | None) -> dict[str, float] | None:
    from datagen.metrics.scoring import parse_thresholds

    return parse_thresholds(pairs) if pairs else None


def _options(pairs: list[str]) -> dict:
    """KEY=VALUE pairs; a VALUE that reads as JSON (true, 3, 0.5, "x") is taken as such, else as text."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise DatagenError(f"--option {pair!r}: expected KEY=VALUE")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def _print_summary(run_dir: Path, config=None):
    """The run as a whole, from its store: what `status` prints, and `generate` after it; priced with `config`'s
    prices where it sets them."""
    from collections import Counter

    from datagen.lm.batch import TERMINAL as BATCH_TERMINAL
    from datagen.runs.summary import summarize

    summary = summarize(run_dir, config)
    line = (f"run {run_dir}: {summary.meta.get('pipeline', '?')}, {summary.done}/{summary.chunks} chunks done, "
            f"{summary.failed} failed, {summary.pending} not yet run; {summary.samples} samples")
    err.print(line, markup=False, highlight=False, soft_wrap=True)
    for kind, (count, example) in summary.failures.items():
        err.print(f"  {count} × {kind}: e.g. {example}", markup=False, highlight=False, soft_wrap=True)
    for model_name, usage in summary.usage.items():
        err.print(f"  tokens on {model_name}: {usage['prompt_tokens']:,} prompt + {usage['completion_tokens']:,} "
                  "completion", markup=False, highlight=False, soft_wrap=True)
    cost = summary.cost
    unknown = (f"  cost: unknown (no price for {', '.join(summary.unpriced)}: set input_price and output_price in "
               "its [models.ROLE] of datagen.toml)")
    err.print(f"  cost: ${cost:.4f}" if cost is not None else unknown, markup=False, highlight=False, soft_wrap=True)
    for server in summary.server_lines():
        err.print(f"  {server}", markup=False, highlight=False, soft_wrap=True)
    if summary.batch_jobs:
        states = Counter(job["status"] for job in summary.batch_jobs)
        running = [job["batch_id"] or f"job {job['id']} (not created yet)" for job in summary.batch_jobs
                   if job["status"] not in BATCH_TERMINAL]
        err.print(f"  batch jobs: {', '.join(f'{n} {state}' for state, n in states.items())}"
                  + (f" (in flight: {', '.join(str(b) for b in running)}; run generate --batch again to collect them)"
                     if running else ""), markup=False, highlight=False, soft_wrap=True)
    if summary.dropped:
        err.print(f"  dropped by the pipeline's own checks: {summary.drops()}", markup=False, highlight=False,
                  soft_wrap=True)
    if summary.gate:
        err.print(f"  quality gate {summary.gate_line()}", markup=False, highlight=False, soft_wrap=True)
    if (why := summary.why_few_samples()) is not None:
        err.print(f"  why so few samples: {why}", markup=False, highlight=False, soft_wrap=True)
    return summary


@app.command()
def evaluate(
    pipeline: Annotated[str, typer.Argument(help=PIPELINE_HELP)],
    dev: Annotated[Path, typer.Option("--dev", "-d", help="Dev set: JSONL with a \"chunk\" per line.")],
    program: Annotated[Path | None, typer.Option("--program", "-p", help="A compiled program (saved DSPy "
                                                                         "state) to evaluate instead.")] = None,
    metric: Annotated[list[str] | None, typer.Option("--metric", "-m", help="Only this metric (repeatable; "
                                                                            "default: all). With composite: the "
                                                                            "composite of the metrics named.")] = None,
    split: Annotated[str | None, typer.Option(help="Only the dev set's train or val items (style metrics are "
                                                   "fitted on the whole dev set all the same).")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="Folder for eval.json and report.html "
                                                                     "(default: evals/PIPELINE-TIME).")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, help="Dev items in flight.")] = 1,
    model: Annotated[str | None, typer.Option(help="Task model (overrides config).")] = None,
    api_base: Annotated[str | None, typer.Option(help="Base URL of the task model's server.")] = None,
    option: Annotated[list[str] | None, typer.Option("--option", "-O", help="Pipeline option KEY=VALUE.")] = None,
    executor: Executor = "local",
    actors: Actors = 2,
    ray_address: RayAddress = None,
    workspace: Workspace = None,
) -> None:
    """Run a pipeline on a dev set and score every sample with its metrics: a table, JSON and an HTML report."""
    from datetime import datetime

    _quiet_libraries()  # again: the metrics may import libraries that log (sentence-transformers)

    from datagen.tuning.evaluate import evaluate as run_evaluate
    from datagen.tuning.evaluate import write_evaluation
    from datagen.tuning.report import failed_text

    root = _workspace(workspace)
    with err.status(f"evaluating {pipeline} on {dev}"):
        result = run_evaluate(pipeline, dev, workspace=root, config=_config(root, model, api_base),
                              program_path=program, options=_options(option or []), metrics=metric,
                              split=split, concurrency=concurrency, cluster=_cluster(executor, actors, ray_address))
    table = Table("metric", "kind", "mean", "std", "min", "max", "n", "failed", title=f"{pipeline} on {dev} "
                  "(a failed item counts 0)")
    for name, s in result["metrics"].items():
        table.add_row(name, s["kind"], *(f"{s[k]:.3f}" if s[k] is not None else "-" for k in
                                         ("mean", "std", "min", "max")), str(s["n"]), escape(failed_text(s)))
    out.print(table)
    for failure in result["failures"]:
        err.print(f"  failed {failure['chunk_id']}: {failure['kind']}: {failure['message']}", markup=False,
                  highlight=False, soft_wrap=True)
    folder = out_dir or root / "evals" / f"{pipeline}-{datetime.now():%Y%m%d-%H%M%S}"
    data, report = write_evaluation(result, folder)
    out.print(f"results: {data}\nreport: {report}", markup=False, highlight=False, soft_wrap=True)


@app.command()
def optimize(
    pipeline: Annotated[str, typer.Argument(help=PIPELINE_HELP)],
    dev: Annotated[Path, typer.Option("--dev", "-d", help="Dev set with train and val items (datagen devset).")],
    optimizer: Annotated[list[str] | None, typer.Option(
        "--optimizer", help="bootstrap, bootstrap-rs, mipro, gepa, copro or simba (default: bootstrap; with "
                            "--trials, the choices searched, repeatable: default bootstrap and bootstrap-rs).")] = None,
    trials: Annotated[int | None, typer.Option(
        "--trials", min=1, help="Search the knobs outside the prompts (optimizer, demos, temperature, chunk "
                                "budget, pipeline options) until the study holds N trials; rerun to continue.")] = None,
    name: Annotated[str | None, typer.Option(help="Save as compiled/PIPELINE/NAME.json (default: the optimizer's "
                                                  "name; with --trials, 'search', also the study's name).")] = None,
    max_calls: Annotated[int | None, typer.Option("--max-calls", min=1, help="Hard cap on LM requests sent, every "
                                                                             "role counted (DSPy cache hits send "
                                                                             "none).")] = None,
    metric: Annotated[list[str] | None, typer.Option("--metric", "-m", help="Climb the composite of these metrics "
                                                                            "only (repeatable; their configured "
                                                                            "weights, renormalised; default: all "
                                                                            "it weighs), e.g. the offline ones "
                                                                            "without a capable judge.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Start without asking after the estimate.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the optimizer's random choices.")] = 0,
    option: Annotated[list[str] | None, typer.Option("--option", "-O", help="Pipeline option KEY=VALUE.")] = None,
    model: Annotated[str | None, typer.Option(help="Task model (overrides config).")] = None,
    api_base: Annotated[str | None, typer.Option(help="Base URL of the task model's server.")] = None,
    workspace: Workspace = None,
) -> None:
    """Tune a pipeline's instructions and demos on a dev set; score it before and after on held-out items."""
    import dspy  # noqa: F401  (imported before quieting its loggers, which the import resets)

    _quiet_libraries()
    root = _workspace(workspace)

    def confirm(estimate: int) -> None:
        cap = f", capped at {max_calls}" if max_calls else ""
        what = f"{trials} trials: at most" if trials else f"{(optimizer or ['bootstrap'])[0]}:"
        err.print(f"{what} about {estimate} LM requests (every role, held-out scoring included){cap}",
                  highlight=False)
        if not yes and sys.stdin.isatty() and not typer.confirm("start?", default=True, err=True):
            raise typer.Exit(1)

    settings = dict(workspace=root, config=_config(root, model, api_base), options=_options(option or []),
                    max_calls=max_calls, seed=seed, on_estimate=confirm, metrics=metric)
    if trials:
        from datagen.tuning.search import DEFAULT_OPTIMIZERS, search

        with err.status(f"searching {pipeline}: {trials} trials"):
            result = search(pipeline, dev, trials, optimizers=optimizer or DEFAULT_OPTIMIZERS, name=name or "search",
                            on_trial=lambda t: err.print(f"  trial {t.number}: {_params(t.params)}: {_score(t.score)}",
                                                         markup=False, highlight=False, soft_wrap=True), **settings)
        _print_search(result)
        after = (f"after: best trial {result.best.number}", result.best.score, "", "") if result.best else None
        compiled = None  # the best trial's score is its table's
    else:
        from datagen.tuning.optimize import optimize as run_optimize

        if optimizer and len(optimizer) > 1:
            raise DatagenError("--optimizer once, or several with --trials (the search chooses among them)")
        chosen = (optimizer or ["bootstrap"])[0]
        with err.status(f"optimizing {pipeline} with {chosen}"):
            result = run_optimize(pipeline, dev, chosen, name=name, **settings)
        after = result.after and (f"after: {result.after['program']}", *_composite(result.after))
        compiled = result.after
        if result.demos:
            _print_demos(result.demos)
    calls = ", ".join(f"{role} {n}" for role, n in sorted(result.calls.items())) or "none"
    if result.before and after:
        table = Table("program", "composite (val)", "n", "failed", title=f"{pipeline}: held-out scores (a failed "
                      "item counts 0)")
        for label, mean, n, failed in [(f"before: {result.before['program']}", *_composite(result.before)), after]:
            table.add_row(label, _score(mean), str(n), escape(failed))
        out.print(table)
        if compiled is not None:
            from datagen.tuning.optimize import comparison

            line, better = comparison(result.before, compiled)
            err.print(f"held out: {line}", markup=False, highlight=False, soft_wrap=True)
        else:  # a search: its best trial, on the val items of the chunk budget it chose
            before = _composite(result.before)[0]
            better = before is None or (after[1] is not None and after[1] > before)
        if not better:
            err.print("[yellow]the compiled program is not better than the uncompiled one on the held-out items: "
                      "keep generating without --compiled, or try more trials or another optimizer[/]")
    tokens = ", ".join(f"{lm} {n}" for lm, n in sorted(result.usage.items()))
    cached = ", ".join(f"{role} {n}" for role, n in sorted(result.cached.items()))
    err.print(f"LM requests sent: {calls} (estimate was {result.estimate})"
              + (f"; answered from DSPy's cache: {cached}" if cached else "")
              + (f"; tokens: {tokens}" if tokens else ""), highlight=False)
    if result.state:
        out.print(f"compiled: {result.state}\nreport: {result.report}", markup=False, highlight=False,
                  soft_wrap=True)
    if result.stopped:
        raise DatagenError(result.stopped)


def _composite(evaluation: dict) -> tuple[float | None, int, str]:
    summary = evaluation["metrics"]["composite"]
    from datagen.tuning.report import failed_text

    return summary["mean"], summary["n"], failed_text(summary)


def _print_demos(demos: dict) -> None:
    """The demos a compile kept by predictor, and the candidates it rejected by reason."""
    kept = ", ".join(f"{name} {n}" for name, n in demos.get("kept", {}).items()) or "none"
    rejected = demos.get("rejected", {})
    why = ", ".join(f"{reason} {n}" for reason, n in rejected.items())
    err.print(f"demos kept: {kept}; candidates rejected: {sum(rejected.values())}" + (f" ({why})" if why else ""),
              markup=False, highlight=False, soft_wrap=True)


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _params(params: dict) -> str:
    return ", ".join(f"{key.removeprefix('option.')}={value}" for key, value in params.items())


def _print_search(result) -> None:
    """Every complete trial of the study, the best one marked, and where the study is kept."""
    table = Table("trial", "settings", "composite (val)", "LM requests", title=f"study {result.study!r}: "
                  f"{len(result.trials)} trials ({result.ran} this run)")
    for trial in sorted(result.trials, key=lambda t: t.number):
        mark = " *" if result.best and trial.number == result.best.number else ""
        table.add_row(f"{trial.number}{mark}", escape(_params(trial.params)), _score(trial.score), str(trial.calls))
    out.print(table)
    err.print(f"study: sqlite:///{result.storage} (name {result.study!r}); run again with a larger --trials to "
              "continue it", markup=False, highlight=False, soft_wrap=True)


@app.command()
def new(
    name: Annotated[str, typer.Argument(help="Name of the new pipeline (a Python identifier).")],
    signature: Annotated[str | None, typer.Option("--signature", "-s", help="Its fields, inputs -> outputs (default: "
                                                  "\"passage -> output\"); the first input gets each chunk.")] = None,
    workspace: Workspace = None,
) -> None:
    """Scaffold a pipeline that runs as it is: signature, program, metrics, a dev set and an offline test."""
    from datagen.scaffold.pipeline import scaffold

    root = _workspace(workspace)
    for path in scaffold(root, name, signature):
        out.print(f"wrote {path.relative_to(root)}", markup=False, highlight=False, soft_wrap=True)
    err.print(f"next: datagen generate {name} --input data/samples --out out/{name}", markup=False, highlight=False,
              soft_wrap=True)


@app.command()
def init(
    folder: Annotated[Path, typer.Argument(help="The workspace folder to make (created if missing).")] = Path("."),
    pipeline: Annotated[str, typer.Option("--pipeline", "-p", help="Name of the pipeline to start from.")] = "starter",
    signature: Annotated[str | None, typer.Option("--signature", "-s", help="Its fields, inputs -> outputs (default: "
                                                  "\"passage -> output\").")] = None,
) -> None:
    """Make a workspace: datagen.toml, programs/ signatures/ metrics/ data/ tests/, a sample corpus and a pipeline
    to start from; it runs at once on the embedded model. Nothing is overwritten."""
    from datagen.scaffold.workspace import init_workspace

    for path in init_workspace(folder, pipeline, signature):
        out.print(f"wrote {_shown(path)}", markup=False, highlight=False, soft_wrap=True)
    move = "" if folder.resolve() == Path.cwd().resolve() else f"cd {_shown(folder)} && "
    err.print(f"next: {move}datagen generate {pipeline} --input data/samples --out out/{pipeline}", markup=False,
              highlight=False, soft_wrap=True)


def _shown(path: Path) -> Path:
    """`path` relative to the current folder when it is inside it, else as it is."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


@app.command("inspect")
def inspect_(
    run_dir: Annotated[Path, typer.Argument(help="A run folder made by `datagen generate`.")],
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
    from datagen.runs.inspection import inspect_item, list_failed, list_samples, render, shorten

    if item is not None and (worst or failed):
        raise DatagenError("--worst and --failed choose what to list: give them without an id")
    if item is None and prompts:
        raise DatagenError("--prompts shows one chunk's LM calls: give a sample or chunk id")
    if worst and failed:
        raise DatagenError("--worst orders samples, --failed lists failed chunks: one or the other")
    if item is not None:
        view = inspect_item(run_dir, item, prompts)
    elif failed:
        view = list_failed(run_dir, limit)
    else:
        view = list_samples(run_dir, limit, worst, seed)
    if as_json:
        out.print(json.dumps(view, ensure_ascii=False, indent=2), markup=False, highlight=False, soft_wrap=True)
    elif item is not None:
        out.print(render(view), markup=False, highlight=False, soft_wrap=True)
    elif failed:
        table = Table("chunk", "source", "kind", "message", "raw answer",
                      title=f"{len(view['failed'])} of {view['total']} failed chunks")
        for row in view["failed"]:
            table.add_row(row["chunk_id"], escape(f"{row['source']} [{row['start']}:{row['end']}]"), row["kind"],
                          escape(shorten(row["message"])), escape(shorten(row["raw"], 80)))
        out.print(table)
    else:
        order = "lowest-scored first" if worst else f"a random pick, seed {seed}"
        table = Table("sample", "source", "input", "output", "scores",
                      title=f"{len(view['samples'])} of {view['total']} samples ({order})")
        for row in view["samples"]:
            table.add_row(row["id"], escape(f"{row['source']} [{row['start']}:{row['end']}]"),
                          escape(shorten(row["input"])), escape(shorten(row["output"])),
                          "\n".join(f"{metric} {value:.3f}" for metric, value in row["scores"].items()))
        out.print(table)


compiled_app = typer.Typer(help="Programs compiled by `datagen optimize`.", no_args_is_help=True)
app.add_typer(compiled_app, name="compiled")


@compiled_app.command("list")
def compiled_list(workspace: Workspace = None) -> None:
    """What has been compiled, with held-out scores before and after."""
    from datagen.workspace.compiled import list_compiled

    root = _workspace(workspace)
    table = Table("program", "optimizer", "before", "after", "dev", "created")
    for state, manifest in list_compiled(root):
        scores = manifest.get("scores", {})
        table.add_row(escape(str(state.relative_to(root))), escape(str(manifest.get("optimizer", "?"))),
                      *(f"{scores[k]:.3f}" if scores.get(k) is not None else "-" for k in ("before", "after")),
                      escape(str(manifest.get("dev", {}).get("path", "?"))), manifest.get("created", "?"))
    out.print(table)


@compiled_app.command("show")
def compiled_show(state: Annotated[Path, typer.Argument(help="A compiled program: compiled/PIPELINE/NAME.json.")]) -> None:
    """The instructions and demos of a compiled program, and how it was made."""
    from datagen.workspace.compiled import read_manifest, read_state

    manifest = read_manifest(state)
    saved = read_state(state)
    show = [f"{state}: pipeline {manifest.get('pipeline')}, optimizer {manifest.get('optimizer')}, scores "
            f"{manifest.get('scores')}, models {manifest.get('models')}, created {manifest.get('created')}"]
    for predictor, predictor_state in saved.items():
        if not isinstance(predictor_state, dict) or "signature" not in predictor_state:
            continue
        show += ["", f"== {predictor} ==", "instructions:", predictor_state["signature"].get("instructions", "")]
        for number, demo in enumerate(predictor_state.get("demos", []), 1):
            show.append(f"-- demo {number} --")
            show += [f"{key}: {value}" for key, value in demo.items() if not key.startswith("augmented")]
    out.print("\n".join(show), markup=False, highlight=False, soft_wrap=True)


@app.command("judge-check")
def judge_check(
    target: Annotated[str, typer.Argument(help="A run folder made by `datagen generate` (its chunks and their "
                                               "generic rephrases are the ground truth), or, with --pairs or "
                                               "--authors, a pipeline name.", metavar="RUN_OR_PIPELINE")],
    pairs: Annotated[Path | None, typer.Option("--pairs", help="JSONL of styled passages and their human plain "
                                                                "versions: check the pipeline's metrics on them.")] = None,
    styled_field: Annotated[str, typer.Option("--styled-field", help="--pairs: the styled passage's field.")] = "styled",
    plain_field: Annotated[str, typer.Option("--plain-field", help="--pairs: the plain version's field.")] = "plain",
    authors: Annotated[list[Path] | None, typer.Option("--authors", help="One file or folder per author (repeat, "
                                                                         "2 or more): check the style metrics.")] = None,
    offline: Annotated[bool, typer.Option("--offline", help="--pairs/--authors: offline metrics only (no LLM "
                                                            "call); the composite of those alone.")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="--pairs/--authors/--human: write the figures "
                                                                 "as JSON here.")] = None,
    other: Annotated[list[Path] | None, typer.Option("--other", help="With a run: text by another author to "
                                                                     "compare with as well (files or folders).")] = None,
    limit: Annotated[int | None, typer.Option(min=2, help="Passages to check on (more: surer, dearer); default "
                                                          "40 for a run, 200 pairs or passages per author.")] = None,
    human: Annotated[bool, typer.Option("--human", help="With a run: check its metrics and its --min-score gate "
                                                        "against the reviews people gave its samples.")] = False,
    min_score: Annotated[list[str] | None, typer.Option(
        "--min-score", help="--human: a gate bar METRIC=VALUE to check (repeatable; default: the run's last "
                            "gate). Reported only: nothing is applied.")] = None,
    workspace: Workspace = None,
) -> None:
    """Can this metric be trusted? Check a pipeline's metrics on parallel text (--pairs) or several authors
    (--authors), a run's metrics against people's reviews (--human), or a run's style judges on its own samples."""
    root = _workspace(workspace)
    if human:
        if pairs is not None or authors or other:
            raise DatagenError("--human checks a run's metrics against its reviews: not with --pairs, --authors "
                               "or --other")
        if offline or limit:
            raise DatagenError("--offline and --limit do not go with --human (every reviewed sample is checked)")
        return _judge_check_human(Path(target), _min_scores(min_score), json_out)
    if min_score:
        raise DatagenError("--min-score goes with --human (the gate to check against the reviews)")
    if pairs is None and not authors:
        if offline or json_out:
            raise DatagenError("--offline and --json go with --pairs or --authors")
        return _judge_check_run(Path(target), other, limit or 40, root)
    if pairs is not None and authors:
        raise DatagenError("--pairs and --authors are two checks: run them one at a time")
    from datagen.workspace.config import load_config
    from datagen.metrics.checks.pairs import check_authors, check_pairs, pair_metrics, read_authors, read_pairs

    config = load_config(root)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as progress:
        if pairs is not None:
            data = read_pairs(pairs, styled_field, plain_field)[:limit or 200]
            task = progress.add_task("fitting the metrics", total=len(data))
            metrics = pair_metrics(target, data, workspace=root, config=config, offline=offline)
            progress.update(task, description="scoring pairs")
            result = check_pairs(metrics, data, on_pair=lambda done, _: progress.update(task, completed=done))
        else:
            data = read_authors(authors, limit or 200)
            task = progress.add_task("scoring author pairs", total=len(data) * (len(data) - 1))
            result = check_authors(target, data, workspace=root, config=config, offline=offline,
                                   on_pair=lambda done, _: progress.update(task, completed=done))
    table = Table("metric", "kind", "check", "accuracy", "95% interval", "AUC", "n",
                  title=f"{target} on {result.data}: how often the metric prefers what it should")
    for name, checks in result.figures.items():
        for check, f in checks.items():
            table.add_row(escape(name), result.kinds.get(name, ""), check, f"{f.accuracy:.3f}",
                          f"{f.low:.2f}-{f.high:.2f}", "-" if f.auc is None else f"{f.auc:.3f}", str(f.n))
    out.print(table)
    # A failed score counts 0 in its metric's figures: say how many there were (before the flags they may explain),
    # so a low figure is read as such.
    for line in result.failure_lines():
        out.print(f"failed: {line}", markup=False, highlight=False, soft_wrap=True)
    for flag in result.flags:
        out.print(f"flagged: {flag}", markup=False, highlight=False, soft_wrap=True)
    if json_out:
        err.print(f"figures: {result.write_json(json_out)}", markup=False, highlight=False)


def _judge_check_human(run_dir: Path, min_scores: dict[str, float] | None, json_out: Path | None) -> None:
    """A run's metrics and gate checked against its reviews (see datagen.metrics.checks.human)."""
    from datagen.metrics.checks.human import MEAN_RATING, WHOLE_GATE, human_check

    def fig(value: float | None, digits: int = 2) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    result = human_check(run_dir, min_scores)
    out.print(f"{result.reviews} reviews: {result.good} good, {result.bad} bad ({result.corrected} corrected, "
              f"counted as bad: the metrics scored the generated text), {result.rated} rated", markup=False,
              highlight=False, soft_wrap=True)
    table = Table("metric", "AUC good vs bad", "95% interval", "good", "bad", "rated on", "Spearman",
                  "95% interval", "n", title=f"{run_dir}: the metrics against people's reviews")
    for m in result.metrics:
        auc = (fig(m.auc.value), f"{m.auc.low:.2f} to {m.auc.high:.2f}") if m.auc else (escape(m.auc_note or "-"), "")
        rank = ((fig(m.spearman.value), f"{m.spearman.low:.2f} to {m.spearman.high:.2f}", str(m.spearman.n))
                if m.spearman else (escape(m.spearman_note or "-"), "", ""))
        criterion = "mean rating" if m.criterion == MEAN_RATING else m.criterion or "-"
        table.add_row(escape(m.metric), *auc, str(m.good), str(m.bad), escape(criterion), *rank)
    out.print(table)
    for flag in result.flags:
        out.print(f"flagged: {flag}", markup=False, highlight=False, soft_wrap=True)
    if result.gates:
        table = Table("gate", "n", "good", "passing", "precision", "recall", "best bar", "passing", "precision",
                      "recall", title=f"the gate ({result.gate_source}) against the verdicts (best bar: "
                                      "Youden's J; reported, not applied)")
        for g in result.gates:
            name = escape(g.metric if g.metric == WHOLE_GATE else f"{g.metric} >= {g.bar:g}")
            at = (str(g.at_bar.passing), fig(g.at_bar.precision), fig(g.at_bar.recall)) if g.at_bar else ("", "", "")
            best = ((f"{g.best.threshold:.3g}", str(g.best.passing), fig(g.best.precision), fig(g.best.recall))
                    if g.best else (escape(g.note or "-"), "", "", ""))
            table.add_row(name, str(g.n), str(g.good), *at, *best)
        out.print(table)
    else:
        out.print("no gate to check: give one with --min-score METRIC=VALUE", markup=False, highlight=False)
    if json_out:
        err.print(f"figures: {result.write_json(json_out)}", markup=False, highlight=False)


def _judge_check_run(run_dir: Path, other: list[Path] | None, limit: int, root: Path) -> None:
    """The style judges checked on a run's own samples (see datagen.metrics.checks.judges)."""
    from datagen.metrics.checks.judges import judge_check as run_check

    with err.status(f"checking judges on {run_dir}"):
        checks = run_check(run_dir, other=other, limit=limit, workspace=root)
    table = Table("against", "judge", "accuracy", "AUC", "pairs", "verdict",
                  title="how often the author's passage ranks above the other")
    for c in checks:
        verdict = "[red]worse than the baseline[/]" if c.worse_than_baseline else ""
        table.add_row(escape(c.against), escape(c.judge), f"{c.accuracy:.2f}",
                      "-" if c.auc is None else f"{c.auc:.2f}", str(c.pairs), verdict)
    out.print(table)


@app.command()
def devset(
    pipeline: Annotated[str, typer.Argument(help=PIPELINE_HELP)],
    inputs: Annotated[list[Path] | None, typer.Option("--input", "-i",
                                                      help=INPUTS_HELP + " (Or --from-review.)")] = None,
    from_review: Annotated[Path | None, typer.Option(
        "--from-review", help="A run folder reviewed in datagen view: a labeled dev set of the chunks whose samples "
                              "were all approved, with their reviewed samples and demos.")] = None,
    n: Annotated[int | None, typer.Option("--n", help="How many chunks to take (default 40).")] = None,
    out_file: Annotated[Path | None, typer.Option("--out", "-o", help="JSONL file to write (default: "
                                                                      "data/PIPELINE/dev.jsonl; with --from-review, "
                                                                      "data/PIPELINE/reviewed.jsonl).")] = None,
    val_fraction: Annotated[float, typer.Option("--val-fraction", help="Share of items in the val split, chosen "
                                                                       "by chunk id.")] = 0.25,
    seed: Annotated[int | None, typer.Option(help="Seed of which chunks are taken (default 0).")] = None,
    max_tokens: MaxTokens = None,
    workspace: Workspace = None,
) -> None:
    """Sample a dev set (train and val items) for evaluate and optimize: chunks spread across the input files, or
    the chunks of a reviewed run whose samples a person approved (--from-review)."""
    from datagen.workspace.config import load_config
    from datagen.dataset.devset import sample_devset, write_devset
    from datagen.workspace.pipelines import pipeline_root

    if bool(inputs) == (from_review is not None):
        raise DatagenError("--input and --from-review: give one of them, not both" if inputs else
                           "give --input PATH (chunks drawn from a corpus) or --from-review RUN (a reviewed run)")
    root = _workspace(workspace)
    pipeline_root(pipeline, root)  # an unknown pipeline is refused before any file is read
    target = out_file or root / "data" / pipeline / ("reviewed.jsonl" if from_review else "dev.jsonl")
    if target.is_dir():
        raise DatagenError(f"{target}: is a folder; --out takes a file name")
    if from_review is not None:
        return _reviewed_devset(pipeline, from_review, target, val_fraction, root, n, seed, max_tokens)
    chunking = load_config(root).chunking
    budget = max_tokens or chunking.max_tokens
    records = sample_devset(inputs, 40 if n is None else n, max_tokens=budget, val_fraction=val_fraction,
                            seed=seed or 0, language=chunking.language)
    write_devset(records, target)
    shown = _shown(target)
    val = sum(r["split"] == "val" for r in records)
    files = len({r["source"] for r in records})
    err.print(f"{len(records)} dev items ({len(records) - val} train, {val} val) from {files} "
              f"file{'s' if files != 1 else ''} → {shown}", markup=False, highlight=False, soft_wrap=True)


def _reviewed_devset(pipeline: str, run_dir: Path, target: Path, val_fraction: float, root: Path,
                     *drawing) -> None:
    """`devset --from-review`: the labeled dev set of a reviewed run (see datagen.dataset.devset.reviewed_devset)."""
    from datagen.dataset.devset import reviewed_devset, write_devset

    if any(value is not None for value in drawing):
        raise DatagenError("--n, --seed and --max-tokens draw chunks from --input; --from-review takes every chunk "
                           "of the run whose samples were all approved")
    made = reviewed_devset(run_dir, pipeline, val_fraction, workspace=root)
    write_devset(made.records, target)
    records = made.records
    val = sum(r["split"] == "val" for r in records)
    err.print(f"{len(records)} dev items ({len(records) - val} train, {val} val) from {run_dir}, "
              f"{made.corrected} sample(s) corrected; {made.left_out} chunk(s) left out (a sample rejected or not "
              f"reviewed) → {_shown(target)}", markup=False, highlight=False, soft_wrap=True)
    if made.no_steps:
        err.print(f"  {made.no_steps} item(s) without demos: no step of the program was logged for their chunks",
                  markup=False, highlight=False, soft_wrap=True)


@app.command()
def status(run_dir: Annotated[Path, typer.Argument(help="A run folder made by `datagen generate`.")],
           workspace: Workspace = None) -> None:
    """Show a run's progress, failures, tokens and cost (finished or interrupted)."""
    from datagen.workspace.config import CONFIG_FILE, load_config

    root = _workspace(workspace)
    if workspace is None and not (root / CONFIG_FILE).is_file():  # priced by the run folder's own workspace, if any
        root = _workspace(run_dir.resolve()) if run_dir.is_dir() else root
    _print_summary(run_dir, load_config(root))


@app.command()
def models(workspace: Workspace = None) -> None:
    """Show the model each role uses, after datagen.toml and DATAGEN_* variables."""
    from datagen.workspace.config import ROLES, load_config
    from datagen.lm.local import LOCAL_MODEL

    config = load_config(_workspace(workspace))
    table = Table("role", "model", "api_base", "key from", "temperature", "max_tokens")
    for role in ROLES:
        s = config.role(role)
        table.add_row(role, s.model or f"{LOCAL_MODEL} (embedded default)", ", ".join(s.api_bases) or "-",
                      s.api_key_env or "-", str(s.temperature if s.temperature is not None else "-"),
                      str(s.max_tokens or "-"))
    out.print(table)


@app.command()
def pipelines(workspace: Workspace = None) -> None:
    """List the pipelines: the workspace's (programs/*.py) and datagen's built-ins, marked (built-in)."""
    from datagen.workspace.pipelines import find_pipelines, is_builtin

    root = _workspace(workspace)
    found = find_pipelines(root)
    if not found:
        raise DatagenError(f"no pipelines in {root / 'programs'}")
    for name, where in found.items():
        out.print(f"{name}  (built-in)" if is_builtin(where) and not is_builtin(root) else name, markup=False)


@app.command()
def view(
    targets: Annotated[list[Path], typer.Argument(help="Run folders made by `datagen generate`, evaluation folders "
                                                       "(eval.json), or compiled/PIPELINE/NAME.eval.json.",
                                                  metavar="RUN...")],
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free one).")] = 8001,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    allow_remote: Annotated[bool, typer.Option("--allow-remote", help="Allow an address other than loopback (the "
                                               "app has no login: anyone who reaches it can read and review).")
                            ] = False,
    workspace: Workspace = None,
) -> None:
    """Look at runs in a browser: filter and read samples, review, rate and correct them, compare two runs."""
    from datagen.workspace.config import ROLES, load_config
    from datagen.view.server import check_host, serve, viewed_sources

    check_host(host, allow_remote)
    root = _workspace(workspace)
    config = load_config(root)
    viewed = viewed_sources(targets, root, config)
    bases = [base for role in ROLES for base in config.role(role).api_bases]
    serve(viewed, host, port, secrets_shown=bases,
          on_ready=lambda url: (out.print(f"datagen view: {url} (Ctrl-C stops it)", markup=False, highlight=False),
                                sys.stdout.flush()))


@app.command("export")
def export_(
    run_dir: Annotated[Path, typer.Argument(help="A run folder made by `datagen generate` (holds run.db).")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="sharegpt, alpaca, openai (chat messages), hf "
                                                            "(Hugging Face dataset folder), jsonl or parquet.")],
    out_path: Annotated[Path | None, typer.Option("--out", "-o", help="File to write, or folder for hf "
                                                                      "(default: in the run folder).")] = None,
    system: Annotated[str | None, typer.Option(help="System prompt put first in every conversation.")] = None,
    val_fraction: Annotated[float, typer.Option("--val-fraction", help="Share of samples in hf's validation "
                                                                       "split, chosen by sample id.")] = 0.1,
    min_score: MinScore = None,
    reviewed_only: Annotated[bool, typer.Option("--reviewed-only", help="Only samples a person approved or "
                                                "corrected in datagen view.")] = False,
    exclude_rejected: Annotated[bool, typer.Option("--exclude-rejected", help="Leave out samples a person rated "
                                                   "bad in datagen view (and did not correct).")] = False,
) -> None:
    """Export a run's samples as sharegpt, alpaca, openai, hf, jsonl or parquet, with a dataset card. A sample a
    person corrected in `datagen view` is exported as corrected."""
    from datagen.dataset.export import write_export
    from datagen.dataset.review import NOT_REJECTED, REVIEWED

    if reviewed_only and exclude_rejected:
        raise DatagenError("--reviewed-only keeps approved samples, which already leaves out rejected ones: give "
                           "one of the two")
    reviewed = REVIEWED if reviewed_only else NOT_REJECTED if exclude_rejected else None
    result = write_export(run_dir, fmt, out_path, system, val_fraction, _min_scores(min_score), reviewed)
    splits = f": {', '.join(f'{name} {n}' for name, n in result.splits.items())}" if result.splits else ""
    out.print(f"{fmt}: {result.path} ({result.samples} samples{splits})", markup=False, highlight=False,
              soft_wrap=True)
    err.print(f"dataset card: {result.card}", markup=False, highlight=False, soft_wrap=True)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        _fail(Interrupted("interrupted (Ctrl-C)"))
    except DatagenError as exc:
        _fail(exc)
    except OSError as exc:  # a file that vanished, a full disk, a permission: name it (-v shows where it came from)
        logging.getLogger(__name__).debug("", exc_info=True)
        culprit = f"{exc.filename}: " if exc.filename else ""
        _fail(DatagenError(f"{culprit}{exc.strerror or exc}"))


def _fail(exc: DatagenError) -> None:
    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    if isinstance(exc, Interrupted):
        # Threads may still wait on the model (a second Ctrl-C abandons them): the interpreter's exit would join
        # them, so leave at once. Everything worth keeping is committed already (SQLite survives this as it
        # survives a kill).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exc.exit_code)
    raise SystemExit(exc.exit_code) from None
