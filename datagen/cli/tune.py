"""The commands that tune a pipeline: sample a `devset`, `evaluate` a pipeline on it, `optimize` it, and look at
what was compiled (`compiled list`, `compiled show`)."""

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from datagen.cli.logs import quiet_libraries
from datagen.cli.options import (DEFAULT_ACTORS, DEFAULT_WORKERS, INPUTS_HELP, LOCAL, Actors, ApiBase, Executor,
                                 MaxTokens, Model, Pipeline, PipelineOptions, RayAddress, Workers, Workspace,
                                 executor_cluster, pipeline_options, task_config, workspace_root)
from datagen.cli.output import diversity_lines, err, out, say, shown
from datagen.errors import DatagenError, InputError

Metrics = Annotated[list[str] | None, typer.Option("--metric", "-m", help="Only this metric (repeatable; default: "
                                                                          "all). With composite: the composite of "
                                                                          "the metrics named.")]
ClimbedMetrics = Annotated[list[str] | None, typer.Option("--metric", "-m", help="Climb the composite of these "
                                                                                 "metrics only (repeatable; their "
                                                                                 "configured weights, renormalised; "
                                                                                 "default: all it weighs), e.g. the "
                                                                                 "offline ones without a capable "
                                                                                 "judge.")]
Optimizers = Annotated[list[str] | None, typer.Option(
    "--optimizer", help="bootstrap, bootstrap-rs, mipro, gepa, copro or simba (default: bootstrap; with --trials, "
                        "the choices searched, repeatable: default bootstrap and bootstrap-rs).")]
Trials = Annotated[int | None, typer.Option(
    "--trials", min=1, help="Search the knobs outside the prompts (optimizer, demos, temperature, chunk budget, "
                            "pipeline options) until the study holds N trials; rerun to continue.")]
MaxCalls = Annotated[int | None, typer.Option("--max-calls", min=1, help="Hard cap on LM requests sent, every role "
                                                                         "counted (DSPy cache hits send none).")]
MaxCost = Annotated[float | None, typer.Option("--max-cost", min=0, help="Stop before the spend passes this many "
                                                                         "US dollars (every role's tokens priced "
                                                                         "as they come; needs every role's price).")]
DEFAULT_OPTIMIZER = "bootstrap"


def evaluate(
    pipeline: Pipeline,
    dev: Annotated[Path, typer.Option("--dev", "-d", help="Dev set: JSONL with a \"chunk\" per line.")],
    program: Annotated[Path | None, typer.Option("--program", "-p", help="A compiled program to evaluate "
                                                   "instead: compiled/PIPELINE/NAME.json, or its NAME.")] = None,
    metric: Metrics = None,
    split: Annotated[str | None, typer.Option(help="Only the dev set's train or val items (style metrics are "
                                                   "fitted on the whole dev set all the same).")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="Folder for eval.json and report.html "
                                                                     "(default: evals/PIPELINE-TIME).")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, help="Dev items in flight.")] = 1,
    model: Model = None,
    api_base: ApiBase = None,
    option: PipelineOptions = None,
    executor: Executor = LOCAL,
    actors: Actors = DEFAULT_ACTORS,
    ray_address: RayAddress = None,
    workers: Workers = DEFAULT_WORKERS,
    workspace: Workspace = None,
) -> None:
    """Run a pipeline on a dev set and score every sample with its metrics: a table, JSON and an HTML report."""
    from datetime import datetime

    quiet_libraries()  # again: the metrics may import libraries that log (sentence-transformers)

    from datagen.tuning import evaluate_pipeline, failed_text, field_diversity, write_evaluation

    root = workspace_root(workspace)
    with err.status(f"evaluating {pipeline} on {dev}"):
        result = evaluate_pipeline(pipeline, dev, workspace=root, config=task_config(root, model, api_base),
                                   program_path=program, options=pipeline_options(option), metrics=metric,
                                   split=split, concurrency=concurrency,
                                   cluster=executor_cluster(executor, actors, ray_address, workers))
    table = Table("metric", "kind", "mean", "std", "min", "max", "n", "failed", title=f"{pipeline} on {dev} "
                  "(a failed item counts 0)")
    for name, s in result["metrics"].items():
        table.add_row(name, s["kind"], *(f"{s[k]:.3f}" if s[k] is not None else "-" for k in
                                         ("mean", "std", "min", "max")), str(s["n"]), escape(failed_text(s)))
    out.print(table)
    for failure in result["failures"]:
        say(f"  failed {failure['chunk_id']}: {failure['kind']}: {failure['message']}", to=err)
    for name, comparison in field_diversity(result).items():
        for line in diversity_lines(name, comparison, "dev chunks"):
            say(line)
    _print_bar(result)
    folder = out_dir or root / "evals" / f"{pipeline}-{datetime.now():%Y%m%d-%H%M%S}"
    data, report = write_evaluation(result, folder)
    say(f"results: {data}\nreport: {report}")


def optimize(
    pipeline: Pipeline,
    dev: Annotated[Path, typer.Option("--dev", "-d", help="Dev set with train and val items (datagen devset).")],
    optimizer: Optimizers = None,
    trials: Trials = None,
    name: Annotated[str | None, typer.Option(help="Save as compiled/PIPELINE/NAME.json (default: the optimizer's "
                                                  "name; with --trials, 'search', also the study's name).")] = None,
    max_calls: MaxCalls = None,
    max_cost: MaxCost = None,
    metric: ClimbedMetrics = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Start without asking after the estimate.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the optimizer's random choices.")] = 0,
    option: PipelineOptions = None,
    model: Model = None,
    api_base: ApiBase = None,
    workspace: Workspace = None,
) -> None:
    """Tune a pipeline's instructions and demos on a dev set; score it before and after on held-out items."""
    import dspy  # noqa: F401  (imported before quieting its loggers, which the import resets)

    quiet_libraries()
    root = workspace_root(workspace)

    def confirm(estimate) -> None:
        caps = [cap for cap in (max_calls and f"{max_calls} requests", max_cost is not None and f"${max_cost:g}")
                if cap]
        what = f"{trials} trials: at most" if trials else f"{(optimizer or [DEFAULT_OPTIMIZER])[0]}:"
        line = estimate.line().removeprefix("about ")
        err.print(f"{what} about {escape(line)} (every role, held-out scoring included)"
                  + (f", capped at {' and '.join(caps)}" if caps else ""), highlight=False, soft_wrap=True)
        if estimate.warning:
            err.print(f"[yellow]warning: {escape(estimate.warning)}[/]", highlight=False, soft_wrap=True)
        # A cap too small for the preset is said, not refused: the estimate is a reading (DSPy's cache may answer
        # many calls), and a small capped run is a fair smoke test; at a terminal the default answer is then no.
        if not yes and sys.stdin.isatty() and not typer.confirm("start?", default=not estimate.warning, err=True):
            raise typer.Exit(1)

    settings = dict(workspace=root, config=task_config(root, model, api_base), options=pipeline_options(option),
                    max_calls=max_calls, max_cost=max_cost, seed=seed, on_estimate=confirm, metrics=metric)
    if trials:
        result, after, compiled = _search(pipeline, dev, trials, optimizer, name, settings)
    else:
        result, after, compiled = _optimize_once(pipeline, dev, optimizer, name, settings)
    if result.before and after:
        _print_held_out(pipeline, result.before, after, compiled)
        _print_bars(result.before, _saved_after(result) if compiled is None else compiled)
    _print_requests(result)
    if result.state:
        say(f"compiled: {result.state}\nreport: {result.report}")
    if result.stopped:
        raise DatagenError(result.stopped)


def _search(pipeline: str, dev: Path, trials: int, optimizers: list[str] | None, name: str | None, settings: dict):
    """`optimize --trials`: the study run and its trials printed. Returns the search's result, the best trial's
    row of the held-out table (None without one) and None for the compiled program's evaluation (the best trial's
    score is its table's)."""
    from datagen.tuning.search import DEFAULT_OPTIMIZERS, search_pipeline

    with err.status(f"searching {pipeline}: {trials} trials"):
        result = search_pipeline(pipeline, dev, trials, optimizers=optimizers or DEFAULT_OPTIMIZERS,
                                 name=name or "search", on_trial=_print_trial, **settings)
    _print_search(result)
    after = (f"after: best trial {result.best.number}", result.best.score, "", "") if result.best else None
    return result, after, None


def _optimize_once(pipeline: str, dev: Path, optimizers: list[str] | None, name: str | None, settings: dict):
    """`optimize` with one optimizer: the compile run and the demos it kept printed. Returns the result, the
    compiled program's row of the held-out table and its evaluation (None for both when it was not scored).

    Raises:
        InputError: Several optimizers given without --trials.
    """
    from datagen.tuning import optimize_pipeline

    if optimizers and len(optimizers) > 1:
        raise InputError("--optimizer once, or several with --trials (the search chooses among them)")
    chosen = (optimizers or [DEFAULT_OPTIMIZER])[0]
    with err.status(f"optimizing {pipeline} with {chosen}"):
        result = optimize_pipeline(pipeline, dev, chosen, name=name, **settings)
    after = result.after and (f"after: {result.after['program']}", *_composite(result.after))
    if result.demos:
        _print_demos(result.demos)
    return result, after, result.after


def _print_held_out(pipeline: str, before: dict, after: tuple, compiled: dict | None) -> None:
    """The held-out scores before and after (`after`: a row of the table), and a warning when the compiled program
    (`compiled`, its evaluation; None for a search's best trial) is not better."""
    table = Table("program", "composite (val)", "n", "failed", title=f"{pipeline}: held-out scores (a failed "
                  "item counts 0)")
    for label, mean, n, failed in [(f"before: {before['program']}", *_composite(before)), after]:
        table.add_row(label, _score(mean), str(n), escape(failed))
    out.print(table)
    if compiled is not None:
        from datagen.tuning import comparison

        line, better = comparison(before, compiled)
        say(f"held out: {line}", to=err)
    else:  # a search: its best trial, on the val items of the chunk budget it chose
        before_mean = _composite(before)[0]
        better = before_mean is None or (after[1] is not None and after[1] > before_mean)
    if not better:
        err.print("[yellow]the compiled program is not better than the uncompiled one on the held-out items: "
                  "keep generating without --compiled, or try more trials or another optimizer[/]")


def _print_bar(evaluation: dict | None, which: str = "", why: str = "") -> None:
    """The diversity bar's verdict on an evaluation's predictions (`which`: " (before)", " (after)"): a line when
    met or not measured, a warning when broken (then `why`); nothing without a bar."""
    from datagen.tuning import bar_broken, bar_line

    line = bar_line(evaluation or {})
    if line is None:
        return
    if bar_broken(evaluation):
        err.print(f"[yellow]warning: diversity bar{which} {escape(line)}{escape(why)}[/]", highlight=False,
                  soft_wrap=True)
    else:
        say(f"diversity bar{which}: {line}")


def _print_bars(before: dict, after: dict | None) -> None:
    """The diversity bar's verdicts on the held-out predictions before and after compiling; a compiled program
    that broke a bar the uncompiled one met is said to have climbed into a template."""
    from datagen.tuning import bar_broken

    _print_bar(before, " (before)")
    climbed = bar_broken(after) and (before.get("diversity_bar") or {}).get("met") is True
    _print_bar(after, " (after)", ": the optimizer climbed into a template the uncompiled program did not use; "
               "read the compiled program's predictions in the report before generating with it" if climbed else "")


def _saved_after(result) -> dict | None:
    """A search's best trial's held-out evaluation, as saved beside its compiled program (it may be an earlier
    run's trial); None when nothing was saved."""
    import json

    from datagen.workspace import evaluation_path

    saved = result.state and evaluation_path(result.state)
    return json.loads(saved.read_text(encoding="utf-8")) if saved and saved.is_file() else None


def _print_requests(result) -> None:
    """The LM requests an optimize or a search sent by role, against its estimate, with DSPy's cache hits and the
    tokens by LM."""
    calls = ", ".join(f"{role} {n}" for role, n in sorted(result.calls.items())) or "none"
    tokens = ", ".join(f"{lm} {n}" for lm, n in sorted(result.usage.items()))
    cached = ", ".join(f"{role} {n}" for role, n in sorted(result.cached.items()))
    spent = getattr(result, "spent", None)
    err.print(f"LM requests sent: {calls} (estimate was {int(result.estimate)})"
              + (f"; answered from DSPy's cache: {cached}" if cached else "")
              + (f"; tokens: {tokens}" if tokens else "")
              + (f"; spent: ${spent:.4f}" if spent is not None and tokens else ""), highlight=False, soft_wrap=True)


def _composite(evaluation: dict) -> tuple[float | None, int, str]:
    """The composite's mean, items scored and failures (as a table cell) of an evaluation."""
    from datagen.tuning import failed_text

    summary = evaluation["metrics"]["composite"]
    return summary["mean"], summary["n"], failed_text(summary)


def _print_demos(demos: dict) -> None:
    """The demos a compile kept by predictor, and the candidates it rejected by reason."""
    kept = ", ".join(f"{name} {n}" for name, n in demos.get("kept", {}).items()) or "none"
    rejected = demos.get("rejected", {})
    why = ", ".join(f"{reason} {n}" for reason, n in rejected.items())
    say(f"demos kept: {kept}; candidates rejected: {sum(rejected.values())}" + (f" ({why})" if why else ""), to=err)


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _params(params: dict) -> str:
    """A trial's settings, pipeline options by their own name: "optimizer=bootstrap, repair_boundaries=True"."""
    return ", ".join(f"{key.removeprefix('option.')}={value}" for key, value in params.items())


def _print_trial(trial) -> None:
    """A trial of a search as it ends: its settings and its composite score."""
    say(f"  trial {trial.number}: {_params(trial.params)}: {_score(trial.score)}", to=err)


def _print_search(result) -> None:
    """Every complete trial of the study, the best one marked, and where the study is kept."""
    table = Table("trial", "settings", "composite (val)", "LM requests", title=f"study {result.study!r}: "
                  f"{len(result.trials)} trials ({result.ran} this run)")
    for trial in sorted(result.trials, key=lambda t: t.number):
        mark = " *" if result.best and trial.number == result.best.number else ""
        table.add_row(f"{trial.number}{mark}", escape(_params(trial.params)), _score(trial.score), str(trial.calls))
    out.print(table)
    say(f"study: sqlite:///{result.storage} (name {result.study!r}); run again with a larger --trials to continue it",
        to=err)


def devset(
    pipeline: Pipeline,
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
    from datagen.dataset import sample_devset, write_devset
    from datagen.workspace import load_config
    from datagen.workspace.pipelines import pipeline_root

    if bool(inputs) == (from_review is not None):
        raise InputError("--input and --from-review: give one of them, not both" if inputs else
                         "give --input PATH (chunks drawn from a corpus) or --from-review RUN (a reviewed run)")
    root = workspace_root(workspace)
    pipeline_root(pipeline, root)  # an unknown pipeline is refused before any file is read
    target = out_file or root / "data" / pipeline / ("reviewed.jsonl" if from_review else "dev.jsonl")
    if target.is_dir():
        raise InputError(f"{target}: is a folder; --out takes a file name")
    if from_review is not None:
        return _reviewed_devset(pipeline, from_review, target, val_fraction, root, n, seed, max_tokens)
    chunking = load_config(root).chunking
    budget = max_tokens or chunking.max_tokens
    records = sample_devset(inputs, 40 if n is None else n, max_tokens=budget, val_fraction=val_fraction,
                            seed=seed or 0, language=chunking.language)
    write_devset(records, target)
    val = sum(r["split"] == "val" for r in records)
    files = len({r["source"] for r in records})
    say(f"{len(records)} dev items ({len(records) - val} train, {val} val) from {files} "
        f"file{'s' if files != 1 else ''} → {shown(target)}", to=err)


def _reviewed_devset(pipeline: str, run_dir: Path, target: Path, val_fraction: float, root: Path,
                     *drawing) -> None:
    """`devset --from-review`: the labeled dev set of a reviewed run (see datagen.dataset.reviewed_devset).

    Raises:
        InputError: `drawing` (--n, --seed, --max-tokens, which draw chunks from a corpus) holds a value.
    """
    from datagen.dataset import reviewed_devset, write_devset

    if any(value is not None for value in drawing):
        raise InputError("--n, --seed and --max-tokens draw chunks from --input; --from-review takes every chunk "
                         "of the run whose samples were all approved")
    made = reviewed_devset(run_dir, pipeline, val_fraction, workspace=root)
    write_devset(made.records, target)
    records = made.records
    val = sum(r["split"] == "val" for r in records)
    say(f"{len(records)} dev items ({len(records) - val} train, {val} val) from {run_dir}, "
        f"{made.corrected} sample(s) corrected; {made.left_out} chunk(s) left out (a sample rejected or not "
        f"reviewed) → {shown(target)}", to=err)
    if made.no_steps:
        say(f"  {made.no_steps} item(s) without demos: no step of the program was logged for their chunks", to=err)


def compiled_list(workspace: Workspace = None) -> None:
    """What has been compiled, with held-out scores before and after."""
    from datagen.workspace import list_compiled

    root = workspace_root(workspace)
    table = Table("program", "optimizer", "before", "after", "dev", "created")
    for state, manifest in list_compiled(root):
        scores = manifest.get("scores", {})
        table.add_row(escape(str(state.relative_to(root))), escape(str(manifest.get("optimizer", "?"))),
                      *(f"{scores[k]:.3f}" if scores.get(k) is not None else "-" for k in ("before", "after")),
                      escape(str(manifest.get("dev", {}).get("path", "?"))), manifest.get("created", "?"))
    out.print(table)


def compiled_show(state: Annotated[Path, typer.Argument(help="A compiled program: compiled/PIPELINE/NAME.json.")]
                  ) -> None:
    """The instructions and demos of a compiled program, and how it was made."""
    from datagen.workspace import read_manifest
    from datagen.workspace.compiled import read_state

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
    say("\n".join(show))
