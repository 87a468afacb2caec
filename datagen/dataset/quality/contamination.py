"""Contamination: samples that share word n-grams with protected text (the dev set, the held-out split's chunks, the
evaluation files a user names), which a model must not be trained on if it is to be measured on them.

The test is lm-evaluation-harness's decontamination and GPT-3's (Brown et al. 2020, appendix C): a sample is
contaminated by a protected text when they share a 13-gram; open-r1 uses 8-grams. `n` is configurable (default 13).
Text is normalised as lm-eval's janitor does, case-folded with punctuation dropped, into datagen.text.units: words,
split also at hyphens and apostrophes (the janitor deletes them, joining the parts), and one character a unit in
Chinese, Japanese, Thai and the other scripts that do not space their words (the janitor would make a whole
sentence of them one word), so that 13 units there are a phrase.

A text shorter than n units has no n-gram. A protected text of SHORT_MIN (8) units or more but fewer than n is
looked for whole: a sample holding its units in a row is contaminated by it (a short evaluation question quoted).
One shorter still (a one-word answer, "Paris") flags only a sample that is the same text whole: as a phrase it is
in countless innocent samples. A sample shorter than n is flagged by a protected text it equals, or one of SHORT_MIN
units or more that it holds; a short sample inside a long protected passage is not flagged (n-gram tests cannot
tell a copied clause from a common one, which is why n is 8 to 13).

Rows to store (a `contamination` table, one a flagged sample and field): sample TEXT (its id), field TEXT, source
TEXT (the protected text, as `Protected.source` names it: "dev set: data/dev.jsonl:3", "held-out chunk c0041",
"eval file: exam.jsonl:12"), shared INTEGER, share REAL, n INTEGER.
"""

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from datagen.errors import InputError
from datagen.dataset.quality.text_units import TextUnits, ngram_keys

DEFAULT_N = 13
# Whole protected texts looked for inside samples from this length: the low end of the 8-13 range.
SHORT_MIN = 8
# Texts whose keys are looked up together: a numpy call for many, not a few calls a text, with their keys' arrays
# bounded (some 2 MB of keys for texts of 100 words). 10,240 texts of 30 words against 256 protected ones: 24 ms with
# their units and 13-grams kept (a `TextUnits`), against 266 ms for the check that looked each text up alone.
_CHECKED_AT_ONCE = 2048
# n outside this range is refused: below it common phrases overlap by chance, above it a reworded copy escapes.
N_RANGE = (5, 50)


@dataclass(frozen=True)
class Protected:
    """A text a model must not train on: `source` names it in reports ("dev set: data/dev.jsonl:3"), `text`."""

    source: str
    text: str


@dataclass(frozen=True)
class Contamination:
    """A contaminated text: position `index` of the texts checked, `source` the protected text it shares the most
    n-grams with, `shared` how many of that text's distinct n-grams (or its whole, when short: 1) the sample holds,
    and `share` their part of all of them (1.0: the protected text is in the sample whole)."""

    index: int
    source: str
    shared: int
    share: float


class NgramIndex:
    """Protected texts' n-grams, to check samples against (sorted numpy arrays: 16 bytes an n-gram).

    Args:
        protected: the texts to protect; an n-gram held by several counts for the first.
        n: the n-gram length in units (default 13, as lm-eval and GPT-3; open-r1 uses 8).
        known: where texts' units and n-grams are read (and kept); None: computed afresh.

    Raises:
        InputError: `n` outside N_RANGE (5 to 50).
    """

    def __init__(self, protected: Iterable[Protected], n: int = DEFAULT_N, known: TextUnits | None = None):
        if not N_RANGE[0] <= n <= N_RANGE[1]:
            raise InputError(f"a contamination n-gram length must be {N_RANGE[0]} to {N_RANGE[1]} words, not {n}")
        self.n = n
        self._known = known or TextUnits()
        self.sources: list[str] = []
        self._sizes: list[int] = []  # each protected text's number of keys
        self._short_lengths: set[int] = set()  # lengths of protected texts looked for whole inside samples
        keys, owners = [], []
        for owner, item in enumerate(protected):
            own = self._protected_keys(self._known(item.text))
            self.sources.append(item.source)
            self._sizes.append(len(own))
            keys.append(np.fromiter(own, dtype=np.int64, count=len(own)))
            owners.append(np.full(len(own), owner, dtype=np.int64))
        all_keys = np.concatenate(keys) if keys else np.empty(0, dtype=np.int64)
        all_owners = np.concatenate(owners) if owners else np.empty(0, dtype=np.int64)
        order = np.lexsort((all_owners, all_keys))  # by key, then owner: the first owner of a key comes first
        self._keys, first = np.unique(all_keys[order], return_index=True)
        self._owners = all_owners[order][first]

    def _protected_keys(self, tokens: list[str]) -> set[int]:
        if len(tokens) >= self.n:
            return ngram_keys(tokens, self.n)
        if len(tokens) >= min(SHORT_MIN, self.n):
            self._short_lengths.add(len(tokens))
        return {hash(tuple(tokens))} if tokens else set()

    def _sample_keys(self, text: str) -> np.ndarray:
        """The keys a sample is looked up by: its n-grams, itself whole when shorter than n, and its runs of the
        length of each short protected text; distinct."""
        found = self._known.ngrams(text, self.n)
        tokens = self._known(text)
        more = {hash(tuple(tokens))} if 0 < len(tokens) < self.n else set()
        for length in self._short_lengths:
            more |= ngram_keys(tokens, length)
        return np.union1d(found, np.fromiter(more, dtype=np.int64, count=len(more))) if more else found

    def check(self, texts: Sequence[str], min_shared: int = 1) -> list[Contamination]:
        """The contaminated texts among `texts`, by position.

        Args:
            texts: one field of every sample (check input and output each).
            min_shared: the fewest shared n-grams with one protected text that flag (default 1: one 13-gram, as
                lm-eval and GPT-3); a whole short protected text counts as one.

        Raises:
            InputError: `min_shared` below 1.
        """
        if min_shared < 1:
            raise InputError(f"min_shared must be at least 1 shared n-gram, not {min_shared}")
        if not self._keys.size:
            return []
        flagged = []
        for start in range(0, len(texts), _CHECKED_AT_ONCE):
            batch = [self._sample_keys(text) for text in texts[start:start + _CHECKED_AT_ONCE]]
            flagged += [Contamination(start + index, self.sources[owner], shared,
                                      round(shared / self._sizes[owner], 4))
                        for index, owner, shared in self._matches(batch) if shared >= min_shared]
        return flagged

    def _matches(self, keys: list[np.ndarray]) -> Iterator[tuple[int, int, int]]:
        """(position in `keys`, the protected text sharing the most of its keys, how many; the earlier on a tie)
        for each of `keys` (each text's distinct keys) that shares any: every text's keys looked up at once."""
        wanted = np.concatenate(keys) if keys else np.empty(0, dtype=np.int64)
        at = np.minimum(np.searchsorted(self._keys, wanted), self._keys.size - 1)
        hit = self._keys[at] == wanted
        sample = np.repeat(np.arange(len(keys)), [len(own) for own in keys])[hit]
        width = len(self.sources)
        pairs, shared = np.unique(sample * width + self._owners[at[hit]], return_counts=True)
        sample, owner = np.divmod(pairs, width)
        order = np.lexsort((owner, -shared, sample))  # by text, then the most shared, then the earlier owner
        sample, owner, shared = sample[order], owner[order], shared[order]
        first = np.flatnonzero(np.r_[True, sample[1:] != sample[:-1]]) if sample.size else sample
        return zip(sample[first].tolist(), owner[first].tolist(), shared[first].tolist())
