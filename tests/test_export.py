"""Dataset exports: every format against the run store, the HF dataset round-trip, the card, the command."""

import re

import datasets
import pyarrow.parquet as pq
import pytest

from datagen.workspace.config import Config
from datagen.errors import DatagenError
from datagen.dataset.export import CARD_FILE, FORMATS, sample_id, split_path, split_samples, write_export
from datagen.dataset.splits import validation_group
from datagen.runs import RunSettings
from datagen.runs.generate import generate
from datagen.store import RunStore

from .conftest import run_cli
from .fakes import FakeEngine, Unparseable, plain
from .test_generate import fake_model, read_jsonl

SYSTEM = "You write like a lighthouse keeper."


def garbled_for_etienne(text):
    if "Étienne" in text:
        raise Unparseable
    return plain(text)


def make_run(workspace, out, respond=plain, pipeline="style_clone", inputs=None, **settings):
    return generate(pipeline, inputs or [workspace / "data/samples"], out, workspace=workspace, config=Config(),
                    model=fake_model(FakeEngine(respond=respond)), settings=RunSettings(max_tokens=200, **settings))


def stored_samples(run):
    """(sample id, chunk, sample) for every finished sample, in chunk order, straight from the store."""
    with RunStore(run) as store:
        return [(sample_id(chunk.id, i), chunk, sample) for chunk, samples in store.done()
                for i, sample in enumerate(samples)]


def read_export(path, fmt):
    if fmt == "parquet":
        return pq.read_table(path).to_pylist()
    return read_jsonl(path)


def by_split(run, val_fraction=0.1):
    """{split: [(sample id, chunk, sample)]} as the run's recorded split puts them."""
    with RunStore(run) as store:
        return {split: [(sample_id(chunk.id, i), chunk, sample) for chunk, i, sample in kept]
                for split, kept in split_samples(store, val_fraction=val_fraction).items()}


@pytest.fixture
def run(workspace, tmp_path):
    """A run in which some chunks failed (parse errors), so that 'each finished sample once' means something."""
    out = tmp_path / "run"
    report = make_run(workspace, out, respond=garbled_for_etienne)
    assert report.failures["parse"] > 0 and report.exported > 0
    return out


@pytest.mark.parametrize("fmt", ["sharegpt", "alpaca", "openai", "jsonl", "parquet"])
def test_file_formats_hold_each_finished_sample_once_in_chunk_order(run, fmt):
    export = write_export(run, fmt)
    path = export.path
    assert path.parent == run and path.exists()
    assert set(export.files) == {"train", "validation", "test"} and export.files["train"] == path
    grouped = by_split(run)
    assert sum(len(kept) for kept in grouped.values()) == len(stored_samples(run)) == export.samples
    assert grouped["train"] and grouped["test"]  # the run's 0.1 test split holds a chunk or more
    assert sorted(sid for kept in grouped.values() for sid, _, _ in kept) == sorted(s for s, _, _ in stored_samples(run))
    records, expected = [], []
    for split, file in export.files.items():
        assert file == split_path(path, split)
        records += read_export(file, fmt)
        expected += grouped[split]
    assert len(records) == len(expected)
    for record, (sid, chunk, sample) in zip(records, expected):
        assert record == {
            "sharegpt": {"conversations": [{"from": "human", "value": sample.input},
                                           {"from": "gpt", "value": sample.output}]},
            "alpaca": {"instruction": sample.input, "input": "", "output": sample.output},
            "openai": {"messages": [{"role": "user", "content": sample.input},
                                    {"role": "assistant", "content": sample.output}]},
            "jsonl": {"id": sid, "input": sample.input, "output": sample.output, "chunk_id": chunk.id,
                      "source": chunk.source, "start": chunk.start, "end": chunk.end},
        }.get(fmt, {"id": sid, "input": sample.input, "output": sample.output, "chunk_id": chunk.id,
                    "source": chunk.source, "start": chunk.start, "end": chunk.end})
    assert not any("Étienne" in sample.output for _, _, sample in expected)
    assert not list(run.glob("*.partial*"))
    # Exporting again replaces the file whole: still each sample once.
    assert read_export(write_export(run, fmt).path, fmt) == records[:len(grouped["train"])]


def test_sharegpt_export_matches_what_generate_wrote(run):
    written = read_jsonl(run / "sharegpt.jsonl")
    assert read_jsonl(write_export(run, "sharegpt", val_fraction=0).path) == written  # generate carves no validation
    assert read_jsonl(run / "sharegpt.test.jsonl") == read_jsonl(split_path(run / "sharegpt.jsonl", "test"))


def test_sample_ids_are_distinct_per_sample_within_a_chunk(workspace, tmp_path):
    (workspace / "programs" / "two_ways.py").write_text(
        "import dspy\nfrom datagen import Sample\nfrom signatures.style import RephraseAsGeneric\n\n\n"
        "class TwoWays(dspy.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.rephrase = dspy.Predict(RephraseAsGeneric)\n\n"
        "    def forward(self, chunk):\n        generic = self.rephrase(passage=chunk).generic\n"
        "        return dspy.Prediction(samples=[Sample(generic, chunk), Sample(chunk, generic)])\n")
    out = tmp_path / "run"
    report = make_run(workspace, out, pipeline="two_ways")
    export = write_export(out, "jsonl")
    records = [r for path in export.files.values() for r in read_jsonl(path)]
    assert len(records) == report.exported + report.held_out == 2 * report.chunks
    assert len({r["id"] for r in records}) == len(records)
    for first, second in zip(records[::2], records[1::2]):  # a chunk's samples stay together, in order
        assert first["chunk_id"] == second["chunk_id"]
        assert (first["input"], first["output"]) == (second["output"], second["input"])
        assert (first["id"], second["id"]) == (sample_id(first["chunk_id"], 0), sample_id(first["chunk_id"], 1))


def test_system_prompt_comes_first(run):
    first = stored_samples(run)[0][2]
    assert read_jsonl(write_export(run, "sharegpt", system=SYSTEM).path)[0]["conversations"] == [
        {"from": "system", "value": SYSTEM}, {"from": "human", "value": first.input},
        {"from": "gpt", "value": first.output}]
    assert read_jsonl(write_export(run, "alpaca", system=SYSTEM).path)[0] == {
        "instruction": first.input, "input": "", "output": first.output, "system": SYSTEM}
    assert read_jsonl(write_export(run, "openai", system=SYSTEM).path)[0]["messages"] == [
        {"role": "system", "content": SYSTEM}, {"role": "user", "content": first.input},
        {"role": "assistant", "content": first.output}]
    hf = datasets.load_from_disk(str(write_export(run, "hf", system=SYSTEM, val_fraction=0).path))
    assert all(row["messages"][0] == {"role": "system", "content": SYSTEM} for row in hf["train"])
    assert SYSTEM in (run / CARD_FILE).read_text() and SYSTEM in (run / "hf" / CARD_FILE).read_text()


def load_splits(path) -> dict[str, str]:
    """{sample id: split} of a saved hf export, checking each split's rows against the store on the way."""
    loaded = datasets.load_from_disk(str(path))
    assert isinstance(loaded, datasets.DatasetDict) and set(loaded) == {"train", "validation", "test"}
    return {row["id"]: split for split in loaded for row in loaded[split]}


def test_hf_dataset_round_trips_through_load_from_disk(run):
    result = write_export(run, "hf", val_fraction=0.3)
    assert result.path == run / "hf"
    loaded = datasets.load_from_disk(str(result.path))
    expected = stored_samples(run)
    by_id = {sid: (chunk, sample) for sid, chunk, sample in expected}
    assert {name: len(loaded[name]) for name in loaded} == result.splits
    assert sum(len(loaded[name]) for name in loaded) == len(expected) == result.samples
    assert len(loaded["train"]) and len(loaded["validation"]) and len(loaded["test"])
    order = [sid for sid, _, _ in expected]
    with RunStore(run) as store:
        recorded = store.splits()
    for split in ("train", "validation", "test"):
        rows = list(loaded[split])
        assert [r["id"] for r in rows] == [sid for sid in order if sid in {r["id"] for r in rows}]  # chunk order
        for row in rows:
            chunk, sample = by_id[row["id"]]
            held, group = recorded[chunk.id]
            assert (held == "test") == (split == "test")
            assert split == "test" or validation_group(group, 0.3) == (split == "validation")
            assert row["messages"] == [{"role": "user", "content": sample.input},
                                       {"role": "assistant", "content": sample.output}]
            assert (row["input"], row["output"], row["chunk_id"], row["source"], row["start"], row["end"]) == (
                sample.input, sample.output, chunk.id, chunk.source, chunk.start, chunk.end)
    assert not list(run.glob("hf.*"))  # no .partial or .old folder left behind


def test_hf_split_is_stable_across_re_exports_and_a_growing_run(workspace, tmp_path):
    out = tmp_path / "run"
    make_run(workspace, out, limit=6)
    early = load_splits(write_export(out, "hf", val_fraction=0.5).path)
    assert len(early) == 6
    assert load_splits(write_export(out, "hf", val_fraction=0.5).path) == early

    make_run(workspace, out)  # the rest of the chunks
    grown = load_splits(write_export(out, "hf", val_fraction=0.5).path)
    assert len(grown) > len(early) and {sid: grown[sid] for sid in early} == early

    (workspace / "data" / "more.txt").write_text("Another passage, mark you, from the keeper's log.\n\n"
                                                 "And the gulls, dear reader, the gulls cried all night.\n")
    make_run(workspace, out, inputs=[workspace / "data"], force=True)  # more inputs: a new, larger run
    larger = load_splits(write_export(out, "hf", val_fraction=0.5).path)
    assert len(larger) > len(grown)
    # A chunk whose near-duplicate group grew may change sides, but never into test (train stays out of it).
    assert all(larger[sid] == split or larger[sid] != "test" for sid, split in grown.items())
    assert sum(larger[sid] == split for sid, split in grown.items()) >= 0.8 * len(grown)


def test_val_fraction_zero_leaves_validation_empty(run):
    result = write_export(run, "hf", val_fraction=0)
    loaded = datasets.load_from_disk(str(result.path))
    assert "validation" not in loaded and len(loaded["train"]) + len(loaded["test"]) == result.samples


def card_fields(text: str) -> dict[str, str]:
    """The card's table rows as {left cell: right cell}, the first row of each name winning."""
    fields = {}
    for key, value in re.findall(r"^\| ([^|]+?) \| (.+?) \|$", text, re.M):
        fields.setdefault(key, value)
    return fields


@pytest.mark.parametrize("fmt", FORMATS)
def test_dataset_card_records_provenance_and_counts(run, fmt):
    result = write_export(run, fmt)
    assert result.card == (run / "hf" / CARD_FILE if fmt == "hf" else run / CARD_FILE)
    text = result.card.read_text(encoding="utf-8")
    fields = card_fields(text)
    with RunStore(run) as store:
        meta, counts, failures = store.meta(), store.counts(), store.failure_counts()
    assert fields["pipeline"] == "style_clone"
    assert fields["program fingerprint"] == meta["program"] and len(meta["program"]) == 64
    assert fields["model"] == "fake/model"
    assert fields["format"] == fmt
    assert int(fields["samples exported"]) == result.samples == len(stored_samples(run))
    assert int(fields["chunks in the run"]) == counts["chunks"]
    assert int(fields["chunks done"]) == counts["done"]
    assert int(fields["chunks failed"]) == counts["failed"] == failures["parse"] > 0
    assert fields["parse"] == str(failures["parse"])  # the failures table, by kind
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", fields["exported (UTC)"])
    assert fields["datagen"] == "0.1.0" and re.fullmatch(r"\d+\.\d+.*", fields["dspy"])
    assert fields["splits"].startswith(f"train {result.splits['train']}, validation "
                                       f"{result.splits['validation']}, test {result.splits['test']}")


def test_generate_writes_a_card_and_keeps_a_readme_that_is_not_one(workspace, tmp_path, caplog):
    out = tmp_path / "run"
    make_run(workspace, out, limit=3)
    fields = card_fields((out / CARD_FILE).read_text())
    with RunStore(out) as store:
        held = sum(split == "test" for cid, (split, _) in store.splits().items() if store.result(cid))
    assert fields["format"] == "sharegpt" and fields["samples exported"] == "3"
    assert fields["splits"].startswith(f"train {3 - held}, test {held}")
    assert fields["chunks not run yet"] == str(int(fields["chunks in the run"]) - 3)

    other = tmp_path / "mine"
    other.mkdir()
    (other / CARD_FILE).write_text("# my notes\n")
    make_run(workspace, other, limit=1)
    assert (other / CARD_FILE).read_text() == "# my notes\n" and (other / "sharegpt.jsonl").exists()
    assert "not a datagen dataset card" in caplog.text
    with pytest.raises(DatagenError, match="not a datagen dataset card"):
        write_export(other, "alpaca").path
    assert (other / CARD_FILE).read_text() == "# my notes\n" and not (other / "alpaca.jsonl").exists()


def test_bad_input_is_refused(run, tmp_path):
    with pytest.raises(DatagenError, match=r"unknown export format 'csv'.*sharegpt, alpaca, openai, hf"):
        write_export(run, "csv").path
    for fraction in (-0.1, 0.51, float("nan")):
        with pytest.raises(DatagenError, match="--val-fraction must be between 0 and 0.5"):
            write_export(run, "hf", val_fraction=fraction).path
    with pytest.raises(DatagenError, match="no run.db"):
        write_export(tmp_path / "nowhere", "sharegpt").path
    assert not (tmp_path / "nowhere").exists()  # nothing created on the way
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatagenError, match="no run.db"):
        write_export(tmp_path / "empty", "hf").path
    assert not (tmp_path / "empty" / "run.db").exists()
    with pytest.raises(DatagenError, match="--system does not apply to jsonl"):
        write_export(run, "jsonl", system=SYSTEM).path
    with pytest.raises(DatagenError, match="is a folder"):
        write_export(run, "openai", out_path=tmp_path).path
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "keep.txt").write_text("mine")
    with pytest.raises(DatagenError, match="not a saved dataset"):
        write_export(run, "hf", out_path=tmp_path / "stuff").path
    assert (tmp_path / "stuff" / "keep.txt").read_text() == "mine"


def test_a_run_with_nothing_finished_is_refused(workspace, tmp_path):
    def never(text):
        raise Unparseable

    out = tmp_path / "run"
    with pytest.raises(DatagenError, match="chunks all failed"):
        make_run(workspace, out, respond=never)
    with pytest.raises(DatagenError, match="no finished chunks"):
        write_export(out, "hf").path


def one_line_error(result) -> str:
    assert result.returncode != 0 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_export_command(workspace):
    make_run(workspace, workspace / "out", respond=garbled_for_etienne)
    total = len(stored_samples(workspace / "out"))
    result = run_cli("export", "out", "--format", "hf", "--val-fraction", "0.25", "--system", SYSTEM,
                     cwd=workspace)
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith(f"hf: out/hf ({total} samples: train ")
    train, validation, test = map(int, re.findall(r"(?:train|validation|test) (\d+)", line))
    assert train + validation + test == total
    assert "dataset card: out/hf/README.md" in result.stderr
    loaded = datasets.load_from_disk(str(workspace / "out" / "hf"))
    assert (len(loaded["train"]), len(loaded["validation"]), len(loaded["test"])) == (train, validation, test)
    assert loaded["train"][0]["messages"][0] == {"role": "system", "content": SYSTEM}

    result = run_cli("export", "out", "-f", "alpaca", "--out", "exports/alpaca.jsonl", cwd=workspace)
    assert result.returncode == 0, result.stderr
    grouped = by_split(workspace / "out")
    assert result.stdout.strip() == (f"alpaca: exports/alpaca.jsonl ({total} samples: train {len(grouped['train'])}"
                                     f", validation {len(grouped['validation'])}, test {len(grouped['test'])})")
    assert len(read_jsonl(workspace / "exports" / "alpaca.jsonl")) == len(grouped["train"])
    assert len(read_jsonl(workspace / "exports" / "alpaca.test.jsonl")) == len(grouped["test"])
    assert card_fields((workspace / "exports" / CARD_FILE).read_text())["format"] == "alpaca"

    assert "export" in run_cli("--help", cwd=workspace).stdout


@pytest.mark.parametrize("args, fragments", [
    (["export", "out", "--format", "csv"], ["'csv'", "sharegpt"]),
    (["export", "data", "--format", "hf"], ["data", "no run.db"]),
    (["export", "out", "--format", "hf", "--val-fraction", "0.9"], ["--val-fraction", "0.9"]),
])
def test_export_command_bad_input_gets_a_one_line_error(workspace, args, fragments):
    make_run(workspace, workspace / "out", limit=1)
    error = one_line_error(run_cli(*args, cwd=workspace))
    for fragment in fragments:
        assert fragment in error, error


def test_a_split_no_longer_written_leaves_no_file_that_repeats_training_samples(run):
    first = write_export(run, "openai")
    assert first.files["validation"].exists()
    again = write_export(run, "openai", val_fraction=0)
    assert "validation" not in again.files and not first.files["validation"].exists()
    assert len(read_jsonl(again.path)) == again.splits["train"]


def test_exporting_sharegpt_over_generates_dataset_keeps_its_metadata_line_for_line(run):
    export = write_export(run, "sharegpt")  # RUN/sharegpt.jsonl: generate's own dataset, with a validation split
    for split, path in export.files.items():
        metadata = read_jsonl(split_path(run / "metadata.jsonl", split))
        assert len(metadata) == len(read_jsonl(path)) == export.splits[split]
        assert {m["pipeline"] for m in metadata} <= {"style_clone"}


def test_generate_again_after_an_export_over_its_files_leaves_no_validation_file(workspace, tmp_path):
    out = tmp_path / "run"
    make_run(workspace, out)
    write_export(out, "sharegpt")
    assert (out / "sharegpt.validation.jsonl").exists() and (out / "metadata.validation.jsonl").exists()
    report = make_run(workspace, out)  # generate writes its dataset whole again: train and test only
    assert not (out / "sharegpt.validation.jsonl").exists() and not (out / "metadata.validation.jsonl").exists()
    assert len(read_jsonl(out / "sharegpt.jsonl")) == len(read_jsonl(out / "metadata.jsonl")) == report.exported
