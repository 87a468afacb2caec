"""Each optimizer datagen offers, as one `Preset`: how it is built, what its compile takes, whether it asks the
prompt role's model for instructions, and what it is expected to spend (a reading made before it starts).
"""

from collections.abc import Callable
from dataclasses import dataclass

import dspy

from datagen.errors import DatagenError
from datagen.lm import RoleModel
from datagen.tuning.demos import DemoCheck

RANDOM_SEARCH_CANDIDATES = 4
GEPA_METRIC_CALLS = 60
COPRO_BREADTH, COPRO_DEPTH = 3, 2
SIMBA_BATCH, SIMBA_CANDIDATES, SIMBA_STEPS = 8, 3, 2


@dataclass(frozen=True)
class DevSize:
    """What a compile's spend depends on: the train and val items, the LM calls one item costs when scored (one
    program run and the judge calls of one metric score), and those judge calls alone."""

    train: int
    val: int
    per_example: int
    judged: int = 0


@dataclass(frozen=True)
class Preset:
    """One optimizer as datagen sets it for an unlabeled dev set: no labeled demos (input-only demos would be
    silently dropped), and a pass/fail verdict while bootstrapping (the `DemoCheck` it is built with gives one under
    `trace`).

    Args:
        build: (check, task model, prompt model or None, seed, demos kept per predictor) -> the DSPy optimizer.
        calls: a reading, made before it starts, of the LM calls its compile makes, every role's (held-out
            scoring apart).
        proposing: whether it asks the prompt role's model to write instructions.
        compile_kwargs: (trainset, seed) -> what its `compile` takes besides the program and the trainset.
    """

    build: Callable[[DemoCheck, RoleModel, RoleModel | None, int, int], object]
    calls: Callable[[DevSize], int]
    proposing: bool = False
    compile_kwargs: Callable[[list, int], dict] = lambda trainset, seed: {}


PRESETS = {
    "bootstrap": Preset(
        lambda check, task, prompt, seed, demos: dspy.BootstrapFewShot(
            metric=check, max_bootstrapped_demos=demos, max_labeled_demos=0, max_rounds=1),
        # each train item is tried once until MAX_DEMOS pass
        calls=lambda size: size.train * size.per_example),
    "bootstrap-rs": Preset(
        lambda check, task, prompt, seed, demos: dspy.BootstrapFewShotWithRandomSearch(
            metric=check, max_bootstrapped_demos=demos, max_labeled_demos=0,
            num_candidate_programs=RANDOM_SEARCH_CANDIDATES, num_threads=1),
        # each candidate bootstraps, then is scored on the train set
        calls=lambda size: (RANDOM_SEARCH_CANDIDATES + 3) * 2 * size.train * size.per_example),
    "mipro": Preset(
        lambda check, task, prompt, seed, demos: dspy.MIPROv2(
            metric=check, prompt_model=prompt.lm, task_model=task.lm, auto="light", max_bootstrapped_demos=demos,
            max_labeled_demos=0, num_threads=1, seed=seed, verbose=False),
        # MIPROv2 light: demo sets, ~10 instruction proposals, ~10 minibatch trials
        calls=lambda size: (6 * size.train * size.per_example + 12 + 10 * min(35, size.val) * size.per_example
                            + size.val * size.per_example),
        proposing=True),
    "gepa": Preset(
        lambda check, task, prompt, seed, demos: dspy.GEPA(
            metric=check.gepa, reflection_lm=prompt.lm, max_metric_calls=GEPA_METRIC_CALLS, num_threads=1,
            seed=seed),
        # its metric calls, each minibatch scored again for feedback (judges only), and the reflections
        calls=lambda size: (GEPA_METRIC_CALLS * size.per_example + GEPA_METRIC_CALLS // 2 * size.judged
                            + GEPA_METRIC_CALLS // 3),
        proposing=True,
        # GEPA needs a set to select candidates on: the train items (val stays held out)
        compile_kwargs=lambda trainset, seed: {"valset": trainset}),
    "copro": Preset(
        lambda check, task, prompt, seed, demos: dspy.COPRO(
            prompt_model=prompt.lm, metric=check, breadth=COPRO_BREADTH, depth=COPRO_DEPTH),
        # every candidate instruction scored on the whole train set, proposals in batches
        calls=lambda size: (COPRO_BREADTH * COPRO_DEPTH * size.train * size.per_example
                            + (COPRO_DEPTH + 1) * COPRO_BREADTH),
        proposing=True,
        compile_kwargs=lambda trainset, seed: {"eval_kwargs": {"num_threads": 1, "display_progress": False}}),
    "simba": Preset(
        lambda check, task, prompt, seed, demos: dspy.SIMBA(
            metric=check, bsize=SIMBA_BATCH, num_candidates=SIMBA_CANDIDATES, max_steps=SIMBA_STEPS,
            max_demos=demos, prompt_model=prompt.lm, num_threads=1),
        # per step: the batch run by candidates at two temperatures, rules or demos added
        calls=lambda size: SIMBA_STEPS * (min(SIMBA_BATCH, size.train) * (3 * SIMBA_CANDIDATES + 1)
                                          * size.per_example + 2 * SIMBA_CANDIDATES),
        proposing=True,
        compile_kwargs=lambda trainset, seed: {"seed": seed}),
}
OPTIMIZERS = tuple(PRESETS)
# The optimizers that ask a model (the prompt role) to write instructions.
PROPOSING = tuple(name for name, preset in PRESETS.items() if preset.proposing)


def estimate_calls(optimizer: str, train: int, val: int, per_example: int, held_out: int = 2,
                   judged: int = 0) -> int:
    """A reading of what the preset will spend, before it starts: LM calls of every role, `held_out`
    evaluations of the val items included. `per_example` is one program run plus the judge calls of one
    metric score, `judged` those judge calls alone."""
    return held_out * val * per_example + PRESETS[optimizer].calls(DevSize(train, val, per_example, judged))


def check_optimizers(optimizers) -> None:
    """Raises DatagenError naming the first of `optimizers` datagen does not offer (see `PRESETS`)."""
    for name in optimizers:
        if name not in PRESETS:
            raise DatagenError(f"unknown optimizer {name!r}: use one of {', '.join(OPTIMIZERS)}")
