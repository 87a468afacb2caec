"""Dataset cards: the README.md written beside every export (and pushed to the Hub), saying what made the data
and what the export holds."""

import importlib.metadata
import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from datagen.dataset.review import NOT_REJECTED, REVIEWED
from datagen.errors import DatagenError
from datagen.store import RunStore
from datagen.util.files import replacing

CARD_FILE = "README.md"
# Marks a README.md as a card datagen wrote, so that no other README.md is ever overwritten.
_CARD_MARK = "<!-- datagen dataset card -->"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _cell(value) -> str:
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _table(rows: Iterable[tuple[str, object]], header: tuple[str, str] = ("", "")) -> list[str]:
    return [f"| {header[0]} | {header[1]} |", "|---|---|", *(f"| {_cell(k)} | {_cell(v)} |" for k, v in rows)]


def dataset_card(store: RunStore, fmt: str, files: list[str], samples: int, *, system: str | None = None,
                 splits: dict[str, int] | None = None, val_fraction: float | None = None,
                 min_scores: dict[str, float] | None = None, reviewed: str | None = None) -> str:
    """The README.md written beside an export: what made the data, and what the export holds."""
    from datagen._version import __version__

    meta, counts, failures = store.meta(), store.counts(), store.failure_counts()
    pipeline = meta.get("pipeline", "unknown")
    date = datetime.now(UTC).isoformat(timespec="seconds")
    lines = [
        "---", f"pretty_name: {json.dumps(f'{pipeline} (datagen)')}", "tags:", "- datagen", "- synthetic", "---",
        _CARD_MARK, "", f"# {pipeline} dataset", "",
        f"Training samples made by datagen's `{pipeline}` pipeline from a text corpus, exported as **{fmt}** on "
        f"{date}. Each sample pairs what the pipeline gave the model to learn from (input) with what it should "
        "answer (output).", "",
        "## Provenance", "",
        *_table([("pipeline", pipeline),
                 ("program fingerprint", meta.get("program", "unknown")),
                 ("code fingerprint", meta.get("code", "unknown (the run predates datagen recording it)")),
                 ("model", meta.get("model", "unknown (the run predates datagen recording it)")),
                 ("inputs fingerprint", meta.get("inputs", "unknown")),
                 ("exported (UTC)", date),
                 ("datagen", __version__),
                 ("dspy", _version("dspy"))]), "",
        "## Contents", "",
    ]
    contents = [("format", fmt), ("files", ", ".join(files)), ("samples exported", samples)]
    if splits is not None:
        contents.append(("splits", ", ".join(f"{name} {n}" for name, n in splits.items())
                         + f" (validation fraction {val_fraction}, by sample id)"))
    if min_scores:
        contents.append(("quality gate", ", ".join(f"{name} >= {bar:g}" for name, bar in min_scores.items())
                         + (f" ({store.sample_count() - samples} samples below it kept out)" if not reviewed else "")))
    if reviews := store.reviews():
        verdicts = [r.verdict for r in reviews.values()]
        contents.append(("human review", f"{len(reviews)} samples reviewed: {verdicts.count('good')} good, "
                         f"{verdicts.count('bad')} bad, {sum(r.corrected for r in reviews.values())} corrected "
                         "(exported as corrected)" + {None: "", REVIEWED: "; only approved or corrected samples "
                                                      "exported", NOT_REJECTED: "; samples rated bad left out"}
                         [reviewed]))
    pending = counts["chunks"] - counts["done"] - counts["failed"]
    contents += [("chunks in the run", counts["chunks"]), ("chunks done", counts["done"]),
                 ("chunks failed", counts["failed"]), ("chunks not run yet", pending)]
    lines += [*_table(contents), ""]
    if usage := store.usage():
        lines += ["## Tokens spent", "", *_table(((name, f"{u['prompt_tokens']:,} prompt + {u['completion_tokens']:,} "
                                                   "completion") for name, u in usage.items()), ("model", "tokens")),
                  ""]
    if failures:
        lines += ["## Failures", "", "Failed chunks are not in the dataset; running `datagen generate` again "
                  "retries them.", "", *_table(failures.items(), ("kind", "chunks")), ""]
    if system is not None:
        fence = "`" * max(3, 1 + max(map(len, re.findall("`+", system)), default=0))
        lines += ["## System prompt", "", fence, system, fence, ""]
    return "\n".join(lines)


def check_card(card: Path) -> None:
    if card.is_dir() or (card.exists() and _CARD_MARK not in card.read_text(encoding="utf-8", errors="replace")):
        raise DatagenError(f"{card}: exists and is not a datagen dataset card; write the export to another "
                           "folder so that it is not overwritten")


def write_card(folder: Path, text: str) -> Path:
    """Write the dataset card into `folder`, refusing to replace a README.md datagen did not write."""
    card = folder / CARD_FILE
    check_card(card)
    with replacing(card) as partial:
        partial.write_text(text, encoding="utf-8")
    return card
