"""Where the commands print: results on stdout (`out`), progress, summaries and warnings on stderr (`err`), and the
small formats several commands share."""

import sys
from pathlib import Path

from rich.console import Console

err = Console(stderr=True)
# Piped output is not cut to 80 columns: scripts and greps need whole model names and paths.
out = Console(width=None if sys.stdout.isatty() else 200)


def say(text: str, to: Console = out, wrap: bool = False) -> None:
    """Print a line of plain text: rich markup is not read in it and nothing is highlighted (a path, a model name
    or a sample may hold brackets), and a line longer than the console is kept whole.

    Args:
        text: What to print, as it is.
        to: `out` for a result (stdout), `err` for progress and summaries (stderr).
        wrap: Cut a long line at the console's width instead of keeping it whole.
    """
    to.print(text, markup=False, highlight=False, soft_wrap=not wrap)


def plural(n: int, noun: str) -> str:
    """`n` and its noun, thousands separated: "1 job", "2 jobs", "1,200 requests"."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def shown(path: Path) -> Path:
    """`path` relative to the current folder when it is inside it, else as it is."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path
