"""Model metrics: scores of a candidate model's answer to a held-out sample's input (`datagen eval-model`).

The data metrics (the rest of datagen.metrics) score a training pair. A model metric scores what a model answered
when given the pair's input, against the pair itself: its input, the reference output the model was trained to
write, and the chunk both were made from. A pipeline declares its model metrics beside its data metrics, in
metrics/PIPELINE.py (`MODEL_METRICS`, `MODEL_WEIGHTS`), each built from a `MetricContext` whose corpus is the
run's training split: no metric is fitted on held-out text. docs/eval-model.md gives each one's measured validity.

Each model metric is a name, a kind ("offline" or "judge") and a call `metric(chunk, reference, answer) -> Score`:
- `style`: the answer's stylometric log-odds of being the author's, as a share of a typical passage's.
- `chrf`: chrF of the answer against the reference output (Popović 2015, sacrebleu's sentence chrF).
- `coverage`: how much of the input's content the answer carries, and nothing else (datagen.metrics.coverage).
- `embedding`: cosine similarity of the answer's and the input's sentence embeddings.
- `novelty`: the share of the answer's word pairs that are not the input's (0 for a degenerate answer: the input's
  words in any order, a placeholder, ...), and a gate (`floor`): an answer that returns its input, or nearly, did
  no work however well the rest scores it (a copy of a style rewrite's input
  carries all its content; a copy of a question is grounded in the passage).
- `answer_f1`: SQuAD's token F1 of the answer against the reference answer (Rajpurkar et al. 2016).
- `grounded`: the share of the answer's content words that occur in the chunk (datagen.metrics.factual_qa).
- `correct` (judge): does the answer say what the reference answer says, and nothing the passage contradicts?
- `style_fidelity` (judge): does the answer read as the author's (datagen.metrics.judges)?
"""

import re
import string
from collections import Counter
from typing import Protocol

import dspy
from sacrebleu.metrics import CHRF

from datagen.lm.roles import RoleModel
from datagen.metrics.base import Score, clamp
from datagen.metrics.coverage import bigram_overlap, coverage
from datagen.metrics.factual_qa import Grounded
from datagen.metrics.judges import Judge, References, StyleFidelityJudge
from datagen.metrics.overlap import embedding
from datagen.metrics.stylometry import CrossFittedClassifier
from datagen.samples import Sample, transcript
from datagen.text.degenerate import degenerate


class AnswerMetric(Protocol):
    """What every model metric is: a name, a kind, and a call that scores one answer.

    Attributes:
        name: the metric's name, as metrics/PIPELINE.py's `MODEL_METRICS`, its weights and the reports name it.
        kind: "judge" (an LLM call per score) or "offline" (no LLM).
    """

    name: str
    kind: str

    def __call__(self, chunk: str, reference: Sample, answer: str) -> Score:
        """Score one answer.

        Args:
            chunk: the text of the chunk the held-out sample was made from.
            reference: the held-out sample: its input (what the model was given) and its output (the reference).
            answer: what the model answered.

        Returns:
            The answer's `Score`: its value in [0, 1] (higher is better) and a short feedback.
        """
        ...


class AnswerStyle:
    """How much of the author's stylometric evidence the answer carries: its log-odds of being the author's, from a
    classifier fitted on the run's training split against plain prose, as a share of a typical author passage's
    (CrossFittedClassifier.typical_logit), clamped to [0, 1]. The classifier never saw a held-out chunk: it scores
    one with the mean of its fold models.

    Log-odds rather than P(author's style): fitted against plain prose, the classifier also learns the author's
    subjects and names, and gives P near 1 to any text about them. Measured on held-out Bible passages
    (bench/answer_validity.py, docs/eval-model.md), P rated the plain World English version of a passage 0.91 and a
    Basic English rewrite 0.97 (the King James reference: 0.999), where the share of the log-odds rates them 0.31
    and 0.46 (the reference 0.97).
    """

    name, kind = "style", "offline"

    def __init__(self, classifier: CrossFittedClassifier):
        self.classifier = classifier

    def __call__(self, chunk: str, reference: Sample, answer: str) -> Score:
        logit = self.classifier.logit(answer, chunk)
        share = clamp(logit / self.classifier.typical_logit)
        return Score(share, f"stylometric log-odds of the author's style {logit:.1f}, {share:.0%} of a typical "
                            "author passage's")


class AnswerChrF:
    """chrF of the answer against the reference output (sacrebleu's sentence chrF, scaled to [0, 1]): how close the
    answer comes to the text the model was trained to write, characters and words alike."""

    name, kind = "chrf", "offline"

    def __init__(self):
        self._chrf = CHRF()

    def __call__(self, chunk: str, reference: Sample, answer: str) -> Score:
        score = self._chrf.sentence_score(answer, [reference.output]).score
        return Score(clamp(score / 100), f"chrF of the answer against the reference: {score:.1f}")


class AnswerCoverage:
    """How much of the input's content the answer carries, and nothing else: the F1 of their shared content words
    times the fourth root of their length ratio (datagen.metrics.coverage, the input in the chunk's place)."""

    name, kind = "coverage", "offline"

    def __call__(self, chunk: str, reference: Sample, answer: str) -> Score:
        recall, precision, ratio = coverage(reference.input, answer)
        f1 = 2 * recall * precision / (recall + precision) if recall + precision else 0.0
        return Score(f1 * ratio ** 0.25, f"the answer carries {recall:.0%} of the input's content words and "
                                         f"{precision:.0%} of its own are the input's; length ratio {ratio:.0%}")


class AnswerEmbedding:
    """Cosine similarity of the answer's and the input's sentence embeddings (datagen.metrics.overlap): does the
    answer say what the input says?"""

    name, kind = "embedding", "offline"

    def __call__(self, chunk: str, reference: Sample, answer: str) -> Score:
        cosine = float(embedding(answer) @ embedding(reference.input))  # the input's is kept for each model
        return Score(clamp(cosine), f"embedding cosine similarity of the answer and the input: {cosine:.2f}")


class AnswerNovelty:
    """The share of the answer's word pairs that are not the input's (a copy of the input: 0), and a gate: below
    `floor` it scales the composite down (datagen.metrics.composite). 0.15, as for the data metric `novelty`:
    a text that reuses more than 85% of another's word pairs is that text with a word or two changed.

    A degenerate answer scores 0 too: one the pipelines would drop as output (datagen.text.degenerate: empty, a
    placeholder, data or code, not language, one sentence repeated, or the input again, its words in any order).
    Word pairs alone let the input's words shuffled or reversed through the gate, where content metrics that
    ignore word order rate them as highly as a copy (found by a user's trial: word salad of the input scored
    above a real model's answers)."""

    name, kind = "novelty", "offline"
    floor = 0.15

    def __call__(self, chunk: str, reference: Sample, answer: str) -> Score:
        reason = degenerate(answer, source=reference.input)
        if reason is not None:
            return Score(0.0, f"the answer is degenerate against the input: {reason}")
        new = 1.0 - bigram_overlap(reference.input, answer)
        return Score(new, f"{new:.0%} of the answer's word pairs are not the input's")


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def squad_tokens(text: str) -> list[str]:
    """SQuAD's answer normalisation (the official evaluation script, v1.1): lower-cased, punctuation and the
    articles a, an, the removed, split at white space."""
    return _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split()


def token_f1(answer: str, reference: str) -> float:
    """SQuAD's token F1 of `answer` against `reference` (shared tokens, counted with repeats); 0 when either has
    no token after normalisation (`squad_tokens`)."""
    ours, theirs = Counter(squad_tokens(answer)), Counter(squad_tokens(reference))
    shared = sum((ours & theirs).values())
    if not shared:
        return 0.0
    precision, recall = shared / sum(ours.values()), shared / sum(theirs.values())
    return 2 * precision * recall / (precision + recall)


class AnswerF1:
    """SQuAD's token F1 of the answer against the reference answer (Rajpurkar et al. 2016): the words they share,
    as precision and recall, after SQuAD's normalisation."""

    name, kind = "answer_f1", "offline"

    def __call__(self, chunk: str, reference: Sample, answer: str) -> Score:
        f1 = token_f1(answer, reference.output)
        return Score(f1, f"token F1 against the reference answer: {f1:.2f}")


class AnswerGrounded:
    """The share of the answer's content words that occur in the chunk (datagen.metrics.factual_qa.Grounded): an
    answer in words the passage never uses likely states what the passage never says."""

    name, kind = "grounded", "offline"

    def __init__(self):
        self._grounded = Grounded()

    def __call__(self, chunk: str, reference: Sample, answer: str) -> Score:
        return self._grounded(chunk, Sample(reference.input, answer, reference.history))


class AnswerCorrectness(dspy.Signature):
    """Judge whether the answer is correct: it says what the reference answer says (in any words), contradicts
    neither the reference nor the passage, and adds nothing the passage does not support. An answer that only
    repeats the question, or answers another question, is wrong."""

    passage: str = dspy.InputField()
    conversation: str = dspy.InputField(desc="the conversation before the question; empty when it opens one")
    question: str = dspy.InputField()
    reference_answer: str = dspy.InputField(desc="a correct answer, from the passage")
    answer: str = dspy.InputField(desc="the answer to judge")
    reasoning: str = dspy.OutputField(desc="one or two sentences naming what the answer gets right or wrong")
    rating: int = dspy.OutputField(desc="1 to 5: 5 = says what the reference says, 1 = wrong or no answer")


class CorrectnessJudge(Judge):
    """Does the answer agree with the reference answer and the passage? (The judge role's model rates it.)"""

    name, signature = "correct", AnswerCorrectness

    def __call__(self, chunk: str, reference: Sample, answer: str) -> Score:
        return self.ask(passage=chunk, conversation=transcript(reference.history), question=reference.input,
                        reference_answer=reference.output, answer=answer)


class AnswerStyleJudge:
    """Does the answer read as the author's? The style-fidelity judge (datagen.metrics.judges) on the answer, shown
    passages of the training split, never the held-out chunk."""

    name, kind = "style_fidelity", "judge"

    def __init__(self, judge: RoleModel, references: References):
        self._judge = StyleFidelityJudge(judge, references)

    def __call__(self, chunk: str, reference: Sample, answer: str) -> Score:
        return self._judge(chunk, Sample(reference.input, answer))
