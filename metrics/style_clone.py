"""The style-cloning pipeline's metrics, and how much each counts in its composite.

Style, content and fluency are scored apart (one opaque number hides which one failed), by LLM judges and by
offline metrics that need no LLM, so every run gets a signal it can trust even on a weak judge model. The metrics
themselves live in datagen.metrics; this module only chooses and weighs them (`[metrics.style_clone]` in
datagen.toml may override the weights and the pass mark, and `[metrics.style_clone.diversity_bar]` the
diversity bar).
"""

from datagen import DiversityBar
from datagen.metrics.answers import (AnswerChrF, AnswerCoverage, AnswerEmbedding, AnswerNovelty, AnswerStyle,
                                     AnswerStyleJudge)
from datagen.metrics.coverage import ContentCoverage, Novelty
from datagen.metrics.judges import (BoundariesJudge, ContentJudge, GenericnessJudge, PairwiseStyleJudge,
                                    StyleFidelityJudge, shared_references)
from datagen.metrics.overlap import ChrF, EmbeddingSimilarity, embedding_available
from datagen.metrics.stylometry import StylometricFidelity, StylometricGenericness, shared_classifier

METRICS = {
    "style_fidelity": lambda ctx: StyleFidelityJudge(ctx.judge, shared_references(ctx)),
    "style_pairwise": lambda ctx: PairwiseStyleJudge(ctx.judge, shared_references(ctx)),
    "boundaries": lambda ctx: BoundariesJudge(ctx.judge),
    "content": lambda ctx: ContentJudge(ctx.judge),
    "genericness": lambda ctx: GenericnessJudge(ctx.judge),
    # Fitted against the plain-prose background and `[metrics.style_clone] background`.
    "style_offline": lambda ctx: StylometricFidelity(shared_classifier(ctx, "style_clone")),
    "generic_offline": lambda ctx: StylometricGenericness(shared_classifier(ctx, "style_clone")),
    "chrf": lambda ctx: ChrF(),
    "coverage": lambda ctx: ContentCoverage(),
    "novelty": lambda ctx: Novelty(),
}
# What the rephrase must get right: keep the content, all of it and nothing else, and lose the style. chrF is
# reported, not counted: copying the passage would maximise it. What a run without a capable judge climbs is the
# offline part: generic_offline (style removed), embedding (same meaning), coverage (the chunk's content words
# carried, nothing added, length kept: half a rewrite, padding, gibberish, placeholders and stock text all lose)
# and novelty (new wording), which is also a gate (its `floor`): a copy scores 0 however much content it carries.
# A weighted mean alone could not stop the copy, which has all of the content. Measured with
# `python -m bench.metric_validity` on Bible passages (King James against two modern plain versions, 10 verses and
# 2 verses a pair): the offline composite ranks the human rewrite above each of a copy, another passage's rewrite,
# half of it, it padded by half with other passages' sentences, gibberish of its length, a placeholder and one stock
# text in 98.8-100% of pairs (docs/metrics.md); coverage at 2 rather than 3 let half a two-verse Basic English
# rewrite win 1.8% of pairs, a plain length ratio rather than its fourth root let padding win on the project's own
# pairs, whose rewrites are much shorter than their passages.
WEIGHTS = {"content": 2.0, "genericness": 1.0, "generic_offline": 1.0, "boundaries": 0.5, "coverage": 3.0,
           "novelty": 0.25}
# The pass mark for bootstrapped demos. On the offline composite (bench/metric_validity.py, the same pairs) a copy
# scores 0 (the novelty gate), gibberish at most 0.31, a placeholder at most 0.29 and one stock text at most 0.38,
# while the human rewrites score a median of 0.55-0.75, and 0.45 or more in 86% (two verses, Basic English) to 100%
# (ten verses, World English Bible) of pairs. With judges, a copy still scores 0, and a placeholder rated generic
# but without content about 0.32.
THRESHOLD = 0.45
# The diversity bar `datagen evaluate` and `datagen optimize` report (docs/quality.md): the generic rephrase, what
# a trained model is given, must not collapse to a formula ("Here is a plain version: ...") that the model would
# then expect of every prompt. Prose does not repeat its openings: the most common opening of the four novels'
# 64-token chunks begins 0.3% of them (bench/quality_scale.py), so an opening on a tenth of the rephrases is thirty
# times what prose does (the template-collapse bar of `status` and the card); on a dev set, 3 rephrases at least
# must share it. No distinct-2 bar: distinct-2 rises as less text is measured, so a figure would hold for one dev
# set's size only, and evaluate already says when the rephrases are narrower than their chunks.
DIVERSITY_BAR = DiversityBar(opening_share=0.1, fields=("input",))
# What a person reviewing a sample in `datagen view` rates from 1 to 5, each named after the metric that measures
# it, so that `datagen judge-check RUN --human` can set the metric against the person's ratings.
CRITERIA = {
    "content": "The input says what the output says: no fact or event added, changed or lost.",
    "genericness": "The input is plain, generic prose: none of the author's wording, rhythm or tone.",
    "style_fidelity": "The output reads as the author's own passage.",
    "boundaries": "The output starts and ends at natural places (no sentence cut off).",
}

# The model metrics (`datagen eval-model`): a model trained on the pairs is given a held-out generic input and
# should answer the author's passage. Its answer is scored for the author's style (the stylometric classifier,
# fitted on the run's training split), the input's content carried (coverage, embedding), closeness to the
# author's own passage (chrF against the reference) and, as a gate, new wording: an answer that returns its input
# did no work (datagen.metrics.answers). The judge (`style_fidelity`) is reported when asked for (`--metric`) and
# counts once weighted in `[metrics.style_clone] model_weights`. Measured with `python -m bench.answer_validity`
# (docs/eval-model.md).
MODEL_METRICS = {
    "style": lambda ctx: AnswerStyle(shared_classifier(ctx, "style_clone")),
    "style_fidelity": lambda ctx: AnswerStyleJudge(ctx.judge, shared_references(ctx)),
    "chrf": lambda ctx: AnswerChrF(),
    "coverage": lambda ctx: AnswerCoverage(),
    "novelty": lambda ctx: AnswerNovelty(),
}
MODEL_WEIGHTS = {"style": 2.0, "chrf": 1.0, "coverage": 1.0, "novelty": 0.25}

if embedding_available():
    METRICS["embedding"] = lambda ctx: EmbeddingSimilarity()
    # Meaning kept, checked without an LLM: a weak judge passes a junk rephrase that this catches.
    WEIGHTS["embedding"] = 1.0
    MODEL_METRICS["embedding"] = lambda ctx: AnswerEmbedding()
    MODEL_WEIGHTS["embedding"] = 1.0
