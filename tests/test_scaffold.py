"""`datagen new`: a scaffolded pipeline runs at once (generate, evaluate, its own test) and nothing is overwritten."""

import json
import os
import subprocess
import sys

import dspy
import pytest

from datagen.dataset import read_devset
from datagen.errors import DatagenError
from datagen.lm.roles import RoleModel
from datagen.metrics import AnswerScorer, MetricContext
from datagen.metrics.judges import InstructionsJudge
from datagen.samples import Sample
from datagen.scaffold import scaffold
from datagen.scaffold.pipeline import DEV_ITEMS
from datagen.tuning import evaluate_pipeline
from datagen.workspace import Config, load_metric_suite, load_program

from .conftest import every_record, run_cli
from .fakes import FakeEngine, FakeOpenAIServer, fake_lm, plain
from .test_cli import assert_one_line_error

QA = "passage -> question, answer"
FILES = ["signatures/qa.py", "programs/qa.py", "metrics/qa.py", "tests/test_qa.py", "data/qa/dev.jsonl"]
PASSAGE = "The lamp was lit at dusk."
QA_ANSWERS = {"question": lambda text: "what is " + plain(text)[:30], "answer": lambda text: "it is " + plain(text)}


def tree(folder) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def fake(engine: FakeEngine, role: str = "task") -> RoleModel:
    return RoleModel(role, fake_lm(engine), dspy.ChatAdapter(), None)


def test_new_pipeline_generates_is_listed_and_its_own_test_passes(workspace):
    made = run_cli("new", "qa", "--signature", QA, cwd=workspace)
    assert made.returncode == 0, made.stderr
    assert made.stdout.split() == [word for path in FILES for word in ("wrote", path)]
    assert "datagen generate qa" in made.stderr

    listed = run_cli("pipelines", cwd=workspace)
    assert "qa" in listed.stdout.split()

    with FakeOpenAIServer(by_field=QA_ANSWERS) as server:
        run = run_cli("generate", "qa", "--input", "data/samples", "--out", "out", "--model", "openai/fake",
                      "--api-base", server.url, cwd=workspace)
    assert run.returncode == 0, run.stderr
    records = [record["conversations"] for record in every_record(workspace / "out/sharegpt.jsonl")]
    assert records and len(records) == len(server.requests)
    for human, gpt in records:  # question -> answer
        assert human["value"].startswith("what is ") and gpt["value"].startswith("it is ")

    own = subprocess.run([sys.executable, "-m", "pytest", "tests/test_qa.py", "-q", "-p", "no:cacheprovider"],
                         cwd=workspace, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "DSPY_CACHEDIR": str(workspace / ".dspy_cache")})
    assert own.returncode == 0, own.stdout + own.stderr
    assert "2 passed" in own.stdout


def test_default_signature_pairs_each_passage_with_the_output(workspace):
    scaffold(workspace, "summary")
    items = read_devset(workspace / "data/summary/dev.jsonl")
    assert len(items) == DEV_ITEMS and {item.split for item in items} == {"train", "val"}
    assert all(item.chunk.source.endswith("lighthouse_keeper.md") for item in items)
    program = load_program("summary", workspace)
    with fake(FakeEngine(by_field={"output": lambda text: "in short: " + plain(text)[:40]})).context():
        [sample] = program(chunk=items[0].chunk.text).samples
    assert sample.input == items[0].chunk.text and sample.output.startswith("in short: ")


@pytest.mark.parametrize("answer, reason", [(lambda text: text, "copy"), (lambda _: "{output}", "placeholder"),
                                            (lambda _: '{"output": "the lamp"}', "serialized")])
def test_a_new_pipeline_drops_degenerate_output(workspace, answer, reason):
    scaffold(workspace, "summary")
    program = load_program("summary", workspace)
    item = read_devset(workspace / "data/summary/dev.jsonl")[0]
    with fake(FakeEngine(by_field={"output": answer})).context():
        prediction = program(chunk=item.chunk.text)
    assert prediction.samples == [] and prediction.dropped == [{"reason": reason, "output": prediction.output}]


def test_inputs_beyond_the_first_become_pipeline_options(workspace):
    scaffold(workspace, "qa_topic", "passage, topic -> question, reasoning, answer")
    program = load_program("qa_topic", workspace, {"topic": "lamps"})
    model = fake(FakeEngine(by_field={**QA_ANSWERS, "reasoning": lambda _: "because"}))
    with model.context():
        prediction = program(chunk=PASSAGE)
    assert "[[ ## topic ## ]]\nlamps" in model.lm.history[-1]["messages"][-1]["content"]
    assert prediction.reasoning == "because"
    [sample] = prediction.samples  # first output -> last output; the middle one stays in the prediction only
    assert sample.input.startswith("what is ") and sample.output.startswith("it is ")


def test_evaluate_scores_a_new_pipeline_with_its_judge_and_offline_metric(workspace):
    scaffold(workspace, "qa", QA)
    (workspace / "signatures/qa.py").write_text(
        (workspace / "signatures/qa.py").read_text().replace("From the passage,", "Quiz the reader: from the passage,"))
    tasks = []  # the fake answers from the judge's first input: the task's instructions
    judge = fake(FakeEngine(by_field={"rating": lambda _: "4", "reasoning": lambda task: tasks.append(task) or "ok"}))
    result = evaluate_pipeline("qa", workspace / "data/qa/dev.jsonl", workspace=workspace,
                               model=fake(FakeEngine(by_field=QA_ANSWERS)), judge=judge)
    means = {name: summary["mean"] for name, summary in result["metrics"].items()}
    assert means == {"follows_instructions": 0.75, "distinct_output": 1.0, "composite": pytest.approx(2.5 / 3)}
    # The judge is told the instructions as edited.
    assert len(tasks) == DEV_ITEMS and all(task.startswith("Quiz the reader: from the passage,") for task in tasks)


@pytest.mark.parametrize("sample_input, passage_sent", [("What is lit?", True), (PASSAGE, False)])
def test_instructions_judge_sends_the_passage_once(sample_input, passage_sent):
    judge = fake(FakeEngine(by_field={"rating": lambda _: "5"}), "judge")
    score = InstructionsJudge(judge, "Ask about the passage.")(PASSAGE, Sample(sample_input, "The lamp."))
    prompt = judge.lm.history[-1]["messages"][-1]["content"]
    assert score.value == 1.0 and "[[ ## task ## ]]\nAsk about the passage." in prompt
    assert prompt.count(PASSAGE) == 1 and ("the same text as the sample's input" in prompt) != passage_sent


def test_distinct_output_fails_an_empty_output_or_a_copy(workspace):
    scaffold(workspace, "summary")
    metric = load_metric_suite("summary", workspace).DistinctOutput()
    assert metric(PASSAGE, Sample(PASSAGE, " ")).value == 0.0
    copy = metric(PASSAGE, Sample("the question", "the LAMP was lit  at dusk."))
    assert copy.value == 0.0 and "copy of the passage" in copy.feedback
    assert metric(PASSAGE, Sample(PASSAGE, "Dusk, lamp.")).value == 1.0


@pytest.mark.parametrize("existing", FILES[:4] + ["data/qa/dev.jsonl"])
def test_refuses_to_overwrite_any_target_and_writes_nothing(workspace, existing):
    target = workspace / existing
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("mine\n")
    before = tree(workspace)
    if existing.startswith("programs/"):  # programs/NAME.py is what makes it an existing pipeline
        with pytest.raises(DatagenError, match="pipeline 'qa' already exists"):
            scaffold(workspace, "qa", QA)
    else:
        with pytest.raises(DatagenError, match=f"{existing} already exists"):
            scaffold(workspace, "qa", QA)
    assert tree(workspace) == before and target.read_text() == "mine\n"


@pytest.mark.parametrize("name", ["2fast", "my-pipe", "class", "_hidden", "", "style_clone"])
def test_refuses_a_bad_or_taken_name(workspace, name):
    before = tree(workspace)
    with pytest.raises(DatagenError, match=f"pipeline (name )?{name!r}"):
        scaffold(workspace, name)
    assert tree(workspace) == before


@pytest.mark.parametrize("signature", ["passage", "-> output", "passage ->", "a -> b -> c", "a b -> c",
                                       "a -> a", "a, a -> b", "a -> samples", "a -> items", "self -> b",
                                       "a: str -> b", "_a -> b", "a -> class", "a, dspy -> b"])
def test_refuses_a_bad_signature(workspace, signature):
    before = tree(workspace)
    with pytest.raises(DatagenError, match=f"--signature {signature!r}"):
        scaffold(workspace, "fine", signature)
    assert tree(workspace) == before


def test_refuses_without_a_sample_corpus(workspace):
    for path in (workspace / "data/samples").iterdir():
        path.unlink()
    (workspace / "data/samples").rmdir()
    before = tree(workspace)
    with pytest.raises(DatagenError, match="no sample corpus"):
        scaffold(workspace, "fine")
    assert tree(workspace) == before


@pytest.mark.parametrize("args, fragment", [
    (["new", "my-pipe"], "'my-pipe'"),
    (["new", "qa", "--signature", "passage"], "--signature 'passage'"),
    (["new", "summary"], "metrics/summary.py already exists"),
])
def test_cli_refusals_are_one_line_errors(workspace, args, fragment):
    (workspace / "metrics/summary.py").write_text("")
    before = tree(workspace)
    result = run_cli(*args, cwd=workspace)
    assert_one_line_error(result, fragment)
    assert result.stdout == "" and tree(workspace) == before


def test_a_new_pipeline_declares_model_metrics_that_rank_the_reference_over_a_copy(workspace):
    scaffold(workspace, "qa", QA)
    scorer = AnswerScorer("qa", MetricContext(workspace, Config(), corpus=[]), ["composite"])
    reference = Sample("When is the lamp lit?", "The keeper lights the lamp at dusk, every evening.")
    best = scorer.score(PASSAGE, reference, reference.output)["composite"].value
    copy = scorer.score(PASSAGE, reference, reference.input)["composite"].value
    assert best > 0.9 and copy == 0.0  # the reference itself, and the question returned (the novelty gate)
