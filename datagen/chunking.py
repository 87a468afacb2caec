"""Cutting documents into chunks that fit a token budget.

Chunks break at paragraph boundaries first, then at sentence boundaries, and mid-sentence only when one sentence
is longer than the whole budget. A chunk is a span of its document: `document.text[start:end] == chunk.text`.
"""

import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass

from datagen.ingest import Document
from datagen.tokens import count_tokens

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 512
_SPACES = re.compile(r"\s*")
_PARAGRAPH_BREAK = re.compile(r"[ \t]*\r?\n(?:[ \t]*\r?\n)+")
# pysbd is exact but slow on very long inputs; a longer paragraph is first cut at line ends or spaces.
_SENTENCE_WINDOW_CHARS = 20_000
# Where pysbd may end a sentence (its punctuation, and line ends): a window with none of them is one sentence,
# and pysbd, whose abbreviation rules take time quadratic in the window, is not run on it.
_SENTENCE_END = re.compile(r"[.!?\n\r。．！？]")
# An over-long paragraph is known to be over the budget from its first max_tokens * this many characters: it is
# not counted whole (tiktoken takes seconds on a megabyte-long run of letters).
_HEAD_CHARS_PER_TOKEN = 16


@dataclass(frozen=True)
class Chunk:
    id: str
    source: str
    start: int
    end: int
    text: str
    tokens: int

    def to_dict(self) -> dict:
        return asdict(self)


def chunk_id(text: str) -> str:
    """Stable id of a chunk: a hash of its text, so the same passage gets the same id on every run."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


Span = tuple[int, int]


def _trimmed(text: str, start: int, end: int) -> Span | None:
    segment = text[start:end]
    stripped = segment.strip()
    if not stripped:
        return None
    lead = len(segment) - len(segment.lstrip())
    return start + lead, start + lead + len(stripped)


def paragraph_spans(text: str, start: int = 0, end: int | None = None) -> Iterator[Span]:
    """Spans of the paragraphs (blocks separated by blank lines) of text[start:end], trimmed of whitespace."""
    end = len(text) if end is None else end
    cursor = start
    for brk in _PARAGRAPH_BREAK.finditer(text, start, end):
        if (span := _trimmed(text, cursor, brk.start())) is not None:
            yield span
        cursor = brk.end()
    if (span := _trimmed(text, cursor, end)) is not None:
        yield span


def _is_heading(text: str, span: Span) -> bool:
    """A Markdown heading: one line starting with '#'."""
    return text.startswith("#", span[0]) and "\n" not in text[span[0]:span[1]]


class _SentenceSplitter:
    """Sentence spans from pysbd, which is rule-based and needs no download."""

    def __init__(self, language: str = "en"):
        import pysbd

        self._segmenter = pysbd.Segmenter(language=language, clean=False)

    def spans(self, text: str, start: int, end: int) -> Iterator[Span]:
        for w_start, w_end in self._windows(text, start, end):
            if not _SENTENCE_END.search(text, w_start, w_end):
                if (span := _trimmed(text, w_start, w_end)) is not None:
                    yield span
                continue
            cursor = w_start
            for sentence in self._segmenter.segment(text[w_start:w_end]):
                # pysbd returns verbatim substrings with clean=False; locate each to get exact offsets.
                found = text.find(sentence, cursor, w_end)
                if found < 0:
                    log.debug("sentence splitter altered text near offset %d; keeping the rest whole", cursor)
                    break
                if (span := _trimmed(text, found, found + len(sentence))) is not None:
                    yield span
                cursor = found + len(sentence)
            if (rest := _trimmed(text, cursor, w_end)) is not None:
                yield rest

    @staticmethod
    def _windows(text: str, start: int, end: int) -> Iterator[Span]:
        while end - start > _SENTENCE_WINDOW_CHARS:
            limit = start + _SENTENCE_WINDOW_CHARS
            cut = max(text.rfind("\n", start, limit), text.rfind(". ", start, limit) + 1)
            if cut <= start:
                cut = text.rfind(" ", start, limit)
            if cut <= start:
                cut = limit
            yield start, cut
            start = cut
        yield start, end


class Chunker:
    """Packs paragraphs (or, for an over-long paragraph, its sentences) into chunks of at most `max_tokens`."""

    def __init__(self, max_tokens: int = DEFAULT_MAX_TOKENS, count: Callable[[str], int] = count_tokens,
                 language: str = "en"):
        if max_tokens < 16:
            raise ValueError(f"max_tokens must be at least 16, got {max_tokens}")
        self.max_tokens = max_tokens
        self._count = count
        self._sentences = _SentenceSplitter(language)

    def chunks(self, document: Document) -> Iterator[Chunk]:
        text = document.text
        for start, end in self._pack(text, self._units(text)):
            piece = text[start:end]
            yield Chunk(chunk_id(piece), document.source, start, end, piece, self._count(piece))

    def _units(self, text: str) -> Iterator[tuple[Span, int]]:
        """Pieces that each fit the budget, with their token counts, in document order."""
        for p_start, p_end in paragraph_spans(text):
            tokens = self._count_upto(text, p_start, p_end)
            if tokens <= self.max_tokens:
                yield (p_start, p_end), tokens
                continue
            for s_start, s_end in self._sentences.spans(text, p_start, p_end):
                tokens = self._count_upto(text, s_start, s_end)
                if tokens <= self.max_tokens:
                    yield (s_start, s_end), tokens
                else:
                    yield from self._hard_split(text, s_start, s_end)

    def _count_upto(self, text: str, start: int, end: int) -> int:
        """Tokens of text[start:end]; or of its head only, when the head alone is over the budget."""
        head = min(end, start + self.max_tokens * _HEAD_CHARS_PER_TOKEN)
        tokens = self._count(text[start:head])
        return tokens if tokens > self.max_tokens or head == end else self._count(text[start:end])

    def _hard_split(self, text: str, start: int, end: int) -> Iterator[tuple[Span, int]]:
        """Cut a sentence longer than the budget: at the last space that fits, else at a character."""
        # Each piece is measured without the whitespace before it: " word" can be one token where "word" is two.
        while (start := _SPACES.match(text, start, end).end()) < end:
            cut = self._largest_fit(text, start, end)
            if cut < end:
                space = text.rfind(" ", start + 1, cut + 1)
                if space > start:
                    cut = space
            if (span := _trimmed(text, start, cut)) is not None:
                yield span, self._count(text[span[0]:span[1]])
            start = cut

    def _largest_fit(self, text: str, start: int, end: int) -> int:
        """The largest cut in (start, end] whose piece text[start:cut] fits the budget (at least one character).
        Probes are aimed by the token rate of the counts so far, and bisect after two probes landed on the same
        side: three or four counts of about a chunk each, where a plain bisection over a window of many chunks
        counted long pieces a dozen times a cut (minutes for a 50 MB line)."""
        budget = self.max_tokens
        lo, lo_tokens = start, 0  # the largest cut known to fit
        hi, hi_tokens = end + 1, None  # the smallest cut known not to fit (end + 1: none yet)
        halve, fitted = False, None
        while hi - lo > 1:
            if halve:
                aim = (lo + hi) // 2
            elif hi_tokens is None:  # extrapolate: as many characters a token as so far (4 to begin with)
                aim = lo + (lo - start) * (budget - lo_tokens) // lo_tokens if lo_tokens else start + budget * 4
            else:  # interpolate between the cut that fits and the one that does not, aiming half a token past
                aim = lo + (hi - lo) * (2 * (budget - lo_tokens) + 1) // (2 * (hi_tokens - lo_tokens))
            probe = min(max(aim, lo + 1), hi - 1, end)
            if fits := (tokens := self._count(text[start:probe])) <= budget:
                lo, lo_tokens = probe, tokens
            else:
                hi, hi_tokens = probe, tokens
            halve, fitted = fits == fitted, fits
        return max(lo, start + 1)

    def _pack(self, text: str, units: Iterable[tuple[Span, int]]) -> Iterator[Span]:
        """Greedy packing. Counts of separate pieces add up to about the count of their join: the running sum
        rules out what cannot fit without re-encoding, and an exact count of the joined text confirms the rest."""
        current: list[Span] = []
        estimate = 0
        for (start, end), tokens in units:
            if current:
                gap = self._count(text[current[-1][1]:start])
                if estimate + gap + tokens <= self.max_tokens and \
                        self._count(text[current[0][0]:end]) <= self.max_tokens:
                    current.append((start, end))
                    estimate += gap + tokens
                    continue
                # A heading belongs to the text under it: never end a chunk with one.
                carried = current.pop() if len(current) > 1 and _is_heading(text, current[-1]) else None
                yield current[0][0], current[-1][1]
                if carried is not None:
                    joined = self._count(text[carried[0]:end])
                    if joined <= self.max_tokens:
                        current, estimate = [carried, (start, end)], joined
                        continue
                    yield carried
            current, estimate = [(start, end)], tokens
        if current:
            yield current[0][0], current[-1][1]


def chunk_documents(documents: Iterable[Document], max_tokens: int = DEFAULT_MAX_TOKENS) -> Iterator[Chunk]:
    """Chunks of every document in order; a chunk whose text already appeared is dropped (same id)."""
    chunker = Chunker(max_tokens)
    seen: set[str] = set()
    duplicates = 0
    for document in documents:
        for chunk in chunker.chunks(document):
            if chunk.id in seen:
                duplicates += 1
                continue
            seen.add(chunk.id)
            yield chunk
    if duplicates:
        log.warning("dropped %d chunk(s) whose text repeats an earlier chunk", duplicates)
