"""Where sentences end, in every script: pysbd's rules for the language (or each paragraph's script), and the marks
that end a sentence whatever the language says.

A sentence ends at every mark Unicode files under Sentence_Terminal (`.`, `?`, `।`, `؟`, `։`, `።`, `。`, ...) and at
the marks of `OTHER_ENDS`, which Unicode files only under Terminal_Punctuation but which end a sentence, a verse or
a section in their script (Tibetan's shad `།`, Hebrew's sof pasuq `׃`, ...); never at a comma, semicolon, colon or
word separator.
"""

import functools
import logging
from collections import Counter
from collections.abc import Iterable, Iterator

import regex  # tiktoken's own dependency; unlike re, it knows Unicode's Sentence_Terminal and Script properties

log = logging.getLogger(__name__)

Span = tuple[int, int]

# `language` for a sentence splitter that picks pysbd's rules from each paragraph's script.
AUTO = "auto"

# The marks Unicode files under Terminal_Punctuation but not Sentence_Terminal (PropList.txt, the Unicode data the
# `regex` module embeds) that end a sentence, a verse or a section by their script's convention (each mark's name
# and the Unicode Standard's description of its script). The rest of Terminal_Punctuation stays out: commas,
# semicolons and colons (',' ';' ':' '·' '،' '؛' '፣' '፤' '፥' '፦' '᠂' '᠄' '、' '，' '；' '：' '៖' '꧇', Syriac's colons,
# Samaritan's nequdaa, afsaaq and anged, Lepcha's cer-wa and tshook, Bamum's, Vai's, Lisu's, NKo's, Newa's,
# SignWriting's ...), word separators ('፡', Runic, Ugaritic, Old Persian, Phoenician, Khojki, Bhaiksuki, Siddham,
# cuneiform), Brahmi's and Pahawh Hmong's marks of varying weight, and Avestan's and Manichaean's lesser dots.
# Greek's ';' and Armenian's ':' end sentences in those languages only (`_LANGUAGE_ENDS`).
OTHER_ENDS = (
    "\N{GREEK QUESTION MARK}"  # ';' as its own code point, which nothing but Greek uses
    "\N{HEBREW PUNCTUATION SOF PASUQ}"  # the end of a verse
    # Samaritan's sentence ends of mood (prayer, surprise, question, shout, outburst, teaching, submission); its
    # full stop and section ends are Sentence_Terminal already
    "\N{SAMARITAN PUNCTUATION BAU}\N{SAMARITAN PUNCTUATION ATMAAU}\N{SAMARITAN PUNCTUATION SHIYYAALAA}"
    "\N{SAMARITAN PUNCTUATION ZIQAA}\N{SAMARITAN PUNCTUATION ZAEF}\N{SAMARITAN PUNCTUATION TURU}"
    "\N{SAMARITAN PUNCTUATION ARKAANU}"
    "\N{MANDAIC PUNCTUATION}"  # Mandaic's one mark: the end of a sentence or section
    "\N{THAI CHARACTER ANGKHANKHU}\N{THAI CHARACTER KHOMUT}"  # the end of a stanza or section; of a chapter or text
    # Tibetan's shad, the end of a clause or sentence (doubled, of a topic), its other forms, and the sbrul shad
    # between topics
    "\N{TIBETAN MARK SBRUL SHAD}\N{TIBETAN MARK SHAD}\N{TIBETAN MARK NYIS SHAD}\N{TIBETAN MARK TSHEG SHAD}"
    "\N{TIBETAN MARK NYIS TSHEG SHAD}\N{TIBETAN MARK RIN CHEN SPUNGS SHAD}\N{TIBETAN MARK RGYA GRAM SHAD}"
    "\N{MARCHEN MARK SHAD}"  # Marchen, written the Tibetan way
    "\N{KHMER SIGN KOOMUUT}"  # the end of a chapter or text
    "\N{MONGOLIAN FOUR DOTS}"  # the end of a paragraph or chapter
    "\N{CORNISH VERSE DIVIDER}"
    "\N{TAI VIET SYMBOL KOI KOI}"  # the end of a text
    "\N{IMPERIAL ARAMAIC SECTION SIGN}"
    # the star, fleuron and ringed dots that end Manichaean sentences and sections
    "\N{MANICHAEAN PUNCTUATION STAR}\N{MANICHAEAN PUNCTUATION FLEURON}"
    "\N{MANICHAEAN PUNCTUATION DOUBLE DOT WITHIN DOT}\N{MANICHAEAN PUNCTUATION DOT WITHIN DOT}"
    # Avestan's large marks: the ends of verses and sections
    "\N{LARGE TWO DOTS OVER ONE DOT PUNCTUATION}\N{LARGE ONE DOT OVER TWO DOTS PUNCTUATION}"
    "\N{LARGE TWO RINGS OVER ONE RING PUNCTUATION}\N{LARGE ONE RING OVER TWO RINGS PUNCTUATION}"
    # Psalter Pahlavi: the ends of verses, psalms and canons
    "\N{PSALTER PAHLAVI SECTION MARK}\N{PSALTER PAHLAVI TURNED SECTION MARK}"
    "\N{PSALTER PAHLAVI FOUR DOTS WITH CROSS}\N{PSALTER PAHLAVI FOUR DOTS WITH DOT}"
    "\N{SOYOMBO TERMINAL MARK-1}\N{SOYOMBO TERMINAL MARK-2}"  # the end of a text
)
_TERMINAL = rf"[\p{{Sentence_Terminal}}{OTHER_ENDS}]"
_SHADS = "\N{TIBETAN MARK SHAD}-\N{TIBETAN MARK RGYA GRAM SHAD}"
# What follows a sentence end and belongs to it: closing quotes or brackets; Tibetan's second shad after a space,
# the end of a sentence being written '། །' with the next sentence right after it ("...ཡིན་ནོ། །དེ་ནས་..."); and the
# vowel sign Thai writes after its angkhankhu ('๚ะ').
_TAIL = rf"(?:[\p{{Pe}}\p{{Pf}}\"'»”’\N{{THAI CHARACTER SARA A}}]|[^\S\r\n]*[{_SHADS}])*"
# An end followed by a space (or ending with a doubled shad's second one): where the text says a sentence ends.
_SPACED_END = rf"{_TERMINAL}{_TAIL}(?:(?=\s)|(?<=\s[{_SHADS}]))"
_TERMINAL_END = regex.compile(rf"{_TERMINAL}{_TAIL}\s*\Z")
# Marks that languages end sentences with beyond those: Greek's question mark typed as ';' and Armenian's full stop
# typed as a colon.
_LANGUAGE_ENDS = {"el": ";", "hy": ":"}
# Ends the sentence splitter cuts at whatever pysbd's rules say: every one but '.', '!' and '?', which pysbd's rules
# decide (abbreviations, decimals, "Yahoo!"; in Armenian '.' is no sentence end).
_FIRM_END = regex.compile(rf"(?![.!?]){_SPACED_END}")
# Where a sentence may end at all: a window with none of these is one sentence, and pysbd, whose abbreviation
# rules take time quadratic in the window, is not run on it.
_MAYBE_END = regex.compile(rf"[\p{{Sentence_Terminal}}{OTHER_ENDS};:\n\r]")
_LAST_END = regex.compile(rf"(?r){_SPACED_END}")
# pysbd is exact but slow on very long inputs; a longer paragraph is first cut at line ends or sentence ends.
SENTENCE_WINDOW_CHARS = 20_000
# pysbd's rules by script, for `language = "auto"` (Latin and the rest: English). Devanagari gets Marathi's rules,
# which end sentences at '.' as well (Hindi's do not); the danda ends one in either.
_SCRIPT_LANGUAGES = {"Greek": "el", "Armenian": "hy", "Devanagari": "mr", "Arabic": "ar", "Ethiopic": "am",
                     "Myanmar": "my", "Cyrillic": "ru", "Han": "zh", "Hiragana": "ja", "Katakana": "ja"}
_SCRIPT = regex.compile("|".join(rf"(?P<{name}>\p{{Script={name}}}+)" for name in _SCRIPT_LANGUAGES)
                        + r"|(?P<Latin>\p{Script=Latin}+)")
_SCRIPT_SAMPLE_CHARS = 2000
_SPACES = regex.compile(r"\s*")


def languages() -> list[str]:
    """The values `language` takes: "auto" (pysbd's rules picked by each paragraph's script) or a pysbd code."""
    from pysbd.languages import LANGUAGE_CODES

    return [AUTO, *sorted(LANGUAGE_CODES)]


def trimmed(text: str, start: int, end: int) -> Span | None:
    """The span of text[start:end] without the whitespace around it, or None when that is all whitespace."""
    segment = text[start:end]
    stripped = segment.strip()
    if not stripped:
        return None
    lead = len(segment) - len(segment.lstrip())
    return start + lead, start + lead + len(stripped)


@functools.cache
def _segmenter(language: str):
    import pysbd

    return pysbd.Segmenter(language=language, clean=False)


def _script_language(text: str) -> str:
    """pysbd's language for the script most of the letters of `text` are in (English for Latin and the rest)."""
    letters: Counter[str] = Counter()
    for match in _SCRIPT.finditer(text[:_SCRIPT_SAMPLE_CHARS]):
        letters[_SCRIPT_LANGUAGES.get(match.lastgroup, "en")] += len(match[0])
    if not letters:
        return "en"
    language = letters.most_common(1)[0][0]
    return "ja" if language == "zh" and letters["ja"] else language


class SentenceSplitter:
    """Sentence spans from pysbd (rule-based, no download) with the rules of `language` (a pysbd code, or "auto":
    those of each paragraph's script), ending a sentence too at every mark that ends one whatever the language (see
    the module's docstring) when a space follows it, and never at a comma or colon.

    Raises ValueError for a `language` that is not one of `languages()`.
    """

    def __init__(self, language: str = AUTO):
        if language not in languages():
            raise ValueError(f"unknown language {language!r}: one of {', '.join(languages())}")
        self.language = language

    def spans(self, text: str, start: int, end: int) -> Iterator[Span]:
        """The sentences of text[start:end], in order, as (start, end) offsets into `text` without the whitespace
        around them."""
        for w_start, w_end in self._windows(text, start, end):
            if not _MAYBE_END.search(text, w_start, w_end):
                if (span := trimmed(text, w_start, w_end)) is not None:
                    yield span
                continue
            language = _script_language(text[w_start:w_end]) if self.language == AUTO else self.language
            yield from self._joined(text, self._split(text, w_start, w_end, language), language)

    @staticmethod
    def _split(text: str, start: int, end: int, language: str) -> Iterator[Span]:
        cursor = start
        for sentence in _segmenter(language).segment(text[start:end]):
            # pysbd returns verbatim substrings with clean=False; locate each to get exact offsets.
            found = text.find(sentence, cursor, end)
            if found < 0:
                log.debug("sentence splitter altered text near offset %d; keeping the rest whole", cursor)
                break
            cursor = found + len(sentence)
            for firm in _FIRM_END.finditer(text, found, cursor):
                if (span := trimmed(text, found, firm.end())) is not None:
                    yield span
                found = firm.end()
            if (span := trimmed(text, found, cursor)) is not None:
                yield span
        if (rest := trimmed(text, cursor, end)) is not None:
            yield rest

    @staticmethod
    def _joined(text: str, spans: Iterable[Span], language: str) -> Iterator[Span]:
        """Spans joined where a piece does not end a sentence: no terminal (a comma, a colon) and no line end."""
        extra = _LANGUAGE_ENDS.get(language, "")
        pending: Span | None = None
        for span in spans:
            pending = span if pending is None else (pending[0], span[1])
            piece = text[pending[0]:pending[1]]
            if _TERMINAL_END.search(piece) or (extra and piece.rstrip("\"'»”’)]").endswith(tuple(extra))) \
                    or "\n" in text[pending[1]:_SPACES.match(text, pending[1]).end()]:
                yield pending
                pending = None
        if pending is not None:
            yield pending

    @staticmethod
    def _windows(text: str, start: int, end: int) -> Iterator[Span]:
        while end - start > SENTENCE_WINDOW_CHARS:
            limit = start + SENTENCE_WINDOW_CHARS
            cut = text.rfind("\n", start, limit)
            if (found := _LAST_END.search(text, start, limit)) is not None:
                cut = max(cut, found.end())
            if cut <= start:
                cut = text.rfind(" ", start, limit)
            if cut <= start:
                cut = limit
            yield start, cut
            start = cut
        yield start, end
