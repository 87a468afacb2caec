"""The options several commands take, declared once, and what turns their values into the library's arguments
(a workspace folder, a config with the task model's flags on top, pipeline options, quality gates, worker
processes or a Ray cluster). A value the library cannot use is refused here with a one-line InputError."""

import json
from pathlib import Path
from typing import Annotated

import typer

from datagen.errors import InputError
from datagen.workspace import WORKSPACE_VARIABLE

INPUTS_HELP = "Text, Markdown, PDF, EPUB, DOCX or HTML files, or folders (searched recursively)."
# --executor's default, --actors' and --workers': an option given with another executor is refused, so all are named.
LOCAL = "local"
DEFAULT_ACTORS = 2
DEFAULT_WORKERS = 2
EXECUTORS = (LOCAL, "processes", "ray")

Pipeline = Annotated[str, typer.Argument(help="Pipeline name: programs/NAME.py in the workspace, else the built-in "
                                              "of that name.")]
Workspace = Annotated[Path | None, typer.Option("--workspace", "-w", envvar=WORKSPACE_VARIABLE,
                                                help="Workspace folder (default: nearest with datagen.toml "
                                                     "or programs/).")]
MaxTokens = Annotated[int | None, typer.Option("--max-tokens", min=16,
                                               help="Token budget per chunk (default: datagen.toml, else 512).")]
MinScore = Annotated[list[str] | None, typer.Option(
    "--min-score", help="Quality gate METRIC=VALUE (e.g. content=0.6): samples scored below stay in the run "
                        "store but out of the dataset (repeatable).")]
# The task model and the pipeline's options, as evaluate and optimize take them (generate's help gives examples).
Model = Annotated[str | None, typer.Option(help="Task model (overrides config).")]
ApiBase = Annotated[str | None, typer.Option(help="Base URL of the task model's server.")]
PipelineOptions = Annotated[list[str] | None, typer.Option("--option", "-O", help="Pipeline option KEY=VALUE.")]
Executor = Annotated[str, typer.Option("--executor", help="Where chunks run: local (threads in this process), "
                                                    "processes (worker processes of this machine) or ray (Ray actors; "
                                                    "pip install 'datagen\\[ray]').")]
Workers = Annotated[int, typer.Option("--workers", min=1, help="--executor processes: how many worker processes run "
                                                               "chunks.")]
Actors = Annotated[int, typer.Option("--actors", min=1, help="--executor ray: how many Ray actors run chunks.")]
RayAddress = Annotated[str | None, typer.Option("--ray-address", help="--executor ray: a running Ray cluster's "
                                                "address (default: a local one, started for the run).")]


def workspace_root(path: Path | None) -> Path:
    """The workspace a command works in.

    Args:
        path: `--workspace`, or None for the nearest folder, from the current one upwards, holding datagen.toml
            or programs/.

    Raises:
        InputError: `path` is not a folder.
    """
    from datagen.workspace import find_workspace

    if path is not None and not path.is_dir():
        raise InputError(f"{path}: workspace folder does not exist")
    return find_workspace(path)


def task_config(root: Path, model: str | None, api_base: str | None):
    """The workspace's config (datagen.workspace.Config) with the task model's command-line flags on top.

    Args:
        root: The workspace folder.
        model: `--model`, or None to keep the configured one.
        api_base: `--api-base` (several servers comma-separated), or None to keep the configured one.
    """
    from datagen.workspace import ModelSettings, load_config
    from datagen.workspace.config import flag_settings

    config = load_config(root)
    flags = flag_settings(model=model, api_base=api_base)  # --api-base may list servers, comma-separated
    config.models["task"] = config.models.get("task", ModelSettings()).merged(flags)
    return config


def pipeline_options(pairs: list[str] | None) -> dict:
    """`--option KEY=VALUE` pairs as the program's keyword arguments: a VALUE that reads as JSON (true, 3, 0.5,
    "x") is taken as such, else as text.

    Raises:
        InputError: A pair without `=` or without a KEY.
    """
    options = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--option {pair!r}: expected KEY=VALUE")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def min_scores(pairs: list[str] | None) -> dict[str, float] | None:
    """`--min-score METRIC=VALUE` pairs as bars by metric, or None when there are none (see
    datagen.metrics.scoring.parse_thresholds, which raises on a bad pair)."""
    from datagen.metrics.scoring import parse_thresholds

    return parse_thresholds(pairs) if pairs else None


def executor_cluster(executor: str, actors: int, address: str | None, workers: int = DEFAULT_WORKERS):
    """Where the chunks run: worker processes (datagen.runs.WorkerProcesses) for `--executor processes`, a Ray
    cluster (datagen.runs.RayCluster) for `--executor ray`, or None for threads of this process.

    Args:
        executor: `--executor`: local, processes or ray.
        actors: `--actors`, for ray only.
        address: `--ray-address`, for ray only (None: a local cluster started for the run).
        workers: `--workers`, for processes only.

    Raises:
        InputError: An executor of another name, or an option of another executor.
        DatagenError: Ray asked for and not installed.
    """
    if executor not in EXECUTORS:
        raise InputError(f"--executor {executor!r}: use local, processes or ray")
    if executor != "ray" and (address is not None or actors != DEFAULT_ACTORS):
        raise InputError("--actors and --ray-address go with --executor ray")
    if executor != "processes" and workers != DEFAULT_WORKERS:
        raise InputError("--workers goes with --executor processes")
    if executor == LOCAL:
        return None
    if executor == "processes":
        from datagen.runs import WorkerProcesses

        return WorkerProcesses(workers)
    from datagen.runs import RayCluster, ray_module

    ray_module()
    return RayCluster(actors, address)
