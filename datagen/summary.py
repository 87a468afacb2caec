"""What a run amounts to, read from its store: progress, failures by kind, tokens and cost per model."""

from dataclasses import dataclass
from pathlib import Path

from datagen.store import RunStore


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
        return None


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
    run_dir = Path(run_dir)
    with RunStore.existing(run_dir) as store:
        counts = store.counts()
        return RunSummary(run_dir, store.meta(), counts["chunks"], counts["done"], counts["failed"],
                          store.sample_count(), store.failures(), store.usage())
