"""The call gate (datagen.lm.gate): --rpm spacing and --tpm budgets checked on the gate's own clock (a frozen one),
never on the wall clock, so the schedule is exact whatever the machine's load; and the adaptive concurrency
checked against a real server that admits only K requests at once."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from datagen.workspace.config import Config, ModelSettings
from datagen.runs import RunSettings
from datagen.runs.generate import generate
from datagen.lm.gate import CUT, PROBE_SLOWDOWN, CallGate, Ticket, Turn, gated
from datagen.lm.roles import build_role_model
from datagen.runs import generate as generate_engine

from .conftest import written
from .fakes import FakeEngine, FakeOpenAIServer
from .test_generate import run


class FrozenClock:
    """A clock that stands still; `sleep` only records how long it was asked to wait."""

    def __init__(self):
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def test_calls_are_booked_60_over_rpm_apart_whichever_thread_asks():
    clock = FrozenClock()
    gate = CallGate(8, rpm=120, clock=clock, sleep=clock.sleep)
    with ThreadPoolExecutor(5) as pool:
        starts = sorted(pool.map(lambda _: gate.book(10), range(5)))
    assert starts == [0.0, 0.5, 1.0, 1.5, 2.0]
    clock.now = 10.0  # idle a while: the next call starts at once, and no burst was saved up meanwhile
    assert [gate.book(10), gate.book(10)] == [10.0, 10.5]


def test_a_call_waits_until_its_booked_start():
    clock = FrozenClock()
    gate = CallGate(8, rpm=30, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        gate.exit(gate.enter(10), 10, rate_limited=False)
    assert clock.slept == [2.0, 4.0]  # the first call at once, then 2 s apart on a clock that stood still


def test_tpm_lets_a_minute_of_tokens_through_then_spaces_by_tokens_and_learns_from_usage():
    clock = FrozenClock()
    gate = CallGate(8, tpm=6000, clock=clock, sleep=clock.sleep)  # 100 tokens a second
    assert [gate.book(2000) for _ in range(3)] == [0.0, 0.0, 0.0]  # a minute's budget at once
    assert gate.book(1000) == pytest.approx(10.0)  # 7,000 booked: the last 1,000 wait for 10 s of refill
    # An answer that used 1,000 tokens fewer than booked gives them back: the next 1,000 start no later.
    gate.exit(Ticket(0.0, 2000), used=1000, rate_limited=False)
    assert gate.book(1000) == pytest.approx(10.0)
    assert gate.book(1000) == pytest.approx(20.0)


def test_429s_cut_the_requests_in_flight_by_the_burst_and_successes_win_them_back_slowly_near_the_cut():
    clock = FrozenClock()
    gate = CallGate(16, clock=clock, sleep=clock.sleep)
    tickets = [gate.enter(1) for _ in range(16)]
    clock.now = 1.0
    for ticket in tickets[:8]:  # a burst of 429s from requests sent before the cut: a quarter, then one each
        gate.exit(ticket, None, rate_limited=True)
    assert gate.level == int(16 * CUT) - 7 == 5

    def succeed(ticket, ceiling):
        before = gate.limit
        gate.exit(ticket, 1, rate_limited=False)
        slower = PROBE_SLOWDOWN if before >= ceiling - 1 else 1  # near the level the provider refused at
        assert gate.limit == pytest.approx(before + 1 / before / slower)

    for ticket in tickets[8:12]:
        succeed(ticket, ceiling=16)  # far below the level of the cut: a full 1/limit a success
    clock.now = 2.0
    ceiling = gate.limit
    late = gate.enter(1)  # sent after the cut: its 429 starts a burst of its own
    gate.exit(late, None, rate_limited=True)
    assert gate.limit == pytest.approx(ceiling * CUT)
    for ticket in tickets[12:]:
        succeed(ticket, ceiling)
    assert gate.limit < ceiling and gate.rate_limited == 9 and gate.in_flight == 0


def test_a_waiting_coroutine_gets_the_next_free_slot_and_a_cancelled_one_gives_it_back():
    async def scenario():
        gate = CallGate(1)
        first = await gate.aenter(1)
        second = asyncio.ensure_future(gate.aenter(1))
        third = asyncio.ensure_future(gate.aenter(1))
        await asyncio.sleep(0.01)
        assert not second.done() and not third.done()
        second.cancel()
        gate.exit(first, 1, rate_limited=False)
        await asyncio.wait_for(third, 5)  # the slot went past the cancelled waiter
        assert gate.in_flight == 1

    asyncio.run(scenario())


async def _ask(gate: CallGate, turn: Turn) -> Ticket:
    """One request of `turn` through `gate`."""
    with gated({}, turn):
        return await gate.aenter(1)


def test_a_full_gate_lets_the_chunk_that_started_first_through_first():
    # A chunk's later calls (ranked as it started) go before the first calls of chunks started after it; requests
    # of one rank go in the order they came.
    async def scenario():
        gate = CallGate(1)
        held = await gate.aenter(1)
        order: list[str] = []

        async def request(name: str, rank: int):
            ticket = await _ask(gate, Turn(rank))
            order.append(name)
            gate.exit(ticket, 1, rate_limited=False)

        tasks = []
        for name, rank in (("late", 7), ("early", 3), ("middle", 5), ("early again", 3)):
            tasks.append(asyncio.ensure_future(request(name, rank)))
            await asyncio.sleep(0)  # queued in this order
        await asyncio.sleep(0.01)
        assert not order
        gate.exit(held, 1, rate_limited=False)
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        assert order == ["early", "early again", "middle", "late"]

    asyncio.run(scenario())


def test_a_withdrawn_turn_sends_nothing_and_one_that_sent_or_was_handed_a_slot_goes_on():
    async def scenario():
        gate = CallGate(1)
        busy, idle, handed = Turn(0), Turn(1), Turn(2)
        held = await _ask(gate, busy)  # busy has sent a request
        waiting = {turn.rank: asyncio.ensure_future(_ask(gate, turn)) for turn in (busy, idle)}
        await asyncio.sleep(0.01)
        for turn in (busy, idle):
            turn.withdraw()
        assert not busy.withdrawn and idle.withdrawn
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(waiting[1], 5)  # its waiting request gave up, unsent
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(_ask(gate, idle), 5)  # and so does any it makes later
        gate.exit(held, 1, rate_limited=False)
        second = await asyncio.wait_for(waiting[0], 5)  # the busy one's next request gets the slot
        assert (busy.sent, idle.sent, gate.in_flight) == (2, 0, 1)
        # Handed the slot, not yet resumed: a request about to be sent is sent.
        late = asyncio.ensure_future(_ask(gate, handed))
        await asyncio.sleep(0.01)
        gate.exit(second, 1, rate_limited=False)  # hands the slot on, waking `late` soon
        await asyncio.sleep(0)  # the wake-up has run; `late` has not yet resumed
        handed.withdraw()
        gate.exit(await asyncio.wait_for(late, 5), 1, rate_limited=False)
        assert not handed.withdrawn and handed.sent == 1 and gate.in_flight == 0

    asyncio.run(scenario())


def test_rpm_spaces_every_lm_call_of_a_run_with_chunks_in_flight(workspace, tmp_path, monkeypatch):
    clock = FrozenClock()
    booked: list[float] = []

    class Recording(CallGate):
        def __init__(self, concurrency, rpm=None, tpm=None):
            super().__init__(concurrency, rpm=rpm, tpm=tpm, clock=clock, sleep=clock.sleep)

        def book(self, tokens):
            booked.append(start := super().book(tokens))
            return start

    monkeypatch.setattr(generate_engine, "CallGate", Recording)
    engine = FakeEngine()
    report = run(workspace, out := tmp_path / "run", engine, limit=5, concurrency=5, rpm=120)
    assert out.exists()
    assert written(report) == engine.calls == 5
    assert sorted(booked) == [0.0, 0.5, 1.0, 1.5, 2.0]  # every call went through the gate, in turn


def test_a_run_against_a_server_that_admits_k_at_once_settles_near_k_and_finishes(workspace, tmp_path):
    """AIMD end to end: 24 chunks in flight against a server that takes 4 requests at once and answers 429 to the
    rest. The run loses no chunk, the gate ends near 4, and most requests are answered, not refused."""
    K, concurrency = 4, 24
    with FakeOpenAIServer(latency=0.05, max_concurrent=K) as server:
        settings = ModelSettings(model="openai/capped", api_base=server.url, num_retries=8)
        model = build_role_model(settings, "task")
        gates = {}
        made = generate_engine.run_gates

        def keep(*args):
            gates.update(made(*args))
            return gates

        generate_engine.run_gates = keep
        try:
            report = generate("style_clone", [workspace / "data/samples"], tmp_path / "run", workspace=workspace,
                              config=Config(), model=model,
                              settings=RunSettings(max_tokens=60, concurrency=concurrency))
        finally:
            generate_engine.run_gates = made
    gate = next(iter(gates.values()))
    assert report.chunks >= 40 and not report.failures and written(report) == report.chunks
    assert server.peak == K
    assert gate.level <= 2 * K  # settled near K, far below the 24 it started at
    answered = len(server.arrivals)  # the requests it admitted (a refused one is not an arrival)
    print(f"K={K}: {answered} answered, {server.rejected} refused, level at the end {gate.level}")
    assert server.rejected < answered / 2  # few calls wasted (17-18 refused against 76 answered, measured)


def spacing(gate: CallGate) -> float:
    """Seconds between the starts the gate books for two requests asked at once."""
    first = gate.book(1)
    return gate.book(1) - first


def test_each_model_of_a_run_gets_a_gate_with_its_roles_limits_and_the_flags_override_the_task_models(workspace):
    from datagen.runs.generate import run_gates
    from datagen.metrics.scoring import MetricContext, Scorer

    config = Config(models={"task": ModelSettings(model="openai/task", api_base="http://127.0.0.1:9/v1", rpm=60,
                                                  tpm=6000),
                            "judge": ModelSettings(model="openai/judge", api_base="http://127.0.0.1:9/v1", rpm=30)})
    task = build_role_model(config.role("task"), "task")
    judged = Scorer("style_clone", MetricContext(workspace, config, corpus=[]), ["content"])
    gates = run_gates(config, task, judged, RunSettings(concurrency=4))
    assert set(gates) == {task.lm.model, judged.context.judge.lm.model}
    assert spacing(gates[task.lm.model]) == pytest.approx(1.0, abs=0.05)  # 60 a minute: 1 s apart
    assert spacing(gates[judged.context.judge.lm.model]) == pytest.approx(2.0, abs=0.05)  # 30 a minute
    flagged = run_gates(config, task, None, RunSettings(concurrency=4, rpm=120))[task.lm.model]
    assert spacing(flagged) == pytest.approx(0.5, abs=0.05)  # --rpm over the config's
    offline = Scorer("style_clone", MetricContext(workspace, config, corpus=[]), ["chrf"])
    assert set(run_gates(config, task, offline, RunSettings())) == {task.lm.model}  # no judge, no judge gate


def test_more_requests_than_lm15s_default_pool_can_be_in_flight_at_once(workspace, tmp_path):
    """DSPy's native engine would hold at most 100 connections (lm15's default), whatever --concurrency says."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(f"Paragraph {i} tells of the harbour, the lantern and the quiet morning." for i in
                                  range(260)), encoding="utf-8")
    with FakeOpenAIServer(latency=3.0, max_concurrent=1000) as server:  # long enough for all to start, loaded
        model = build_role_model(ModelSettings(model="openai/wide", api_base=server.url), "task")
        report = generate("style_clone", [corpus], tmp_path / "run", workspace=workspace, config=Config(),
                          model=model, settings=RunSettings(max_tokens=32, concurrency=130))
    assert report.chunks > 110 and not report.failures
    assert server.peak > 100
