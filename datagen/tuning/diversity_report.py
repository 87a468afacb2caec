"""The diversity of the samples a program made in an evaluation, and the pipeline's diversity bar checked on them
(datagen.dataset.quality; docs/quality.md). Measured offline from the predictions the evaluation already made:
never an LM call.

An evaluation record holds them as:

- `diversity`: {field: {"samples", "source", "narrowed"}} for the sample fields "input" and "output": a
  `datagen.dataset.quality.Comparison` as a dict (the predictions' figures, the dev chunks' measured on the same
  number of words, and a sentence for each way the predictions are narrower than the chunks, template collapse
  among them); {} when the program made no sample.
- `diversity_bar`: {"opening_share", "distinct_2", "fields", "met", "broken"} (the bar, then its `BarVerdict`), or
  None when the pipeline declares no bar.
"""

from collections.abc import Sequence
from dataclasses import asdict

from datagen.dataset.quality import Comparison, DiversityBar, compare_each
from datagen.dataset.quality.bar import FIELDS
from datagen.samples import Sample

# What the bar's sentences call the texts it measured.
NOUN = "predictions"


def measure_diversity(samples: Sequence[Sample], chunks: Sequence[str],
                      bar: DiversityBar | None) -> tuple[dict, dict | None]:
    """Each sample field's diversity beside the dev chunks', and the bar's verdict on it.

    Args:
        samples: the samples the program made, every dev item's, in order.
        chunks: the texts of the dev items it ran on (every one, a failed item's too: what it was given).
        bar: the pipeline's diversity bar (`datagen.metrics.diversity_bar`), or None.

    Returns:
        (`diversity`, `diversity_bar`) as an evaluation record holds them (see the module's doc).
    """
    comparisons = compare_each({name: [getattr(sample, name) for sample in samples] for name in FIELDS},
                               chunks) if samples else {}
    figures = {name: asdict(comparison) for name, comparison in comparisons.items()}
    if bar is None:
        return figures, None
    verdict = bar.check({name: comparison.samples for name, comparison in comparisons.items()}, NOUN)
    return figures, {**asdict(bar), "fields": list(bar.fields), "met": verdict.met, "broken": list(verdict.broken)}


def field_diversity(evaluation: dict) -> dict[str, Comparison]:
    """An evaluation record's diversity, {field: Comparison}; {} for a record without one (no sample, or written
    before evaluations measured it)."""
    return {name: Comparison.from_dict(figures) for name, figures in (evaluation.get("diversity") or {}).items()}


def bar_line(evaluation: dict) -> str | None:
    """The diversity bar's verdict on an evaluation record in words: "met (input: no opening on 10% or more of the
    texts, 3 at least)", "broken: input: 'here is a' opens 85% of the 20 predictions (bar 10%)", or "not measured:
    no prediction (input: ...)"; None when the record holds no bar (the pipeline declares none, or the record was
    written before bars were checked)."""
    record = evaluation.get("diversity_bar")
    if not record:
        return None
    bar = DiversityBar(record["opening_share"], record["distinct_2"], tuple(record["fields"]))
    if record["met"] is None:
        return f"not measured: no prediction ({bar.describe()})"
    return f"met ({bar.describe()})" if record["met"] else "broken: " + "; ".join(record["broken"])


def bar_broken(evaluation: dict | None) -> bool:
    """Whether an evaluation record says its program broke the diversity bar (False without a bar, or unmeasured)."""
    return ((evaluation or {}).get("diversity_bar") or {}).get("met") is False
