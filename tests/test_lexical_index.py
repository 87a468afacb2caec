"""The samples' lexical near-duplicates found as a run records them (datagen/dataset/quality/near_duplicates.py's
LexicalIndex, datagen/runs/screening.py's IndexProcess): an index filled in any order, in parts, gives the pairs
of one pass over the texts, every pair at the flagging threshold among them; the index in a process of its own
answers the same, ignores the terminal's Ctrl-C, and when killed leaves the export to find the same pairs; a run
big enough to use it exports what one without it does, and leaves no process behind."""

import logging
import multiprocessing
import os
import random
import signal
from itertools import combinations

import pytest

from datagen import Callbacks, Config, RunSettings
from datagen.dataset.quality import lexical_pairs
from datagen.dataset.quality.near_duplicates import LexicalIndex, char_shingles, jaccard
from datagen.dataset.screening import SampleIndex
from datagen.runs import generate as generate_module
from datagen.runs.screening import IndexProcess
from datagen.samples import Sample
from datagen.store import RunStore

INDEX_PROCESS = "datagen-screening"

from .fakes import FakeEngine
from .test_generate import fake_model
from .test_quality import edited, sentences


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


def test_the_index_process_answers_as_the_index_does_and_ignores_ctrl_c(texts):
    samples = [Sample(text, text[::-1]) for text in texts]
    with IndexProcess() as process:
        process.add(samples[:100])
        os.kill(process._process.pid, signal.SIGINT)  # the terminal's Ctrl-C reaches the whole process group
        process.add(samples[100:150])
        for name, own in (("input", texts), ("output", [text[::-1] for text in texts])):
            assert as_tuples(process.pairs(name, own)) == as_tuples(SampleIndex().pairs(name, own))
        assert process._process.is_alive()
    assert not process._process.is_alive() and not multiprocessing.active_children()


def test_a_killed_index_process_leaves_the_pairs_to_this_one(texts, caplog):
    with IndexProcess() as process:
        process.add(Sample(text, text) for text in texts[:80])
        process._process.kill()
        process._process.join()
        process.add([Sample(text, text) for text in texts[80:]])  # a broken pipe, not an error
        with caplog.at_level(logging.WARNING):
            assert as_tuples(process.pairs("input", texts)) == as_tuples(lexical_pairs(texts))
    assert "near-duplicate index's process is gone" in caplog.text


def test_a_run_with_its_index_beside_it_exports_what_one_without_does(tmp_path, texts, monkeypatch):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for n, text in enumerate(t for t in texts if len(t.split()) > 3):
        (corpus / f"p{n:04d}.txt").write_text(text + "\n", encoding="utf-8")
    exports = {}
    for run in ("without", "beside", "killed"):
        monkeypatch.setattr(generate_module, "INDEX_BESIDE_FROM", 10 ** 9 if run == "without" else 1)
        seen = []

        def heard(_, run=run, seen=seen):  # the index process, looked for as the run goes; killed in one run
            seen.append([child for child in multiprocessing.active_children() if child.name == INDEX_PROCESS])
            if run == "killed" and len(seen) == 5:
                seen[-1][0].kill()
        report = generate_module.generate("style_clone", [corpus], tmp_path / run, workspace=tmp_path / "ws",
                                          model=fake_model(FakeEngine()), config=Config(),
                                          settings=RunSettings(max_tokens=200), callbacks=Callbacks(on_outcome=heard))
        assert report.exported > 0 and not report.failures
        assert all(seen[:5]) if run != "without" else not any(seen)
        with RunStore(tmp_path / run) as store:
            exports[run] = (report.data_path.read_text(), sorted(store.near_duplicate_pairs()))
        assert not [child for child in multiprocessing.active_children() if child.name == INDEX_PROCESS]
    assert exports["beside"] == exports["without"] == exports["killed"]
    assert len(exports["without"][1]) >= 20  # the edited and verbatim copies
