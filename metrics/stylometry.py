"""Offline stylometry: a small classifier that tells an author's prose from generic prose, and two metrics on it.

Style lives in how a text is written rather than what it says, so the features are the classic stylometric
ones: character n-grams (spelling, punctuation, affixes, favourite short words), the relative frequencies of
English function words (topic-independent habits), and a few sentence and punctuation statistics. A
logistic regression on them gives P(author's style) for any passage, with no LLM and in milliseconds.
"""

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import StandardScaler

from datagen.errors import DatagenError
from datagen.samples import Sample
from metrics.base import Score, clamp

# Closed-class words: how often an author uses them is a habit that survives changes of topic.
FUNCTION_WORDS = (
    "a", "about", "above", "after", "again", "against", "all", "almost", "along", "also", "although", "am",
    "among", "an", "and", "another", "any", "are", "around", "as", "at", "be", "because", "been", "before",
    "behind", "being", "below", "beneath", "beside", "besides", "between", "beyond", "both", "but", "by", "can",
    "could", "did", "do", "does", "down", "during", "each", "either", "enough", "even", "ever", "every", "few",
    "for", "from", "had", "has", "have", "he", "hence", "her", "here", "hers", "herself", "him", "himself",
    "his", "how", "however", "i", "if", "in", "indeed", "into", "is", "it", "its", "itself", "just", "less",
    "many", "may", "me", "might", "mine", "more", "most", "much", "must", "my", "myself", "neither", "never",
    "no", "nor", "not", "now", "of", "off", "often", "on", "once", "one", "only", "or", "other", "ought", "our",
    "ours", "out", "over", "own", "per", "perhaps", "rather", "same", "shall", "she", "should", "since", "so",
    "some", "still", "such", "than", "that", "the", "their", "them", "themselves", "then", "there", "therefore",
    "these", "they", "this", "those", "though", "through", "thus", "till", "to", "too", "toward", "under",
    "unless", "until", "up", "upon", "us", "very", "was", "we", "were", "what", "whatever", "when", "where",
    "whether", "which", "while", "whilst", "who", "whom", "whose", "why", "will", "with", "within", "without",
    "would", "yet", "you", "your", "yours",
)
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")
_SENTENCE_END = re.compile(r'[.!?]+[\'"’”)]*(?=\s|$)')
# Marks whose rate differs most between literary and plain prose (dashes and curly quotes included).
_PUNCTUATION = (",", ";", ":", "!", "?", "—", "–", "-", "(", "'", "’", '"', "“")


def neutral_reference_path(workspace: Path) -> Path:
    """Plain expository prose to fit against when no generic rephrases of the author's text exist yet."""
    return workspace / "data" / "reference" / "neutral.md"


class FunctionWordFrequencies(BaseEstimator, TransformerMixin):
    """Each function word's share of the text's words (a fixed vocabulary: nothing is learned)."""

    def fit(self, texts, y=None):
        return self

    def transform(self, texts) -> np.ndarray:
        index = {word: i for i, word in enumerate(FUNCTION_WORDS)}
        rows = np.zeros((len(texts), len(FUNCTION_WORDS)))
        for row, text in zip(rows, texts):
            words = _WORD.findall(text.lower())
            for word in words:
                if (i := index.get(word)) is not None:
                    row[i] += 1
            row /= max(len(words), 1)
        return rows


class StyleStatistics(BaseEstimator, TransformerMixin):
    """Sentence length, word length, long-word share, and the rate of each punctuation mark per word."""

    def fit(self, texts, y=None):
        return self

    def transform(self, texts) -> np.ndarray:
        return np.array([self._row(text) for text in texts])

    @staticmethod
    def _row(text: str) -> list[float]:
        words = _WORD.findall(text)
        n_words = max(len(words), 1)
        sentences = max(len(_SENTENCE_END.findall(text)), 1)
        lengths = [len(w) for w in words] or [0]
        return [
            len(words) / sentences,
            float(np.mean(lengths)),
            sum(n > 8 for n in lengths) / n_words,
            *(text.count(mark) / n_words for mark in _PUNCTUATION),
        ]


# A tf-idf row has unit length while the ~170 standardised dense columns have a norm near 13: unboosted, the
# n-grams barely move the regression. 5 gave the best held-out AUC and log-loss on short passages.
_CHAR_WEIGHT = 5.0


def _pipeline() -> Pipeline:
    features = FeatureUnion([
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True, min_df=2)),
        # Standardised: raw rates (around 0.01) and sentence lengths (around 20) are on unrelated scales.
        ("function_words", Pipeline([("freq", FunctionWordFrequencies()), ("scale", StandardScaler())])),
        ("statistics", Pipeline([("stats", StyleStatistics()), ("scale", StandardScaler())])),
    ], transformer_weights={"char": _CHAR_WEIGHT})
    return Pipeline([
        ("features", features),
        ("classify", LogisticRegression(class_weight="balanced", max_iter=1000)),
    ])


def _labelled(author_texts: Sequence[str], generic_texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    if len(author_texts) < 2 or len(generic_texts) < 2:
        raise DatagenError(f"stylometry needs at least 2 author texts and 2 generic texts, got "
                           f"{len(author_texts)} and {len(generic_texts)}")
    texts = [*author_texts, *generic_texts]
    labels = np.array([1] * len(author_texts) + [0] * len(generic_texts))  # 1 = the author's style
    return texts, labels


class StyleClassifier:
    """P(author's style) of a passage, learned from the author's passages against generic ones."""

    def __init__(self):
        self._model: Pipeline | None = None

    def fit(self, author_texts: Sequence[str], generic_texts: Sequence[str]) -> "StyleClassifier":
        texts, labels = _labelled(author_texts, generic_texts)
        self._model = _pipeline().fit(texts, labels)
        return self

    def probability(self, texts: Sequence[str]) -> list[float]:
        if self._model is None:
            raise RuntimeError("StyleClassifier.probability called before fit")
        return [float(p) for p in self._model.predict_proba(list(texts))[:, 1]]


def cross_validated_probabilities(author_texts: Sequence[str], generic_texts: Sequence[str], folds: int = 5,
                                  seed: int = 0) -> tuple[list[float], list[float]]:
    """P(author's style) of every text from a classifier fitted without it (stratified k-fold).

    A baseline for LLM style judges: how well a cheap classifier tells the two sides apart on unseen text.
    Tiny sets get fewer folds (at most one per text of the smaller side, at least 2).
    """
    texts, labels = _labelled(author_texts, generic_texts)
    splits = max(2, min(folds, len(author_texts), len(generic_texts)))
    cv = StratifiedKFold(n_splits=splits, shuffle=True, random_state=seed)
    probs = cross_val_predict(_pipeline(), texts, labels, cv=cv, method="predict_proba")[:, 1]
    return [float(p) for p in probs[:len(author_texts)]], [float(p) for p in probs[len(author_texts):]]


class CrossFittedClassifier:
    """P(author's style) of a sample's text from a classifier that never saw the sample's chunk.

    Fitted on the very chunks it then scores, a classifier learns their words, and a rephrase that keeps the
    words but loses the style still scores as the author's. So the author's passages are dealt into folds, and
    a text made from one of them is scored by the model fitted on the other folds (a text from elsewhere, by
    the first model).
    """

    def __init__(self, author_texts: Sequence[str], generic_texts: Sequence[str], folds: int = 5):
        passages = list(dict.fromkeys(author_texts))
        if len(passages) < 4:
            raise DatagenError(f"stylometry needs at least 4 distinct passages by the author, got {len(passages)}")
        folds = min(folds, len(passages) // 2)  # each model keeps at least 2 of the author's passages
        self._fold = {text: i % folds for i, text in enumerate(passages)}
        self._models = [StyleClassifier().fit([t for t in passages if self._fold[t] != k], generic_texts)
                        for k in range(folds)]

    def probability(self, text: str, chunk: str) -> float:
        return self._models[self._fold.get(chunk, 0)].probability([text])[0]


class StylometricFidelity:
    """How much the sample's output reads like the author (it should: it is the author's own text)."""

    name, kind = "style_offline", "offline"

    def __init__(self, classifier: CrossFittedClassifier):
        self.classifier = classifier

    def __call__(self, chunk: str, sample: Sample) -> Score:
        p = self.classifier.probability(sample.output, chunk)
        return Score(clamp(p), f"stylometric P(author's style) of the output: {p:.2f}")


class StylometricGenericness:
    """How little the sample's input reads like the author: a rephrase that keeps the style teaches nothing."""

    name, kind = "generic_offline", "offline"

    def __init__(self, classifier: CrossFittedClassifier):
        self.classifier = classifier

    def __call__(self, chunk: str, sample: Sample) -> Score:
        p = self.classifier.probability(sample.input, chunk)
        return Score(clamp(1.0 - p), f"stylometric P(author's style) of the input: {p:.2f}")
