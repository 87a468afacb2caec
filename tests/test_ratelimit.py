"""--rpm: LM calls started 60/rpm seconds apart, checked on the limiter's own clock (a frozen one), never on
the wall clock: the schedule is exact whatever the machine's load."""

import importlib
from concurrent.futures import ThreadPoolExecutor

from datagen.ratelimit import RateLimiter

from .fakes import FakeEngine
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
    limiter = RateLimiter(120, clock=clock, sleep=clock.sleep)
    with ThreadPoolExecutor(5) as pool:
        starts = sorted(pool.map(lambda _: limiter.reserve(), range(5)))
    assert starts == [0.0, 0.5, 1.0, 1.5, 2.0]
    clock.now = 10.0  # idle a while: the next call starts at once, and no burst was saved up meanwhile
    assert [limiter.reserve(), limiter.reserve()] == [10.0, 10.5]


def test_a_call_waits_until_its_booked_start():
    clock = FrozenClock()
    limiter = RateLimiter(30, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        limiter.on_lm_start("id", None, {})
    assert clock.slept == [2.0, 4.0]  # the first call at once, then 2 s apart on a clock that stood still


def test_rpm_spaces_every_lm_call_of_a_run_with_chunks_in_flight(workspace, tmp_path, monkeypatch):
    clock = FrozenClock()
    booked: list[float] = []

    class Recording(RateLimiter):
        def __init__(self, rpm):
            super().__init__(rpm, clock=clock, sleep=clock.sleep)

        def reserve(self):
            booked.append(start := super().reserve())
            return start

    monkeypatch.setattr(importlib.import_module("datagen.generate"), "RateLimiter", Recording)
    engine = FakeEngine()
    report = run(workspace, tmp_path / "run", engine, limit=5, concurrency=5, rpm=120)
    assert report.exported == engine.calls == 5
    assert sorted(booked) == [0.0, 0.5, 1.0, 1.5, 2.0]  # every call went through the limiter, in turn
    assert sorted(clock.slept) == [0.5, 1.0, 1.5, 2.0]
