"""What a run amounts to, read from its store: progress, failures by kind, tokens and cost per model."""

import json
from dataclasses import dataclass, field
from pathlib import Path

from datagen.store import RunStore

GATE = "min_scores"  # run store meta key: the --min-score bars of the run's last export ({metric: bar}, JSON)


@dataclass
class RunSummary:
    run_dir: Path
    meta: dict[str, str]
    chunks: int
    done: int
    failed: int
    samples: int
    failures: dict[str, tuple[int, str]]  # kind -> (count, an example message)
    usage: dict[str, dict[str, int]]  # model -> {prompt_tokens, completion_tokens}
    dropped: dict[str, int] = field(default_factory=dict)  # candidates the pipeline's own checks rejected, by reason
    gate: dict[str, float] = field(default_factory=dict)  # the --min-score bars of the last generate
    kept: int | None = None  # samples that pass the gate (None without one)

    @property
    def pending(self) -> int:
        return self.chunks - self.done - self.failed

    @property
    def cost(self) -> float | None:
        """US dollars at litellm's bundled prices; None when any model's price is unknown."""
        costs = [cost_usd(model, u["prompt_tokens"], u["completion_tokens"]) for model, u in self.usage.items()]
        return None if not costs or None in costs else sum(costs)

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
        if dropped and dropped >= self.samples:
            share = "every candidate" if not self.samples else "most candidates"
            return f"the pipeline's own checks dropped {share}: {self.drops()}"
        if self.kept is not None and self.kept * 2 < self.samples:
            share = "every sample" if not self.kept else "most samples"
            return f"the quality gate kept {share} out: {self.gate_line()}"
        return None

    def drops(self) -> str:
        """The pipeline's rejections in a line: "5 (unanswerable 3, trivial 2)"."""
        reasons = ", ".join(f"{reason} {n}" for reason, n in self.dropped.items())
        return f"{sum(self.dropped.values())} ({reasons})"

    def gate_line(self) -> str:
        """The --min-score gate in a line: its bars and how many samples pass them."""
        bars = ", ".join(f"{name} >= {bar:g}" for name, bar in self.gate.items())
        return f"--min-score {bars}: {self.kept} of {self.samples} samples pass, {self.samples - self.kept} kept out"


def cost_usd(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    import litellm

    # Otherwise litellm prints a banner ("Provider List: ...") for a model it cannot price, such as the local one.
    litellm.suppress_debug_info = True
    try:
        prompt, completion = litellm.cost_per_token(model=model, prompt_tokens=prompt_tokens,
                                                    completion_tokens=completion_tokens)
    except Exception:  # litellm raises a bare Exception for models missing from its price list
        return None
    return prompt + completion


def summarize(run_dir: str | Path) -> RunSummary:
    """A run's summary, read from its store."""
    from datagen.export import run_samples

    run_dir = Path(run_dir)
    with RunStore.existing(run_dir) as store:
        counts, meta = store.counts(), store.meta()
        gate = json.loads(meta.get(GATE) or "{}")
        kept = sum(1 for _ in run_samples(store, gate)) if gate else None
        return RunSummary(run_dir, meta, counts["chunks"], counts["done"], counts["failed"], store.sample_count(),
                          store.failures(), store.usage(), store.dropped(), gate, kept)
