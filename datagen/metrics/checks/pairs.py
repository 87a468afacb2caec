"""Can a metric be trusted? A pipeline's metrics checked on ground truth nobody on the project wrote.

An optimizer climbs whatever its metric rewards, so before trusting one, check that it prefers what it should:

- on **parallel text** (a styled passage and a person's plain rewrite of it, `--pairs`): the plain version scores
  more generic than the styled original (`plain_vs_styled`, genericness metrics), and the true pair (plain version
  -> styled passage) beats the same pair made with each degenerate rewrite an optimizer or a weak model could
  offer instead (`perturbations`): an unchanged copy of the passage (`true_vs_copy`), another passage's plain
  version (`true_vs_other`), the first half of the plain version (`true_vs_truncated`), the plain version padded
  with other passages' sentences (`true_vs_padded`), gibberish of its length (`true_vs_gibberish`), a placeholder
  such as `{generic}` (`true_vs_placeholder`) and one fixed generic text for every passage (`true_vs_template`),
  for the composite and each content or genericness metric;
- on **several authors' passages** (`--authors`): a held-out passage by the author scores higher on a style metric
  than a passage by another of the authors (`own_vs_other_author`). Each author's metrics are fitted on that
  author's passages, against the workspace's background plus the authors other than the two compared (never the
  one whose passages it is scored on).

Each figure is the paired accuracy (how often the better side wins its pair; a tie counts half) with a 95%
percentile-bootstrap interval over pairs (1,000 resamples, seed 0), and the AUC (Mann-Whitney: P(a random better-
side score beats a random worse-side score)). A metric at or below 0.5 loses to the trivial baseline and is
flagged; so is an LLM judge below the best offline metric of the same aspect on the same check.

A score that fails (the judge's answer did not parse, or was cut off at max_tokens: see
`datagen.metrics.scoring.measure`) counts 0, against that metric, and the run goes on: a conservative choice, since
a judge that cannot answer is no judge to trust, and 0 can only lower the metric's figure (a pairwise judge's
failed verdict counts as preferring the other side). The composite counts a failed part 0, as everywhere else.
How many scores failed, by metric and kind, goes with the figures (`Validity.failures`, `failure_lines`), so that
a figure dragged down by failures is read as such. A failure no other score would escape (a bad key, an unknown
model, nothing listening) stops the check with a DatagenError naming it.
"""

import json
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from datagen.errors import DatagenError
from datagen.lm import failure_kind, first_line
from datagen.metrics.base import Failed, Score
from datagen.metrics.checks.stats import auc, evenly_spaced, wins
from datagen.metrics.coverage import sentences
from datagen.metrics.scoring import COMPOSITE, MetricContext, Scorer, measure
from datagen.samples import Sample
from datagen.text import chunk_documents, iter_documents
from datagen.util import replacing
from datagen.workspace import Config, load_metric_suite

# The degenerate rewrites the true one is set against (see `perturbations`), each named by its check.
PERTURBATIONS = ("true_vs_copy", "true_vs_other", "true_vs_truncated", "true_vs_padded", "true_vs_gibberish",
                 "true_vs_placeholder", "true_vs_template")
AUTHOR_CHECK = "own_vs_other_author"
# What losing each check to its trivial baseline means, for the flag.
LOSES = {"plain_vs_styled": "rates the styled original at least as generic as the plain version",
         "true_vs_copy": "prefers an unchanged copy of the passage to the true rewrite",
         "true_vs_other": "prefers another passage's rewrite to the true one",
         "true_vs_truncated": "prefers half of the rewrite to the whole of it",
         "true_vs_padded": "prefers the rewrite padded with sentences from other passages to the rewrite alone",
         "true_vs_gibberish": "prefers gibberish of the rewrite's length to the rewrite",
         "true_vs_placeholder": "prefers a placeholder (such as {generic}) to the true rewrite",
         "true_vs_template": "prefers one fixed generic text, the same for every passage, to the true rewrite",
         AUTHOR_CHECK: "prefers another author's passage to the author's own"}
# What a model answers when it fills in the field's name or a template slot rather than the text (seen from small
# real models: `generic`, `{generic}` and `{{generic}}` for style_clone's output field `generic`).
PLACEHOLDERS = ("generic", "{generic}", "{{generic}}", "[PLACEHOLDER]")
# One plain, fluent, content-free text, the same for every passage: what a model answers when it gives up on the
# passage and writes about it instead.
TEMPLATE = ("Here is the passage rewritten in plain, simple modern English. It tells the same story in everyday "
            "words: what happened, who was there and what they said to each other, without the old-fashioned "
            "style of the original.")
# Padding adds at least this share of the rewrite's words, in whole sentences from other passages' rewrites.
PADDING = 0.5
# Passages cut from an author's files, at about a paragraph or two each.
AUTHOR_CHUNK_TOKENS = 200
RESAMPLES = 1000


@dataclass(frozen=True)
class Figure:
    """One metric on one check: `accuracy` in [0, 1] over `n` pairs with its 95% interval [`low`, `high`], and the
    `auc` (None for a metric that only compares, such as a pairwise judge)."""

    accuracy: float
    auc: float | None
    n: int
    low: float
    high: float

    def as_dict(self) -> dict:
        return {"accuracy": self.accuracy, "auc": self.auc, "n": self.n, "low": self.low, "high": self.high}


@dataclass
class Tally:
    """How many scores each metric made and how many of them failed, by failure kind (a composite's score fails
    when one of its parts did, counted under each failed part's kind)."""

    scored: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    kinds: dict[str, Counter] = field(default_factory=dict)

    def measure(self, metric, chunk: str, sample: Sample) -> Score:
        """`metric`'s score of `sample` by `datagen.metrics.scoring.measure` (a `Failed` one, value 0, when it
        failed), counted. Raises DatagenError naming the metric for a failure no other score would escape."""
        try:
            score = measure(metric, chunk, sample)
        except Exception as exc:  # a bad key, an unknown model, nothing listening: every score would fail alike
            raise DatagenError(f"{metric.name} could not score ({failure_kind(exc)}): {first_line(exc)}") from exc
        self.add(metric.name, [score])
        return score

    def add(self, name: str, scores: list[Score]) -> None:
        """One score of `name`, failed when any of `scores` (itself, or a composite's parts) is `Failed`."""
        kinds = [score.kind for score in scores if isinstance(score, Failed)]
        self.scored[name] += 1
        self.failed[name] += bool(kinds)
        self.kinds.setdefault(name, Counter()).update(kinds)


@dataclass
class Validity:
    """Every figure by metric and check, with what is flagged: {metric: {check: Figure}}, and one line per flag;
    `failures`: how many scores each metric made and how many failed (each counted 0 in its figures)."""

    pipeline: str
    data: str
    figures: dict[str, dict[str, Figure]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    failures: Tally = field(default_factory=Tally)

    def failure_lines(self) -> list[str]:
        """One line per metric that had failed scores, e.g. "content: 3 of 40 scores failed (judge_content_parse
        3)"; for a composite, the scores with a failed part, by the parts' kinds."""
        lines = []
        for name, failed in self.failures.failed.items():
            if not failed:
                continue
            kinds = ", ".join(f"{kind} {n}" for kind, n in self.failures.kinds[name].most_common())
            what = "scores had a failed part, counted 0" if self.kinds.get(name) == "composite" else "scores failed"
            lines.append(f"{name}: {failed} of {self.failures.scored[name]} {what} ({kinds})")
        return lines

    def as_json(self) -> dict:
        return {"pipeline": self.pipeline, "data": self.data, "kinds": self.kinds, "flags": self.flags,
                "metrics": {name: {check: figure.as_dict() for check, figure in checks.items()}
                            for name, checks in self.figures.items()},
                "failures": {name: {"scored": n, "failed": self.failures.failed[name],
                                    "kinds": dict(self.failures.kinds[name].most_common())}
                             for name, n in self.failures.scored.items()}}

    def write_json(self, path: str | Path) -> Path:
        """Write `as_json()` to `path` whole (UTF-8, indented; a file there before is replaced, or left as it was
        when the write fails: DiskError for a full or read-only disk); returns the path."""
        path = Path(path)
        with replacing(path) as partial:
            partial.write_text(json.dumps(self.as_json(), indent=1), encoding="utf-8")
        return path


@dataclass
class _Comparison:
    """Scores of pairs whose first side should win, in groups (an AUC is only taken within a group: scores from
    differently fitted metrics are not on one scale)."""

    better: list[float] = field(default_factory=list)
    worse: list[float] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)
    ranked: bool = True  # False for a metric that only says which side wins (no AUC)

    def add(self, better: float, worse: float, group: int = 0) -> None:
        self.better.append(better)
        self.worse.append(worse)
        self.groups.append(group)

    def figure(self) -> Figure:
        better, worse, groups = map(np.asarray, (self.better, self.worse, self.groups))
        won = wins(better, worse)
        rng = np.random.default_rng(0)
        members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
        # Resampled within each group, so every group keeps its size.
        draws = [np.concatenate([rng.choice(m, len(m)) for m in members]) for _ in range(RESAMPLES)]
        low, high = np.percentile([won[d].mean() for d in draws], [2.5, 97.5])
        area = None
        if self.ranked:
            area = float(sum(len(m) * auc(better[m].tolist(), worse[m].tolist()) for m in members) / len(won))
        return Figure(float(won.mean()), area, len(won), float(low), float(high))


def read_pairs(path: str | Path, styled_field: str = "styled", plain_field: str = "plain") -> list[tuple[str, str]]:
    """(styled, plain) passages from a JSONL file, one object a line with both fields as non-empty strings.

    Raises DatagenError naming the file and line of a bad line, or when fewer than 4 pairs are found.
    """
    path = Path(path)
    if not path.is_file():
        raise DatagenError(f"{path}: no such file (--pairs takes a JSONL file)")
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise DatagenError(f"{path}:{number}: not valid JSON") from None
        values = [record.get(name) if isinstance(record, dict) else None for name in (styled_field, plain_field)]
        for name, value in zip((styled_field, plain_field), values):
            if not isinstance(value, str) or not value.strip():
                raise DatagenError(f"{path}:{number}: needs a non-empty string {name!r}")
        pairs.append((values[0], values[1]))
    if len(pairs) < 4:
        raise DatagenError(f"{path}: needs at least 4 pairs, found {len(pairs)}")
    return pairs


def read_authors(paths: Iterable[str | Path], limit: int) -> dict[str, list[str]]:
    """Up to `limit` passages (about AUTHOR_CHUNK_TOKENS tokens each, spread over the text) per author, one
    author per file or folder, named by it. Raises DatagenError for fewer than 2 authors, two of one name, or
    an author with fewer than 4 passages."""
    authors = {}
    for path in map(Path, paths):
        name = path.stem if path.is_file() else path.name
        if name in authors:
            raise DatagenError(f"--authors {path}: a second author named {name!r}")
        passages = [chunk.text for chunk in chunk_documents(iter_documents([path]), AUTHOR_CHUNK_TOKENS)]
        if len(passages) < 4:
            raise DatagenError(f"--authors {path}: needs at least 4 passages of about {AUTHOR_CHUNK_TOKENS} tokens, "
                               f"found {len(passages)}")
        authors[name] = evenly_spaced(passages, limit)
    if len(authors) < 2:
        raise DatagenError("--authors needs at least 2 authors (a file or folder each)")
    return authors


class PipelineMetrics:
    """A pipeline's checkable metrics (those with an aspect) on one MetricContext; with `offline`, only those
    that need no LLM, and the composite made of the offline ones alone. `metrics` maps names to metrics, and
    the composite reads its parts from it (a benchmark may put another metric under a name to compare).
    `tally` counts the scores made and failed by `score`."""

    def __init__(self, pipeline: str, context: MetricContext, offline: bool):
        self.pipeline = pipeline
        self.tally = Tally()
        every = Scorer(pipeline, context, list(load_metric_suite(pipeline, context.workspace).METRICS))
        checkable = [m for m in every.metrics if getattr(m, "aspect", "") and not (offline and m.kind != "offline")]
        weights = {name: w for name, w in every.weights.items() if w and name in {m.name for m in checkable}}
        self.metrics = {m.name: m for m in checkable}
        self.kinds = {m.name: m.kind for m in checkable}
        self.aspects = {m.name: m.aspect for m in checkable}
        self.composite = None
        if weights:
            self.composite = Scorer(pipeline, context, [*weights, COMPOSITE], weights=weights).composite
            self.composite_name = COMPOSITE + (" (offline)" if offline and weights != every.weights else "")
            self.kinds[self.composite_name] = "composite"

    def named(self, *aspects: str) -> list[str]:
        return [name for name, aspect in self.aspects.items() if aspect in aspects]

    def score(self, chunk: str, sample: Sample, names: list[str]) -> dict[str, float]:
        """The value of each of `names`, and of the composite, on `sample`. A metric that fails on it counts 0
        (see the module's doc), in the composite too, and is counted in `tally`; raises DatagenError for a
        failure no other score would escape."""
        scores = {name: self.tally.measure(self.metrics[name], chunk, sample) for name in names}
        values = {name: score.value for name, score in scores.items()}
        if self.composite is not None:
            parts = {name: scores[name] if name in scores else self.tally.measure(self.metrics[name], chunk, sample)
                     for name in self.composite.weights}
            values[self.composite_name] = self.composite.combine(parts)
            self.tally.add(self.composite_name, list(parts.values()))
        return values


def pair_metrics(pipeline: str, pairs: list[tuple[str, str]], *, workspace: Path, config: Config,
                 offline: bool = False) -> PipelineMetrics:
    """`pipeline`'s metrics fitted for (styled, plain) `pairs`: the styled passages are the author's corpus."""
    return PipelineMetrics(pipeline, MetricContext(workspace, config, corpus=[styled for styled, _ in pairs]), offline)


def check_pairs(metrics: PipelineMetrics, pairs: list[tuple[str, str]], *, seed: int = 0,
                on_pair: Callable[[int, int], None] | None = None) -> Validity:
    """The parallel-text checks (see the module's doc) of `metrics` (from pair_metrics) on (styled, plain) `pairs`,
    with the scores that failed (counted 0) in its `failures`. `on_pair(done, total)` is called as each pair is
    scored. Raises DatagenError for fewer than 4 pairs, when no metric applies, or for a failure no other score
    would escape."""
    if len(pairs) < 4:
        raise DatagenError(f"the parallel checks need at least 4 pairs, got {len(pairs)}")
    names = metrics.named("genericness", "content")
    if not names:
        raise DatagenError(f"pipeline {metrics.pipeline!r} has no genericness or content metric to check on "
                           "parallel text")
    comparisons: dict[tuple[str, str], _Comparison] = {}
    for i, ((styled, plain), against) in enumerate(zip(pairs, perturbations(pairs, seed))):
        true = metrics.score(styled, Sample(input=plain, output=styled), names)
        for check, rewrite in against.items():
            for name, value in metrics.score(styled, Sample(input=rewrite, output=styled), names).items():
                comparisons.setdefault((name, check), _Comparison()).add(true[name], value)
                if check == "true_vs_copy" and metrics.aspects.get(name) == "genericness":
                    comparisons.setdefault((name, "plain_vs_styled"), _Comparison()).add(true[name], value)
        if on_pair:
            on_pair(i + 1, len(pairs))
    return _verdicts(Validity(metrics.pipeline, f"{len(pairs)} parallel pairs", failures=metrics.tally),
                     comparisons, metrics.kinds, metrics.aspects)


def check_authors(pipeline: str, authors: dict[str, list[str]], *, workspace: Path, config: Config,
                  offline: bool = False, on_pair: Callable[[int, int], None] | None = None,
                  build: Callable[[MetricContext], PipelineMetrics] | None = None) -> Validity:
    """The `own_vs_other_author` check (see the module's doc) of `pipeline`'s style metrics, for every ordered
    pair of `authors` ({name: passages}, at least 2). `on_pair(done, total)` is called as each author pair is
    done; `build` makes the metrics for each author's context (default: the pipeline's, `offline` or not). Scores
    that failed count 0 (a pairwise judge's: the other author preferred) and are counted in the result's
    `failures`. Raises DatagenError when the pipeline has no style metric, or for a failure no other score would
    escape."""
    comparisons: dict[tuple[str, str], _Comparison] = {}
    tally = Tally()
    ordered = [(a, b) for a in authors for b in authors if a != b]
    kinds, aspects = {}, {}
    for group, (author, other) in enumerate(ordered):
        background = [p for name, passages in authors.items() if name not in (author, other) for p in passages]
        context = MetricContext(workspace, config, corpus=authors[author], background=background)
        metrics = build(context) if build else PipelineMetrics(pipeline, context, offline)
        names = metrics.named("style")
        if not names:
            raise DatagenError(f"pipeline {pipeline!r} has no style metric to check on several authors")
        kinds.update({n: metrics.kinds[n] for n in names})
        aspects.update({n: "style" for n in names})
        for own, theirs in zip(authors[author], authors[other]):
            for name in names:
                metric = metrics.metrics[name]
                comparison = comparisons.setdefault((name, AUTHOR_CHECK), _Comparison())
                if hasattr(metric, "prefer"):  # a pairwise judge: which of the two is the author's
                    comparison.ranked = False
                    # Called as a metric, it prefers the sample's output to its input, the chunk excluded from
                    # its references: prefer(own, theirs, exclude=own), measured as any other metric.
                    preferred = tally.measure(metric, own, Sample(input=theirs, output=own))
                    comparison.add(preferred.value, 0.5, group)
                else:
                    comparison.add(tally.measure(metric, own, Sample(input="", output=own)).value,
                                   tally.measure(metric, theirs, Sample(input="", output=theirs)).value, group)
        if on_pair:
            on_pair(group + 1, len(ordered))
    return _verdicts(Validity(pipeline, f"{len(authors)} authors: {', '.join(authors)}", failures=tally),
                     comparisons, kinds, aspects)


def perturbations(pairs: list[tuple[str, str]], seed: int = 0) -> list[dict[str, str]]:
    """For each (styled, plain) pair, the degenerate rewrites its true plain version is set against, by check:

    - `true_vs_copy`: the styled passage itself, unchanged;
    - `true_vs_other`: another pair's plain version (a random other pair);
    - `true_vs_truncated`: the first half of the plain version's words;
    - `true_vs_padded`: the plain version with whole sentences of other pairs' plain versions inserted at random
      sentence boundaries until at least PADDING (50%) more words: invented content in the same register;
    - `true_vs_gibberish`: the plain version with its letters shuffled among the letter positions (each keeping
      its position's case), spaces, digits and punctuation left in place: the same length, word lengths, sentence
      lengths and punctuation, and no word;
    - `true_vs_placeholder`: one of PLACEHOLDERS, in turn;
    - `true_vs_template`: TEMPLATE, the same for every pair.

    The same `seed` gives the same rewrites. Needs at least 2 pairs."""
    rng = random.Random(seed)
    others = _derangement(len(pairs), seed)
    split = [sentences(plain) for _, plain in pairs]
    result = []
    for i, (styled, plain) in enumerate(pairs):
        words = plain.split()
        result.append({
            "true_vs_copy": styled,
            "true_vs_other": pairs[others[i]][1],
            "true_vs_truncated": " ".join(words[: max(1, len(words) // 2)]),
            "true_vs_padded": _padded(split[i], [s for j, own in enumerate(split) if j != i for s in own], rng),
            "true_vs_gibberish": _gibberish(plain, rng),
            "true_vs_placeholder": PLACEHOLDERS[i % len(PLACEHOLDERS)],
            "true_vs_template": TEMPLATE,
        })
    return result


def _padded(own: list[str], elsewhere: list[str], rng: random.Random) -> str:
    """`own` sentences with sentences drawn from `elsewhere` inserted at random places, until the added words
    reach PADDING of the own ones."""
    wanted = PADDING * sum(len(s.split()) for s in own)
    text, added = list(own), 0
    while added < wanted:
        sentence = rng.choice(elsewhere)
        text.insert(rng.randint(0, len(text)), sentence)
        added += len(sentence.split())
    return " ".join(text)


def _gibberish(text: str, rng: random.Random) -> str:
    """`text` with its letters shuffled among the letter positions, each taking the case of its position."""
    letters = [c.lower() for c in text if c.isalpha()]
    rng.shuffle(letters)
    shuffled = iter(letters)
    return "".join((next(shuffled).upper() if c.isupper() else next(shuffled)) if c.isalpha() else c for c in text)


def _derangement(n: int, seed: int) -> list[int]:
    """For each pair, another pair's index (never its own), drawn at random."""
    rng = random.Random(seed)
    return [(i + rng.randrange(1, n)) % n for i in range(n)]


def _verdicts(result: Validity, comparisons: dict[tuple[str, str], _Comparison], kinds: dict[str, str],
              aspects: dict[str, str]) -> Validity:
    for (name, check), comparison in comparisons.items():
        result.figures.setdefault(name, {})[check] = comparison.figure()
    result.kinds = kinds
    tally = result.failures
    for name, checks in result.figures.items():
        if tally.scored[name] and tally.failed[name] == tally.scored[name]:
            # Every score failed and counted 0: its figures measure nothing, and flags per check would say it
            # prefers a copy or a placeholder when it was never heard.
            kinds_failed = ", ".join(f"{kind} {n}" for kind, n in tally.kinds[name].most_common())
            result.flags.append(f"{name}: every score failed ({kinds_failed}): its figures measure nothing; fix its "
                                "model (an unparseable answer stays in DSPy's cache: rename the model or clear the "
                                "cache before checking again)")
            continue
        for check, figure in checks.items():
            if figure.accuracy <= 0.5:
                result.flags.append(f"{name} {check}: {LOSES[check]} (accuracy {figure.accuracy:.2f}, n {figure.n})")
            elif figure.low <= 0.5:
                result.flags.append(f"{name} {check}: not surely better than chance (accuracy {figure.accuracy:.2f}, "
                                    f"95% interval {figure.low:.2f}-{figure.high:.2f})")
            if kinds.get(name) != "judge":
                continue
            offline = [(result.figures[o][check].accuracy, o) for o, kind in kinds.items()
                       if kind == "offline" and aspects.get(o) == aspects.get(name) and check in result.figures[o]]
            best = max(offline, default=None)
            if best and figure.accuracy < best[0]:
                result.flags.append(f"{name} {check}: worse than the offline {best[1]} (accuracy "
                                    f"{figure.accuracy:.2f} against {best[0]:.2f})")
    return result
