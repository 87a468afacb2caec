import random
import re

import pytest

from datagen.chunking import Chunker, chunk_documents, chunk_id
from datagen.ingest import Document, read_text
from datagen.tokens import count_tokens

from .conftest import SAMPLES

SAMPLE = SAMPLES / "lighthouse_keeper.md"
WORDS = "keeper lamp sea gale bell ship reef tide rope oil wick glass storm gull fog".split()


def synthetic_text(seed: int, paragraphs: int = 30) -> str:
    """Paragraphs of sentences that each end in ".", "!" or "?" (no word pysbd reads as an abbreviation)."""
    rng = random.Random(seed)
    out = []
    for _ in range(paragraphs):
        sentences = []
        for _ in range(rng.randint(1, 12)):
            words = [rng.choice(WORDS) for _ in range(rng.randint(3, 25))]
            words[0] = words[0].capitalize()
            if rng.random() < 0.2:
                words.insert(1, "— “Étienne’s café”,")
            sentences.append(" ".join(words) + rng.choice(".!?"))
        out.append(" ".join(sentences))
    return "\n\n".join(out) + "\n"


@pytest.mark.parametrize("budget", [32, 64, 200, 512])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_offsets_recover_text_and_budget_is_respected(seed, budget):
    text = synthetic_text(seed)
    chunks = list(Chunker(budget).chunks(Document("s.txt", text)))
    assert chunks
    for c in chunks:
        assert text[c.start:c.end] == c.text
        assert c.tokens == count_tokens(c.text) <= budget
    # Chunks are in order, do not overlap, and together cover every non-space character.
    assert all(a.end <= b.start for a, b in zip(chunks, chunks[1:]))
    covered = "".join(c.text for c in chunks)
    assert re.sub(r"\s", "", covered) == re.sub(r"\s", "", text)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_mid_sentence_break_when_sentences_fit(seed):
    text = synthetic_text(seed)
    longest_sentence = max(count_tokens(s) for s in re.findall(r"[^.!?]+[.!?]", text))
    budget = max(longest_sentence, 40)
    for c in Chunker(budget).chunks(Document("s.txt", text)):
        assert c.text[-1] in ".!?", f"chunk ends mid-sentence: {c.text[-40:]!r}"
        assert c.text[0].isupper(), f"chunk starts mid-sentence: {c.text[:40]!r}"


def test_paragraph_boundaries_are_preferred_over_sentence_boundaries():
    paragraphs = ["One short paragraph here. It has two sentences.", "Second paragraph, also short.",
                  "Third one. With two."]
    text = "\n\n".join(paragraphs)
    budget = count_tokens("\n\n".join(paragraphs[:2])) + 1
    chunks = list(Chunker(budget).chunks(Document("p.txt", text)))
    assert [c.text for c in chunks] == ["\n\n".join(paragraphs[:2]), paragraphs[2]]


def test_sentence_longer_than_budget_is_cut_at_spaces():
    sentence = " ".join(f"word{i}" for i in range(400)) + "."
    chunks = list(Chunker(50).chunks(Document("long.txt", sentence)))
    assert len(chunks) > 1
    assert all(c.tokens <= 50 for c in chunks)
    assert all(re.fullmatch(r"(word\d+ )*word\d+\.?", c.text) for c in chunks)


def test_unbroken_text_longer_than_budget_is_cut_anywhere():
    text = "é" * 3000
    chunks = list(Chunker(40).chunks(Document("x.txt", text)))
    assert "".join(c.text for c in chunks) == text
    assert all(c.tokens <= 40 for c in chunks)


def test_markdown_heading_never_ends_a_chunk():
    text = read_text(SAMPLE)
    chunks = list(Chunker(300).chunks(Document("s.md", text)))
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert len(headings) >= 3
    for c in chunks:
        assert not c.text.splitlines()[-1].startswith("#")
    assert sum(c.text.count("\n#") + c.text.startswith("#") for c in chunks) == len(headings)


def test_ids_are_content_hashes_and_stable():
    text = synthetic_text(7)
    first = [c.id for c in Chunker(128).chunks(Document("a.txt", text))]
    again = [c.id for c in Chunker(128).chunks(Document("elsewhere/b.txt", text))]
    assert first == again
    assert len(set(first)) == len(first)
    assert first[0] == chunk_id(next(Chunker(128).chunks(Document("a.txt", text))).text)


def test_repeated_passages_are_dropped_across_documents(caplog):
    text = synthetic_text(5, paragraphs=3)
    chunks = list(chunk_documents([Document("a.txt", text), Document("b.txt", text)], 512))
    assert [c.source for c in chunks] == ["a.txt"] * len(chunks)
    assert "repeats an earlier chunk" in caplog.text


def test_unicode_and_crlf_survive_exactly(tmp_path):
    text = "“Curly quotes” — em dash, naïve café, Ünïcödé.\r\n\r\nSecond paragraph: ‘single’ quotes…\r\n"
    path = tmp_path / "u.txt"
    path.write_bytes(text.encode("utf-8"))
    decoded = read_text(path)
    chunks = list(Chunker(20).chunks(Document("u.txt", decoded)))
    assert decoded == text
    assert [c.text for c in chunks] == ["“Curly quotes” — em dash, naïve café, Ünïcödé.",
                                        "Second paragraph: ‘single’ quotes…"]
    for c in chunks:
        assert decoded[c.start:c.end] == c.text


def test_sample_corpus_chunks_at_default_budget():
    text = read_text(SAMPLE)
    chunks = list(Chunker().chunks(Document("s.md", text)))
    assert 4 <= len(chunks) <= 20
    assert all(c.tokens <= 512 for c in chunks)
