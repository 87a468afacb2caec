"""Dataset cards: the README.md written beside every export (and pushed to the Hub), saying what made the data
and what the export holds."""

import json
import re
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from datagen.dataset.review import NOT_REJECTED, REVIEWED
from datagen.dataset.screening import CONTAMINATED, source_kind
from datagen.dataset.splits import split_note
from datagen.errors import DatagenError
from datagen.store import RunStore
from datagen.util.files import replacing

CARD_FILE = "README.md"
# Marks a README.md as a card datagen wrote, so that no other README.md is ever overwritten.
_CARD_MARK = "<!-- datagen dataset card -->"


def _cell(value) -> str:
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _table(rows: Iterable[tuple[str, object]], header: tuple[str, str] = ("", "")) -> list[str]:
    return [f"| {header[0]} | {header[1]} |", "|---|---|", *(f"| {_cell(k)} | {_cell(v)} |" for k, v in rows)]


# The Hub's task categories by pipeline (the values the Hub's task list accepts); another pipeline: text-generation.
TASK_CATEGORIES = {"style_clone": ["text-generation"], "factual_qa": ["question-answering", "text-generation"]}
# The Hub's size categories, by upper bound of the sample count (hub-docs datasetcard.md).
_SIZES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
          (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]


def size_category(samples: int) -> str:
    """The Hub's `size_categories` value for a dataset of `samples` records: n<1K, 1K<n<10K, ... n>1B."""
    return next((name for bound, name in _SIZES if samples < bound), "n>1B")


def card_metadata(pipeline: str, samples: int, *, license: str | None = None, language: list[str] | None = None,
                  data_splits: list[str] | None = None) -> str:
    """The card's YAML metadata block (between its `---` lines), as `huggingface_hub.DatasetCardData` writes it.

    Args:
        pipeline: the pipeline's name: the pretty name, and the task categories (`TASK_CATEGORIES`).
        samples: how many records: the size category (`size_category`).
        license: the dataset's licence as the Hub names it (e.g. "cc-by-4.0"); None: no `license` field (datagen
            never picks one: the licence is the corpus owner's to give).
        language: language codes (e.g. ["en"]); None: no `language` field.
        data_splits: the splits uploaded as `data/SPLIT-*` files (a Hub push): a `configs` entry mapping each; None:
            none (a local export, whose files the Hub does not read).

    The fields follow the Hub's dataset card conventions (hub-docs datasetcard.md): `tags` has `synthetic` and the
    tool's name as distilabel's cards do, `annotations_creators` is `machine-generated`.
    """
    from huggingface_hub import DatasetCardData

    configs = None
    if data_splits:
        configs = [{"config_name": "default",
                    "data_files": [{"split": name, "path": f"data/{name}-*"} for name in data_splits]}]
    data = DatasetCardData(pretty_name=f"{pipeline} (datagen)", license=license, language=language or None,
                           size_categories=[size_category(samples)],
                           task_categories=TASK_CATEGORIES.get(pipeline, ["text-generation"]),
                           annotations_creators=["machine-generated"], tags=["synthetic", "datagen"], configs=configs)
    return data.to_yaml()


def tool_versions() -> dict[str, str]:
    """{"datagen": its version, "dspy": the imported dspy's (`dspy.__version__`: the package metadata's lookup
    scanned sys.path, 4 ms of every export)}."""
    import dspy

    from datagen._version import __version__

    return {"datagen": __version__, "dspy": dspy.__version__}


def is_card(text: str) -> bool:
    """Whether a README.md's text is a card datagen wrote (it carries datagen's mark)."""
    return _CARD_MARK in text


def provenance_rows(meta: dict[str, str]) -> list[tuple[str, object]]:
    """What made a run's data, from its meta: pipeline, fingerprints, the task model, datagen's and dspy's versions."""
    return [("pipeline", meta.get("pipeline", "unknown")),
            ("program fingerprint", meta.get("program", "unknown")),
            ("code fingerprint", meta.get("code", "unknown (the run predates datagen recording it)")),
            ("model", meta.get("model", "unknown (the run predates datagen recording it)")),
            ("inputs fingerprint", meta.get("inputs", "unknown")),
            *tool_versions().items()]


def gate_row(store: RunStore, samples: int, min_scores: dict[str, float] | None,
             reviewed: str | None) -> list[tuple[str, str]]:
    """The quality gate's row (none without a gate): each bar, and how many samples it kept out."""
    if not min_scores:
        return []
    return [("quality gate", ", ".join(f"{name} >= {bar:g}" for name, bar in min_scores.items())
             + (f" ({store.sample_count() - samples} samples below it kept out)" if not reviewed else ""))]


def review_row(store: RunStore, reviewed: str | None) -> list[tuple[str, str]]:
    """The human review's row (none without a review): how many reviewed, good, bad, corrected, and what that kept."""
    if not (reviews := store.reviews()):
        return []
    verdicts = [r.verdict for r in reviews.values()]
    return [("human review", f"{len(reviews)} samples reviewed: {verdicts.count('good')} good, "
             f"{verdicts.count('bad')} bad, {sum(r.corrected for r in reviews.values())} corrected "
             "(exported as corrected)" + {None: "", REVIEWED: "; only approved or corrected samples exported",
                                          NOT_REJECTED: "; samples rated bad left out"}[reviewed])]


def run_sections(store: RunStore, system: str | None) -> list[str]:
    """The card's closing sections: the run's chunks, tokens spent, failures, and the system prompt."""
    counts, failures = store.counts(), store.failure_counts()
    pending = counts["chunks"] - counts["done"] - counts["failed"]
    lines = ["## Run", "", *_table([("chunks in the run", counts["chunks"]), ("chunks done", counts["done"]),
                                    ("chunks failed", counts["failed"]), ("chunks not run yet", pending)]), ""]
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
    return lines


def front_matter(metadata: str) -> list[str]:
    """The card's opening lines: the YAML block, then the mark that says datagen wrote it."""
    return ["---", metadata.rstrip("\n"), "---", _CARD_MARK, ""]


def dataset_card(store: RunStore, fmt: str, files: list[str], samples: int, *, system: str | None = None,
                 splits: dict[str, int] | None = None, val_fraction: float | None = None,
                 min_scores: dict[str, float] | None = None, reviewed: str | None = None,
                 screening: tuple | None = None) -> str:
    """The README.md written beside a local export: what made the data, and what the export holds.

    Args:
        store: the run's store.
        fmt: the export's format.
        files: the names the export wrote, as the card lists them.
        samples: how many samples it holds.
        system: the system prompt put first in every conversation, shown in the card; None: none.
        splits: {split: samples}; None: no splits row.
        val_fraction: the share of the non-test near-duplicate groups in validation, said in the Splits section.
        min_scores: the quality gate applied ({metric: bar}); None: none.
        reviewed: the review filter applied (see `datagen.dataset.export.run_samples`).
        screening: (the export's `Selection`, the `Screen` it applied), for the Dataset quality section
            (`quality_section`); None: no such section.
    """
    meta = store.meta()
    pipeline = meta.get("pipeline", "unknown")
    date = datetime.now(UTC).isoformat(timespec="seconds")
    lines = [
        *front_matter(card_metadata(pipeline, samples)), f"# {pipeline} dataset", "",
        f"Training samples made by datagen's `{pipeline}` pipeline from a text corpus, exported as **{fmt}** on "
        f"{date}. Each sample pairs what the pipeline gave the model to learn from (input) with what it should "
        "answer (output).", "",
        "## Provenance", "", *_table([*provenance_rows(meta), ("exported (UTC)", date)]), "",
        "## Contents", "",
    ]
    contents = [("format", fmt), ("files", ", ".join(files)), ("samples exported", samples)]
    if splits is not None:
        contents.append(("splits", ", ".join(f"{name} {n}" for name, n in splits.items())))
    contents += [*gate_row(store, samples, min_scores, reviewed), *review_row(store, reviewed)]
    return "\n".join([*lines, *_table(contents), "", "## Splits", "", split_note(store, val_fraction or 0), "",
                      *(quality_section(*screening) if screening else []), *run_sections(store, system)])


def quality_section(selection, screen) -> list[str]:
    """The card's Dataset quality section: what the export's screen left out, and each field's diversity beside
    the source chunks' (datagen.dataset.screening; docs/quality.md says what each figure is).

    Args:
        selection: the export's `datagen.dataset.export.Selection`.
        screen: the `datagen.dataset.screening.Screen` it applied.
    """
    quality = selection.quality
    if quality is None:
        return ["## Dataset quality", "", "Not screened: near-duplicates and contaminated samples were kept "
                "(--keep-near-duplicates, --keep-contaminated).", ""]
    counts = selection.left_out_counts
    bars = " or ".join(f"{kind} similarity >= {bar:g}" for kind, bar in (screen.near_duplicates or {}).items())
    sources = {key: source for key, _, source, _, _ in reversed(quality.contamination)}  # a sample's first row
    kinds = Counter(source_kind(sources[key]) for key, flag in selection.left_out.items()
                    if flag.reason == CONTAMINATED)
    by_kind = "; ".join(f"{kind}: {n}" for kind, n in kinds.items())
    settings = quality.settings
    # File names only: a card goes to the Hub, and a local path says nothing there.
    files = ", ".join(Path(path).name for path in settings.get("files", ())) or "none"
    rows = [("near-duplicates left out", f"{counts.get('near-duplicate', 0)} ({bars} on the input or the output; "
             "each group keeps its first sample)" if screen.near_duplicates else "kept (not screened)"),
            ("contaminated left out", f"{counts.get('contaminated', 0)} (sharing a {screen.ngram}-gram with "
             f"protected text{'; ' + by_kind if by_kind else ''})" if screen.contaminated else "kept (not screened)"),
            ("protected text", f"{settings.get('protected', 0)} texts of the compiled program's dev set and demos and "
             f"of the evaluation files ({files}); {settings.get('held_out', 0)} held-out chunks")]
    lines = ["## Dataset quality", "", f"Measured offline over the run's {len(quality.keys)} samples, never by a "
             "model.", "", *_table(rows), ""]
    return lines + diversity_table(quality.diversity)


def diversity_table(diversity: dict) -> list[str]:
    """Each field's diversity (`datagen.dataset.quality.Comparison` by field) beside the source chunks', as a
    Markdown table, then a line for each way the samples narrowed the corpus."""
    if not diversity:
        return []
    lines = ["### Diversity", "", "| texts | count | distinct-1 | distinct-2 | compression ratio | most common opening "
             "| embedding spread |", "|---|---|---|---|---|---|---|"]
    for name, comparison in diversity.items():
        for label, figures in ((f"{name}", comparison.samples), (f"source chunks (beside {name})", comparison.source)):
            top = figures.openings[0] if figures.openings else None
            cells = [label, figures.texts, _figure(figures.distinct_1), _figure(figures.distinct_2),
                     _figure(figures.compression_ratio), f"{top.text} ({top.share:.0%})" if top else "-",
                     _figure(figures.spread)]
            lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    narrowed = [f"- {name}: {line}" for name, comparison in diversity.items() for line in comparison.narrowed]
    return lines + ["", *(["Narrower than the source:", "", *narrowed, ""] if narrowed else
                          ["No field is narrower than its source chunks.", ""])]


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def score_means(store: RunStore, items: Iterable[tuple]) -> dict[str, tuple[float, int]]:
    """Each scored metric's mean over `items` ((chunk, index, sample) as `split_samples` gives them): {metric:
    (mean, samples scored)}, by metric name; a metric no item was scored on is left out."""
    totals: dict[str, list[float]] = {}
    scores_of: dict[str, dict] = {}
    for chunk, index, _ in items:
        if chunk.id not in scores_of:
            scores_of[chunk.id] = store.sample_scores(chunk.id)
        for metric, value in scores_of[chunk.id].get(index, {}).items():
            totals.setdefault(metric, []).append(value)
    return {metric: (sum(values) / len(values), len(values)) for metric, values in sorted(totals.items())}


def hub_card(store: RunStore, splits: dict[str, list], *, repo_id: str, files: list[str],
             reproduce: list[str], system: str | None = None, min_scores: dict[str, float] | None = None,
             reviewed: str | None = None, license: str | None = None, language: list[str] | None = None,
             val_fraction: float = 0.1, models: dict[str, str] | None = None, screening: tuple | None = None) -> str:
    """The README.md of a dataset pushed to the Hub (`datagen push`): the YAML metadata the Hub reads (see
    `card_metadata`), then what made the data and how to make it again. It carries no date, so that pushing the
    same run twice writes the same card (and the Hub gets no new commit).

    Args:
        store: the run's store.
        splits: {split: [(chunk, index, sample), ...]} as pushed; an empty split is left out of `configs`.
        repo_id: the dataset's id on the Hub (the card's loading snippet).
        files: every file pushed beside the card (the data, the provenance), listed in the card.
        reproduce: the commands that make the dataset again, shown in a code block.
        system: the system prompt put first in every conversation; None: none.
        min_scores: the quality gate applied ({metric: bar}); None: none.
        reviewed: the review filter applied (see `datagen.dataset.export.run_samples`).
        license: the licence the user gave (the Hub's identifier); None: no `license` field.
        language: language codes the user gave; None: no `language` field.
        val_fraction: the share of the non-test near-duplicate groups in validation, said in the Splits section.
        models: the model of each role by name ({"task": ..., "judge": ...}); None: the run's task model.
        screening: (the push's `Selection`, its `Screen`), for the Dataset quality section; None: none.
    """
    meta = store.meta()
    pipeline = meta.get("pipeline", "unknown")
    present = [name for name, items in splits.items() if items]
    samples = sum(len(items) for items in splits.values())
    means = score_means(store, (item for items in splits.values() for item in items))
    contents = [("samples", samples), *((f"{name} split", len(splits[name])) for name in present),
                *gate_row(store, samples, min_scores, reviewed), *review_row(store, reviewed)]
    fence = "`" * 3
    lines = [
        *front_matter(card_metadata(pipeline, samples, license=license, language=language, data_splits=present)),
        f"# {pipeline} dataset", "",
        f"Training samples made by datagen's `{pipeline}` pipeline from a text corpus. Each "
        "record holds the chat `messages` (the input as the user turn, the output as the assistant's) and the flat "
        "fields `id`, `input`, `output`, `chunk_id`, `source`, `start`, `end` (where in the corpus it came from).",
        "", "## Splits", "", split_note(store, val_fraction), "",
        *_table(contents), "",
        "## Provenance", "", *_table(provenance_rows(meta)), "",
        "## Models", "", *_table((models or {"task": meta.get("model", "unknown")}).items(), ("role", "model")), "",
    ]
    if means:
        lines += ["## Scores", "", "Means over the samples in this dataset (each metric scored 0 to 1).", "",
                  "| metric | mean | samples scored |", "|---|---|---|",
                  *(f"| {_cell(m)} | {mean:.3f} | {n} |" for m, (mean, n) in means.items()), ""]
    lines += [*(quality_section(*screening) if screening else []),
              "## Files", "", *(f"- `{name}`" for name in files), "",
              "## Reproduce", "", fence + "bash", *reproduce, fence, "",
              "## Load", "", fence + "python", "from datasets import load_dataset", "",
              f"dataset = load_dataset({json.dumps(repo_id)})", fence, "",
              *run_sections(store, system)]
    return "\n".join(lines)


def check_card(card: Path) -> None:
    if card.is_dir() or (card.exists() and not is_card(card.read_text(encoding="utf-8", errors="replace"))):
        raise DatagenError(f"{card}: exists and is not a datagen dataset card; write the export to another "
                           "folder so that it is not overwritten")


def write_card(folder: Path, text: str) -> Path:
    """Write the dataset card into `folder`, refusing to replace a README.md datagen did not write."""
    card = folder / CARD_FILE
    check_card(card)
    with replacing(card) as partial:
        partial.write_text(text, encoding="utf-8")
    return card
