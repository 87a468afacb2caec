"""The style-clone pipeline's boundary repair step."""

import json

import pytest

from datagen.config import Config
from datagen.errors import DatagenError
from datagen.generate import RunSettings, generate

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
