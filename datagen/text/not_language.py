"""The `not_language` reason of datagen.text.degenerate (its docstring says what it catches): `is_not_language`,
and the tables it reads each character of a text with."""

import functools
import unicodedata
from collections import Counter

import regex

# The share of consonant pairs among neighbouring letters from which letters are random: English prose of twenty
# letters or more has at most 0.45 (Polish, dense with clusters, about 0.38); random letters about 0.6.
RANDOM_CONSONANT_PAIRS = 0.5

_INVISIBLE = regex.compile(r"[\p{Cf}\p{Cc}\p{Z}\s]+")
_SYMBOL = regex.compile(r"\p{S}")
_DIGIT = regex.compile(r"\p{N}")
# Units of text for counting repetition: a word in a script that spaces its words, a character in one that does
# not (Han, kana, Thai, ...).
UNITS = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}]|[\p{L}\p{M}\p{N}]+")
_VOWEL_SCRIPTS = regex.compile(r"[\p{Script=Latin}\p{Script=Cyrillic}\p{Script=Greek}]")
_VOWELS = set("aeiouyıæøœåəɛɔаеёиоуыэюяіїєαεηιουω")
_INDIC = (r"[\p{Script=Devanagari}\p{Script=Bengali}\p{Script=Gurmukhi}\p{Script=Gujarati}\p{Script=Oriya}"
          r"\p{Script=Tamil}\p{Script=Telugu}\p{Script=Kannada}\p{Script=Malayalam}\p{Script=Sinhala}"
          r"\p{Script=Tibetan}\p{Script=Thai}\p{Script=Lao}\p{Script=Khmer}\p{Script=Myanmar}]")
_SCRIPT_GROUPS = {"Latin": r"\p{Script=Latin}", "Cyrillic": r"\p{Script=Cyrillic}", "Greek": r"\p{Script=Greek}",
                  "CJK": r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]", "Arabic": r"\p{Script=Arabic}",
                  "Hebrew": r"\p{Script=Hebrew}", "Indic": _INDIC}
_GROUPS = regex.compile("|".join(f"(?P<{name}>{pattern})" for name, pattern in _SCRIPT_GROUPS.items()))
_IDENTIFIER = regex.compile(
    r"""(?:\p{L}[\p{L}\p{N}]*(?:_[\p{L}\p{N}]+)+|[\w-]{2,}(?:\.[\w-]+)*\.[A-Za-z][A-Za-z0-9]{0,4}
    |(?:https?://|www\.)\S+|[~.]?/\S*/\S*|[A-Za-z]:\\\S*
    |(?=(?:\w*\p{L}){3})(?=(?:\w*\p{N}){3})\w+)""", regex.X)
_EDGE_PUNCTUATION = "\"'`.,;:!?()[]{}<>_*\u2018\u2019\u201c\u201d\u00ab\u00bb\u2026"


class CharTable(dict):
    """A `str.translate` table filled on demand: a code point's entry is `classify(char)` (a string, or None to
    delete it), computed the first time the code point is met and kept (a text has few distinct characters). One
    translate then classifies every character of a text in C, where a regex match per character or per word cost
    Python a call each (bench/degenerate.py --cpu).

    classify: a function of one character (a str of length 1) to its entry; it must not raise.
    fixed: entries given up front ({code point: entry}); None (the default) for none.
    """

    def __init__(self, classify, fixed: dict[int, str] | None = None):
        super().__init__(fixed or {})
        self._classify = classify

    def __missing__(self, code: int) -> str | None:
        value = self[code] = self._classify(chr(code))
        return value


def _kind(char: str) -> str | None:
    """None for an invisible character (deleted), else `l` letter, `m` mark, `n` number, `s` symbol, `o` other."""
    if _INVISIBLE.match(char):
        return None
    for kind, pattern in _KIND_PATTERNS:
        if pattern.match(char):
            return kind
    return "o"


_KIND_PATTERNS = (("l", regex.compile(r"\p{L}")), ("m", regex.compile(r"\p{M}")), ("n", _DIGIT), ("s", _SYMBOL))
# Each visible character of a text as its kind (`_kind`): `text.translate(KINDS)` has the length of the text with
# its invisible characters taken out, and counts its letters, marks, numbers and symbols.
KINDS = CharTable(_kind)
# A letter of a script that writes its vowels as `v` (a vowel, accents aside) or `c`; other characters deleted, a
# space kept (it parts words).
_VOWEL_CLASSES = CharTable(lambda char: ("v" if _base(char) in _VOWELS else "c") if _VOWEL_SCRIPTS.match(char)
                            else None, {ord(" "): " "})
# A letter of one of _SCRIPT_GROUPS as the group's number (the first group that matches, as in `_GROUPS`).
_GROUP_NUMBERS = {name: str(number) for number, name in enumerate(_SCRIPT_GROUPS)}
_GROUP_CODES = CharTable(lambda char: _GROUP_NUMBERS[match.lastgroup] if (match := _GROUPS.match(char)) else None)
# A token (from text.split(), one per line) without a letter.
_LETTERLESS_LINE = regex.compile(r"^[^\p{L}\p{M}\n]+$", regex.M)


def is_not_language(text: str, kinds: str) -> bool:
    """Whether `text` is no text in any language (datagen.text.degenerate's `not_language`, without a source).

    kinds: `text.translate(KINDS)`, which the caller has made already. Raises nothing.
    """
    letters = kinds.count("l") + kinds.count("m")
    if letters == 0:
        return True
    # Symbols (emoji, math, box drawing, currency...) or symbols and punctuation together outweighing letters.
    symbols = kinds.count("s")
    others = len(kinds) - letters - kinds.count("n")
    if len(kinds) >= 10 and (symbols > 0.2 * len(kinds) or others > letters):
        return True
    tokens = [token.strip(_EDGE_PUNCTUATION) for token in text.split()]
    tokens = [token for token in tokens if token]
    if tokens:
        lines = "\n".join(tokens)  # a token holds no line break
        numbers = len(_LETTERLESS_LINE.findall(lines))
        if len(tokens) >= 4 and numbers > 0.7 * len(tokens):
            return True
        # An identifier has one of `_./\\` or three digits: most texts have too few for the per-token check.
        could = sum(map(lines.count, "_./\\")) + kinds.count("n") // 3
        if could > 0.5 * len(tokens) and (sum(1 for token in tokens if _IDENTIFIER.fullmatch(token))
                                          > 0.5 * len(tokens)):
            return True
    return _repeats(text) or _random_letters(tokens, letters) or _mixed_scripts(text)


def _repeats(text: str) -> bool:
    """One unit repeated (`the the the the the the`, `好好好好好好`), or a short loop (`I am here. I am here. ...`):
    most units the same one, or few distinct trigrams of units."""
    units = [unit.casefold() for unit in UNITS.findall(text)]
    # (Six `ha`s of laughter are a line of dialogue: eight units or more, and more than 60% of them.)
    if len(units) >= 8 and max(Counter(units).values()) > 0.6 * len(units):
        return True
    if len(units) < 12:
        return False
    return len(set(zip(units, units[1:], units[2:]))) < 0.4 * (len(units) - 2)


def _random_letters(tokens: list[str], letters: int) -> bool:
    """Keyboard mash or random letters in a script that writes its vowels (Latin, Cyrillic, Greek): hardly a
    vowel among eight letters or more, or, from twenty letters on, at least RANDOM_CONSONANT_PAIRS of the pairs of
    neighbouring letters within words two consonants (acronyms in capitals left out: `BBC`, `NYPD`). `letters`:
    how many letters and marks the tokens have."""
    words = " ".join(word for word in tokens if not (len(word) > 1 and word.isupper())).translate(_VOWEL_CLASSES)
    scripted = len(words) - words.count(" ")
    if scripted < 8 or scripted < 0.5 * letters:
        return False
    vowels = words.count("v")
    if vowels < 0.15 * scripted:
        return True
    pairs = scripted - len(words.split())  # a word of n letters has n - 1 pairs
    consonant_runs = words.replace("v", " ").split()
    consonants = scripted - vowels - len(consonant_runs)  # a run of n consonants has n - 1 consonant pairs
    return scripted >= 20 and consonants >= RANDOM_CONSONANT_PAIRS * pairs


@functools.cache
def _base(char: str) -> str:
    """A letter without its accents, case-folded: `É` -> `e`. (Cached: a text has few distinct letters, and this ran
    for each letter of every output, a tenth of a run's client CPU in bench/throughput_bench.py.)"""
    return unicodedata.normalize("NFD", char)[0].casefold()


def _mixed_scripts(text: str) -> bool:
    """Letters of three or more scripts, each a good share of them: a character soup, not a language."""
    codes = text.translate(_GROUP_CODES)
    total = len(codes)
    return total >= 15 and sum(1 for code in set(codes) if codes.count(code) >= 0.2 * total) >= 3
