"""Cached prompt tokens: read from the provider's usage (`prompt_tokens_details.cached_tokens`) on both of
datagen's routes to a model (DSPy's native engine and litellm), kept in the run store, shown by `datagen status`,
and priced at the cached rate (`cached_input_price`, else litellm's `cache_read_input_token_cost`)."""

import importlib

import pytest

from datagen.errors import ConfigError
from datagen.runs import Callbacks, RunSettings
from datagen.runs import cost
from datagen.runs.cost import CostMeter, Price, model_price
from datagen.runs.generate import generate
from datagen.runs.summary import summarize
from datagen.store import RunStore, cached_tokens
from datagen.workspace.config import ModelSettings, load_config

from .conftest import run_cli
from .fakes import FakeOpenAIServer, PromptCache

litellm = importlib.import_module("litellm")  # after datagen: it reads litellm's local price list

KNOWN = "openai/gpt-4o-mini"  # in litellm's list with a cached rate (and a batch one)
PRICES = {"input_price": 2.0, "output_price": 4.0, "cached_input_price": 0.5}


@pytest.fixture(autouse=True)
def fresh_price_cache():
    cost._bundled_price.cache_clear()
    yield
    cost._bundled_price.cache_clear()


def priced(counts: dict, price: Price) -> float:
    """US dollars for one model's stored counts, worked out here: uncached prompt, cached prompt, completion."""
    cached = counts["prompt_tokens_details"]["cached_tokens"]
    return ((counts["prompt_tokens"] - cached) * price.input + cached * price.cached_input
            + counts["completion_tokens"] * price.output) / 1e6


# --- the fake server's prompt cache -----------------------------------------------------------------------------


def test_the_fake_caches_the_longest_prefix_seen_before_rounded_down_as_openai_does():
    cache = PromptCache(minimum=8, step=4)
    words = [f"w{i}" for i in range(30)]
    assert cache.cached(words) == 0  # nothing seen yet
    assert cache.cached(words[:19] + ["other"] * 11) == 16  # 19 shared: 8 + 2 steps of 4
    assert cache.cached(words[:7] + ["x"] * 23) == 0  # 7 shared: under the minimum
    assert cache.cached(words) == 28  # all 30 seen: rounded down
    assert cache.cached(["y"] + words[1:]) == 0  # a prefix, not any shared part


def test_the_fake_reports_cached_tokens_only_with_its_cache_on():
    import httpx

    body = {"model": "m", "messages": [{"role": "system", "content": " ".join(["word"] * 100)},
                                       {"role": "user", "content": "hello"}]}
    with FakeOpenAIServer() as plain, FakeOpenAIServer(prompt_cache=True) as cached:
        before = httpx.post(f"{plain.url}/chat/completions", json=body).json()["usage"]
        assert before["prompt_tokens"] == 10 and "prompt_tokens_details" not in before  # as ever
        first, second = (httpx.post(f"{cached.url}/chat/completions", json=body).json()["usage"] for _ in range(2))
    assert first["prompt_tokens"] == second["prompt_tokens"] == 103  # "system", 100 words, "user", "hello"
    assert first["prompt_tokens_details"] == {"cached_tokens": 0}
    assert second["prompt_tokens_details"] == {"cached_tokens": 96} and cached.cached_tokens == 96


# --- prices -----------------------------------------------------------------------------------------------------


def test_cached_tokens_cost_the_cached_rate_and_without_one_the_input_price():
    assert Price(2.0, 4.0, 0.5).cost(1000, 100, 600) == pytest.approx((400 * 2.0 + 600 * 0.5 + 100 * 4.0) / 1e6)
    assert Price(2.0, 4.0).cost(1000, 100, 600) == Price(2.0, 4.0).cost(1000, 100)  # no rate: plain input


def test_litellms_cached_rate_unless_the_config_sets_one():
    entry = litellm.model_cost["gpt-4o-mini"]
    assert model_price(KNOWN).cached_input == pytest.approx(entry["cache_read_input_token_cost"] * 1e6)
    assert "cache_read_input_token_cost_batches" not in entry
    assert model_price(KNOWN, batch=True).cached_input is None  # none listed for batches: not guessed
    assert model_price(KNOWN, ModelSettings(model=KNOWN, cached_input_price=0.01)).cached_input == 0.01
    # The user's own prices are not mixed with litellm's cached rate.
    assert model_price(KNOWN, ModelSettings(model=KNOWN, input_price=1.0, output_price=2.0)).cached_input is None


def test_batch_prices_take_litellms_cached_batch_rate_where_it_lists_one(monkeypatch):
    monkeypatch.setitem(litellm.model_cost, "openai/datagen-test", {
        "litellm_provider": "openai", "input_cost_per_token": 2e-6, "output_cost_per_token": 8e-6,
        "cache_read_input_token_cost": 5e-7, "cache_read_input_token_cost_batches": 2.5e-7})
    assert model_price("openai/datagen-test") == Price(2.0, 8.0, pytest.approx(0.5))
    assert model_price("openai/datagen-test", batch=True) == Price(1.0, 4.0, pytest.approx(0.25))


@pytest.mark.parametrize("value", ["-1", "true", '"cheap"'])
def test_a_bad_cached_input_price_is_named(tmp_path, value):
    (tmp_path / "datagen.toml").write_text(f'[models.task]\nmodel = "{KNOWN}"\ncached_input_price = {value}\n')
    with pytest.raises(ConfigError, match="cached_input_price"):
        load_config(tmp_path, environ={})


def test_the_meter_prices_cached_tokens_and_names_models_without_a_cached_rate():
    usage = {"a/m": {"prompt_tokens": 1000, "completion_tokens": 10, "prompt_tokens_details": {"cached_tokens": 800}}}
    meter = CostMeter({"a/m": Price(1.0, 1.0, 0.1)})
    meter.add(usage)
    meter.add(usage)
    assert meter.spent == pytest.approx((400 * 1.0 + 1600 * 0.1 + 20 * 1.0) / 1e6) and meter.cached_at_input == []
    plain = CostMeter({"a/m": Price(1.0, 1.0)})
    plain.add(usage)
    assert plain.spent == pytest.approx(1010 / 1e6) and plain.cached_at_input == ["a/m"]


# --- a run ------------------------------------------------------------------------------------------------------


def cached_run(workspace, out, server, engine: str | None, **prices):
    """generate() of style_clone over 4 chunks against `server`, its config read from a datagen.toml written in
    the workspace; the config and the RunStatus after each chunk."""
    engine_line = f'engine = "{engine}"\n' if engine else ""
    price_lines = "".join(f"{name} = {value}\n" for name, value in prices.items())
    (workspace / "datagen.toml").write_text(f'[models.task]\nmodel = "openai/task"\napi_base = "{server.url}"\n'
                                            f"max_tokens = 300\n{engine_line}{price_lines}", encoding="utf-8")
    config = load_config(workspace, environ={})
    statuses = []
    generate("style_clone", [workspace / "data/samples"], out, workspace=workspace, config=config,
             settings=RunSettings(max_tokens=200, limit=4), callbacks=Callbacks(on_status=statuses.append))
    return config, statuses


@pytest.mark.parametrize("engine", [None, "litellm"])  # DSPy's native engine (hosted_vllm/...), and litellm
def test_a_run_stores_shows_and_prices_the_cached_tokens_the_provider_reports(workspace, tmp_path, engine):
    out = tmp_path / "run"
    with FakeOpenAIServer(prompt_cache=True) as server:
        config, statuses = cached_run(workspace, out, server, engine, **PRICES)
    with RunStore.reading(out) as store:
        [(model, counts)] = store.usage().items()
    # Every chunk's prompt opens with the pipeline's instructions: the chunks after the first read them cached.
    assert cached_tokens(counts) == server.cached_tokens > 0
    assert cached_tokens(counts) < counts["prompt_tokens"]
    expected = priced(counts, Price(**{"input": 2.0, "output": 4.0, "cached_input": 0.5}))
    assert expected < priced(counts, Price(2.0, 4.0, 2.0))  # the discount is counted
    assert summarize(out, config).cost == pytest.approx(expected)
    assert statuses[-1].spent == pytest.approx(expected)  # the meter: the progress line and --max-cost
    shown = run_cli("status", str(out), cwd=workspace)
    assert shown.returncode == 0, shown.stderr
    assert (f"tokens on openai/task: {counts['prompt_tokens']:,} prompt ({cached_tokens(counts):,} cached) + "
            f"{counts['completion_tokens']:,} completion") in shown.stderr
    assert f"cost: ${expected:.4f}\n" in shown.stderr


def test_status_says_when_cached_tokens_are_priced_as_plain_input(workspace, tmp_path):
    out = tmp_path / "run"
    with FakeOpenAIServer(prompt_cache=True) as server:
        config, _ = cached_run(workspace, out, server, None, input_price=2.0, output_price=4.0)
    with RunStore.reading(out) as store:
        counts = store.usage()["openai/task"]
    assert cached_tokens(counts) > 0
    assert summarize(out, config).cost == pytest.approx(priced(counts, Price(2.0, 4.0, 2.0)))
    shown = run_cli("status", str(out), cwd=workspace)
    assert "(cached tokens of openai/task at the input price: set cached_input_price)" in shown.stderr


def test_a_cached_rate_above_the_input_price_is_refused_as_a_typo(tmp_path):
    (tmp_path / "datagen.toml").write_text('[models.task]\nmodel = "openai/x"\ninput_price = 2\noutput_price = 8\n'
                                           'cached_input_price = 5\n')
    with pytest.raises(ConfigError, match=r"models.task.cached_input_price \(5\) is above input_price \(2\): a "
                                          r"cached prompt token costs at most an uncached one"):
        load_config(tmp_path)
