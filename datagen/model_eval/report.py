"""A self-contained HTML report of `datagen eval-model`: the models side by side, as one offline page.

`render_report` turns the evaluation record (datagen.model_eval.evaluate, written as eval.json) into one HTML
document: a header (run, pipeline, held-out samples, system prompt), a table of the models with each metric's mean
and 95% interval, n and the failed calls, a table of the pairs of models (win rate and mean difference with their
paired intervals), and each held-out sample with its input, its reference and every model's answer and scores. The
page has no script and refers to nothing outside itself; every text taken from the record is HTML-escaped.
`datagen view RUN` shows the same record with a diff of each answer against the reference.
"""

import html
from pathlib import Path

from datagen.util import replacing

_CSS = """
body { font-family: system-ui, sans-serif; color: #222; max-width: 1200px; margin: 2em auto; padding: 0 1em;
       line-height: 1.45; }
h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #ddd; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f6f6f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.interval { color: #666; font-size: .9em; }
.sample { border: 1px solid #ddd; border-radius: 4px; padding: .5em 1em; margin: 1em 0; }
.text { white-space: pre-wrap; background: #fafafa; padding: .4em; border-radius: 3px; }
.failed { color: #cf222e; }
"""


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _interval(summary: dict) -> str:
    if summary.get("mean") is None:
        return "-"
    return (f"{summary['mean']:.3f} <span class='interval'>[{summary['low']:.3f}, {summary['high']:.3f}]</span>")


def _models_table(result: dict) -> str:
    names = result["metrics"]["names"]
    head = "".join(f"<th>{html.escape(name)}</th>" for name in names)
    rows = []
    for model in result["models"]:
        cells = "".join(f"<td class='num'>{_interval(model['scores'][name])}</td>" for name in names)
        failures = ", ".join(f"{html.escape(kind)} {count}" for kind, count in model["failures"].items()) or "0"
        rows.append(f"<tr><th>{html.escape(model['label'])}<br><span class='interval'>"
                    f"{html.escape(model['model'] or '')}</span></th>{cells}"
                    f"<td class='num'>{model['answered']}</td><td>{failures}</td>"
                    f"<td class='num'>{model['cut_off']}</td></tr>")
    return (f"<table><tr><th>model</th>{head}<th>answered</th><th>failed calls</th><th>cut off at max_tokens</th>"
            f"</tr>{''.join(rows)}</table>"
            "<p>Each cell: the mean over every held-out sample (a failed call counts 0) and its 95% bootstrap "
            "interval.</p>")


def _pairs_table(result: dict) -> str:
    if not result["pairs"]:
        return "<p>One model: nothing to compare.</p>"
    rows = "".join(
        f"<tr><td>{html.escape(pair['first'])}</td><td>{html.escape(pair['second'])}</td>"
        f"<td class='num'>{pair['n']}</td><td class='num'>{pair['wins']} / {pair['ties']} / {pair['losses']}</td>"
        f"<td class='num'>{_number(pair['win_rate'])} <span class='interval'>[{_number(pair['win_low'])}, "
        f"{_number(pair['win_high'])}]</span></td><td class='num'>{_number(pair['difference'])} "
        f"<span class='interval'>[{_number(pair['difference_low'])}, {_number(pair['difference_high'])}]</span></td>"
        "</tr>" for pair in result["pairs"])
    metric = html.escape(result["pairs"][0]["metric"])
    return (f"<table><tr><th>first</th><th>second</th><th>n</th><th>wins / ties / losses</th><th>win rate "
            f"(95%)</th><th>mean difference in {metric} (95%)</th></tr>{rows}</table>")


def _sample(sample: dict, names: list[str]) -> str:
    parts = [f"<div class='sample'><h3>{html.escape(sample['id'])} <span class='interval'>"
             f"{html.escape(sample['source'] or '')}</span></h3>",
             f"<b>input</b><div class='text'>{html.escape(sample['input'])}</div>",
             f"<b>reference</b><div class='text'>{html.escape(sample['reference'])}</div>"]
    for label, answer in sample["answers"].items():
        scores = ", ".join(f"{html.escape(name)} {_number(answer['scores'][name]['value'])}" for name in names
                           if name in answer["scores"])
        body = (html.escape(answer["text"]) if answer["text"] is not None
                else f"<span class='failed'>{html.escape(answer['error'] or 'failed')}</span>")
        parts.append(f"<b>{html.escape(label)}</b> <span class='interval'>{scores}</span>"
                     f"<div class='text'>{body}</div>")
    return "".join(parts) + "</div>"


def render_report(result: dict) -> str:
    """The evaluation record as one HTML page.

    Args:
        result: the record `datagen.model_eval.evaluate.evaluate_models` returns (eval.json).

    Returns:
        The page, a complete HTML document.
    """
    names = result["metrics"]["names"]
    system = html.escape(result["system"]) if result["system"] is not None else "(none)"
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>eval-model: "
            f"{html.escape(result['run'])}</title><style>{_CSS}</style></head><body>"
            f"<h1>Models on the held-out split of {html.escape(result['run'])}</h1>"
            f"<p>Pipeline {html.escape(result['pipeline'])}, {result['held_out']} held-out samples, "
            f"{html.escape(result['created'])}. System prompt: {system}</p>"
            f"<h2>Models</h2>{_models_table(result)}<h2>Pairs</h2>{_pairs_table(result)}"
            f"<h2>Samples</h2>{''.join(_sample(sample, names) for sample in result['samples'])}</body></html>")


def write_report(result: dict, path: Path) -> Path:
    """Write `render_report(result)` to `path` (replaced whole), and return it."""
    with replacing(path) as part:
        part.write_text(render_report(result), encoding="utf-8")
    return path
