"""Offline overlap metrics between a sample's input and output: surface (chrF) and meaning (sentence embeddings).

For style cloning the two sides should say the same thing in different words: meaning overlap should be high,
while surface overlap shows how much of the original wording the rephrase kept.

The embedding model is all-MiniLM-L6-v2, run offline in numpy (datagen.text.embeddings).
"""

import functools

import numpy as np
from sacrebleu.metrics import CHRF

from datagen.samples import Sample
from datagen.metrics.base import Score, clamp
from datagen.text.embeddings import embed, embedding_available

__all__ = ["ChrF", "EmbeddingSimilarity", "embed", "embedding", "embedding_available"]


class ChrF:
    """Sentence-level chrF (character n-gram F-score) of the input against the output, scaled to [0, 1]."""

    name, kind, aspect = "chrf", "offline", "content"

    def __init__(self):
        self._chrf = CHRF()

    def __call__(self, chunk: str, sample: Sample) -> Score:
        score = self._chrf.sentence_score(sample.input, [sample.output]).score
        return Score(clamp(score / 100), f"chrF between input and output: {score:.1f}")


@functools.lru_cache(maxsize=4096)
def embedding(text: str) -> np.ndarray:
    """One text's embedding, kept: a chunk is compared with each of its samples (and every candidate an
    optimizer or a validity check tries), and embedding it is the dear part."""
    return embed([text])[0]


class EmbeddingSimilarity:
    """Cosine similarity of the input's and output's sentence embeddings: do they say the same thing?"""

    name, kind, aspect = "embedding", "offline", "content"

    def __call__(self, chunk: str, sample: Sample) -> Score:
        a, b = embedding(sample.input), embedding(sample.output)
        cosine = float(a @ b)
        # Negative cosines are rare with this model and mean "unrelated" as much as 0 does.
        return Score(clamp(cosine), f"embedding cosine similarity between input and output: {cosine:.2f}")
