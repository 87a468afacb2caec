"""What a run amounts to, read from its store: progress, failures by kind, tokens and cost per model."""

import json
from dataclasses import dataclass, field
from pathlib import Path

from datagen.dataset import run_samples
from datagen.dataset.screening import RunQuality, recorded_quality
from datagen.runs.batch import TERMINAL
from datagen.runs.cost import CostMeter, run_prices
from datagen.store import GATE, RunStore
from datagen.workspace import Config


@dataclass
class RunSummary:
    run_dir: Path
    meta: dict[str, str]
    chunks: int
    done: int
    failed: int
    samples: int
    failures: dict[str, tuple[int, str]]  # kind -> (count, an example message)
    usage: dict[str, dict]  # model -> {prompt_tokens, completion_tokens, prompt_tokens_details: {cached_tokens}}
    dropped: dict[str, int] = field(default_factory=dict)  # candidates the pipeline's own checks rejected, by reason
    gate: dict[str, float] = field(default_factory=dict)  # the --min-score bars of the last generate
    kept: int | None = None  # samples that pass the gate (None without one)
    config: Config | None = None  # where the prices set in datagen.toml come from (None: litellm's alone)
    batch_jobs: list[dict] = field(default_factory=list)  # the run's batch jobs (RunStore.batch_jobs), oldest first
    # Requests to each server of a role with several api_bases (RunStore.servers): role, model, api_base, calls,
    # failures, last_error.
    servers: list[dict] = field(default_factory=list)
    held_out: int = 0  # chunks in the held-out test split (datagen.dataset.splits)
    quality: RunQuality | None = None  # as last measured (datagen.dataset.screening); None: not for these samples

    @property
    def pending(self) -> int:
        return self.chunks - self.done - self.failed

    @property
    def jobs_in_flight(self) -> list[dict]:
        """The batch jobs that have not ended yet: the next `generate --batch` collects them."""
        return [job for job in self.batch_jobs if job["status"] not in TERMINAL]

    @property
    def cost(self) -> float | None:
        """US dollars the run's tokens cost (`datagen.runs.cost`): at the prices `config` sets per role
        (`input_price`, `output_price`), else litellm's bundled ones; batch prices for the tokens charged through
        a batch API (usage keys ending " (batch)"). 0.0 before any tokens; None when a model that spent tokens has
        no price. Raises DatagenError for a role that sets one price without the other."""
        return self._meter().spent

    @property
    def unpriced(self) -> list[str]:
        """The models that spent tokens and have no price (why `cost` is None)."""
        return self._meter().unpriced

    @property
    def cached_at_input(self) -> list[str]:
        """The models whose cached prompt tokens `cost` prices as plain input: they have a price but no cached rate
        (neither `cached_input_price` in datagen.toml nor litellm's `cache_read_input_token_cost`)."""
        return self._meter().cached_at_input

    def _meter(self) -> CostMeter:
        meter = CostMeter(run_prices(self.usage, self.config))
        meter.add(self.usage, chunks=0)
        return meter

    def why_few_samples(self) -> str | None:
        """A run that yields few or no samples says why."""
        if self.chunks == 0:
            return "the inputs produced no chunks"
        if self.done == 0 and self.failed == 0:
            return "no chunk has been run yet"
        if self.failed > self.done:
            kind, (count, example) = max(self.failures.items(), key=lambda item: item[1][0])
            return f"most chunks failed: {count} × {kind}, e.g. {example}"
        dropped = sum(self.dropped.values())
        if self.samples and self.kept == 0:  # the samples made were all kept out: the gate emptied the dataset
            drops = f"; the pipeline's own checks dropped {self.drops()} before it" if dropped else ""
            return f"the quality gate kept every sample out: {self.gate_line()}{drops}"
        if dropped and dropped >= self.samples:
            share = "every candidate" if not self.samples else "most candidates"
            return f"the pipeline's own checks dropped {share}: {self.drops()}"
        if self.kept is not None and self.kept * 2 < self.samples:
            share = "every sample" if not self.kept else "most samples"
            return f"the quality gate kept {share} out: {self.gate_line()}"
        return None

    def server_lines(self) -> list[str]:
        """One line per server of a role with several api_bases: "task server http://a:8000/v1: 120 calls, 2 failed
        (last: ...)", or "..., none failed"."""
        lines = []
        for s in self.servers:
            failed = f", {s['failures']:,} failed (last: {s['last_error']})" if s["failures"] else ", none failed"
            lines.append(f"{s['role']} server {s['api_base']}: {s['calls']:,} calls{failed}")
        return lines

    def drops(self) -> str:
        """The pipeline's rejections in a line: "5 (unanswerable 3, trivial 2)"."""
        reasons = ", ".join(f"{reason} {n}" for reason, n in self.dropped.items())
        return f"{sum(self.dropped.values())} ({reasons})"

    def gate_line(self) -> str:
        """The --min-score gate in a line: its bars and how many samples pass them."""
        bars = ", ".join(f"{name} >= {bar:g}" for name, bar in self.gate.items())
        return f"--min-score {bars}: {self.kept} of {self.samples} samples pass, {self.samples - self.kept} kept out"


def summarize(run_dir: str | Path, config: Config | None = None) -> RunSummary:
    """A run's summary, read from its store. `config` (the workspace's, `load_config()`) prices the models it
    sets `input_price` / `output_price` for; without it, `cost` is at litellm's bundled prices alone."""
    run_dir = Path(run_dir)
    with RunStore.reading(run_dir) as store:
        counts, meta = store.counts(), store.meta()
        gate = json.loads(meta.get(GATE) or "{}")
        kept = sum(1 for _ in run_samples(store, gate)) if gate else None
        return RunSummary(run_dir, meta, counts["chunks"], counts["done"], counts["failed"], store.sample_count(),
                          store.failures(), store.usage(), store.dropped(), gate, kept, config,
                          batch_jobs=store.batch_jobs(), servers=store.servers(),
                          held_out=sum(store.split_counts().get("test", {}).values()),
                          quality=recorded_quality(store))
