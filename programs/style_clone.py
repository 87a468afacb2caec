"""Style cloning: teach a model to rewrite plain text in an author's style.

Each chunk of the author's text is rephrased into generic prose; the pair (generic -> original) is the sample.
With `repair_boundaries`, a chunk that starts or stops abruptly first gets a short opening and closing sentence
in the author's style, and the pair is made from the repaired passage.
"""

import re

import dspy

from datagen import Sample
from signatures.style import AddBoundaries, RephraseAsGeneric

# What `datagen optimize --trials` may try besides prompts: whether repairing chunk boundaries pays off.
SEARCH_SPACE = {"repair_boundaries": [False, True]}
# An added boundary sentence is short; anything longer is the model rewriting the passage, not framing it.
MAX_BOUNDARY_WORDS = 40


def usable_boundary(sentence: str, chunk: str) -> str:
    """The model's boundary sentence if it is a short addition, else "" (the chunk's own edge is kept)."""
    sentence = sentence.strip()
    words = sentence.split()
    if not words or len(words) > MAX_BOUNDARY_WORDS or len(re.findall(r"[.!?](\s|$)", sentence)) > 2:
        return ""
    if sentence in chunk:  # a copy of the passage's own text adds nothing
        return ""
    return sentence


class StyleClone(dspy.Module):
    def __init__(self, repair_boundaries: bool = False):
        super().__init__()
        self.add_boundaries = dspy.Predict(AddBoundaries) if repair_boundaries else None
        self.rephrase = dspy.Predict(RephraseAsGeneric)

    def forward(self, chunk: str) -> dspy.Prediction:
        boundaries = {}
        if self.add_boundaries is not None:
            # The model writes only the two sentences, so the chunk stays verbatim between them by construction.
            added = self.add_boundaries(passage=chunk)
            boundaries = {"opening": usable_boundary(added.opening, chunk),
                          "closing": usable_boundary(added.closing, chunk)}
        styled = " ".join(part for part in (boundaries.get("opening"), chunk, boundaries.get("closing")) if part)
        generic = self.rephrase(passage=styled).generic
        return dspy.Prediction(**boundaries, generic=generic, samples=[Sample(input=generic, output=styled)])
