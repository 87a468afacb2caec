"""Factual question answering: teach a model the facts of a corpus, as answers to questions about them.

From each chunk the model writes `questions` questions the chunk answers, answers each from the chunk alone and,
with `validate`, checks each pair against the chunk: a pair that is not answerable from the chunk, not accurate,
or trivial is dropped, and listed in the prediction's `dropped` with the reason. Before that, a question or
answer that is degenerate (datagen.text.degenerate: empty, a placeholder, serialized, not language; a question that
copies the chunk) is dropped with that reason, with no call spent on answering or checking it (an answer may be
short, and may quote the chunk). Each kept pair is a sample
(question -> answer). With `turns` > 1 each question opens a conversation that goes on with follow-up questions,
each answered and checked in turn; a conversation ends at its first dropped turn and is a sample (its last turn,
the earlier ones as history) when it kept at least one.
"""

import dspy

from datagen import DatagenError, Sample
from datagen.text.degenerate import degenerate
from datagen.samples import transcript
from signatures.factual_qa import AnswerFromPassage, FollowUpQuestion, GenerateQuestions, ValidatePair

# Why a pair was dropped, for each check it can fail (ValidatePair's verdict field, and the value that fails).
CHECKS = {"unanswerable": ("answerable", False), "inaccurate": ("accurate", False), "trivial": ("trivial", True)}


def _positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DatagenError(f"factual_qa: {name} must be a whole number of at least 1, got {value!r}")
    return value


class FactualQA(dspy.Module):
    def __init__(self, questions: int = 3, validate: bool = True, turns: int = 1):
        super().__init__()
        if not isinstance(validate, bool):
            raise DatagenError(f"factual_qa: validate must be true or false, got {validate!r}")
        self.questions, self.turns = _positive("questions", questions), _positive("turns", turns)
        self.ask = dspy.Predict(GenerateQuestions)
        self.follow_up = dspy.Predict(FollowUpQuestion) if turns > 1 else None
        self.answer = dspy.Predict(AnswerFromPassage)
        self.check = dspy.Predict(ValidatePair) if validate else None

    def forward(self, chunk: str) -> dspy.Prediction:
        asked = self.ask(passage=chunk, count=self.questions).questions
        # The model may repeat itself or write more than asked for: neither is a pair to drop.
        questions = list(dict.fromkeys(q.strip() for q in asked if q.strip()))[:self.questions]
        samples, dropped = [], []
        for question in questions:
            turns, failed = self.converse(chunk, question)
            if turns:
                samples.append(Sample(*turns[-1], history=tuple(turns[:-1])))
            if failed:
                dropped.append(failed)
        return dspy.Prediction(questions=questions, samples=samples, dropped=dropped)

    def converse(self, chunk: str, question: str) -> tuple[list[tuple[str, str]], dict | None]:
        """The conversation `question` opens: its kept (question, answer) turns, and the turn validation dropped,
        which ends it (None when every turn was kept)."""
        turns: list[tuple[str, str]] = []
        while True:
            if reason := degenerate(question, source=chunk, field="question"):
                return turns, {"question": question, "answer": "", "reason": reason, "reasoning": ""}
            conversation = transcript(turns)
            answer = self.answer(passage=chunk, conversation=conversation, question=question).answer.strip()
            failed = self.rejection(chunk, conversation, question, answer)
            if failed:
                return turns, failed
            turns.append((question, answer))
            if len(turns) == self.turns:
                return turns, None
            question = self.follow_up(passage=chunk, conversation=transcript(turns)).question.strip()

    def rejection(self, chunk: str, conversation: str, question: str, answer: str) -> dict | None:
        """{"question", "answer", "reason", "reasoning"} when the pair is to be dropped, else None. The reason
        names the first check it failed: the answer's degenerate reason (datagen.text.degenerate: "empty",
        "placeholder", "serialized", "not_language"), then "unanswerable", "inaccurate" or "trivial"."""
        if reason := degenerate(answer, field="answer"):
            return {"question": question, "answer": answer, "reason": reason, "reasoning": ""}
        if self.check is None:
            return None
        verdict = self.check(passage=chunk, conversation=conversation, question=question, answer=answer)
        reason = next((reason for reason, (field, fails) in CHECKS.items() if verdict[field] == fails), None)
        if reason is None:
            return None
        return {"question": question, "answer": answer, "reason": reason, "reasoning": verdict.reasoning.strip()}
