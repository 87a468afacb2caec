"""The samples' lexical near-duplicates found as a run records them (datagen/dataset/quality/near_duplicates.py's
LexicalIndex, datagen/runs/screening.py's IndexProcess): an index filled in any order, in parts, gives the pairs
of one pass over the texts, every pair at the flagging threshold among them; the index in a process of its own
answers the same, ignores the terminal's Ctrl-C, and when killed leaves the export to find the same pairs; it finds
the near-duplicate groups of the run's held-out split as datagen.dataset.splits does; a run big enough to use it
exports and records what one without it does (its held-out split too), and leaves no process behind."""

import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from itertools import combinations
from pathlib import Path

import psutil
import pytest

from datagen import Callbacks, Config, RunSettings
from datagen.dataset.quality import Protected, lexical_pairs
from datagen.dataset.quality.near_duplicates import LexicalIndex, char_shingles, jaccard, jaccards
from datagen.dataset.screening import Protection, SampleIndex, recorded_quality
from datagen.dataset.splits import near_duplicate_groups, recorded_splits, reserve_rule, split_texts
from datagen.runs import generate as generate_module
from datagen.runs import screening as screening_module
from datagen.runs.screening import IndexProcess, SplitDraw
from datagen.samples import Sample
from datagen.store import SPLIT_RULE, SPLIT_SEEN, RunStore
from datagen.workspace import SplitSettings

from .fakes import FakeEngine
from .test_generate import fake_model
from .test_quality import edited, sentences

INDEX_CALL = b"datagen.runs.screening:serve"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def texts():
    """Sentences of data/, an edited copy of every fourth, a verbatim copy of every ninth, and texts with nothing
    to shingle."""
    base = sentences()[:160]
    rng = random.Random(5)
    return (base + [edited(base[i], rng) for i in range(0, len(base), 4)] + base[::9]
            + ["", "!!!", "?"])


def as_tuples(pairs):
    return [(p.first, p.second, p.similarity, p.kind) for p in pairs]


def test_an_index_filled_in_any_order_gives_the_pairs_of_one_pass(texts):
    once = lexical_pairs(texts)
    for seed in (1, 2):
        order = list(range(len(texts)))
        random.Random(seed).shuffle(order)
        index = LexicalIndex()
        for i in order[:len(order) * 2 // 3]:  # a third of the texts left for `pairs` to add
            index.add(texts[i])
        assert as_tuples(index.pairs(texts)) == as_tuples(once)
    # Against every pair compared exactly: all found at or above the flagging threshold, none found below the floor.
    shingles = [char_shingles(text) for text in texts]
    exact = {(i, j): jaccard(shingles[i], shingles[j]) for i, j in combinations(range(len(texts)), 2)
             if shingles[i].size and shingles[j].size}
    found = {(p.first, p.second): p.similarity for p in once}
    assert {pair for pair, similarity in exact.items() if similarity >= 0.6} <= set(found)
    assert all(similarity >= 0.4 and abs(similarity - exact[pair]) < 1e-4 for pair, similarity in found.items())
    copies = [(i, j) for i, j in combinations(range(len(texts)), 2) if texts[i] == texts[j] and shingles[i].size]
    assert len(copies) >= 15 and all(found[pair] == 1.0 for pair in copies)
    assert not any(i >= len(texts) - 3 or j >= len(texts) - 3 for i, j in found)  # nothing to shingle: no pair


def test_a_repetitive_corpus_gives_the_exact_pairs_checked_many_at_once():
    """Texts of 20 words drawn from 25 (a template's fill-ins, a benchmark's corpus): each has dozens of LSH
    candidates, checked together (`jaccards`); the pairs are those of every pair compared one by one."""
    rng = random.Random(3)
    vocabulary = [f"w{k}ord" for k in range(25)]
    texts = [" ".join(rng.choice(vocabulary) for _ in range(20)) for _ in range(150)] + ["w1ord", "w1ord"]
    shingles = [char_shingles(text) for text in texts]
    others = shingles[1:60] + [shingles[-1]]
    assert [round(x, 9) for x in jaccards(shingles[0], others).tolist()] == \
        [round(jaccard(shingles[0], other), 9) for other in others]
    assert jaccards(shingles[-1], shingles[:3]).tolist() == [jaccard(shingles[-1], other) for other in shingles[:3]]
    empty = char_shingles("!!!")  # nothing to shingle: 0.0 with anything, as jaccard says
    assert jaccards(shingles[0], [shingles[1], empty, shingles[0]]).tolist() == \
        [jaccard(shingles[0], shingles[1]), 0.0, 1.0]
    assert jaccards(empty, [shingles[0], empty]).tolist() == [0.0, 0.0] and jaccards(shingles[0], []).size == 0
    exact = {(i, j): round(jaccard(shingles[i], shingles[j]), 4) for i, j in combinations(range(len(texts)), 2)}
    found = {(p.first, p.second): p.similarity for p in lexical_pairs(texts)}
    assert len(found) >= 50 and (len(texts) - 2, len(texts) - 1) in found
    assert {pair for pair, similarity in exact.items() if similarity >= 0.6} <= set(found)
    assert all(exact[pair] == similarity for pair, similarity in found.items())


def index_processes() -> list[int]:
    """The ids of this process's children that run the near-duplicate index (read from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
        if parent == os.getpid() and INDEX_CALL in command:
            found.append(int(stat.parent.name))
    return found


def ended() -> bool:
    """Whether this process's index processes are gone within 30 s (told to end, they exit without the run
    waiting for them: IndexProcess.close)."""
    deadline = time.monotonic() + 30
    while index_processes() and time.monotonic() < deadline:
        time.sleep(0.02)
    return not index_processes()


def test_the_index_process_answers_as_the_index_does_and_ignores_ctrl_c(texts):
    samples = [Sample(text, text[::-1]) for text in texts]
    with IndexProcess() as process:
        process.add(samples[:100])
        os.kill(process.pid, signal.SIGINT)  # the terminal's Ctrl-C reaches the whole process group
        process.add(samples[100:150])
        for name, own in (("input", texts), ("output", [text[::-1] for text in texts])):
            assert as_tuples(process.pairs(name, own)) == as_tuples(SampleIndex().pairs(name, own))
        assert index_processes() == [process.pid]
    assert ended()


def test_the_index_process_groups_the_held_out_splits_texts_as_this_one_does(texts, caplog):
    """Asked for groups first, then fed samples and asked for pairs: each answer is the one asked for; killed, the
    groups are found here, with one warning."""
    samples = [Sample(text, text) for text in texts]
    with IndexProcess() as process:
        process.group(texts)
        process.add(samples)
        assert process.groups(texts) == near_duplicate_groups(texts)
        assert as_tuples(process.pairs("input", texts)) == as_tuples(SampleIndex().pairs("input", texts))
    with IndexProcess() as process:
        process.group(texts)
        os.kill(process.pid, signal.SIGKILL)  # still importing: it has not answered
        deadline = time.monotonic() + 60
        while not process.grouped() and time.monotonic() < deadline:  # gone: nothing left to wait for
            time.sleep(0.05)
        with caplog.at_level(logging.WARNING):
            assert process.groups(texts) == near_duplicate_groups(texts)
    said = [record.getMessage() for record in caplog.records if "near-duplicate index" in record.getMessage()]
    assert said == ["the near-duplicate index's process was killed (signal 9): the run does its work itself (the same "
                    "results)"]


def test_the_index_process_screens_as_this_one_does_and_killed_leaves_it_here(texts, caplog):
    """The contamination and diversity measured in the process, from the units it read as the chunks and samples
    came, are those measured here from nothing; a killed process leaves them to this one, with one warning."""
    chunks = texts[:120]
    samples = [Sample(f"{text} {chunks[(i * 7) % 120]}" if i % 5 == 0 else text.upper(), text)
               for i, text in enumerate(chunks)]  # every fifth quotes another chunk
    keys = [(f"c{i:04d}", 0) for i in range(len(samples))]
    fields = {"input": [s.input for s in samples], "output": [s.output for s in samples]}
    test = frozenset(key for key, _ in keys[::7])
    protection = Protection([Protected("the dev set", chunks[3])],
                            [Protected(f"held-out chunk {key}", chunks[i]) for i, (key, _) in enumerate(keys)
                             if key in test], test)
    expected = SampleIndex().screened(keys, fields, chunks, protection, 13)
    assert expected[0] and set(expected[1]) == {"input", "output"}  # contaminated samples, both fields measured
    with IndexProcess() as process:
        process.group(chunks)
        process.add(samples)
        process.groups(chunks)
        assert process.screened(keys, fields, chunks, protection, 13) == expected
        os.kill(process.pid, signal.SIGKILL)
        with caplog.at_level(logging.WARNING):
            assert process.screened(keys, fields, chunks, protection, 8) == \
                SampleIndex().screened(keys, fields, chunks, protection, 8)
    said = [record.getMessage() for record in caplog.records if "near-duplicate index" in record.getMessage()]
    assert said == ["the near-duplicate index's process was killed (signal 9): the run does its work itself (the same "
                    "results)"]


def test_the_index_process_imports_this_datagen_whatever_else_is_on_the_path(texts, tmp_path, monkeypatch, caplog):
    """A workspace holding a `datagen` folder (a clone of another version) ahead of this datagen on sys.path: the
    process imports the datagen this one runs, and answers."""
    (tmp_path / "datagen").mkdir()
    (tmp_path / "datagen" / "__init__.py").write_text("raise ImportError('another datagen')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with IndexProcess() as process, caplog.at_level(logging.WARNING):
        process.add(Sample(text, text) for text in texts)
        assert as_tuples(process.pairs("input", texts)) == as_tuples(lexical_pairs(texts))
    assert not [record for record in caplog.records if "near-duplicate index" in record.getMessage()]


def test_a_killed_index_process_leaves_the_pairs_to_this_one(texts, caplog):
    with IndexProcess() as process:
        process.add(Sample(text, text) for text in texts[:80])
        os.kill(process.pid, signal.SIGKILL)
        process.add([Sample(text, text) for text in texts[80:]])  # nobody to send them to: not an error
        with caplog.at_level(logging.WARNING):
            assert as_tuples(process.pairs("input", texts)) == as_tuples(lexical_pairs(texts))
            assert as_tuples(process.pairs("output", texts)) == as_tuples(lexical_pairs(texts))
    said = [record.getMessage() for record in caplog.records if "near-duplicate index" in record.getMessage()]
    assert said == ["the near-duplicate index's process was killed (signal 9): the run does its work itself (the same "
                    "results)"]


def test_a_stopped_index_process_holds_up_neither_the_run_nor_its_end(texts):
    """A process that stops answering (SIGSTOP) while samples keep coming: `add` never waits for it, and leaving on
    an exception (a Ctrl-C at the export) ends it at once."""
    with pytest.raises(KeyboardInterrupt):
        with IndexProcess() as process:
            os.kill(process.pid, signal.SIGSTOP)
            for _ in range(40):  # far more than a socket's buffer holds
                process.add(Sample(text * 20, text) for text in texts)
            raise KeyboardInterrupt
    assert not process._process.is_alive() and not index_processes()


def test_flushed_samples_are_sent_at_once_not_gathered(texts, monkeypatch):
    """Samples added are gathered for GATHER_SECONDS before they are sent; once `flush` says the run is over, they
    go at once: the process spends CPU indexing them though nothing asked it anything (gathered for an hour here)."""
    monkeypatch.setattr(screening_module, "GATHER_SECONDS", 3600)
    with IndexProcess() as process:
        process.group(texts[:10])
        assert process.groups(texts[:10]) == near_duplicate_groups(texts[:10])  # imported, and waiting
        cpu = psutil.Process(process.pid).cpu_times()
        process.add(Sample(text * 3, text) for text in texts * 3)
        process.flush()
        deadline, spent = time.monotonic() + 60, 0.0
        while spent < 0.05 and time.monotonic() < deadline:
            time.sleep(0.05)
            now = psutil.Process(process.pid).cpu_times()
            spent = now.user + now.system - cpu.user - cpu.system
        assert spent >= 0.05
        assert as_tuples(process.pairs("output", texts * 3)) == as_tuples(lexical_pairs(texts * 3))


def test_the_run_ends_without_waiting_for_the_index_process_to_exit(texts, monkeypatch):
    """Leaving the block, the process is told to end and a thread of its own waits for it: one that does not exit
    (stopped) is still there as the block ends, and is killed EXIT_SECONDS later."""
    monkeypatch.setattr(screening_module, "EXIT_SECONDS", 5)
    with IndexProcess() as process:
        process.add(Sample(text, text) for text in texts)
        assert as_tuples(process.pairs("input", texts)) == as_tuples(lexical_pairs(texts))
        os.kill(process.pid, signal.SIGSTOP)
    assert index_processes() == [process.pid]
    assert ended()


def test_a_script_that_calls_generate_unguarded_runs_once(tmp_path, texts):
    """A script that calls `generate` at its top level, with no `if __name__ == "__main__":` guard (as the README's
    example does): the index process must not run it again."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for n, text in enumerate(texts[:40]):
        (corpus / f"p{n:04d}.txt").write_text(text + "\n", encoding="utf-8")
    script = tmp_path / "make.py"
    script.write_text(f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
print("top level", flush=True)
import datagen.runs.generate as engine
from datagen import Config, RunSettings
from tests.fakes import FakeEngine
from tests.test_generate import fake_model
engine.INDEX_BESIDE_FROM = 1
engine.available_cores = lambda: 2
report = engine.generate("style_clone", [{str(corpus)!r}], {str(tmp_path / "run")!r}, workspace={str(ROOT)!r},
                         config=Config(), model=fake_model(FakeEngine()), settings=RunSettings(max_tokens=200))
print("exported", report.exported, flush=True)
""")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("top level") == 1 and "exported" in done.stdout
    assert "near-duplicate index" not in done.stderr


def test_a_run_with_its_index_beside_it_exports_what_one_without_does(tmp_path, texts, monkeypatch):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for n, text in enumerate(t for t in texts if len(t.split()) > 3):
        (corpus / f"p{n:04d}.txt").write_text(text + "\n", encoding="utf-8")
    monkeypatch.setattr(generate_module, "available_cores", lambda: 2)  # the process, even on a one-core machine
    config = Config(splits=SplitSettings(test_fraction=0.3))  # not the default: a split left to the export differs
    exports = {}
    for run in ("without", "beside", "killed"):
        monkeypatch.setattr(generate_module, "INDEX_BESIDE_FROM", 10 ** 9 if run == "without" else 1)
        seen = []

        def heard(_, run=run, seen=seen):  # the index process, looked for as the run goes; killed in one run
            seen.append(index_processes())
            if run == "killed" and len(seen) == 5:
                os.kill(seen[-1][0], signal.SIGKILL)
        report = generate_module.generate("style_clone", [corpus], tmp_path / run, workspace=tmp_path / "ws",
                                          model=fake_model(FakeEngine()), config=config,
                                          settings=RunSettings(max_tokens=200), callbacks=Callbacks(on_outcome=heard))
        assert report.exported > 0 and not report.failures
        assert all(seen[:5]) if run != "without" else not any(seen)
        with RunStore(tmp_path / run) as store:
            quality = recorded_quality(store)
            exports[run] = (report.data_path.read_text(), sorted(store.near_duplicate_pairs()), store.splits(),
                            quality.contamination, quality.diversity)
        assert ended()
    assert exports["beside"] == exports["without"] == exports["killed"]
    assert len(exports["without"][1]) >= 20  # the edited and verbatim copies
    splits = exports["without"][2]
    assert len(splits) > len({group for _, group in splits.values()})  # the copies' chunks grouped, in one split
    assert 0.2 < sum(split == "test" for split, _ in splits.values()) / len(splits) < 0.4


def undrawn(run: Path) -> None:
    """The run folder as a run killed before its held-out split was drawn leaves it: no split, no rule recorded."""
    with sqlite3.connect(run / "run.db") as db:
        db.execute("DELETE FROM splits")
        db.execute("DELETE FROM meta WHERE key IN (?, ?)", (SPLIT_RULE, SPLIT_SEEN))


def corpus_run(tmp_path, texts, rule, run="run"):
    """A run of `texts` (a file each) into tmp_path/`run`, by the held-out `rule`: its report and its splits."""
    corpus = tmp_path / "corpus"
    corpus.mkdir(exist_ok=True)
    for n, text in enumerate(t for t in texts if len(t.split()) > 3):
        (corpus / f"p{n:04d}.txt").write_text(text + "\n", encoding="utf-8")
    report = generate_module.generate("style_clone", [corpus], tmp_path / run, workspace=tmp_path / "ws",
                                      model=fake_model(FakeEngine()), config=Config(splits=rule),
                                      settings=RunSettings(max_tokens=200))
    with RunStore(tmp_path / run) as store:
        return report, store.splits()


def test_an_export_of_a_run_killed_before_its_draw_draws_by_the_runs_rule(tmp_path, texts):
    """A fresh run waiting for its groups records its rule first (`SplitDraw`, `reserve_rule`): killed before it
    drew, an export of its folder draws by that rule, not the default, and the run resumes unrefused to the same
    split a clean run draws."""
    rule = SplitSettings(test_fraction=0.3)  # not the default
    _, clean = corpus_run(tmp_path, texts, rule)
    undrawn(tmp_path / "run")
    with RunStore(tmp_path / "run") as store, IndexProcess() as process:
        SplitDraw(store, rule, [], False, split_texts(store, rule), process)  # asks for the groups, draws nothing
        assert not store.splits()
    with RunStore(tmp_path / "run") as store:
        assert {cid: s.split for cid, s in recorded_splits(store).items()} == {c: s for c, (s, _) in clean.items()}
    report, resumed = corpus_run(tmp_path, texts, rule)
    assert resumed == clean and report.chunks == 0 and report.resumed > 0
    undrawn(tmp_path / "run")
    with RunStore(tmp_path / "run") as store:
        reserve_rule(store, rule)
    other = SplitSettings(test_fraction=0.2)  # resumed by another rule before any draw: nothing to refuse
    assert corpus_run(tmp_path, texts, other)[1] == corpus_run(tmp_path, texts, other, "afresh")[1] != clean


def stuck(*_):
    raise AssertionError("the split waited for a stopped process")


def test_a_stuck_index_process_holds_up_neither_the_split_nor_the_export(tmp_path, texts, monkeypatch, caplog):
    """A process stopped (SIGSTOP) at the run's end: the split does not wait for groups that have not come (found
    here), and a wait for its pairs gives up once it spends no CPU for STUCK_SECONDS (ended, the pairs found here,
    said in one warning): the split and the pairs the same."""
    monkeypatch.setattr(screening_module, "STUCK_SECONDS", 2.0)
    rule = SplitSettings(test_fraction=0.3)
    _, clean = corpus_run(tmp_path, texts, rule)
    undrawn(tmp_path / "run")
    signal.signal(signal.SIGALRM, stuck)
    signal.alarm(120)  # a wait for the stopped process would last for ever: the test fails instead
    try:
        with RunStore(tmp_path / "run") as store, IndexProcess() as process, caplog.at_level(logging.WARNING):
            process.add(Sample(text, text) for text in texts)
            os.kill(process.pid, signal.SIGSTOP)
            split = SplitDraw(store, rule, [], False, split_texts(store, rule), process)
            split.poll()
            split.finish()
            assert store.splits() == clean
            assert as_tuples(process.pairs("input", texts)) == as_tuples(lexical_pairs(texts))
    finally:
        signal.alarm(0)
    said = [record.getMessage() for record in caplog.records if "near-duplicate index" in record.getMessage()]
    assert said == ["the near-duplicate index's process spent no CPU for 2 s (stopped, or stuck), and was ended: the "
                    "run does its work itself (the same results)"]
    assert ended()
