"""Content coverage and new wording: two cheap lexical checks of a rewrite against the chunk it was made from.

A rewrite should carry the chunk's content, all of it and nothing else, in words of its own. The embedding
similarity says whether two texts are about the same thing, but barely sees that half of the content is missing
or that sentences were added, and a copy scores best of all; the stylometric genericness rates anything unlike
the author as generic, content-free text (a placeholder, gibberish, a stock sentence) included. Measured on
human plain rewrites of styled passages (docs/metrics.md, bench/metric_validity.py), these two close the gaps:

- `coverage`: the F-measure of the content words the rewrite shares with the chunk (recall: the share of the
  chunk's content words the rewrite carries; precision: the share of the rewrite's content words the chunk
  supports), times the fourth root of the ratio of their lengths in words (shorter over longer: a length penalty
  like BLEU's brevity penalty, on both sides, since a rewrite that drops or adds content changes length even where
  its words are synonyms the lexical match misses; the root keeps it mild, as a plain rewrite may be a good deal
  shorter or longer than a terse or wordy original, and padding a short rewrite brings its length nearer the
  chunk's). Half a rewrite covers about half; a rewrite padded with other
  sentences loses precision; gibberish, a placeholder or a stock text share no content word and score 0.
- `novelty`: the share of the rewrite's word pairs (bigrams) that are not the chunk's: an unchanged copy scores 0.
  It is also a gate (`floor`): below 0.15 it scales the whole composite down (datagen.metrics.composite), since a
  rewrite that reuses nearly every word pair of its chunk has not been rewritten, whatever else it scores.

Content words are the words (letters or digits) that are not function words (datagen.metrics.stylometry's list,
with the archaic ones of older English prose and verse: "thou", "hath", "unto", ...), lower-cased and cut to
their first 5 characters, a crude stemmer that matches "rejoices" with "rejoiceth" and "walked" with "walking"
(truncation stemming; in information retrieval it does about as well as a rule-based stemmer for English). The
two take about 1.5 ms a sample together on a 10-verse passage (measured on a loaded 2-core machine; the
chunk's words are kept between its samples).
"""

import functools
from collections import Counter

import regex

from datagen.samples import Sample
from datagen.metrics.base import Score
from datagen.metrics.stylometry import FUNCTION_WORDS

# A sentence ends at '.', '!' or '?' (with any closing quotes or brackets) followed by white space.
_SENTENCE_END = regex.compile(r"(?<=[.!?][\"'’”)\]]*)\s+")
_WORD = regex.compile(r"\p{L}+(?:['’]\p{L}+)*|\p{N}+")
# Function words of Early Modern English (the King James Bible, Shakespeare, older novels' dialogue).
_ARCHAIC = ("thee", "thou", "thy", "thine", "ye", "hath", "hast", "doth", "dost", "art", "shalt", "wilt", "unto",
            "thereof", "wherefore", "whence", "whither", "ere", "nay", "yea")
STOP_WORDS = frozenset(FUNCTION_WORDS) | frozenset(_ARCHAIC)
STEM_CHARS = 5


def sentences(text: str) -> list[str]:
    """`text` cut into sentences (at '.', '!' or '?' and any closing quotes, followed by white space); a text with
    no such end is one sentence; [] for blank text."""
    return [s for s in (part.strip() for part in _SENTENCE_END.split(text)) if s]


@functools.lru_cache(maxsize=4096)
def words(text: str) -> tuple[str, ...]:
    """The words of `text` (runs of letters, with inner apostrophes, or of digits), lower-cased. Kept: a chunk is
    compared with each of its samples."""
    return tuple(w.replace("’", "'") for w in _WORD.findall(text.lower()))


@functools.lru_cache(maxsize=4096)
def content_words(text: str) -> Counter:
    """How often each content word of `text` occurs: its words less STOP_WORDS (and any "'s" or "n't" ending),
    each cut to its first STEM_CHARS characters. Kept, like `words`: do not change the Counter returned."""
    return Counter(w.split("'")[0][:STEM_CHARS] for w in words(text) if w.split("'")[0] not in STOP_WORDS)


@functools.lru_cache(maxsize=4096)
def _bigrams(text: str) -> Counter:
    tokens = words(text)
    return Counter(zip(tokens, tokens[1:]))


def coverage(chunk: str, rewrite: str) -> tuple[float, float, float]:
    """(recall, precision, length ratio) of `rewrite` against `chunk`: the share of the chunk's content words
    (counted with repeats) that the rewrite has, the share of the rewrite's that the chunk has, and the shorter's
    length in words over the longer's. 0s for a text with no content word (or no word)."""
    ours, theirs = content_words(chunk), content_words(rewrite)
    a, b = len(words(chunk)), len(words(rewrite))
    if not ours or not theirs:
        return 0.0, 0.0, min(a, b) / max(a, b, 1)
    shared = sum((ours & theirs).values())
    return shared / sum(ours.values()), shared / sum(theirs.values()), min(a, b) / max(a, b)


class ContentCoverage:
    """How much of the chunk's content the input carries, and nothing else: F1 of shared content words (recall
    against the chunk, precision against the input) times the fourth root of the length ratio (see the module's
    doc)."""

    name, kind, aspect = "coverage", "offline", "content"

    def __call__(self, chunk: str, sample: Sample) -> Score:
        recall, precision, ratio = coverage(chunk, sample.input)
        f1 = 2 * recall * precision / (recall + precision) if recall + precision else 0.0
        return Score(f1 * ratio ** 0.25, f"the input carries {recall:.0%} of the chunk's content words and "
                                         f"{precision:.0%} of its own are the chunk's; the shorter of the two is "
                                         f"{ratio:.0%} of the longer's length")


def bigram_overlap(chunk: str, rewrite: str) -> float:
    """The share of `rewrite`'s word pairs (consecutive words, counted with repeats) that are also `chunk`'s;
    1 for a rewrite of fewer than two words that are the chunk's, 0 for one that are not."""
    ours, theirs = words(chunk), words(rewrite)
    if len(theirs) < 2:
        return float(bool(theirs) and all(w in ours for w in theirs))
    pairs = _bigrams(rewrite)
    return sum((_bigrams(chunk) & pairs).values()) / sum(pairs.values())


class Novelty:
    """The share of the input's word pairs that are not the chunk's: how much of the wording is new (a copy: 0).

    `floor`: below it the metric gates the composite (datagen.metrics.composite.Composite scales the weighted mean
    by min(1, novelty / floor)). 0.15: 99% of the human plain rewrites of two Bible verses have more new wording than
    that (the fewest: 9%, in a modern version that kept most of the old wording), and a copy with a word or two
    changed has less."""

    name, kind, aspect = "novelty", "offline", "genericness"
    floor = 0.15

    def __call__(self, chunk: str, sample: Sample) -> Score:
        new = 1.0 - bigram_overlap(chunk, sample.input)
        return Score(new, f"{new:.0%} of the input's word pairs are not the chunk's")
