"""Metrics for question-answer samples (the factual_qa pipeline's; metrics/factual_qa.py weighs them).

A sample is a question (input) and its answer (output), with the earlier turns of its conversation, if any; the
chunk it was written from is the only source of truth. LLM judges ask whether the passage answers the question,
whether the answer is accurate, and whether the question is worth asking; an offline metric checks, with no
LLM, that the answer's words come from the passage.
"""

import re

import dspy
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from datagen.samples import Sample
from datagen.metrics.base import Score
from datagen.metrics.judges import Judge

# Words compared by their first letters, a crude stemmer: "invented" and "invention" match, so an answer in
# the passage's terms but not its exact word forms still counts as grounded.
STEM = 5
MISSING_SHOWN = 8


class Answerable(dspy.Signature):
    """Judge whether the question can be answered from the passage alone: someone who has never seen the passage
    can tell what it asks (given the conversation before it, if any), and the passage states everything a full
    answer needs."""

    passage: str = dspy.InputField()
    conversation: str = dspy.InputField(desc="the conversation before the question; empty when it opens one")
    question: str = dspy.InputField()
    reasoning: str = dspy.OutputField(desc="one or two sentences on what the question needs and what the passage gives")
    rating: int = dspy.OutputField(desc="1 to 5: 5 = clear, fully answered by the passage; 1 = unclear or unanswered")


class AnswerAccuracy(dspy.Signature):
    """Judge whether the answer is accurate against the passage: everything it states is stated in the passage
    or follows directly from it, it contradicts nothing there, and it answers the question asked, completely."""

    passage: str = dspy.InputField()
    conversation: str = dspy.InputField(desc="the conversation before the question; empty when it opens one")
    question: str = dspy.InputField()
    answer: str = dspy.InputField()
    reasoning: str = dspy.OutputField(desc="one or two sentences naming anything wrong, unsupported or missing")
    rating: int = dspy.OutputField(desc="1 to 5: 5 = accurate and complete, 1 = wrong or unsupported")


class QuestionSubstance(dspy.Signature):
    """Judge whether the question is worth teaching a model to answer. A trivial question is a yes/no question,
    one whose wording gives the answer away, or one anyone could answer without knowing the subject; a
    substantial one needs real facts about the subject, ideally understanding them (why, how, how facts relate)."""

    question: str = dspy.InputField()
    answer: str = dspy.InputField()
    reasoning: str = dspy.OutputField(desc="one or two sentences on what answering the question takes")
    rating: int = dspy.OutputField(desc="1 to 5: 5 = substantial, 1 = trivial")


class AnswerableJudge(Judge):
    """Does the chunk alone answer the sample's question?"""

    name, signature = "answerable", Answerable
    asks = {"passage": "chunk", "conversation": "conversation", "question": "input"}


class AccuracyJudge(Judge):
    """Is the sample's answer accurate against the chunk, and complete?"""

    name, signature = "accuracy", AnswerAccuracy
    asks = {"passage": "chunk", "conversation": "conversation", "question": "input", "answer": "output"}


class SubstanceJudge(Judge):
    """Is the sample's question more than trivial?"""

    name, signature = "non_trivial", QuestionSubstance
    asks = {"question": "input", "answer": "output"}


def content_words(text: str) -> dict[str, str]:
    """The text's words other than English stop words, lower-cased, keyed by their first STEM characters."""
    return {word[:STEM]: word for word in re.findall(r"\w+", text.lower()) if word not in ENGLISH_STOP_WORDS}


class Grounded:
    """Share of the answer's content words that occur in the chunk: an answer that brings in words the passage
    never uses is likely to bring in facts it never states."""

    name, kind = "grounded", "offline"

    def __call__(self, chunk: str, sample: Sample) -> Score:
        words = content_words(sample.output)
        if not words:
            return Score(0.0, "the answer has no content words")
        passage = content_words(chunk)
        missing = [word for stem, word in words.items() if stem not in passage]
        feedback = f"{len(words) - len(missing)} of {len(words)} content words of the answer occur in the passage"
        if missing:
            feedback += "; not in it: " + ", ".join(missing[:MISSING_SHOWN])
        return Score(1 - len(missing) / len(words), feedback)

