"""Cutting documents into chunks that fit a token budget.

A document is read as blocks: paragraphs (separated by blank lines), Markdown headings, fenced code blocks and
tables. Chunks break between blocks first, then at sentence ends, and mid-sentence only when one sentence is
longer than the whole budget. A run of headings always goes with the text under it. A fenced code block or a
table is one block, cut only when it alone is over the budget: then between lines (rows), each piece of code
fenced again and each piece of a table after the first led by the table's header rows.

A chunk is a span of its document: `document.text[start:end] == chunk.text`, except for those pieces of a cut code
block or table, whose text adds the fence lines or header rows they lack (see `Chunk`).
"""

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass

import regex

from datagen.text.ingest import Document
from datagen.text.sentences import AUTO, SentenceSplitter, Span, trimmed
from datagen.text.tokens import count_tokens, head_within

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 512
_SPACES = regex.compile(r"\s*")
# Where text that writes no spaces between words may be cut: after a syllable or word separator (Tibetan's tsheg, a
# zero-width space, Ethiopic's wordspace), else between two grapheme clusters (Unicode's extended grapheme
# clusters, UAX #29), never inside one (a consonant and its vowel sign, an emoji sequence joined by ZWJ).
_SEPARATOR = regex.compile(r"(?r)[\N{TIBETAN MARK INTERSYLLABIC TSHEG}\N{ZERO WIDTH SPACE}\N{ETHIOPIC WORDSPACE}]")
_GRAPHEME = regex.compile(r"\X")
# An over-long paragraph is known to be over the budget from its first max_tokens * this many characters: it is
# not counted whole (tiktoken takes seconds on a megabyte-long run of letters).
_HEAD_CHARS_PER_TOKEN = 16

# Markdown, by line: an ATX heading, a setext heading's underline, a code fence, a table's delimiter row.
_HEADING = regex.compile(r" {0,3}#{1,6}(?:[ \t]|$)")
_UNDERLINE = regex.compile(r" {0,3}(?:=+|-+)[ \t]*$")
_FENCE = regex.compile(r"(?P<indent>[ \t]*)(?P<fence>`{3,}(?=[^`]*$)|~{3,})")
_DELIMITER_ROW = regex.compile(r"[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")


@dataclass(frozen=True)
class Chunk:
    """A piece of a document under the token budget. `start`/`end` are character offsets into the document's
    text (`read_document(source)`), and `text == document.text[start:end]`, except for the pieces of a code block
    or table too long for one chunk: a piece of code carries the opening fence line before it and the closing one
    after it where its span lacks them, and a piece of a table after the first carries the header rows before it.
    """

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


def is_cut_from(document_text: str, chunk: Chunk) -> bool:
    """Whether `chunk` is cut from `document_text`: its text is the span `start:end`, or holds it (a piece of a
    cut code block or table, with the fence lines or header rows it carries)."""
    span = document_text[chunk.start:chunk.end]
    return chunk.text == span or (bool(span) and span in chunk.text)


@dataclass(frozen=True)
class _Block:
    """A paragraph, a heading, a fenced code block or a table: `start`/`end` in the document, `lines` the spans of
    a code block's or table's lines (fence or header lines first)."""

    kind: str  # "text", "heading", "code" or "table"
    start: int
    end: int
    lines: tuple[Span, ...] = ()
    closed: bool = True  # a code block's closing fence was found


def _lines(text: str) -> Iterator[Span]:
    """Each line's span, without its line end ("\\n", "\\r\\n")."""
    start = 0
    while start <= len(text):
        newline = text.find("\n", start)
        end = len(text) if newline < 0 else newline
        yield start, end - (end > start and text[end - 1] == "\r")
        if newline < 0:
            return
        start = newline + 1


def blocks(text: str) -> Iterator[_Block]:
    """The blocks of a document, in order. Blank lines separate paragraphs; a heading line, a code fence or a
    table's first row starts a block of its own; a blank line inside a fence does not end it."""
    lines = list(_lines(text))
    paragraph: list[Span] = []

    def flush(kind: str = "text") -> Iterator[_Block]:
        if paragraph and (span := trimmed(text, paragraph[0][0], paragraph[-1][1])) is not None:
            yield _Block(kind, *span)
        paragraph.clear()

    i = 0
    while i < len(lines):
        start, end = lines[i]
        line = text[start:end]
        if not line.strip():
            yield from flush()
        elif fence := _FENCE.match(line):
            yield from flush()
            marker = fence["fence"]
            closing = regex.compile(rf"[ \t]*{regex.escape(marker[0])}{{{len(marker)},}}[ \t]*$")
            j = next((k for k in range(i + 1, len(lines)) if closing.match(text, *lines[k])), None)
            body = tuple(span for span in lines[i:len(lines) if j is None else j + 1] if text[slice(*span)].strip())
            yield _Block("code", start, body[-1][1], body, closed=j is not None)
            i = len(lines) if j is None else j
        elif _HEADING.match(line):
            yield from flush()
            yield _Block("heading", *trimmed(text, start, end))
        elif paragraph and _UNDERLINE.match(line):  # a setext heading: the paragraph is its title
            paragraph.append((start, end))
            yield from flush("heading")
        elif "|" in line and i + 1 < len(lines) and "|" in text[slice(*lines[i + 1])] \
                and _DELIMITER_ROW.match(text, *lines[i + 1]):
            yield from flush()
            j = i + 2
            while j < len(lines) and "|" in text[slice(*lines[j])] and text[slice(*lines[j])].strip():
                j += 1
            yield _Block("table", start, lines[j - 1][1], tuple(lines[i:j]))
            i = j - 1
        else:
            paragraph.append((start, end))
        i += 1
    yield from flush()


@dataclass(frozen=True)
class _Frame:
    """What each piece of a code block or table too long for one chunk needs around it to stand alone: `reopen`
    before a piece that does not start the block (its opening fence, or its header rows), `close` after one that
    does not end it (the closing fence)."""

    start: int
    end: int
    reopen: str
    close: str
    reopen_tokens: int
    close_tokens: int


@dataclass(frozen=True)
class _Unit:
    """The smallest piece the packer places: a block that fits the budget, a sentence, a line of a cut code block
    or table, or a piece of a cut sentence."""

    start: int
    end: int
    tokens: int
    heading: bool = False
    frame: _Frame | None = None

    @property
    def prefix(self) -> str:
        return self.frame.reopen if self.frame and self.start > self.frame.start else ""

    @property
    def suffix(self) -> str:
        return self.frame.close if self.frame and self.end < self.frame.end else ""

    @property
    def frame_tokens(self) -> int:
        """The tokens of the prefix and suffix this unit would take alone in a chunk."""
        return (self.frame.reopen_tokens if self.prefix else 0) + (self.frame.close_tokens if self.suffix else 0)


class Chunker:
    """Packs blocks (or, for an over-long block, its sentences, lines or rows) into chunks of at most `max_tokens`.

    `language` chooses pysbd's sentence rules (a pysbd code such as "de"); "auto" picks them from each
    paragraph's script. Either way a sentence ends at every mark that ends one in its script ('।', '؟', '։', '།',
    '׃', ...: see `datagen.text.sentences`).
    """

    def __init__(self, max_tokens: int = DEFAULT_MAX_TOKENS, count: Callable[[str], int] = count_tokens,
                 language: str = AUTO):
        if max_tokens < 16:
            raise ValueError(f"max_tokens must be at least 16, got {max_tokens}")
        self.max_tokens = max_tokens
        self._count = count
        self._sentences = SentenceSplitter(language)

    def chunks(self, document: Document) -> Iterator[Chunk]:
        """The chunks of a document, in order."""
        text = document.text
        for first, last in self._pack(text, self._units(text)):
            piece = first.prefix + text[first.start:last.end] + last.suffix
            tokens = first.tokens if first is last and not first.prefix and not first.suffix else self._count(piece)
            yield Chunk(chunk_id(piece), document.source, first.start, last.end, piece, tokens)

    def _units(self, text: str) -> Iterator[_Unit]:
        """Pieces that each fit the budget, with their token counts, in document order."""
        reserve = 0  # the tokens of the headings just before: room the text under them leaves for them
        for block in blocks(text):
            tokens = self._count_upto(text, block.start, block.end)
            if block.kind == "heading" and tokens <= self.max_tokens:
                yield _Unit(block.start, block.end, tokens, heading=True)
                reserve += tokens + 1  # and the line ends after it
                continue
            room = self.max_tokens - reserve if reserve <= self.max_tokens * 7 // 8 else self.max_tokens
            reserve = 0
            if tokens <= room:
                yield _Unit(block.start, block.end, tokens)
            elif block.kind in ("code", "table") and tokens > self.max_tokens:
                yield from self._framed_lines(text, block)
            else:  # cut at sentence ends; the headings above go with the first sentence, cut if it must be
                for start, end in self._sentences.spans(text, block.start, block.end):
                    tokens = self._count_upto(text, start, end)
                    if tokens <= room:
                        yield _Unit(start, end, tokens)
                    else:
                        yield from self._hard_split(text, start, end, self.max_tokens, room)
                    room = self.max_tokens

    def _framed_lines(self, text: str, block: _Block) -> Iterator[_Unit]:
        """A code block's or table's lines as units, each piece of the block to be fenced (or headed) again."""
        newline = "\r\n" if text.startswith("\r\n", block.lines[0][1]) else "\n"
        if block.kind == "code":
            fence = _FENCE.match(text, *block.lines[0])
            close = newline + (text[slice(*block.lines[-1])] if block.closed else fence["indent"] + fence["fence"])
            head, body = block.lines[:1], block.lines[1:-1] if block.closed else block.lines[1:]
        else:
            close = ""
            head, body = block.lines[:2], block.lines[2:]
        reopen = text[head[0][0]:head[-1][1]] + newline
        frame = _Frame(block.start, block.end, reopen, close, self._count(reopen), self._count(close))
        if not body or frame.reopen_tokens + frame.close_tokens > self.max_tokens // 2:
            yield from self._hard_split(text, block.start, block.end, self.max_tokens)  # no room to frame pieces
            return
        spans = [list(span) for span in body]
        spans[0][0], spans[-1][1] = block.start, block.end  # the fence or header lines go with the first line
        for start, end in spans:
            unit = _Unit(start, end, self._count_upto(text, start, end), frame=frame)
            if unit.tokens + unit.frame_tokens <= self.max_tokens:
                yield unit
            else:
                budget = self.max_tokens - frame.reopen_tokens - frame.close_tokens
                for piece in self._hard_split(text, start, end, budget):
                    yield _Unit(piece.start, piece.end, piece.tokens, frame=frame)

    def _count_upto(self, text: str, start: int, end: int) -> int:
        """Tokens of text[start:end]; or of its head only, when the head alone is over the budget."""
        head = min(end, start + self.max_tokens * _HEAD_CHARS_PER_TOKEN)
        tokens = self._count(text[start:head])
        return tokens if tokens > self.max_tokens or head == end else self._count(text[start:end])

    def _hard_split(self, text: str, start: int, end: int, budget: int, first: int | None = None) -> Iterator[_Unit]:
        """Cut a sentence longer than the budget (the first piece: `first`): at the last space that fits, else at
        a character."""
        # Each piece is measured without the whitespace before it: " word" can be one token where "word" is two.
        chars_per_token = 6.0  # a guess at first, then the rate of the last piece: it sizes the window encoded
        while (start := _SPACES.match(text, start, end).end()) < end:
            limit, first = budget if first is None else first, None
            cut = self._aimed_cut(text, start, end, limit, int(limit * chars_per_token * 1.2) + 16)
            span, tokens = self._piece(text, start, cut, end)
            if tokens > limit:  # the aimed cut was off (a token's split differs alone): find the cut by counting
                cut = self._largest_fit(text, start, end, limit)
                span, tokens = self._piece(text, start, cut, end)
            if span is not None:
                yield _Unit(*span, tokens)
                chars_per_token = (span[1] - span[0]) / max(tokens, 1)
            start = max(span[1] if span else cut, start + 1)

    def _piece(self, text: str, start: int, cut: int, end: int) -> tuple[Span | None, int]:
        """The piece text[start:cut], ended where a line may break before `cut` (see `_break_before`), and its
        tokens."""
        if cut < end:
            cut = _break_before(text, start, cut)
        span = trimmed(text, start, cut)
        return span, self._count(text[span[0]:span[1]]) if span else 0

    def _aimed_cut(self, text: str, start: int, end: int, budget: int, window: int) -> int:
        """Where the first `budget` tokens of text[start:end] end, by encoding a window of it once (with the
        default token count; another count is probed by `_largest_fit`)."""
        if self._count is not count_tokens:
            return self._largest_fit(text, start, end, budget)
        while True:
            head = head_within(text[start:min(end, start + window)], budget)
            if head < window or start + window >= end:
                return max(start + head, start + 1)
            window *= 4

    def _largest_fit(self, text: str, start: int, end: int, budget: int) -> int:
        """The largest cut in (start, end] whose piece text[start:cut] fits the budget (at least one character).
        Probes are aimed by the token rate of the counts so far, and bisect after two probes landed on the same
        side: three or four counts of about a chunk each, where a plain bisection over a window of many chunks
        counted long pieces a dozen times a cut (minutes for a 50 MB line)."""
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

    def _pack(self, text: str, units: Iterable[_Unit]) -> Iterator[tuple[_Unit, _Unit]]:
        """Greedy packing into (first unit, last unit) pairs. Counts of separate pieces add up to about the count
        of their join: the running sum rules out what cannot fit without re-encoding, and an exact count of the
        joined text confirms the rest. A run of headings never ends a chunk: it moves to the next one."""
        current: list[_Unit] = []
        estimate = 0
        for unit in units:
            if current:
                gap = self._count(text[current[-1].end:unit.start])
                closing = unit.frame.close_tokens if unit.suffix else 0
                if estimate + gap + unit.tokens + closing <= self.max_tokens and self._fits(text, current[0], unit):
                    current.append(unit)
                    estimate += gap + unit.tokens
                    continue
                run = next((n for n in range(len(current)) if not current[-1 - n].heading), len(current))
                carried = current[len(current) - run:] if 0 < run < len(current) else []
                yield current[0], current[-1 - len(carried)]
                if carried:
                    if self._fits(text, carried[0], unit):
                        current = [*carried, unit]
                        estimate = self._count(text[carried[0].start:unit.end])
                        continue
                    yield carried[0], carried[-1]
            current, estimate = [unit], unit.tokens + (unit.frame.reopen_tokens if unit.prefix else 0)
        if current:
            yield current[0], current[-1]

    def _fits(self, text: str, first: _Unit, last: _Unit) -> bool:
        return self._count(first.prefix + text[first.start:last.end] + last.suffix) <= self.max_tokens


def chunk_documents(documents: Iterable[Document], max_tokens: int = DEFAULT_MAX_TOKENS,
                    language: str = AUTO) -> Iterator[Chunk]:
    """Chunks of every document in order; a chunk whose text already appeared is dropped (same id). `language`
    chooses the sentence splitter's rules (see `Chunker`)."""
    chunker = Chunker(max_tokens, language=language)
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


def _break_before(text: str, start: int, cut: int) -> int:
    """Where the piece text[start:cut] of an over-long sentence should end: at its last space; else after its last
    separator of syllables or words; else at its last grapheme cluster boundary; else (one cluster longer than the
    piece) at `cut` itself."""
    space = text.rfind(" ", start + 1, cut + 1)
    if space > start:
        return space
    separator = _SEPARATOR.search(text, start + 1, cut)
    if separator:
        return separator.end()
    boundary = start
    for cluster in _GRAPHEME.finditer(text, start, cut + 64):  # a cluster ending past `cut` ends the search
        if cluster.end() > cut:
            break
        boundary = cluster.end()
    return boundary if boundary > start else cut
