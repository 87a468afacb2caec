"""The demos a compiled program keeps: the optimizer's own, kept only when a person would agree with them
(`DemoCheck`), and the human-labeled ones of a reviewed dev set, which go first (`labeled_demos`,
`with_labeled_demos`).

A bootstrapped demo is kept only when the run that made it dropped no candidate (the pipeline's own checks, see
programs/factual_qa.py) and each of its samples reaches the pass mark alone; the candidates rejected are counted by
reason. A dev set made from a reviewed run (`datagen devset --from-review`) carries human-labeled demos: those of
its train items go first among each predictor's demos once the optimizer has compiled.
"""

import logging
import threading
from collections import Counter

import dspy

from datagen.dataset import DevItem
from datagen.errors import DatagenError
from datagen.metrics import Composite
from datagen.runs import drop_reason
from datagen.workspace import demo_fault

log = logging.getLogger(__name__)

# Demos a bootstrapped program keeps per predictor: enough to show a style, few enough for a small context.
MAX_DEMOS = 3


class DemoCheck:
    """The metric an optimizer gets: `metric` as it is where it scores a program, and, where it asks for a verdict
    on a candidate demo (a trace is given: bootstrapping), a verdict a person would agree with: the run that made
    the candidate dropped no candidate of its own (the pipeline's checks: placeholder, copy, gibberish...), made
    samples, and each sample reaches the pass mark alone (a datagen `Composite`: its threshold; any other metric:
    its own verdict on the prediction). Rejected candidates are counted by reason in `rejected`
    ("dropped: REASON", "no samples", "below the pass mark"), accepted ones in `accepted`."""

    def __init__(self, metric):
        self.metric = metric
        self.rejected: Counter = Counter()
        self.accepted = 0
        self._lock = threading.Lock()

    def __call__(self, example, prediction, trace=None):
        if trace is None:
            return self.metric(example, prediction)
        reason = self.rejection(example, prediction, trace)
        with self._lock:
            if reason:
                self.rejected[reason] += 1
            else:
                self.accepted += 1
        return reason is None

    def rejection(self, example, prediction, trace) -> str | None:
        """Why the candidate demos of `prediction` are not to be kept; None to keep them."""
        dropped = Counter(drop_reason(d) for d in (prediction.get("dropped") or ()))
        if dropped:
            return f"dropped: {dropped.most_common(1)[0][0]}"
        samples = list(getattr(prediction, "samples", None) or [])
        if not samples:
            return "no samples"
        if isinstance(self.metric, Composite):
            passes = all(self.metric.score_sample(example.chunk, sample)[0] >= self.metric.threshold
                         for sample in samples)
        else:
            passes = bool(self.metric(example, prediction, trace))
        return None if passes else "below the pass mark"

    def gepa(self, gold, pred, trace=None, pred_name=None, pred_trace=None):
        """GEPA's five-argument form: the metric's own when it has one (datagen's Composite does), else its value."""
        if hasattr(self.metric, "gepa"):
            return self.metric.gepa(gold, pred, trace, pred_name, pred_trace)
        return float(self.metric(gold, pred, trace))


def labeled_demos(items: list[DevItem], program: dspy.Module) -> dict[str, list[dspy.Example]]:
    """The human-labeled demos of dev items (their `demos` reference, {predictor name: {field: value}}, as
    `datagen devset --from-review` writes it), by predictor name in dev set order: each a dspy.Example of the
    fields the predictor's signature has, as DSPy keeps a labeled demo; one lacking an output field, or every
    input field, of the signature is left out, with a warning (DSPy would not show it whole, and a compiled program
    holding it would be refused: `datagen.workspace.demo_fault`). Give only the items demos may come from (train:
    val items stay held out). Raises DatagenError for a predictor the program does not have, or a malformed
    entry."""
    predictors = dict(program.named_predictors())
    found: dict[str, list[dspy.Example]] = {}
    left_out: dict[str, tuple[int, str]] = {}  # by predictor: how many, and the first's source and fault
    for item in items:
        demos = item.references.get("demos")
        if demos is None:
            continue
        if not isinstance(demos, dict):
            raise DatagenError(f"dev item from {item.chunk.source}: \"demos\" must be an object "
                               "{predictor name: {field: value}}")
        for name, fields in demos.items():
            if name not in predictors:
                raise DatagenError(f"the dev set has demos for predictor {name!r}, which the program does not have "
                                   f"(its predictors: {', '.join(predictors) or 'none'}); was the run made with "
                                   "other pipeline options?")
            if not isinstance(fields, dict):
                raise DatagenError(f"dev item from {item.chunk.source}: the demo of {name!r} must be an object "
                                   "{field: value}")
            signature = predictors[name].signature
            kept = {key: value for key, value in fields.items() if key in signature.fields}
            fault = demo_fault(kept, list(signature.input_fields), list(signature.output_fields))
            if fault:
                count, first = left_out.get(name, (0, f"from {item.chunk.source}: {fault}"))
                left_out[name] = (count + 1, first)
            else:
                found.setdefault(name, []).append(dspy.Example(**kept))
    for name, (count, first) in left_out.items():
        log.warning("%d labeled demo(s) of predictor %r left out, DSPy would not show them whole (the first %s)",
                    count, name, first)
    return found


def with_labeled_demos(program: dspy.Module, labeled: dict[str, list[dspy.Example]],
                       cap: int = MAX_DEMOS) -> dict[str, int]:
    """Put the `labeled` demos (see `labeled_demos`) first among each named predictor's demos, the program's own
    after them, at most `cap` in all; predictors the program lacks are passed over. Changes `program` in place and
    returns how many labeled demos each predictor got ({} when none)."""
    used: dict[str, int] = {}
    for name, predictor in program.named_predictors():
        human = labeled.get(name, [])[:cap]
        if human:
            predictor.demos = [*human, *(demo for demo in predictor.demos if demo not in human)][:cap]
            used[name] = len(human)
    return used


def count_labeled(program: dspy.Module, labeled: dict[str, list[dspy.Example]]) -> dict[str, int]:
    """How many of each predictor's demos are labeled ones (for the manifest)."""
    return {name: count for name, predictor in program.named_predictors()
            if (count := sum(demo in labeled.get(name, ()) for demo in predictor.demos))}
