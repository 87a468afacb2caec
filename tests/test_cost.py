"""datagen.runs.cost: prices (litellm's bundled list, or datagen.toml's per role), spend so far and the projected
total."""

import importlib

import pytest

from datagen.runs import cost
from datagen.text.chunking import Chunk
from datagen.workspace.config import Config, ModelSettings, load_config
from datagen.runs.cost import CostMeter, Price, batch_key, model_price, run_prices
from datagen.errors import DatagenError
from datagen.runs import BatchOptions, Callbacks, RunSettings
from datagen.runs.generate import generate
from datagen.lm.local import LOCAL_MODEL
from datagen.store import Outcome, RunStore
from datagen.runs.summary import summarize

from .conftest import written
from .fakes import FakeOpenAIServer

# Imported after datagen, which has litellm read its local price list: imported first, it fetches one.
litellm = importlib.import_module("litellm")

KNOWN = "openai/gpt-4o-mini"  # in litellm's bundled list as "gpt-4o-mini", with batch prices
SELF_HOSTED = "openai/Qwen2.5-7B-Instruct-datagen-test"  # a model litellm has no price for


def bundled(name: str, field: str) -> float:
    """litellm's bundled price, US dollars per million tokens."""
    return litellm.model_cost[name][field] * 1_000_000


@pytest.fixture(autouse=True)
def fresh_price_cache():
    cost._bundled_price.cache_clear()
    yield
    cost._bundled_price.cache_clear()


def usage(prompt: int, completion: int, **more) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, **more}


# --- Price ------------------------------------------------------------------------------------------------------


def test_a_price_is_per_million_tokens():
    assert Price(input=2.0, output=8.0).cost(1_000_000, 0) == 2.0
    assert Price(input=2.0, output=8.0).cost(500, 250) == pytest.approx((500 * 2 + 250 * 8) / 1e6)
    assert Price(0.0, 0.0).cost(10**9, 10**9) == 0.0


# --- model_price --------------------------------------------------------------------------------------------------


def test_a_model_in_litellms_list_has_its_bundled_price_with_or_without_the_provider_prefix():
    assert model_price(KNOWN) == Price(pytest.approx(bundled("gpt-4o-mini", "input_cost_per_token")),
                                       pytest.approx(bundled("gpt-4o-mini", "output_cost_per_token")),
                                       pytest.approx(bundled("gpt-4o-mini", "cache_read_input_token_cost")))
    assert model_price("gpt-4o-mini") == model_price(KNOWN)
    # As litellm's own cost_per_token has it.
    litellm_prompt, litellm_completion = litellm.cost_per_token(model=KNOWN, prompt_tokens=1234,
                                                                completion_tokens=567)
    assert model_price(KNOWN).cost(1234, 567) == pytest.approx(litellm_prompt + litellm_completion)


def test_a_name_without_its_prefix_is_only_priced_by_an_entry_of_the_same_provider():
    assert litellm.model_cost["gpt-4o-mini"]["litellm_provider"] == "openai"
    assert model_price("hosted_vllm/gpt-4o-mini") is None  # a self-hosted model is not OpenAI's


def test_a_model_unknown_to_litellm_has_no_price():
    assert model_price(SELF_HOSTED) is None
    assert model_price(SELF_HOSTED, ModelSettings(model=SELF_HOSTED, api_base="http://127.0.0.1:9/v1")) is None
    assert model_price("nonsense") is None


def test_the_config_prices_a_self_hosted_model_litellm_does_not_know():
    settings = ModelSettings(model=SELF_HOSTED, input_price=0.05, output_price=0.2)
    assert model_price(SELF_HOSTED, settings) == Price(0.05, 0.2)
    assert model_price(SELF_HOSTED, settings, batch=True) == Price(0.05, 0.2)  # the user's price, as written


def test_config_prices_override_litellms():
    settings = ModelSettings(model=KNOWN, input_price=1.0, output_price=3.0)
    assert model_price(KNOWN, settings) == Price(1.0, 3.0)
    assert model_price(KNOWN, ModelSettings(model=KNOWN, input_price=0, output_price=0)) == Price(0, 0)  # free
    assert model_price(KNOWN, ModelSettings(model=KNOWN)) == model_price(KNOWN)  # no prices set: litellm's


@pytest.mark.parametrize(("given", "missing"), [({"input_price": 1.0}, "output_price"),
                                                ({"output_price": 1.0}, "input_price")])
def test_one_price_without_the_other_is_an_error_naming_the_missing_one(given, missing):
    with pytest.raises(DatagenError) as exc:
        model_price(KNOWN, ModelSettings(model=KNOWN, **given))
    message = str(exc.value)
    assert missing in message and KNOWN in message and "\n" not in message


def test_batch_prices_are_litellms_batch_prices_where_it_lists_them():
    entry = litellm.model_cost["gpt-4o-mini"]
    assert "input_cost_per_token_batches" in entry
    assert model_price(KNOWN, batch=True) == Price(
        pytest.approx(bundled("gpt-4o-mini", "input_cost_per_token_batches")),
        pytest.approx(bundled("gpt-4o-mini", "output_cost_per_token_batches")))


def test_batch_prices_are_half_the_price_where_litellm_lists_none(monkeypatch):
    name = "datagen-test/no-batch-price"
    monkeypatch.setitem(litellm.model_cost, name, {"input_cost_per_token": 2e-6, "output_cost_per_token": 8e-6,
                                                   "litellm_provider": "datagen-test"})
    assert model_price(name) == Price(pytest.approx(2.0), pytest.approx(8.0))
    assert model_price(name, batch=True) == Price(pytest.approx(1.0), pytest.approx(4.0))


def test_an_entry_without_prices_is_no_price(monkeypatch):
    monkeypatch.setitem(litellm.model_cost, "datagen-test/unpriced", {"max_tokens": 4096})
    assert model_price("datagen-test/unpriced") is None


def test_the_embedded_model_and_ollama_cost_nothing():
    assert model_price(LOCAL_MODEL) == Price(0.0, 0.0)
    assert model_price("ollama_chat/llama3.2") == Price(0.0, 0.0)
    assert model_price(LOCAL_MODEL, ModelSettings(input_price=0.1, output_price=0.1)) == Price(0.1, 0.1)


class CountingTable(dict):
    """litellm's price list, counting the look-ups made in it."""

    lookups = 0

    def get(self, key, default=None):
        type(self).lookups += 1
        return super().get(key, default)

    def __getitem__(self, key):
        type(self).lookups += 1
        return super().__getitem__(key)


def test_each_model_is_looked_up_once(monkeypatch):
    monkeypatch.setattr(litellm, "model_cost", CountingTable(litellm.model_cost))
    first = model_price(KNOWN)
    once = CountingTable.lookups
    assert once > 0
    for _ in range(1000):
        assert model_price(KNOWN) == first
        assert model_price(SELF_HOSTED) is None  # an unknown model is remembered too
    after_both = CountingTable.lookups
    for _ in range(1000):
        model_price(SELF_HOSTED)
        model_price(KNOWN)
    assert CountingTable.lookups == after_both
    meter = CostMeter()
    for _ in range(1000):
        meter.add({KNOWN: usage(10, 5)})
    assert meter.spent == pytest.approx(first.cost(10_000, 5_000))
    assert CountingTable.lookups == after_both


# --- run_prices -------------------------------------------------------------------------------------------------


def test_run_prices_take_each_roles_config_price_and_litellms_for_the_rest():
    config = Config(models={"task": ModelSettings(model=KNOWN),
                            "judge": ModelSettings(model=SELF_HOSTED, api_base="http://127.0.0.1:9/v1",
                                                   input_price=0.05, output_price=0.2)})
    prices = run_prices([KNOWN, SELF_HOSTED, "openai/other"], config)
    assert prices == {KNOWN: model_price(KNOWN), SELF_HOSTED: Price(0.05, 0.2), "openai/other": None}
    assert run_prices([SELF_HOSTED]) == {SELF_HOSTED: None}  # without a config, litellm's alone


def test_a_judge_without_a_model_of_its_own_shares_the_task_price():
    config = Config(models={"task": ModelSettings(model=SELF_HOSTED, input_price=1.0, output_price=2.0),
                            "judge": ModelSettings(temperature=0)})
    assert run_prices([SELF_HOSTED], config) == {SELF_HOSTED: Price(1.0, 2.0)}


def test_the_embedded_model_is_priced_by_the_task_role_with_no_model():
    config = Config(models={"task": ModelSettings(input_price=0.01, output_price=0.02)})
    assert run_prices([LOCAL_MODEL], config) == {LOCAL_MODEL: Price(0.01, 0.02)}


# --- CostMeter ----------------------------------------------------------------------------------------------------


def test_the_meter_adds_chunks_and_projects_the_total():
    meter = CostMeter({"a/model": Price(1.0, 2.0), "b/judge": Price(0.5, 0.5)})
    assert meter.spent == 0.0
    assert meter.per_chunk is None and meter.projected(0, 10) is None  # before the first chunk
    meter.add({"a/model": usage(1000, 500, total_tokens=1500)})
    meter.add({"a/model": usage(3000, 500), "b/judge": usage(2000, 0)})
    spent = (4000 * 1.0 + 1000 * 2.0 + 2000 * 0.5) / 1e6
    assert meter.spent == pytest.approx(spent)
    assert meter.chunks == 2
    assert meter.per_chunk == pytest.approx(spent / 2)
    assert meter.projected(2, 8) == pytest.approx(spent + spent / 2 * 8)
    assert meter.projected(2, 0) == pytest.approx(spent)
    assert meter.projected(0, 8) is None


def test_tokens_spent_on_a_counted_chunk_add_no_chunk():
    meter = CostMeter({"a/model": Price(1.0, 1.0)})
    meter.add({"a/model": usage(1_000_000, 0)})
    meter.add({"a/model": usage(1_000_000, 0)}, chunks=0)  # e.g. scoring it afterwards
    assert meter.chunks == 1 and meter.per_chunk == pytest.approx(2.0)


def test_a_resumed_run_counts_its_earlier_spend():
    meter = CostMeter({"a/model": Price(1.0, 1.0)})
    meter.add({"a/model": usage(3_000_000, 1_000_000)}, chunks=4)  # what the store recorded before
    meter.add({"a/model": usage(1_000_000, 0)})
    assert meter.spent == pytest.approx(5.0) and meter.per_chunk == pytest.approx(1.0)
    assert meter.projected(5, 5) == pytest.approx(10.0)


def test_spend_is_unknown_when_a_model_that_spent_tokens_has_no_price():
    meter = CostMeter({"a/model": Price(1.0, 1.0), "b/unknown": None})
    meter.add({"b/unknown": usage(0, 0)})  # spent nothing: no matter
    meter.add({"a/model": usage(10, 10)})
    assert meter.spent is not None and meter.unpriced == []
    meter.add({"b/unknown": usage(5, 0)})
    assert meter.spent is None and meter.per_chunk is None and meter.projected(3, 3) is None
    assert meter.unpriced == ["b/unknown"]


def test_a_model_the_meter_was_not_given_is_priced_from_litellm():
    meter = CostMeter()
    meter.add({KNOWN: usage(100, 50, prompt_tokens_details={"cached_tokens": 0})})
    assert meter.spent == pytest.approx(model_price(KNOWN).cost(100, 50))
    batch = CostMeter()
    batch.add({batch_key(KNOWN): usage(100, 50)})  # tokens charged through a batch API
    assert batch.spent == pytest.approx(model_price(KNOWN, batch=True).cost(100, 50))
    meter.add({SELF_HOSTED: usage(1, 1)})
    assert meter.spent is None


def test_missing_or_empty_counts_are_no_tokens():
    meter = CostMeter({"a/model": Price(1.0, 1.0)})
    meter.add({"a/model": {"prompt_tokens": None}})
    meter.add({})
    assert meter.spent == 0.0 and meter.chunks == 2


def test_chunks_within_a_spending_cap():
    meter = CostMeter({"a/model": Price(1.0, 1.0)})
    assert meter.chunks_within(10.0) is None  # nothing known yet
    meter.add({"a/model": usage(1_000_000, 0)})  # $1 a chunk
    assert meter.chunks_within(10.0) == 9
    assert meter.chunks_within(1.5) == 0
    assert meter.chunks_within(0.5) == 0
    free = CostMeter({"f/ree": Price(0, 0)})
    free.add({"f/ree": usage(10, 10)})
    assert free.chunks_within(1.0) > 10**9


# --- RunSummary.cost on a run store ------------------------------------------------------------------------------


def record_run(run_dir, usages: list[dict]) -> None:
    with RunStore(run_dir) as store:
        chunks = [Chunk(f"c{i}", "doc.txt", i, i + 1, "x", 1) for i in range(len(usages))]
        store.add_chunks(chunks)
        for chunk, spent in zip(chunks, usages, strict=True):
            store.record(Outcome(chunk=chunk, usage=spent))


def test_run_summary_cost_at_litellms_prices(tmp_path):
    record_run(tmp_path / "run", [{KNOWN: usage(1000, 100)}, {KNOWN: usage(2000, 200)}])
    summary = summarize(tmp_path / "run")
    assert summary.usage == {KNOWN: usage(3000, 300, prompt_tokens_details={"cached_tokens": 0})}
    assert summary.cost == pytest.approx(model_price(KNOWN).cost(3000, 300))
    assert summary.cost == pytest.approx(model_price(KNOWN).cost(3000, 300))


def test_run_summary_cost_of_a_self_hosted_model_priced_in_datagen_toml(tmp_path):
    record_run(tmp_path / "run", [{SELF_HOSTED: usage(4_000_000, 1_000_000)}])
    assert summarize(tmp_path / "run").cost is None  # litellm does not know it
    assert summarize(tmp_path / "run").unpriced == [SELF_HOSTED]
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "datagen.toml").write_text(
        f'[models.task]\nmodel = "{SELF_HOSTED}"\napi_base = "http://127.0.0.1:9/v1"\n'
        'input_price = 0.25\noutput_price = 1.5\n', encoding="utf-8")
    summary = summarize(tmp_path / "run", load_config(tmp_path / "ws", environ={}))
    assert summary.cost == pytest.approx(4 * 0.25 + 1 * 1.5)
    assert summary.unpriced == []


def test_run_summary_prices_each_token_at_the_rate_it_was_charged(tmp_path):
    record_run(tmp_path / "run", [{KNOWN: usage(1000, 100)}, {batch_key(KNOWN): usage(2000, 300)}])
    summary = summarize(tmp_path / "run")
    assert summary.cost == pytest.approx(model_price(KNOWN).cost(1000, 100)
                                         + model_price(KNOWN, batch=True).cost(2000, 300))
    assert model_price(KNOWN, batch=True).input < model_price(KNOWN).input


def test_run_summary_without_tokens_cost_nothing(tmp_path):
    record_run(tmp_path / "run", [{}])
    assert summarize(tmp_path / "run").cost == 0.0


def test_a_run_on_a_self_hosted_server_is_priced_by_its_config(workspace, tmp_path):
    out = tmp_path / "run"
    with FakeOpenAIServer() as server:
        config = Config(models={"task": ModelSettings(model="openai/task", api_base=server.url,
                                                      input_price=2.0, output_price=4.0)})
        generate("style_clone", [workspace / "data/samples"], out, workspace=workspace, config=config,
                 settings=RunSettings(max_tokens=300, limit=2))
    summary = summarize(out, config)
    [(model, spent)] = summary.usage.items()
    assert spent["prompt_tokens"] > 0
    assert summary.cost == pytest.approx((spent["prompt_tokens"] * 2.0 + spent["completion_tokens"] * 4.0) / 1e6)
    assert summarize(out).cost is None  # litellm knows no price for it


def priced_run(workspace, out, server, **settings):
    """generate() of style_clone against `server`, priced at $2 / $4 a million tokens, with RunSettings' fields;
    the RunStatus after each chunk and the report."""
    config = Config(models={"task": ModelSettings(model="openai/task", api_base=server.url,
                                                  input_price=2.0, output_price=4.0)})
    statuses = []
    report = generate("style_clone", [workspace / "data/samples"], out, workspace=workspace, config=config,
                      settings=RunSettings(max_tokens=200, **settings),
                      callbacks=Callbacks(on_status=statuses.append))
    return config, statuses, report


def test_the_progress_status_shows_the_spend_so_far_and_projects_the_rest(workspace, tmp_path):
    with FakeOpenAIServer() as server:
        config, statuses, report = priced_run(workspace, tmp_path / "run", server, limit=4)
    assert [s.done for s in statuses] == [0, 1, 2, 3, 4] and [s.left for s in statuses] == [4, 3, 2, 1, 0]
    assert statuses[0].spent == 0.0 and statuses[0].projected is None  # told at once, before any chunk
    statuses = statuses[1:]
    assert statuses[-1].spent == pytest.approx(summarize(tmp_path / "run", config).cost)
    for status in statuses:
        assert status.projected == pytest.approx(status.spent + status.spent / status.done * status.left)
    assert statuses[0].level == 1 and statuses[0].rate_limited == 0


def test_max_cost_stops_cleanly_before_the_spend_passes_it(workspace, tmp_path):
    out = tmp_path / "run"
    with FakeOpenAIServer() as server:
        config, statuses, _ = priced_run(workspace, tmp_path / "probe", server, limit=1)
        each = statuses[-1].spent  # what one chunk costs here
        cap = each * 3.5
        _, _, report = priced_run(workspace, out, server, max_cost=cap)
        assert report.stopped.startswith(f"--max-cost ${cap:g} reached") and not report.interrupted
        assert report.advice == "raise --max-cost to continue" and "passed by" not in report.stopped
        assert report.chunks == 3  # a fourth would pass the cap
        spent = summarize(out, config).cost
        assert spent <= cap < spent + each
        assert (out / "sharegpt.jsonl").exists() and written(report) == 3  # stopped cleanly: exported
        _, _, again = priced_run(workspace, out, server, max_cost=cap)  # a resume keeps to the same budget
        assert again.chunks == 0 and again.stopped


def test_max_cost_with_chunks_in_flight_runs_each_chunk_it_admits(workspace, tmp_path):
    # A chunk the cap does not admit now (those in flight would pass it) may be admitted once they finish: the
    # chunk admitted before it, still to send its request, is not given back as at a stop.
    # A resumed run knows what a chunk costs from its start: 2 done, room for 1 more, and 2 slots.
    with FakeOpenAIServer(latency=0.2) as server:
        _, statuses, _ = priced_run(workspace, tmp_path / "run", server, limit=2)
        cap = statuses[-1].spent / 2 * 3.5
        _, _, report = priced_run(workspace, tmp_path / "run", server, max_cost=cap, concurrency=2)
    assert report.chunks == 1 and report.stopped.startswith(f"--max-cost ${cap:g} reached"), report.stopped


def test_max_cost_needs_every_models_price(workspace, tmp_path):
    with FakeOpenAIServer() as server:
        config = Config(models={"task": ModelSettings(model="openai/unpriced", api_base=server.url)})
        with pytest.raises(DatagenError, match="--max-cost needs the price of openai/unpriced"):
            generate("style_clone", [workspace / "data/samples"], tmp_path / "run", workspace=workspace,
                     config=config, settings=RunSettings(max_tokens=200, max_cost=1.0))


def test_max_cost_zero_starts_nothing_and_infinity_is_no_cap(workspace, tmp_path):
    with FakeOpenAIServer() as server:
        _, _, nothing = priced_run(workspace, tmp_path / "zero", server, max_cost=0.0)
        assert nothing.chunks == 0 and nothing.stopped.startswith("--max-cost $0 reached: $0.0000 spent")
        _, _, everything = priced_run(workspace, tmp_path / "inf", server, max_cost=float("inf"), limit=3)
    assert everything.chunks == 3 and everything.stopped is None


def test_max_cost_passed_by_the_first_chunks_says_by_how_much(workspace, tmp_path):
    with FakeOpenAIServer() as server:
        _, statuses, _ = priced_run(workspace, tmp_path / "probe", server, limit=1)
        each = statuses[-1].spent
        _, _, report = priced_run(workspace, tmp_path / "run", server, max_cost=each / 2, concurrency=3)
    assert report.chunks == 3  # what a chunk costs is unknown until the first finishes: the first 3 started
    assert "passed by $" in report.stopped


def test_a_run_mixing_interactive_and_batch_calls_prices_each_token_at_its_rate(workspace, tmp_path, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setenv("TEST_KEY", "sk-test")
    with FakeOpenAIServer() as server:
        config = Config(models={"task": ModelSettings(model=KNOWN, api_base=server.url, api_key_env="TEST_KEY")})
        for settings in (RunSettings(max_tokens=200, limit=3),
                         RunSettings(max_tokens=200, batch=BatchOptions(poll=0.01))):
            generate("style_clone", [workspace / "data/samples"], out, workspace=workspace, config=config,
                     settings=settings)
    summary = summarize(out, config)
    assert set(summary.usage) == {KNOWN, batch_key(KNOWN)}
    interactive, batched = summary.usage[KNOWN], summary.usage[batch_key(KNOWN)]
    assert summary.cost == pytest.approx(
        model_price(KNOWN).cost(interactive["prompt_tokens"], interactive["completion_tokens"])
        + model_price(KNOWN, batch=True).cost(batched["prompt_tokens"], batched["completion_tokens"]))


def test_a_batch_runs_progress_prices_its_batch_tokens_by_the_config(workspace, tmp_path):
    statuses = []
    with FakeOpenAIServer() as server:
        config = Config(models={"task": ModelSettings(model="openai/task", api_base=server.url,
                                                      input_price=2.0, output_price=4.0)})
        generate("style_clone", [workspace / "data/samples"], tmp_path / "run", workspace=workspace, config=config,
                 settings=RunSettings(max_tokens=200, limit=2, batch=BatchOptions(poll=0.01)),
                 callbacks=Callbacks(on_status=statuses.append))
    assert statuses[-1].spent == pytest.approx(summarize(tmp_path / "run", config).cost) and statuses[-1].spent > 0
