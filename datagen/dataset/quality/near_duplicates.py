"""Near-duplicate samples, explained: which sample a sample nearly repeats, and how alike the two are.

Two measures, each giving pairs (first, second, similarity, kind) with first < second, positions in the list given:

- lexical: the Jaccard similarity of the two texts' character 5-gram sets (the text NFKC-normalised, case-folded,
  its runs of letters, marks and digits joined by one space). Candidates come from MinHash signatures in an LSH
  index (datasketch; Broder 1997), and each is checked by the exact Jaccard of the two sets of shingle hashes
  (32-bit). Jaccard, not the containment the held-out split uses: a sample is one whole text, and a short question
  found inside a long one is a different question, whereas a chunk cut at another boundary is inside its twin.
  Character shingles, not words: one changed word in a ten-word question breaks 3 of 8 word 3-grams but about a
  fifth of the character 5-grams, and Chinese, Japanese or Thai text, which does not space its words, is compared
  all the same.
- semantic: the cosine similarity of given unit embeddings (datagen.metrics.overlap's all-MiniLM-L6-v2, which a
  higher layer computes), by blocked matrix products: a block of rows against every later row, so that 100,000 x
  384 needs about BLOCK_BYTES at a time, not the 40 GB of the whole matrix.

Pairs are kept down to a floor (LEXICAL_FLOOR, SEMANTIC_FLOOR) below the thresholds that flag, so that a caller
can store them once and flag at another threshold without computing again (`duplicates`). Grouping closes the
relation (a chain of near-duplicates is one group); the group keeps its first sample (the smallest position: the
first generated, in a run's order) and flags the others, each with the member it is most alike.

Rows to store, one a pair (a `near_duplicate_pairs` table): field TEXT ("input", "output"), kind TEXT ("lexical",
"semantic"), first TEXT and second TEXT (the two samples' ids, first the earlier), similarity REAL. The groups are
never stored: they are `duplicates(count, pairs, thresholds)` of the stored pairs, at whatever thresholds are set.
"""

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
import regex

from datagen.dataset.quality.minhash import NUM_PERM, UnionFind, lsh_index, signer
from datagen.errors import InputError

LEXICAL, SEMANTIC = "lexical", "semantic"
# Character shingles of 5: long enough that unrelated English texts share few (a 5-gram is most of a word), short
# enough that one edit changes few of a short text's.
SHINGLE_CHARS = 5
# Pairs kept (stored) from this Jaccard up; the LSH index is set lower, so that a pair at the floor is rarely missed.
LEXICAL_FLOOR = 0.4
LSH_THRESHOLD = 0.3
# A candidate whose MinHash estimate is this far below the floor is not checked exactly: the estimate's standard error
# at a Jaccard of 0.4 is sqrt(0.4 * 0.6 / 128) = 0.043, so a pair at the floor falls 0.15 (3.5 errors) below it
# with a probability of about 2 in 10,000.
ESTIMATE_MARGIN = 0.15
# Flagged by default from these similarities (measured in bench/quality_scale.py: docs/quality.md).
LEXICAL_THRESHOLD = 0.6
# Cosine: Data Designer drops questions above 0.9; pairs are kept from 0.8 to re-threshold below it.
SEMANTIC_FLOOR = 0.8
SEMANTIC_THRESHOLD = 0.9
THRESHOLDS = {LEXICAL: LEXICAL_THRESHOLD, SEMANTIC: SEMANTIC_THRESHOLD}
# Memory for one block of cosine similarities (float32): 128 MiB is 335 rows against 100,000.
BLOCK_BYTES = 128 * 2 ** 20

# The polynomial's powers of an odd 64-bit constant, and 2**64 over the golden ratio (Knuth's multiplicative hash).
_POWERS = np.cumprod(np.full(64, 0x100000001B3, dtype=np.uint64), dtype=np.uint64)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_RUN = regex.compile(r"[\p{L}\p{M}\p{N}]+")


@dataclass(frozen=True, order=True)
class Pair:
    """Two near-duplicate texts: positions `first` < `second`, their `similarity` (Jaccard for "lexical", cosine
    for "semantic", in [0, 1]) and its `kind`."""

    first: int
    second: int
    similarity: float
    kind: str


@dataclass(frozen=True)
class Duplicate:
    """A flagged text: position `index` is in the group that keeps `of` (its smallest position, never flagged);
    it is most alike `via` (a member of its group, `of` itself when directly so), at `similarity` of `kind`."""

    index: int
    of: int
    via: int
    similarity: float
    kind: str


def normalised(text: str) -> str:
    """`text` as shingled: NFKC, case-folded, its runs of letters, marks and digits joined by one space (punctuation
    and spacing do not count)."""
    return " ".join(_RUN.findall(unicodedata.normalize("NFKC", text).casefold()))


def char_shingles(text: str, size: int = SHINGLE_CHARS) -> np.ndarray:
    """The 32-bit hashes of `text`'s character `size`-grams (of `normalised(text)`), sorted and unique. A text
    shorter than `size` is one shingle; one with no letter or digit has none (and is never paired)."""
    norm = normalised(text)
    if not norm:
        return np.empty(0, dtype=np.uint32)
    codes = np.frombuffer(norm.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    windows = sliding_window_view(codes, size) if codes.size >= size else codes[None, :]
    # A polynomial of the code points (wrapping mod 2**64), then Fibonacci hashing down to 32 bits: the whole text
    # in a few numpy calls (hashing each gram in Python took a third of lexical_pairs' time at 100,000 texts).
    keys = (windows * _POWERS[:windows.shape[1]]).sum(axis=1, dtype=np.uint64)
    return np.unique(((keys * _GOLDEN) >> np.uint64(32)).astype(np.uint32))


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """The Jaccard similarity of two sorted, unique hash arrays (`char_shingles`); 0.0 when both are empty."""
    shared = np.intersect1d(a, b, assume_unique=True).size
    union = a.size + b.size - shared
    return shared / union if union else 0.0


def jaccards(a: np.ndarray, others: Sequence[np.ndarray]) -> np.ndarray:
    """`jaccard(a, b)` for each b of `others` (sorted, unique hash arrays), in a few numpy calls for them all: on a
    corpus of repetitive texts a sample has a hundred candidates to check, and one `jaccard` call each was most of
    the near-duplicate index's time (bench/throughput_bench.py's corpus before issue 29's fifth pass). An empty
    array is 0.0 with any other, as in `jaccard`."""
    lengths = np.fromiter(map(len, others), dtype=np.int64, count=len(others))
    joined = np.concatenate(others) if len(others) else a[:0]
    at = np.minimum(np.searchsorted(a, joined), max(a.size - 1, 0))
    found = a[at] == joined if a.size else np.zeros(joined.size, dtype=bool)
    hits = np.concatenate([[0], np.cumsum(found, dtype=np.int64)])  # shared so far, by position in `joined`
    ends = np.cumsum(lengths)
    shared = hits[ends] - hits[ends - lengths]
    union = a.size + lengths - shared
    return np.divide(shared, union, out=np.zeros(len(others)), where=union > 0)


def lexical_pairs(texts: Sequence[str], floor: float = LEXICAL_FLOOR) -> list[Pair]:
    """Every pair of texts whose character 5-gram Jaccard similarity is at least `floor`, sorted (a fresh
    `LexicalIndex(floor).pairs(texts)`).

    Args:
        texts: one field of every sample (or any texts), in order.
        floor: the least Jaccard similarity kept, in (0, 1]; default LEXICAL_FLOOR (0.4). A pair just above it may
            be missed by the LSH index (it is set at LSH_THRESHOLD, 0.3, to make that rare); one well above it,
            practically never.

    Raises:
        InputError: `floor` outside (0, 1].
    """
    return LexicalIndex(floor).pairs(texts)


class LexicalIndex:
    """The lexical near-duplicate pairs of texts added one at a time, in any order: `pairs(texts)` is
    `lexical_pairs(texts)`, computing only for the texts not added yet.

    Each text added is shingled, signed, queried against the texts before it in the LSH index, its likely candidates
    checked exactly, and inserted. Two texts are candidates when their signatures share a band, whichever came
    first, so the pairs do not depend on the order: a run adds each sample as it is recorded, while it waits on the
    model, and its export only looks the pairs up. A text is added once, however often it occurs (its copies are
    pairs of similarity 1.0 when it has shingles).

    Memory: a text's shingle hashes (4 bytes each, about one a character) and its signature (1 KiB), a text added.

    Args:
        floor: the least Jaccard similarity kept, in (0, 1]; default LEXICAL_FLOOR (0.4), as `lexical_pairs`'.

    Raises:
        InputError: `floor` outside (0, 1].
    """

    def __init__(self, floor: float = LEXICAL_FLOOR):
        if not 0 < floor <= 1:
            raise InputError(f"a lexical near-duplicate floor must be in (0, 1], not {floor}")
        self.floor = floor
        self._ids: dict[str, int] = {}
        self._sets: list[np.ndarray] = []
        self._values = np.empty((64, NUM_PERM), dtype=np.uint64)  # the signatures, a row a text (grown by doubling)
        self._similar: dict[int, dict[int, float]] = {}  # a text's id: {an earlier text's id: their similarity}
        self._sign = signer(hashfunc=int)
        self._lsh = lsh_index(min(LSH_THRESHOLD, floor))

    def add(self, text: str) -> None:
        """Add `text` (nothing when it was added before), finding its pairs with every text added before it."""
        if text in self._ids:
            return
        own = self._ids[text] = len(self._sets)
        shingles = char_shingles(text)
        self._sets.append(shingles)
        if not shingles.size:  # nothing to compare: never paired (its signature would be meaningless)
            return
        signature = self._sign(shingles)
        if own == len(self._values):
            self._values = np.concatenate([self._values, np.empty_like(self._values)])
        self._values[own] = signature.hashvalues
        others = self._lsh.query(signature)
        if others:
            others = np.fromiter(others, dtype=np.int64, count=len(others))
            estimate = (self._values[others] == signature.hashvalues).mean(axis=1)
            likely = others[estimate >= self.floor - ESTIMATE_MARGIN].tolist()
            if likely:
                sets = [self._sets[other] for other in likely]
                for other, similarity in zip(likely, jaccards(shingles, sets).tolist()):
                    if similarity >= self.floor:
                        self._similar.setdefault(own, {})[other] = round(similarity, 4)
        self._lsh.insert(own, signature)

    def pairs(self, texts: Sequence[str]) -> list[Pair]:
        """Every pair of `texts` whose similarity is at least the floor, sorted, by positions in `texts` (the texts
        not added yet are added first)."""
        positions: dict[int, list[int]] = {}
        for position, text in enumerate(texts):
            self.add(text)
            positions.setdefault(self._ids[text], []).append(position)
        found = []
        for own, at in positions.items():
            if self._sets[own].size:  # copies of one text
                found += [Pair(first, second, 1.0, LEXICAL) for k, first in enumerate(at) for second in at[k + 1:]]
            for other, similarity in self._similar.get(own, {}).items():
                found += [Pair(min(a, b), max(a, b), similarity, LEXICAL) for a in at for b in positions.get(other, ())]
        return sorted(found)


def semantic_pairs(embeddings: np.ndarray, floor: float = SEMANTIC_FLOOR) -> list[Pair]:
    """Every pair of rows whose cosine similarity is at least `floor`, sorted.

    Args:
        embeddings: one unit-length row per text (n x d, e.g. datagen.metrics.overlap.embed's 384 dimensions); a
            row of zeros (no text) pairs with nothing.
        floor: the least cosine kept, in (0, 1]; default SEMANTIC_FLOOR (0.8).

    Raises:
        InputError: `embeddings` is not a 2-D array, or `floor` is outside (0, 1].
    """
    matrix = np.asarray(embeddings, dtype=np.float32)
    if matrix.ndim != 2:
        raise InputError(f"embeddings must be one row per text (a 2-D array), not an array of shape {matrix.shape}")
    if not 0 < floor <= 1:
        raise InputError(f"a semantic near-duplicate floor must be in (0, 1], not {floor}")
    count = len(matrix)
    rows = max(1, BLOCK_BYTES // (4 * max(count, 1)))
    found = []
    for start in range(0, count, rows):
        block = matrix[start:start + rows] @ matrix[start:].T  # these rows against themselves and every later row
        first, second = np.nonzero(block >= floor)
        later = second > first  # each pair once, never a row with itself
        for i, j in zip(first[later].tolist(), second[later].tolist()):
            found.append(Pair(start + i, start + j, round(min(float(block[i, j]), 1.0), 4), SEMANTIC))
    return sorted(found)


def duplicates(count: int, pairs: Iterable[Pair], thresholds: Mapping[str, float] = THRESHOLDS) -> list[Duplicate]:
    """The flagged texts at `thresholds`, from pairs computed once (`lexical_pairs`, `semantic_pairs`, or stored).

    Pairs at or above their kind's threshold join their texts in one group (union-find: chains join); each group
    keeps its first text (the smallest position) and flags the others, each named with the group's first and the
    member it is most alike (the highest similarity of its pairs that count; the earlier member on a tie).

    Args:
        count: how many texts there are (positions 0 to count - 1).
        pairs: the pairs, of any kinds; a kind `thresholds` does not name does not count.
        thresholds: {kind: least similarity that flags}; default THRESHOLDS (lexical 0.6, semantic 0.9).

    Returns:
        The flagged texts, by position: count - len(result) texts are kept.

    Raises:
        InputError: a pair's position outside 0 to count - 1.
    """
    counted = [pair for pair in pairs if pair.kind in thresholds and pair.similarity >= thresholds[pair.kind]]
    groups = UnionFind(count)
    best: dict[int, tuple[float, int, str]] = {}
    for pair in counted:
        if not 0 <= pair.first < pair.second < count:
            raise InputError(f"a near-duplicate pair ({pair.first}, {pair.second}) outside the {count} texts")
        groups.join(pair.first, pair.second)
        for own, other in ((pair.first, pair.second), (pair.second, pair.first)):
            if own not in best or (pair.similarity, -other) > (best[own][0], -best[own][1]):
                best[own] = (pair.similarity, other, pair.kind)
    flagged = []
    for index in sorted(best):
        of = groups.root(index)
        if of != index:
            similarity, via, kind = best[index]
            flagged.append(Duplicate(index, of, via, similarity, kind))
    return flagged
