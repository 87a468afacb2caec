"""The factual QA pipeline's metrics, and how much each counts in its composite.

The judges and the offline `grounded` check live in datagen.metrics.factual_qa; this module only chooses and
weighs them (`[metrics.factual_qa]` in datagen.toml may override the weights and the pass mark, and
`[metrics.factual_qa.diversity_bar]` the diversity bar).
"""

from datagen import DiversityBar
from datagen.metrics.answers import AnswerF1, AnswerGrounded, AnswerNovelty, CorrectnessJudge
from datagen.metrics.factual_qa import AccuracyJudge, AnswerableJudge, Grounded, SubstanceJudge

METRICS = {
    "answerable": lambda ctx: AnswerableJudge(ctx.judge),
    "accuracy": lambda ctx: AccuracyJudge(ctx.judge),
    "non_trivial": lambda ctx: SubstanceJudge(ctx.judge),
    "grounded": lambda ctx: Grounded(),
}
# A wrong answer teaches a falsehood, the worst a pair can do; an unanswerable question teaches guessing.
# Grounding is the judge-free check that a weak judge cannot wave through.
WEIGHTS = {"accuracy": 2.0, "answerable": 1.5, "non_trivial": 1.0, "grounded": 1.0}
THRESHOLD = 0.6
# The diversity bar `datagen evaluate` and `datagen optimize` report (docs/quality.md): the questions must not
# collapse to a formula ("According to the passage, what ..."). Questions open with a few question words, so their
# openings repeat more than prose's: of the 28 questions a person wrote for data/factual_qa/answers.jsonl the most
# common opening ("where was the") begins 7%, against 0.3% for prose. A fifth, twice the bar on prose, leaves honest
# questions that room and still flags a formula; on a dev set, 3 questions at least must share it.
DIVERSITY_BAR = DiversityBar(opening_share=0.2, fields=("input",))
# What a person reviewing a pair in `datagen view` rates from 1 to 5, each named after the metric that measures it
# (see `datagen judge-check RUN --human`).
CRITERIA = {
    "accuracy": "The answer is correct according to the passage.",
    "answerable": "The question can be answered from the passage alone.",
    "non_trivial": "The question asks about something worth knowing, not a surface detail.",
}

# The model metrics (`datagen eval-model`): a model trained on the pairs is asked a held-out question, with no
# passage, and should answer what the reference answer says. Its answer is judged against the reference and the
# passage (`correct`), compared word by word with the reference (SQuAD's token F1), checked to use the passage's
# words (`grounded`) and, as a gate, to say more than the question did: a repeated question answers nothing, though
# every word of it is in the passage (datagen.metrics.answers). Measured with `python -m bench.answer_validity`
# (docs/eval-model.md).
MODEL_METRICS = {
    "correct": lambda ctx: CorrectnessJudge(ctx.judge),
    "answer_f1": lambda ctx: AnswerF1(),
    "grounded": lambda ctx: AnswerGrounded(),
    "novelty": lambda ctx: AnswerNovelty(),
}
MODEL_WEIGHTS = {"correct": 2.0, "answer_f1": 1.0, "grounded": 1.0, "novelty": 0.25}
