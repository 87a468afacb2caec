"""Generating a dataset: a pipeline run over a corpus, chunks in, a run store and ShareGPT JSONL out.

`generate` chunks the inputs, claims the run folder's store for this run, runs the pending chunks (datagen.runs.runner:
on threads or Ray actors; or round by round through provider batch jobs, datagen.runs.batch), each model's calls
behind its rate gate and the run behind its spending cap, records each outcome as it comes, and writes the export.
"""

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import dspy

from datagen.dataset.export import DEFAULT_NAMES, METADATA_FILE, write_chat_export
from datagen.dataset.splits import program_seen_texts, split_texts
from datagen.errors import DatagenError, FailureKind, InputError
from datagen.lm import CallGate, RoleModel, check_reachable, failure_kind, first_line, task_model, track_usage
from datagen.lm.batch import batch_model
from datagen.metrics import MetricContext, Scorer
from datagen.runs.batch import BatchSummary, JobStatus, run_batches
from datagen.runs.cost import CostMeter, SpendCap, batch_key, run_meter
from datagen.runs.identity import files_stamp, inputs_fingerprint, run_identity
from datagen.runs.processes import available_cores
from datagen.runs.interrupt import Interrupt
from datagen.runs.runner import drop_reason, run_chunks
from datagen.runs.screening import IndexProcess, SplitDraw
from datagen.runs.settings import Callbacks, Report, RunSettings, RunStatus
from datagen.runs.window import bound_answers, check_budget
from datagen.store import CHUNK_TOKENS, COMPILED, GATE, Outcome, RunStore
from datagen.text import Chunk, chunk_documents, iter_documents
from datagen.util import exclusive, frozen_heap
from datagen.workspace import Config, compiled_state, find_workspace, load_config, read_manifest, resolve_program

log = logging.getLogger(__name__)

FILES_STAMP = "files"  # run store meta key: the input files' stamp when the store last chunked them
LOCK_FILE = "run.lock"  # held by the generate writing the run folder
# Run store meta keys of --batch runs: the generation whose requests are being asked, and the last one finished.
BATCH_GENERATION, BATCH_DONE = "batch_generation", "batch_done"
# The most characters of chunks a claim keeps in memory, from chunking the inputs to identify them, to store them
# (more: the inputs are chunked again, as a resume's changed files are).
CLAIM_KEPT_CHARS = 64 * 2 ** 20
# The least chunks to run for which the samples' near-duplicates are found beside the run, in a process of its own
# (datagen.runs.screening): it takes about 2 s of CPU to start, which a smaller run's export (well under a second of
# near-duplicates at 500 samples) would wait for.
INDEX_BESIDE_FROM = 500
# Passages of the corpus that metrics may use as the author's references (style judges, stylometry).
CORPUS_SAMPLE = 200


def generate(program: "str | dspy.Module", inputs: Iterable[str | Path], out_dir: str | Path, *,
             model: "RoleModel | dspy.LM | None" = None, settings: RunSettings = RunSettings(),
             options: dict | None = None, compiled: str | Path | None = None,
             min_scores: dict[str, float] | None = None, callbacks: Callbacks = Callbacks(),
             workspace: Path | None = None, config: Config | None = None) -> Report:
    """Chunk `inputs`, run `program` on every chunk, and write ShareGPT JSONL plus metadata to `out_dir`.

    `out_dir` is a run folder: its store (run.db) keeps every result as it finishes, so calling this again with
    the same arguments resumes, sending only unfinished chunks to the model. Ctrl-C (SIGINT, when called from the
    main thread; SIGTERM and SIGHUP alike) stops the run cleanly: no chunk starts, those that have sent a request
    finish and are kept (the others are given back unsent), the export is written, and the report's `stopped` says
    so; a second raises KeyboardInterrupt at once (the store keeps what it has). One call at a time per run folder.

    Args:
        program: a dspy.Module whose `forward(chunk: str)` returns a dspy.Prediction with `samples` (a list of
            `datagen.Sample`); or the name of a pipeline (programs/NAME.py of `workspace`, else the built-in one).
        inputs: files or folders (searched recursively) of text, Markdown, PDF, EPUB, DOCX or HTML; or one of them.
        out_dir: the run folder.
        model: the task model (a dspy.LM or a `RoleModel`); None: the LM set by `dspy.configure`/`dspy.context`,
            else the config's task role (by default the embedded model).
        settings: how the run goes (`RunSettings`: chunk budget, limit, concurrency, rates, failures and spend
            before stopping, force, batch jobs or a Ray cluster).
        options: a named pipeline's constructor arguments.
        compiled: a named pipeline's program compiled by `datagen optimize`, run instead (with the options it was
            compiled with, and the temperature and chunk budget a search tuned, `settings.max_tokens` overriding
            the budget).
        min_scores: the quality gate of a named pipeline, {metric: bar} with bars in [0, 1]: each sample is scored
            with those metrics, and those below a bar stay out of the export (kept in the store with their
            scores; finished samples never scored on them are scored first).
        callbacks: hears of the run's start, each chunk's outcome, where the run stands, and batch jobs.
        workspace: the workspace; None: the nearest folder with datagen.toml or programs/, else the current one.
        config: the configuration; None: the workspace's datagen.toml.

    Returns:
        A `Report` of what this call did and what the export holds.

    Raises:
        DatagenError: in one line naming the culprit, for bad input: an unknown pipeline (PipelineNotFound), a
            missing file or a bad value (InputError), a run folder of another run (RunFolderError), a chunk
            budget the model's context cannot hold or options that do not go together (ConfigError), a failure
            no chunk would escape (a refused key, nothing listening), `options`, `compiled` or `min_scores`
            with a program object.
    """
    inputs = [inputs] if isinstance(inputs, str | Path) else list(inputs)  # one path; an iterator is read twice
    workspace = Path(workspace) if workspace else find_workspace()
    config = config or load_config(workspace)
    pipeline, module = resolve_program(program, workspace, options, compiled)
    if min_scores and isinstance(program, dspy.Module):
        raise DatagenError(f"min_scores applies to a pipeline given by name, not to the program object {pipeline} "
                           "(build it with its options, load compiled state with .load(), score it with "
                           "datagen.evaluate)")
    state = compiled_state(pipeline, compiled, workspace) if compiled else None
    manifest = read_manifest(state) if state else {}
    model, budget = _task_model(module, config, model, settings, manifest.get("settings") or {})
    settings.check()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; --out takes a folder")
    report = Report(pipeline, model.name, out / DEFAULT_NAMES["sharegpt"], out / METADATA_FILE)
    language = config.chunking.language
    run_options = (manifest.get("options") if compiled else options) or {}

    def chunks() -> Iterator[Chunk]:
        return chunk_documents(iter_documents(inputs), budget, language)

    started = time.monotonic()
    stamp = files_stamp(inputs, budget, language)
    # One run at a time per folder: two would both send its pending chunks to the model, paying twice.
    with (exclusive(out / LOCK_FILE, str(out), "wait for the run there to finish, or use another --out"),
          RunStore(out) as store, frozen_heap()):
        _claim(store, stamp, chunks, partial(run_identity, pipeline, module, model, options=run_options),
               settings.force)
        held_out = _prepare(store, config, state, workspace, budget, settings.force)
        report.resumed = store.counts()["done"]
        scorer = _gate_scorer(store, pipeline, workspace, config, min_scores, settings.concurrency)
        with _lexical_index(store.pending_count(settings.limit)) as lexical_index:
            _run(store, report, module, model, scorer, config, settings, callbacks, lexical_index, held_out)
            _export(store, report, min_scores, lexical_index)
    report.seconds = time.monotonic() - started
    return report


@contextmanager
def _lexical_index(pending: int) -> Iterator[IndexProcess | None]:
    """The samples' near-duplicate index in a process of its own (datagen.runs.screening), ended on the way out,
    for a run of at least INDEX_BESIDE_FROM `pending` chunks; None for a smaller one, on a machine of one core (it
    would only take the run's core), or when it cannot be started."""
    if pending < INDEX_BESIDE_FROM or available_cores() < 2:
        yield None
        return
    try:
        index = IndexProcess()
    except OSError as exc:
        log.warning("no near-duplicate index beside the run (%s): the export finds the pairs", exc)
        yield None
        return
    with index:
        yield index


def _task_model(program: dspy.Module, config: Config, model: "RoleModel | dspy.LM | None", settings: RunSettings,
                tuned: dict) -> tuple[RoleModel, int]:
    """The task model as the run uses it, and the chunk budget; refusing a budget its context cannot hold and a
    model that cannot be reached. `tuned`: the settings a search tuned the compiled program at (its manifest's)."""
    model = task_model(config, model)
    # A program found by `datagen optimize --trials` runs with the temperature and chunk budget it was tuned at.
    if tuned.get("temperature") is not None:
        model = model.with_settings(temperature=tuned["temperature"])
    budget = settings.max_tokens or tuned.get("chunk_tokens") or config.chunking.max_tokens
    check_budget(program, model, budget)
    model = bound_answers(program, model, budget)
    check_reachable(model)
    return model, budget


def _claim(store: RunStore, stamp: str, chunks: Callable[[], Iterator[Chunk]],
           identity: Callable[[str], dict[str, str]], force: bool) -> None:
    """Claim the run folder's store for this run (`identity`, given the inputs' fingerprint; see RunStore.claim)
    and store the chunks, unless the files are unchanged since it last chunked them (`stamp`)."""
    # Files unchanged since the store last chunked them (a resume): their chunks are in the store already.
    # Otherwise the chunks identify the inputs before they are stored, so that the store is never written to
    # before it is known to belong to this run: kept from that pass when they fit in CLAIM_KEPT_CHARS, else the
    # inputs are chunked again (a tenth of a second a thousand chunks, besides the tokenizer's load).
    stored = store.meta()
    unchanged = stored.get(FILES_STAMP) == stamp
    kept: list[Chunk] = []
    store.claim(identity(stored["inputs"] if unchanged else inputs_fingerprint(_keeping(chunks(), kept))), force)
    if not unchanged or not store.counts()["chunks"]:
        store.add_chunks(kept if kept and sum(len(c.text) for c in kept) <= CLAIM_KEPT_CHARS else chunks())
        store.set_meta({FILES_STAMP: stamp})


def _keeping(chunks: Iterator[Chunk], kept: list[Chunk]) -> Iterator[Chunk]:
    """`chunks`, each also put in `kept` until they hold over CLAIM_KEPT_CHARS characters (then `kept` holds one
    more chunk than that, and no more)."""
    size = 0
    for chunk in chunks:
        if size <= CLAIM_KEPT_CHARS:
            kept.append(chunk)
            size += len(chunk.text)
        yield chunk


def _prepare(store: RunStore, config: Config, state: Path | None, workspace: Path, budget: int,
             force: bool) -> Callable[[IndexProcess | None], SplitDraw]:
    """Before any chunk runs: record the compiled program (`state`, None: none) and the chunk budget (what `datagen
    push` puts beside the data, and its commands that make the dataset again), and check the held-out split's rule
    (a changed one refused before any call, datagen.dataset.splits). Returns the split's draw, to start once the
    run knows whether the near-duplicate index's process is beside it (`SplitDraw`)."""
    seen = program_seen_texts(state, workspace)
    to_group = split_texts(store, config.splits, seen, force=force)
    store.set_meta({CHUNK_TOKENS: str(budget), **({COMPILED: str(Path(state).resolve())} if state else {})})
    return partial(SplitDraw, store, config.splits, seen, force, to_group)


def _gate_scorer(store: RunStore, pipeline: str, workspace: Path, config: Config,
                 min_scores: dict[str, float] | None, concurrency: int) -> Scorer | None:
    """The scorer of the quality gate's metrics (None without a gate), with the finished samples it has not
    scored yet scored first (a run resumed with a new --min-score)."""
    if not min_scores:
        return None
    context = MetricContext(workspace, config, corpus=store.chunk_texts(CORPUS_SAMPLE))
    scorer = Scorer(pipeline, context, list(min_scores))
    _score_finished(store, scorer, concurrency)
    return scorer


def _score_finished(store: RunStore, scorer: Scorer, concurrency: int) -> None:
    """Score the finished samples that lack a score the gate needs (a run resumed with a new --min-score):
    only the metrics run, not the pipeline. A sample whose scoring fails stays unscored, so out of the export."""
    def score(item: tuple[Chunk, list]) -> tuple[Chunk, list | None, dict]:
        chunk, samples = item
        with track_usage() as tracker:  # a judge's tokens are paid for, whether or not scoring succeeds
            try:
                scores = [scorer.score(chunk.text, sample) for sample in samples]
            except Exception as exc:
                log.warning("chunk %s: scoring failed: %s: %s", chunk.id, failure_kind(exc), first_line(exc))
                scores = None
        return chunk, scores, tracker.get_total_tokens()

    unscored = [(chunk, samples) for chunk, samples in store.done()
                if any(set(scorer.names) - set(store.sample_scores(chunk.id).get(i, {})) for i in range(len(samples)))]
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="datagen-score") as pool:
        # Written here: the store's connection is this thread's.
        for chunk, scores, usage in pool.map(score, unscored):
            if scores is not None:
                store.set_scores(chunk.id, scores)
            store.add_usage(chunk.id, usage)


def _models(model: RoleModel, scorer: Scorer | None) -> list[tuple[str, RoleModel]]:
    """The models a run calls, by role: the task model, and the judge when one of the scorer's metrics is judged."""
    roles = [("task", model)]
    if scorer is not None and "judge" in scorer.kinds.values():
        roles.append(("judge", scorer.context.judge))
    return roles


def run_gates(config: Config, model: RoleModel, scorer: Scorer | None, settings: RunSettings) -> dict[str, CallGate]:
    """One CallGate per model the run calls (the task model's, and the judges' when scoring), each with its
    role's rpm/tpm from the config; `settings.rpm`/`tpm` override the task model's. A judge that is the task
    model shares its gate, as it shares the provider's limits."""
    gates: dict[str, CallGate] = {}
    for role, role_model_ in _models(model, scorer):
        own = config.role(role)
        rpm, tpm = own.rpm, own.tpm
        if role == "task":
            rpm, tpm = settings.rpm or rpm, settings.tpm or tpm
        gates.setdefault(role_model_.lm.model, CallGate(settings.concurrency, rpm=rpm, tpm=tpm))
    return gates


@dataclass
class _Run:
    """One call's pass over the pending chunks: what its steps share."""

    store: RunStore
    report: Report
    program: dspy.Module
    model: RoleModel
    scorer: Scorer | None
    settings: RunSettings
    gates: dict[str, CallGate]
    meter: CostMeter
    interrupt: Interrupt
    on_outcome: Callable[[Outcome], None] | None
    lexical_index: IndexProcess | None
    split: SplitDraw


def _run(store: RunStore, report: Report, program: dspy.Module, model: RoleModel, scorer: Scorer | None,
         config: Config, settings: RunSettings, callbacks: Callbacks,
         lexical_index: IndexProcess | None, held_out: Callable[[IndexProcess | None], SplitDraw]) -> None:
    """Run the pending chunks, recording each outcome as it comes (its samples also put in `lexical_index`, when
    given), draw the held-out split (`held_out`: drawn at once, or once `lexical_index` found its groups, or at the
    end), and say in `report` why the run stopped early, if it did."""
    total = store.pending_count(settings.limit)
    if callbacks.on_start:
        callbacks.on_start(total)
    gates = run_gates(config, model, scorer, settings)
    meter = run_meter(store, config, [called.name for _, called in _models(model, scorer)],
                      batched=model.name if settings.batch else None, capped=settings.max_cost is not None)
    cap = SpendCap(settings.max_cost, meter) if settings.max_cost is not None else None
    split = held_out(lexical_index)
    run = _Run(store, report, program, model, scorer, settings, gates, meter, Interrupt(),
               _reporting(callbacks, report, meter, gates[model.lm.model], total), lexical_index, split)
    with run.interrupt.handling():
        if settings.batch:
            report.batch = _run_batched(run, callbacks.on_batch)
        else:
            # The run store is the cache: a finished chunk is never asked again, so DSPy's response cache would only
            # add a key, a pickle and a disk write to every call (a third of the throughput at 256 in flight,
            # bench/README.md). What it gave, a hard-killed chunk's finished steps not asked again, is bounded by
            # the chunks in flight and measured there too.
            _record(run, run_chunks(program, model.with_settings(cache=False), store.pending(settings.limit),
                                    settings.concurrency, scorer=scorer, interrupt=run.interrupt,
                                    retried=store.failed_ids(), gates=gates, admit=cap.admit if cap else None,
                                    cluster=settings.cluster, lookahead=settings.max_failures is None))
        if lexical_index is not None:  # no more samples to gather: the last ones indexed while the export reads
            lexical_index.flush()
        split.finish()  # a first Ctrl-C while it draws lets it finish, as it lets the chunks in flight
    if run.interrupt.requested and store.pending_count(settings.limit):
        report.stopped, report.interrupted = f"interrupted ({run.interrupt.label})", True
        report.stop_signal = run.interrupt.signum
    elif cap is not None and cap.refused and store.pending_count(settings.limit):
        report.stopped, report.advice = cap.why(), "raise --max-cost to continue"


def _export(store: RunStore, report: Report, min_scores: dict[str, float] | None,
            lexical_index: IndexProcess | None) -> None:
    """Write the dataset from the store, whole: ShareGPT JSONL, its metadata line for line, and the dataset card
    beside them; samples scored below `min_scores` are left out. Counted in `report`. `lexical_index`: the samples
    this call recorded, indexed for the screening's near-duplicates (None: the export finds them)."""
    export = write_chat_export(store, "sharegpt", report.data_path, min_scores=min_scores,
                               metadata=report.metadata_path,
                               provenance={"pipeline": report.pipeline, "model": report.model},
                               lexical_index=lexical_index)
    store.set_meta({GATE: json.dumps(min_scores or {})})  # for `datagen status`: the gate the export passed
    report.exported, report.held_out = export.splits["train"], export.splits.get("test", 0)
    report.test_path = export.files.get("test")
    report.left_out = export.left_out
    report.held_back = store.sample_count() - export.samples - sum(export.left_out.values())


def _reporting(callbacks: Callbacks, report: Report, meter: CostMeter, gate: CallGate,
               total: int) -> Callable[[Outcome], None] | None:
    """`callbacks.on_outcome`, followed by `callbacks.on_status` with where the run stands (told once at once:
    a resumed run's spend is known before its first chunk)."""
    if not callbacks.on_status:
        return callbacks.on_outcome

    def status() -> RunStatus:
        left = max(total - report.chunks, 0)
        return RunStatus(report.chunks, sum(report.failures.values()), left, meter.spent,
                         meter.projected(meter.chunks, left), gate.level, gate.rate_limited)

    def heard(outcome: Outcome) -> None:
        if callbacks.on_outcome:
            callbacks.on_outcome(outcome)
        callbacks.on_status(status())
    callbacks.on_status(status())
    return heard


def _record(run: _Run, outcomes: Iterator[Outcome]) -> None:
    """Record each chunk's outcome as it comes, counting it in the report and its spend in the meter; after
    `max_failures` failed chunks, start no more (those in flight that have sent a request are recorded as they
    finish; the others are given back, unsent)."""
    report, max_failures = run.report, run.settings.max_failures
    with closing(outcomes):  # closed at once on a stop: the chunks in flight are then waited for, not leaked
        for outcome in outcomes:
            if outcome.failure == FailureKind.DEFERRED:  # a batch round: its answer comes in a later round
                report.deferred += 1
                continue
            run.store.record(outcome)
            if run.lexical_index is not None:  # its near-duplicates found beside the run, not after it
                run.lexical_index.add(outcome.samples)
                run.split.poll()
            run.meter.add(outcome.usage)  # a chunk's tokens, every step's, counted once: when it is recorded
            report.chunks += 1
            report.samples += len(outcome.samples)
            report.dropped.update(drop_reason(d) for d in outcome.outputs.get("dropped") or [])
            if outcome.failure:
                report.failures[outcome.failure] += 1
                report.failure_examples.setdefault(outcome.failure, outcome.message or "")
                log.warning("chunk %s (%s): %s: %s", outcome.chunk.id, outcome.chunk.source, outcome.failure,
                            outcome.message)
            if run.on_outcome:
                run.on_outcome(outcome)
            if max_failures is not None and not report.stopped and sum(report.failures.values()) >= max_failures:
                # As a first Ctrl-C does: nothing new starts; the chunks in flight, paid for, are still recorded.
                report.stopped = _failures_stop(report, max_failures)
                run.interrupt.finish()
    if max_failures is not None and report.stopped:  # the chunks in flight then may have failed too: say how many
        report.stopped = _failures_stop(report, max_failures)


def _failures_stop(report: Report, max_failures: int) -> str:
    """Why a run stopped on --max-failures, with the failures it came to: "stopped after 4 failed chunks
    (--max-failures 1)"."""
    failed = sum(report.failures.values())
    return f"stopped after {failed} failed chunk{'s' * (failed != 1)} (--max-failures {max_failures})"


def _run_batched(run: _Run, on_batch: Callable[[JobStatus], None] | None) -> BatchSummary:
    """The pending chunks carried through provider batch jobs, round by round (datagen.runs.batch). The task
    model's requests go into jobs, so they pass no gate; judges, when scoring, are called as usual. A chunk that
    failed in an earlier call asks afresh: its requests are keyed apart (salted by the batch generation, which
    moves on only once a batch call has finished, so a killed call's resume finds its own jobs again)."""
    store, model, settings = run.store, run.model, run.settings
    meta = store.meta()
    generation = int(meta.get(BATCH_GENERATION, 0))
    if meta.get(BATCH_DONE) == str(generation):
        generation += 1
        store.set_meta({BATCH_GENERATION: str(generation)})
    interactive = {name: gate for name, gate in run.gates.items() if name != model.lm.model}
    retried = store.failed_ids()

    def run_round(batched: RoleModel) -> int:
        run.report.deferred = 0
        retry = batch_model(model, book=batched.lm.engine.book.salted(f"retry {generation}"))
        outcomes = run_chunks(run.program, batched, store.pending(settings.limit), settings.concurrency,
                              scorer=run.scorer, interrupt=run.interrupt, retried=retried, gates=interactive,
                              retry_model=retry)
        _record(run, _charged_as_batch(outcomes, model.name))
        return 0 if run.report.stopped else run.report.deferred

    summary = run_batches(store, model, run_round, poll_seconds=settings.batch.poll, batch_size=settings.batch.size,
                          on_status=on_batch, should_stop=lambda: run.interrupt.requested)
    if not summary.stopped and not run.report.stopped:
        store.set_meta({BATCH_DONE: str(generation)})
    return summary


def _charged_as_batch(outcomes: Iterator[Outcome], model: str) -> Iterator[Outcome]:
    """`outcomes` with `model`'s tokens under its `batch_key`: they were charged at batch prices (a judge's,
    called as usual, were not)."""
    with closing(outcomes):
        for outcome in outcomes:
            outcome.usage = {batch_key(name) if name == model else name: used for name, used in outcome.usage.items()}
            yield outcome
