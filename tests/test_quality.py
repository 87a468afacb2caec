"""Dataset-level quality measures (datagen/dataset/quality/): planted near-duplicates, template collapse and
contamination found with precision and recall >= 0.95 in text built from the project's own corpus (data/), unique
text never flagged, each flag explained, thresholds re-applied to stored pairs, and the edge cases."""

import random
import re
import subprocess
import sys

import numpy as np
import pytest

from datagen.dataset.quality import (NgramIndex, Protected, collapse, collapsed, compare, diversity_of, duplicates,
                                     lexical_pairs, semantic_pairs)
from datagen.dataset.quality import near_duplicates
from datagen.dataset.quality.diversity import compression_ratio, distinct_n, spread
from datagen.dataset.quality.near_duplicates import Pair, char_shingles, jaccard
from datagen.errors import InputError
from datagen.text import units

from .conftest import ROOT


def sentences(minimum=8, maximum=60) -> list[str]:
    """The distinct sentences of data/'s prose (the sample corpus and the reference texts), in a fixed order."""
    found, seen = [], set()
    for path in sorted((ROOT / "data").rglob("*.md")):
        for sentence in re.split(r"(?<=[.?!])\s+", path.read_text(encoding="utf-8")):
            sentence = " ".join(sentence.split()).lstrip("#- ")
            if minimum <= len(sentence.split()) <= maximum and sentence.lower() not in seen:
                seen.add(sentence.lower())
                found.append(sentence)
    return found


def edited(text: str, rng: random.Random, share: float = 0.1) -> str:
    """`text` with about `share` of its words edited: two swapped, one deleted, one inserted or one replaced."""
    words = text.split()
    for _ in range(max(1, round(share * len(words)))):
        i = rng.randrange(len(words) - 1)
        match rng.choice(["swap", "delete", "insert", "replace"]):
            case "swap":
                words[i], words[i + 1] = words[i + 1], words[i]
            case "delete":
                del words[i]
            case "insert":
                words.insert(i, rng.choice(["very", "still", "also", "then", "quite"]))
            case _:
                words[i] = rng.choice(["house", "stone", "light", "water", "green"])
    return " ".join(words)


def precision_recall(found: set, planted: set) -> tuple[float, float]:
    hits = len(found & planted)
    return hits / max(len(found), 1), hits / max(len(planted), 1)


@pytest.fixture(scope="module")
def planted():
    """Unique sentences, then an edited copy of every fifth: {copy's position: its original's position}."""
    base = sentences()
    rng = random.Random(7)
    copies = {len(base) + k: i for k, i in enumerate(range(0, len(base), 5))}
    return base + [edited(base[i], rng) for i in copies.values()], copies


def test_planted_near_duplicates_are_found_and_explained(planted):
    texts, copies = planted
    assert len(copies) >= 50
    pairs = lexical_pairs(texts)
    flagged = duplicates(len(texts), pairs)
    precision, recall = precision_recall({d.index for d in flagged}, set(copies))
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)
    for duplicate in flagged:
        if duplicate.index in copies:  # named with its original, and the similarity is the exact one
            assert duplicate.of == copies[duplicate.index] and duplicate.kind == "lexical"
            assert duplicate.similarity == round(jaccard(char_shingles(texts[duplicate.index]),
                                                         char_shingles(texts[duplicate.via])), 4)
    assert lexical_pairs(texts) == pairs and duplicates(len(texts), pairs) == flagged  # deterministic


def test_unique_texts_are_never_flagged():
    texts = sentences()
    assert len(texts) > 200
    assert duplicates(len(texts), lexical_pairs(texts)) == []


def test_a_threshold_is_reapplied_to_the_pairs_without_computing_them_again(planted):
    texts, _ = planted
    stored = lexical_pairs(texts)  # at the floor, 0.4
    for threshold in (0.5, 0.7, 0.9):
        again = duplicates(len(texts), stored, {"lexical": threshold})
        assert again == duplicates(len(texts), lexical_pairs(texts, floor=threshold), {"lexical": threshold})
    counts = [len(duplicates(len(texts), stored, {"lexical": t})) for t in (0.4, 0.6, 0.8, 1.0)]
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]


def test_a_chain_is_one_group_kept_by_its_first_and_each_names_its_nearest():
    pairs = [Pair(0, 2, 0.7, "lexical"), Pair(2, 5, 0.95, "lexical"), Pair(1, 3, 0.5, "lexical"),
             Pair(3, 4, 0.92, "semantic")]
    flagged = duplicates(6, pairs)
    assert [(d.index, d.of, d.via, d.similarity, d.kind) for d in flagged] == [
        (2, 0, 5, 0.95, "lexical"), (4, 3, 3, 0.92, "semantic"), (5, 0, 2, 0.95, "lexical")]
    assert duplicates(6, pairs, {"lexical": 0.6}) == flagged[:1] + flagged[2:]  # a kind not named does not count
    with pytest.raises(InputError, match="outside the 3 texts"):
        duplicates(3, pairs)


def test_edge_cases_empty_one_punctuation_and_scripts_without_spaces():
    assert lexical_pairs([]) == [] and lexical_pairs(["only one"]) == []
    assert lexical_pairs(["", "  ", "!!!", "...", ""]) == []  # nothing to compare is never a duplicate
    assert [(p.first, p.second) for p in lexical_pairs(["Hello, world!", "hello world", "HELLO WORLD."])] == \
        [(0, 1), (0, 2), (1, 2)]
    chinese = "灯塔看守人每天晚上都要点亮灯塔的灯，并在日志中记录天气和过往的船只。"
    thai = "ผู้ดูแลประภาคารจุดไฟทุกคืนและบันทึกสภาพอากาศกับเรือที่แล่นผ่านไปมา"
    other_thai = "ชาวประมงออกเรือตั้งแต่เช้ามืดเพื่อจับปลาในทะเลที่สงบ"
    texts = [chinese, chinese.replace("每天", "每日"), thai, thai.replace("ทุกคืน", "ทุกค่ำคืน"), other_thai]
    assert [(p.first, p.second) for p in lexical_pairs(texts) if p.similarity >= 0.6] == [(0, 1), (2, 3)]
    with pytest.raises(InputError, match="floor"):
        lexical_pairs(["a"], floor=0)


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_semantic_pairs_by_blocks_find_the_planted_neighbours(monkeypatch):
    rng = np.random.default_rng(0)
    base = unit(rng.normal(size=(600, 64)))
    near = unit(base[:60] + 0.03 * rng.normal(size=(60, 64)))
    matrix = np.vstack([base, near])
    whole = semantic_pairs(matrix)
    flagged = duplicates(len(matrix), whole)
    assert {(d.index, d.of) for d in flagged} == {(600 + i, i) for i in range(60)}
    assert all(abs(d.similarity - float(matrix[d.index] @ matrix[d.of])) < 1e-3 for d in flagged)
    monkeypatch.setattr(near_duplicates, "BLOCK_BYTES", 7 * 4 * len(matrix))  # 7 rows a block: blocks' edges
    assert semantic_pairs(matrix) == whole
    assert semantic_pairs(np.zeros((0, 64))) == [] and semantic_pairs(matrix[:1]) == []
    with pytest.raises(InputError, match="2-D"):
        semantic_pairs(matrix[0])


def test_semantic_near_duplicates_of_real_embeddings():
    overlap = pytest.importorskip("datagen.metrics.overlap")
    if not overlap.embedding_available():
        pytest.skip("the embedding model is not installed")
    base = sentences(12, 40)[:80]
    rng = random.Random(3)
    copies = {len(base) + k: i for k, i in enumerate(range(0, len(base), 4))}
    texts = base + [edited(base[i], rng, 0.05) for i in copies.values()]
    flagged = duplicates(len(texts), semantic_pairs(overlap.embed(texts)))
    precision, recall = precision_recall({d.index for d in flagged}, set(copies))
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)


# --- diversity ------------------------------------------------------------------------------------------------------

def test_distinct_n_compression_and_spread_are_what_they_say():
    assert distinct_n([["a", "b", "a"], ["b", "a"]], 1) == 2 / 5
    assert distinct_n([["a", "b", "a"], ["b", "a"]], 2) == 2 / 3  # "a b", "b a", "b a": n-grams inside each text
    assert distinct_n([["a"]], 2) is None and compression_ratio(["", ""]) is None
    texts = sentences()
    assert compression_ratio(texts[:1] * len(texts)) > 3 * compression_ratio(texts)  # repeats compress
    rng = np.random.default_rng(1)
    rows = unit(rng.normal(size=(40, 16)))
    cosines = rows @ rows.T
    assert spread(rows) == pytest.approx(1 - (cosines.sum() - 40) / (40 * 39), abs=1e-4)
    assert spread(np.repeat(rows[:1], 5, axis=0)) == pytest.approx(0, abs=1e-4) and spread(rows[:1]) is None


def test_planted_template_collapse_is_found_and_natural_text_is_not():
    texts = sentences()
    rng = random.Random(5)
    formulas = ["Here is a rephrased version of the passage:", "Sure! Here is the rewritten text:"]
    planted = set(rng.sample(range(len(texts)), len(texts) // 4))
    samples = [f"{formulas[i % 2]} {text}" if i in planted else text for i, text in enumerate(texts)]
    precision, recall = precision_recall(set(collapsed(samples)), planted)
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)
    verdict = collapse(diversity_of(samples))
    assert verdict and "'here is a'" in verdict and "'sure here is'" in verdict
    assert collapse(diversity_of(texts)) is None and collapsed(texts) == []
    comparison = compare(samples, texts)
    assert any("template collapse" in line for line in comparison.narrowed)
    assert comparison.samples.measured_units == comparison.source.measured_units  # the same budget for both
    assert compare(texts[::-1], texts).narrowed == ()


def test_diversity_edge_cases():
    empty = diversity_of([])
    assert (empty.texts, empty.distinct_1, empty.openings, empty.spread) == (0, None, (), None)
    one = diversity_of(["one short text"], np.ones((1, 4)) / 2)
    assert one.distinct_1 == 1.0 and one.spread is None and one.openings[0].text == "one short text"
    cjk = diversity_of(["灯塔看守人每天晚上", "灯塔看守人记录天气"])  # a character a unit: an opening of three
    assert cjk.openings[0].text == "灯 塔 看" and cjk.openings[0].count == 2
    assert collapse(diversity_of(["same start here", "same start there"])) is None  # two texts: no template
    big = diversity_of(sentences(), budget=500)
    assert big.measured_units == 500 and big == diversity_of(sentences(), budget=500)  # deterministic draw
    with pytest.raises(InputError, match="one row a text"):
        diversity_of(["a", "b"], np.ones((3, 4)))
    with pytest.raises(InputError, match="budget"):
        diversity_of(["a"], budget=0)


# --- contamination ----------------------------------------------------------------------------------------------

def contaminated_corpus():
    """Protected passages (sentences of data/) and samples: clean sentences, and samples quoting 13-20 words of a
    protected passage inside other text: {sample position: protected source}."""
    texts = sentences(20, 80)
    rng = random.Random(11)
    protected = [Protected(f"held-out {i}", text) for i, text in enumerate(texts[:60])]
    clean = sentences(8, 19)[:300]
    samples, planted = list(clean), {}
    for k in range(60):
        words = protected[k].text.split()
        start = rng.randrange(len(words) - 13)
        quote = " ".join(words[start:start + rng.randint(13, 20)])
        planted[len(samples)] = protected[k].source
        samples.append(f"{clean[k]} {quote} {clean[-k - 1]}")
    return protected, samples, planted


def test_planted_contamination_is_found_and_named():
    protected, samples, planted = contaminated_corpus()
    found = NgramIndex(protected).check(samples)
    precision, recall = precision_recall({c.index for c in found}, set(planted))
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)
    assert all(c.source == planted[c.index] and 1 <= c.shared and 0 < c.share < 1 for c in found
               if c.index in planted)
    assert NgramIndex(protected).check(samples) == found  # deterministic
    first, second = protected[0].text.split(), protected[1].text.split()
    both = " ".join(first[:14] + ["and"] + second[:20])  # 2 of the first's 13-grams, 8 of the second's
    assert [(c.source, c.shared) for c in NgramIndex(protected).check([both])] == [(protected[1].source, 8)]


def test_contamination_short_texts_scripts_and_n():
    protected = [Protected("eval: capital", "Paris"),
                 Protected("eval: question", "Which keeper lit the lamp on the northern tower each night?"),
                 Protected("dev: chinese", "灯塔看守人每天晚上都要点亮灯塔的灯并在日志中记录天气")]
    index = NgramIndex(protected)
    samples = ["paris", "I went to Paris in May.",  # a one-word text flags only its equal
               "Q: which keeper lit the lamp on the northern tower each night? A: Hal.",
               "他说灯塔看守人每天晚上都要点亮灯塔的灯。", "", "Which keeper lit the lamp?"]
    chinese_grams = len(units(protected[2].text)) - 12  # a character a unit: its 13-grams
    shared = len(units("灯塔看守人每天晚上都要点亮灯塔的灯")) - 12  # the sample's 13-grams, all the protected text's
    assert [(c.index, c.source, c.shared, c.share) for c in index.check(samples)] == [
        (0, "eval: capital", 1, 1.0), (2, "eval: question", 1, 1.0),
        (3, "dev: chinese", shared, round(shared / chinese_grams, 4))]
    eight = NgramIndex(protected, n=8).check(["the lamp on the northern tower each night, said he"])  # 8 words of 11
    assert [(c.source, c.shared, c.share) for c in eight] == [("eval: question", 1, 0.25)]  # 1 of its 4 8-grams
    assert NgramIndex([]).check(samples) == []
    with pytest.raises(InputError, match="5 to 50"):
        NgramIndex(protected, n=3)
    with pytest.raises(InputError, match="min_shared"):
        index.check(samples, min_shared=0)


def test_contamination_does_not_depend_on_the_hash_seed():
    """The index hashes n-grams with Python's salted hash: the flags must be the same whatever the salt."""
    script = ("from tests.test_quality import contaminated_corpus\nfrom datagen.dataset.quality import NgramIndex\n"
              "p, s, _ = contaminated_corpus()\nprint(NgramIndex(p).check(s))")
    runs = {subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                           env={"PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}).stdout
            for seed in ("1", "2")}
    assert len(runs) == 1 and "Contamination(" in runs.pop()


def shared_grams(tokens, n):
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def reference_check(protected, samples, n=13, min_shared=1):
    """The contamination test as the module's docstring states it, one sample and one protected text at a time."""
    found = []
    for index, sample in enumerate(samples):
        own, best = units(sample), None
        for owner, item in enumerate(protected):
            theirs = units(item.text)
            if len(theirs) >= n:
                grams = shared_grams(theirs, n)
                shared = len(grams & shared_grams(own, n))
            elif len(theirs) >= 8 or (theirs and theirs == own):  # looked for whole (a short text: only equal)
                grams = {tuple(theirs)}
                shared = int(tuple(theirs) in shared_grams(own, len(theirs)) if len(theirs) >= 8 else 1)
            else:
                continue
            if shared and (best is None or shared > best[2]):
                best = (index, item.source, shared, round(shared / len(grams), 4))
        if best and best[2] >= min_shared:
            found.append(best)
    return found


def test_contamination_flags_what_one_text_at_a_time_flags():
    """The index looks every sample's keys up at once, in batches: the same flags, source, counts and shares as a
    sample checked against each protected text in turn, ties to the earlier text."""
    rng = random.Random(3)
    words = [f"w{i}" for i in range(30)]

    def text(length):
        return " ".join(rng.choice(words) for _ in range(length))
    for _ in range(60):
        protected = [Protected(f"p{i}", text(rng.choice([1, 8, 10, 13, 20, 40]))) for i in range(rng.randrange(8))]
        samples = [text(rng.choice([0, 1, 8, 13, 30])) for _ in range(rng.randrange(40))]
        samples = [f"{sample} {rng.choice(protected).text} {text(3)}" if protected and rng.random() < 0.4 else sample
                   for sample in samples]
        for n, least in ((13, 1), (8, 2)):
            flags = [(c.index, c.source, c.shared, c.share) for c in NgramIndex(protected, n).check(samples, least)]
            assert flags == reference_check(protected, samples, n, least)
    first, second = (Protected(f"p{i}", " ".join(f"{i}x{j}" for j in range(20))) for i in (1, 2))
    tied = [f"{second.text} and {first.text}", f"{first.text} and {second.text[:40]}"]  # 8 and 8; 8 and fewer
    assert [(c.index, c.source, c.shared) for c in NgramIndex([first, second]).check(tied)] == [
        (0, "p1", 8), (1, "p1", 8)]


def test_contamination_checks_more_texts_than_one_batch(monkeypatch):
    from datagen.dataset.quality import contamination
    protected, samples, _ = contaminated_corpus()
    found = NgramIndex(protected).check(samples)
    monkeypatch.setattr(contamination, "_CHECKED_AT_ONCE", 7)
    assert NgramIndex(protected).check(samples) == found and found


def test_distinct_n_counts_what_a_set_of_n_grams_counts():
    """Units numbered and n-grams counted by numpy: the figures of a set of tuples, for any n, vocabulary and
    lengths (an n-gram never crosses two texts)."""
    rng = random.Random(2)
    for _ in range(300):
        vocabulary = rng.choice([1, 2, 5, 1000])
        lists = [[str(rng.randrange(vocabulary)) for _ in range(rng.choice([0, 1, 2, 3, 20]))]
                 for _ in range(rng.randrange(6))]
        for n in (1, 2, 3, 13):
            grams = [gram for tokens in lists for gram in shared_grams(tokens, n) if len(tokens) >= n]
            count = sum(max(len(tokens) - n + 1, 0) for tokens in lists)
            expected = len({gram for tokens in lists for gram in shared_grams(tokens, n)}) / count if count else None
            assert distinct_n(lists, n) == expected, (lists, n, grams)
    wide = [[f"w{i}-{j}" for j in range(40)] for i in range(200)] * 2  # 8,000 units: 5-grams past one number
    assert distinct_n(wide, 5) == 0.5 and distinct_n(wide, 1) == 0.5


def test_text_units_are_units_kept_as_far_as_there_is_room():
    from datagen.dataset.quality.text_units import TextUnits, ngram_keys
    texts = sentences()[:50]
    known = TextUnits(kept=sum(len(units(text)) for text in texts[:10]))
    for text in texts:
        assert known(text) == units(text)
        assert sorted(known.ngrams(text, 13).tolist()) == sorted(ngram_keys(units(text), 13))
    assert all(known(text) is known(text) for text in texts[:10])  # kept: one list
    assert known(texts[20]) is not known(texts[20])  # past the room: read again, the same units


def test_an_opening_the_source_shares_is_not_a_template_the_pipeline_made():
    """style_clone's outputs are the chunks: a corpus whose reports all open alike is not a collapse; a formula the
    pipeline put before them is."""
    source = [f"The harbour was {word} today, and the boats stayed {word} in the bay" for word in
              "calm rough grey busy quiet empty full cold warm wet".split()]
    source += [f"Another line, number {i}, about ships and the sea" for i in range(10)]
    assert collapse(compare(source, source).samples) is not None  # alone, the opening is over the bar...
    assert not any("template collapse" in line for line in compare(source, source).narrowed)  # ...and inherited
    formulaic = compare([f"Here is a plain version: {text}" for text in source], source).narrowed
    assert any(line.startswith("template collapse: 'here is a' (100%)") for line in formulaic), formulaic


def test_each_field_beside_the_source_reads_every_text_once(monkeypatch):
    from datagen.dataset.quality import compare_each
    from datagen.dataset.quality import diversity

    source = sentences()[:120]
    fields = {"input": [f"Question {i}: what did {text[:40]}" for i, text in enumerate(source)],
              "output": [text.upper() for text in source[::-1]]}
    expected = {name: compare(texts, source, budget=500) for name, texts in fields.items()}
    read = []
    monkeypatch.setattr(diversity, "units", lambda text: read.append(text) or units(text))
    assert compare_each(fields, source, budget=500) == expected  # the same figures as field by field
    long = [text for text in [*source, *fields["input"], *fields["output"]] if len(text) > 200]
    assert len(read) == 3 * len(source) + len(long)  # a text once (and a long one's opening, cut as opening_of cuts)
    itself = compare(source, source, budget=500)
    read.clear()  # a field that is the source itself (style_clone's output) is read, and measured, once
    assert compare_each({"output": list(source)}, source, budget=500) == {"output": itself}
    assert len(read) == len(source) + len([text for text in source if len(text) > 200])
