"""The `datagen` command line: a thin layer over the library. Each command resolves names (a pipeline, a
workspace, a model) into objects and calls the library, then prints what came back.

    commands.py   the typer app, every command registered in the order --help lists them, and main()
    options.py    the options several commands share, declared once, and what turns their values into arguments
    output.py     stdout for results, stderr for the rest, and say() for a line of plain text
    logs.py       logging, progress bars and redaction on stderr
    run.py        chunk, generate, status, inspect, export, push
    tune.py       devset, evaluate, optimize, compiled list|show
    check.py      judge-check
    workspace.py  init, new, models, pipelines, view
"""

from datagen.cli.commands import app, main

__all__ = ["app", "main"]
