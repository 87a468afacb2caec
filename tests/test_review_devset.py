"""`datagen devset --from-review`: a reviewed run becomes a labeled dev set, whose human demos `optimize` puts first."""

import json
import logging
import sqlite3
from dataclasses import dataclass

import dspy
import pytest

import datagen
from datagen.dataset import DevItem, read_devset, reviewed_devset
from datagen.dataset.devset import assign_splits, review_demos, split_of
from datagen.errors import DatagenError
from datagen.runs import RunSettings
from datagen.runs.generate import generate
from datagen.samples import Sample
from datagen.store import Review, RunStore, Step
from datagen.text import Chunk
from datagen.tuning import evaluate_pipeline, labeled_demos, optimize_pipeline
from datagen.workspace import Config, load_compiled, load_program, read_manifest

from .conftest import run_cli
from .fakes import FakeEngine, plain
from .test_export import make_run
from .test_generate import fake_model, read_jsonl
from .test_optimize import CONFIG

REVIEWED = "data/style_clone/reviewed.jsonl"
CORRECTED_INPUT = "A person's own plain rewrite of the opening passage, written in the review app."
CORRECTED_OUTPUT = "The keeper's passage as the reviewer trimmed it, the stray heading left out."


@dataclass
class Reviewed:
    """A style_clone run (one sample per chunk) reviewed by a person, and what the review should give."""

    run: object
    approved: list  # the chunks whose sample was approved, in chunk order
    corrected_input: object  # the first approved train chunk: its sample's input corrected (no verdict)
    corrected_output: object  # the second: rated good, its output corrected
    no_steps: object  # an approved chunk whose steps were never logged (an older run's)
    left_out: list  # rejected, unreviewed, commented only


@pytest.fixture
def reviewed(workspace, tmp_path) -> Reviewed:
    run = tmp_path / "run"
    report = make_run(workspace, run)
    assert report.chunks == report.samples > 12
    with RunStore(run) as store:
        chunks = [chunk for chunk, samples in store.done()]
        assert all(len(samples) == 1 for _, samples in store.done())
        left_out, approved = chunks[-3:], chunks[:-3]
        store.set_review(Review(left_out[0].id, 0, "bad", comment="too close to the original"))
        store.set_review(Review(left_out[1].id, 0, comment="not sure yet"))  # no verdict, no correction
        # left_out[2]: not reviewed at all
        train = [chunk for chunk in approved if split_of(chunk.id, 0.25) == "train"]
        first, second = train[:2]
        for chunk in approved:
            if chunk.id == first.id:
                store.set_review(Review(chunk.id, 0, input=CORRECTED_INPUT))
            elif chunk.id == second.id:
                store.set_review(Review(chunk.id, 0, "good", {"style": 5}, output=CORRECTED_OUTPUT))
            else:
                store.set_review(Review(chunk.id, 0, "good"))
    no_steps = approved[-1]
    with sqlite3.connect(run / "run.db") as db:
        db.execute("DELETE FROM steps WHERE chunk_id = ?", (no_steps.id,))
        # A judge's step, as a run gated by a judge metric logs it: never a demo.
        db.execute("INSERT INTO steps (chunk_id, seq, step, inputs, outputs) VALUES (?, 99, 'judge:style', ?, ?)",
                   (first.id, json.dumps({"candidate": first.text}), json.dumps({"verdict": "yes"})))
        # A predictor a metric holds out of the judges' reach, logged by its signature's name: not the program's.
        db.execute("INSERT INTO steps (chunk_id, seq, step, inputs, outputs) VALUES (?, 98, 'StyleVerdict', ?, ?)",
                   (first.id, json.dumps({"passage": first.text}), json.dumps({"verdict": "yes"})))
    return Reviewed(run, approved, first, second, no_steps, left_out)


def from_review(workspace, run, *args):
    result = run_cli("devset", "style_clone", "--from-review", str(run), *args, cwd=workspace)
    assert result.returncode == 0, result.stderr
    return result


def test_devset_from_review_keeps_the_wholly_approved_chunks_with_their_corrections(workspace, reviewed):
    result = from_review(workspace, reviewed.run)
    records = read_jsonl(workspace / REVIEWED)  # not dev.jsonl: the unlabeled dev set stays as it was
    assert [r["chunk"] for r in records] == [chunk.text for chunk in reviewed.approved]
    assert all(set(r) == {"chunk", "source", "start", "end", "split", "samples", "demos"} for r in records)
    by_text = {r["chunk"]: r for r in records}
    for chunk, split in zip(reviewed.approved, assign_splits(reviewed.approved, 0.25)):
        record = by_text[chunk.text]
        assert (record["source"], record["start"], record["end"]) == (chunk.source, chunk.start, chunk.end)
        assert record["split"] == split

    first = by_text[reviewed.corrected_input.text]
    text = reviewed.corrected_input.text
    assert first["samples"] == [{"input": CORRECTED_INPUT, "output": text}]
    assert first["demos"] == {"rephrase": {"passage": text, "generic": CORRECTED_INPUT}}  # no judge's step
    assert "steps of StyleVerdict are not predictors of the program" in result.stderr

    second = by_text[reviewed.corrected_output.text]
    text = reviewed.corrected_output.text
    assert second["samples"] == [{"input": plain(text), "output": CORRECTED_OUTPUT}]
    # The step's input was the sample's output: the demo shows the pair the person approved.
    assert second["demos"] == {"rephrase": {"passage": CORRECTED_OUTPUT, "generic": plain(text)}}

    assert by_text[reviewed.no_steps.text]["demos"] == {}
    plain_one = next(r for r in records if r["chunk"] not in (reviewed.corrected_input.text,
                                                               reviewed.corrected_output.text,
                                                               reviewed.no_steps.text))
    assert plain_one["demos"] == {"rephrase": {"passage": plain_one["chunk"], "generic": plain(plain_one["chunk"])}}
    assert plain_one["samples"] == [{"input": plain(plain_one["chunk"]), "output": plain_one["chunk"]}]

    val = sum(r["split"] == "val" for r in records)
    assert 0 < val < len(records)
    assert (f"{len(records)} dev items ({len(records) - val} train, {val} val)" in result.stderr
            and "2 sample(s) corrected" in result.stderr and "3 chunk(s) left out" in result.stderr
            and "1 item(s) without demos" in result.stderr)
    assert not (workspace / "data/style_clone/dev.jsonl").read_text().count('"samples"')


def test_a_reviewed_dev_set_reads_back_and_evaluates(workspace, reviewed):
    from_review(workspace, reviewed.run, "--out", "labeled.jsonl", "--val-fraction", "0.5")
    items = read_devset(workspace / "labeled.jsonl")
    assert len(items) == len(reviewed.approved)
    assert all(set(item.references) == {"samples", "demos"} for item in items)
    assert [item.split for item in items] == assign_splits(reviewed.approved, 0.5)
    assert {item.split for item in items} == {"train", "val"}
    result = evaluate_pipeline("style_clone", workspace / "labeled.jsonl", workspace=workspace, config=CONFIG,
                               model=fake_model(), split="val", metrics=["generic_offline"])
    assert result["metrics"]["generic_offline"]["n"] == sum(item.split == "val" for item in items)
    assert not result["failures"]


def test_optimize_puts_the_human_demos_first_and_records_them(workspace, reviewed):
    from_review(workspace, reviewed.run)
    dev = workspace / REVIEWED
    result = optimize_pipeline("style_clone", dev, "bootstrap", workspace=workspace, config=CONFIG,
                               model=fake_model(FakeEngine()))
    assert result.stopped is None and result.after is not None
    saved = json.loads(result.state.read_text())["rephrase"]["demos"]
    # Train items in chunk order: the corrected ones are the first two, then the next approved train chunk;
    # labeled demos as DSPy keeps them (the signature's fields, no "augmented" mark), capped at MAX_DEMOS.
    third = next(c for c in reviewed.approved[:-1] if split_of(c.id, 0.25) == "train"
                 and c.id not in (reviewed.corrected_input.id, reviewed.corrected_output.id))
    assert saved == [{"passage": reviewed.corrected_input.text, "generic": CORRECTED_INPUT},
                     {"passage": CORRECTED_OUTPUT, "generic": plain(reviewed.corrected_output.text)},
                     {"passage": third.text, "generic": plain(third.text)}]
    val = {item.chunk.text for item in read_devset(dev, "val")}
    assert not any(demo["passage"] in val for demo in saved)  # held-out items never teach
    manifest = read_manifest(result.state)
    assert manifest["labeled_demos"] == {"rephrase": 3}
    assert manifest["dev"]["train"] + manifest["dev"]["val"] == len(reviewed.approved)

    # What DSPy sends with every chunk from now on carries the person's text.
    program = load_compiled("style_clone", result.state, workspace)
    messages = dspy.ChatAdapter().format(program.rephrase.signature, program.rephrase.demos,
                                         {"passage": "A new passage."})
    sent = "\n".join(m["content"] for m in messages)
    assert CORRECTED_INPUT in sent and CORRECTED_OUTPUT in sent


def test_the_optimizers_own_demos_follow_the_human_ones(workspace, reviewed):
    from_review(workspace, reviewed.run)
    dev = workspace / REVIEWED
    records = read_jsonl(dev)
    # Only the first train item keeps its demos: two places are left to what bootstrapping finds.
    kept = next(r for r in records if r["split"] == "train")
    for record in records:
        if record is not kept:
            record["demos"] = {}
    dev.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    result = optimize_pipeline("style_clone", dev, "bootstrap", workspace=workspace, config=CONFIG,
                               model=fake_model(FakeEngine()))
    saved = json.loads(result.state.read_text())["rephrase"]["demos"]
    assert saved[0] == {"passage": kept["chunk"], "generic": CORRECTED_INPUT}
    assert len(saved) == 3 and all(demo.get("augmented") for demo in saved[1:])
    assert read_manifest(result.state)["labeled_demos"] == {"rephrase": 1}


def test_the_python_api_uses_the_human_demos_too(workspace, reviewed):
    from_review(workspace, reviewed.run)
    program = load_program("style_clone", workspace)
    result = datagen.optimize(program, workspace / REVIEWED, lambda example, prediction, trace=None: 1.0,
                              model=fake_model(FakeEngine()), workspace=workspace, config=CONFIG)
    assert result.program.rephrase.demos[0] == dspy.Example(passage=reviewed.corrected_input.text,
                                                            generic=CORRECTED_INPUT)
    assert not program.rephrase.demos  # the program given is left as it was


def test_demos_for_a_predictor_the_program_lacks_are_refused(workspace, reviewed):
    from_review(workspace, reviewed.run)
    records = read_jsonl(workspace / REVIEWED)
    records[0]["demos"]["add_boundaries"] = {"passage": "x", "opening": "y", "closing": ""}
    (workspace / "bad.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    result = run_cli("optimize", "style_clone", "--dev", "bad.jsonl", "--yes", cwd=workspace)
    assert result.returncode == 1
    assert "predictor 'add_boundaries'" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    # With the option that adds the predictor, the same demos are the program's.
    program = load_program("style_clone", workspace, {"repair_boundaries": True})
    items = read_devset(workspace / "bad.jsonl")
    assert labeled_demos(items, program)["add_boundaries"] == [dspy.Example(passage="x", opening="y", closing="")]


def test_only_a_predictors_fields_make_its_demo(workspace):
    program = load_program("style_clone", workspace)
    items = [DevItem(Chunk("id", "s", 0, 1, "x", 1), "train",
                     {"demos": {"rephrase": {"passage": "p", "generic": "g", "notes": "n"}}}),
             DevItem(Chunk("id2", "s", 0, 1, "y", 1), "train", {"demos": {"rephrase": {"passage": "only an input"}}})]
    assert labeled_demos(items, program) == {"rephrase": [dspy.Example(passage="p", generic="g")]}


def test_a_labeled_demo_lacking_an_output_is_left_out_with_a_warning(workspace, caplog):
    """DSPy would show it with the output "not supplied", and a compiled program holding it is refused."""
    program = load_program("style_clone", workspace, {"repair_boundaries": True})
    items = [DevItem(Chunk("id", "notes.md", 0, 1, "x", 1), "train",
                     {"demos": {"add_boundaries": {"passage": "x", "opening": "It began."}}}),
             DevItem(Chunk("id2", "s", 0, 1, "y", 1), "train",
                     {"demos": {"add_boundaries": {"passage": "y", "opening": "", "closing": ""}}})]
    with caplog.at_level(logging.WARNING, "datagen"):
        kept = labeled_demos(items, program)
    assert kept == {"add_boundaries": [dspy.Example(passage="y", opening="", closing="")]}
    assert "1 labeled demo(s) of predictor 'add_boundaries' left out" in caplog.text
    assert "from notes.md: no output field 'closing'" in caplog.text


def test_each_predictor_gives_the_call_that_made_an_approved_sample():
    """factual_qa's shape: one `ask`, then an `answer` and a `check` per question; one pair dropped."""
    passage = "The keeper counted 41 gulls."
    steps = [
        Step("ask", {"passage": passage, "count": 2}, {"questions": ["How many gulls?", "Who counted?"]}),
        Step("answer", {"passage": passage, "question": "How many gulls?"}, {"answer": " 41 gulls. "}),
        Step("check", {"passage": passage, "question": "How many gulls?", "answer": "41 gulls."},
             {"answerable": True, "accurate": True, "trivial": False}),
        Step("answer", {"passage": passage, "question": "Who counted?"}, {"answer": "A fisherman."}),
        Step("check", {"passage": passage, "question": "Who counted?", "answer": "A fisherman."},
             {"answerable": True, "accurate": False, "trivial": False}),
        Step("judge:standalone", {"question": "How many gulls?"}, {"verdict": True}),
        Step("answer", {"passage": passage, "question": "Retried?"}, None, error="timeout"),
    ]
    samples = [Sample("How many gulls?", "41 gulls.")]
    reviews = [Review("c", 0, "good", input="How many gulls did the keeper count?", output="Forty-one.")]
    demos = review_demos(steps, samples, reviews)
    assert demos == {
        "ask": {"passage": passage, "count": 2,
                "questions": ["How many gulls did the keeper count?", "Who counted?"]},
        "answer": {"passage": passage, "question": "How many gulls did the keeper count?", "answer": "Forty-one."},
        "check": {"passage": passage, "question": "How many gulls did the keeper count?", "answer": "Forty-one.",
                  "answerable": True, "accurate": True, "trivial": False},
    }
    assert review_demos(steps, samples, [Review("c", 0, "good")])["answer"]["answer"] == " 41 gulls. "


def test_a_run_made_with_options_gives_demos_of_the_predictors_they_add(workspace, tmp_path):
    run = tmp_path / "run"
    options = {"repair_boundaries": True}
    generate("style_clone", [workspace / "data/samples"], run, workspace=workspace, config=Config(),
             model=fake_model(FakeEngine()), options=options, settings=RunSettings(max_tokens=200))
    with RunStore(run) as store:
        for chunk, samples in store.done():
            store.set_review(Review(chunk.id, 0, "good"))
    from_review(workspace, run)
    records = read_jsonl(workspace / REVIEWED)
    assert all(set(r["demos"]) == {"add_boundaries", "rephrase"} for r in records)
    assert set(records[0]["demos"]["add_boundaries"]) == {"passage", "opening", "closing"}
    refused = run_cli("optimize", "style_clone", "--dev", REVIEWED, "--yes", cwd=workspace)
    assert refused.returncode == 1 and "predictor 'add_boundaries'" in refused.stderr
    result = optimize_pipeline("style_clone", workspace / REVIEWED, "bootstrap", workspace=workspace,
                               config=CONFIG, options=options, model=fake_model(FakeEngine()))
    assert read_manifest(result.state)["labeled_demos"] == {"add_boundaries": 3, "rephrase": 3}


@pytest.mark.parametrize("args, message", [
    (["--input", "data/samples"], "give one of them, not both"),
    (["--n", "5"], "--n, --seed and --max-tokens draw chunks from --input"),
    (["--val-fraction", "1"], "--val-fraction must be between 0 and 1"),
])
def test_bad_from_review_arguments_get_a_one_line_error(workspace, reviewed, args, message):
    result = run_cli("devset", "style_clone", "--from-review", str(reviewed.run), *args, cwd=workspace)
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (workspace / REVIEWED).exists()


def test_devset_needs_input_or_a_reviewed_run(workspace):
    result = run_cli("devset", "style_clone", cwd=workspace)
    assert result.returncode == 1 and "give --input PATH" in result.stderr and "--from-review RUN" in result.stderr


def test_a_run_of_another_pipeline_is_refused(workspace, reviewed):
    result = run_cli("devset", "factual_qa", "--from-review", str(reviewed.run), cwd=workspace)
    assert result.returncode == 1
    assert "a run of pipeline 'style_clone', not 'factual_qa'" in result.stderr
    assert not (workspace / "data/factual_qa/reviewed.jsonl").exists()


def test_a_run_without_a_wholly_approved_chunk_is_refused(workspace, tmp_path):
    run = tmp_path / "run"
    make_run(workspace, run)
    with RunStore(run) as store:
        chunk = next(chunk for chunk, _ in store.done())
        store.set_review(Review(chunk.id, 0, "bad"))
    result = run_cli("devset", "style_clone", "--from-review", str(run), cwd=workspace)
    assert result.returncode == 1 and "no chunk has all its samples approved" in result.stderr
    with pytest.raises(DatagenError, match="not a datagen run folder"):
        reviewed_devset(tmp_path / "nowhere")
