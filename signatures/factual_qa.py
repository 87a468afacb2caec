"""Signatures of the factual question-answering pipeline."""

import dspy


class GenerateQuestions(dspy.Signature):
    """Write questions about the subject of the passage that the passage answers in full, for a dataset that
    teaches an assistant the facts it states.

    Each question is one a curious person might ask who has never seen the passage: it names what it asks about,
    makes sense on its own, and never mentions "the passage", "the text" or "the author". Prefer questions that
    take understanding to answer (why or how something happened, what caused or followed from it, how two stated
    facts relate) over ones answered by a single copied phrase. Avoid yes/no questions, questions whose wording
    gives the answer away, and general knowledge nobody needs the passage for. Ask about different facts, spread
    over the whole passage, and ask nothing the passage does not answer."""

    passage: str = dspy.InputField(desc="a passage of factual text")
    count: int = dspy.InputField(desc="how many questions to write")
    questions: list[str] = dspy.OutputField(desc="the questions, each one sentence ending in a question mark")


class AnswerFromPassage(dspy.Signature):
    """Answer the user's question as a knowledgeable assistant, using only the facts the passage states: add
    nothing from outside it, even where you know more.

    The user has never seen the passage, so never mention it ("according to the text"): answer directly,
    completely and in your own sentences, in one to four sentences, naming what you talk about. When a
    conversation comes before the question, answer it as the conversation's next turn."""

    passage: str = dspy.InputField(desc="the only source of facts for the answer")
    conversation: str = dspy.InputField(desc="the conversation so far; empty when the question opens it")
    question: str = dspy.InputField()
    answer: str = dspy.OutputField()


class FollowUpQuestion(dspy.Signature):
    """Write the user's next question in a conversation about the passage's subject: a natural follow-up to the
    last answer that asks about something not yet covered and that the passage answers in full.

    It may refer back to the conversation ("When was it built?"), as people do. The user has never seen the
    passage, so the question never mentions it. Avoid yes/no questions and questions whose wording gives the
    answer away."""

    passage: str = dspy.InputField(desc="the facts the conversation is about")
    conversation: str = dspy.InputField(desc="the conversation so far")
    question: str = dspy.OutputField(desc="one sentence ending in a question mark")


class ValidatePair(dspy.Signature):
    """Check a question and its answer, written from the passage for a question-answering dataset, before it is
    kept. Judge strictly: a pair that fails any check is thrown away.

    - answerable: someone who has never seen the passage can tell what the question asks (given the
      conversation before it, if any), and the passage alone answers it in full.
    - accurate: the answer states nothing the passage does not state or directly imply, contradicts nothing in
      it, and answers the question that was asked, completely.
    - trivial: the question is a yes/no question, its wording gives the answer away, or anyone would know the
      answer without the passage."""

    passage: str = dspy.InputField()
    conversation: str = dspy.InputField(desc="the conversation before the question; empty when it opens one")
    question: str = dspy.InputField()
    answer: str = dspy.InputField()
    reasoning: str = dspy.OutputField(desc="a sentence on each of the three checks")
    answerable: bool = dspy.OutputField()
    accurate: bool = dspy.OutputField()
    trivial: bool = dspy.OutputField()
