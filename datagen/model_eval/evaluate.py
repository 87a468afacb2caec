"""Scoring trained models on a run's held-out test split: `datagen eval-model`.

Each held-out sample's input is sent to each candidate model as the trained model received its training pairs (the
export's system prompt, then the sample's turns: datagen.dataset.records.messages), and each answer is scored
against the sample with the pipeline's model metrics (datagen.metrics.answers), the stylometric ones fitted on the
run's training split. The result holds, per model, each metric's mean with a 95% bootstrap interval, n and the
failed calls; per pair of models, the paired comparison of their composite scores (datagen.model_eval.stats); and
every sample with each model's answer and scores. It is written as RUN/model-eval/eval.json and report.html.

As `dspy.Evaluate` counts a failed item, a sample a model's call failed on counts 0 on every metric of that model
(its summary says how many failed, by kind), and it is asked again by the next `eval-model` of the run. The calls go
out `concurrency` at a time, under each candidate's gate (`rpm`, `tpm`: datagen.lm.gate), and every answer is
committed as it comes (datagen.model_eval.store), so an evaluation stopped at any point goes on where it stopped.
"""

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from datagen._version import __version__
from datagen.dataset import check_scored, sample_id, split_samples
from datagen.dataset.splits import recorded_splits
from datagen.errors import DatagenError, InputError
from datagen.lm import CallGate, check_reachable, failure_kind, first_line, gated
from datagen.metrics import COMPOSITE, AnswerScorer, Failed, MetricContext, Score, scorer_for
from datagen.model_eval.candidates import Candidate, ask, chat_request
from datagen.model_eval.report import write_report
from datagen.model_eval.stats import mean_interval, paired_comparison
from datagen.model_eval.store import FOLDER, Answer, AnswerStore
from datagen.samples import Sample
from datagen.store import SYSTEM_PROMPT, RunStore
from datagen.text.chunking import Chunk
from datagen.util import replacing
from datagen.util.locking import exclusive
from datagen.workspace import Config, find_workspace, load_config
from datagen.workspace.pipelines import load_metric_suite

log = logging.getLogger(__name__)

RESULT_FILE = "eval.json"
REPORT_FILE = "report.html"
# `system` left to the run: the system prompt of its last chat export, which the trained model was given.
RECORDED = "recorded"


@dataclass(frozen=True)
class HeldOut:
    """A held-out sample: its id, the chunk it was made from, and the sample (input and reference output)."""

    id: str
    chunk: Chunk
    sample: Sample


@dataclass
class Progress:
    """What `on_progress` is told after each answer or score: the step ("asking" or "scoring"), how many of the
    step's jobs are done, and of how many."""

    step: str
    done: int
    total: int


@dataclass
class EvaluationSettings:
    """How `evaluate_models` asks and scores.

    Args:
        system: the system prompt every request starts with; RECORDED (default): the run's last chat export's
            (none when it had none, or when the run was never exported); None: none.
        metrics: the model metrics to score, as `--metric` names them (with "composite": the composite of those
            named); default None: the composite and the metrics it weighs.
        concurrency: requests in flight at most, all candidates together; default 4.
        rpm: requests a minute at most, per server (per model for a hosted one); default None: no cap.
        tpm: tokens a minute at most, per server (per model for a hosted one); default None: no cap.
        limit: evaluate only the first `limit` held-out samples (in chunk order); default None: all.
        min_scores: {metric: bar}: only the held-out samples whose data scores reach every bar, as the export's
            `--min-score` keeps them (a reference that failed the gate is no reference); default None: all.
        force: ask every candidate again, its kept answers dropped (a model retrained and served again under the
            same name); default False.
    """

    system: str | None = RECORDED
    metrics: list[str] | None = None
    concurrency: int = 4
    rpm: float | None = None
    tpm: int | None = None
    limit: int | None = None
    min_scores: dict[str, float] | None = None
    force: bool = False
    on_progress: Callable[[Progress], None] | None = field(default=None, repr=False)


def held_out_samples(store: RunStore, limit: int | None = None,
                     min_scores: dict[str, float] | None = None) -> list[HeldOut]:
    """The run's held-out test samples (as reviewed, and those reaching `min_scores`' bars when given:
    datagen.dataset.export.run_samples), in chunk order; the first `limit` of them when given."""
    test = split_samples(store, min_scores, val_fraction=0.0)["test"]
    return [HeldOut(sample_id(chunk.id, index), chunk, sample) for chunk, index, sample in test[:limit]]


def training_texts(store: RunStore) -> list[str]:
    """The texts of the run's chunks outside its test split: what the style metrics may be fitted on."""
    splits = recorded_splits(store)
    return [chunk.text for chunk in store.chunks() if splits[chunk.id].split != "test"]


def _recorded_system(meta: dict[str, str]) -> str | None:
    value = meta.get(SYSTEM_PROMPT)
    return json.loads(value) if value else None


def _scoring_key(scorer: AnswerScorer, suite_file: Path, texts: list[str]) -> str:
    """What the scores depend on besides the answers: the metrics module and datagen's version (the metrics' code),
    the metrics and weights chosen, the texts the style metrics were fitted on, and the judge model when a metric is
    judged."""
    parts = {"metrics": sorted(scorer.kinds), "weights": scorer.weights, "datagen": __version__,
             "suite": hashlib.sha256(suite_file.read_bytes()).hexdigest(),
             "texts": hashlib.sha256("\0".join(texts).encode()).hexdigest(),
             "judge": scorer.context.judge.name if "judge" in scorer.kinds.values() else None}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _parallel(jobs: list, work: Callable, concurrency: int, gates: dict[str, CallGate]) -> Iterator[tuple]:
    """(job, work(job)) for every job, as they finish, at most `concurrency` in flight, each call under `gates`;
    yielded in the calling thread. A job that raises ends it, the jobs not started cancelled."""
    def run(job):
        with gated(gates):
            return work(job)

    pending = iter(jobs)
    pool = ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="eval-model")
    running: dict[Future, object] = {}
    try:
        while True:
            while len(running) < concurrency and (job := next(pending, None)) is not None:
                running[pool.submit(run, job)] = job
            if not running:
                return
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                yield running.pop(future), future.result()
    finally:
        # Stopped early (Ctrl-C, a failure no job would escape): the calls in flight are abandoned, not waited for;
        # what was answered is committed already.
        pool.shutdown(wait=not running, cancel_futures=True)


class _Evaluation:
    """One `evaluate_models` call: the run's held-out samples, the candidates, and what asks and scores them."""

    def __init__(self, run: Path, samples: list[HeldOut], candidates: list[Candidate], system: str | None,
                 scorer: AnswerScorer, scoring: str, settings: EvaluationSettings, config: Config):
        self.run, self.samples, self.candidates, self.system = run, samples, candidates, system
        self.scorer, self.scoring, self.settings, self.config = scorer, scoring, settings, config
        # Each candidate's answers are kept under its fingerprint with this system prompt (Candidate.key).
        self.keys = {candidate.label: candidate.key(system) for candidate in candidates}

    def ask_all(self, store: AnswerStore) -> None:
        """Ask each candidate the samples it has no answer to (or whose call failed), keeping each answer."""
        models = {candidate.label: candidate.model() for candidate in self.candidates}
        for model in models.values():
            check_reachable(model)
        # One gate per server: candidates served together (a base model and its LoRA adapters on one vLLM) share
        # its capacity, and a 429 from it slows them all.
        by_server: dict[tuple, CallGate] = {}
        gates = {}
        for candidate in self.candidates:
            server = candidate.settings.api_bases or (candidate.settings.model,)
            gate = by_server.setdefault(server, CallGate(self.settings.concurrency, rpm=self.settings.rpm,
                                                         tpm=self.settings.tpm))
            gates[models[candidate.label].lm.model] = gate
        jobs = []
        for candidate in self.candidates:
            key = self.keys[candidate.label]
            if self.settings.force:
                store.forget(key, [held.id for held in self.samples])
            kept = store.answers(key)
            jobs += [(candidate, key, held) for held in self.samples
                     if held.id not in kept or kept[held.id].text is None]

        def asking(job) -> Answer:
            candidate, _, held = job
            model = models[candidate.label]
            return ask(model, chat_request(model, held.sample, self.system, candidate.settings))

        asked = _parallel(jobs, asking, self.settings.concurrency, gates)
        for done, ((candidate, key, held), answer) in enumerate(asked, 1):
            store.record(key, held.id, answer)
            self._tell("asking", done, len(jobs))

    def score_all(self, store: AnswerStore) -> None:
        """Score every answer not yet scored by this scoring, keeping the scores."""
        jobs = []
        for key in self.keys.values():
            answers, scored = store.answers(key), store.scores(key, self.scoring)
            jobs += [(key, held, answers[held.id].text) for held in self.samples
                     if held.id in answers and answers[held.id].text is not None and held.id not in scored]
        gates = {}
        if "judge" in self.scorer.kinds.values():
            judge = self.config.role("judge")
            gates[self.scorer.context.judge.lm.model] = CallGate(self.settings.concurrency, rpm=judge.rpm,
                                                                 tpm=judge.tpm)

        def scoring(job) -> dict:
            _, held, answer = job
            try:
                return self.scorer.score(held.chunk.text, held.sample, answer)
            except DatagenError:
                raise
            except Exception as exc:  # what no other answer would escape (a judge's key refused: scoring.measure)
                raise DatagenError(f"scoring the answers: {failure_kind(exc)}: {first_line(exc)}") from exc

        scores = _parallel(jobs, scoring, self.settings.concurrency, gates)
        for done, ((key, held, _), result) in enumerate(scores, 1):
            store.set_scores(key, held.id, self.scoring, result)
            self._tell("scoring", done, len(jobs))

    def _tell(self, step: str, done: int, total: int) -> None:
        if self.settings.on_progress:
            self.settings.on_progress(Progress(step, done, total))

    def result(self, store: AnswerStore, pipeline: str) -> dict:
        """The evaluation record (see the module's docstring)."""
        names = list(self.scorer.names if COMPOSITE not in self.scorer.names
                     else dict.fromkeys([COMPOSITE, *self.scorer.kinds]))
        by_model = {label: (store.answers(key), store.scores(key, self.scoring)) for label, key in self.keys.items()}
        values = {label: {name: [_value(scores.get(held.id, {}), name) for held in self.samples] for name in names}
                  for label, (_, scores) in by_model.items()}
        return {
            "run": str(self.run), "pipeline": pipeline, "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "system": self.system, "held_out": len(self.samples),
            "metrics": {"names": names, "kinds": self.scorer.kinds, "weights": self.scorer.weights},
            "models": [_model_summary(candidate, self.keys[candidate.label], *by_model[candidate.label],
                                      values[candidate.label], self.samples) for candidate in self.candidates],
            "pairs": _pairs(values, names),
            "samples": [_sample_record(held, by_model) for held in self.samples],
        }


def _value(scores: dict[str, Score], name: str) -> float:
    """A score's value, 0 for a failed score, a failed call or an answer not scored."""
    score = scores.get(name)
    return 0.0 if score is None or isinstance(score, Failed) else score.value


def _model_summary(candidate: Candidate, key: str, answers: dict[str, Answer],
                   scores: dict[str, dict[str, Score]], values: dict[str, list[float]],
                   samples: list[HeldOut]) -> dict:
    own = [answers.get(held.id) for held in samples]
    failures = Counter(answer.kind or "failed" if answer else "not asked" for answer in own
                       if answer is None or answer.text is None)
    failed_scores = Counter(name for held in samples for name, score in scores.get(held.id, {}).items()
                            if isinstance(score, Failed))
    return {"label": candidate.label, "model": candidate.settings.model,
            "api_base": list(candidate.settings.api_bases), "temperature": candidate.settings.temperature,
            "max_tokens": candidate.settings.max_tokens, "key": key,
            "answered": sum(answer is not None and answer.text is not None for answer in own),
            "cut_off": sum(answer is not None and answer.finish_reason == "length" for answer in own),
            "failed": sum(failures.values()), "failures": dict(failures), "failed_scores": dict(failed_scores),
            "first_error": next((answer.error for answer in own if answer and answer.text is None), None),
            "tokens": {"prompt": sum(a.prompt_tokens or 0 for a in own if a),
                       "completion": sum(a.completion_tokens or 0 for a in own if a)},
            "scores": {name: mean_interval(series) for name, series in values.items()}}


def _pairs(values: dict[str, dict[str, list[float]]], names: list[str]) -> list[dict]:
    """Each pair of models compared on the composite (the first metric when there is none), sample by sample."""
    metric = COMPOSITE if COMPOSITE in names else names[0]
    labels = list(values)
    return [{"first": a, "second": b, "metric": metric, **paired_comparison(values[a][metric], values[b][metric])}
            for i, a in enumerate(labels) for b in labels[i + 1:]]


def _sample_record(held: HeldOut, by_model: dict[str, tuple[dict, dict]]) -> dict:
    answers = {}
    for label, (own, scores) in by_model.items():
        answer = own.get(held.id)
        answers[label] = {
            "text": answer.text if answer else None, "error": answer.error if answer else "not asked",
            "scores": {name: {"value": score.value, "feedback": score.feedback,
                              "failed": score.kind if isinstance(score, Failed) else None}
                       for name, score in scores.get(held.id, {}).items()}}
    return {"id": held.id, "chunk_id": held.chunk.id, "source": held.chunk.source, "input": held.sample.input,
            "history": [list(turn) for turn in held.sample.history], "reference": held.sample.output,
            "answers": answers}


def _check_split(run: Path, store: RunStore) -> None:
    """Refuse a run whose chunks do not all have a recorded split: one made before datagen drew held-out splits
    (its exports held nothing out, so a model may have trained on any chunk), or one with chunks added since the
    last generate (which records their split)."""
    if len(store.splits()) != store.counts()["chunks"]:
        raise DatagenError(f"{run}: not every chunk has a recorded held-out split (a run made before datagen drew "
                           "one, or chunks added since): a model trained on its exports may have seen any of them; "
                           "run datagen generate on it to record the split, and train on an export made after")


def evaluate_models(run_dir: str | Path, candidates: list[Candidate], settings: EvaluationSettings | None = None,
                    workspace: str | Path | None = None) -> dict:
    """Score each candidate model on a run's held-out test split, and write RUN/model-eval/eval.json and
    report.html.

    Args:
        run_dir: a run folder made by `datagen generate`, with a held-out test split (`[splits]`).
        candidates: the models to compare (datagen.model_eval.candidates.parse_candidates).
        settings: how to ask and score (`EvaluationSettings`); default None: its defaults.
        workspace: the workspace whose metrics/PIPELINE.py declares the model metrics, and whose datagen.toml
            names the judge; default None: `find_workspace()` from the current folder.

    Returns:
        The evaluation record (see the module's docstring), as written to eval.json.

    Raises:
        DatagenError: not a run folder; a run with no held-out sample (a test_fraction of 0, or no test chunk
            finished); a pipeline without model metrics, or an unknown `--metric`; too few training passages to
            fit the style metrics; another eval-model of the run in progress; a failure no sample would escape
            (a key refused, nothing listening at a server), as it is.
    """
    settings = settings or EvaluationSettings()
    if settings.concurrency < 1:
        raise InputError(f"--concurrency must be at least 1, got {settings.concurrency}")
    run = Path(run_dir)
    workspace = Path(workspace) if workspace else find_workspace()
    config = load_config(workspace)
    with RunStore.reading(run) as runs:  # eval-model never writes a run store, nor makes one of another file
        meta = runs.meta()
        pipeline = meta.get("pipeline") or ""
        _check_split(run, runs)
        check_scored(runs, settings.min_scores, run)
        samples = held_out_samples(runs, settings.limit, settings.min_scores)
        texts = training_texts(runs)
    if not samples:
        why = ("none reaches the --min-score bars" if settings.min_scores else "its test split is empty: see "
               "[splits] test_fraction in datagen.toml, and let datagen generate finish the test chunks")
        raise DatagenError(f"{run}: no held-out test sample to evaluate on ({why})")
    if len(set(texts)) < 4:
        raise DatagenError(f"{run}: its training split has {len(set(texts))} distinct chunks; the style metrics are "
                           "fitted on at least 4 (a smaller [splits] test_fraction, or a larger corpus)")
    suite = load_metric_suite(pipeline, workspace)  # its one-line error first, before any model is built
    metrics = settings.metrics or [COMPOSITE]
    scorer = scorer_for(pipeline, MetricContext(workspace, config, corpus=texts), metrics, AnswerScorer)
    system = _recorded_system(meta) if settings.system == RECORDED else settings.system
    scoring = _scoring_key(scorer, Path(suite.__file__), texts)
    evaluation = _Evaluation(run, samples, candidates, system, scorer, scoring, settings, config)
    folder = run / FOLDER
    with exclusive(folder / ".lock", f"{folder}", "wait for that eval-model to finish"), AnswerStore(run) as store:
        evaluation.ask_all(store)
        evaluation.score_all(store)
        result = evaluation.result(store, pipeline)
    with replacing(folder / RESULT_FILE) as part:
        part.write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    write_report(result, folder / REPORT_FILE)
    return result

