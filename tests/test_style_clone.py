"""The style-clone pipeline: its boundary repair step, and its drop of a degenerate rephrase."""

import json
import sqlite3

import pytest

from datagen.workspace.config import Config
from datagen.errors import DatagenError
from datagen.runs.generate import RunSettings, generate

from .fakes import FakeEngine, plain
from .test_generate import fake_model

OPENING = "It was the winter the Black Tooth took the brig, and I mean to tell it true."
CLOSING = "And that, mark you, is how the Lamp was kept."


def run(workspace, out, engine, options=None):
    report = generate("style_clone", [workspace / "data/samples"], out, workspace=workspace, config=Config(),
                      model=fake_model(engine), options=options, settings=RunSettings(max_tokens=300))
    return report, [json.loads(line)["conversations"] for line in report.data_path.read_text().splitlines()]


def originals(workspace, tmp_path):
    _, records = run(workspace, tmp_path / "plain", FakeEngine())
    return [gpt["value"] for _, gpt in records]


def test_repair_frames_the_verbatim_chunk_with_an_opening_and_a_closing(workspace, tmp_path):
    chunks = originals(workspace, tmp_path)
    engine = FakeEngine(by_field={"opening": lambda _: OPENING, "closing": lambda _: CLOSING})
    report, records = run(workspace, tmp_path / "repaired", engine, {"repair_boundaries": True})
    assert engine.calls == 2 * len(chunks) == 2 * report.samples
    for chunk, (human, gpt) in zip(chunks, records):
        assert gpt["value"] == f"{OPENING} {chunk} {CLOSING}"
        assert human["value"] == plain(gpt["value"])  # the generic side is made from the repaired passage


@pytest.mark.parametrize("bad", [
    pytest.param(lambda passage: passage, id="rewrites the whole passage"),
    pytest.param(lambda passage: passage.split(". ")[0].strip(), id="copies the passage's first sentence"),
    pytest.param(lambda passage: "One. Two. Three. Four.", id="more than a sentence or two"),
    pytest.param(lambda passage: "None", id="a word for 'leave it empty'"),
    pytest.param(lambda passage: "{opening}", id="a placeholder"),
    pytest.param(lambda passage: "{'opening': 'It was a dark and stormy night.'}", id="a dict"),
    pytest.param(lambda passage: "xkcd qwrt zxvb plmk jhgf dsnm trvw", id="gibberish"),
])
def test_unusable_boundaries_fall_back_to_the_unrepaired_chunk(workspace, tmp_path, bad):
    chunks = originals(workspace, tmp_path)
    engine = FakeEngine(by_field={"opening": bad, "closing": lambda _: ""})
    _, records = run(workspace, tmp_path / "repaired", engine, {"repair_boundaries": True})
    assert [gpt["value"] for _, gpt in records] == chunks


def test_repair_changes_the_program_so_an_old_run_is_not_mixed(workspace, tmp_path):
    run(workspace, tmp_path / "run", FakeEngine())
    with pytest.raises(DatagenError, match="different program"):
        run(workspace, tmp_path / "run", FakeEngine(), {"repair_boundaries": True})


def test_unknown_pipeline_option_is_refused(workspace, tmp_path):
    with pytest.raises(DatagenError, match="no option 'repair' .*repair_boundaries"):
        run(workspace, tmp_path / "run", FakeEngine(), {"repair": True})


# What a model may answer for `generic` that is no rephrase, and the reason the chunk is dropped for.
DEGENERATE = {
    "a placeholder": (lambda passage: "{generic}", "placeholder"),
    "the passage itself": (lambda passage: passage, "copy"),
    "its first half": (lambda passage: passage[:len(passage) // 2], "copy"),
    "half of a rephrase": (lambda passage: plain(passage)[:len(passage) // 3], "too_short"),
    "a dict's repr": (lambda passage: repr({"introduction": [plain(passage)]}), "serialized"),
    "gibberish": (lambda passage: "passage_text1234567890.csv", "not_language"),
    "nothing but a full stop": (lambda passage: ".", "empty"),
}


@pytest.mark.parametrize("respond, reason", DEGENERATE.values(), ids=DEGENERATE.keys())
def test_a_degenerate_rephrase_makes_no_sample_and_is_counted_by_reason(workspace, tmp_path, respond, reason):
    report, records = run(workspace, tmp_path / "run", FakeEngine(by_field={"generic": respond}))
    assert report.chunks > 3 and not report.failures
    assert records == [] and report.samples == 0 and report.dropped == {reason: report.chunks}
    with sqlite3.connect(tmp_path / "run" / "run.db") as db:
        outputs = [json.loads(row) for (row,) in db.execute("SELECT outputs FROM results")]
    assert len(outputs) == report.chunks
    assert all(o["dropped"] == [{"reason": reason, "generic": o["generic"]}] for o in outputs)
    again = run(workspace, tmp_path / "run", FakeEngine())[0]  # a dropped chunk is done: nothing to resume
    assert again.chunks == 0

