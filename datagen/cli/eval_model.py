"""`datagen eval-model`: score models trained on a run's data on the run's held-out test split, side by side."""

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from datagen.cli.dataset import RunDir
from datagen.cli.options import Workspace, min_scores, workspace_root
from datagen.cli.output import err, out, say, shown
from datagen.errors import DatagenError, InputError


def _interval(summary: dict) -> str:
    if summary["mean"] is None:
        return "-"
    return f"{summary['mean']:.3f} [{summary['low']:.3f}, {summary['high']:.3f}]"


def eval_model(
    run_dir: RunDir,
    model: Annotated[list[str], typer.Option("--model", "-m", help="A model to evaluate, [LABEL=]MODEL "
                                             "(repeatable): e.g. tuned=openai/my-fine-tune, base=openai/base, "
                                             "local/smollm2-135m-instruct.")],
    api_base: Annotated[list[str] | None, typer.Option("--api-base", help="[LABEL=]URL: the server of the model "
                                                       "labelled LABEL, or without a label of every model without "
                                                       "its own (repeatable).")] = None,
    system: Annotated[str | None, typer.Option(help="System prompt each request starts with (default: the run's "
                                               "last export's, which the trained model was given).")] = None,
    no_system: Annotated[bool, typer.Option("--no-system", help="Send no system prompt, whatever the run's export "
                                            "had.")] = False,
    metric: Annotated[list[str] | None, typer.Option("--metric", help="Only this model metric (repeatable); with "
                                                     "composite: the composite of those named (default: the "
                                                     "composite and the metrics it weighs).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N held-out samples.")] = None,
    min_score: Annotated[list[str] | None, typer.Option("--min-score", help="Only the held-out samples whose data "
                                                        "scores reach METRIC=VALUE (repeatable), as the export's "
                                                        "--min-score kept them.")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, help="Requests in flight, all models "
                                             "together.")] = 4,
    rpm: Annotated[float | None, typer.Option(min=0.001, help="Requests a minute per server (per model for hosted "
                                              "ones), at most.")] = None,
    tpm: Annotated[int | None, typer.Option(min=1, help="Tokens a minute per server (per model for hosted ones), "
                                            "at most.")] = None,
    temperature: Annotated[float | None, typer.Option(min=0, max=2, help="Sampling temperature (default: 0, "
                                                      "greedy).")] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", min=1, help="Cap on each answer in tokens "
                                                   "(default: 1024).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Ask every model again, dropping its kept answers (a model "
                                        "retrained and served again under the same name).")] = False,
    workspace: Workspace = None,
) -> None:
    """Score models on the run's held-out test split with the pipeline's model metrics: a table, eval.json and an
    HTML report in RUN/model-eval/ (also shown by datagen view RUN)."""
    from datagen.model_eval import RECORDED, EvaluationSettings, evaluate_models, parse_candidates

    if system is not None and no_system:
        raise InputError("--system and --no-system: give one of the two")
    candidates = parse_candidates(model, api_base, temperature=temperature, max_tokens=max_tokens)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as progress:
        bars: dict[str, int] = {}

        def shown_progress(step) -> None:
            if step.step not in bars:
                bars[step.step] = progress.add_task(step.step, total=step.total)
            progress.update(bars[step.step], completed=step.done)

        settings = EvaluationSettings(system=None if no_system else RECORDED if system is None else system,
                                      metrics=metric,
                                      concurrency=concurrency, rpm=rpm, tpm=tpm, limit=limit, force=force,
                                      min_scores=min_scores(min_score),
                                      on_progress=shown_progress)
        result = evaluate_models(run_dir, candidates, settings, workspace_root(workspace))
    _print(result, run_dir)
    silent = [summary["label"] for summary in result["models"] if not summary["answered"]]
    if silent:
        raise DatagenError(f"{', '.join(silent)} answered none of the {result['held_out']} held-out samples (see "
                           "the failed calls above)")


def _print(result: dict, run_dir: Path) -> None:
    names = result["metrics"]["names"]
    table = Table("model", *names, "answered", "failed", "cut off",
                  title=f"{result['pipeline']} on {result['held_out']} "
                  "held-out samples: mean [95% interval] (a failed call counts 0)")
    for summary in result["models"]:
        table.add_row(escape(summary["label"]), *(_interval(summary["scores"][name]) for name in names),
                      str(summary["answered"]), str(summary["failed"]), str(summary["cut_off"]))
    out.print(table)
    system = "none" if result["system"] is None else repr(result["system"])
    say(f"system prompt: {system}", to=err)
    for summary in result["models"]:
        failed = {**summary["failures"], **{f"{name} failed": n for name, n in summary["failed_scores"].items()}}
        if failed:
            say(f"{summary['label']}: " + ", ".join(f"{kind} {n}" for kind, n in failed.items())
                + (f" (first error: {summary['first_error']})" if summary.get("first_error") else ""), to=err)
    for pair in result["pairs"]:
        if pair["win_rate"] is not None:
            say(f"{pair['first']} vs {pair['second']}: wins {pair['win_rate']:.0%} "
                f"[{pair['win_low']:.0%}, {pair['win_high']:.0%}] of {pair['n']} samples, {pair['metric']} "
                f"{pair['difference']:+.3f} [{pair['difference_low']:+.3f}, {pair['difference_high']:+.3f}]")
    folder = shown(Path(run_dir) / "model-eval")
    say(f"results: {folder / 'eval.json'}\nreport: {folder / 'report.html'}")
