"""Diversity of a list of texts (one field of a run's samples, or its source chunks), in figures a person can read.

- distinct-1, distinct-2: distinct unigrams (bigrams) over all unigrams (bigrams) of the texts (Li et al. 2016, "A
  Diversity-Promoting Objective Function for Neural Conversation Models"), n-grams inside each text. Units are
  datagen.text.units: words, or characters in a script that does not space its words.
- compression ratio: the texts' UTF-8 size over its gzip size, joined by newlines (Shaib et al. 2024,
  "Standardizing the Measurement of Text Diversity"): 1 for text gzip cannot shorten, higher the more the texts
  repeat one another. gzip sees repeats within 32 KiB, so the figure is comparable between equal token budgets; on a
  few words it is below 1 (gzip's header outweighs them).
- openings: the most common first three units of a text, with their share of the texts: a model trained on texts
  that mostly open one way learns to expect that opening. Counted over every text, not a subsample.
- embedding spread: the mean cosine distance between two different texts' unit embeddings (1 - mean pairwise
  cosine; Tevet and Berant 2021 compare such embedding-based measures), computed exactly in O(n) from the sum of the
  rows: |sum|^2 = n + sum over i != j of cos(i, j).

distinct-n and the compression ratio both fall as more text is measured, so they are measured on at most
TOKEN_BUDGET units, texts drawn in a fixed pseudo-random order (the same every time), and `compare` measures samples
and source chunks on the same budget. Template collapse is an opening shared by OPENING_BAR of the texts or more.

Rows to store (a `diversity` table, one a figure): scope TEXT ("samples", "chunks"), field TEXT ("input",
"output", "text"), measure TEXT ("distinct_1", "distinct_2", "compression_ratio", "spread", "texts", "units"),
value REAL; and one a top opening (an `openings` table): scope, field, rank INTEGER, opening TEXT, count INTEGER,
share REAL.
"""

import gzip
import itertools
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from datagen.errors import InputError
from datagen.text import units

# Units measured by distinct-n and compression: about 100,000 words (some 1,000 samples of 100 words): a fraction
# of a second, and enough that the figures move little with the draw.
TOKEN_BUDGET = 100_000
OPENING_UNITS = 3
TOP_OPENINGS = 5
# Template collapse: one opening begins this share of the texts or more. On the four novels of bench/'s corpus, the
# most common opening of a 64-token chunk begins 0.3% of them (bench/quality_scale.py): a tenth is thirty times
# what prose does, and low enough to catch a rephrase formula before it takes over.
OPENING_BAR = 0.1
# ... and at least this many texts: in a run of 5 samples, one opening is a fifth of them, and no sign of a template.
OPENING_MIN_COUNT = 3
# A figure of the samples worse than the source's by more than this share is called narrowed: two halves of the
# novels' chunks (different books) differ by 3% in distinct-2 (bench/quality_scale.py), so 5% is not noise.
NARROWED_MARGIN = 0.05
# The characters of a text read for its opening (three units are well inside them).
_OPENING_CHARS = 200


@dataclass(frozen=True)
class Opening:
    """A text's first OPENING_UNITS units (joined by spaces, case-folded), how many texts open so, their share."""

    text: str
    count: int
    share: float


@dataclass(frozen=True)
class Diversity:
    """The diversity figures of a list of texts.

    `texts`: how many there were; `measured_texts` and `measured_units`: the texts and units distinct-n and the
    compression ratio were measured on (all, under TOKEN_BUDGET); `distinct_1`, `distinct_2`, `compression_ratio`
    (None: no text had a unit); `openings`: the TOP_OPENINGS most common, over every text; `spread`: the mean
    pairwise cosine distance of the embeddings, None when none were given or fewer than two.
    """

    texts: int
    measured_texts: int
    measured_units: int
    distinct_1: float | None
    distinct_2: float | None
    compression_ratio: float | None
    openings: tuple[Opening, ...]
    spread: float | None

    @classmethod
    def from_dict(cls, figures: dict) -> "Diversity":
        """The figures as `dataclasses.asdict` gave them (a run store's record, an evaluation's JSON), openings
        as dicts. Raises KeyError or TypeError for a dict of other keys."""
        return cls(**{**figures, "openings": tuple(Opening(**o) for o in figures["openings"])})


def distinct_n(token_lists: Sequence[Sequence[str]], n: int) -> float | None:
    """Distinct n-grams over all n-grams (Li et al. 2016), n-grams inside each text; None when there are none."""
    return _distinct(token_lists, (n,))[0]


def _distinct(token_lists: Sequence[Sequence[str]], sizes: Sequence[int]) -> list[float | None]:
    """`distinct_n` for each n of `sizes`, the units numbered once for all: an n-gram is a row of n numbers, and
    its distinct rows are counted by numpy (distinct-1 and -2 of 105,400 units: 26 ms, against 66 ms for sets of
    tuples, best of five on this 2-core machine)."""
    # A unit's number: the position it first comes at (the numbers are not consecutive; below len(ids) all).
    numbers: dict[str, int] = {}
    ids = np.fromiter(map(numbers.setdefault, itertools.chain.from_iterable(token_lists), itertools.count()),
                      dtype=np.int64)
    lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
    text_end = np.repeat(np.cumsum(lengths), lengths)  # where each unit's text ends
    found = []
    for n in sizes:
        inside = np.flatnonzero(np.arange(len(ids) - n + 1) + n <= text_end[:max(len(ids) - n + 1, 0)])
        if not inside.size:
            found.append(None)
            continue
        if len(ids) ** n < 2 ** 62:  # an n-gram as one number: a base-len(ids) numeral of its units
            grams = ids[inside]
            for k in range(1, n):
                grams = grams * len(ids) + ids[inside + k]
            distinct = np.unique(grams).size
        else:
            distinct = len(np.unique(ids[inside[:, None] + np.arange(n)], axis=0))
        found.append(distinct / inside.size)
    return found


def compression_ratio(texts: Sequence[str]) -> float | None:
    """UTF-8 size over gzip size (level 9) of the texts joined by newlines; None when they are all empty."""
    data = "\n".join(texts).encode()
    return len(data) / len(gzip.compress(data, compresslevel=9, mtime=0)) if data.strip() else None


def opening_of(text: str) -> str:
    """A text's opening: its first OPENING_UNITS units, case-folded, joined by spaces ("" when it has none)."""
    return " ".join(units(text[:_OPENING_CHARS])[:OPENING_UNITS])


def openings(texts: Sequence[str], top: int = TOP_OPENINGS) -> tuple[Opening, ...]:
    """The `top` most common first-three-unit openings, with their share of all the texts (a text without a unit
    opens with nothing and counts in no opening's count, but in the total); ties in the order first seen."""
    return _top_openings([opening_of(text) for text in texts], top)


def _top_openings(keys: Sequence[str], top: int = TOP_OPENINGS) -> tuple[Opening, ...]:
    """`openings` of texts whose openings (`opening_of`) are `keys`."""
    counts = Counter(keys)
    counts.pop("", None)
    return tuple(Opening(text, count, round(count / len(keys), 4)) for text, count in counts.most_common(top))


def spread(embeddings: np.ndarray) -> float | None:
    """Mean cosine distance over pairs of different rows of unit `embeddings` (n x d); None for fewer than two.

    Raises:
        InputError: `embeddings` is not a 2-D array.
    """
    matrix = np.asarray(embeddings, dtype=np.float64)
    if matrix.ndim != 2:
        raise InputError(f"embeddings must be one row per text (a 2-D array), not an array of shape {matrix.shape}")
    count = len(matrix)
    if count < 2:
        return None
    total = matrix.sum(axis=0)
    own = float((matrix * matrix).sum())  # n for unit rows; the exact self-similarities all the same
    return round(1 - (float(total @ total) - own) / (count * (count - 1)), 4)


@dataclass(frozen=True)
class _Pile:
    """Texts read once for their figures: `drawn`, the units of the texts in the fixed pseudo-random draw order
    for as long as fewer than the budget were read (what any budget up to it measures); `total`, all the texts'
    units; `opening_keys`, each text's `opening_of`."""

    texts: Sequence[str]
    drawn: list[list[str]]
    total: int
    opening_keys: list[str]


def _pile(texts: Sequence[str], budget: int, tokens: Callable[[str], list[str]] | None = None) -> _Pile:
    """`texts` tokenized once (`tokens`: a `TextUnits`, or None: `units`): a text's units serve the units counted,
    the draw and its opening."""
    tokens = tokens or units
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)
    drawn, total, keys = [], 0, [""] * len(texts)
    for i in order:
        own = tokens(texts[i])
        if total < budget:
            drawn.append(own)
        total += len(own)
        # A text of _OPENING_CHARS or fewer opens with its own first units; a longer one is cut first, as opening_of
        # cuts it (a cut may split a word).
        keys[i] = " ".join(own[:OPENING_UNITS]) if len(texts[i]) <= _OPENING_CHARS else opening_of(texts[i])
    return _Pile(texts, drawn, total, keys)


def _measured(pile: _Pile, budget: int) -> list[list[str]]:
    """The units of texts drawn in a fixed pseudo-random order until `budget` units (the text that crosses it cut);
    `budget` at most the pile's."""
    drawn, used = [], 0
    for own in pile.drawn:
        if used >= budget:
            break
        own = own[:budget - used]
        drawn.append(own)
        used += len(own)
    return drawn


def diversity_of(texts: Sequence[str], embeddings: np.ndarray | None = None, *,
              budget: int = TOKEN_BUDGET) -> Diversity:
    """The diversity figures of `texts` (see the module's docstring for each).

    Args:
        texts: one field of every sample, or the source chunks' texts.
        embeddings: their unit embeddings, one row a text (datagen.metrics.overlap.embed), for the spread; None:
            no spread.
        budget: the most units distinct-n and the compression ratio read (default TOKEN_BUDGET, 100,000).

    Raises:
        InputError: `budget` below 1, or embeddings not one 2-D row per text.
    """
    if budget < 1:
        raise InputError(f"a diversity budget must be at least 1 unit, not {budget}")
    return _diversities([(_pile(texts, budget), embeddings, budget)])[0]


def _diversities(piles: Sequence[tuple[_Pile, np.ndarray | None, int]]) -> list[Diversity]:
    """The figures of each (pile, embeddings, budget: a pile read for `budget` units or more), their compression ratios found on threads beside the rest:
    gzip, a third of the figures' time, lets go of the GIL (two piles of 640 passages on this 2-core machine: 20 ms
    of gzip one after the other, 10 ms on two threads)."""
    for pile, embeddings, _ in piles:
        if embeddings is not None and len(embeddings) != len(pile.texts):
            raise InputError(f"{len(embeddings)} embeddings for {len(pile.texts)} texts: one row a text")
    drawn = [_measured(pile, budget) for pile, _, budget in piles]
    with ThreadPoolExecutor(max(1, len(drawn)), thread_name_prefix="datagen-gzip") as pool:
        ratios = [pool.submit(compression_ratio, [" ".join(own) for own in units]) for units in drawn]
        found = []
        for (pile, embeddings, _), units, ratio in zip(piles, drawn, ratios):
            distinct = _distinct(units, (1, 2))
            found.append(Diversity(
                texts=len(pile.texts), measured_texts=len(units), measured_units=sum(map(len, units)),
                distinct_1=_rounded(distinct[0]), distinct_2=_rounded(distinct[1]),
                compression_ratio=_rounded(ratio.result()), openings=_top_openings(pile.opening_keys),
                spread=None if embeddings is None else spread(embeddings)))
    return found


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


@dataclass(frozen=True)
class Comparison:
    """Samples beside their source chunks, measured on the same budget (`samples`, `source`), and `narrowed`: a
    plain sentence for each way the samples are less diverse than the source by more than NARROWED_MARGIN (5%), and
    a template collapse (`collapse`); empty when none."""

    samples: Diversity
    source: Diversity
    narrowed: tuple[str, ...]

    @classmethod
    def from_dict(cls, figures: dict) -> "Comparison":
        """The comparison as `dataclasses.asdict` gave it ({"samples", "source", "narrowed"}). Raises KeyError or
        TypeError for a dict of other keys."""
        return cls(Diversity.from_dict(figures["samples"]), Diversity.from_dict(figures["source"]),
                   tuple(figures["narrowed"]))


def compare(samples: Sequence[str], source: Sequence[str], sample_embeddings: np.ndarray | None = None,
            source_embeddings: np.ndarray | None = None, *, budget: int = TOKEN_BUDGET) -> Comparison:
    """The diversity of `samples` beside that of `source` (the chunks they were made from), both measured on the
    same number of units (the smaller of `budget` and what each has), so that the figures compare.

    Args:
        samples, source: the texts; sample_embeddings, source_embeddings: their unit embeddings, or None.
        budget: the most units measured for each (default TOKEN_BUDGET).

    Raises:
        InputError: as `diversity_of`.
    """
    return compare_each({"": samples}, source, {"": sample_embeddings}, source_embeddings, budget=budget)[""]


def compare_each(fields: Mapping[str, Sequence[str]], source: Sequence[str],
                 embeddings: Mapping[str, np.ndarray | None] | None = None, source_embeddings: np.ndarray | None = None,
                 *, budget: int = TOKEN_BUDGET,
                 tokens: Callable[[str], list[str]] | None = None) -> dict[str, Comparison]:
    """`compare` for each field of the samples beside one source, {field: Comparison}, the source read once.

    Args:
        fields: {field: its texts} (a sample's input, its output).
        source: the chunks the samples were made from.
        embeddings: {field: the texts' unit embeddings, or None}; None: none. source_embeddings: the source's.
        budget: the most units measured for each (default TOKEN_BUDGET).
        tokens: where a text's units are read: a `TextUnits` that has them already; None: `units`.

    Raises:
        InputError: as `diversity_of`.
    """
    budget = max(1, budget)  # each measured on one unit at least
    theirs = _pile(source, budget, tokens)
    # An opening the source itself begins as often (half as often or more) is the corpus', not a template the
    # pipeline made: style_clone's outputs are the chunks, and a corpus of reports may open each the same way.
    openings_of_source = Counter(theirs.opening_keys)
    # What to measure, all at once: {(field, budget): (pile, embeddings, budget)}, the source's under field None,
    # measured once for every field at least as long.
    wanted, rows = {}, []
    for name, samples in fields.items():
        # A field that is the source itself (style_clone's output: the chunk) is read and measured once.
        same = samples == source and (embeddings or {}).get(name) is None and source_embeddings is None
        own = theirs if same else _pile(samples, budget, tokens)
        shared = max(1, min(budget, own.total, theirs.total))
        wanted.setdefault((None, shared), (theirs, source_embeddings, shared))
        if not same:
            wanted[name, shared] = (own, (embeddings or {}).get(name), shared)
        rows.append((name, None if same else name, shared))
    figures = dict(zip(wanted, _diversities(list(wanted.values()))))
    found = {}
    for name, measured, shared in rows:
        mine, theirs_figures = figures[measured, shared], figures[None, shared]
        inherited = {o.text for o in formulas(mine) if openings_of_source[o.text] >= o.share * len(source) / 2}
        found[name] = Comparison(mine, theirs_figures, _narrowed(mine, theirs_figures, inherited))
    return found


def _narrowed(mine: Diversity, theirs: Diversity, inherited: set[str] = frozenset()) -> tuple[str, ...]:
    found = []
    for name, label in (("distinct_2", "distinct-2"), ("distinct_1", "distinct-1")):
        a, b = getattr(mine, name), getattr(theirs, name)
        if a is not None and b is not None and a < b * (1 - NARROWED_MARGIN):
            found.append(f"{label} {a:.3f} against the source's {b:.3f}")
    a, b = mine.compression_ratio, theirs.compression_ratio
    if a is not None and b is not None and a > b * (1 + NARROWED_MARGIN):
        found.append(f"compression ratio {a:.2f} against the source's {b:.2f} (more repetitive)")
    if mine.spread is not None and theirs.spread is not None and mine.spread < theirs.spread * (1 - NARROWED_MARGIN):
        found.append(f"embedding spread {mine.spread:.2f} against the source's {theirs.spread:.2f}")
    verdict = collapse(mine, exclude=inherited)
    if verdict:
        found.append(verdict)
    return tuple(found)


def formulas(figures: Diversity, bar: float = OPENING_BAR) -> tuple[Opening, ...]:
    """The top openings of `figures` that begin at least `bar` of the texts (a share in (0, 1]; default
    OPENING_BAR, 0.1) and OPENING_MIN_COUNT (3) or more: a template's, most common first."""
    return tuple(o for o in figures.openings if o.share >= bar and o.count >= OPENING_MIN_COUNT)


def collapse(figures: Diversity, bar: float = OPENING_BAR, exclude: set[str] = frozenset()) -> str | None:
    """A plain sentence when the texts collapse to a template: an opening begins at least `bar` of them (default
    OPENING_BAR, 0.1) and OPENING_MIN_COUNT (3) or more, other than those in `exclude` (openings the source opens
    with as much: `compare`); None otherwise."""
    over = [o for o in formulas(figures, bar) if o.text not in exclude]
    if not over:
        return None
    shown = ", ".join(f"'{o.text}' ({o.share:.0%})" for o in over)
    return f"template collapse: {shown} of the {figures.texts} texts open the same way (bar {bar:.0%})"


def collapsed(texts: Sequence[str], bar: float = OPENING_BAR) -> list[int]:
    """The positions of the texts that open with an opening shared by at least `bar` of all the texts (and by
    OPENING_MIN_COUNT or more): the ones a template took over (to show or flag them)."""
    keys = [opening_of(text) for text in texts]
    counts = Counter(key for key in keys if key)
    return [i for i, key in enumerate(keys)
            if key and counts[key] >= max(bar * len(texts), OPENING_MIN_COUNT)]
