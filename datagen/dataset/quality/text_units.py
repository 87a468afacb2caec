"""Each text's units (datagen.text.units) and word n-gram keys, computed once a text and kept (`TextUnits`).

A run's screening reads each sample's units three times (its field's diversity, its contamination, the source
chunks' for the held-out split) and its n-grams once; at 640 samples that reading was 40 of the export's 130 ms of
screening (`PROFILE=40 python -m bench.phase_cpu 32 20`). The near-duplicate index's process beside a run
(datagen.runs.screening) fills a `TextUnits` as each sample is recorded, while the run waits on the model, so that
the export's measure there only looks them up.
"""

from collections.abc import Iterable, Sequence

import numpy as np

from datagen.text import units

# The most units a `TextUnits` keeps: 26 to 33 bytes a unit with its 13-gram keys (`python -m bench.screen_cost`),
# and its text's own bytes (some 6 a unit) besides: 40 MB at most, 3,300 samples of 100 words with their chunks. A
# text read past it is read again each time it is asked.
KEPT_UNITS = 1_000_000


def ngram_keys(tokens: Sequence[str], size: int) -> set[int]:
    """The hashes of `tokens`' `size`-grams (Python's hash of a tuple: equal within a process, which is all an
    index built and read in one process needs)."""
    return {hash(tuple(tokens[i:i + size])) for i in range(len(tokens) - size + 1)}


class TextUnits:
    """`units(text)` and the text's n-gram keys, computed once a text and kept, for KEPT_UNITS units in all.

    Call it as `units` (`known(text)`: the text's units, the same list each time it is kept: do not change it);
    `ngrams(text, n)` gives the hashes of its n-grams, distinct, as a numpy int64 array.

    Args:
        kept: the most units kept (default KEPT_UNITS); a text past them is computed each time it is asked.
    """

    def __init__(self, kept: int = KEPT_UNITS):
        self._units: dict[str, list[str]] = {}
        self._ngrams: dict[tuple[str, int], np.ndarray] = {}
        self._words: dict[str, str] = {}  # one string a distinct unit, shared by every text that has it
        self._room = kept

    def __call__(self, text: str) -> list[str]:
        found = self._units.get(text)
        if found is None:
            found = units(text)
            if len(found) <= self._room:
                self._room -= len(found)
                found = [self._words.setdefault(unit, unit) for unit in found]
                self._units[text] = found
        return found

    def ngrams(self, text: str, n: int) -> np.ndarray:
        """The hashes of `text`'s `n`-grams of units (`ngram_keys`), distinct (int64)."""
        found = self._ngrams.get((text, n))
        if found is None:
            keys = ngram_keys(self(text), n)
            found = np.fromiter(keys, dtype=np.int64, count=len(keys))
            if text in self._units:
                self._ngrams[(text, n)] = found
        return found

    def add(self, texts: Iterable[str], n: int | None = None) -> None:
        """Compute and keep `texts`' units (and their `n`-gram keys, given `n`) ahead of their being asked."""
        for text in texts:
            if n is None:
                self(text)
            else:
                self.ngrams(text, n)
