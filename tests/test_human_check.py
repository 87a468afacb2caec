"""judge-check --human: a run's metrics and gate set against the reviews people gave its samples, on a case whose
answer is worked out by hand."""

import json
import math
import shutil

import dspy
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from datagen.errors import DatagenError
from datagen.metrics import Score
from datagen.metrics.checks import MEAN_RATING, WHOLE_GATE, human_check
from datagen.metrics.checks.human import verdict_label
from datagen.metrics.checks.stats import auc_estimate, spearman_estimate
from datagen.runs import RunSettings
from datagen.runs.generate import generate
from datagen.store import Review, RunStore
from datagen.workspace import Config

from .conftest import ROOT, run_cli
from .test_cli import assert_one_line_error
from .fakes import FakeEngine
from .test_generate import fake_model

# Scores of the reviewed samples s0-s8, by metric. s0-s3 are reviewed good; s4-s7 bad (s4 by verdict, s5 by
# verdict with a correction, s6 rated good but corrected, s7 corrected without a verdict: a correction counts as
# bad, since the metrics scored the generated text); s8 is rated without a verdict; s9 is scored, not reviewed.
SCORES = {
    #             s0    s1    s2    s3    s4    s5    s6    s7    s8    s9
    "content":   [0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1, 0.05, 0.0],  # separates good from bad: AUC 1
    "genericness": [0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0],  # the reverse: AUC 0
    "chrf":      [0.8, 0.7, 0.4, 0.3, 0.6, 0.5, 0.2, 0.1, 0.5, 1.0],  # good beats bad in 12 of 16 pairs: 0.75
    "composite": [0.9, 0.75, 0.7, 0.45, 0.8, 0.4, 0.3, 0.2, 0.1, 1.0],  # 13 of 16: 0.8125
}
# 1-5 ratings (content, genericness) of s0, s1, s2, s4 and s8; s8 is rated on boundaries too (no metric scored).
RATINGS = {0: (5, 5), 1: (3, 4), 2: (4, 3), 4: (2, 2), 8: (1, 1)}
MORE_RATINGS = {8: {"boundaries": 5}}


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A small style_clone run, generated once against the fake model, with no scores and no reviews."""
    tmp = tmp_path_factory.mktemp("human")
    for name in ("programs", "signatures", "metrics", "data"):
        shutil.copytree(ROOT / name, tmp / "ws" / name, ignore=shutil.ignore_patterns("__pycache__"))
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    with dspy.context(lm=None, trace=[]):
        report = generate("style_clone", [tmp / "ws/data/samples"], tmp / "run", workspace=tmp / "ws",
                          config=Config(), model=fake_model(FakeEngine()),
                          settings=RunSettings(max_tokens=200, limit=12))
    assert report.samples >= 11
    return tmp / "run"


def chunk_ids(run) -> list[str]:
    with RunStore(run) as store:
        return [chunk.id for chunk, samples in store.done() if samples]


def copy_run(base_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(base_run, run)
    return run


@pytest.fixture
def run(base_run, tmp_path):
    """The run with SCORES on its first 10 samples and the reviews described above."""
    run = copy_run(base_run, tmp_path)
    ids = chunk_ids(run)
    with RunStore(run) as store:
        for i, chunk_id in enumerate(ids[:10]):
            store.set_scores(chunk_id, [{metric: Score(values[i], "") for metric, values in SCORES.items()}])
        verdicts = {0: "good", 1: "good", 2: "good", 3: "good", 4: "bad", 5: "bad", 6: "good", 7: None, 8: None}
        corrections = {5: "fixed", 6: "fixed", 7: "fixed"}
        for i, verdict in verdicts.items():
            ratings = dict(zip(("content", "genericness"), RATINGS[i])) if i in RATINGS else {}
            ratings.update(MORE_RATINGS.get(i, {}))
            store.set_review(Review(ids[i], 0, verdict, ratings, output=corrections.get(i)))
        # A review of a sample never scored counts for no metric.
        store.set_review(Review(ids[10], 0, "bad", {"content": 5}))
    return run


def test_a_corrected_sample_counts_as_bad_whatever_its_verdict():
    assert verdict_label(Review("c", 0, "good")) is True
    assert verdict_label(Review("c", 0, "bad")) is False
    assert verdict_label(Review("c", 0, "good", output="fixed")) is False
    assert verdict_label(Review("c", 0, None, input="fixed")) is False
    assert verdict_label(Review("c", 0, None, {"content": 4})) is None
    assert verdict_label(None) is None


def test_each_metric_against_the_verdicts_and_the_ratings(run):
    result = human_check(run)
    assert (result.reviews, result.good, result.bad, result.corrected, result.rated) == (10, 4, 5, 3, 6)
    rows = {row.metric: row for row in result.metrics}
    assert list(rows) == ["composite", "chrf", "content", "genericness"]  # the composite first
    for row in rows.values():  # the unscored bad review (ids[10]) is in no metric's count
        assert (row.good, row.bad) == (4, 4)
    assert rows["content"].auc.value == 1.0
    assert (rows["content"].auc.low, rows["content"].auc.high) == (1.0, 1.0)
    assert rows["genericness"].auc.value == 0.0
    assert rows["chrf"].auc.value == 0.75
    assert rows["composite"].auc.value == 0.8125
    for row in rows.values():
        assert row.auc.n == 8 and row.auc.low <= row.auc.value <= row.auc.high

    # content against the content ratings of s0, s1, s2, s4, s8: ranks (5 4 3 2 1) against (5 3 4 2 1): 1 - 6*2/120.
    assert rows["content"].criterion == "content"
    assert rows["content"].spearman.value == pytest.approx(0.9)
    assert rows["content"].spearman.n == 5
    assert rows["genericness"].spearman.value == pytest.approx(-1.0)
    # The composite against each sample's mean rating (5, 3.5, 3.5, 2, 7/3): ranks (5 3 2 4 1) against
    # (5 3.5 3.5 1 2), the Pearson correlation of the ranks: 3.5 / sqrt(10 x 9.5).
    assert rows["composite"].criterion == MEAN_RATING
    assert rows["composite"].spearman.value == pytest.approx(3.5 / math.sqrt(10 * 9.5))
    assert rows["chrf"].criterion is None and rows["chrf"].spearman is None
    assert "no rating on a criterion named 'chrf'" in rows["chrf"].spearman_note
    for row in (rows["content"], rows["genericness"], rows["composite"]):
        assert row.spearman.low <= row.spearman.value <= row.spearman.high


def test_a_metric_that_disagrees_with_people_is_flagged(run):
    result = human_check(run)
    rows = {row.metric: row for row in result.metrics}
    flags = {metric: [f for f in result.flags if f.startswith(metric + ":")] for metric in rows}
    assert flags["content"] == []
    assert len(flags["genericness"]) == 2
    assert all("disagrees with people" in flag for flag in flags["genericness"])
    assert "AUC 0.00" in flags["genericness"][0] and "Spearman -1.00" in flags["genericness"][1]
    chrf = rows["chrf"].auc
    assert any("not shown to agree" in flag and "AUC 0.75" in flag for flag in flags["chrf"]) == (chrf.low <= 0.5)
    assert not any("disagrees" in flag for flag in flags["chrf"] + flags["composite"])


def test_the_bootstrap_is_seeded_and_narrows_with_more_labels(run):
    first, again = human_check(run), human_check(run)
    assert [(m.auc, m.spearman) for m in first.metrics] == [(m.auc, m.spearman) for m in again.metrics]
    rng = np.random.default_rng(7)
    widths = {}
    for n in (10, 160):
        good, bad = rng.normal(1.0, 1.0, n), rng.normal(0.0, 1.0, n)
        auc = auc_estimate(good, bad, 2000, 0)
        assert auc.value == roc_auc_score([1] * n + [0] * n, np.r_[good, bad]) and auc.n == 2 * n
        assert auc.low < auc.value < auc.high
        ratings = np.clip(np.round(3 + good), 1, 5)
        rank = spearman_estimate(good + rng.normal(0, 0.5, n), ratings, 2000, 0)
        assert rank.low < rank.value < rank.high
        widths[n] = (auc.high - auc.low, rank.high - rank.low)
    # With 16 times the labels, an interval about a quarter as wide: no wider than half.
    assert widths[160][0] < widths[10][0] / 2 and widths[160][1] < widths[10][1] / 2
    assert widths[160][0] > 0.05  # ... and not collapsed: about 2 x 1.96 x 0.03


def test_a_gate_against_the_verdicts_with_its_best_bar(run):
    result = human_check(run, {"content": 0.5, "composite": 0.6})
    assert result.gate_source == "--min-score"
    gates = {g.metric: g for g in result.gates}
    assert list(gates) == ["content", "composite", WHOLE_GATE]
    content, composite, whole = gates["content"], gates["composite"], gates[WHOLE_GATE]
    assert (content.n, content.good) == (8, 4)
    # content >= 0.5: the 4 good samples and no bad one.
    assert (content.at_bar.passing, content.at_bar.precision, content.at_bar.recall) == (4, 1.0, 1.0)
    # Best by Youden's J: the lowest good score, 0.6 (J = 1).
    assert (content.best.threshold, content.best.precision, content.best.recall, content.best.j) == (0.6, 1.0, 1.0, 1.0)
    # composite >= 0.6 passes s0, s1, s2 (good) and s4 (bad).
    assert (composite.at_bar.passing, composite.at_bar.precision, composite.at_bar.recall) == (4, 0.75, 0.75)
    # J by bar: 0.9: 0.25, 0.8: 0, 0.75: 0.25, 0.7: 0.5, 0.45: 1 - 0.25 = 0.75 (the best), 0.4: 0.5, ...
    assert composite.best.threshold == 0.45 and composite.best.j == pytest.approx(0.75)
    assert (composite.best.passing, composite.best.precision, composite.best.recall) == (5, 0.8, 1.0)
    # A score at the bar reaches it, as in the export (s3's content is 0.6).
    assert human_check(run, {"content": 0.6}).gates[0].at_bar.passing == 4
    # Both bars: s0, s1, s2 pass; s3 fails the composite's, every bad sample the content one.
    assert whole.bar is None and whole.best is None
    assert (whole.at_bar.passing, whole.at_bar.precision, whole.at_bar.recall) == (3, 1.0, 0.75)


def test_the_runs_last_gate_is_checked_by_default_and_a_reversed_metric_has_no_best_bar(run):
    with RunStore(run) as store:
        store.set_meta({"min_scores": json.dumps({"genericness": 0.5})})
    result = human_check(run)
    assert result.gate_source == "the run's last gate" and result.gate == {"genericness": 0.5}
    (gate,) = result.gates
    # genericness >= 0.5 passes the 4 bad samples and no good one.
    assert (gate.at_bar.passing, gate.at_bar.precision, gate.at_bar.recall) == (4, 0.0, 0.0)
    assert gate.best is None and "better than keeping every sample" in gate.note
    (chrf,) = human_check(run, {"chrf": 0.35}).gates  # --min-score wins over the stored gate
    assert chrf.metric == "chrf" and chrf.bar == 0.35
    # chrf >= 0.35 passes s0, s1, s2 (good) and s4, s5 (bad).
    assert (chrf.at_bar.passing, chrf.at_bar.precision, chrf.at_bar.recall) == (5, 0.6, 0.75)
    # J is 0.5 at 0.7 (TPR 0.5, FPR 0) and at 0.3 (1, 0.5): a tie goes to the higher bar.
    assert (chrf.best.threshold, chrf.best.j, chrf.best.passing, chrf.best.precision, chrf.best.recall) == (
        0.7, 0.5, 2, 1.0, 0.5)


def test_too_few_labels_are_said_not_computed(base_run, tmp_path):
    run = copy_run(base_run, tmp_path)
    ids = chunk_ids(run)
    with RunStore(run) as store:
        for i, chunk_id in enumerate(ids[:4]):
            store.set_scores(chunk_id, [{"content": Score(0.2 * i, "")}])
        for i, verdict in enumerate(["good", "good", "good", "bad"]):
            store.set_review(Review(ids[i], 0, verdict, {"content": 3} if i < 3 else {}))
    result = human_check(run, {"content": 0.3})
    (row,) = result.metrics
    assert row.auc is None and row.auc_note == "too few labels: 3 good, 1 bad (needs 2 of each)"
    assert row.spearman is None and "every rating is 3" in row.spearman_note
    (gate,) = result.gates
    assert gate.at_bar is None and gate.best is None and "too few labels" in gate.note
    assert result.flags == []


def test_refusals(base_run, tmp_path, run):
    with pytest.raises(DatagenError, match="no sample has been reviewed yet; review some with datagen view"):
        human_check(base_run)
    with pytest.raises(DatagenError, match="not a datagen run folder"):
        human_check(tmp_path / "nowhere")
    with pytest.raises(DatagenError, match="no sample has a 'boundaries' score"):
        human_check(run, {"boundaries": 0.5})
    unscored = copy_run(base_run, tmp_path / "unscored")
    with RunStore(unscored) as store:
        store.set_review(Review(chunk_ids(unscored)[0], 0, "good"))
    with pytest.raises(DatagenError, match="no sample has a score to check"):
        human_check(unscored)


# --- the command ----------------------------------------------------------------------------------------------


def test_judge_check_human_prints_the_tables_and_writes_json(run, tmp_path):
    result = run_cli("judge-check", str(run), "--human", "--min-score", "content=0.5", "--min-score",
                     "composite=0.6", "--json", "human.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "10 reviews: 4 good, 5 bad (3 corrected" in result.stdout
    content = next(line for line in lines if line.strip("│ ").startswith("content ") and "1.00" in line)
    assert "1.00 to 1.00" in content and "0.90" in content
    assert any(line.startswith("flagged: genericness: disagrees with people") for line in lines)
    assert "reported, not applied" in result.stdout
    gate = next(line for line in lines if "composite >= 0.6" in line)
    assert "0.75" in gate and "0.45" in gate and "0.80" in gate
    assert any(WHOLE_GATE in line for line in lines)
    data = json.loads((tmp_path / "human.json").read_text())
    assert data["gate"] == {"content": 0.5, "composite": 0.6} and data["gate_source"] == "--min-score"
    assert {m["metric"]: m["auc"]["value"] for m in data["metrics"]}["chrf"] == 0.75
    assert data["gates"][1]["best"]["threshold"] == 0.45
    assert data["flags"] == human_check(run, {"content": 0.5, "composite": 0.6}).flags


def test_judge_check_human_refusals(base_run, run, tmp_path):
    assert_one_line_error(run_cli("judge-check", str(base_run), "--human", cwd=tmp_path),
                          "no sample has been reviewed yet", f"datagen view {base_run}")
    assert_one_line_error(run_cli("judge-check", str(run), "--human", "--pairs", "p.jsonl", cwd=tmp_path),
                          "--human", "not with --pairs")
    assert_one_line_error(run_cli("judge-check", str(run), "--human", "--other", "x.txt", cwd=tmp_path),
                          "not with --pairs, --authors or --other")
    assert_one_line_error(run_cli("judge-check", str(run), "--min-score", "content=0.5", cwd=tmp_path),
                          "--min-score goes with --human")
    assert_one_line_error(run_cli("judge-check", str(run), "--human", "--min-score", "content=2", cwd=tmp_path),
                          "content")
