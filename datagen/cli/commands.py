"""The `datagen` command: the typer app with every command, in the order `datagen --help` lists them, and `main`,
which turns every error a user can fix into one line `error: ...` and its exit status (docs/cli.md)."""

import logging
import os
import sys
from typing import Annotated

import typer
from rich.markup import escape

from datagen.cli.check import judge_check
from datagen.cli.logs import setup_logging
from datagen.cli.output import err
from datagen.cli.dataset import export_run, push_run
from datagen.cli.eval_model import eval_model
from datagen.cli.quality import quality
from datagen.cli.run import chunk, generate, inspect_run, status
from datagen.cli.tune import compiled_list, compiled_show, devset, evaluate, optimize
from datagen.cli.workspace import init, models, new, pipelines, view
from datagen.errors import DatagenError, Interrupted
from datagen.lm.errors import causes
from datagen.util import handling_stop_signals, interrupted, refused_write
from datagen.workspace import WORKSPACE_VARIABLE, find_workspace, load_config, unknown_variables

app = typer.Typer(help="Turn raw text into training datasets with declarative DSPy pipelines.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

# Every command by name, in the order `datagen --help` lists them.
COMMANDS = {"chunk": chunk, "generate": generate, "evaluate": evaluate, "optimize": optimize, "new": new, "init": init,
            "inspect": inspect_run, "judge-check": judge_check, "devset": devset, "status": status, "quality": quality,
            "models": models,
            "pipelines": pipelines, "view": view, "export": export_run, "push": push_run, "eval-model": eval_model}
for name, command in COMMANDS.items():
    app.command(name)(command)

# A group of two commands (--help lists groups after the commands).
compiled = typer.Typer(help="Programs compiled by `datagen optimize`.", no_args_is_help=True)
compiled.command("list")(compiled_list)
compiled.command("show")(compiled_show)
app.add_typer(compiled, name="compiled")


@app.callback()
def _setup(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logging.")] = False) -> None:
    # Before any command: logging, progress bars and redaction on stderr; a word on mistyped DATAGEN_ variables.
    setup_logging(verbose)
    _warn_unknown_variables()


def _warn_unknown_variables() -> None:
    """A warning line for each DATAGEN_ variable set that datagen does not read (datagen.workspace's
    `unknown_variables`), once per command. The key variables named by api_key_env in the workspace's config count
    as read: the workspace found as --workspace's default finds it (a command given --workspace may read
    another)."""
    try:
        config = load_config(find_workspace(os.environ.get(WORKSPACE_VARIABLE) or None))
    except (DatagenError, OSError):
        config = None  # a command that reads the config says what is wrong with it
    for line in unknown_variables(config=config):
        logging.getLogger(__name__).warning("%s", line)


def main() -> None:
    """Run the `datagen` command (the console script) on sys.argv, and exit.

    A DatagenError, a stop signal or an OSError (a file that vanished, a full disk, a permission) ends it with one
    line `error: ...` on stderr and the error's exit status: 1, or 128 + the signal's number for a stop signal (130
    for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP: each is handled as Ctrl-C is, see datagen.util.signals). A write
    the disk refused (datagen.util.disk: full, read-only, no permission) names the folder and what to do. Usage
    errors are typer's (status 2).
    """
    try:
        with handling_stop_signals():
            app()
    except KeyboardInterrupt as exc:
        _fail(interrupted(exc))
    except SystemExit as exc:  # typer ends a command a stop signal interrupted with a silent exit 130: say which
        stop = next((cause for cause in causes(exc) if isinstance(cause, KeyboardInterrupt)), None)
        if stop is None:
            raise
        _fail(interrupted(stop))
    except DatagenError as exc:
        _fail(exc)
    except OSError as exc:  # a file that vanished, a full disk, a permission: name it (-v shows where it came from)
        logging.getLogger(__name__).debug("", exc_info=True)
        culprit = f"{exc.filename}: " if exc.filename else ""
        # A folder made on the way to a write, on a full or read-only disk: said as every refused write is.
        _fail(refused_write(exc) or DatagenError(f"{culprit}{exc.strerror or exc}"))


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
