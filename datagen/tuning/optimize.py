"""Optimizing a program against a small dev set: DSPy optimizers climbing a metric, a pipeline's composite or one
of the caller's.

The dev set's train items are what the optimizer learns from; its val items are held out, and the program is
scored on them before and after with the same metric and judge, so the gain is measured rather than assumed.
A dev set made from a reviewed run (`datagen devset --from-review`) carries human-labeled demos: those of its
train items go first among each predictor's demos once the optimizer has compiled (datagen.tuning.demos).
Every LM request of every role counts against `max_calls` (datagen.tuning.budget); the request that would pass it
is refused before it is sent. The tokens each request spent are priced as they come back, and the request that
would start once they have reached `max_cost` is refused. Before any, the run's spend is estimated in requests and
dollars (datagen.tuning.estimate).

Every held-out item counts in the held-out means (datagen.tuning.evaluate): an item the program failed on counts 0,
so a compiled program that makes a sample for every item is not read as worse than one that made a sample for one.
A part of the composite that failed on an item (a judge call whose answer did not parse) counts 0 in it without
failing the item: the held-out line and the manifest name such parts (`held_out_line`), so that a score dragged down
by a judge that could not answer is not read as the program's. A bootstrapped demo is kept only when a person would
agree with it (`datagen.tuning.demos.DemoCheck`); the candidates rejected are counted by reason in the result and
the manifest.

Each optimizer datagen offers is one `Preset` (datagen.tuning.presets).
"""

import contextlib
import hashlib
import importlib.util
import io
import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dspy

from datagen.dataset import DevItem, read_devset
from datagen.errors import ConfigError, DatagenError
from datagen.lm import RoleModel, check_reachable, role_model, task_model, track_usage
from datagen.metrics import COMPOSITE, MetricContext, Scorer, diversity_bar
from datagen.runs import Price, bound_answers, program_fingerprint, run_prices
from datagen.tuning.budget import CallBudgetExhausted, CallCounter
from datagen.tuning.demos import MAX_DEMOS, DemoCheck, count_labeled, labeled_demos, with_labeled_demos
from datagen.tuning.diversity_report import bar_line
from datagen.tuning.estimate import Estimate, budget_warning, estimate, role_tokens
from datagen.tuning.evaluate import DSPyMetric, Evaluator, MetricScorer, dev_label
from datagen.tuning.presets import PRESETS, check_optimizers, check_train_size, least_calls, role_calls
from datagen.tuning.report import failure_kinds, parts_failed_text, write_report
from datagen.util import replacing
from datagen.workspace import (Config, code_fingerprint, evaluation_path, find_workspace, load_config,
                               resolve_program, save_compiled)
from datagen.workspace.compiled import report_path

log = logging.getLogger(__name__)

# DSPy's `max_errors` for a compile: failed candidate runs never stop one (see Session.compile).
UNLIMITED_ERRORS = 2**31


def _require_optuna(optimizers) -> None:
    """MIPROv2 imports optuna only at its third step, after spending LM calls: check before the first."""
    if "mipro" in optimizers and importlib.util.find_spec("optuna") is None:
        raise DatagenError("the mipro optimizer needs optuna: pip install 'optuna>=4,<5'")


@dataclass
class Result:
    """What an optimize run did: the compiled state file (None when stopped, or not saved), the held-out
    evaluations `before` and `after` compiling (datagen.tuning.evaluate's records), the LM requests sent by role
    (`calls`) and the calls answered from DSPy's cache (`cached`), the estimate made before (an `Estimate`: an int,
    the LM requests, with their dollars), the US dollars spent (`spent`; None when a model has no price), why it
    stopped, tokens
    by model name, the report, the bootstrapped `demos`: {"kept": {predictor: demos}, "rejected": {reason:
    candidates}}, and the compiled `program` itself."""

    state: Path | None
    before: dict
    after: dict | None
    calls: Counter
    estimate: int
    stopped: str | None = None
    usage: Counter = field(default_factory=Counter)  # tokens by model name
    report: Path | None = None
    cached: Counter = field(default_factory=Counter)
    demos: dict = field(default_factory=dict)
    program: dspy.Module | None = None
    spent: float | None = None


def dev_hash(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class _LogLines(io.TextIOBase):
    """Where optimizers' print() goes: debug log lines (shown by `datagen -v`), so stdout carries only results."""

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                log.debug("%s", line)
        return len(text)


class Session:
    """What every compile and held-out score of one optimize (or search) run shares: the dev set's splits, the
    models by role, the metric climbed, one call counter over every role, so `max_calls` caps the whole run, and
    the candidate demos rejected, by reason.

    Args:
        program: a pipeline's name, or a dspy.Module (compiled as it is: give a copy to keep the original).
        dev: a dev.jsonl file, or its items; it needs items in both splits (items without a split count as train).
        optimizers: the optimizers the run may use (see `PRESETS`).
        metric: a DSPy-convention metric to climb; default: the named pipeline's composite (of `metrics` alone when
            given: see Scorer's `parts`), judged by `judge`.
        workspace: the workspace; default: found from the current folder.
        config: its configuration; default: its datagen.toml.
        options: a named pipeline's options.
        max_calls: the cap on LM requests, every role's.
        max_cost: the cap on US dollars spent, every role's tokens priced as they come (see `CallCounter`).
        model: the task model; default: the LM dspy is configured with, else the task role's.
        judge: the judges' model; default: the judge role's.
        prompt: the model a proposing optimizer asks for instructions; default: the prompt role's.
        metrics: the composite's parts, by name.

    Raises:
        ConfigError: `max_cost` while a role's model has no price, or under 0.
        DatagenError: an unknown optimizer or metric, mipro without optuna, `max_calls` under 1, a dev set lacking
            a split or with demos for a predictor the program lacks, a named pipeline's diversity bar that is not
            a DiversityBar or out of range (see `datagen.metrics.diversity_bar`).
        ModelUnreachable: a model's server does not answer.
    """

    def __init__(self, program: "str | dspy.Module", dev: str | Path | list[DevItem], optimizers, *,
                 metric: DSPyMetric | None = None, workspace: Path | None = None, config: Config | None = None,
                 options: dict | None = None, max_calls: int | None = None, model: RoleModel | None = None,
                 judge: RoleModel | None = None, prompt: RoleModel | None = None, metrics: list[str] | None = None,
                 max_cost: float | None = None):
        check_optimizers(optimizers)
        if max_calls is not None and max_calls < 1:
            raise DatagenError(f"--max-calls must be at least 1, got {max_calls}")
        if max_cost is not None and not max_cost >= 0:
            raise ConfigError(f"--max-cost must be 0 or more US dollars, got {max_cost}")
        _require_optuna(optimizers)
        self.workspace = workspace or find_workspace()
        self.config = config or load_config(self.workspace)
        self.pipeline, self.program = resolve_program(program, self.workspace, options)
        self.dev, self.options = dev, options or {}
        named = isinstance(dev, (str, Path))
        self.items = read_devset(dev) if named else list(dev)
        self.train = [item for item in self.items if item.split != "val"]
        self.val = [item for item in self.items if item.split == "val"]
        if not self.train or not self.val:
            raise DatagenError(f"{dev if named else 'the dev set'}: needs items in both splits (\"split\": \"train\" "
                               "and \"val\"); datagen devset makes such a file")
        check_train_size(optimizers, len(self.train), dev if named else "the dev set")
        labeled_demos(self.val, self.program)  # checked, never used: val items stay held out
        self.labeled = labeled_demos(self.train, self.program)  # human-labeled demos (devset --from-review)
        self.model = bound_answers(self.program, task_model(self.config, model), self.config.chunking.max_tokens,
                                   [item.chunk for item in self.items])
        if metric is None:
            context = MetricContext(self.workspace, self.config, corpus=[item.chunk.text for item in self.items])
            if judge is not None:
                context.judge = judge
            # "composite" among the parts names the configured composite itself, as `evaluate --metric` takes it.
            parts = [name for name in metrics or () if name != COMPOSITE]
            self.scorer = Scorer(self.pipeline, context, [COMPOSITE], parts=parts or None)
        else:
            self.scorer = MetricScorer(metric)
        self.climbed = self.scorer.composite if metric is None else metric  # what the optimizers' DemoCheck is given
        self.prompt = None
        if any(PRESETS[name].proposing for name in optimizers):
            self.prompt = prompt or role_model(self.config, "prompt")
            check_reachable(self.prompt)
        check_reachable(self.model)
        judged = [m for m in self.scorer.metrics if m.kind == "judge"] if metric is None else []
        self.judge = self.scorer.context.judge if judged else None
        if self.judge:
            check_reachable(self.judge)
        self.judged, self.judges = len(judged), judged
        self.per_example = len(self.program.named_predictors()) + self.judged
        # A named pipeline's diversity bar, checked on the held-out predictions before and after (a program object
        # has no metrics module to declare one).
        bar = diversity_bar(self.pipeline, self.workspace, self.config) if isinstance(program, str) else None
        self.evaluator = Evaluator(self.pipeline, self.items, self.scorer, self.config, dev=f"{dev_label(dev)} (val)",
                                   split="val", bar=bar)
        self.counter = CallCounter(max_calls, max_cost)
        self.models = self._priced(max_cost is not None)  # {role: (model name, Price or None)}
        for role, role_model_ in (("task", self.model), ("judge", self.judge), ("prompt", self.prompt)):
            if role_model_:
                self.counter.add(role, role_model_.lm, self.models[role][1])
        self.usage: Counter = Counter()  # tokens (prompt + completion) by model name
        self.rejected: Counter = Counter()  # candidate demos not kept, by reason (DemoCheck), every compile's

    def _priced(self, capped: bool) -> dict[str, tuple[str, Price | None]]:
        """The model and price of each role the run calls; with a cost cap, a model without a price is refused."""
        roles = {role: model for role, model in (("task", self.model), ("judge", self.judge),
                                                 ("prompt", self.prompt)) if model}
        prices = run_prices({model.name for model in roles.values()}, self.config)
        for role, model in roles.items():
            if capped and prices[model.name] is None:
                raise ConfigError(f"--max-cost needs the price of {model.name}: set input_price and output_price "
                                  f"(US dollars per million tokens) in [models.{role}] of datagen.toml")
        return {role: (model.name, prices[model.name]) for role, model in roles.items()}

    def estimate(self, calls: Counter, optimizers) -> Estimate:
        """The Estimate of `calls` by role: tokens read from the program's prompts on the dev set, dollars at the
        roles' prices, and a warning when a cap leaves the first of `optimizers` that cannot do what it is for too
        few requests (held-out scoring before and after counted)."""
        tokens = role_tokens(self.program, self.model, self.judges, self.judge, self.prompt,
                             [item.chunk.text for item in self.items])
        reading = estimate(calls, tokens, self.models)
        for name in optimizers:
            least = least_calls(name, len(self.train), len(self.val), self.per_example, judged=self.judged)
            warning = budget_warning(name, PRESETS[name].purpose, least, self.counter.limit, self.counter.max_cost,
                                     reading.per_call())
            if warning:
                return Estimate(reading.roles, warning)
        return reading

    def spent(self) -> float | None:
        """US dollars spent so far, every role's; None when a model without a price spent tokens."""
        return None if self.counter.unpriced_tokens else self.counter.spent

    def counting(self):
        """Every DSPy call inside counts against the cap (the caller's own callbacks kept)."""
        return dspy.context(callbacks=[*dspy.settings.get("callbacks", []), self.counter])

    def task_model(self, **settings) -> RoleModel:
        """The task model with other settings (e.g. temperature), its calls counted as the task role's."""
        if not settings:
            return self.model
        model = self.model.with_settings(**settings)
        self.counter.add("task", model.lm)
        return model

    def held_out(self, program: dspy.Module, label: str, *, items=None, model: RoleModel | None = None) -> dict:
        """The program's score on the val items (or `items`) by the session's metric: the one the optimizer climbs,
        its style metrics fitted once on the whole dev set (a score must not depend on how many items the val split
        happens to hold, nor a trial pay for fitting them again). Returns the evaluation record."""
        result = self.evaluator(program, label, model=model or self.model, items=items)
        self._add_usage(result["usage"])
        return result

    def _add_usage(self, by_model: dict) -> None:
        """Add each model's prompt and completion tokens ({model: {"prompt_tokens", ...}}) to `usage`."""
        for lm_name, used in by_model.items():
            self.usage[lm_name] += (used.get("prompt_tokens") or 0) + (used.get("completion_tokens") or 0)

    def compile(self, program: dspy.Module, optimizer: str, *, seed: int = 0, demos: int = MAX_DEMOS,
                train=None, model: RoleModel | None = None) -> dspy.Module:
        """`program` tuned by `optimizer` on the train items (or `train`); tokens spent add to `usage`. The dev
        set's human-labeled demos then go first among each predictor's demos, `demos` in all at most."""
        trainset = [dspy.Example(chunk=item.chunk.text).with_inputs("chunk") for item in train or self.train]
        model = model or self.model
        check = DemoCheck(self.climbed)
        preset = PRESETS[optimizer]
        with track_usage() as tracker:
            try:
                # DSPy's optimizers re-raise a program's error once `max_errors` (default 10) have happened, which
                # ended a real SmolLM2-135M bootstrap with a traceback on its tenth unparseable answer. A failed run
                # is a rejected candidate here, counted below; what no item escapes (a bad key, no server) has
                # already stopped the held-out baseline before any compile.
                with model.context(max_errors=UNLIMITED_ERRORS), contextlib.redirect_stdout(_LogLines()):
                    tuner = preset.build(check, model, self.prompt, seed, demos)
                    compiled = tuner.compile(program, trainset=trainset, **preset.compile_kwargs(trainset, seed))
            finally:  # a compile stopped by a cap has spent tokens too
                self.rejected.update(check.rejected)
                self._add_usage(tracker.get_total_tokens())
        # A candidate whose run raised (an answer that did not parse) never reached the check: DSPy counts those.
        self.rejected["program failed"] += getattr(tuner, "error_count", 0)
        self.rejected += Counter()  # no zero counts
        with_labeled_demos(compiled, self.labeled, demos)
        return compiled

    def demos(self, program: dspy.Module) -> dict:
        """The bootstrapped demos `program` keeps by predictor (human-labeled ones left out), and the candidates
        rejected by reason in this session's compiles: {"kept": {...}, "rejected": {...}}."""
        labeled = count_labeled(program, self.labeled)
        kept = {name: len(predictor.demos) - labeled.get(name, 0) for name, predictor in program.named_predictors()}
        return {"kept": {name: n for name, n in kept.items() if n}, "rejected": dict(self.rejected.most_common())}

    def tune(self, optimizer: str, *, seed: int = 0, demos: int = MAX_DEMOS, estimate: int = 0) -> Result:
        """The program scored on the val items, compiled by `optimizer`, and the compiled one scored: a Result
        with the compiled `program`, nothing saved; with `stopped` set instead when the call cap refused a
        request (`estimate`: the reading made before, kept in the result)."""
        result = Result(None, {}, None, self.counter.by_role, estimate, usage=self.usage, cached=self.counter.cached)
        try:
            with self.counting():
                result.before = self.held_out(self.program, "uncompiled")
                compiled = self.compile(self.program, optimizer, seed=seed, demos=demos)
                result.demos = self.demos(compiled)
                result.after = self.held_out(compiled, f"compiled ({optimizer})")
        except CallBudgetExhausted as exc:
            result.stopped = f"{exc}: stopped, nothing compiled"
            result.demos = result.demos or {"kept": {}, "rejected": dict(self.rejected.most_common())}
            return result
        finally:
            result.spent = self.spent()
        result.program = compiled
        return result

    def save(self, program: dspy.Module, name: str, before: dict, after: dict, settings: dict) -> tuple[Path, Path]:
        """compiled/PIPELINE/NAME.json with its manifest (the held-out scores and diversity bar's verdicts before
        and after among it), and the held-out before/after evaluations beside it: as JSON (NAME.eval.json, for
        datagen view) and as an HTML report."""
        state = save_compiled(program, self.pipeline, name, self.workspace, {
            "options": settings.pop("options", self.options), **settings,
            "models": {"task": self.model.name, "judge": self.judge.name if self.judge else None,
                       "prompt": self.prompt.name if self.prompt else None},
            "program": program_fingerprint(program, self.model), "code": code_fingerprint(program),
            "dev": {"path": str(self.dev), "sha256": dev_hash(self.dev), "train": len(self.train),
                    "val": len(self.val)},
            "scores": {"before": composite_mean(before), "after": composite_mean(after)},
            "held_out": {"before": held_out_line(before), "after": held_out_line(after)},
            "diversity_bar": {"before": bar_line(before), "after": bar_line(after)},  # None: no bar declared
            "metrics": dict(self.scorer.weights),  # the composite's parts and weights
            "labeled_demos": count_labeled(program, self.labeled),  # by predictor: human demos it kept
            "demos": self.demos(program),
            "calls": dict(self.counter.by_role), "cache_hits": dict(self.counter.cached)})
        held_out = {**after, "baseline": before}
        with replacing(evaluation_path(state)) as partial:
            partial.write_text(json.dumps(held_out, ensure_ascii=False, indent=1), encoding="utf-8")
        return state, write_report(held_out, report_path(state))


def optimize_pipeline(pipeline: str, dev: str | Path, optimizer: str = "bootstrap", *, name: str | None = None,
                      workspace: Path | None = None, config: Config | None = None, options: dict | None = None,
                      max_calls: int | None = None, seed: int = 0, model: RoleModel | None = None,
                      judge: RoleModel | None = None, prompt: RoleModel | None = None,
                      on_estimate: Callable[[Estimate], None] | None = None,
                      metrics: list[str] | None = None, max_cost: float | None = None) -> Result:
    """Compile a named pipeline against its composite and save it (`datagen optimize`).

    The pipeline is compiled by `optimizer` on the dev set's train items, scored before and after on its val
    items, and saved to compiled/PIPELINE/NAME.json with its manifest, and an HTML report of both scores, beside it.

    Args:
        pipeline: the pipeline's name.
        dev: a dev.jsonl file with items in both splits.
        optimizer: one of `datagen.tuning.presets.OPTIMIZERS`.
        name: the compiled program's NAME; default: the optimizer's.
        workspace: the workspace; default: found from the current folder.
        config: its configuration; default: its datagen.toml.
        options: the pipeline's options.
        max_calls: the cap on LM requests, every role's; the one that would pass it is refused and nothing saved.
        seed: the optimizer's seed.
        model: the task model; default: the LM dspy is configured with, else the task role's.
        judge: the judges' model; default: the judge role's.
        prompt: the model a proposing optimizer asks for instructions; default: the prompt role's.
        on_estimate: called before any LM call with the `Estimate`: an int, the LM requests (every role's,
            held-out scoring included), with their split by role, tokens, dollars (`cost`, None when a price is
            unknown) and `warning` (a cap too small for the optimizer to do what it is for; the run goes on).
        metrics: the composite's parts (default: every metric weighted in it), their configured weights
            renormalised, e.g. the offline ones alone when no capable judge is at hand; "composite" names the
            configured composite (as `evaluate --metric composite` does).
        max_cost: the cap on US dollars spent, every role's; the request that would start once the spend has
            reached it is refused and nothing saved. Every role's model needs a price.

    Returns:
        The Result, with the state and report saved unless it `stopped`.

    Raises:
        DatagenError: see `Session`; also an unknown metric, or one that does not count in the composite.
    """
    session = Session(pipeline, dev, [optimizer], workspace=workspace, config=config, options=options,
                      max_calls=max_calls, model=model, judge=judge, prompt=prompt, metrics=metrics,
                      max_cost=max_cost)
    reading = session.estimate(role_calls(optimizer, len(session.train), len(session.val), session.per_example,
                                          judged=session.judged), [optimizer])
    if on_estimate:
        on_estimate(reading)
    result = session.tune(optimizer, seed=seed, estimate=reading)
    if result.stopped:
        cap, was = (("--max-cost", f"${reading.cost:.4f}") if "--max-cost" in result.stopped and reading.cost
                    is not None else ("--max-calls", f"{int(reading)} requests"))
        result.stopped += f" (raise {cap}; the estimate was {was})"
        return result
    result.state, result.report = session.save(result.program, name or optimizer, result.before, result.after, {
        "optimizer": optimizer, "seed": seed, "max_calls": max_calls, "max_cost": max_cost})
    return result


def composite_mean(evaluation: dict) -> float | None:
    return evaluation["metrics"][COMPOSITE]["mean"]


def held_out_line(evaluation: dict) -> str:
    """An evaluation's composite with its count, e.g. "0.130 (n 4, 3 failed: parse 2, dropped 1)", and the parts
    that failed on items, which count 0 in it without failing the item, e.g. "0.581 (n 2, 0 failed; parts failed,
    counted 0: content 2, genericness 2)"."""
    summary = evaluation["metrics"][COMPOSITE]
    mean = "-" if summary["mean"] is None else f"{summary['mean']:.3f}"
    kinds, parts = failure_kinds(summary), parts_failed_text(summary)
    return (f"{mean} (n {summary['n']}, {summary['failed']} failed{': ' + kinds if kinds else ''}"
            f"{'; ' + parts if parts else ''})")


def comparison(before: dict, after: dict) -> tuple[str, bool]:
    """The held-out comparison in words, and whether the compiled program is better: its composite mean over the
    same val items (each failed item counting 0 in both) is higher. E.g. ("before 0.130 (n 4, 3 failed: parse 3)
    -> after 0.540 (n 4, 0 failed): better", True)."""
    old, new = composite_mean(before), composite_mean(after)
    better = old is not None and new is not None and new > old
    verdict = "better" if better else ("the same" if new is not None and new == old else "not better")
    return f"before {held_out_line(before)} -> after {held_out_line(after)}: {verdict}", better
