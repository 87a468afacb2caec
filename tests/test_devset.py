"""`datagen devset`: dev sets sampled across a corpus's files, split by chunk id, written atomically."""

import json
from collections import Counter
from pathlib import Path

import pytest

from datagen.text.chunking import chunk_id
from datagen.dataset.devset import read_devset, sample_devset, split_fraction, split_of, write_devset
from datagen.errors import DatagenError
from datagen.text.ingest import read_text
from tests.conftest import run_cli

BUDGET = 32  # small enough that every paragraph below is a chunk of its own


def _paragraph(name: str, number: int) -> str:
    return f"Paragraph {number} of {name}: the keeper counted {number} gulls on the rock that stormy night."


@pytest.fixture
def corpus(tmp_path) -> Path:
    """Three files of 3, 6 and 12 paragraphs: taking the first chunks would leave the last file out."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, count in (("a_small", 3), ("b_medium", 6), ("c_large", 12)):
        text = "\n\n".join(_paragraph(name, i) for i in range(count)) + "\n"
        (folder / f"{name}.md").write_text(text, encoding="utf-8")
    return folder


def _chunks_per_file(corpus: Path) -> dict[str, int]:
    everything = sample_devset([corpus], 10_000, max_tokens=BUDGET)
    return Counter(Path(r["source"]).stem for r in everything)


def test_corpus_fixture_is_one_chunk_per_paragraph(corpus):
    assert _chunks_per_file(corpus) == {"a_small": 3, "b_medium": 6, "c_large": 12}


def test_chunks_are_spread_across_files(corpus):
    for seed in range(5):
        records = sample_devset([corpus], 9, max_tokens=BUDGET, seed=seed)
        assert len(records) == 9
        per_file = Counter(Path(r["source"]).stem for r in records)
        assert set(per_file) == {"a_small", "b_medium", "c_large"}
        assert min(per_file.values()) >= 2, per_file


def test_the_file_going_first_depends_on_the_seed(corpus):
    firsts = {Path(sample_devset([corpus], 1, max_tokens=BUDGET, seed=seed)[0]["source"]).stem
              for seed in range(12)}
    assert firsts == {"a_small", "b_medium", "c_large"}


def test_records_are_in_corpus_order_and_inputs_only(corpus):
    records = sample_devset([corpus], 9, max_tokens=BUDGET, seed=3)
    assert all(set(r) == {"chunk", "source", "start", "end", "split"} for r in records)
    order = [(r["source"], r["start"]) for r in records]
    assert order == sorted(order)
    assert len(set(order)) == len(order)


def test_same_seed_same_bytes_other_seed_other_selection(corpus, tmp_path):
    first = write_devset(sample_devset([corpus], 9, max_tokens=BUDGET, seed=7), tmp_path / "one.jsonl")
    second = write_devset(sample_devset([corpus], 9, max_tokens=BUDGET, seed=7), tmp_path / "two.jsonl")
    assert first.read_bytes() == second.read_bytes()
    chosen = {seed: {(r["source"], r["start"]) for r in sample_devset([corpus], 9, max_tokens=BUDGET, seed=seed)}
              for seed in (7, 8)}
    assert chosen[7] != chosen[8]


def test_splits_follow_the_hash_rule(corpus):
    records = sample_devset([corpus], 21, max_tokens=BUDGET, val_fraction=0.5)
    splits = [r["split"] for r in records]
    assert set(splits) == {"train", "val"}
    assert splits == [split_of(chunk_id(r["chunk"]), 0.5) for r in records]
    # The rule itself: below the fraction is val.
    for r in records:
        assert (split_fraction(chunk_id(r["chunk"])) < 0.5) == (r["split"] == "val")


@pytest.mark.parametrize("val_fraction, forced", [(1e-9, "val"), (1 - 1e-9, "train")])
def test_both_splits_are_guaranteed(corpus, val_fraction, forced):
    records = sample_devset([corpus], 5, max_tokens=BUDGET, val_fraction=val_fraction)
    ids = [chunk_id(r["chunk"]) for r in records]
    by_rule = [split_of(i, val_fraction) for i in ids]
    assert forced not in by_rule  # the rule alone would give one split only
    moved = [i for i, r in zip(ids, records) if r["split"] == forced]
    assert len(moved) == 1  # exactly one item moved, the one nearest the boundary
    nearest = min(ids, key=split_fraction) if forced == "val" else max(ids, key=split_fraction)
    assert moved == [nearest]
    # ...and deterministically so.
    assert records == sample_devset([corpus], 5, max_tokens=BUDGET, val_fraction=val_fraction)


def test_a_single_item_keeps_its_rule_split(corpus):
    [record] = sample_devset([corpus], 1, max_tokens=BUDGET, val_fraction=1e-9)
    assert record["split"] == "train"


def test_n_larger_than_the_corpus_takes_everything(corpus, caplog):
    records = sample_devset([corpus], 100, max_tokens=BUDGET)
    assert len(records) == 21
    assert "only 21 chunk(s)" in caplog.text
    assert {r["split"] for r in records} == {"train", "val"}


def test_records_round_trip_through_read_devset(corpus, tmp_path):
    records = sample_devset([corpus], 9, max_tokens=BUDGET, seed=1)
    path = write_devset(records, tmp_path / "nested" / "deeper" / "dev.jsonl")
    items = read_devset(path)
    assert len(items) == 9
    for record, item in zip(records, items):
        original = read_text(Path(item.chunk.source))
        assert item.chunk.text == original[item.chunk.start:item.chunk.end] == record["chunk"]
        assert item.split == record["split"]
        assert item.references == {}
    assert [i.chunk.text for i in read_devset(path, "val")] == [r["chunk"] for r in records if r["split"] == "val"]


def test_labeled_lines_keep_their_references(tmp_path):
    labeled = {"chunk": "The sea was grey.", "source": "a.md", "start": 0, "end": 17, "split": "val",
               "rewrite": "The sea, I'll own, was as grey as a parson's coat.", "score": 0.9}
    path = write_devset([labeled], tmp_path / "labeled.jsonl")
    [item] = read_devset(path)
    assert item.references == {"rewrite": labeled["rewrite"], "score": 0.9}
    assert item.chunk.text == "The sea was grey." and item.split == "val"
    assert json.loads(path.read_text(encoding="utf-8")) == labeled


def test_write_devset_replaces_atomically_and_refuses_folders(tmp_path):
    target = tmp_path / "dev.jsonl"
    target.write_text("old\n", encoding="utf-8")
    write_devset([{"chunk": "new text"}], target)
    assert target.read_text(encoding="utf-8") == '{"chunk": "new text"}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["dev.jsonl"]  # no temporary file left behind
    with pytest.raises(DatagenError, match="is a folder"):
        write_devset([{"chunk": "x"}], tmp_path)
    with pytest.raises(DatagenError, match="no dev items"):
        write_devset([], tmp_path / "empty.jsonl")


@pytest.mark.parametrize("kwargs, message", [({"n": 0}, "--n must be at least 1"),
                                             ({"n": 3, "val_fraction": 0.0}, "--val-fraction"),
                                             ({"n": 3, "val_fraction": 1.0}, "--val-fraction")])
def test_bad_arguments_are_refused(corpus, kwargs, message):
    with pytest.raises(DatagenError, match=message):
        sample_devset([corpus], max_tokens=BUDGET, **kwargs)


def test_cli_writes_the_default_dev_set(workspace):
    dev = workspace / "data" / "style_clone" / "dev.jsonl"
    shipped = dev.read_bytes()
    result = run_cli("devset", "style_clone", "--input", "data/samples", "--n", "6", cwd=workspace)
    assert result.returncode == 0, result.stderr
    assert dev.read_bytes() != shipped
    items = read_devset(dev)
    assert len(items) == 6
    assert {item.split for item in items} == {"train", "val"}
    original = read_text(workspace / "data" / "samples" / "lighthouse_keeper.md")
    assert all(original[i.chunk.start:i.chunk.end] == i.chunk.text for i in items)
    val = sum(item.split == "val" for item in items)
    assert result.stderr.strip() == (f"6 dev items ({6 - val} train, {val} val) from 1 file → "
                                     "data/style_clone/dev.jsonl")
    again = run_cli("devset", "style_clone", "--input", "data/samples", "--n", "6", "--out", "copy.jsonl",
                    cwd=workspace)
    assert again.returncode == 0, again.stderr
    assert (workspace / "copy.jsonl").read_bytes() == dev.read_bytes()


@pytest.mark.parametrize("args, message", [
    (["nope", "--input", "data/samples"], "unknown pipeline 'nope'"),
    (["style_clone", "--input", "data/samples", "--n", "0"], "--n must be at least 1"),
    (["style_clone", "--input", "data/samples", "--out", "data"], "is a folder"),
    (["style_clone", "--input", "data/missing"], "no such file or folder"),
])
def test_cli_errors_are_one_line(workspace, args, message):
    result = run_cli("devset", *args, cwd=workspace)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr
