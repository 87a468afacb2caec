"""The commands about the workspace: `init` one, scaffold a `new` pipeline, list its `models` and `pipelines`, and
`view` its runs in a browser."""

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from datagen.cli.options import Workspace, workspace_root
from datagen.cli.output import err, out, say, shown
from datagen.errors import DatagenError


def new(
    name: Annotated[str, typer.Argument(help="Name of the new pipeline (a Python identifier).")],
    signature: Annotated[str | None, typer.Option("--signature", "-s", help="Its fields, inputs -> outputs (default: "
                                                  "\"passage -> output\"); the first input gets each chunk.")] = None,
    workspace: Workspace = None,
) -> None:
    """Scaffold a pipeline that runs as it is: signature, program, metrics, a dev set and an offline test."""
    from datagen.scaffold import scaffold

    root = workspace_root(workspace)
    for path in scaffold(root, name, signature):
        say(f"wrote {path.relative_to(root)}")
    say(f"next: datagen generate {name} --input data/samples --out out/{name}", to=err)


def init(
    folder: Annotated[Path, typer.Argument(help="The workspace folder to make (created if missing).")] = Path("."),
    pipeline: Annotated[str, typer.Option("--pipeline", "-p", help="Name of the pipeline to start from.")] = "starter",
    signature: Annotated[str | None, typer.Option("--signature", "-s", help="Its fields, inputs -> outputs (default: "
                                                  "\"passage -> output\").")] = None,
) -> None:
    """Make a workspace: datagen.toml, programs/ signatures/ metrics/ data/ tests/, a sample corpus and a pipeline
    to start from; it runs at once on the embedded model. Nothing is overwritten."""
    from datagen.scaffold import init_workspace

    for path in init_workspace(folder, pipeline, signature):
        say(f"wrote {shown(path)}")
    move = "" if folder.resolve() == Path.cwd().resolve() else f"cd {shown(folder)} && "
    say(f"next: {move}datagen generate {pipeline} --input data/samples --out out/{pipeline}", to=err)


def models(workspace: Workspace = None) -> None:
    """Show the model each role uses, after datagen.toml and DATAGEN_* variables."""
    from datagen.lm import LOCAL_MODEL
    from datagen.workspace import ROLES, load_config

    config = load_config(workspace_root(workspace))
    table = Table("role", "model", "api_base", "key from", "temperature", "max_tokens")
    for role in ROLES:
        s = config.role(role)
        table.add_row(role, s.model or f"{LOCAL_MODEL} (embedded default)", ", ".join(s.api_bases) or "-",
                      s.api_key_env or "-", str(s.temperature if s.temperature is not None else "-"),
                      str(s.max_tokens or "-"))
    out.print(table)


def pipelines(workspace: Workspace = None) -> None:
    """List the pipelines: the workspace's (programs/*.py) and datagen's built-ins, marked (built-in)."""
    from datagen.workspace import find_pipelines
    from datagen.workspace.pipelines import is_builtin

    root = workspace_root(workspace)
    found = find_pipelines(root)
    if not found:
        raise DatagenError(f"no pipelines in {root / 'programs'}")
    for name, where in found.items():
        out.print(f"{name}  (built-in)" if is_builtin(where) and not is_builtin(root) else name, markup=False)


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
    from datagen.view import check_host, serve, viewed_sources
    from datagen.workspace import ROLES, load_config

    check_host(host, allow_remote)
    root = workspace_root(workspace)
    config = load_config(root)
    viewed = viewed_sources(targets, root, config)
    bases = [base for role in ROLES for base in config.role(role).api_bases]
    serve(viewed, host, port, secrets_shown=bases, on_ready=_announce)


def _announce(url: str) -> None:
    """`view`'s line once it serves, flushed at once (a script waits for it on a pipe)."""
    say(f"datagen view: {url} (Ctrl-C stops it)", wrap=True)
    sys.stdout.flush()
