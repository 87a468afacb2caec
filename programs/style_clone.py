"""Style cloning: teach a model to rewrite plain text in an author's style.

Each chunk of the author's text is rephrased into generic prose; the pair (generic -> original) is the sample.
With `repair_boundaries`, a chunk that starts or stops abruptly first gets a short opening and closing sentence
in the author's style, and the pair is made from the repaired passage.

A rephrase that is degenerate (datagen.text.degenerate: empty, a placeholder such as `{generic}`, serialized, not
language, a copy of the passage, or too short to carry all of it) makes no sample: it is listed in the
prediction's `dropped` with its reason, which `datagen generate` counts. A degenerate boundary sentence is not used.
"""

import re

import dspy

from datagen import Sample
from datagen.text.degenerate import REWRITE_MIN_LENGTH_RATIO, degenerate
from signatures.style import AddBoundaries, RephraseAsGeneric

# What `datagen optimize --trials` may try besides prompts: whether repairing chunk boundaries pays off.
SEARCH_SPACE = {"repair_boundaries": [False, True]}
# An added boundary sentence is short; anything longer is the model rewriting the passage, not framing it.
MAX_BOUNDARY_WORDS = 40
MIN_BOUNDARY_WORDS = 3


def usable_boundary(sentence: str, chunk: str, field: str = "") -> str:
    """The model's boundary sentence (output field `field`: "opening" or "closing") if it is a short addition, else
    "" (the chunk's own edge is kept)."""
    sentence = sentence.strip()
    words = sentence.split()
    # A word or two is no sentence: it is what a model writes for "leave it empty" (None, N/A, Empty.).
    if not MIN_BOUNDARY_WORDS <= len(words) <= MAX_BOUNDARY_WORDS or len(re.findall(r"[.!?](\s|$)", sentence)) > 2:
        return ""
    # A copy of the passage's own text adds nothing; a placeholder or gibberish would be framed into the sample.
    if sentence in chunk or degenerate(sentence, source=chunk, field=field):
        return ""
    return sentence


class StyleClone(dspy.Module):
    def __init__(self, repair_boundaries: bool = False):
        super().__init__()
        self.add_boundaries = dspy.Predict(AddBoundaries) if repair_boundaries else None
        self.rephrase = dspy.Predict(RephraseAsGeneric)

    def forward(self, chunk: str) -> dspy.Prediction:
        added = self.add_boundaries(passage=chunk) if self.add_boundaries is not None else None
        boundaries, styled = framed(chunk, added)
        return made(boundaries, styled, self.rephrase(passage=styled).generic)

    async def aforward(self, chunk: str) -> dspy.Prediction:
        """`forward` with each step awaited: `datagen generate` runs it on one event loop, without a thread a call."""
        added = await self.add_boundaries.acall(passage=chunk) if self.add_boundaries is not None else None
        boundaries, styled = framed(chunk, added)
        return made(boundaries, styled, (await self.rephrase.acall(passage=styled)).generic)


def framed(chunk: str, added: dspy.Prediction | None) -> tuple[dict[str, str], str]:
    """The usable boundary sentences of `added` (AddBoundaries' answer; None: no repair) and the chunk framed by
    them. The model writes only the two sentences, so the chunk stays verbatim between them by construction."""
    boundaries = {} if added is None else {field: usable_boundary(added[field], chunk, field)
                                           for field in ("opening", "closing")}
    return boundaries, " ".join(part for part in (boundaries.get("opening"), chunk, boundaries.get("closing")) if part)


def made(boundaries: dict[str, str], styled: str, generic: str) -> dspy.Prediction:
    """The prediction: the sample (generic -> styled), or none and why when the rephrase is degenerate."""
    reason = degenerate(generic, source=styled, field="generic", min_length_ratio=REWRITE_MIN_LENGTH_RATIO)
    if reason:
        return dspy.Prediction(**boundaries, generic=generic, samples=[],
                               dropped=[{"reason": reason, "generic": generic}])
    return dspy.Prediction(**boundaries, generic=generic, samples=[Sample(input=generic, output=styled)])
