"""The factual QA pipeline: question-answer pairs from a corpus, validation that drops bad pairs, multi-turn
conversations through the store and every export format, and its metrics."""

import json
import re
import sqlite3

import datasets
import dspy
import pyarrow.parquet as pq
import pytest

from datagen.workspace.config import Config
from datagen.errors import DatagenError
from datagen.dataset import write_export
from datagen.dataset.screening import KEEP_ALL
from datagen.tuning import evaluate_pipeline
from datagen.dataset.export import write_export
from datagen.runs.generate import RunSettings, generate
from datagen.text.ingest import read_text
from datagen.lm.roles import RoleModel
from datagen.workspace.pipelines import load_program
from datagen.samples import Sample
from datagen.metrics.scoring import MetricContext, Scorer
from datagen.store import RunStore

from .conftest import every_record, run_cli, written
from .fakes import FakeEngine, FakeOpenAIServer, FromInputs, fake_lm
from .test_generate import fake_model, read_jsonl

CORPUS = "data/factual_qa/corpus"
DEV = "data/factual_qa/dev.jsonl"
TRIVIAL = "Is the sea wet?"
UNANSWERABLE = "Who painted the Mona Lisa?"
METRICS = {"answerable", "accuracy", "non_trivial", "grounded"}


# --- a fake model that writes questions about a passage's sentences and answers them with the sentence -------

def sentences(passage: str) -> list[str]:
    return [s for line in passage.splitlines() if line.strip() and not line.startswith("#")
            for s in re.split(r"(?<=[.!?])\s+", line.strip())]


def about(sentence: str) -> str:
    return f"What does the corpus say about {' '.join(sentence.split()[:5])}?"


def asks(passage: str) -> str:
    """Good questions, with a trivial one second and an unanswerable one fourth."""
    good = [about(s) for s in sentences(passage)]
    return json.dumps([good[0], TRIVIAL, good[1], UNANSWERABLE, *good[2:]])


def answers(inputs: dict) -> str:
    canned = {TRIVIAL: "Yes, it is.", UNANSWERABLE: "Leonardo da Vinci painted it."}
    if inputs["question"] in canned:
        return canned[inputs["question"]]
    return next(s for s in sentences(inputs["passage"]) if about(s) == inputs["question"])


def follows_up(inputs: dict) -> str:
    """The next sentence the conversation has not covered; a trivial question as the third turn."""
    if inputs["conversation"].count("User:") == 2:
        return TRIVIAL
    return next(about(s) for s in sentences(inputs["passage"]) if s not in inputs["conversation"])


QA_MODEL = {
    "questions": asks, "answer": FromInputs(answers), "question": FromInputs(follows_up),
    "reasoning": lambda _: "checked",
    "answerable": FromInputs(lambda i: str(i["answer"] in i["passage"] or i["question"] == TRIVIAL)),
    "accurate": lambda _: "true",
    "trivial": FromInputs(lambda i: str(i["question"] == TRIVIAL)),
}


def run(workspace, out, options=None, engine=None, **settings):
    return generate("factual_qa", [workspace / CORPUS], out, workspace=workspace, config=Config(),
                    model=fake_model(engine or FakeEngine(by_field=QA_MODEL)), options=options,
                    settings=RunSettings(max_tokens=300, **settings))


def stored_outputs(out) -> list[dict]:
    with sqlite3.connect(out / "run.db") as db:
        return [json.loads(outputs) for (outputs,) in db.execute("SELECT outputs FROM results ORDER BY rowid")]


# --- generate ------------------------------------------------------------------------------------------------

def test_generate_keeps_the_validated_pairs_as_sharegpt_and_records_the_dropped_ones(workspace, tmp_path):
    out = tmp_path / "run"
    engine = FakeEngine(by_field=QA_MODEL)
    report = run(workspace, out, {"questions": 4}, engine)
    assert report.chunks > 3 and not report.failures
    # Per chunk: one call for the questions, then an answer and a check for each of four.
    assert engine.calls == report.chunks * 9
    assert report.samples == written(report) == 2 * report.chunks
    for record, meta in zip(read_jsonl(report.data_path), read_jsonl(report.metadata_path), strict=True):
        human, gpt = record["conversations"]
        assert (human["from"], gpt["from"]) == ("human", "gpt")
        chunk = read_text(workspace / meta["source"])[meta["start"]:meta["end"]]
        assert gpt["value"] in sentences(chunk) and human["value"] == about(gpt["value"])
    outputs = stored_outputs(out)
    assert len(outputs) == report.chunks
    for stored in outputs:
        assert len(stored["questions"]) == 4 and stored["questions"][1::2] == [TRIVIAL, UNANSWERABLE]
        assert [(d["question"], d["reason"]) for d in stored["dropped"]] == [
            (TRIVIAL, "trivial"), (UNANSWERABLE, "unanswerable")]
        assert all(d["answer"] and d["reasoning"] == "checked" for d in stored["dropped"])
    assert report.dropped == {"trivial": report.chunks, "unanswerable": report.chunks}


def test_a_chunk_whose_pairs_were_all_dropped_is_done_not_failed(workspace, tmp_path):
    rejects = {**QA_MODEL, "accurate": lambda _: "false"}
    engine = FakeEngine(by_field=rejects)
    report = run(workspace, tmp_path / "run", {"questions": 2}, engine)
    assert not report.failures and report.samples == 0 and report.dropped["inaccurate"] > 0
    calls = engine.calls
    again = run(workspace, tmp_path / "run", {"questions": 2}, engine)  # nothing left to retry
    assert again.chunks == 0 and engine.calls == calls


def test_degenerate_questions_and_answers_are_dropped_by_reason_before_any_call_on_them(workspace, tmp_path):
    # Four questions a chunk: a placeholder, a copy of the chunk's first sentence, then two good ones, the first
    # answered with a dict, the second with its sentence of the passage (an answer may quote the chunk).
    def asked(passage):
        good = [about(s) for s in sentences(passage)]
        return json.dumps(["{question}", sentences(passage)[0], *good[:2]])

    def answered(inputs):
        answer = answers(inputs)
        return repr({"answer": answer}) if inputs["question"] == about(sentences(inputs["passage"])[0]) else answer

    engine = FakeEngine(by_field={**QA_MODEL, "questions": asked, "answer": FromInputs(answered)})
    report = run(workspace, tmp_path / "run", {"questions": 4}, engine)
    assert report.samples == report.chunks > 3 and not report.failures
    assert report.dropped == {"placeholder": report.chunks, "copy": report.chunks, "serialized": report.chunks}
    # Per chunk: the questions, two answers, and one check (the serialized answer is not checked).
    assert engine.calls == report.chunks * 4
    for stored in stored_outputs(tmp_path / "run"):
        assert [d["reason"] for d in stored["dropped"]] == ["placeholder", "copy", "serialized"]
        assert [d["answer"] for d in stored["dropped"][:2]] == ["", ""]


def test_a_run_refuses_to_resume_with_other_options(workspace, tmp_path):
    run(workspace, tmp_path / "run", {"questions": 2})
    with pytest.raises(DatagenError, match="different options"):
        run(workspace, tmp_path / "run", {"questions": 3})


def test_without_validation_every_pair_is_kept(workspace, tmp_path):
    engine = FakeEngine(by_field=QA_MODEL)
    report = run(workspace, tmp_path / "run", {"validate": False, "questions": 4}, engine)
    assert engine.calls == report.chunks * 5  # the questions, and four answers
    assert report.samples == 4 * report.chunks
    every = write_export(tmp_path / "run", "jsonl", screen=KEEP_ALL)
    asked = [r["input"] for r in every_record(every.path)]
    assert asked.count(TRIVIAL) == asked.count(UNANSWERABLE) == report.chunks
    assert all(stored["dropped"] == [] for stored in stored_outputs(tmp_path / "run"))
    # The dataset itself asks each of the fake's repeated questions once: the others are near-duplicates.
    exported = [r["conversations"][0]["value"] for r in every_record(report.data_path)]
    assert exported.count(TRIVIAL) == exported.count(UNANSWERABLE) == 1 < report.chunks
    assert report.left_out["near-duplicate"] >= 2 * (report.chunks - 1)


@pytest.mark.parametrize("options, message", [
    ({"questions": 0}, "questions must be a whole number of at least 1, got 0"),
    ({"turns": "two"}, "turns must be a whole number"),
    ({"validate": "yes"}, "validate must be true or false"),
])
def test_bad_options_are_refused(workspace, options, message):
    with pytest.raises(DatagenError, match=message):
        load_program("factual_qa", workspace, options)


# --- multi-turn ----------------------------------------------------------------------------------------------

@pytest.fixture
def multi_turn(workspace, tmp_path):
    """A run of three-turn conversations: each good question's conversation keeps two turns, and its third,
    a trivial follow-up, is dropped; conversations opened by a bad question keep nothing."""
    out = tmp_path / "run"
    report = run(workspace, out, {"turns": 3, "questions": 4}, limit=3)
    assert report.samples == 2 * report.chunks == 6
    return out


def test_a_conversation_ends_at_its_first_dropped_turn(multi_turn):
    with RunStore(multi_turn) as store:
        samples = [sample for _, chunk_samples in store.done() for sample in chunk_samples]
    for sample in samples:
        (first_question, first_answer), = sample.history  # two turns kept, round-tripped through the store
        assert first_question == about(first_answer) and sample.input == about(sample.output)
        assert sample.input != first_question
    for stored in stored_outputs(multi_turn):  # each good question's third turn; the bad questions' first
        reasons = [(d["question"], d["reason"]) for d in stored["dropped"]]
        assert reasons == [(TRIVIAL, "trivial"), (TRIVIAL, "trivial"), (TRIVIAL, "trivial"),
                           (UNANSWERABLE, "unanswerable")]


def test_multi_turn_samples_export_every_turn(multi_turn):
    with RunStore(multi_turn) as store:
        samples = [sample for _, chunk_samples in store.done() for sample in chunk_samples]
    turns = [[*sample.history[0], sample.input, sample.output] for sample in samples]

    sharegpt = [[t["value"] for t in r["conversations"]] for r in read_jsonl(write_export(multi_turn, "sharegpt").path)]
    assert sharegpt == turns == [[t["value"] for t in r["conversations"]]
                                 for r in every_record(multi_turn / "sharegpt.jsonl")]  # what generate wrote
    assert all([t["from"] for t in r["conversations"]] == ["human", "gpt"] * 2
               for r in every_record(multi_turn / "sharegpt.jsonl"))
    openai = read_jsonl(write_export(multi_turn, "openai").path)
    assert [[m["content"] for m in r["messages"]] for r in openai] == turns
    assert all([m["role"] for m in r["messages"]] == ["user", "assistant"] * 2 for r in openai)
    alpaca = read_jsonl(write_export(multi_turn, "alpaca").path)
    assert [[*r["history"][0], r["instruction"], r["output"]] for r in alpaca] == turns
    flat = read_jsonl(write_export(multi_turn, "jsonl").path)
    assert [[*r["history"][0], r["input"], r["output"]] for r in flat] == turns
    table = pq.read_table(write_export(multi_turn, "parquet").path).to_pylist()
    assert [[*r["history"][0], r["input"], r["output"]] for r in table] == turns
    hf = datasets.load_from_disk(str(write_export(multi_turn, "hf", val_fraction=0).path))
    assert [[m["content"] for m in row["messages"]] for row in hf["train"]] == turns


def test_the_store_writes_single_turn_samples_as_it_always_has(workspace, tmp_path, multi_turn):
    run(workspace, tmp_path / "single", limit=1)

    def rows(out):
        with sqlite3.connect(out / "run.db") as db:
            return [row for (samples,) in db.execute("SELECT samples FROM results") for row in json.loads(samples)]

    assert all(len(row) == 2 for row in rows(tmp_path / "single"))  # [input, output], readable by older code
    assert all(len(row) == 3 and len(row[2]) == 1 for row in rows(multi_turn))
    with RunStore(tmp_path / "single") as store:
        assert all(s.history == () for _, samples in store.done() for s in samples)


def test_generate_command_takes_the_pipeline_options(workspace):
    with FakeOpenAIServer(by_field=QA_MODEL) as server:
        result = run_cli("generate", "factual_qa", "-i", CORPUS, "-o", "out", "--max-tokens", "300", "--limit", "2",
                         "-O", "turns=2", "-O", "questions=4", "--model", "openai/fake", "--api-base", server.url,
                         cwd=workspace)
    assert result.returncode == 0, result.stderr
    records = every_record(workspace / "out/sharegpt.jsonl")
    assert len(records) == 4 and all(len(r["conversations"]) == 4 for r in records)


# --- metrics -------------------------------------------------------------------------------------------------

PASSAGE = ("The first Fresnel lens was installed in 1823 at the Cordouan lighthouse. Its rings of prisms bend the "
           "light of a single lamp into a narrow horizontal beam.")
GOOD = Sample("When and where was the first Fresnel lens installed?",
              "The first Fresnel lens was installed in 1823 at the Cordouan lighthouse.")
BAD = Sample("Is a lighthouse a lighthouse?", "Yes: Napoleon ordered every lighthouse painted red in 1950.")


def fake_judge(inputs: dict) -> str:
    """A discerning judge: accuracy is the answer found in the passage, answerability the question's words found
    there, substance an answer that is more than yes."""
    if "passage" not in inputs:
        return "1" if inputs["answer"].startswith("Yes") else "5"
    if "answer" in inputs:
        return "5" if inputs["answer"] in inputs["passage"] else "1"
    return "5" if "Fresnel" in inputs["question"] or "built" in inputs["question"] else "2"


def judge_model(engine: FakeEngine) -> RoleModel:
    return RoleModel("judge", fake_lm(engine), dspy.ChatAdapter(), None)


def scorer(workspace, engine: FakeEngine, names=None) -> Scorer:
    context = MetricContext(workspace, Config(), corpus=[PASSAGE])
    context.judge = judge_model(engine)
    return Scorer("factual_qa", context, names)


def test_metrics_score_a_good_pair_high_and_a_bad_one_low(workspace):
    engine = FakeEngine(by_field={"rating": FromInputs(fake_judge), "reasoning": lambda _: "judged"})
    metrics = scorer(workspace, engine)
    good, bad = metrics.score(PASSAGE, GOOD), metrics.score(PASSAGE, BAD)
    assert set(good) == METRICS | {"composite"}
    assert {name: score.value for name, score in good.items()} == dict.fromkeys(good, 1.0)
    assert {name: bad[name].value for name in ("answerable", "accuracy", "non_trivial")} == {
        "answerable": 0.25, "accuracy": 0.0, "non_trivial": 0.0}
    assert bad["grounded"].value < 0.5 and "napoleon" in bad["grounded"].feedback
    assert bad["composite"].value < 0.3 < 0.6 < good["composite"].value
    assert good["accuracy"].feedback == "judged"


def test_judges_see_the_conversation_before_a_follow_up(workspace):
    seen = []

    def rating(inputs):
        seen.append(inputs)
        return "5"

    engine = FakeEngine(by_field={"rating": FromInputs(rating), "reasoning": lambda _: "r"})
    follow_up = Sample("When was it built?", "It was completed in 1759.",
                       history=(("Who built the third Eddystone lighthouse?", "John Smeaton built it."),))
    scorer(workspace, engine, ["answerable", "accuracy"]).score("Smeaton completed it in 1759.", follow_up)
    assert [s["conversation"] for s in seen] == [
        "User: Who built the third Eddystone lighthouse?\nAssistant: John Smeaton built it."] * 2


def test_grounded_needs_no_judge_model(workspace):
    context = MetricContext(workspace, Config(), corpus=[])
    scores = Scorer("factual_qa", context, ["grounded"]).score(PASSAGE, GOOD)
    assert scores["grounded"].value == 1.0 and "judge" not in vars(context)
    empty = Scorer("factual_qa", context, ["grounded"]).score(PASSAGE, Sample("Why?", "..."))
    assert empty["grounded"].value == 0.0


def test_evaluate_runs_the_pipeline_on_the_dev_set_with_its_metrics(workspace):
    judge = FakeEngine(by_field={"rating": lambda _: "4", "reasoning": lambda _: "fine"})
    result = evaluate_pipeline("factual_qa", workspace / DEV, workspace=workspace, config=Config(), split="val",
                               model=fake_model(FakeEngine(by_field=QA_MODEL)), judge=judge_model(judge))
    val = [item for item in read_jsonl(workspace / DEV) if item["split"] == "val"]
    assert len(result["samples"]) == 2 * len(val) and not result["failures"]
    assert set(result["metrics"]) == METRICS | {"composite"}
    assert result["metrics"]["accuracy"]["mean"] == 0.75
    assert result["metrics"]["grounded"]["mean"] == 1.0  # every answer is a sentence of its passage
    assert result["metrics"]["composite"]["n"] == len(val)  # every dev item counts, each the mean of its samples
