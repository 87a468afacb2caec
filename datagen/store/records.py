"""What a run records of each chunk: its outcome (samples or failure), the steps and LM calls that led to it,
and the reviews people give its samples."""

from dataclasses import dataclass, field

from datagen.errors import FailureKind
from datagen.samples import Sample
from datagen.text.chunking import Chunk


@dataclass
class Step:
    """One predictor call of a chunk: the step's name, what it was given, and what it answered (or its error)."""

    step: str
    inputs: dict
    outputs: dict | None = None
    error: str | None = None


@dataclass
class Call:
    """One LM call of a chunk: the exact messages sent and the raw completion (or the error)."""

    step: str
    model: str
    messages: list
    response: str | None = None
    error: str | None = None
    usage: dict | None = None
    cached: bool | None = None
    seconds: float = 0.0
    # With a role of several servers (datagen/lm/servers.py): each request the call sent, as (role, api_base, error or
    # None); summed per server into the run store's `servers` table, not stored with the call.
    servers: list[tuple[str, str, str | None]] = field(default_factory=list)


@dataclass
class Outcome:
    """One chunk's result: its samples, or the kind of failure and what went wrong."""

    chunk: Chunk
    samples: list[Sample] = field(default_factory=list)
    failure: FailureKind | str | None = None  # why it failed: a FailureKind, or an open-ended kind (see lm.failures)
    message: str | None = None
    seconds: float = 0.0
    outputs: dict = field(default_factory=dict)
    raw: str | None = None
    usage: dict = field(default_factory=dict)
    scores: list[dict] = field(default_factory=list)  # per sample: {metric: Score (value, feedback)}
    steps: list[Step] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)


@dataclass
class Review:
    """A person's review of one sample (`datagen view`): `verdict` "good", "bad" or None (not rated), 1-5
    `ratings` by criterion name, a `comment`, and the corrected `input` and `output` (None: as generated; the
    generated sample stays in the store beside them). `updated_at`: Unix time of the last change."""

    chunk_id: str
    sample: int
    verdict: str | None = None
    ratings: dict[str, int] = field(default_factory=dict)
    comment: str | None = None
    input: str | None = None
    output: str | None = None
    updated_at: float | None = None

    @property
    def corrected(self) -> bool:
        return self.input is not None or self.output is not None

    @property
    def empty(self) -> bool:
        return self.verdict is None and not self.ratings and not self.comment and not self.corrected


def sum_usage(earlier: dict | None, more: dict | None) -> dict:
    """Two usages ({model: {prompt_tokens: n, ...}}) added up, field by field (nested counts too)."""
    total = dict(earlier or {})
    for key, value in (more or {}).items():
        before = total.get(key)
        if isinstance(value, dict) and isinstance(before, dict | None):
            total[key] = sum_usage(before, value)
        elif isinstance(value, int | float) and isinstance(before, int | float) and not isinstance(value, bool):
            total[key] = before + value
        elif value is not None or key not in total:
            total[key] = value
    return total


def cached_tokens(counts: dict | None) -> int:
    """The cached prompt tokens of one model's usage ({"prompt_tokens": n, "prompt_tokens_details":
    {"cached_tokens": k}, ...}, as DSPy's usage tracker and `RunStore.usage` give it): `k`, a part of the prompt
    tokens that the provider read from its prompt cache (OpenAI's automatic prompt caching, Anthropic's cache
    reads, vLLM's prefix caching, as each reports it); 0 where it reported none."""
    details = (counts or {}).get("prompt_tokens_details")
    value = details.get("cached_tokens") if isinstance(details, dict) else None
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 else 0
