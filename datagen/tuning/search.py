"""Pipeline-level search: the knobs outside the prompts, tuned by an optuna study.

Each trial picks an optimizer, how many demos it may keep, the task model's temperature, the chunk budget the
dev set is cut at, and the pipeline's own options that its module declares worth searching (`SEARCH_SPACE`,
e.g. style_clone's boundary repair); it compiles the program on the train items and scores it on the val items.
The study is kept in SQLite under the workspace (studies/PIPELINE.db), one row per trial as it ends, so a search
stopped for any reason (--max-calls, Ctrl-C, a crash) continues its trial count when the same command runs
again, and can be read with optuna's own tools. The best trial so far is saved as a compiled program with the
settings it was tuned with, which `datagen generate --compiled` then uses.
"""

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import dspy
import optuna

from datagen.dataset import DevItem
from datagen.dataset.devset import recut
from datagen.errors import DatagenError
from datagen.lm import RoleModel
from datagen.metrics import COMPOSITE
from datagen.runs import bound_answers
from datagen.tuning.budget import CallBudgetExhausted
from datagen.tuning.estimate import Estimate
from datagen.tuning.optimize import Session
from datagen.tuning.presets import PROPOSING, DevSize, role_calls
from datagen.util import exclusive, writing
from datagen.workspace import COMPILED_DIR, Config, load_program
from datagen.workspace.compiled import report_path
from datagen.workspace.pipelines import search_space

log = logging.getLogger(__name__)

STUDIES_DIR = "studies"
DEFAULT_OPTIMIZERS = ("bootstrap", "bootstrap-rs")
TEMPERATURES = [0.0, 0.3, 0.7, 1.0]
MAX_SEARCH_DEMOS = 4
CHUNK_BUDGETS = [256, 512, 1024]
_OPTION = "option."  # prefix of a pipeline option's parameter name in the study


@dataclass
class Trial:
    """One complete trial of a study: its number, the settings it drew, its held-out composite, its LM requests."""

    number: int
    params: dict
    score: float | None
    calls: int


@dataclass
class SearchResult:
    """What a search did: the study (its storage and name) and its trials, the held-out evaluation of the
    uncompiled program (`before`), the LM requests by role, the best trial and its compiled program."""

    storage: Path
    study: str
    trials: list[Trial]  # every complete trial of the study, earlier runs' included
    ran: int  # trials completed by this call
    estimate: int
    calls: Counter
    before: dict = field(default_factory=dict)
    cached: Counter = field(default_factory=Counter)  # LM calls answered from DSPy's cache, by role
    best: Trial | None = None
    state: Path | None = None  # the best trial's compiled program
    report: Path | None = None
    stopped: str | None = None
    usage: Counter = field(default_factory=Counter)
    spent: float | None = None  # US dollars, every role's; None when a model without a price spent tokens


def study_storage(workspace: Path, pipeline: str) -> Path:
    return workspace / STUDIES_DIR / f"{pipeline}.db"


def search_pipeline(pipeline: str, dev: str | Path, trials: int, *, optimizers=DEFAULT_OPTIMIZERS,
                    name: str = "search", workspace: Path | None = None, config: Config | None = None,
                    options: dict | None = None, max_calls: int | None = None, seed: int = 0,
                    model: RoleModel | None = None, judge: RoleModel | None = None, prompt: RoleModel | None = None,
                    on_estimate=None, on_trial=None, metrics: list[str] | None = None,
                    max_cost: float | None = None) -> SearchResult:
    """Run the study `name` of `pipeline` until it holds `trials` complete trials, and save its best trial as
    compiled/PIPELINE/NAME.json. `on_estimate` gets the `Estimate` (datagen.tuning.estimate: an int, the LM
    requests, with their dollars and a warning when a cap is too small) of the trials still to run before any is
    made; `on_trial` gets each Trial as it ends. `metrics`: the composite's parts, and `max_cost` the cap on US
    dollars spent, as for `datagen.tuning.optimize.optimize_pipeline`."""
    if trials < 1:
        raise DatagenError(f"--trials must be at least 1, got {trials}")
    optimizers = list(dict.fromkeys(optimizers))
    session = Session(pipeline, dev, optimizers, workspace=workspace, config=config, options=options,
                      max_calls=max_calls, model=model, judge=judge, prompt=prompt, metrics=metrics,
                      max_cost=max_cost)
    cuts = _cuts(session)
    space = _space(session, optimizers, list(cuts))
    storage = study_storage(session.workspace, pipeline)
    # One process at a time per study: a second would take the first one's running trials for a killed
    # process's and fail them (see _open_study), and both would write the same compiled program.
    with exclusive(storage.with_name(f"{pipeline}.{name}.lock"), f"study {name!r} of {pipeline}",
                   "wait for that search to finish, or use another --name"), writing(storage):
        study = _open_study(storage, name, space, seed)
        done = _complete(study)
        result = SearchResult(storage, name, done, 0, 0, session.counter.by_role, usage=session.usage,
                              cached=session.counter.cached)
        to_run = trials - len(done)
        result.estimate = _estimate(session, optimizers, to_run)
        if on_estimate:
            on_estimate(result.estimate)
        if to_run <= 0:
            return _with_best(result, session, name)

        kept = {}

        def run_trial(trial: optuna.Trial) -> float:
            settings = _suggest(trial, space, session.options)
            train, val = cuts.get(settings["chunk_tokens"], (session.train, session.val))
            program = load_program(pipeline, session.workspace, settings["options"])
            task = session.task_model(temperature=settings["temperature"])
            # A task model without max_tokens: its cap grows with a larger chunk budget tried (never shrinks).
            task = bound_answers(program, task, session.config.chunking.max_tokens, [i.chunk for i in train + val])
            if settings["demos"] or settings["optimizer"] in PROPOSING:
                program = session.compile(program, settings["optimizer"], seed=seed, demos=settings["demos"],
                                          train=train, model=task)
            evaluation = session.held_out(program, f"trial {trial.number}", items=val, model=task)
            kept[trial.number] = (program, evaluation, settings)
            return evaluation["metrics"][COMPOSITE]["mean"] or 0.0

        try:
            with session.counting():
                result.before = session.held_out(session.program, "uncompiled")
                for _ in range(to_run):
                    calls_before = session.counter.total
                    trial = study.ask()
                    try:
                        score = run_trial(trial)
                    except BaseException:  # the cap, Ctrl-C, an error: the trial ends failed, the study stays usable
                        study.tell(trial, state=optuna.trial.TrialState.FAIL)
                        raise
                    calls = session.counter.total - calls_before
                    trial.set_user_attr("calls", calls)
                    study.tell(trial, score)
                    result.ran += 1
                    ended = Trial(trial.number, dict(trial.params), score, calls)
                    result.trials.append(ended)
                    if on_trial:
                        on_trial(ended)
                    if study.best_trial.number == trial.number:
                        result.state, result.report = _save_best(session, name, trial.number, result.before,
                                                                 *kept.pop(trial.number), seed)
                    kept.clear()
        except CallBudgetExhausted as exc:
            result.stopped = (f"{exc}: stopped after {result.ran} trial(s) of this run; run the same command again "
                              "to continue the study")
        return _with_best(result, session, name)


def _estimate(session: Session, optimizers: list[str], to_run: int) -> Estimate:
    """The Estimate of `to_run` trials and the baseline: an upper bound, every trial priced as the dearest
    optimizer at the most demos."""
    if to_run <= 0:
        return session.estimate(Counter(), optimizers)
    per_trial = max((role_calls(o, len(session.train), len(session.val), session.per_example, held_out=1,
                                judged=session.judged) for o in optimizers), key=lambda c: sum(c.values()))
    baseline = DevSize(len(session.train), len(session.val), session.per_example, session.judged).scored(
        len(session.val))
    return session.estimate(baseline + Counter({role: to_run * n for role, n in per_trial.items()}), optimizers)


def _with_best(result: SearchResult, session: Session, name: str) -> SearchResult:
    result.spent = session.spent()
    result.best = max(result.trials, key=lambda t: t.score or 0.0, default=None)
    saved = session.workspace / COMPILED_DIR / session.pipeline / f"{name}.json"
    if result.state is None and saved.is_file():  # the best trial is an earlier run's
        result.state, result.report = saved, report_path(saved)
    return result


def _cuts(session: Session) -> dict[int, tuple[list[DevItem], list[DevItem]]]:
    """The dev set cut at each chunk budget that fits the task model and leaves items in both splits, as
    (train, val); none when its sources cannot be cut again (the budget is then not searched)."""
    cuts = {}
    for budget in (b for b in CHUNK_BUDGETS if _fits(session.model, b)):
        try:
            items = recut(session.items, budget, session.workspace, session.config.chunking.language)
        except DatagenError as exc:
            log.warning("chunk budget not searched: %s", exc)
            return {}
        train, val = [i for i in items if i.split != "val"], [i for i in items if i.split == "val"]
        if train and val:
            cuts[budget] = (train, val)
    return cuts


def _space(session: Session, optimizers: list[str], budgets: list[int]) -> dict:
    """What the study searches: the optimizers given, demos, temperature, chunk budgets, pipeline options."""
    options = search_space(session.pipeline, session.workspace)
    for option, choices in options.items():
        if not choices or any(not isinstance(c, (bool, int, float, str)) for c in choices):
            raise DatagenError(f"programs/{session.pipeline}.py: SEARCH_SPACE[{option!r}] must list booleans, "
                               "numbers or strings")
    return {"optimizer": optimizers, "temperature": TEMPERATURES, "demos": [0, MAX_SEARCH_DEMOS],
            "chunk_tokens": budgets, "options": {o: c for o, c in options.items() if o not in session.options}}


def _fits(model: RoleModel, budget: int) -> bool:
    # A chunk, its rephrase and the prompt around them must fit the window: a budget over a quarter of it won't.
    return model.context_window is None or budget * 4 <= model.context_window


def _suggest(trial: optuna.Trial, space: dict, fixed: dict) -> dict:
    """One point of the space: the trial's settings, pipeline options merged over the ones given outright."""
    settings = {"optimizer": trial.suggest_categorical("optimizer", space["optimizer"]),
                "demos": trial.suggest_int("demos", *space["demos"]),
                "temperature": trial.suggest_categorical("temperature", space["temperature"]),
                "chunk_tokens": (trial.suggest_categorical("chunk_tokens", space["chunk_tokens"])
                                 if space["chunk_tokens"] else None)}
    settings["options"] = {**fixed, **{option: trial.suggest_categorical(_OPTION + option, choices)
                                       for option, choices in space["options"].items()}}
    return settings


def _open_study(storage: Path, name: str, space: dict, seed: int) -> optuna.Study:
    """The study, created or continued. A continued one must search the same space (optuna cannot compare
    trials drawn from different choices), and its sampler is seeded past the trials it already has, so a
    resumed search does not repeat its first draws."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage.parent.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{storage}", direction="maximize",
                                load_if_exists=True)
    searched = study.user_attrs.get("space")
    if searched is None:
        study.set_user_attr("space", space)
    elif searched != space:
        raise DatagenError(f"study {name!r} in {storage} searched another space ({_describe(searched)}); now: "
                           f"{_describe(space)}: use another --name, or the same choices")
    for trial in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.RUNNING]):
        # Left running by a process that was killed: it will never end, so it cannot count.
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
    return study


def _describe(space: dict) -> str:
    return ", ".join(f"{key} {value}" for key, value in space.items() if value)


def _complete(study: optuna.Study) -> list[Trial]:
    return [Trial(t.number, t.params, t.value, t.user_attrs.get("calls", 0))
            for t in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])]


def _save_best(session: Session, name: str, number: int, before: dict, program: dspy.Module, evaluation: dict,
               settings: dict, seed: int) -> tuple[Path, Path]:
    return session.save(program, name, before, evaluation, {
        "options": settings["options"], "optimizer": settings["optimizer"], "seed": seed,
        "settings": {"temperature": settings["temperature"], "chunk_tokens": settings["chunk_tokens"],
                     "demos": settings["demos"]},
        "search": {"study": name, "storage": f"{STUDIES_DIR}/{session.pipeline}.db", "trial": number}})
