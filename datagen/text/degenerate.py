"""Whether a model's text is degenerate: no text a pipeline should keep as (part of) a training sample.

`degenerate(text, source=..., field=...)` returns why a text is to be dropped, or None. Every built-in pipeline
(and the program `datagen new` writes) drops an output for which it returns a reason, and lists it in its
prediction's `dropped` (`{"reason": ..., ...}`), which `datagen generate` counts by reason. The reasons, in the
order they are checked (the first that applies is returned):

- `empty`: nothing but spaces, punctuation or invisible characters (`""`, `"."`, `"—"`).
- `placeholder`: a template's stand-in rather than text: the field's own name with or without braces, brackets,
  quotes or markers (`generic`, `{generic}`, `{{generic}}`, `[generic]`, `<generic>`, `[[ ## generic ## ]]`),
  any single name in template braces (`{{ passage }}`, `${text}`), a template fragment inside text (`{{ ... }}`,
  `{% ... %}`, `[[ ## ... ## ]]`, `{name}`), the prompt's own instructions echoed (DSPy's "Respond with a JSON
  object in the following order of fields"), a filler (`TODO`, `...`, `N/A`, `null`) or lorem ipsum. Compared
  case-insensitively.
- `serialized`: data or code where prose is expected: a JSON object or list, a Python dict/list/tuple/set repr
  (truncated ones too), a fenced code block, lines of code, XML/HTML markup.
- `not_language`: not text in any language: no letter at all, mostly symbols or numbers, file names and
  identifiers (`passage_text1234567890.csv`), one word or a short loop repeated, letters of three scripts
  mixed, and keyboard mash or random letters in the scripts that write their vowels (Latin, Cyrillic, Greek).
  Built to be conservative: real prose in any script passes (tests/test_degenerate.py holds prose in 25
  languages). Random characters of a script with thousands of them (Chinese, Japanese) or without written vowels
  (Arabic, Hebrew), or random syllables of an abugida (Devanagari, Tibetan), are beyond a check without a
  language model: there, repetition, symbols and digits are caught. With `min_length_ratio` (a rewrite of its
  source, checked after `copy`), also a text whose letters do not follow its source's language (its letters
  shuffled within words, say) and that shares few of its words (`_unlike_its_source`).
- `copy`: the text repeats its `source`: the same words and punctuation once case, spaces and typography
  (curly quotes, dashes, Unicode compatibility forms) are made alike, or nearly (similarity at least
  COPY_SIMILARITY), or the same words in any order without their punctuation (WORD_BAG_COPY), or a verbatim part
  of the source makes up nearly all of it, or it carries nearly all of the source in one verbatim piece, whatever
  it adds around it (PART_COPY_SHARE).
- `too_short`: with `min_length_ratio`, the text has at most that share of the source's letters and digits (for
  a rewrite that must carry all of its source's content: REWRITE_MIN_LENGTH_RATIO).

How the bars were measured: `python -m bench.degenerate` (it reads ../shared/corpora; its docstring says what
each figure is). On the 1,248 human plain rewrites there (long and short Bible passages, KJV -> WEB and KJV ->
Basic English) and in data/style_clone/pairs.jsonl, the rewrite's length is at least 0.579 of its source's, its
similarity to it at most 0.954 and its longest verbatim part at most 0.50 of it (0.51 of its source): none is
dropped. On real prose (the four novels cut into 1,555 chunks of 300 tokens, 5,662 paragraphs and 19,582
sentences, and the 1,876 texts of the parallel pairs) no chunk and no parallel text is dropped; of paragraphs and sentences, only what is not
prose: Gutenberg's `[Illustration]` markers, page numbers, a list of reprint years, an ASCII box, a lone `...`.
"""

import ast
import difflib
import json
import math
import unicodedata
from collections import Counter

import regex

from datagen.text.not_language import KINDS, RANDOM_CONSONANT_PAIRS, UNITS, is_not_language  # noqa: F401

REASONS = ("empty", "placeholder", "serialized", "not_language", "copy", "too_short")

# A rewrite that keeps all of its source's content is not much shorter than it: the shortest human plain rewrite
# measured is 0.579 of its source's length (a florid passage in data/style_clone/pairs.jsonl, and Basic English);
# the first half of a rewrite is at most 0.55 of its source unless the rewrite is longer than the source.
REWRITE_MIN_LENGTH_RATIO = 0.55
# Token similarity (difflib's ratio over words and punctuation marks) at or above which a text is a copy of its
# source; the most similar human rewrite measured: 0.954 (KJV -> WEB, which often keeps whole verses).
COPY_SIMILARITY = 0.96
# The share of a text's tokens in one verbatim run of its source at or above which it is a copy of that part,
# and the share of the source's tokens in that run at or above which the text carries its source over verbatim
# (whatever it adds: SmolLM2-135M copied a passage and then repeated a sentence of it); the most measured in a
# human rewrite: 0.50 and 0.51 (bench/degenerate.py). A text of fewer than PART_COPY_MIN_TOKENS is not judged so
# (a short phrase may well stand in the source, as a question or a name does).
PART_COPY_SHARE = 0.9
PART_COPY_MIN_TOKENS = 6
# The F-measure of shared words, in any order, at or above which a text is its source's words shuffled or stripped
# of punctuation (a copy all the same); the most measured in a human rewrite: 0.974 (bench/degenerate.py).
WORD_BAG_COPY = 0.99
# A rewrite of at least REWRITE_MIN_WORDS words of a source of at least SOURCE_MIN_WORDS (fewer give the source's
# letter-pair model too little to read: free rewrites of lines of dialogue were flagged) is in its source's
# language: measured on the 1,248 human rewrites
# against the same rewrites with their letters shuffled within each word, letter pairs read FOREIGN_LETTERS_GAP
# nats worse than the source together with under MIN_SHARED_WORDS of words shared flagged no rewrite (the least
# shared: 0.26), nor any of 21 rewrites of Russian, Chinese and Arabic passages and lines of dialogue written for a
# trial, and caught 1,000 of the 1,248 shuffles (80%: most sources of the short two-verse pairs are under 40 words).
# Scripts whose mean "word" is longer than SPACED_WORD_LENGTH letters do not space their words and are not judged so.
FOREIGN_LETTERS_GAP = 0.45
MIN_SHARED_WORDS = 0.25
REWRITE_MIN_WORDS = 20
SOURCE_MIN_WORDS = 40
SPACED_WORD_LENGTH = 10

# --- empty and placeholder --------------------------------------------------------------------------------------

_ALNUM_RUN = regex.compile(r"[\p{L}\p{M}\p{N}]+")
_NOT_ALNUM_OR_SPACE = regex.compile(r"[^\p{L}\p{M}\p{N}\s]+")
# Wrapping that a template or a model puts around a bare name: braces, brackets, quotes, field-marker hashes.
_WRAPPING = "{}[]<>()\"'`*#$%|_ \t\n\u2018\u2019\u201c\u201d\u00ab\u00bb"
# Fillers that stand for text in templates and forms. (Not `none`, `nil` or `nan`: "None." is an answer, and a
# line of dialogue in the novels measured; `Nan` is a name.)
_FILLERS = {"todo", "tbd", "tba", "fixme", "xxx", "n/a", "null", "undefined", "...", "\u2026", "placeholder",
            "your text here", "insert text here", "text here"}
# A single name in template braces (`{x}`, `{{ x }}`, `${x}`, `{% x %}`, `<x>`, `[x]`, `[[ ## x ## ]]`).
_TEMPLATE_NAME = regex.compile(r"(?:\$?\{\{?|\{%|\[\[?|<)\s*#*\s*[\p{L}\p{N}_ .:-]{1,40}?\s*#*\s*(?:\}\}?|%\}|\]\]?|>)")
# A template fragment anywhere in a text: Jinja/Mustache braces or tags, a DSPy field marker, a format field.
_FRAGMENT = regex.compile(r"\{\{.*?\}\}|\{%.*?%\}|\[\[ *##.*?## *\]\]|\$?\{[A-Za-z_]\w*\}", regex.S)
_LOREM = regex.compile(r"^\W*lorem ipsum\b", regex.I)
# The prompt echoed: the fixed sentences DSPy's adapters (dspy/adapters/chat_adapter.py, json_adapter.py) and
# datagen's DescribedJSONAdapter write around the fields, which no prose holds. A tiny model continued its answer
# with them (bench/embedded_models.py).
_PROMPT_ECHO = regex.compile(r"Respond with (?:a JSON object|the (?:corresponding )?output fields)|Your (?:input|output) "
                             r"fields are:|In adhering to this structure, your objective is|Answer with a JSON object "
                             r"with these keys|The user's message gives each input after its marker", regex.I)


def _is_placeholder(text: str, field: str | None) -> bool:
    stripped = text.strip()
    bare = stripped.strip(_WRAPPING).casefold()
    names = set(_FILLERS)
    if field:
        name = field.casefold()
        names |= {name, name.replace("_", " "), name.rstrip("s"), name + "s"}
    if bare in names or bare.rstrip(".:") in names:
        return True
    return bool(_TEMPLATE_NAME.fullmatch(stripped) or _FRAGMENT.search(stripped) or _LOREM.search(stripped)
                or _PROMPT_ECHO.search(stripped))


# --- serialized -------------------------------------------------------------------------------------------------

# The start of a JSON object or Python dict (a quoted key and a colon), or of a list of quoted strings, numbers or
# containers: enough to tell a truncated one, which parses as neither.
_OBJECT_START = regex.compile(r"""^\s*(?:\{\s*["'][^"'\n]{0,200}["']\s*:|\[\s*(?:["'{\[]|-?\d+(?:\.\d+)?\s*,))""")
_FENCE = regex.compile(r"^\s*```", regex.M)
_TAG = regex.compile(r"</?[A-Za-z][\w:-]*(?:\s[^<>]*)?/?>")
_MARKUP_START = regex.compile(r"^\s*<(?:\?xml|!DOCTYPE|!--)", regex.I)
# A line only code has: a definition, an import, an assignment or call standing alone, a brace opening or closing
# a block. (Hard-wrapped prose has lines ending in `;` or `:`, and starting with `return` or `for`.)
_CODE_LINE = regex.compile(
    r"""^\s*(?:def\s+\w+\s*\(.*\)\s*(?:->.*)?:|class\s+\w+\s*(?:\(.*\))?:|import\s+[\w.]+(?:\s+as\s+\w+)?
    |from\s+[\w.]+\s+import\s+[\w, *()]+|(?:function|const|let|var)\s+[\w$]+\s*[=(].*|\#include\s*[<"].*
    |[A-Za-z_][\w.]*(?:\[[^\]]*\])?\s*(?:=|\+=|-=)\s*\S.*|[A-Za-z_][\w.]*\(.*\)\s*;?|.*\{|[}\])]+[;,]?)\s*$""",
    regex.X)


def _is_serialized(text: str) -> bool:
    stripped = text.strip()
    if _FENCE.search(stripped) or _MARKUP_START.match(stripped):
        return True
    if _OBJECT_START.match(stripped) or _is_container(stripped):
        return True
    tags = _TAG.findall(stripped)
    # Markup is a document of tags (it opens and closes with one, or tags are a fifth of it), not prose that names
    # or quotes a tag or two: an answer about HTML writes `<b>bold</b>`.
    if len(tags) >= 2 and any(tag.startswith("</") or tag.endswith("/>") for tag in tags) and (
            (stripped.startswith("<") and stripped.endswith(">")) or sum(map(len, tags)) >= 0.2 * len(stripped)):
        return True
    lines = [line for line in stripped.splitlines() if line.strip()]
    if len(lines) == 1:
        # A lone line of code (`print(passage)`, `generic = passage.strip()`); one that ends as a sentence does is
        # prose, such as a short answer that states a formula (`Area = length times width.`).
        return bool(_CODE_LINE.match(stripped)) and not stripped.endswith((".", "!", "?"))
    return sum(1 for line in lines if _CODE_LINE.match(line)) >= len(lines) / 2


def _is_container(text: str) -> bool:
    """Whether `text`, or its part from the first bracket to the last when that is most of it, is a serialized
    object (`is_serialized_object`)."""
    start = min((at for at in (text.find("{"), text.find("[")) if at >= 0), default=-1)
    end = max(text.rfind("}"), text.rfind("]"))
    return start >= 0 and end + 1 - start >= 0.5 * len(text) and is_serialized_object(text[start:end + 1])


def is_serialized_object(text: str) -> bool:
    """Whether `text`, stripped, is a whole JSON object or array, or a Python dict, list, tuple or set literal (the
    repr DSPy makes of an object a model gave for a `str` field): data, not text. Used by datagen.lm.adapters too."""
    text = text.strip()
    if not text or text[0] not in "{[(" or text[-1] not in "}])":
        return False
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(value, dict | list | tuple | set):
            return True
    return False


# --- copy and length --------------------------------------------------------------------------------------------

_TYPOGRAPHY = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
                             "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u00ab": '"', "\u00bb": '"',
                             "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-",
                             "\u2015": "-", "\u2212": "-", "\u2026": "..."})
_TOKEN = regex.compile(r"[\p{L}\p{M}\p{N}]+|[^\s\p{L}\p{M}\p{N}]")
_ALNUM = regex.compile(r"[\p{L}\p{N}]")


# The tokens that hold a letter, a digit or a symbol (not only marks): the words of a text.
_WORD = regex.compile(r"[\p{L}\p{M}\p{N}]*[\p{L}\p{N}][\p{L}\p{M}\p{N}]*|\p{S}")


def tokens(text: str) -> list[str]:
    """`text`'s words and punctuation marks, with case, spacing and typography made alike (NFKC, case-folded,
    curly quotes straight, dashes as hyphens): what `copy` compares."""
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).translate(_TYPOGRAPHY).casefold())


def units(text: str) -> list[str]:
    """`text`'s units, NFKC-normalised and case-folded: a word (a run of letters, marks and digits) in a script that
    spaces its words, a single character in one that does not (Han, kana, Thai, Lao, Khmer, Myanmar), so that a
    Chinese or Thai sentence is not one "word". Punctuation and spacing are dropped."""
    return UNITS.findall(unicodedata.normalize("NFKC", text).casefold())


class _Compared:
    """A text as `copy` and `_unlike_its_source` read it, each form made once (each check re-made them from the
    text before: eight NFKC normalisations a check): `folded`, NFKC-normalised and case-folded; `tokens`, as
    `tokens()` makes them (the typography is made alike after case-folding here, which gives the same: no case
    folding makes or changes a character _TYPOGRAPHY maps); `words`, the tokens with a letter, a digit or a
    symbol, found in one pass (`_WORD`)."""

    __slots__ = ("folded", "tokens", "_typed", "_words")

    def __init__(self, text: str):
        self.folded = unicodedata.normalize("NFKC", text).casefold()
        self._typed = self.folded.translate(_TYPOGRAPHY)
        self.tokens = _TOKEN.findall(self._typed)
        self._words: list[str] | None = None

    @property
    def words(self) -> list[str]:
        if self._words is None:
            self._words = _WORD.findall(self._typed)
        return self._words


def copy_measures(text: str, source: str) -> tuple[float, float, float]:
    """(similarity, part, carried): difflib's ratio between the tokens of `text` and of `source` (1.0 for the
    same); the share of `text`'s tokens in its longest run found verbatim in `source`; and the share of `source`'s
    tokens in that same run (the source carried over verbatim, whatever the text adds around it)."""
    matcher, part, carried = _longest_run(tokens(text), tokens(source))
    return (matcher.ratio() if matcher else 0.0), part, carried


def _longest_run(mine: list[str], theirs: list[str]) -> tuple[difflib.SequenceMatcher | None, float, float]:
    """The matcher of two token lists (None when one is empty) and `copy_measures`' part and carried."""
    if not mine or not theirs:
        return None, 0.0, 0.0
    matcher = difflib.SequenceMatcher(None, mine, theirs, autojunk=False)
    longest = matcher.find_longest_match(0, len(mine), 0, len(theirs)).size
    return matcher, longest / len(mine), longest / len(theirs)


def length(text: str) -> int:
    """How much text there is, comparable across scripts: its letters and digits."""
    return _length(text.translate(KINDS))


def _length(kinds: str) -> int:
    """`length` of a text from its `kinds` (`text.translate(KINDS)`)."""
    return kinds.count("l") + kinds.count("n")


def _bags(folded: str) -> tuple[list[str], list[str]]:
    """A folded text's words read two ways: as runs of letters and digits, split at any other mark (`tight-fisted`
    is `tight` and `fisted`), and as spans between spaces, every other mark deleted (`tightfisted`; `round--apart`
    is `roundapart`)."""
    return _ALNUM_RUN.findall(folded), _NOT_ALNUM_OR_SPACE.sub("", folded).split()


def _f1(mine: list[str], theirs: list[str]) -> float:
    shared = sum((Counter(mine) & Counter(theirs)).values())
    return 2 * shared / (len(mine) + len(theirs)) if shared else 0.0


def _shared_at_most(mine: list[str], theirs: list[str]) -> int:
    """A bound, made in C, on how many items two lists share counted with repeats (and on their longest common run):
    the items of each that occur in the other at all, the fewer of the two counts."""
    if not mine or not theirs:
        return 0
    in_theirs, in_mine = set(theirs).__contains__, set(mine).__contains__
    return min(sum(map(in_theirs, mine)), sum(map(in_mine, theirs)))


def word_bag_f1(text: str, source: str) -> float:
    """The F-measure of the words `text` and `source` share, counted with repeats, in any order (punctuation, case
    and typography aside): 1.0 for the same words, however shuffled. Punctuation taken out may leave a space or
    none (`tight fisted`, `tightfisted`), so the words are read both ways and the better match counts."""
    return max(_f1(a, b) for a, b in zip(_bags(_Compared(text).folded), _bags(_Compared(source).folded)))


def _is_copy(mine: _Compared, theirs: _Compared) -> bool:
    """Whether `mine` is a copy of `theirs` (see the module's docstring). difflib's measures and the word bags'
    F-measure are computed only where `_shared_at_most` leaves them room to reach their bar, which a real rewrite
    seldom does: the verdict is the one the measures give (bench/degenerate.py --cpu)."""
    a, b = mine.tokens, theirs.tokens
    bound = _shared_at_most(a, b)  # difflib's matches and longest run cannot exceed it
    similar = part_copy = False
    if bound and (2 * bound / (len(a) + len(b)) >= COPY_SIMILARITY or (len(a) >= PART_COPY_MIN_TOKENS and max(
            bound / len(a), bound / len(b)) >= PART_COPY_SHARE)):
        matcher, part, carried = _longest_run(a, b)
        # quick_ratio bounds ratio from above in linear time: ratio's full alignment (quadratic) is computed only
        # for a text that might reach the bar, which a real rewrite never does.
        similar = matcher.quick_ratio() >= COPY_SIMILARITY and matcher.ratio() >= COPY_SIMILARITY
        part_copy = max(part, carried) >= PART_COPY_SHARE and len(a) >= PART_COPY_MIN_TOKENS
    if similar or part_copy:
        return True
    for words, source_words in zip(_bags(mine.folded), _bags(theirs.folded)):
        shared = _shared_at_most(words, source_words)
        if shared and 2 * shared / (len(words) + len(source_words)) >= WORD_BAG_COPY and (
                _f1(words, source_words) >= WORD_BAG_COPY):
            return True
    return False


def _letter_pairs(words: list[str]) -> list[str]:
    pairs = []
    for word in words:
        word = f"^{word}$"  # a word's first and last letters are pairs with its edges
        pairs += [word[i:i + 2] for i in range(len(word) - 1)]
    return pairs


def _mean_log_likelihood(words: list[str], model: Counter, starts: Counter, alphabet: int) -> float:
    pairs = _letter_pairs(words)
    return sum(math.log((model[p] + 0.5) / (starts[p[0]] + 0.5 * alphabet)) for p in pairs) / len(pairs)


def _unlike_its_source(mine: _Compared, theirs: _Compared) -> bool:
    """A rewrite whose letters do not follow its source's language (letters shuffled within words, another
    language) and that shares few of its words: a letter-pair model of the source (add-0.5 smoothing) reads the
    text FOREIGN_LETTERS_GAP nats a pair worse than the source itself, and under MIN_SHARED_WORDS of the text's
    words are the source's. Only for scripts that space their words (a Chinese or Thai "word" is a clause)."""
    if len(mine.tokens) < REWRITE_MIN_WORDS or len(theirs.tokens) < SOURCE_MIN_WORDS:
        return False  # (fewer tokens, fewer words: the words need not be found)
    words, source_words = mine.words, theirs.words
    if (len(words) < REWRITE_MIN_WORDS or len(source_words) < SOURCE_MIN_WORDS
            or sum(map(len, source_words)) > SPACED_WORD_LENGTH * len(source_words)):
        return False
    vocabulary = set(source_words)
    if sum(word in vocabulary for word in words) >= MIN_SHARED_WORDS * len(words):
        return False
    pairs = _letter_pairs(source_words)
    model, starts = Counter(pairs), Counter(pair[0] for pair in pairs)
    alphabet = len({char for pair in pairs for char in pair}) + 1
    gap = (_mean_log_likelihood(source_words, model, starts, alphabet)
           - _mean_log_likelihood(words, model, starts, alphabet))
    return gap >= FOREIGN_LETTERS_GAP


# --- the check --------------------------------------------------------------------------------------------------

def degenerate(text: str | None, *, source: str | None = None, field: str | None = None,
               min_length_ratio: float | None = None) -> str | None:
    """Why `text`, a model's output, is degenerate (one of REASONS), or None when it is text worth keeping.

    text: the output (None counts as empty).
    source: what the output was made from (a chunk): given, a copy of it is `copy`; None skips that check (an
        answer may quote its passage).
    field: the output field's name: the name alone (`{generic}`) is a `placeholder`.
    min_length_ratio: a share of the source's length (letters and digits) that the text must exceed, else
        `too_short`; needs `source`. None (the default) skips it: most outputs (a question, an answer, a
        summary) may well be short. REWRITE_MIN_LENGTH_RATIO suits a rewrite that keeps all of its source.

    Checks run in the order of REASONS; the first that applies is returned. Raises nothing: any text has an
    answer. The thresholds and how they were measured: see the module's docstring.
    """
    kinds = "" if text is None else text.translate(KINDS)
    if not kinds:
        return "empty"
    if _is_placeholder(text, field):
        return "placeholder"
    if "l" not in kinds and "n" not in kinds and "s" not in kinds:  # no letter, digit or symbol
        return "empty"
    if _is_serialized(text):
        return "serialized"
    if is_not_language(text, kinds):
        return "not_language"
    if source is not None and source.strip():
        mine, theirs = _Compared(text), _Compared(source)
        if _is_copy(mine, theirs):
            return "copy"
        if min_length_ratio is not None and _unlike_its_source(mine, theirs):
            return "not_language"
        if min_length_ratio is not None and _length(kinds) <= min_length_ratio * length(source):
            return "too_short"
    return None
