"""Scoring samples with a pipeline's metrics, chosen by convention in the workspace's metrics/PIPELINE.py.

That module names its metrics and how to build each from a `MetricContext` (`METRICS`), and the weights and
pass mark of its composite (`WEIGHTS`, `THRESHOLD`), which `[metrics.PIPELINE]` in datagen.toml may override, and
the diversity bar its samples are held to (`DIVERSITY_BAR`, see `diversity_bar`).
A scorer builds only the metrics asked for, so gating on an offline metric loads no judge model.

A metric that fails on a sample (its judge call failed, or its answer was cut off at max_tokens) costs only its own
score: the sample gets a `Failed` score for it, kind `judge_<metric>_<kind>` (e.g. `judge_content_truncated`), and
keeps the other metrics' scores. A failed score counts as 0 wherever values are averaged: in the composite (so a
composite with a failed part is a lower bound of the one the judge would have given, and a sample that reaches a
`--min-score composite=` bar with it would reach it anyway), and in evaluate's and optimize's means. The run store
keeps no failed score, so a gate on the failed metric itself holds the sample back
(`datagen.dataset.export.passes`). Errors no other sample would escape (a bad key, an unknown model, nothing
listening) are raised, to fail the chunk.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

from datagen.dataset.quality import DiversityBar
from datagen.errors import DatagenError
from datagen.lm import UNRECOVERABLE, RoleModel, failure_kind, first_line, judge_model, truncations
from datagen.metrics.base import Failed, Score
from datagen.metrics.composite import Composite
from datagen.samples import Sample
from datagen.workspace import Config, load_metric_suite, metric_suite_file

COMPOSITE = "composite"


def measure(metric, chunk: str, sample: Sample, *answer: str) -> Score:
    """`metric`'s score of `sample` (of `answer` to it, for a model metric: datagen.metrics.answers), or a `Failed`
    one when its call raised or its judge's answer was cut off at max_tokens (DSPy parses a cut-off answer as if it
    were whole). Raises what no other sample would escape (see datagen.lm.failures.UNRECOVERABLE) and what is not an
    Exception (Ctrl-C, the optimizer's call cap)."""

    prefix = f"{'judge' if getattr(metric, 'kind', None) == 'judge' else 'metric'}_{metric.name}_"
    cut = truncations()
    try:
        score = metric(chunk, sample, *answer)
    except Exception as exc:
        kind = failure_kind(exc)
        if kind in UNRECOVERABLE:
            raise
        score = Failed(0.0, first_line(exc), prefix + kind)
    if truncations() > cut:
        return Failed(0.0, "the judge's answer was cut off at max_tokens (finish_reason length): raise the judge "
                           "model's max_tokens", prefix + "truncated")
    return score


class _Measured(Composite):
    """The composite, each part measured by `measure`: a part that fails counts 0 in it, rather than failing it
    (what an optimizer calling the composite as its metric gets too)."""

    def score_sample(self, chunk: str, sample: Sample) -> tuple[float, dict[str, Score]]:
        scores = {metric.name: measure(metric, chunk, sample) for metric in self.metrics}
        return self.combine(scores), scores


@dataclass
class MetricContext:
    """What a metric may need, handed to each of a metrics module's `METRICS` factories.

    Attributes:
        workspace: the workspace folder.
        config: the workspace's configuration (the judge role's model, `[metrics.PIPELINE]`).
        corpus: the author's passages, for style references and stylometry.
        background: other texts to tell the author apart from, besides the workspace's own plain-prose background
            (e.g. other authors); default [].
        judge: the judge model (a `RoleModel` of the config's judge role), built on first use and kept.
        _shared: internal, not to be set or read: the objects several metrics share, kept by `shared` (a place to
            keep what several metrics share); default {}, left out of the repr.
    """

    workspace: Path
    config: Config
    corpus: list[str]
    background: list[str] = field(default_factory=list)
    _shared: dict = field(default_factory=dict, repr=False)

    @cached_property
    def judge(self) -> RoleModel:
        return judge_model(self.config)

    def shared(self, key: str, make: Callable[[], object]):
        """One object per context for `key` (e.g. a style classifier fitted once for two metrics)."""
        if key not in self._shared:
            self._shared[key] = make()
        return self._shared[key]


class Scorer:
    """Scores samples with the named metrics of a pipeline, `composite` included when asked for.

    A scorer builds only the metrics asked for (and, with the composite, those it weighs), from the pipeline's
    metrics module, metrics/PIPELINE.py (the workspace's, else the built-in one).

    Attributes:
        weights: the composite's weights, {metric name: weight}, as chosen (see `__init__`).
        names: the metrics asked for, `composite` included when it was.
        context: the `MetricContext` the metrics were built from.
        metrics: the metrics built, in order.
        kinds: {metric name: "judge", "offline" or "composite"}.
        composite: the composite metric (a part that fails counts 0 in it), or None when not asked for.
    """

    def __init__(self, pipeline: str, context: MetricContext, names: Iterable[str] | None = None,
                 weights: dict[str, float] | None = None, parts: Iterable[str] | None = None):
        """Build the pipeline's metrics asked for, and its composite when asked for.

        Args:
            pipeline: the pipeline's name, whose metrics/PIPELINE.py is loaded.
            context: what the metrics are built from (the workspace and config among it).
            names: the metrics to build; default None: all, and the composite.
            weights: the composite's, {metric name: weight}, instead of the config's `[metrics.PIPELINE]` or the
                suite's `WEIGHTS`; default None.
            parts: only these of the composite's weighted metrics make it, with their weights (the composite
                divides by their sum), as `--metric` chooses them; default None: all it weighs.

        Raises:
            DatagenError: the pipeline has no metrics module; `names` or `parts` names an unknown metric; a part
                does not count in the composite; a weight names no metric of the suite; or the weights are
                negative or all zero.
            Exception: whatever a metric's factory raises while building it, as it is.
        """
        suite = load_metric_suite(pipeline, context.workspace)
        settings = context.config.metrics.get(pipeline)
        declared, default_weights = self._declared(pipeline, suite)
        weights = weights or (settings and getattr(settings, self.weights_setting)) or default_weights
        threshold = settings.threshold if settings and settings.threshold is not None else suite.THRESHOLD
        available = [*declared, COMPOSITE]
        names = list(dict.fromkeys(names or available))
        for name in [*names, *(parts or ())]:
            if name not in available:
                raise DatagenError(f"pipeline {pipeline!r} has no metric {name!r} (metrics: {', '.join(available)})")
        if parts is not None:
            counted = ", ".join(f"{name} {weight:g}" for name, weight in weights.items() if weight)
            for name in parts:
                if not weights.get(name):
                    raise DatagenError(f"metric {name!r} does not count in {pipeline}'s composite (weights: "
                                       f"{counted}); give it a weight in [metrics.{pipeline}] {self.weights_setting}")
            weights = {name: weight for name, weight in weights.items() if name in parts}
        self.weights = dict(weights)
        wanted = [n for n in names if n != COMPOSITE]
        if COMPOSITE in names:
            missing = sorted(set(weights) - set(declared))
            if missing:
                raise DatagenError(f"metric weight {missing[0]!r}: pipeline {pipeline!r} has no such metric "
                                   f"(metrics: {', '.join(declared)})")
            wanted += [n for n in weights if weights[n] and n not in wanted]
        self.names = names
        self.context = context
        self.metrics = [declared[name](context) for name in wanted]
        self.kinds = {metric.name: metric.kind for metric in self.metrics}
        self.composite = None
        if COMPOSITE in names:
            self.composite = _Measured(self.metrics, weights, threshold)
            self.kinds[COMPOSITE] = "composite"

    def score(self, chunk: str, sample: Sample) -> dict:
        """Score one sample with the metrics built.

        Args:
            chunk: the text of the chunk the sample was made from.
            sample: the sample to score.

        Returns:
            {metric name: Score}: the metrics asked for, and the composite's parts when it was, with the composite
            itself (its feedback names its weights and the parts that failed); a metric that failed on it has a
            `Failed` score (see the module's docstring).

        Raises:
            Exception: what no other sample would escape (see datagen.lm.failures.UNRECOVERABLE: a key refused, an
                unknown model, nothing listening), as `measure` raises it.
            BaseException: what is not an Exception (Ctrl-C, the optimizer's call cap), as it is.
        """
        return self._scores(chunk, sample)

    # The metrics module's declarations this scorer reads, and the `[metrics.PIPELINE]` setting overriding them.
    weights_setting = "weights"

    def _declared(self, pipeline: str, suite) -> tuple[dict, dict[str, float]]:
        """The suite's metric factories ({name: factory}) and its composite's weights."""
        return suite.METRICS, suite.WEIGHTS

    def _scores(self, chunk: str, sample: Sample, *answer: str) -> dict:
        scores = {metric.name: measure(metric, chunk, sample, *answer) for metric in self.metrics}
        if self.composite is not None:
            failed = [name for name in self.composite.weights if isinstance(scores[name], Failed)]
            scores[COMPOSITE] = Score(self.composite.combine(scores), "weighted mean of " + ", ".join(
                f"{name} x{weight:g}" for name, weight in self.composite.weights.items()) + (
                f"; {', '.join(failed)} failed, counted as 0" if failed else ""))
        return scores


class AnswerScorer(Scorer):
    """Scores a model's answers to held-out samples with a pipeline's model metrics (datagen.metrics.answers).

    A `Scorer` of the metrics module's `MODEL_METRICS`, weighed by `[metrics.PIPELINE] model_weights` in
    datagen.toml, else the module's `MODEL_WEIGHTS`; built the same way (see `Scorer.__init__`), from a context
    whose corpus is the run's training split.

    Raises:
        DatagenError: as `Scorer` does, and when metrics/PIPELINE.py declares no `MODEL_METRICS` and
            `MODEL_WEIGHTS`.
    """

    weights_setting = "model_weights"

    def _declared(self, pipeline: str, suite) -> tuple[dict, dict[str, float]]:
        declared, weights = getattr(suite, "MODEL_METRICS", None), getattr(suite, "MODEL_WEIGHTS", None)
        if not isinstance(declared, dict) or not isinstance(weights, dict):
            raise DatagenError(f"metrics/{pipeline}.py declares no model metrics: add MODEL_METRICS and "
                               "MODEL_WEIGHTS to it (see the built-in metrics/style_clone.py and docs/eval-model.md)")
        return declared, weights

    def score(self, chunk: str, reference: Sample, answer: str) -> dict:
        """Score a model's answer to a held-out sample.

        Args:
            chunk: the text of the chunk the sample was made from.
            reference: the held-out sample (its input is what the model was given; its output, the reference).
            answer: the model's answer.

        Returns:
            {metric name: Score}, as `Scorer.score` gives them.

        Raises:
            Exception: as `Scorer.score` raises.
        """
        return self._scores(chunk, reference, answer)


def scorer_for(pipeline: str, context: MetricContext, metrics: list[str] | None,
               kind: type[Scorer] = Scorer) -> Scorer:
    """The scorer for `metrics` as `--metric` names them (None: every metric and the composite): a `kind`, Scorer
    (the data metrics, the default) or AnswerScorer (the model metrics). With the
    composite and metrics that count in it, the composite is made of those alone (their configured weights,
    renormalised), as `optimize --metric` makes it; with the composite alone, or beside metrics that do not count
    in it (chrf), it is the configured one. Raises DatagenError for an unknown metric."""
    if not metrics or COMPOSITE not in metrics:
        return kind(pipeline, context, metrics)
    weighted = kind(pipeline, context, [COMPOSITE]).weights if len(set(metrics)) > 1 else {}
    parts = [name for name in metrics if weighted.get(name)]
    return kind(pipeline, context, metrics, parts=parts or None)


def diversity_bar(pipeline: str, workspace: Path, config: Config) -> DiversityBar | None:
    """The diversity bar of a pipeline's samples (reported by `datagen evaluate` and `datagen optimize`): its
    metrics module's `DIVERSITY_BAR`, with the keys `[metrics.PIPELINE.diversity_bar]` of datagen.toml sets over
    it (over `DiversityBar()`'s defaults when the module declares none).

    Args:
        pipeline: the pipeline's name, whose metrics/PIPELINE.py is read (the workspace's, else the built-in one).
        workspace: the workspace.
        config: its configuration.

    Returns:
        The bar; None when neither the module (a pipeline without one declares none) nor datagen.toml declares
        one, or when the bar holds nothing (`fields = []`, or neither an opening share nor a distinct-2).

    Raises:
        DatagenError: the module's DIVERSITY_BAR is not a DiversityBar.
        ConfigError: the override makes a bar out of range (see DiversityBar).
    """
    file = metric_suite_file(pipeline, workspace)
    declared = getattr(load_metric_suite(pipeline, workspace), "DIVERSITY_BAR", None) if file else None
    if declared is not None and not isinstance(declared, DiversityBar):
        raise DatagenError(f"{file}: DIVERSITY_BAR must be a datagen.DiversityBar, not {type(declared).__name__}")
    settings = config.metrics.get(pipeline)
    override = settings.diversity_bar.model_dump(exclude_none=True) if settings and settings.diversity_bar else {}
    bar = replace(declared or DiversityBar(), **override) if override else declared
    return None if bar is None or bar.empty else bar


def review_criteria(pipeline: str, workspace: Path) -> dict[str, str]:
    """What a person rates a pipeline's samples on from 1 to 5 (`datagen view`): its metrics module's `CRITERIA`,
    {name: what a 5 means}, each named after the metric that measures it; {} for a module without them. Raises
    DatagenError when the pipeline has no metrics module."""
    criteria = getattr(load_metric_suite(pipeline, workspace), "CRITERIA", None) or {}
    if not isinstance(criteria, dict) or not all(isinstance(key, str) and isinstance(value, str)
                                                 for key, value in criteria.items()):
        raise DatagenError(f"metrics/{pipeline}.py: CRITERIA must map criterion names to what a 5 means (text)")
    return dict(criteria)


def parse_thresholds(pairs: Iterable[str]) -> dict[str, float]:
    """--min-score METRIC=VALUE pairs, VALUE in [0, 1]."""
    thresholds = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        try:
            bar = float(value)
        except ValueError:
            bar = -1.0
        if not sep or not name or not 0 <= bar <= 1:
            raise DatagenError(f"--min-score {pair!r}: expected METRIC=VALUE with VALUE between 0 and 1")
        thresholds[name] = bar
    return thresholds
