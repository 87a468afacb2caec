"""Prices and spend: what a model's tokens cost, what a run has spent so far, what it will spend in all, and the
spending cap (`--max-cost`) that stops it.

A price comes from the role's `input_price` / `output_price` in datagen.toml when set (US dollars per million
tokens), else from litellm's bundled price list (`litellm.model_cost`, read from litellm's local copy: `datagen`
sets `LITELLM_LOCAL_MODEL_COST_MAP`, so nothing is fetched). A model neither knows has no price (None), and a
spend that includes its tokens is unknown rather than guessed.

Cached prompt tokens (the part of a prompt the provider read from its prompt cache, as its usage reports it:
`datagen.store.cached_tokens`) are priced at the role's `cached_input_price` when set, else at litellm's
`cache_read_input_token_cost` where its list has one; a model with neither has its cached tokens priced as plain
input: a provider's discount is never guessed, so the figure errs high.
"""

import dataclasses
import functools
import math
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from datagen.errors import ConfigError
from datagen.lm import LOCAL_MODEL
from datagen.store import RunStore, cached_tokens, sum_usage
from datagen.workspace import ROLES, Config, ModelSettings
from datagen.workspace.config import unpriced_half

PER = 1_000_000  # prices are per million tokens
# Models that cost nothing a token unless the config prices them: the embedded model, run in process
# (datagen.lm.local.LOCAL_MODEL), and Ollama's, which litellm prices at 0 (they run on the user's machine).
_FREE_PROVIDERS = ("local", "ollama", "ollama_chat")
BATCH_DISCOUNT = 0.5  # OpenAI's and Anthropic's batch APIs charge half the interactive price
# A usage key for tokens charged at batch prices: "openai/gpt-4o-mini (batch)". Usage records how it was charged,
# so a run that mixes interactive and batch calls prices each at its own rate.
BATCH_SUFFIX = " (batch)"


def batch_key(model: str) -> str:
    """The usage key of `model`'s tokens spent through a provider batch API."""
    return model + BATCH_SUFFIX


def _charged(model: str) -> tuple[str, bool]:
    """A usage key as (model, whether at batch prices)."""
    return (model[:-len(BATCH_SUFFIX)], True) if model.endswith(BATCH_SUFFIX) else (model, False)


@dataclass(frozen=True)
class Price:
    """What a model's tokens cost: `input` per million prompt tokens, `output` per million completion tokens and
    `cached_input` per million cached prompt tokens (read from the provider's prompt cache), in US dollars.
    `cached_input` None (the default): no cached rate is known, and cached prompt tokens cost `input`."""

    input: float
    output: float
    cached_input: float | None = None

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        """US dollars for that many prompt and completion tokens, `cached_tokens` of the prompt tokens (0 by
        default; at most `prompt_tokens`, more counts as `prompt_tokens`) at the cached rate."""
        cached = min(max(cached_tokens, 0), prompt_tokens)
        cached_rate = self.input if self.cached_input is None else self.cached_input
        return ((prompt_tokens - cached) * self.input + cached * cached_rate
                + completion_tokens * self.output) / PER


def model_price(model: str, settings: ModelSettings | None = None, *, batch: bool = False) -> Price | None:
    """The price of `model`'s tokens, US dollars per million, or None when unknown.

    `model` is a model string as configured, with its provider prefix ("openai/gpt-4o-mini"). `settings` are the
    settings of the role that runs it (`Config.role(role)`), if any: its `input_price` and `output_price`, when
    set, are the price, in interactive and batch runs alike (they are the user's word on what a token costs);
    a zero price is free. Otherwise the price is litellm's bundled one (`litellm.model_cost`), looked up as
    litellm's `cost_per_token` does: the name as given, then without its provider prefix when the entry found
    belongs to that provider ("openai/gpt-4o-mini" is priced as "gpt-4o-mini", "hosted_vllm/gpt-4o-mini" is
    not). The embedded model ("local/...") and Ollama's ("ollama/...", "ollama_chat/...") cost 0, as litellm
    has it. With `batch=True` the price is that of the providers' batch APIs: the entry's
    `input_cost_per_token_batches` / `output_cost_per_token_batches` where litellm lists them, else half the
    interactive price (the discount OpenAI's and Anthropic's batch APIs give).

    The cached rate (`Price.cached_input`) is the role's `cached_input_price` when set (over either price above);
    else, at litellm's price, the entry's `cache_read_input_token_cost` (`cache_read_input_token_cost_batches` at
    batch prices); else None, and cached prompt tokens are priced as plain input. At the role's own prices without
    `cached_input_price`, it is None: litellm's cached rate is not mixed with the user's prices.

    Each model is looked up in litellm's list once per process (this runs for every chunk).

    Raises ConfigError (a DatagenError) when `settings` sets one of `input_price` / `output_price` without the
    other (the message names the missing one).
    """
    if settings is not None and (settings.input_price is not None or settings.output_price is not None):
        if (missing := unpriced_half(settings)) is not None:
            given = "output_price" if missing == "input_price" else "input_price"
            raise ConfigError(f"model {model}: {missing} is not set while {given} is: a price needs both "
                               f"(US dollars per million tokens)")
        return Price(settings.input_price, settings.output_price, settings.cached_input_price)
    price = _bundled_price(model, batch)
    if price is not None and settings is not None and settings.cached_input_price is not None:
        price = dataclasses.replace(price, cached_input=settings.cached_input_price)
    return price


@functools.cache
def _bundled_price(model: str, batch: bool) -> Price | None:
    provider, _, name = model.partition("/")
    if name and provider in _FREE_PROVIDERS:
        return Price(0.0, 0.0)
    entry = _bundled_entry(model)
    if entry is None:
        return None
    prompt, completion = entry.get("input_cost_per_token"), entry.get("output_cost_per_token")
    if not _numbers(prompt, completion):
        return None
    cached = entry.get("cache_read_input_token_cost_batches" if batch else "cache_read_input_token_cost")
    cached = cached * PER if _numbers(cached) else None
    if batch:
        batch_prompt, batch_completion = (entry.get("input_cost_per_token_batches"),
                                          entry.get("output_cost_per_token_batches"))
        if _numbers(batch_prompt, batch_completion):
            prompt, completion = batch_prompt, batch_completion
        else:
            prompt, completion = prompt * BATCH_DISCOUNT, completion * BATCH_DISCOUNT
    return Price(prompt * PER, completion * PER, cached)


def _numbers(*values) -> bool:
    return all(isinstance(value, int | float) and not isinstance(value, bool) for value in values)


def _bundled_entry(model: str) -> Mapping | None:
    """litellm's price-list entry for `model`: the name as given, else the name without its provider prefix if
    the entry is that provider's (or names none)."""
    import litellm

    table = litellm.model_cost
    if isinstance(entry := table.get(model), Mapping):
        return entry
    provider, _, name = model.partition("/")
    if name and isinstance(entry := table.get(name), Mapping):
        owner = entry.get("litellm_provider")
        if owner is None or (isinstance(owner, str) and owner.startswith(provider)):
            return entry
    return None


def run_prices(models: Iterable[str], config: Config | None = None) -> dict[str, Price | None]:
    """The price of each of `models` (the model names a run's usage is keyed by, e.g. `RunStore.usage()`'s
    keys), by `model_price`: with the settings of the first role, in the order task, judge, prompt, that
    `config` resolves to that model (`Config.role`, so a judge with no model of its own shares the task's
    settings; a role with no model is the embedded model). Usage is keyed by the model names as configured
    (`datagen.lm.roles.track_usage`), never by a wire name. A key ending in " (batch)" (`batch_key`) is priced at
    that model's batch price. Raises DatagenError as `model_price` does."""
    roles: dict[str, ModelSettings] = {}
    for role in ROLES if config is not None else ():
        settings = config.role(role)
        roles.setdefault(settings.model or LOCAL_MODEL, settings)
    prices = {}
    for key in models:
        model, batch = _charged(key)
        settings = roles.get(model)
        configured = (settings.model or LOCAL_MODEL) if settings is not None else model
        prices[key] = model_price(configured, settings, batch=batch)
    return prices


class CostMeter:
    """What a run spends as it goes: tokens by model, priced, and the projected total.

    `prices` maps the model names usage is keyed by ({model: {"prompt_tokens": int, "completion_tokens": int,
    ...}}, the shape of `RunStore.usage()` and of a chunk outcome's `usage`) to their `Price`, or None when
    unknown; `run_prices` makes it from a config. A model missing from it is priced by `model_price` the first
    time it spends tokens (at batch prices for a `batch_key`). Cached prompt tokens (`prompt_tokens_details.
    cached_tokens`, as providers report them) are priced at the price's cached rate (`Price.cached_input`; plain
    input where it has none). One writer: not thread-safe.

    To resume a run, `add(store.usage(), chunks=N)` once with N the chunks it had already run (done or failed),
    and count those in `projected`'s `done`.
    """

    def __init__(self, prices: Mapping[str, Price | None] | None = None):
        self._prices: dict[str, Price | None] = dict(prices or {})
        self.usage: dict[str, dict] = {}  # model -> its usage so far, summed field by field
        self.chunks = 0  # chunks whose usage was added (see `add`)

    def price(self, model: str) -> Price | None:
        """`model`'s price: as given to the meter, else `model_price`'s (looked up once)."""
        if model not in self._prices:
            name, batch = _charged(model)
            self._prices[model] = model_price(name, batch=batch)
        return self._prices[model]

    def add(self, usage: Mapping[str, Mapping], chunks: int = 1) -> None:
        """Add a chunk's usage ({model: {"prompt_tokens": int, "completion_tokens": int, ...}}; other keys and
        missing or None counts are ignored). `chunks`: how many chunks it covers (1; 0 for tokens spent on a
        chunk already counted, such as scoring it afterwards; N for a resumed run's earlier usage)."""
        self.usage = sum_usage(self.usage, usage)
        self.chunks += chunks

    def _spending(self) -> Iterator[tuple[str, int, int, int]]:
        """(model, prompt tokens, completion tokens, cached prompt tokens) of each model that spent tokens."""
        for model, counts in self.usage.items():
            prompt, completion = int(counts.get("prompt_tokens") or 0), int(counts.get("completion_tokens") or 0)
            if prompt or completion:
                yield model, prompt, completion, cached_tokens(counts)

    @property
    def unpriced(self) -> list[str]:
        """The models that spent tokens and have no price: why `spent` is None."""
        return [model for model, *_ in self._spending() if self.price(model) is None]

    @property
    def cached_at_input(self) -> list[str]:
        """The models that spent cached prompt tokens and have a price without a cached rate: their cached tokens
        are priced as plain input in `spent` (no discount is guessed)."""
        return [model for model, _, _, cached in self._spending()
                if cached and (price := self.price(model)) is not None and price.cached_input is None]

    @property
    def spent(self) -> float | None:
        """US dollars spent so far (0.0 before any tokens); None when a model that spent tokens has no price."""
        total = 0.0
        for model, prompt, completion, cached in self._spending():
            if (price := self.price(model)) is None:
                return None
            total += price.cost(prompt, completion, cached)
        return total

    @property
    def per_chunk(self) -> float | None:
        """US dollars a chunk so far (`spent` / `chunks`); None before the first chunk or without prices."""
        spent = self.spent
        return None if spent is None or self.chunks <= 0 else spent / self.chunks

    def projected(self, done: int, left: int) -> float | None:
        """The run's projected total, US dollars: `spent` + `spent` / `done` * `left`, where `done` is the chunks
        run so far (done or failed: failures spend tokens too) and `left` those still to run. None before the
        first chunk (`done` <= 0) or without prices."""
        spent = self.spent
        if spent is None or done <= 0:
            return None
        return spent + spent / done * max(left, 0)

    def chunks_within(self, limit: float) -> int | None:
        """How many more chunks fit under `limit` US dollars at the cost of a chunk so far (`per_chunk`): 0 once
        the spend has reached it (known even before the first chunk: a cap of 0 starts nothing), `sys.maxsize`
        when chunks cost nothing or the cap is infinite. A run with a spending cap
        (`--max-cost`) starts a chunk only while fewer than this many are in flight. None while unknown (before
        the first chunk, or without prices)."""
        spent, each = self.spent, self.per_chunk
        if spent is not None and spent >= limit:
            return 0
        if spent is None or each is None:
            return None
        if each <= 0 or math.isinf(limit):
            return sys.maxsize
        return int((limit - spent) // each)


def run_meter(store: RunStore, config: Config, models: Iterable[str], *, batched: str | None = None,
              capped: bool = False) -> CostMeter:
    """A run folder's spend so far, priced by the config and litellm's list, to be added to as chunks finish.

    Args:
        store: the run's store: its usage so far, and the chunks (done or failed) that spent it.
        config: the workspace's config, whose roles may set prices.
        models: the models the run calls (the task model, a judge).
        batched: the model whose requests go through a provider batch API (priced at batch prices); None: none.
        capped: the run has a spending cap, so every one of `models` needs a price.

    Returns:
        A `CostMeter` holding the spend so far.

    Raises:
        ConfigError: `capped`, and one of `models` has no price (the message names it and says how to set one);
            or a role sets one price without the other.
    """
    models = list(models)
    spent = store.usage()
    # Every key the run's usage has or will have, priced by the config: earlier calls' too, and batch tokens.
    prices = run_prices({*models, *spent, *([batch_key(batched)] if batched else [])}, config)
    meter = CostMeter(prices)
    counts = store.counts()
    meter.add(spent, chunks=counts["done"] + counts["failed"])
    if capped and (unpriced := [name for name in models if prices[name] is None]):
        raise ConfigError(f"--max-cost needs the price of {unpriced[0]}: set input_price and output_price "
                          "(US dollars per million tokens) in its [models.ROLE] of datagen.toml")
    return meter


class SpendCap:
    """A spending cap (`--max-cost`): a chunk starts only while the chunks in flight, and it, fit under the cap at
    the cost per chunk so far, and never once the spend has reached the cap. Before the first chunk finishes what a
    chunk costs is unknown: the first `concurrency` chunks start.

    Args:
        limit: the cap, US dollars.
        meter: the run's spend, as it goes.
    """

    def __init__(self, limit: float, meter: CostMeter):
        self.limit, self.meter, self.refused = limit, meter, False

    def admit(self, in_flight: int) -> bool:
        """Whether a chunk may start now, with `in_flight` chunks running (False: `refused` is set)."""
        fits = self.meter.chunks_within(self.limit)
        if fits is None:
            return True
        self.refused = in_flight + 1 > fits
        return not self.refused

    def why(self) -> str:
        """Why the run stopped, in one line: the cap, the spend, and by how much the first chunks passed it."""
        spent, each = self.meter.spent, self.meter.per_chunk
        line = f"--max-cost ${self.limit:g} reached: ${spent:.4f} spent"
        if each is not None:
            line += f", ${each:.4f} a chunk"
        if spent > self.limit:  # the first chunks start before what a chunk costs is known
            line += f" (passed by ${spent - self.limit:.4f}: the first chunks start before their cost is known)"
        return line
