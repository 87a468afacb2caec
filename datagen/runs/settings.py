"""What a run is told and what it tells back: `RunSettings` (and an executor's own options: `BatchOptions`,
`RayCluster`, `WorkerProcesses`), `Callbacks`, `RunStatus` as the run goes, and the `Report` at its end."""

import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import InitVar, dataclass, field, replace
from pathlib import Path

from datagen.errors import ConfigError
from datagen.runs.batch import BatchSummary, JobStatus
from datagen.runs.cluster import RayCluster
from datagen.runs.processes import WorkerProcesses
from datagen.store import Outcome

# The release that drops RunSettings' flat batch_poll and batch_size (use `batch=BatchOptions(...)`).
FLAT_BATCH_REMOVED_IN = "0.3"


@dataclass(frozen=True)
class BatchOptions:
    """How a `--batch` run uses the provider's batch API (OpenAI's Batch API, half price; see datagen.runs.batch).

    Args:
        poll: seconds between polls of the batch jobs.
        size: requests a batch job carries at most (at least 1); None: as many as the provider takes (OpenAI:
            50,000).
    """

    poll: float = 30.0
    size: int | None = None


@dataclass(frozen=True)
class RunSettings:
    """How a run goes, whatever the program.

    Args:
        max_tokens: the chunk budget in tokens; None: the config's, else 512.
        limit: run the first N chunks only; None: all.
        concurrency: chunks in flight (at least 1), and the most LM requests in flight to each model (fewer
            while it answers 429).
        rpm: the task model's LM calls a minute at most, spaced evenly; None: the config's `[models.task]` rpm,
            else no cap.
        tpm: the task model's tokens a minute at most; None: the config's `[models.task]` tpm, else no cap.
        max_failures: stop cleanly after that many failed chunks; None: never.
        max_cost: stop cleanly before the run's spend passes this many US dollars; None: no cap. Needs a price
            for every model the run calls (datagen.runs.cost); not with `batch`.
        force: reuse a run folder made by another program or other inputs, starting afresh.
        batch: send the task model's requests as provider batch jobs, with these `BatchOptions`; `True` for the
            default options; None (or `False`): ask the model directly. Not with `cluster`.
        cluster: run the chunks on Ray actors (`RayCluster`) or on worker processes of this machine
            (`WorkerProcesses`); None: in this process.

    `batch_poll` and `batch_size`, the flat spellings of `BatchOptions.poll` and `.size` (with `batch=True`), are
    still taken with a DeprecationWarning until datagen 0.3; without `batch` they change nothing, as before.
    """

    max_tokens: int | None = None
    limit: int | None = None
    concurrency: int = 1
    rpm: float | None = None
    tpm: int | None = None
    max_failures: int | None = None
    max_cost: float | None = None
    force: bool = False
    batch: BatchOptions | None = None
    batch_poll: InitVar[float | None] = None
    batch_size: InitVar[int | None] = None
    cluster: RayCluster | WorkerProcesses | None = None

    def __post_init__(self, batch_poll: float | None, batch_size: int | None) -> None:
        batch = {True: BatchOptions(), False: None}[self.batch] if isinstance(self.batch, bool) else self.batch
        if batch is not None and not isinstance(batch, BatchOptions):
            raise ConfigError(f"RunSettings(batch={self.batch!r}): expected a BatchOptions, True or None")
        # A flat value equal to what `batch` already says changes nothing: dataclasses.replace passes them so.
        given = {name: value for name, value in (("poll", batch_poll), ("size", batch_size))
                 if value is not None and value != _flat_value(batch, name)}
        if given:
            warnings.warn("RunSettings(batch_poll=..., batch_size=...) is deprecated and will be removed in datagen "
                          f"{FLAT_BATCH_REMOVED_IN}: use RunSettings(batch=BatchOptions(poll=..., size=...))",
                          DeprecationWarning, stacklevel=3)
            if isinstance(self.batch, BatchOptions):
                raise ConfigError("RunSettings: batch_poll and batch_size go inside BatchOptions, not beside it")
            if batch is not None:
                batch = replace(batch, **given)
        object.__setattr__(self, "batch", batch)

    def check(self) -> None:
        """Refuse options that do not go together.

        Raises:
            ConfigError: `batch` with a `cluster` (batch jobs are sent from here), or with `max_cost` (a batch
                job's cost is known only once it ends).
        """
        if self.batch and self.cluster is not None:
            raise ConfigError("--batch sends the requests to the provider's batch API from here: not with "
                              "--executor ray or processes")
        if self.batch and self.max_cost is not None:
            raise ConfigError("--max-cost does not apply with --batch: a batch job's cost is known only once it "
                              "ends (use --limit to bound a batch run)")


@dataclass(frozen=True)
class RunStatus:
    """Where a run stands after a chunk finishes (and once at its start).

    Args:
        done: chunks run by this call (finished or failed).
        failed: chunks failed in this call.
        left: chunks still to run.
        spent: US dollars spent by the run folder so far (earlier calls included); None where a model's price is
            unknown.
        projected: US dollars for the whole run (spent + spent per chunk x chunks left); None until known.
        level: the task model's LM requests in flight allowed now (cut on 429s).
        rate_limited: 429s seen.
    """

    done: int
    failed: int
    left: int
    spent: float | None
    projected: float | None
    level: int
    rate_limited: int


@dataclass(frozen=True)
class Callbacks:
    """What the caller hears while a run goes; each is optional.

    Args:
        on_start: called with the number of chunks about to run.
        on_outcome: called with each chunk's `Outcome` as it finishes, in the order they finish.
        on_status: called with a `RunStatus` at the start and after each chunk.
        on_batch: with `batch`, called with each batch job's `JobStatus` as it changes.
    """

    on_start: Callable[[int], None] | None = None
    on_outcome: Callable[[Outcome], None] | None = None
    on_status: Callable[[RunStatus], None] | None = None
    on_batch: Callable[[JobStatus], None] | None = None


@dataclass
class Report:
    """What `generate` did.

    Args:
        pipeline: the pipeline's name (a program object's class name).
        model: the task model's name.
        data_path: the dataset, ShareGPT JSONL.
        metadata_path: each sample's chunk and provenance, JSONL, line for line with `data_path`.
        chunks: chunks run by this call.
        samples: samples made by this call.
        failures: failed chunks by kind.
        failure_examples: an example message of each kind of failure.
        seconds: how long the call took.
        resumed: chunks already done in the run folder before this call.
        exported: samples in the export's train split (`data_path`), earlier calls' included.
        held_out: samples in the held-out test split (`test_path`), which training leaves out.
        test_path: the test split's file beside `data_path`; None when the run holds no test split out.
        held_back: samples in the store kept out of the export by `min_scores`.
        left_out: samples the export's screen left out, by reason ({"near-duplicate": n, "contaminated": n};
            datagen.dataset.screening).
        dropped: candidates the program's own checks rejected, by reason.
        stopped: why the run stopped before its last chunk; None when it did not.
        advice: what to do about a stop.
        interrupted: stopped by a stop signal (Ctrl-C, SIGTERM, SIGHUP: see datagen.util.signals).
        stop_signal: that signal's number (signal.SIGINT for Ctrl-C); None when none stopped the run.
        deferred: chunks waiting for a batch job's answers (with `batch`).
        batch: what the batch jobs did (with `batch`).
    """

    pipeline: str
    model: str
    data_path: Path
    metadata_path: Path
    chunks: int = 0
    samples: int = 0
    failures: Counter = field(default_factory=Counter)
    failure_examples: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    resumed: int = 0
    exported: int = 0
    held_out: int = 0
    test_path: Path | None = None
    held_back: int = 0
    left_out: dict[str, int] = field(default_factory=dict)
    dropped: Counter = field(default_factory=Counter)
    stopped: str | None = None
    advice: str = "run the same command again to resume"
    interrupted: bool = False
    stop_signal: int | None = None
    deferred: int = 0
    batch: BatchSummary | None = None


# 0.1's flat fields' defaults, which its RunSettings reported without a batch run.
_FLAT_DEFAULTS = {"poll": BatchOptions.poll, "size": 50_000}


def _flat_value(batch: BatchOptions | None, name: str):
    return getattr(batch, name) if batch is not None else _FLAT_DEFAULTS[name]


# The 0.1 attributes `RunSettings.batch_poll` and `.batch_size`, read from `batch` (the dataclass's init-only
# variables of those names would otherwise leave their default, None, on the class).
RunSettings.batch_poll = property(lambda settings: _flat_value(settings.batch, "poll"))
RunSettings.batch_size = property(lambda settings: _flat_value(settings.batch, "size"))
