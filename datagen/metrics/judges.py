"""LLM judges: typed signatures the `judge` model answers, each turned into a score in [0, 1] with feedback.

Every judge writes its reasoning before its verdict (so the verdict follows from it) and rates on a 1-5 scale,
which models use more consistently than a free [0, 1] number; the rating is mapped onto [0, 1]. Judges run
pinned to the judge model (`set_lm`, and its adapter through `RoleModel.context`), so an optimizer that runs
the metric under the task model still gets the judge's verdict.
"""

import hashlib
from typing import TYPE_CHECKING, Literal

import dspy

from datagen.lm.roles import RoleModel
from datagen.samples import Sample, transcript
from datagen.metrics.base import Score, clamp

if TYPE_CHECKING:
    from datagen.metrics.scoring import MetricContext

# References long enough to show a style, short enough that several fit a small model's context.
REFERENCE_WORDS = 180
REFERENCES_PER_CALL = 2


class StyleFidelity(dspy.Signature):
    """Judge whether the candidate passage reads as if the author of the reference passages wrote it.

    Compare how the passages are written, not what they are about: vocabulary and idiom, sentence length and
    rhythm, punctuation, tone, narrative voice, habits such as asides or archaic words."""

    candidate: str = dspy.InputField(desc="the passage to judge")
    references: str = dspy.InputField(desc="passages by the author, separated by blank lines")
    reasoning: str = dspy.OutputField(desc="one or two sentences naming the decisive stylistic evidence")
    rating: int = dspy.OutputField(desc="1 to 5: 5 = indistinguishable from the author, 1 = clearly someone else")


class StylePreference(dspy.Signature):
    """Decide which of two passages is closer in style to the reference passages by one author.

    Compare how they are written, not what they are about: vocabulary and idiom, sentence rhythm,
    punctuation, tone, narrative voice."""

    passage_a: str = dspy.InputField()
    passage_b: str = dspy.InputField()
    references: str = dspy.InputField(desc="passages by the author, separated by blank lines")
    reasoning: str = dspy.OutputField(desc="one or two sentences naming the decisive stylistic evidence")
    closer: Literal["A", "B"] = dspy.OutputField(desc="the passage closer to the author's style")


class SelfContained(dspy.Signature):
    """Judge whether the passage reads as a self-contained piece: it starts naturally (no dangling reference to
    something unseen, no reply to an unheard question, no sentence cut at its start) and ends naturally (no
    sentence or scene cut off mid-way)."""

    passage: str = dspy.InputField()
    reasoning: str = dspy.OutputField(desc="one or two sentences on how the passage begins and ends")
    rating: int = dspy.OutputField(desc="1 to 5: 5 = begins and ends naturally, 1 = cut off at both ends")


class ContentPreservation(dspy.Signature):
    """Judge whether the rewrite says the same things as the original: the same events, facts, names and
    dialogue content, in the same order, with nothing important left out and nothing added. Ignore
    differences of style and wording."""

    original: str = dspy.InputField()
    rewrite: str = dspy.InputField()
    reasoning: str = dspy.OutputField(desc="one or two sentences naming what was lost, added or changed, if anything")
    rating: int = dspy.OutputField(desc="1 to 5: 5 = the same content, 1 = largely different content")


class Genericness(dspy.Signature):
    """Judge whether the passage is plain, neutral, modern prose with no distinctive authorial voice: no
    unusual vocabulary, archaic or regional words, asides to the reader, striking imagery, or marked
    punctuation and sentence rhythm. A passage that still shows its author's style fails."""

    passage: str = dspy.InputField()
    reasoning: str = dspy.OutputField(desc="one or two sentences naming any stylistic markers left")
    rating: int = dspy.OutputField(desc="1 to 5: 5 = entirely plain and neutral, 1 = strongly marked style")


class FollowsInstructions(dspy.Signature):
    """Judge whether a training sample does what the task asks: made from the source passage as the task's
    instructions say, its output carries out every instruction for its input, is correct and grounded in the
    passage, and is complete. Judge what the output does, not how long or polished it is."""

    task: str = dspy.InputField(desc="the instructions the sample was made by")
    passage: str = dspy.InputField(desc="the source passage the sample was made from")
    sample_input: str = dspy.InputField(desc="what a model will be given")
    sample_output: str = dspy.InputField(desc="what the model should answer")
    reasoning: str = dspy.OutputField(desc="one or two sentences naming what the output does or fails to do")
    rating: int = dspy.OutputField(desc="1 to 5: 5 = does all the task asks, 1 = ignores the task")


def rating_score(rating: int) -> float:
    """A 1-5 rating on [0, 1]; a rating outside the scale is clamped to it."""
    return clamp((int(rating) - 1) / 4)


def excerpt(text: str, words: int = REFERENCE_WORDS) -> str:
    parts = text.split()
    return text.strip() if len(parts) <= words else " ".join(parts[:words]) + " ..."


class References:
    """Passages by the author to show a style judge: a few per call, chosen by the candidate's hash (the same
    candidate always gets the same references, so verdicts are reproducible and cacheable), never the
    candidate's own chunk."""

    def __init__(self, passages: list[str], per_call: int = REFERENCES_PER_CALL):
        self.passages = [p for p in dict.fromkeys(passages) if p.strip()]
        self.per_call = per_call

    def for_text(self, text: str, exclude: str = "") -> str:
        pool = [p for p in self.passages if p != exclude and p != text]
        if not pool:
            return ""
        start = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % len(pool)
        chosen = [pool[(start + i) % len(pool)] for i in range(min(self.per_call, len(pool)))]
        return "\n\n".join(excerpt(p) for p in chosen)


def shared_references(ctx: "MetricContext") -> References:
    """The context's one `References` over its corpus (the author's passages), shared by its style judges."""
    return ctx.shared("references", lambda: References(ctx.corpus))


class Judge:
    """Runs one judge signature on the judge model and turns its rating into a Score."""

    name: str
    kind = "judge"
    signature: type[dspy.Signature]

    def __init__(self, judge: RoleModel):
        self.judge = judge
        self.predict = dspy.Predict(self.signature)
        self.predict.set_lm(judge.lm)

    # Which text each input field of the signature is given: the sample's "input" or "output", the "chunk" it was
    # made from, or "conversation" (its earlier turns as a transcript). A judge that needs more overrides __call__.
    asks: dict[str, str] = {}

    def __call__(self, chunk: str, sample: Sample) -> Score:
        texts = {"chunk": chunk, "input": sample.input, "output": sample.output,
                 "conversation": transcript(sample.history)}
        return self.ask(**{field: texts[text] for field, text in self.asks.items()})

    def ask(self, **inputs) -> Score:
        with self.judge.context():
            verdict = self.predict(**inputs)
        return Score(rating_score(verdict.rating), verdict.reasoning.strip())


class StyleFidelityJudge(Judge):
    """Does the sample's output read as the author's? (For style cloning: the passage the model learns to
    write, boundary sentences included.)"""

    name, signature = "style_fidelity", StyleFidelity
    aspect = "style"

    def __init__(self, judge: RoleModel, references: References):
        super().__init__(judge)
        self.references = references

    def __call__(self, chunk: str, sample: Sample) -> Score:
        return self.ask(references=self.references.for_text(sample.output, exclude=chunk), candidate=sample.output)


class BoundariesJudge(Judge):
    """Does the sample's output start and end naturally?"""

    name, signature = "boundaries", SelfContained
    aspect = "boundaries"
    asks = {"passage": "output"}


class ContentJudge(Judge):
    """Do the sample's input and output say the same things?"""

    name, signature = "content", ContentPreservation
    aspect = "content"
    asks = {"original": "output", "rewrite": "input"}


class GenericnessJudge(Judge):
    """Is the sample's input free of the author's style, so that the pair teaches style and not copying?"""

    name, signature = "genericness", Genericness
    aspect = "genericness"
    asks = {"passage": "input"}


class InstructionsJudge(Judge):
    """Does the sample do what the pipeline's instructions ask of its passage? A judge for any pipeline, given
    its task's instructions (e.g. the docstring of its signature)."""

    name, signature = "follows_instructions", FollowsInstructions

    def __init__(self, judge: RoleModel, task: str):
        super().__init__(judge)
        self.task = task

    def __call__(self, chunk: str, sample: Sample) -> Score:
        # A sample whose input is the passage itself need not send it twice (a small model's context is short).
        passage = "(the same text as the sample's input)" if chunk == sample.input else chunk
        return self.ask(task=self.task, passage=passage, sample_input=sample.input, sample_output=sample.output)


class PairwiseStyleJudge:
    """Which of two passages is closer to the author's style, asked in both orders to cancel the judge's
    position bias: 1.0 when `first` wins both times, 0.0 when `second` does, 0.5 when the verdicts disagree."""

    name, kind = "style_pairwise", "judge"
    aspect = "style"

    def __init__(self, judge: RoleModel, references: References):
        self.judge = judge
        self.references = references
        self.predict = dspy.Predict(StylePreference)
        self.predict.set_lm(judge.lm)

    def prefer(self, first: str, second: str, exclude: str = "") -> Score:
        references = self.references.for_text(first + second, exclude=exclude)
        with self.judge.context():
            ab = self.predict(references=references, passage_a=first, passage_b=second)
            ba = self.predict(references=references, passage_a=second, passage_b=first)
        wins = (ab.closer == "A") + (ba.closer == "B")
        return Score(wins / 2, f"A/B: {ab.reasoning.strip()} | B/A: {ba.reasoning.strip()}")

    def __call__(self, chunk: str, sample: Sample) -> Score:
        """The sample's output against its input: how clearly the pair separates the author's style."""
        return self.prefer(sample.output, sample.input, exclude=chunk)
