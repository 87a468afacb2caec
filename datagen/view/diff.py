"""A word-level diff of two texts, for reading a rephrase against its original side by side."""

import difflib
import re

from markupsafe import Markup, escape

# Words, runs of whitespace and single punctuation marks: a changed comma is shown, not the word around it.
_TOKEN = re.compile(r"\w+|\s+|[^\w\s]", re.UNICODE)


def word_diff(before: str, after: str) -> tuple[Markup, Markup]:
    """`before` and `after` as escaped HTML, the words only `before` has wrapped in <del>, those only `after` has
    in <ins> (difflib's SequenceMatcher over words, whitespace and punctuation; autojunk off, so that common
    words in a long text still match)."""
    a, b = _TOKEN.findall(before or ""), _TOKEN.findall(after or "")
    left, right = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        old, new = escape("".join(a[i1:i2])), escape("".join(b[j1:j2]))
        if op == "equal":
            left.append(old)
            right.append(new)
            continue
        if i2 > i1:
            left.append(Markup("<del>") + old + Markup("</del>"))
        if j2 > j1:
            right.append(Markup("<ins>") + new + Markup("</ins>"))
    return Markup("").join(left), Markup("").join(right)
