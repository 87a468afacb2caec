"""The near-duplicate machinery shared by the held-out split's chunk groups (datagen/dataset/splits.py) and the
samples' near-duplicates (near_duplicates.py): shingles, MinHash signatures, candidate pairs from an LSH index, and
union-find groups.

MinHash (Broder 1997) estimates the Jaccard similarity of two sets from a fixed-size signature; an LSH index over
the signatures' bands returns, for a query, the earlier texts likely above a Jaccard threshold (Leskovec, Rajaraman
and Ullman, Mining of Massive Datasets, ch. 3), so that a corpus is compared in about linear time, not pair by pair.
Both come from `datasketch` (MinHash, MinHashLSH). A candidate is a likely pair, never a verdict: each caller checks
it (splits by the estimated containment, near_duplicates by the exact Jaccard of the shingle sets).
"""

from collections.abc import Callable, Iterable, Iterator, Sequence

import regex
from datasketch import MinHash, MinHashLSH

# MinHash permutations (datasketch's default): the Jaccard estimate's standard error is about 1/sqrt(128), 0.09.
NUM_PERM = 128

_WORD = regex.compile(r"[\p{L}\p{N}]+")


def word_shingles(text: str, size: int) -> set[str]:
    """The text's word `size`-grams: lower-cased runs of letters and digits, joined by a space. A text of fewer
    words is one shingle (all its words); one with no letter or digit has none."""
    words = [word.lower() for word in _WORD.findall(text)]
    if len(words) < size:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + size]) for i in range(len(words) - size + 1)}


def signatures(sets: Iterable[Iterable], hashfunc: Callable | None = None) -> list[MinHash]:
    """One MinHash signature (NUM_PERM permutations, seed 1: the same on every machine) per set of shingles.

    Args:
        sets: each text's shingles, as `hashfunc` takes them (read one text at a time).
        hashfunc: a shingle to a 32-bit integer; None: datasketch's SHA-1 of bytes (`sets` then hold bytes).
    """
    return list(map(signer(hashfunc), sets))


def signer(hashfunc: Callable | None = None) -> Callable[[Iterable], MinHash]:
    """A function of one text's shingles to its MinHash signature (NUM_PERM permutations, seed 1), the permutations
    drawn once, as `MinHash.bulk` draws them, not once a text. `hashfunc`: as `signatures`'."""
    empty = MinHash(num_perm=NUM_PERM, **({"hashfunc": hashfunc} if hashfunc is not None else {}))

    def sign(shingles: Iterable) -> MinHash:
        signature = empty.copy()
        signature.update_batch(shingles)
        return signature
    return sign


def lsh_index(threshold: float) -> MinHashLSH:
    """An empty LSH index of NUM_PERM-permutation signatures at Jaccard `threshold`, in (0, 1): datasketch picks
    its bands for it, weighing false positives and false negatives alike."""
    return MinHashLSH(threshold=threshold, num_perm=NUM_PERM)


def candidate_pairs(hashes: Sequence[MinHash], threshold: float, skip: Callable[[int], bool] = lambda i: False
                    ) -> Iterator[tuple[int, int]]:
    """The candidate pairs (i, j), j < i, of an LSH index at Jaccard `threshold`, i in order: each signature is
    queried against the earlier ones, then inserted. A candidate below the threshold may come (check each), and
    one above it may be missed, the likelier the closer it is to the threshold: index below the similarity wanted.

    Args:
        hashes: the texts' signatures (`signatures`).
        threshold: the index's Jaccard threshold, in (0, 1): datasketch picks its bands for it.
        skip: texts neither queried nor indexed (a text without shingles: its signature is meaningless).
    """
    index = lsh_index(threshold)
    for i, minhash in enumerate(hashes):
        if skip(i):
            continue
        for j in index.query(minhash):
            yield i, j
        index.insert(i, minhash)


class UnionFind:
    """Groups closed under a relation (a chain of near-duplicates is one group), each named by its smallest
    member: `root(i)` is the smallest index joined to `i`, whatever order the pairs were joined in.

    Args:
        size: the number of items, 0 to size - 1, each alone at first.
    """

    def __init__(self, size: int):
        self._parent = list(range(size))

    def root(self, i: int) -> int:
        """The smallest index of `i`'s group."""
        parent = self._parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(self, i: int, j: int) -> None:
        """Put `i` and `j` in one group (the larger root under the smaller, so a root is its group's minimum)."""
        a, b = sorted((self.root(i), self.root(j)))
        self._parent[b] = a

    def roots(self) -> list[int]:
        """Each item's group, as its smallest index."""
        return [self.root(i) for i in range(len(self._parent))]
