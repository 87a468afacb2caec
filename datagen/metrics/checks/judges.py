"""Checking the style judges against ground truth: does a judge rank the author's own passage above a passage
that is known not to be the author's (the pipeline's generic rephrase of it, or another author's text)?

Each judge is scored by paired accuracy (how often the author's passage wins its pair; a tie counts half) and,
for judges that give a score per passage, by AUC over all passages. The stylometric classifier, scored on
passages it was not fitted on (cross-validation), is the baseline: a judge that does worse is flagged, since an
optimizer climbing it would be climbing noise.
"""

import statistics
from dataclasses import dataclass
from pathlib import Path

from datagen.errors import DatagenError
from datagen.metrics.checks.stats import auc, paired_accuracy, random_sample
from datagen.metrics.scoring import MetricContext, Scorer
from datagen.metrics.stylometry import cross_validated_probabilities
from datagen.samples import Sample
from datagen.store import RunStore
from datagen.text import chunk_documents, iter_documents
from datagen.workspace import Config, find_workspace, load_config

# The judges that say how much a passage reads as the author's (pointwise), and the one comparing two.
POINTWISE = ("style_fidelity",)
PAIRWISE = "style_pairwise"
BASELINE = "stylometry (baseline)"
OTHER_CHUNK_TOKENS = 300


@dataclass
class Check:
    """One judge (or the baseline) on one comparison: its paired `accuracy` and `auc` (None for a judge that only
    compares) over `pairs` pairs, and whether it did worse than the baseline."""

    against: str  # what the author's passages are compared with
    judge: str
    accuracy: float
    auc: float | None
    pairs: int
    worse_than_baseline: bool = False


def comparison_sets(run_dir: Path, other: list[Path] | None, limit: int) -> tuple[str, list[str], dict]:
    """The run's pipeline, the author's passages, and what to compare them with: their generic rephrases
    (paired), and another author's passages when given."""
    with RunStore.reading(run_dir) as store:
        pipeline = store.meta().get("pipeline", "")
        pairs = random_sample([s for _, samples in store.done() for s in samples], limit)
    if len(pairs) < 2:
        raise DatagenError(f"{run_dir}: needs at least 2 finished samples to check judges against")
    author = [sample.output for sample in pairs]
    against = {"generic rephrases": [sample.input for sample in pairs]}
    if other:
        passages = random_sample([c.text for c in chunk_documents(iter_documents(other), OTHER_CHUNK_TOKENS)],
                                 len(author))
        if len(passages) < 2:
            raise DatagenError("the other author's text gives fewer than 2 passages")
        against["another author"] = passages
    return pipeline, author, against


def check_judges(run_dir: str | Path, *, other: list[Path] | None = None, limit: int = 40,
                 workspace: Path | None = None, config: Config | None = None) -> list[Check]:
    """Check the style judges of a run's pipeline on the run's own samples (see the module's doc).

    Args:
        run_dir: the run folder; its samples' outputs are the author's passages, their inputs the generic
            rephrases they are set against.
        other: files or folders of another author's text, a second comparison.
        limit: how many of the run's samples, drawn at random (seeded).
        workspace: the workspace whose metrics/PIPELINE.py holds the judges; default: found from here.
        config: its configuration (the judge's model); default: its datagen.toml.

    Returns:
        One Check per judge and comparison, each comparison's baseline last.

    Raises:
        DatagenError: `run_dir` is not a run folder, or gives (or `other` gives) fewer than 2 passages.
    """
    run_dir = Path(run_dir)
    workspace = workspace or find_workspace()
    config = config or load_config(workspace)
    pipeline, author, against = comparison_sets(run_dir, other, limit)
    scorer = Scorer(pipeline, MetricContext(workspace, config, corpus=author), [*POINTWISE, PAIRWISE])
    metrics = {metric.name: metric for metric in scorer.metrics}

    def style(name: str, passage: str) -> float:
        return metrics[name](passage, Sample(input="", output=passage)).value

    checks = []
    for label, others in against.items():
        author_side, other_side = author[:len(others)], others[:len(author)]
        base_author, base_other = cross_validated_probabilities(author_side, other_side)
        baseline = Check(label, BASELINE, paired_accuracy(base_author, base_other), auc(base_author, base_other),
                         len(author_side))
        rows = []
        for name in POINTWISE:
            a, o = [style(name, p) for p in author_side], [style(name, p) for p in other_side]
            rows.append(Check(label, name, paired_accuracy(a, o), auc(a, o), len(a)))
        wins = [metrics[PAIRWISE].prefer(a, o, exclude=a).value for a, o in zip(author_side, other_side)]
        rows.append(Check(label, PAIRWISE, statistics.fmean(wins), None, len(wins)))
        for row in rows:
            row.worse_than_baseline = row.accuracy < baseline.accuracy
        checks += [*rows, baseline]
    return checks
