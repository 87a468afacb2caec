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


def figure(value: float | None) -> str:
    """A diversity figure in two decimals, or "-" when there is none."""
    return "-" if value is None else f"{value:.2f}"


def diversity_lines(name: str, comparison, source: str = "source chunks") -> list[str]:
    """A field's diversity beside its source's (a `datagen.dataset.quality.Comparison`) in one line, then one line
    for each way the field is narrower than the source: what `status` and `evaluate` print.

    Args:
        name: the field ("input", "output").
        comparison: its figures beside the source's.
        source: what the source is called, e.g. "source chunks" (a run's) or "dev chunks" (an evaluation's).
    """
    mine, theirs = comparison.samples, comparison.source
    top = mine.openings[0] if mine.openings else None
    opening = f"; most common opening '{top.text}' {top.share:.0%}" if top else ""
    return [f"diversity of {name}: distinct-2 {figure(mine.distinct_2)} ({source} {figure(theirs.distinct_2)}), "
            f"compression ratio {figure(mine.compression_ratio)} ({figure(theirs.compression_ratio)}){opening}",
            *(f"  narrower than the {source}: {line}" for line in comparison.narrowed)]
