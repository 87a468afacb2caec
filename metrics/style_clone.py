"""The style-cloning pipeline's metrics, and how much each counts in its composite.

Style, content and fluency are scored apart (one opaque number hides which one failed), by LLM judges and by
offline metrics that need no LLM, so every run gets a signal it can trust even on a weak judge model. The metrics
themselves live in datagen.metrics; this module only chooses and weighs them (`[metrics.style_clone]` in
datagen.toml may override the weights and the pass mark).
"""

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
}
# What the rephrase must get right: keep the content, lose the style. chrF is reported, not counted: copying the
# passage would maximise it (surface overlap rewards not rephrasing at all). The offline pair, generic_offline and
# embedding, is what a run without a capable judge climbs; at 1 : 1 it ranks a human plain rewrite above an
# unchanged copy in 98-99.5% of 220 Bible passage pairs and above another passage's rewrite in 99%, for both plain
# versions (at 1 : 1.5 the copy won 5% of Basic English pairs: docs/metrics.md, bench/metric_validity.py).
WEIGHTS = {"content": 2.0, "genericness": 1.0, "generic_offline": 1.0, "boundaries": 0.5}
# A copy scores 1 / 2 = 0.5 on the offline composite and (2 + 1 + 0.5) / 5.5 = 0.64 with a judge that rates its
# content and boundaries perfectly: the pass mark for bootstrapped demos sits above both.
THRESHOLD = 0.65
# What a person reviewing a sample in `datagen view` rates from 1 to 5, each named after the metric that measures
# it, so that `datagen judge-check RUN --human` can set the metric against the person's ratings.
CRITERIA = {
    "content": "The input says what the output says: no fact or event added, changed or lost.",
    "genericness": "The input is plain, generic prose: none of the author's wording, rhythm or tone.",
    "style_fidelity": "The output reads as the author's own passage.",
    "boundaries": "The output starts and ends at natural places (no sentence cut off).",
}
if embedding_available():
    METRICS["embedding"] = lambda ctx: EmbeddingSimilarity()
    # Meaning kept, checked without an LLM: a weak judge passes a junk rephrase that this catches.
    WEIGHTS["embedding"] = 1.0
