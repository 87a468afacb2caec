"""The held-out test split: drawn once and recorded, near-duplicates on one side, the program's dev items and demos
never held out, no chunk moved from train to test, and training exports disjoint from it by id and by text."""

import json
import sqlite3
from contextlib import chdir

import pytest

from datagen.dataset.export import split_path, write_export
from datagen.dataset.splits import (CONTAINMENT, draw_splits, near_duplicate_groups, program_seen_texts,
                                    recorded_splits, shingles, split_texts)
from datagen.errors import DatagenError
from datagen.runs import RunSettings
from datagen.runs.generate import generate
from datagen.store import RunStore
from datagen.workspace import Config, SplitSettings

from .conftest import run_cli
from .fakes import FakeEngine, FakeOpenAIServer
from .test_generate import fake_model, read_jsonl
from .test_optimize import CONFIG, run_optimize
from .test_optimize import engine  # noqa: F401 (a fixture)


def paragraphs(workspace, name="data/samples/lighthouse_keeper.md"):
    return [p for p in (workspace / name).read_text().split("\n\n") if len(p.split()) > 40]


def corpus_with_copies(workspace, copies=4):
    """A corpus in which one passage is in several files, once verbatim and once lightly edited."""
    folder = workspace / "corpus"
    folder.mkdir()
    passages = paragraphs(workspace) + paragraphs(workspace, "data/reference/neutral.md")
    repeated = passages[0]
    for i, passage in enumerate(passages[1:]):
        (folder / f"part{i:02d}.md").write_text(passage + "\n")
    for i in range(copies):
        edited = repeated.replace(" the ", " a ", 1 + i) if i % 2 else repeated
        (folder / f"copy{i}.md").write_text(edited + "\n")
    return folder, repeated


def make_run(workspace, out, inputs, splits=None, force=False, max_tokens=200):
    config = Config(splits=splits or SplitSettings())
    return generate("style_clone", [inputs], out, workspace=workspace, config=config,
                    model=fake_model(FakeEngine()), settings=RunSettings(max_tokens=max_tokens, force=force))


def containment(a: str, b: str) -> float:
    """The exact share of the smaller text's word 5-grams found in the other."""
    x, y = shingles(a), shingles(b)
    return len(x & y) / min(len(x), len(y))


def test_near_duplicates_group_and_unrelated_passages_do_not(workspace):
    passages = paragraphs(workspace)
    edited = passages[0].replace(" the ", " a ", 2)
    inside = passages[1] + "\n\n" + passages[2][: len(passages[2]) // 3]  # passage 1 with a third of passage 2
    texts = passages + [edited, inside]
    groups = near_duplicate_groups(texts)
    n = len(passages)
    assert groups[n] == groups[0] and containment(edited, passages[0]) >= CONTAINMENT
    assert groups[n + 1] == groups[1]  # passage 1 lies whole inside the longer text
    assert len(set(groups[:n])) == n  # the author's distinct paragraphs stay apart
    assert groups == near_duplicate_groups(texts)  # deterministic


def test_a_run_records_its_split_and_it_is_the_same_on_every_machine(workspace, tmp_path):
    rule = SplitSettings(test_fraction=0.3)
    make_run(workspace, tmp_path / "a", workspace / "data/samples", rule)
    make_run(workspace, tmp_path / "b", workspace / "data/samples", rule)
    with RunStore(tmp_path / "a") as a, RunStore(tmp_path / "b") as b:
        first, second = a.splits(), b.splits()
        assert first == second and set(first) == {c.id for c in a.chunks()}
    tests = [cid for cid, (split, _) in first.items() if split == "test"]
    assert 0 < len(tests) < len(first)


def test_near_duplicate_chunks_never_straddle_two_splits(workspace, tmp_path):
    corpus, repeated = corpus_with_copies(workspace)
    # A high fraction: most copies draw test on their own, so only the grouping keeps them together.
    make_run(workspace, tmp_path / "run", corpus, SplitSettings(test_fraction=0.6))
    with RunStore(tmp_path / "run") as store:
        chunks, splits = list(store.chunks()), store.splits()
    copies = [c for c in chunks if c.source.startswith(str(corpus / "copy"))]
    assert len({splits[c.id][0] for c in copies}) == 1 and len({splits[c.id][1] for c in copies}) == 1
    by_split = {name: [c for c in chunks if splits[c.id][0] == name] for name in ("train", "test")}
    assert by_split["train"] and by_split["test"]
    for held in by_split["test"]:
        for kept in by_split["train"]:
            assert containment(held.text, kept.text) < CONTAINMENT, (held.source, kept.source)


def test_a_draw_with_its_groups_found_elsewhere_is_the_draw_made_here(workspace, tmp_path):
    """What a run's index process does (datagen.runs.screening.SplitDraw): the texts of `split_texts` grouped
    elsewhere and handed to `draw_splits`; nothing to group once the split is recorded; groups of other texts (a
    list of another length) not taken."""
    corpus, repeated = corpus_with_copies(workspace)
    rule, seen = SplitSettings(test_fraction=0.6), [repeated]  # the copies kept in train, by their groups alone
    draws = {}
    for way in ("here", "elsewhere", "wrong"):
        make_run(workspace, tmp_path / way, corpus, rule)
        with RunStore(tmp_path / way) as store:
            texts = split_texts(store, rule, seen)
            assert texts[-1] == repeated and len(texts) == store.counts()["chunks"] + 1
            groups = {"here": None, "elsewhere": near_duplicate_groups(texts), "wrong": [0]}[way]
            draws[way] = {cid: (s.split, s.why) for cid, s in draw_splits(store, rule, seen, groups=groups).items()}
            assert split_texts(store, rule, seen) is None
    assert draws["elsewhere"] == draws["here"] == draws["wrong"]
    assert any(why == "seen by the program" for _, why in draws["here"].values())


def test_whole_source_files_are_held_out_by_source(workspace, tmp_path):
    corpus, _ = corpus_with_copies(workspace, copies=0)
    make_run(workspace, tmp_path / "run", corpus, SplitSettings(test_fraction=0.25, by="source"))
    with RunStore(tmp_path / "run") as store:
        chunks, splits = list(store.chunks()), store.splits()
    by_source = {}
    for chunk in chunks:
        by_source.setdefault(chunk.source, set()).add(splits[chunk.id][0])
    assert all(len(seen) == 1 for seen in by_source.values())
    held = [source for source, seen in by_source.items() if seen == {"test"}]
    assert 0 < len(held) <= round(0.25 * len(by_source)) + 1


def test_a_growing_run_never_moves_a_chunk_from_train_to_test(workspace, tmp_path):
    corpus, repeated = corpus_with_copies(workspace, copies=0)
    out = tmp_path / "run"
    rule = SplitSettings(test_fraction=0.5)
    make_run(workspace, out, corpus, rule)
    with RunStore(out) as store:
        before = store.splits()
    held = [cid for cid, (split, _) in before.items() if split == "test"]
    assert held
    # New files: copies of every passage, test or train: each copy must join its original's side or train.
    for i, path in enumerate(sorted(corpus.glob("part*.md"))):
        (corpus / f"zz{i:02d}.md").write_text(path.read_text().replace(" the ", " a ", 1))
    make_run(workspace, out, corpus, rule, force=True)  # other inputs: the run starts afresh, its split kept
    with RunStore(out) as store:
        after, chunks = store.splits(), {c.id: c for c in store.chunks()}
    assert all(after[cid][0] == "train" for cid, (split, _) in before.items() if split == "train")
    for cid, (split, group) in after.items():
        twins = [other for other, (_, g) in after.items() if g == group]
        assert len({after[t][0] for t in twins}) == 1, chunks[cid].source


def test_text_trained_on_is_not_held_out_when_a_forced_run_cuts_it_anew(workspace, tmp_path):
    out = tmp_path / "run"
    make_run(workspace, out, workspace / "data/samples", SplitSettings(test_fraction=0.1), max_tokens=100)
    with RunStore(out) as store:
        trained = [c.text for c in store.chunks() if store.splits()[c.id][0] == "train"]
    # Other chunk boundaries and a larger share held out: new chunks hold the old train chunks' text.
    make_run(workspace, out, workspace / "data/samples", SplitSettings(test_fraction=0.6), force=True, max_tokens=200)
    with RunStore(out) as store:
        splits, chunks = store.splits(), list(store.chunks())
        counts = store.split_counts()
    held = [c for c in chunks if splits[c.id][0] == "test"]
    assert held and counts["train"].get("trained on")
    for chunk in held:
        assert all(containment(old, chunk.text) < CONTAINMENT for old in trained)


def test_the_split_rule_of_a_run_cannot_change_under_it(workspace, tmp_path):
    out = tmp_path / "run"
    make_run(workspace, out, workspace / "data/samples", SplitSettings(test_fraction=0.1))
    with RunStore(out) as store:
        before = store.splits()
    with pytest.raises(DatagenError, match=r"held-out split was drawn with test_fraction 0.1 by chunk.*--force"):
        make_run(workspace, out, workspace / "data/samples", SplitSettings(test_fraction=0.2))
    # --force draws by the new rule, but a chunk once in train (a model may have trained on it) stays there.
    make_run(workspace, out, workspace / "data/samples", SplitSettings(test_fraction=0.9), force=True)
    with RunStore(out) as store:
        assert json.loads(store.meta()["split_rule"])["test_fraction"] == 0.9
        after = store.splits()
    assert all(after[cid][0] == "train" for cid, (split, _) in before.items() if split == "train")
    assert sum(s == "test" for s, _ in after.values()) >= sum(s == "test" for s, _ in before.values())


def test_the_programs_dev_set_is_found_from_its_workspace_whatever_the_current_folder(
        workspace, engine, tmp_path, monkeypatch):  # noqa: F811
    """`optimize` records the dev path as it was given, relative to the folder it ran in (the workspace): a later
    `datagen quality RUN` or `datagen export RUN` run from another folder still protects the dev set's items."""
    from pathlib import Path

    from datagen.tuning import optimize_pipeline

    from .test_optimize import DEV

    monkeypatch.chdir(workspace)
    state = optimize_pipeline("style_clone", Path(DEV), "bootstrap", workspace=workspace, config=CONFIG,
                              model=fake_model(engine)).state
    dev = [json.loads(line)["chunk"] for line in (workspace / DEV).read_text().splitlines()]
    monkeypatch.chdir(tmp_path)
    assert not (tmp_path / DEV).exists() and set(dev) <= set(program_seen_texts(str(state.resolve())))


def test_the_programs_dev_items_and_demos_are_never_held_out(workspace, engine, tmp_path):  # noqa: F811
    state = run_optimize(workspace, engine).state
    seen = program_seen_texts(state, workspace)
    dev = [json.loads(line)["chunk"] for line in (workspace / "data/style_clone/dev.jsonl").read_text().splitlines()]
    assert set(dev) <= set(seen)
    out = tmp_path / "run"
    # Nearly everything drawn into test: only the rule about what the program saw keeps the dev chunks out of it.
    generate("style_clone", [workspace / "data/samples"], out, workspace=workspace,
             config=CONFIG.model_copy(update={"splits": SplitSettings(test_fraction=0.95)}),
             model=fake_model(engine), compiled=state, settings=RunSettings(max_tokens=200))
    with RunStore(out) as store:
        splits, chunks = store.splits(), list(store.chunks())
        assert store.meta()["compiled"] == str(state.resolve())
    test_chunks = [c for c in chunks if splits[c.id][0] == "test"]
    assert test_chunks
    for chunk in test_chunks:
        assert max(containment(chunk.text, item) for item in dev) < CONTAINMENT
    kept = [c for c in chunks if max(containment(c.text, item) for item in dev) >= CONTAINMENT]
    assert kept and all(splits[c.id][0] == "train" for c in kept)
    # Drawn by another command (an export of the run killed before its draw), from elsewhere: the same split.
    with sqlite3.connect(out / "run.db") as db:
        db.execute("DELETE FROM splits")
    with RunStore(out) as store, chdir(tmp_path):
        assert {cid: (s.split, s.group) for cid, s in recorded_splits(store).items()} == splits


def test_training_exports_leave_the_test_split_out_by_id_and_by_text(workspace, tmp_path):
    corpus, _ = corpus_with_copies(workspace)
    out = tmp_path / "run"
    make_run(workspace, out, corpus, SplitSettings(test_fraction=0.4))
    data = read_jsonl(out / "sharegpt.jsonl")
    held = read_jsonl(split_path(out / "sharegpt.jsonl", "test"))
    meta_train = read_jsonl(out / "metadata.jsonl")
    meta_test = read_jsonl(split_path(out / "metadata.jsonl", "test"))
    assert len(meta_train) == len(data) and len(meta_test) == len(held) and held
    assert not {m["chunk_id"] for m in meta_train} & {m["chunk_id"] for m in meta_test}
    for fmt in ("openai", "jsonl", "parquet", "hf"):
        export = write_export(out, fmt, val_fraction=0.3)
        assert export.splits["test"] == len(held) and export.samples == len(data) + len(held)
    flat = {split: read_jsonl(split_path(out / "samples.jsonl", split)) for split in ("train", "validation", "test")}
    assert flat["validation"]
    ids = {split: {r["chunk_id"] for r in records} for split, records in flat.items()}
    assert not ids["test"] & (ids["train"] | ids["validation"]) and not ids["train"] & ids["validation"]
    for held_record in flat["test"]:
        for record in flat["train"] + flat["validation"]:
            assert containment(held_record["output"], record["output"]) < CONTAINMENT
    card = (out / "README.md").read_text()
    assert "held-out test split" in card and f"test {len(held)}" in card


def test_a_run_made_before_splits_gets_its_split_at_export(workspace, tmp_path):
    out = tmp_path / "run"
    make_run(workspace, out, workspace / "data/samples", SplitSettings(test_fraction=0.3))
    with RunStore(out) as store:  # what a run made by datagen 0.2 holds: no split, no rule
        store._db.execute("DELETE FROM splits")
        store._db.execute("DELETE FROM meta WHERE key IN ('split_rule', 'split_seen')")
    export = write_export(out, "openai")
    with RunStore(out) as store:
        assert set(store.splits()) == {c.id for c in store.chunks()}
        assert json.loads(store.meta()["split_rule"]) == SplitSettings().model_dump()
        assert export.splits["test"] == sum(len(s) for c, s in store.done() if store.splits()[c.id][0] == "test")


def test_no_test_split_when_the_fraction_is_0(workspace, tmp_path):
    out = tmp_path / "run"
    report = make_run(workspace, out, workspace / "data/samples", SplitSettings(test_fraction=0))
    assert report.test_path is None and report.held_out == 0
    assert not split_path(out / "sharegpt.jsonl", "test").exists()
    with RunStore(out) as store:
        assert {split for split, _ in store.splits().values()} == {"train"}
        assert all(s.split == "train" for s in recorded_splits(store).values())


def test_the_split_is_configured_in_datagen_toml_and_reported_by_generate(workspace):
    (workspace / "datagen.toml").write_text("[splits]\ntest_fraction = 0.3\n")
    with FakeOpenAIServer() as server:
        result = run_cli("generate", "style_clone", "-i", "data/samples", "-o", "out", "--max-tokens", "200",
                         "--model", "openai/fake", "--api-base", server.url, cwd=workspace)
    assert result.returncode == 0, result.stderr
    held = read_jsonl(workspace / "out/sharegpt.test.jsonl")
    assert held and f"held-out test split: out/sharegpt.test.jsonl ({len(held)} samples" in " ".join(result.stdout.split())
    with RunStore(workspace / "out") as store:
        assert json.loads(store.meta()["split_rule"]) == {"by": "chunk", "test_fraction": 0.3}
    (workspace / "datagen.toml").write_text("[splits]\ntest_fraction = 1.5\n")
    result = run_cli("generate", "style_clone", "-i", "data/samples", "-o", "out2", cwd=workspace)
    assert result.returncode != 0 and "test_fraction" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_run_whose_samples_all_fell_in_test_says_so(workspace):
    (workspace / "datagen.toml").write_text("[splits]\ntest_fraction = 0.99\n")
    with FakeOpenAIServer() as server:
        result = run_cli("generate", "style_clone", "-i", "data/samples", "-o", "out", "--max-tokens", "200",
                         "--limit", "2", "--model", "openai/fake", "--api-base", server.url, cwd=workspace)
    held = read_jsonl(workspace / "out/sharegpt.test.jsonl")
    assert held and not read_jsonl(workspace / "out/sharegpt.jsonl")
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 1 and len(errors) == 1, result.stderr
    assert errors[0].startswith(f"error: the dataset is empty for training ({len(held)} sample"
                                f"{'s' * (len(held) != 1)} in the held-out test split alone)"), errors
