"""LLM judges, the composite metric's DSPy conventions, scoring by pipeline, judge-check and quality gating."""

import json
import re
import sqlite3

import dspy
import pytest

from datagen.dataset import write_export
from datagen.dataset.screening import KEEP_ALL
from datagen.errors import DatagenError
from datagen.lm import RoleModel
from datagen.metrics import MetricContext, Scorer, parse_thresholds
from datagen.metrics.checks import check_judges
from datagen.metrics.checks.judges import BASELINE
from datagen.metrics.checks.stats import auc, paired_accuracy
from datagen.runs import RunSettings
from datagen.runs.generate import generate
from datagen.samples import Sample
from datagen.workspace import Config, MetricSettings, ModelSettings

from .conftest import run_cli, written
from .fakes import FakeEngine, FakeOpenAIServer, fake_lm
from .test_generate import fake_model

MARK = "Verily"
SAMPLE_WITH_MARKED_OUTPUT = Sample(input="the plain rephrase", output=f"{MARK}, quoth the keeper; the lamp burned.")
SAMPLE_WITH_MARKED_INPUT = Sample(input=f"{MARK}, quoth the keeper; the lamp burned.", output="the plain original")


def styled(text: str) -> bool:
    """What the fake judges take for the author's style: capitals or punctuation (plain() strips both)."""
    return bool(re.search(r"[A-Z;,.!?]", text))


def judge_engine(rating=lambda text: "5" if MARK in text else "1", closer=lambda text: "A") -> FakeEngine:
    return FakeEngine(by_field={"rating": rating, "closer": closer, "reasoning": lambda text: f"read {text[:20]}"})


def judge_model(engine: FakeEngine) -> RoleModel:
    return RoleModel("judge", fake_lm(engine), dspy.ChatAdapter(), None)


def suite_metric(workspace, name: str, engine: FakeEngine, corpus=("A reference passage, by the author.",)):
    context = MetricContext(workspace, Config(), corpus=list(corpus))
    context.judge = judge_model(engine)  # what judge_model(config) would build, here a fake
    return Scorer("style_clone", context, [name]).metrics[0]


@pytest.mark.parametrize("name, reads_output", [
    ("style_fidelity", True), ("boundaries", True), ("content", True), ("genericness", False)])
def test_each_judge_reads_its_side_of_the_sample_and_maps_ratings_onto_0_1(workspace, name, reads_output):
    metric = suite_metric(workspace, name, judge_engine())
    marked, unmarked = ((SAMPLE_WITH_MARKED_OUTPUT, SAMPLE_WITH_MARKED_INPUT) if reads_output
                        else (SAMPLE_WITH_MARKED_INPUT, SAMPLE_WITH_MARKED_OUTPUT))
    high, low = metric("chunk", marked), metric("chunk", unmarked)
    assert (high.value, low.value) == (1.0, 0.0)
    assert high.feedback.startswith("read ")


@pytest.mark.parametrize("rating, value", [("3", 0.5), ("4", 0.75), ("9", 1.0), ("0", 0.0)])
def test_ratings_off_the_scale_are_clamped(workspace, rating, value):
    metric = suite_metric(workspace, "genericness", judge_engine(rating=lambda _: rating))
    assert metric("chunk", SAMPLE_WITH_MARKED_INPUT).value == value


def test_judges_stay_on_the_judge_model_inside_a_task_model_context(workspace):
    judge, task = judge_engine(), FakeEngine()
    metric = suite_metric(workspace, "content", judge)
    with dspy.context(lm=fake_lm(task), adapter=dspy.JSONAdapter()):  # as an optimizer running the metric
        metric("chunk", SAMPLE_WITH_MARKED_OUTPUT)
    assert (judge.calls, task.calls) == (1, 0)


def test_pairwise_judge_asks_both_orders_so_position_bias_cancels_out(workspace):
    fair = suite_metric(workspace, "style_pairwise", judge_engine(closer=lambda a: "A" if styled(a) else "B"))
    assert fair.prefer("Styled, truly.", "plain text").value == 1.0
    assert fair.prefer("plain text", "Styled, truly.").value == 0.0
    biased = suite_metric(workspace, "style_pairwise", judge_engine(closer=lambda _: "A"))
    assert biased.prefer("Styled, truly.", "plain text").value == 0.5


# --- the composite and DSPy's metric conventions -----------------------------------------------------------

def composite(workspace, weights=None, threshold=None):
    config = Config(metrics={"style_clone": MetricSettings(weights=weights or {"content": 3, "genericness": 1},
                                                           threshold=threshold)})
    context = MetricContext(workspace, config, corpus=["A reference."])
    context.judge = judge_model(judge_engine())
    return Scorer("style_clone", context, ["composite"]).composite


def test_composite_is_a_float_for_evaluation_and_a_verdict_under_trace(workspace):
    metric = composite(workspace, threshold=0.7)
    example = dspy.Example(chunk="chunk").with_inputs("chunk")
    good = dspy.Prediction(samples=[SAMPLE_WITH_MARKED_OUTPUT])  # content 1.0 (x3), genericness 0.0 (x1)
    assert metric(example, good) == pytest.approx(0.75)
    assert metric(example, good, trace=[]) is True
    assert composite(workspace, threshold=0.8)(example, good, trace=[]) is False
    assert metric(example, dspy.Prediction(samples=[])) == 0.0


def test_composite_gepa_form_returns_score_and_feedback(workspace):
    metric = composite(workspace)
    result = metric.gepa(dspy.Example(chunk="chunk").with_inputs("chunk"),
                         dspy.Prediction(samples=[SAMPLE_WITH_MARKED_OUTPUT]), None, "rephrase", None)
    assert isinstance(result, dspy.Prediction)
    assert result.score == pytest.approx(0.75)
    assert "content 1.00: read" in result.feedback and "genericness 0.00" in result.feedback


def test_bad_weights_and_metric_names_are_refused(workspace):
    with pytest.raises(DatagenError, match="metric weight 'nope'"):
        composite(workspace, weights={"nope": 1})
    with pytest.raises(DatagenError, match="no metric 'nope'.*content"):
        Scorer("style_clone", MetricContext(workspace, Config(), corpus=[]), ["nope"])
    with pytest.raises(DatagenError, match="expected METRIC=VALUE"):
        parse_thresholds(["content=high"])


def test_offline_metrics_need_no_judge_model(workspace):
    corpus = ["Thou art, verily; the keeper's lamp!", "Nay, quoth he; 'tis the gale.", "Whilst the lamp burned!",
              "Mark you, the brig struck upon the Tooth."]
    context = MetricContext(workspace, Config(), corpus=corpus)
    scorer = Scorer("style_clone", context, ["generic_offline", "chrf"])
    scores = scorer.score("chunk", SAMPLE_WITH_MARKED_INPUT)
    assert set(scores) == {"generic_offline", "chrf"}
    assert all(0 <= s.value <= 1 for s in scores.values())
    assert "judge" not in vars(context)  # never built: gating on offline metrics costs no LM call


# --- judge-check ---------------------------------------------------------------------------------------------

def test_auc_and_paired_accuracy_on_known_answers():
    assert auc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert auc([0.1], [0.9]) == 0.0
    assert auc([0.5, 0.9], [0.5, 0.1]) == pytest.approx((0.5 + 1 + 1 + 1) / 4)
    assert paired_accuracy([0.9, 0.2, 0.5], [0.1, 0.8, 0.5]) == pytest.approx(0.5)


@pytest.fixture
def run_dir(workspace, tmp_path):
    out = tmp_path / "run"
    generate("style_clone", [workspace / "data/samples"], out, workspace=workspace, config=Config(),
             model=fake_model(FakeEngine()), settings=RunSettings(max_tokens=150))
    return out


def test_judge_check_scores_a_discerning_judge_and_flags_a_biased_one(workspace, run_dir):
    with FakeOpenAIServer(by_field={"rating": lambda text: "5" if styled(text) else "1",
                                    "closer": lambda _: "A", "reasoning": lambda _: "r"}) as server:
        config = Config(models={"judge": ModelSettings(model="openai/fake", api_base=server.url)})
        checks = {c.judge: c for c in check_judges(run_dir, workspace=workspace, config=config, limit=12)}
    fidelity, pairwise, baseline = checks["style_fidelity"], checks["style_pairwise"], checks[BASELINE]
    assert (fidelity.accuracy, fidelity.auc, fidelity.pairs) == (1.0, 1.0, 12)
    assert not fidelity.worse_than_baseline
    assert pairwise.accuracy == 0.5 and pairwise.worse_than_baseline  # "A" every time: position bias only
    assert 0.5 < baseline.auc <= 1  # the stylometric classifier, on passages it was not fitted on


def test_judge_check_command_prints_the_table(workspace, run_dir):
    by_field = {"rating": lambda text: "5" if styled(text) else "1", "closer": lambda _: "A", "reasoning": str}
    with FakeOpenAIServer(by_field=by_field) as server:
        env = {"DATAGEN_JUDGE_MODEL": "openai/fake", "DATAGEN_JUDGE_API_BASE": server.url}
        result = run_cli("judge-check", str(run_dir), "--limit", "12", env=env, cwd=workspace)
    assert result.returncode == 0, result.stderr
    assert re.search(r"generic rephrases .* style_fidelity .* 1\.00 .* 1\.00 .* 12", result.stdout)
    assert re.search(r"style_pairwise .* 0\.50 .* worse than the baseline", result.stdout)


def test_judge_check_refuses_a_folder_that_is_not_a_run(workspace, tmp_path):
    with pytest.raises(DatagenError, match="not a datagen run folder"):
        check_judges(tmp_path, workspace=workspace, config=Config())


# --- quality gating -------------------------------------------------------------------------------------------

def neutral_paragraphs(workspace) -> list[str]:
    text = (workspace / "data/reference/neutral.md").read_text()
    return [p.strip() for p in text.split("\n\n") if len(p.split()) > 30]


def styles_some(workspace):
    """A 'rephrase' that answers the chunks mentioning the lamp with another passage of the styled text (such a
    pair would teach nothing of the style; a copy of the chunk itself the pipeline drops before any gate) and
    answers the others with plain expository prose."""
    paragraphs = neutral_paragraphs(workspace)
    styled = [p for p in (workspace / "data/samples/lighthouse_keeper.md").read_text().split("\n\n") if len(p) > 400]

    def respond(text: str) -> str:
        if "lamp" in text.lower():
            return " ".join([p for p in styled if text[:40] not in p][:2])
        return paragraphs[len(text) % len(paragraphs)]
    return respond


def test_min_score_keeps_low_samples_out_of_the_export_but_in_the_store(workspace, tmp_path):
    out = tmp_path / "run"
    report = generate("style_clone", [workspace / "data/samples"], out, workspace=workspace, config=Config(),
                      model=fake_model(FakeEngine(respond=styles_some(workspace))),
                      min_scores={"generic_offline": 0.5}, settings=RunSettings(max_tokens=150))
    # Many of the fake's rephrases are the same neutral paragraph: the dataset's screen leaves those repeats out too,
    # counted apart from the gate.
    copied = report.samples - written(report) - sum(report.left_out.values())
    assert report.held_back == copied > 0 and written(report) > 0 and report.left_out["near-duplicate"] > 0
    exported = [json.loads(line)["conversations"][0]["value"] for line in report.data_path.read_text().splitlines()]
    assert set(exported) <= set(neutral_paragraphs(workspace))  # no styled input got through
    with sqlite3.connect(out / "run.db") as db:
        scored = db.execute("SELECT count(*), min(value), max(value) FROM scores WHERE metric = 'generic_offline'")
        count, low, high = scored.fetchone()
    assert count == report.samples and low < 0.5 <= high  # rejected samples keep their scores
    # The bar can move without running anything again.
    assert write_export(out, "jsonl", min_scores={"generic_offline": 0.0}, screen=KEEP_ALL).samples == report.samples
    assert write_export(out, "jsonl", screen=KEEP_ALL).samples == report.samples
    with pytest.raises(DatagenError, match="no sample has a 'content' score"):
        write_export(out, "jsonl", min_scores={"content": 0.5})


def test_a_new_gate_on_a_finished_run_scores_it_without_running_the_pipeline(workspace, run_dir):
    engine = FakeEngine()
    report = generate("style_clone", [workspace / "data/samples"], run_dir, workspace=workspace, config=Config(),
                      model=fake_model(engine), min_scores={"chrf": 0.0}, settings=RunSettings(max_tokens=150))
    assert engine.calls == 0 and written(report) == report.held_back + written(report) > 0
    with sqlite3.connect(run_dir / "run.db") as db:
        assert db.execute("SELECT count(*) FROM scores WHERE metric = 'chrf'").fetchone()[0] == written(report)


# --- evaluate ------------------------------------------------------------------------------------------------

def test_evaluate_scores_a_dev_set_and_writes_json_and_html(workspace):
    by_field = {"rating": lambda text: "4", "closer": lambda _: "A", "reasoning": lambda _: "fine <b>x</b>"}
    with FakeOpenAIServer(by_field=by_field) as server:
        result = run_cli("evaluate", "style_clone", "--dev", "data/style_clone/dev.jsonl", "--out", "ev",
                         "--split", "val", "-c", "2", "--model", "openai/fake", "--api-base", server.url,
                         cwd=workspace)
    assert result.returncode == 0, result.stderr
    data = json.loads((workspace / "ev/eval.json").read_text())
    dev = [json.loads(line) for line in (workspace / "data/style_clone/dev.jsonl").read_text().splitlines()]
    assert len(data["samples"]) == sum(item["split"] == "val" for item in dev)
    assert data["metrics"]["content"]["mean"] == 0.75 and data["metrics"]["content"]["n"] == len(data["samples"])
    assert {"style_fidelity", "genericness", "generic_offline", "chrf", "composite"} <= set(data["metrics"])
    assert "composite" in result.stdout and "content" in result.stdout
    html = (workspace / "ev/report.html").read_text()
    assert "fine &lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html


@pytest.mark.parametrize("line, message", [
    ("not json", "dev.jsonl:2: not valid JSON"),
    ('{"text": "x"}', 'dev.jsonl:2: needs a non-empty "chunk"'),
    ('{"chunk": "x", "split": "test"}', "dev.jsonl:2: split must be train or val"),
])
def test_a_bad_dev_set_line_is_named(workspace, line, message):
    (workspace / "dev.jsonl").write_text('{"chunk": "fine"}\n' + line + "\n")
    result = run_cli("evaluate", "style_clone", "--dev", "dev.jsonl", cwd=workspace)
    assert result.returncode == 1 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
