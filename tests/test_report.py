"""The HTML evaluation report: contents, escaping, self-containment, edge cases and the atomic write."""

import copy
import html
import re

import pytest

from datagen.tuning import render_report, write_report

SCRIPT = "<script>alert(1)</script>"


def _sample(chunk_id: str, content: float, chrf: float, text: str = "plain text") -> dict:
    return {"chunk_id": chunk_id, "chunk": f"chunk {chunk_id}", "input": f"input {chunk_id}: {text}",
            "output": f"output {chunk_id}", "composite": (content + chrf) / 2,
            "scores": {"content": {"value": content, "feedback": f"content feedback {chunk_id}"},
                       "chrf": {"value": chrf, "feedback": f"chrf feedback {chunk_id}"}}}


@pytest.fixture
def result() -> dict:
    return {
        "pipeline": "style_clone", "program": "compiled/style_clone/mipro.json", "dev": "data/style_clone/dev.jsonl",
        "created": "2026-11-25T10:00:00+00:00", "models": {"task": "openai/gpt-4o-mini", "judge": "openai/gpt-4o"},
        "metrics": {"content": {"mean": 0.7125, "std": 0.12, "min": 0.2, "max": 1.0, "n": 3, "kind": "judge"},
                    "chrf": {"mean": 0.41, "std": 0.05, "min": 0.3, "max": 0.5, "n": 3, "kind": "offline"},
                    "composite": {"mean": 0.56, "std": 0.1, "min": 0.25, "max": 0.75, "n": 3, "kind": "composite"}},
        "failures": [{"chunk_id": "ff00", "kind": "parse", "message": "no output field <b>"}],
        "samples": [_sample("good", 1.0, 0.5), _sample("worst", 0.2, 0.3, SCRIPT), _sample("middle", 0.6, 0.4)],
    }


def test_header_and_summary_rows(result):
    page = render_report(result)
    for text in ("style_clone", "compiled/style_clone/mipro.json", "data/style_clone/dev.jsonl",
                 "2026-11-25T10:00:00+00:00", "openai/gpt-4o-mini", "openai/gpt-4o"):
        assert text in page
    assert re.search(r"<td>content</td><td>judge</td><td class=\"num\">0\.713</td>", page)
    assert re.search(r"<td>chrf</td><td>offline</td><td class=\"num\">0\.410</td>", page)
    assert "Δ" not in page and "Baseline mean" not in page


def test_one_svg_histogram_per_metric(result):
    page = render_report(result)
    assert page.count("<svg") == len(result["metrics"]) == page.count("</svg>")
    assert "xmlns" not in page  # inline SVG in HTML needs no namespace URL


def test_worst_sample_comes_first_with_every_feedback(result):
    page = render_report(result)
    assert page.index("input worst") < page.index("input middle") < page.index("input good")
    assert "content feedback worst" in page and "chrf feedback worst" in page
    assert "input good" not in render_report(result, worst=2)


def test_mean_score_ranks_samples_without_composite(result):
    for sample in result["samples"]:
        del sample["composite"]
    page = render_report(result)
    assert page.index("input worst") < page.index("input good")
    assert "mean score 0.250" in page


def test_user_text_is_escaped(result):
    result["pipeline"] = SCRIPT
    result["samples"][0]["scores"]["content"]["feedback"] = SCRIPT
    page = render_report(result)
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "no output field &lt;b&gt;" in page


def test_refers_to_nothing_outside(result):
    result["samples"][0]["output"] = 'see https://example.com and <a href="http://evil">x</a>'
    page = render_report(result)
    assert not re.search(r"\b(src|href|action)\s*=\s*[\"']", page)  # escaped user text has &quot;, not quotes
    assert "@import" not in page and "url(" not in page
    without_user_text = page.replace(html.escape(result["samples"][0]["output"]), "")
    assert "http://" not in without_user_text and "https://" not in without_user_text


def test_baseline_adds_delta_column(result):
    baseline = copy.deepcopy(result)
    baseline["program"] = "uncompiled"
    baseline["metrics"]["content"]["mean"] = 0.5
    baseline["metrics"]["chrf"]["mean"] = 0.6
    del baseline["metrics"]["composite"]
    result["baseline"] = baseline
    page = render_report(result)
    assert "Baseline mean" in page and "Δ" in page
    assert '<td class="num up">+0.213</td>' in page
    assert '<td class="num down">-0.190</td>' in page
    assert "uncompiled" in page
    assert page.count('class="baseline"') == 3 * 10  # baseline bars beside the current ones in every histogram


def test_edge_cases_render():
    page = render_report({"pipeline": "qa", "metrics": {"content": {"mean": None, "n": 0, "kind": "judge"}},
                          "samples": []})
    assert "No samples were scored." in page
    assert page.count("<svg") == 1 and "no values" in page
    assert "<td class=\"num\">—</td>" in page
    assert render_report({}).startswith("<!DOCTYPE html>")


def test_write_report_is_atomic(tmp_path, result):
    target = tmp_path / "reports" / "eval.html"
    assert write_report(result, target) == target
    assert target.read_text(encoding="utf-8") == render_report(result)
    assert [p.name for p in target.parent.iterdir()] == ["eval.html"]



def test_failed_items_by_kind_stand_beside_each_mean_and_the_baselines(result):
    result["metrics"]["content"].update(n=4, failed=2, failures={"parse": 1, "judge_content_truncated": 1})
    result["samples"][1]["scores"]["content"] = {"value": 0.0, "feedback": "cut off",
                                                 "failure": "judge_content_truncated"}
    baseline = copy.deepcopy(result)
    baseline["metrics"]["content"].update(n=4, failed=3, failures={"parse": 3})
    result["baseline"] = baseline
    page = render_report(result)
    assert "an item that failed (no sample, or the metric failed on its sample) counts 0" in page
    assert "<th>Failed</th>" in page and "<th>Baseline n</th>" in page and "<th>Baseline failed</th>" in page
    row = next(line for line in page.splitlines() if line.startswith("<tr><td>content</td>"))
    assert "<td>2 (parse 1, judge_content_truncated 1)</td>" in row and "<td>3 (parse 3)</td>" in row
    assert "<strong>failed (judge_content_truncated), counted 0:</strong> cut off" in page
    chrf = next(line for line in page.splitlines() if line.startswith("<tr><td>chrf</td>"))
    assert "<td></td>" in chrf  # a summary written before failures were counted shows none
