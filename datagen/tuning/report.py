"""A self-contained HTML report of an evaluation: what `datagen evaluate` measured, as one offline page.

`render_report` turns an evaluation result (the dict `datagen evaluate` builds and writes as JSON) into one HTML
document: a header (pipeline, program, dev set, date, models), a summary table per metric (against a baseline
when the result carries one) with n and the failed items by kind beside each mean (a failed item counts 0 in it:
see datagen.tuning.evaluate), the diversity bar's verdict and each field's diversity beside the dev chunks' (and
the baseline's), a histogram per metric as inline SVG, the worst samples with their input and output side by side
and every metric's feedback, and the items the program failed on. The page has no script and
refers to nothing outside itself, and every piece of text taken from the result is HTML-escaped.
"""

import html
import math
from pathlib import Path

from datagen.tuning.diversity_report import bar_line, field_diversity
from datagen.util import replacing

BINS = 10  # histogram bins over [0, 1]
WORST = 10  # how many of the worst samples a report shows unless told otherwise

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; line-height: 1.45; }
h1 { margin-bottom: .3em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: .2em 1em; }
dl.meta dt { font-weight: 600; color: #555; }
dl.meta dd { margin: 0; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #ddd; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f6f6f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.up { color: #1a7f37; font-weight: 600; }
.down { color: #cf222e; font-weight: 600; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; }
figcaption { font-weight: 600; text-align: center; }
svg text { font-size: 10px; fill: #555; }
.current { fill: #4c72b0; }
.baseline { fill: #c9a227; }
.swatch { display: inline-block; width: .9em; height: .9em; vertical-align: middle; margin: 0 .3em 0 1em; }
.swatch.current { background: #4c72b0; }
.swatch.baseline { background: #c9a227; }
.sample { border: 1px solid #ddd; border-radius: 6px; padding: .6em 1em; margin: 1em 0; }
.sample h3 { margin: .2em 0 .5em; font-size: 1em; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 1em; }
.text { white-space: pre-wrap; overflow-wrap: anywhere; background: #fafafa; border: 1px solid #eee;
        padding: .5em; margin: .2em 0; }
.muted { color: #888; }
"""


def render_report(result: dict, worst: int = WORST) -> str:
    """The whole report as one HTML document; `worst` is how many of the lowest-scoring samples it shows."""
    baseline = result.get("baseline")
    body = [_header(result), _summary(result, baseline), _diversity(result, baseline), _histograms(result, baseline),
            _worst_samples(result.get("samples") or [], worst), _failures(result.get("failures") or [])]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>datagen evaluation: {_e(result.get('pipeline', ''))}</title>\n<style>{_CSS}</style>\n"
            "</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n")


def write_report(result: dict, path: Path, worst: int = WORST) -> Path:
    """Write the report to `path` under a temporary name first, then rename it into place; returns `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as partial:
        partial.write_text(render_report(result, worst), encoding="utf-8")
    return path


def _e(value) -> str:
    """Text from the result, escaped for HTML (quotes included, so it is safe in attributes too)."""
    return html.escape("" if value is None else str(value))


def _number(value, sign: bool = False) -> str:
    """A score as three decimals (with its sign for deltas), or a dash when there is none."""
    if value is None:
        return "—"
    return f"{value:+.3f}" if sign else f"{value:.3f}"


def _header(result: dict) -> str:
    """Title and what was evaluated: pipeline, program, dev set, date, models per role, baseline program."""
    rows = [("Program", result.get("program")), ("Dev set", result.get("dev")), ("Created", result.get("created"))]
    rows += [(f"Model ({role})", model) for role, model in (result.get("models") or {}).items()]
    if result.get("baseline"):
        rows.append(("Baseline", result["baseline"].get("program")))
    items = "".join(f"<dt>{_e(label)}</dt><dd>{_e(value)}</dd>" for label, value in rows)
    return f"<h1>Evaluation: {_e(result.get('pipeline', ''))}</h1>\n<dl class=\"meta\">{items}</dl>"


def _summary(result: dict, baseline: dict | None) -> str:
    """One row per metric: kind, mean, std, min, max, n, the failed items by kind, and the baseline's mean, n and
    failed items and the delta when there is one."""
    metrics = result.get("metrics") or {}
    if not metrics:
        return "<h2>Summary</h2>\n<p class=\"muted\">No metrics.</p>"
    head = ["Metric", "Kind", "Mean", "Std", "Min", "Max", "n", "Failed"] + (
        ["Baseline mean", "Baseline n", "Baseline failed", "Δ"] if baseline else [])
    base_metrics = (baseline.get("metrics") or {}) if baseline else None
    rows = [_summary_row(name, stats or {}, base_metrics) for name, stats in metrics.items()]
    header = "".join(f"<th>{label}</th>" for label in head)
    return (f"<h2>Summary</h2>\n<p class=\"muted\">Over every item: an item that failed (no sample, or the metric "
            f"failed on its sample) counts 0.</p>\n<table>\n<tr>{header}</tr>\n" + "\n".join(rows) + "\n</table>")


def failed_text(stats: dict) -> str:
    """A summary's failed items with their kinds, e.g. "3 (parse 2, dropped 1)", and for a composite the parts that
    failed on items, e.g. "0; parts failed, counted 0: content 2"; "" for a summary without a count (an evaluation
    written before failures were counted)."""
    if "failed" not in stats:
        return ""
    kinds, parts = failure_kinds(stats), parts_failed_text(stats)
    return f"{stats['failed']}" + (f" ({kinds})" if kinds else "") + (f"; {parts}" if parts else "")


def parts_failed_text(stats: dict) -> str:
    """A composite summary's parts that failed on items (each counted 0 in the composite, which does not count the
    item failed), e.g. "parts failed, counted 0: content 2, genericness 2"; "" when none did."""
    parts = stats.get("parts_failed") or {}
    return "parts failed, counted 0: " + ", ".join(f"{name} {n}" for name, n in parts.items()) if parts else ""


def failure_kinds(stats: dict) -> str:
    """A summary's failures by kind, most first, e.g. "parse 2, dropped 1"."""
    return ", ".join(f"{kind} {n}" for kind, n in (stats.get("failures") or {}).items())


def _summary_row(name: str, stats: dict, base_metrics: dict | None) -> str:
    """A summary table row; given the baseline's metrics it ends with the baseline mean and the delta, green when
    the program scores higher than the baseline and red when lower."""
    cells = [f"<td>{_e(name)}</td>", f"<td>{_e(stats.get('kind'))}</td>"]
    cells += [f"<td class=\"num\">{_number(stats.get(key))}</td>" for key in ("mean", "std", "min", "max")]
    cells.append(f"<td class=\"num\">{_e(stats.get('n', ''))}</td>")
    cells.append(f"<td>{_e(failed_text(stats))}</td>")
    if base_metrics is not None:
        base = base_metrics.get(name) or {}
        base_mean = base.get("mean")
        delta = None if stats.get("mean") is None or base_mean is None else stats["mean"] - base_mean
        direction = "" if not delta else (" up" if delta > 0 else " down")
        cells.append(f"<td class=\"num\">{_number(base_mean)}</td>")
        cells.append(f"<td class=\"num\">{_e(base.get('n', ''))}</td>")
        cells.append(f"<td>{_e(failed_text(base))}</td>")
        cells.append(f"<td class=\"num{direction}\">{_number(delta, sign=True)}</td>")
    return "<tr>" + "".join(cells) + "</tr>"


def _diversity(result: dict, baseline: dict | None) -> str:
    """The diversity bar's verdict (the baseline's beside it), then a row per field for the predictions, the dev
    chunks and the baseline's predictions, and the ways the predictions are narrower than the chunks; "" for a
    result without figures (written before evaluations measured them)."""
    if "diversity" not in result:
        return ""
    bar = "".join(_bar_verdict(label, line) for label, record in (("Diversity bar", result),
                                                                  ("Baseline's diversity bar", baseline or {}))
                  if (line := bar_line(record)))
    mine, theirs = field_diversity(result), field_diversity(baseline or {})
    rows, narrowed = [], []
    for name, comparison in mine.items():
        own = [(name, comparison.samples), (f"{name}: dev chunks", comparison.source)]
        own += [(f"{name}: baseline", theirs[name].samples)] if name in theirs else []
        rows += [_diversity_row(label, figures) for label, figures in own]
        narrowed += [f"<li>{_e(name)}: {_e(line)}</li>" for line in comparison.narrowed]
    if not rows:
        return f"<h2>Diversity</h2>\n{bar}<p class=\"muted\">No samples to measure.</p>"
    head = "".join(f"<th>{label}</th>" for label in ("Field", "Texts", "distinct-1", "distinct-2",
                                                     "Compression ratio", "Most common openings"))
    table = f"<table>\n<tr>{head}</tr>\n" + "\n".join(rows) + "\n</table>"
    notes = f"<p>Narrower than the dev chunks:</p><ul>{''.join(narrowed)}</ul>" if narrowed else ""
    return (f"<h2>Diversity</h2>\n<p class=\"muted\">Each field of the predictions beside the dev chunks, measured on "
            f"the same number of words (docs/quality.md).</p>\n{bar}{table}\n{notes}")


def _bar_verdict(label: str, line: str) -> str:
    """A diversity bar's verdict (`bar_line`) as a paragraph, in red when the bar is broken."""
    css = " class=\"down\"" if line.startswith("broken") else ""
    return f"<p><strong>{_e(label)}:</strong> <span{css}>{_e(line)}</span></p>\n"


def _diversity_row(label: str, figures) -> str:
    """One row of the diversity table: a field's figures (a datagen.dataset.quality.Diversity)."""
    openings = ", ".join(f"'{o.text}' {o.share:.0%}" for o in figures.openings[:3]) or "—"
    numbers = "".join(f"<td class=\"num\">{_number(value)}</td>" for value in (
        figures.distinct_1, figures.distinct_2, figures.compression_ratio))
    return (f"<tr><td>{_e(label)}</td><td class=\"num\">{figures.texts}</td>{numbers}<td>{_e(openings)}</td>"
            "</tr>")


def _sample_value(sample: dict, metric: str) -> float | None:
    """One sample's value for a metric; the composite may sit beside the scores rather than among them."""
    score = (sample.get("scores") or {}).get(metric)
    if score is not None:
        return score.get("value")
    return sample.get("composite") if metric == "composite" else None


def _bin_counts(values: list[float]) -> list[int]:
    """How many values fall in each of the BINS equal bins over [0, 1]; 1.0 counts in the last one."""
    counts = [0] * BINS
    for value in values:
        counts[min(BINS - 1, max(0, math.floor(value * BINS + 1e-9)))] += 1
    return counts


def _histograms(result: dict, baseline: dict | None) -> str:
    """A histogram per metric of its sample values, the baseline's bars beside the current ones when present."""
    metrics = result.get("metrics") or {}
    if not metrics:
        return ""
    sources = [("current", result.get("samples") or [])]
    if baseline:
        sources.append(("baseline", baseline.get("samples") or []))
    charts = []
    for name in metrics:
        series = [(css, _bin_counts([v for s in samples if (v := _sample_value(s, name)) is not None]))
                  for css, samples in sources]
        charts.append(f"<figure><figcaption>{_e(name)}</figcaption>{_histogram_svg(series)}</figure>")
    legend = ("<p><span class=\"swatch current\"></span>this program<span class=\"swatch baseline\"></span>"
              "baseline</p>" if baseline else "")
    return "<h2>Distributions</h2>\n" + legend + "<div class=\"charts\">" + "\n".join(charts) + "</div>"


def _histogram_svg(series: list[tuple[str, list[int]]]) -> str:
    """An inline SVG bar chart of bin counts; each series is (CSS class, counts) and series sit side by side."""
    width, height, left, right, top, bottom = 300, 160, 30, 8, 8, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    tallest = max((max(counts) for _, counts in series), default=0) or 1
    bin_w = plot_w / BINS
    bar_w = (bin_w - 2) / len(series)
    parts = []
    for offset, (css, counts) in enumerate(series):
        for index, count in enumerate(counts):
            bar_h = plot_h * count / tallest
            x = left + index * bin_w + 1 + offset * bar_w
            low, high = index / BINS, (index + 1) / BINS
            parts.append(f"<rect class=\"{css}\" x=\"{x:.1f}\" y=\"{top + plot_h - bar_h:.1f}\" "
                         f"width=\"{bar_w:.1f}\" height=\"{bar_h:.1f}\"><title>{css} {low:.1f}–{high:.1f}: "
                         f"{count}</title></rect>")
    axis_y = top + plot_h
    parts.append(f"<line x1=\"{left}\" y1=\"{axis_y}\" x2=\"{left + plot_w}\" y2=\"{axis_y}\" stroke=\"#888\"/>")
    parts.append(f"<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{axis_y}\" stroke=\"#888\"/>")
    for tick in range(0, BINS + 1, 2):
        parts.append(f"<text x=\"{left + tick * bin_w:.1f}\" y=\"{axis_y + 12}\" text-anchor=\"middle\">"
                     f"{tick / BINS:.1f}</text>")
    if not any(any(counts) for _, counts in series):
        parts.append(f"<text x=\"{left + plot_w / 2:.1f}\" y=\"{top + plot_h / 2:.1f}\" "
                     "text-anchor=\"middle\">no values</text>")
    parts.append(f"<text x=\"{left - 4}\" y=\"{top + 8}\" text-anchor=\"end\">{tallest}</text>")
    parts.append(f"<text x=\"{left - 4}\" y=\"{axis_y}\" text-anchor=\"end\">0</text>")
    parts.append(f"<text x=\"{left + plot_w / 2:.1f}\" y=\"{height - 3}\" text-anchor=\"middle\">score</text>")
    parts.append(f"<text transform=\"translate(10 {top + plot_h / 2:.1f}) rotate(-90)\" "
                 "text-anchor=\"middle\">count</text>")
    return (f"<svg width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\">"
            + "".join(parts) + "</svg>")


def _rank_value(sample: dict) -> tuple[str, float] | None:
    """What ranks a sample: its composite, else the mean of its metric values; None when it has neither."""
    if sample.get("composite") is not None:
        return "composite", sample["composite"]
    values = [score.get("value") for score in (sample.get("scores") or {}).values()]
    values = [value for value in values if value is not None]
    return ("mean score", sum(values) / len(values)) if values else None


def _worst_samples(samples: list[dict], count: int) -> str:
    """The `count` lowest-ranked samples, worst first; samples with nothing to rank them by come last."""
    if not samples:
        return "<h2>Worst samples</h2>\n<p class=\"muted\">No samples were scored.</p>"
    ranked = sorted(samples, key=lambda s: (r[1] if (r := _rank_value(s)) else math.inf))[:count]
    cards = [_sample_card(place, sample) for place, sample in enumerate(ranked, 1)]
    return f"<h2>Worst samples ({len(ranked)} of {len(samples)})</h2>\n" + "\n".join(cards)


def _sample_card(place: int, sample: dict) -> str:
    """One sample: its rank value, input and output side by side, its chunk on demand, every metric's feedback."""
    rank = _rank_value(sample)
    ranked_by = f"{rank[0]} {_number(rank[1])}" if rank else "unscored"
    rows = "".join(f"<tr><td>{_e(name)}</td><td class=\"num\">{_number((score or {}).get('value'))}</td>"
                   f"<td>{_failure_note(score)}{_e((score or {}).get('feedback'))}</td></tr>"
                   for name, score in (sample.get("scores") or {}).items())
    chunk = (f"<details><summary>Source chunk</summary><div class=\"text\">{_e(sample['chunk'])}</div></details>"
             if sample.get("chunk") else "")
    return (f"<div class=\"sample\"><h3>#{place} · {ranked_by} · <span class=\"muted\">chunk "
            f"{_e(sample.get('chunk_id'))}</span></h3>\n"
            f"<div class=\"pair\"><div><strong>Input</strong><div class=\"text\">{_e(sample.get('input'))}</div>"
            f"</div><div><strong>Output</strong><div class=\"text\">{_e(sample.get('output'))}</div></div></div>\n"
            f"{chunk}<table><tr><th>Metric</th><th>Value</th><th>Feedback</th></tr>{rows}</table></div>")


def _failure_note(score: dict | None) -> str:
    """Before a metric's feedback: the kind of its failure on the sample (counted 0), when it failed."""
    kind = (score or {}).get("failure")
    return f"<strong>failed ({_e(kind)}), counted 0:</strong> " if kind else ""


def _failures(failures: list[dict]) -> str:
    """The dev items that made no sample, if any: chunk id, kind of failure (or "dropped"), message."""
    if not failures:
        return ""
    rows = "".join(f"<tr><td>{_e(f.get('chunk_id'))}</td><td>{_e(f.get('kind'))}</td>"
                   f"<td>{_e(f.get('message'))}</td></tr>" for f in failures)
    return (f"<h2>Failures ({len(failures)})</h2>\n<table><tr><th>Chunk</th><th>Kind</th><th>Message</th></tr>"
            f"{rows}</table>")
