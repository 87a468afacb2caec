"""Style cloning: teach a model to rewrite plain text in an author's style.

Each chunk of the author's text is rephrased into generic prose; the pair (generic -> original) is the sample.
"""

import dspy

from datagen import Sample
from signatures.style import RephraseAsGeneric


class StyleClone(dspy.Module):
    def __init__(self):
        super().__init__()
        self.rephrase = dspy.Predict(RephraseAsGeneric)

    def forward(self, chunk: str) -> dspy.Prediction:
        generic = self.rephrase(passage=chunk).generic
        return dspy.Prediction(generic=generic, samples=[Sample(input=generic, output=chunk)])
