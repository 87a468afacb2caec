"""An optimize run's cost before it starts (requests and dollars by role), the dollar cap (--max-cost) against the
fake server, and the warning when a cap is too small for the preset to do what it is for."""

import re

import pytest

from datagen.errors import ConfigError
from datagen.tuning import optimize_pipeline
from datagen.workspace import list_compiled

from .conftest import run_cli
from .test_cli import assert_one_line_error
from .fakes import FakeOpenAIServer
from .test_optimize import CONFIG, DEV, engine, run_optimize  # noqa: F401  (engine: a fixture)

ARGS = ("optimize", "style_clone", "--dev", DEV, "--metric", "generic_offline", "--model", "openai/fake-model")
# $1 per million prompt tokens and $2 per million completion tokens: the fake server reports 10 prompt tokens a
# request and the answer's words as completion tokens.
PRICED = '[models.task]\nmodel = "openai/fake-model"\ninput_price = 1\noutput_price = 2\n'


def _estimate_line(stderr: str) -> str:
    return next(line for line in stderr.splitlines() if line.startswith("bootstrap: about"))


def test_the_estimate_gives_dollars_at_the_configured_prices_and_unknown_without(workspace):
    with FakeOpenAIServer() as server:
        unpriced = run_cli(*ARGS, "--api-base", server.url, "--max-calls", "1", "--yes", cwd=workspace)
        (workspace / "datagen.toml").write_text(PRICED)
        priced = run_cli(*ARGS, "--api-base", server.url, "--max-calls", "1", "--yes", cwd=workspace)
    line = _estimate_line(unpriced.stderr)
    assert re.search(r"about \d+ LM requests \(task \d+\), price unknown for openai/fake-model", line), line
    assert "$" not in line
    line = _estimate_line(priced.stderr)
    match = re.search(r"about (\d+) LM requests \(task \1\), about \$(\d+\.\d{4}) \(an estimate, tokens a request: "
                      r"task ([\d,]+) in \+ ([\d,]+) out;", line)
    assert match, line
    calls, dollars, prompt, completion = (float(g.replace(",", "")) for g in match.groups())
    assert prompt > 100  # the adapter's scaffolding and a dev chunk, counted
    assert dollars == pytest.approx(calls * (prompt * 1 + completion * 2) / 1e6, abs=1e-4)


def test_the_estimate_object_reaches_on_estimate_and_stays_an_int(workspace, engine):  # noqa: F811
    estimates = []
    result = run_optimize(workspace, engine, on_estimate=estimates.append, max_calls=1)
    estimate = estimates[0]
    assert isinstance(estimate, int) and estimate == result.estimate == sum(r.calls for r in estimate.roles)
    assert [r.role for r in estimate.roles] == ["task"] and estimate.roles[0].prompt_tokens > 100
    assert estimate.cost is None and estimate.unpriced == ["fake/model"]


def test_max_cost_stops_an_optimize_past_the_cap_by_at_most_one_request(workspace):
    # $1,000 and $2,000 per million tokens: each request (10 prompt tokens, the same answer every time) costs
    # about $0.1, so a cap of $0.35 is reached within the held-out baseline.
    (workspace / "datagen.toml").write_text(PRICED.replace("input_price = 1", "input_price = 1000")
                                            .replace("output_price = 2", "output_price = 2000"))
    with FakeOpenAIServer(respond=lambda passage: "plain words " * 20) as server:
        result = run_cli(*ARGS, "--api-base", server.url, "--max-cost", "0.35", "--yes", cwd=workspace)
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    match = re.search(r"--max-cost \$0\.35 reached: \$(\d+\.\d{4}) spent: stopped, nothing compiled \(raise "
                      r"--max-cost; the estimate was \$\d+\.\d{4}\)", last)
    assert match, result.stderr
    spent, sent = float(match.group(1)), len(server.requests)
    each = spent / sent  # every request cost the same
    assert 0.35 <= spent < 0.35 + each  # one thread: the request after the cap was reached was refused
    assert 1 < sent < 10 and not list_compiled(workspace)


def test_max_cost_is_refused_for_a_model_without_a_price(workspace, engine):  # noqa: F811
    with pytest.raises(ConfigError, match=r"--max-cost needs the price of fake/model: set input_price and "
                                          r"output_price .* in \[models.task\] of datagen.toml"):
        run_optimize(workspace, engine, max_cost=1.0)
    assert engine.calls == 0
    with FakeOpenAIServer() as server:
        result = run_cli(*ARGS, "--api-base", server.url, "--max-cost", "1", "--yes", cwd=workspace)
    assert_one_line_error(result, "--max-cost needs the price of openai/fake-model", "[models.task]")
    assert not server.requests


@pytest.mark.parametrize("cap", [("--max-calls", "5"), ("--max-cost", "0.0001")])
def test_a_cap_too_small_for_the_preset_is_said_before_spending(workspace, cap):
    (workspace / "datagen.toml").write_text(PRICED)
    with FakeOpenAIServer() as server:
        result = run_cli(*ARGS, "--api-base", server.url, *cap, "--yes", cwd=workspace)
    lines = result.stderr.splitlines()
    warning = next(i for i, line in enumerate(lines) if line.startswith("warning: bootstrap needs about"))
    assert warning == next(i for i, line in enumerate(lines) if line.startswith("bootstrap: about")) + 1
    assert re.search(rf"to bootstrap a demo and score it before and after; {re.escape(cap[0])} .*allows.*raise it "
                     rf"to at least {re.escape(cap[0])} ", lines[warning]), lines[warning]
    assert result.returncode == 1  # it went on (non-interactive), and the cap stopped it


def test_a_cap_that_fits_says_nothing(workspace, engine):  # noqa: F811
    estimates = []
    run_optimize(workspace, engine, on_estimate=estimates.append, max_calls=1000)
    assert estimates[0].warning is None
    estimates.clear()
    optimize_pipeline("style_clone", workspace / DEV, "bootstrap", workspace=workspace, config=CONFIG,
                      model=run_optimize.__globals__["fake_model"](engine), max_calls=3, on_estimate=estimates.append)
    assert "bootstrap needs about" in estimates[0].warning and "--max-calls 3 allows 3" in estimates[0].warning


def _spent(stderr: str) -> tuple[int, float]:
    """The tokens and the dollars of the requests line optimize prints at the end."""
    match = re.search(r"tokens: \S+ ([\d,]+); spent: \$(\d+\.\d{4})", stderr)
    assert match, stderr
    return int(match.group(1).replace(",", "")), float(match.group(2))


def test_the_spend_prices_the_providers_cached_prompt_tokens_at_the_cached_rate(workspace):
    from .fakes import PromptCache

    # $1,000 a million uncached prompt tokens, nothing for cached ones or completions: the spend is the uncached
    # prompt tokens the server counted, exactly.
    (workspace / "datagen.toml").write_text(PRICED.replace("input_price = 1", "input_price = 1000")
                                            .replace("output_price = 2", "output_price = 0")
                                            + "cached_input_price = 0\n")
    with FakeOpenAIServer(prompt_cache=True) as server:
        result = run_cli(*ARGS, "--api-base", server.url, "--max-calls", "12", "--yes", cwd=workspace)
        prompt = sum(len(PromptCache.tokens(body["messages"])) for body in server.requests)
        cached = server.cached_tokens
    assert cached > 0
    _, spent = _spent(result.stderr)
    assert spent == pytest.approx((prompt - cached) * 1000 / 1e6, abs=1e-4)


def test_a_compile_stopped_by_the_cap_counts_the_tokens_it_spent(workspace):
    # As above, about $0.1 a request: the held-out baseline (the 4 val items) spends about $0.4, so a cap of $0.55
    # stops the run inside the compile, whose tokens must count in the line as they count in the spend.
    (workspace / "datagen.toml").write_text(PRICED.replace("input_price = 1", "input_price = 1000")
                                            .replace("output_price = 2", "output_price = 2000"))
    with FakeOpenAIServer(respond=lambda passage: "plain words " * 20) as server:
        result = run_cli(*ARGS, "--api-base", server.url, "--max-cost", "0.55", "--yes", cwd=workspace)
    assert result.returncode == 1 and "--max-cost $0.55 reached" in result.stderr, result.stderr
    tokens, spent = _spent(result.stderr)
    assert spent >= 0.55 and tokens * 2000 / 1e6 >= spent - 1e-4  # no token costs more than $2,000 a million


def test_simba_on_too_few_train_items_is_refused_before_any_call(workspace, engine):  # noqa: F811
    from datagen.errors import DatagenError

    lines = (workspace / DEV).read_text().splitlines()
    small = [line for line in lines if '"train"' in line][:5] + [line for line in lines if '"val"' in line][:2]
    (workspace / "small.jsonl").write_text("\n".join(small) + "\n")
    with pytest.raises(DatagenError, match=r"small.jsonl: simba needs at least 8 train items \(its batch\), the dev "
                                           r"set has 5"):
        optimize_pipeline("style_clone", workspace / "small.jsonl", "simba", workspace=workspace, config=CONFIG,
                          model=run_optimize.__globals__["fake_model"](engine))
    assert engine.calls == 0
