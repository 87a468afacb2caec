"""Each optimizer datagen offers, as one `Preset`: how it is built, what its compile takes, whether it asks the
prompt role's model for instructions, and what it is expected to spend (a reading made before it starts).
"""

from collections import Counter
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
# What a preset is for, the least of it: a proposing optimizer that cannot propose this many instructions chooses
# among too few to be worth its calls; a bootstrap that cannot bootstrap one demo changes nothing.
PROPOSALS = 3
PROPOSE = f"propose {PROPOSALS} instructions"
BOOTSTRAP_ONE = "bootstrap a demo"


@dataclass(frozen=True)
class DevSize:
    """What a compile's spend depends on: the train and val items, the LM calls one item costs when scored (one
    program run and the judge calls of one metric score), and those judge calls alone."""

    train: int
    val: int
    per_example: int
    judged: int = 0

    def scored(self, runs: int) -> Counter:
        """The LM calls, by role, of `runs` program runs each scored: its predictors' (task) and its judges'."""
        return +Counter({"task": runs * (self.per_example - self.judged), "judge": runs * self.judged})


@dataclass(frozen=True)
class Preset:
    """One optimizer as datagen sets it for an unlabeled dev set: no labeled demos (input-only demos would be
    silently dropped), and a pass/fail verdict while bootstrapping (the `DemoCheck` it is built with gives one under
    `trace`).

    Args:
        build: (check, task model, prompt model or None, seed, demos kept per predictor) -> the DSPy optimizer.
        calls: a reading, made before it starts, of the LM calls its compile makes by role ("task", "judge",
            "prompt"; held-out scoring apart).
        least: a reading of the LM calls its compile makes before it has done what it is for (`purpose`): a first
            demo bootstrapped, or a third instruction (rule) proposed. A cap that leaves the compile fewer calls
            compiles a program no better than the uncompiled one, or nothing.
        purpose: what `least` buys, in words ("bootstrap a demo", "propose 3 instructions").
        proposing: whether it asks the prompt role's model to write instructions.
        compile_kwargs: (trainset, seed) -> what its `compile` takes besides the program and the trainset.
        min_train: the fewest train items it runs on (SIMBA asserts a trainset of at least its batch).
    """

    build: Callable[[DemoCheck, RoleModel, RoleModel | None, int, int], object]
    calls: Callable[[DevSize], Counter]
    least: Callable[[DevSize], int]
    purpose: str
    proposing: bool = False
    compile_kwargs: Callable[[list, int], dict] = lambda trainset, seed: {}
    min_train: int = 1


PRESETS = {
    "bootstrap": Preset(
        lambda check, task, prompt, seed, demos: dspy.BootstrapFewShot(
            metric=check, max_bootstrapped_demos=demos, max_labeled_demos=0, max_rounds=1),
        # each train item is tried once until MAX_DEMOS pass; the first item may pass
        calls=lambda size: size.scored(size.train), least=lambda size: size.per_example, purpose=BOOTSTRAP_ONE),
    "bootstrap-rs": Preset(
        lambda check, task, prompt, seed, demos: dspy.BootstrapFewShotWithRandomSearch(
            metric=check, max_bootstrapped_demos=demos, max_labeled_demos=0,
            num_candidate_programs=RANDOM_SEARCH_CANDIDATES, num_threads=1),
        # each candidate bootstraps, then is scored on the train set; the first two candidates bootstrap none
        calls=lambda size: size.scored((RANDOM_SEARCH_CANDIDATES + 3) * 2 * size.train),
        least=lambda size: (2 * size.train + 1) * size.per_example, purpose=BOOTSTRAP_ONE),
    "mipro": Preset(
        lambda check, task, prompt, seed, demos: dspy.MIPROv2(
            metric=check, prompt_model=prompt.lm, task_model=task.lm, auto="light", max_bootstrapped_demos=demos,
            max_labeled_demos=0, num_threads=1, seed=seed, verbose=False),
        # MIPROv2 light: demo sets, ~10 instruction proposals, ~10 minibatch trials. Its proposals come after
        # the demo sets, a summary of the data and one of the program.
        calls=lambda size: size.scored(6 * size.train + 10 * min(35, size.val) + size.val) + Counter(prompt=12),
        least=lambda size: 6 * size.train * size.per_example + 2 + PROPOSALS, purpose=PROPOSE, proposing=True),
    "gepa": Preset(
        lambda check, task, prompt, seed, demos: dspy.GEPA(
            metric=check.gepa, reflection_lm=prompt.lm, max_metric_calls=GEPA_METRIC_CALLS, num_threads=1,
            seed=seed),
        # its metric calls, each minibatch scored again for feedback (judges only), and the reflections. The seed
        # program is scored on the train items first; each reflection follows a minibatch of 3, and each new
        # candidate is scored on its minibatch.
        calls=lambda size: (size.scored(GEPA_METRIC_CALLS) + Counter(judge=GEPA_METRIC_CALLS // 2 * size.judged)
                            + Counter(prompt=GEPA_METRIC_CALLS // 3)),
        least=lambda size: (size.train * size.per_example + PROPOSALS * (3 * size.per_example + 1)
                            + (PROPOSALS - 1) * 3 * size.per_example),
        purpose=PROPOSE, proposing=True,
        # GEPA needs a set to select candidates on: the train items (val stays held out)
        compile_kwargs=lambda trainset, seed: {"valset": trainset}),
    "copro": Preset(
        lambda check, task, prompt, seed, demos: dspy.COPRO(
            prompt_model=prompt.lm, metric=check, breadth=COPRO_BREADTH, depth=COPRO_DEPTH),
        # every candidate instruction scored on the whole train set, proposals in batches: the first batch
        # (breadth - 1, beside the program's own) scored before the next is asked for
        calls=lambda size: (size.scored(COPRO_BREADTH * COPRO_DEPTH * size.train)
                            + Counter(prompt=(COPRO_DEPTH + 1) * COPRO_BREADTH)),
        least=lambda size: 2 + COPRO_BREADTH * size.train * size.per_example, purpose=PROPOSE, proposing=True,
        compile_kwargs=lambda trainset, seed: {"eval_kwargs": {"num_threads": 1, "display_progress": False}}),
    "simba": Preset(
        lambda check, task, prompt, seed, demos: dspy.SIMBA(
            metric=check, bsize=SIMBA_BATCH, num_candidates=SIMBA_CANDIDATES, max_steps=SIMBA_STEPS,
            max_demos=demos, prompt_model=prompt.lm, num_threads=1),
        # per step: the batch run by candidates at two temperatures, rules or demos added once the batch has run
        calls=lambda size: (size.scored(SIMBA_STEPS * min(SIMBA_BATCH, size.train) * (3 * SIMBA_CANDIDATES + 1))
                            + Counter(prompt=SIMBA_STEPS * 2 * SIMBA_CANDIDATES)),
        least=lambda size: min(SIMBA_BATCH, size.train) * SIMBA_CANDIDATES * size.per_example + PROPOSALS,
        purpose=f"propose {PROPOSALS} rules or demos", proposing=True,
        compile_kwargs=lambda trainset, seed: {"seed": seed}, min_train=SIMBA_BATCH),
}
OPTIMIZERS = tuple(PRESETS)
# The optimizers that ask a model (the prompt role) to write instructions.
PROPOSING = tuple(name for name, preset in PRESETS.items() if preset.proposing)


def estimate_calls(optimizer: str, train: int, val: int, per_example: int, held_out: int = 2,
                   judged: int = 0) -> int:
    """A reading of what the preset will spend, before it starts: LM calls of every role, `held_out`
    evaluations of the val items included. `per_example` is one program run plus the judge calls of one
    metric score, `judged` those judge calls alone. The sum of `role_calls`."""
    return sum(role_calls(optimizer, train, val, per_example, held_out, judged).values())


def role_calls(optimizer: str, train: int, val: int, per_example: int, held_out: int = 2,
               judged: int = 0) -> Counter:
    """`estimate_calls` by role: {"task": n, "judge": n, "prompt": n}, roles that make none left out."""
    size = DevSize(train, val, per_example, judged)
    return size.scored(held_out * val) + PRESETS[optimizer].calls(size)


def least_calls(optimizer: str, train: int, val: int, per_example: int, held_out: int = 2,
                judged: int = 0) -> int:
    """The LM calls a run of the preset makes before its compile has done what it is for (`Preset.least`),
    `held_out` evaluations of the val items included (the one after compiling too: nothing is saved without it)."""
    return held_out * val * per_example + PRESETS[optimizer].least(DevSize(train, val, per_example, judged))


def check_train_size(optimizers, train: int, dev) -> None:
    """Raises DatagenError naming the first of `optimizers` that cannot run on `train` train items (`min_train`), and
    the dev set `dev` (its path, or words naming it): before any LM call, not in a traceback from DSPy."""
    for name in optimizers:
        if train < (least := PRESETS[name].min_train):
            raise DatagenError(f"{dev}: {name} needs at least {least} train items (its batch), the dev set has {train}: "
                               "draw a larger one (datagen devset --n) or choose another --optimizer")


def check_optimizers(optimizers) -> None:
    """Raises DatagenError naming the first of `optimizers` datagen does not offer (see `PRESETS`)."""
    for name in optimizers:
        if name not in PRESETS:
            raise DatagenError(f"unknown optimizer {name!r}: use one of {', '.join(OPTIMIZERS)}")
