"""`judge-check`: can a metric be trusted? A pipeline's metrics checked on parallel text (--pairs) or on several
authors (--authors), a run's metrics and gate against people's reviews (--human), or a run's style judges on its
own samples."""

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from datagen.cli.options import Workspace, min_scores, workspace_root
from datagen.cli.output import err, out, say
from datagen.errors import InputError


Target = Annotated[str, typer.Argument(help="A run folder made by `datagen generate` (its chunks and their generic "
                                            "rephrases are the ground truth), or, with --pairs or --authors, a "
                                            "pipeline name.", metavar="RUN_OR_PIPELINE")]
Pairs = Annotated[Path | None, typer.Option("--pairs", help="JSONL of styled passages and their human plain versions: "
                                                            "check the pipeline's metrics on them.")]
StyledField = Annotated[str, typer.Option("--styled-field", help="--pairs: the styled passage's field.")]
PlainField = Annotated[str, typer.Option("--plain-field", help="--pairs: the plain version's field.")]
Authors = Annotated[list[Path] | None, typer.Option("--authors", help="One file or folder per author (repeat, 2 or "
                                                                      "more): check the style metrics.")]
Offline = Annotated[bool, typer.Option("--offline", help="--pairs/--authors: offline metrics only (no LLM call); the "
                                                         "composite of those alone.")]
JsonOut = Annotated[Path | None, typer.Option("--json", help="--pairs/--authors/--human: write the figures as JSON "
                                                             "here.")]
Other = Annotated[list[Path] | None, typer.Option("--other", help="With a run: text by another author to compare with "
                                                                  "as well (files or folders).")]
Limit = Annotated[int | None, typer.Option(min=2, help="Passages to check on (more: surer, dearer); default 40 for a "
                                                       "run, 200 pairs or passages per author.")]
Human = Annotated[bool, typer.Option("--human", help="With a run: check its metrics and its --min-score gate against "
                                                     "the reviews people gave its samples.")]
GateBars = Annotated[list[str] | None, typer.Option("--min-score", help="--human: a gate bar METRIC=VALUE to check "
                                                                        "(repeatable; default: the run's last gate). "
                                                                        "Reported only: nothing is applied.")]


def judge_check(
    target: Target,
    pairs: Pairs = None,
    styled_field: StyledField = "styled",
    plain_field: PlainField = "plain",
    authors: Authors = None,
    offline: Offline = False,
    json_out: JsonOut = None,
    other: Other = None,
    limit: Limit = None,
    human: Human = False,
    min_score: GateBars = None,
    workspace: Workspace = None,
) -> None:
    """Can this metric be trusted? Check a pipeline's metrics on parallel text (--pairs) or several authors
    (--authors), a run's metrics against people's reviews (--human), or a run's style judges on its own samples."""
    root = workspace_root(workspace)
    if human:
        if pairs is not None or authors or other:
            raise InputError("--human checks a run's metrics against its reviews: not with --pairs, --authors "
                             "or --other")
        if offline or limit:
            raise InputError("--offline and --limit do not go with --human (every reviewed sample is checked)")
        return _check_human(Path(target), min_scores(min_score), json_out)
    if min_score:
        raise InputError("--min-score goes with --human (the gate to check against the reviews)")
    if pairs is None and not authors:
        if offline or json_out:
            raise InputError("--offline and --json go with --pairs or --authors")
        return _check_run(Path(target), other, limit or 40, root)
    if pairs is not None and authors:
        raise InputError("--pairs and --authors are two checks: run them one at a time")
    if pairs is not None:
        result = _check_pairs(target, pairs, (styled_field, plain_field), limit or 200, offline, root)
    else:
        result = _check_authors(target, authors, limit or 200, offline, root)
    _print_validity(target, result, json_out)


def _check_progress() -> Progress:
    """The live line of a pairs or authors check on stderr, cleared when it ends."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err, transient=True)


def _check_pairs(pipeline: str, path: Path, fields: tuple[str, str], limit: int, offline: bool, root: Path):
    """`--pairs`: the pipeline's metrics fitted and scored on the first `limit` pairs of `path` (its styled and
    plain `fields`), every metric or the `offline` ones only (see datagen.metrics.checks.pairs.check_pairs)."""
    from datagen.metrics.checks import check_pairs, pair_metrics, read_pairs
    from datagen.workspace import load_config

    config = load_config(root)
    with _check_progress() as progress:
        data = read_pairs(path, *fields)[:limit]
        task = progress.add_task("fitting the metrics", total=len(data))
        metrics = pair_metrics(pipeline, data, workspace=root, config=config, offline=offline)
        progress.update(task, description="scoring pairs")
        return check_pairs(metrics, data, on_pair=lambda done, _: progress.update(task, completed=done))


def _check_authors(pipeline: str, authors: list[Path], limit: int, offline: bool, root: Path):
    """`--authors`: the pipeline's style metrics scored on pairs of passages of the authors, `limit` passages each
    (see datagen.metrics.checks.pairs.check_authors)."""
    from datagen.metrics.checks import check_authors, read_authors
    from datagen.workspace import load_config

    config = load_config(root)
    with _check_progress() as progress:
        data = read_authors(authors, limit)
        task = progress.add_task("scoring author pairs", total=len(data) * (len(data) - 1))
        return check_authors(pipeline, data, workspace=root, config=config, offline=offline,
                             on_pair=lambda done, _: progress.update(task, completed=done))


def _print_validity(pipeline: str, result, json_out: Path | None) -> None:
    """A pairs or authors check's figures by metric and check, its failed scores and its flags; the figures written
    as JSON to `json_out` too, when given."""
    table = Table("metric", "kind", "check", "accuracy", "95% interval", "AUC", "n",
                  title=f"{pipeline} on {result.data}: how often the metric prefers what it should")
    for name, checks in result.figures.items():
        for check, f in checks.items():
            table.add_row(escape(name), result.kinds.get(name, ""), check, f"{f.accuracy:.3f}",
                          f"{f.low:.2f}-{f.high:.2f}", "-" if f.auc is None else f"{f.auc:.3f}", str(f.n))
    out.print(table)
    # A failed score counts 0 in its metric's figures: say how many there were (before the flags they may explain),
    # so a low figure is read as such.
    for line in result.failure_lines():
        say(f"failed: {line}")
    for flag in result.flags:
        say(f"flagged: {flag}")
    if json_out:
        say(f"figures: {result.write_json(json_out)}", to=err, wrap=True)


def _check_human(run_dir: Path, bars: dict[str, float] | None, json_out: Path | None) -> None:
    """`--human`: a run's metrics and gate (`bars`, else the run's last one) checked against its reviews (see
    datagen.metrics.checks.human)."""
    from datagen.metrics.checks import human_check

    result = human_check(run_dir, bars)
    say(f"{result.reviews} reviews: {result.good} good, {result.bad} bad ({result.corrected} corrected, counted as "
        f"bad: the metrics scored the generated text), {result.rated} rated")
    out.print(_metrics_against_reviews(run_dir, result.metrics))
    for flag in result.flags:
        say(f"flagged: {flag}")
    if result.gates:
        out.print(_gates_against_reviews(result.gates, result.gate_source))
    else:
        say("no gate to check: give one with --min-score METRIC=VALUE", wrap=True)
    if json_out:
        say(f"figures: {result.write_json(json_out)}", to=err, wrap=True)


def _figure(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _metrics_against_reviews(run_dir: Path, metrics: list) -> Table:
    """Each metric's AUC between good and bad samples and its rank correlation with the ratings, with their 95%
    intervals, or why not."""
    from datagen.metrics.checks import MEAN_RATING

    table = Table("metric", "AUC good vs bad", "95% interval", "good", "bad", "rated on", "Spearman",
                  "95% interval", "n", title=f"{run_dir}: the metrics against people's reviews")
    for m in metrics:
        auc = ((_figure(m.auc.value), f"{m.auc.low:.2f} to {m.auc.high:.2f}") if m.auc
               else (escape(m.auc_note or "-"), ""))
        rank = ((_figure(m.spearman.value), f"{m.spearman.low:.2f} to {m.spearman.high:.2f}", str(m.spearman.n))
                if m.spearman else (escape(m.spearman_note or "-"), "", ""))
        criterion = "mean rating" if m.criterion == MEAN_RATING else m.criterion or "-"
        table.add_row(escape(m.metric), *auc, str(m.good), str(m.bad), escape(criterion), *rank)
    return table


def _gates_against_reviews(gates: list, source: str) -> Table:
    """Each bar of the gate (from `source`), and the whole gate, against the verdicts: what passes at the bar, and
    at the best bar (reported, not applied)."""
    from datagen.metrics.checks import WHOLE_GATE

    table = Table("gate", "n", "good", "passing", "precision", "recall", "best bar", "passing", "precision",
                  "recall", title=f"the gate ({source}) against the verdicts (best bar: Youden's J; reported, not "
                                  "applied)")
    for g in gates:
        name = escape(g.metric if g.metric == WHOLE_GATE else f"{g.metric} >= {g.bar:g}")
        at = ((str(g.at_bar.passing), _figure(g.at_bar.precision), _figure(g.at_bar.recall)) if g.at_bar
              else ("", "", ""))
        best = ((f"{g.best.threshold:.3g}", str(g.best.passing), _figure(g.best.precision), _figure(g.best.recall))
                if g.best else (escape(g.note or "-"), "", "", ""))
        table.add_row(name, str(g.n), str(g.good), *at, *best)
    return table


def _check_run(run_dir: Path, other: list[Path] | None, limit: int, root: Path) -> None:
    """The style judges checked on a run's own samples (see datagen.metrics.checks.judges)."""
    from datagen.metrics.checks import check_judges

    with err.status(f"checking judges on {run_dir}"):
        checks = check_judges(run_dir, other=other, limit=limit, workspace=root)
    table = Table("against", "judge", "accuracy", "AUC", "pairs", "verdict",
                  title="how often the author's passage ranks above the other")
    for c in checks:
        verdict = "[red]worse than the baseline[/]" if c.worse_than_baseline else ""
        table.add_row(escape(c.against), escape(c.judge), f"{c.accuracy:.2f}",
                      "-" if c.auc is None else f"{c.auc:.2f}", str(c.pairs), verdict)
    out.print(table)
