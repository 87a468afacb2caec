"""Files written whole or not at all (every export, card, report, compiled program and dev set is written so)."""

import pytest

from datagen.util.files import replacing


def test_a_write_that_fails_leaves_the_old_file_and_no_leftover(tmp_path):
    target = tmp_path / "data.jsonl"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), replacing(target) as temp:
        temp.write_text("half of the new")
        raise RuntimeError("disk full")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.jsonl"]


def test_two_writers_of_one_target_never_mix(tmp_path):
    target = tmp_path / "sharegpt.jsonl"
    with replacing(target) as first, replacing(target) as second:
        assert first != second and first.suffix == second.suffix == ".jsonl"  # DSPy's save reads the suffix
        first.write_text("first\n" * 3)
        second.write_text("second\n")
    # The inner block ends first, so the outer one's file is the last to take the target's place.
    assert target.read_text() == "first\n" * 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sharegpt.jsonl"]


def test_a_folder_takes_the_place_of_the_previous_one(tmp_path):
    target = tmp_path / "hf"
    (target / "train").mkdir(parents=True)
    (target / "train" / "old.arrow").write_text("old")
    with replacing(target) as temp:
        (temp / "train").mkdir(parents=True)
        (temp / "train" / "new.arrow").write_text("new")
    assert [p.name for p in (target / "train").iterdir()] == ["new.arrow"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]
