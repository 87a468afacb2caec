"""Offline stylometry: a small classifier that tells an author's prose from other prose, and two metrics on it.

Style lives in how a text is written rather than what it says, so the features are the classic stylometric
ones: character n-grams (spelling, punctuation, affixes, favourite short words), the relative frequencies of
English function words (topic-independent habits), and a few sentence and punctuation statistics, all read after
typography is normalised (curly quotes, dashes and ellipses say which edition a text came from, not who wrote it:
measured, curly quotes alone moved P(author) from 0.54 to 0.96). A logistic regression on them gives the log-odds
that a passage is the author's, with no LLM, in about a millisecond.

What the author is told apart from decides what the classifier learns. Fitted against one expository text it
learned "narrative, not encyclopedic": plain human rewrites of the author's passages scored as the author's. So the
background is plain modern prose of many genres (data/reference/: narrative, dialogue, retellings, simple English,
letters, news, instructions and more, written for the project), plus any other texts a caller adds (other authors,
to tell this author from them rather than from plain prose). docs/metrics.md gives the measured validity.
"""

import functools
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from datagen.text.chunking import Chunker
from datagen.errors import DatagenError
from datagen.text.ingest import iter_documents
from datagen.samples import Sample
from datagen.metrics.base import Score, clamp
from datagen.workspace.pipelines import builtin_workspace

if TYPE_CHECKING:
    from datagen.metrics.scoring import MetricContext

# Background passages to fit the stylometric classifier against, cut like a corpus.
BACKGROUND_CHUNK_TOKENS = 200
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
# Marks whose rate differs most between literary and plain prose (after normalise_typography).
_PUNCTUATION = (",", ";", ":", "!", "?", "—", "-", "(", "'", '"')
# One form for each mark that editions set differently; "_" is Project Gutenberg's italics.
_TYPOGRAPHY = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'", "‚": "'", "–": "—", "―": "—",
                             "…": "...", "_": ""})


def normalise_typography(text: str) -> str:
    """`text` with straight quotes and apostrophes, one dash ("—" for –, ― and --), "..." for "…", no "_"
    italics marks, and single spaces: the same words set by another printer read the same."""
    return re.sub(r"\s+", " ", text.translate(_TYPOGRAPHY).replace("--", "—")).strip()


def background_path(workspace: Path) -> Path:
    """The folder of plain prose the author is told apart from (all of its .md and .txt files, subfolders
    included): data/reference/ of the workspace, or the built-in one when the workspace has none."""
    folder = workspace / "data" / "reference"
    return folder if folder.is_dir() else builtin_workspace() / "data" / "reference"


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
# n-grams barely move the regression. Measured on four novelists (bench/metric_validity.py, 50 passages each),
# own-versus-other-author accuracy was 0.81 at a weight of 2, 0.83 at 5, 0.87 at 10, 0.91 at 20 and 0.93 at 50.
_CHAR_WEIGHT = 50.0


def _normalised(texts) -> list[str]:
    return [normalise_typography(text) for text in texts]


def _pipeline() -> Pipeline:
    features = FeatureUnion([
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True, min_df=2)),
        # Standardised: raw rates (around 0.01) and sentence lengths (around 20) are on unrelated scales.
        ("function_words", Pipeline([("freq", FunctionWordFrequencies()), ("scale", StandardScaler())])),
        ("statistics", Pipeline([("stats", StyleStatistics()), ("scale", StandardScaler())])),
    ], transformer_weights={"char": _CHAR_WEIGHT})
    return Pipeline([
        ("typography", FunctionTransformer(_normalised)),
        ("features", features),
        ("classify", LogisticRegression(class_weight="balanced", max_iter=1000)),
    ])


def _labelled(author_texts: Sequence[str], other_texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    if len(author_texts) < 2 or len(other_texts) < 2:
        raise DatagenError(f"stylometry needs at least 2 author texts and 2 other texts, got "
                           f"{len(author_texts)} and {len(other_texts)}")
    texts = [*author_texts, *other_texts]
    labels = np.array([1] * len(author_texts) + [0] * len(other_texts))  # 1 = the author's style
    return texts, labels


class StyleClassifier:
    """Log-odds and P(author's style) of a passage, learned from the author's passages against other prose."""

    def __init__(self):
        self._model: Pipeline | None = None

    def fit(self, author_texts: Sequence[str], other_texts: Sequence[str]) -> "StyleClassifier":
        texts, labels = _labelled(author_texts, other_texts)
        self._model = _pipeline().fit(texts, labels)
        return self

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """log P(author) / P(other) of each text: positive reads as the author's."""
        if self._model is None:
            raise RuntimeError("StyleClassifier used before fit")
        return self._model.decision_function(list(texts))

    def probability(self, texts: Sequence[str]) -> list[float]:
        return [float(p) for p in 1 / (1 + np.exp(-self.logits(texts)))]


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


# A corpus of thousands of chunks is fitted on an even spread of this many: more adds seconds, not accuracy.
MAX_FIT_PASSAGES = 2000


class CrossFittedClassifier:
    """Log-odds that a sample's text is the author's, from a classifier that never saw the sample's chunk.

    Fitted on the very chunks it then scores, a classifier learns their words, and a rephrase that keeps the
    words but loses the style still scores as the author's. So the author's passages are dealt into folds, and
    a text made from one of them is scored by the model fitted on the other folds; a text from elsewhere gets the
    mean of the fold models' log-odds. `background_texts` are the other side: prose that is not the author's.

    Raises DatagenError with fewer than 4 distinct author passages or 2 background passages.
    """

    def __init__(self, author_texts: Sequence[str], background_texts: Sequence[str], folds: int = 5):
        passages = list(dict.fromkeys(author_texts))
        if len(passages) < 4:
            raise DatagenError(f"stylometry needs at least 4 distinct passages by the author, got {len(passages)}")
        fitted = passages[::-(-len(passages) // MAX_FIT_PASSAGES)]
        folds = min(folds, len(fitted) // 2)  # each model keeps at least 2 of the author's passages
        self._fold = {text: i % folds for i, text in enumerate(fitted)}
        self._models = [StyleClassifier().fit([t for t in fitted if self._fold[t] != k], background_texts)
                        for k in range(folds)]

    @functools.cached_property
    def typical_logit(self) -> float:
        """The median log-odds of the author's passages, each scored by the model that never saw it (at most
        200 of them, spread through the corpus); at least 1."""
        passages = list(self._fold)
        sample = passages[::-(-len(passages) // 200)]
        return max(1.0, float(np.median([self.logit(text, text) for text in sample])))

    def logit(self, text: str, chunk: str) -> float:
        fold = self._fold.get(chunk)
        if fold is not None:
            return float(self._models[fold].logits([text])[0])
        return float(np.mean([model.logits([text])[0] for model in self._models]))

    def probability(self, text: str, chunk: str) -> float:
        return float(1 / (1 + np.exp(-self.logit(text, chunk))))


class StylometricFidelity:
    """How much the sample's output reads like the author (it should: it is the author's own text)."""

    name, kind, aspect = "style_offline", "offline", "style"

    def __init__(self, classifier: CrossFittedClassifier):
        self.classifier = classifier

    def __call__(self, chunk: str, sample: Sample) -> Score:
        p = self.classifier.probability(sample.output, chunk)
        return Score(clamp(p), f"stylometric P(author's style) of the output: {p:.2f}")


class StylometricGenericness:
    """How much of the author's style the sample's input (the rephrase) removed from its chunk.

    The stylometric log-odds the rephrase lost against its chunk, as a share of the chunk's own:
    (logit(chunk) - logit(input)) / max(logit(chunk), typical), clamped to [0, 1], both scored by the same model
    (one that never saw the chunk); `typical` is the median log-odds of the author's passages, so a chunk that
    barely reads as the author's does not make any small change look like a full rephrase. An unchanged copy scores
    0 by construction; a rephrase the classifier reads as plain prose (log-odds 0 or below) from a typical chunk
    scores 1. Measured against the passage it came from rather than on an absolute scale, the score does not
    depend on how marked a given passage happens to be: on 220 Bible passages with human plain rewrites
    (bench/metric_validity.py), an absolute P(plain) ranked the rewrites above the originals with AUC 0.97, this
    with 0.99-1.0.
    """

    name, kind, aspect = "generic_offline", "offline", "genericness"

    def __init__(self, classifier: CrossFittedClassifier):
        self.classifier = classifier

    def __call__(self, chunk: str, sample: Sample) -> Score:
        rephrase = self.classifier.logit(sample.input, chunk)
        original = self._chunk_logit(chunk)
        removed = clamp((original - rephrase) / max(original, self.classifier.typical_logit))
        return Score(removed, f"the input lost {removed:.0%} of the chunk's stylometric evidence of the author "
                              f"(log-odds {rephrase:.1f} against the chunk's {original:.1f})")

    @functools.lru_cache(maxsize=4096)
    def _chunk_logit(self, chunk: str) -> float:
        return self.classifier.logit(chunk, chunk)


def shared_classifier(ctx: "MetricContext", pipeline: str) -> CrossFittedClassifier:
    """The context's one classifier, fitted on first use: the author's passages (`ctx.corpus`) against the
    plain-prose background (`background_path`), the files `background` of `[metrics.PIPELINE]` in datagen.toml
    (relative to the workspace), and the context's own background texts, if any (e.g. other authors)."""
    def fit() -> CrossFittedClassifier:
        chunker = Chunker(BACKGROUND_CHUNK_TOKENS)
        settings = ctx.config.metrics.get(pipeline)
        configured = [ctx.workspace / path for path in (settings.background if settings else [])]
        documents = iter_documents([background_path(ctx.workspace), *configured])
        background = [chunk.text for document in documents for chunk in chunker.chunks(document)]
        return CrossFittedClassifier(ctx.corpus, [*background, *ctx.background])
    return ctx.shared("classifier", fit)
