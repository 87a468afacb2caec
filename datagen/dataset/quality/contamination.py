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

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from datagen.errors import InputError
from datagen.text import units

DEFAULT_N = 13
# Whole protected texts looked for inside samples from this length: the low end of the 8-13 range.
SHORT_MIN = 8
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


def _keys(tokens: Sequence[str], size: int) -> set[int]:
    """The hashes of `tokens`' `size`-grams (Python's hash of a tuple: equal within a process, which is all an
    index built and read in one process needs)."""
    return {hash(tuple(tokens[i:i + size])) for i in range(len(tokens) - size + 1)}


class NgramIndex:
    """Protected texts' n-grams, to check samples against (sorted numpy arrays: 16 bytes an n-gram).

    Args:
        protected: the texts to protect; an n-gram held by several counts for the first.
        n: the n-gram length in units (default 13, as lm-eval and GPT-3; open-r1 uses 8).

    Raises:
        InputError: `n` outside N_RANGE (5 to 50).
    """

    def __init__(self, protected: Iterable[Protected], n: int = DEFAULT_N):
        if not N_RANGE[0] <= n <= N_RANGE[1]:
            raise InputError(f"a contamination n-gram length must be {N_RANGE[0]} to {N_RANGE[1]} words, not {n}")
        self.n = n
        self.sources: list[str] = []
        self._sizes: list[int] = []  # each protected text's number of keys
        self._short_lengths: set[int] = set()  # lengths of protected texts looked for whole inside samples
        keys, owners = [], []
        for owner, item in enumerate(protected):
            own = self._protected_keys(units(item.text))
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
            return _keys(tokens, self.n)
        if len(tokens) >= min(SHORT_MIN, self.n):
            self._short_lengths.add(len(tokens))
        return {hash(tuple(tokens))} if tokens else set()

    def _sample_keys(self, tokens: list[str]) -> set[int]:
        found = _keys(tokens, self.n) | ({hash(tuple(tokens))} if 0 < len(tokens) < self.n else set())
        for length in self._short_lengths:
            found |= _keys(tokens, length)
        return found

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
        flagged = []
        for index, text in enumerate(texts):
            found = self._matches(self._sample_keys(units(text)))
            if found and found[1] >= min_shared:
                owner, shared = found
                flagged.append(Contamination(index, self.sources[owner], shared,
                                             round(shared / self._sizes[owner], 4)))
        return flagged

    def _matches(self, keys: set[int]) -> tuple[int, int] | None:
        """(the protected text sharing the most of `keys`, how many; the earlier on a tie), or None."""
        if not keys or not self._keys.size:
            return None
        wanted = np.fromiter(keys, dtype=np.int64, count=len(keys))
        at = np.minimum(np.searchsorted(self._keys, wanted), self._keys.size - 1)
        owners = self._owners[at[self._keys[at] == wanted]]
        if not owners.size:
            return None
        counts = Counter(owners.tolist())
        owner = min(counts, key=lambda o: (-counts[o], o))
        return owner, counts[owner]
