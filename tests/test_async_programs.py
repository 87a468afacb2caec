"""A program with `aforward` runs through `generate` on DSPy's async path (acall, the async engine, the gate's
async admission), end to end over real HTTP to the fake server, with its forward never called."""

import asyncio
import contextvars
import subprocess
import sys
import threading

import dspy
import pytest
from dspy.utils.exceptions import LMTimeoutError

from datagen import Sample
from datagen.workspace.config import Config, ModelSettings
from datagen.runs import RunSettings
from datagen.runs.generate import generate
from datagen.runs.event_loop import EventLoopThread
from datagen.lm.roles import build_role_model
from datagen.store import RunStore

from .conftest import ROOT, every_record, written
from .fakes import TRICKLE, FakeOpenAIServer, PromptCache
from .test_generate import read_jsonl


class AsyncRephrase(dspy.Module):
    """Two steps, awaited: a rephrase, then a title of the rephrase."""

    def __init__(self):
        super().__init__()
        self.rephrase = dspy.Predict("passage -> generic")
        self.title = dspy.Predict("generic -> title")

    def forward(self, chunk):
        raise AssertionError("a program with aforward is run by acall")

    async def aforward(self, chunk):
        generic = (await self.rephrase.acall(passage=chunk)).generic
        title = (await self.title.acall(generic=generic)).title
        return dspy.Prediction(generic=generic, title=title, samples=[Sample(input=generic, output=chunk)])


def run(workspace, out, server, **settings):
    model = build_role_model(ModelSettings(model="openai/fake", api_base=server.url, num_retries=8), "task")
    return generate(AsyncRephrase(), [workspace / "data/samples"], out, workspace=workspace, config=Config(),
                    model=model, settings=RunSettings(max_tokens=200, **settings))


def test_an_async_program_runs_on_the_loop_with_its_calls_logged_and_counted(workspace, tmp_path):
    with FakeOpenAIServer(latency=0.02) as server:
        report = run(workspace, tmp_path / "run", server, concurrency=8)
        calls = len(server.arrivals)
    assert report.chunks == written(report) > 0 and not report.failures
    assert calls == 2 * report.chunks  # both steps of every chunk, each once
    records = every_record(tmp_path / "run/sharegpt.jsonl")
    assert len(records) == written(report)
    with RunStore(tmp_path / "run") as store:
        chunk, _ = next(store.done())
        assert [step.step for step in store.steps(chunk.id)] == ["rephrase", "title"]
        assert [call.step for call in store.calls(chunk.id)] == ["rephrase", "title"]
        assert store.usage()["openai/fake"]["prompt_tokens"] == 10 * calls  # the fake's 10 a call, all counted


class SeesCallbacks(AsyncRephrase):
    """AsyncRephrase, noting the global DSPy callbacks each chunk runs under."""

    seen: list = []

    async def aforward(self, chunk):
        self.seen.append(list(dspy.settings.get("callbacks") or []))
        return await super().aforward(chunk)


def test_a_chunks_calls_are_logged_without_a_global_dspy_callback(workspace, tmp_path):
    # DSPy runs a global callback's bookkeeping on every module, adapter and LM call: the call log hears only the
    # predictors and LMs it is put on.
    program = SeesCallbacks()
    with FakeOpenAIServer() as server:
        model = build_role_model(ModelSettings(model="openai/fake", api_base=server.url), "task")
        report = generate(program, [workspace / "data/samples"], tmp_path / "run", workspace=workspace,
                          config=Config(), model=model, settings=RunSettings(max_tokens=200, limit=3))
    assert report.chunks == 3 and program.seen == [[]] * 3
    with RunStore(tmp_path / "run") as store:
        for chunk, _ in store.done():
            assert [step.step for step in store.steps(chunk.id)] == ["rephrase", "title"]
            assert [(call.step, bool(call.response)) for call in store.calls(chunk.id)] == [("rephrase", True),
                                                                                            ("title", True)]


def test_an_async_program_backs_off_from_a_server_that_admits_two_at_once(workspace, tmp_path):
    with FakeOpenAIServer(latency=0.02, max_concurrent=2) as server:
        report = run(workspace, tmp_path / "run", server, concurrency=12)
    assert report.chunks == written(report) > 0 and not report.failures
    print(f"K=2: {len(server.arrivals)} answered, {server.rejected} refused")
    assert server.peak == 2 and server.rejected < len(server.arrivals) / 2


def test_an_async_call_past_its_timeout_is_retried_and_names_the_wall_clock_limit():
    # The answer trickles in a byte every half second, so no read ever waits long: only the role's timeout, a
    # wall-clock limit on the whole call, ends it; on the async path as on the threaded one it is a retryable
    # LMTimeoutError that says which limit it reached.
    settings = ModelSettings(model="openai/fake", num_retries=1, timeout=1)
    with FakeOpenAIServer(faults=lambda source, attempt: TRICKLE) as server:
        model = build_role_model(settings.model_copy(update={"api_base": server.url}), "task")
        with pytest.raises(LMTimeoutError, match="within the timeout of 1 s"):
            asyncio.run(dspy.Predict("passage -> generic").acall(passage="The lamp was lit.", lm=model.lm,
                                                                 adapter=model.adapter))
    assert [s.attempt for s in server.served] == [0, 1]


class SyncOnly(AsyncRephrase):
    """The same program whose forward is allowed: for a model that has no async counterpart."""

    def forward(self, chunk):
        generic = self.rephrase(passage=chunk).generic
        return dspy.Prediction(generic=generic, title="", samples=[Sample(input=generic, output=chunk)])


def test_an_async_program_runs_its_forward_on_litellms_route(workspace, tmp_path):
    # litellm's async path loses the retries of refused and timed-out requests: a program's forward runs there.
    with FakeOpenAIServer() as server:
        model = build_role_model(ModelSettings(model="openai/fake", api_base=server.url, engine="litellm"), "task")
        assert not model.asynchronous
        for out in ("first", "second"):
            report = generate(SyncOnly(), [workspace / "data/samples"], tmp_path / out, workspace=workspace,
                              config=Config(), model=model, settings=RunSettings(max_tokens=200, limit=2))
            assert written(report) == 2 and not report.failures


def test_the_event_loop_closes_with_a_librarys_task_still_running():
    # litellm left a logging worker of its own on the loop: waiting for every task held a run open for ever.
    loop = EventLoopThread()

    async def chunk():
        asyncio.get_running_loop().create_task(asyncio.sleep(3600))
        return "done"

    assert loop.submit(chunk(), contextvars.Context()).result() == "done"
    closing = threading.Thread(target=loop.close, args=(True,), daemon=True)
    closing.start()
    closing.join(timeout=30)
    assert not closing.is_alive()


def test_an_async_program_runs_its_forward_with_a_model_that_has_no_async_engine(workspace, tmp_path):
    from .fakes import fake_lm

    report = generate(SyncOnly(), [workspace / "data/samples"], tmp_path / "run", workspace=workspace,
                      config=Config(), model=fake_lm(), settings=RunSettings(max_tokens=200, limit=2))
    assert written(report) == 2 and not report.failures


class TwoOfAPassage(dspy.Module):
    """Two steps, each given the passage: a rephrase and a title."""

    def __init__(self):
        super().__init__()
        self.rephrase = dspy.Predict("passage -> generic")
        self.title = dspy.Predict("passage -> title")


class Together(TwoOfAPassage):
    """Both steps at once (asyncio.gather), then a third made on the fly (no attribute of the program)."""

    async def aforward(self, chunk):
        generic, title = await asyncio.gather(self.rephrase.acall(passage=chunk), self.title.acall(passage=chunk))
        summary = (await dspy.Predict("generic -> summary").acall(generic=generic.generic)).summary
        return dspy.Prediction(samples=[Sample(input=generic.generic, output=chunk)], title=title.title,
                               summary=summary)


def test_calls_made_at_once_are_each_logged_under_their_own_step_with_their_own_tokens(workspace, tmp_path):
    """Each LM call belongs to the step it runs in, even when a chunk's steps overlap, and its usage is its own
    answer's (the fake server counts each prompt's words: the three prompts differ)."""
    with FakeOpenAIServer(latency=0.05, prompt_cache=True) as server:
        model = build_role_model(ModelSettings(model="openai/fake", api_base=server.url), "task")
        report = generate(Together(), [workspace / "data/samples"], tmp_path / "run", workspace=workspace,
                          config=Config(), model=model, settings=RunSettings(max_tokens=200, limit=3))
    assert report.chunks == 3 and not report.failures
    with RunStore(tmp_path / "run") as store:
        for chunk, _ in store.done():
            steps = store.steps(chunk.id)
            assert sorted(step.step for step in steps[:2]) == ["rephrase", "title"]  # started together
            assert steps[2].step == "StringSignature" and steps[2].outputs["summary"]  # the one made on the fly
            calls = store.calls(chunk.id)
            assert sorted(call.step for call in calls) == sorted(step.step for step in steps)
            for call in calls:
                assert call.usage["prompt_tokens"] == len(PromptCache.tokens(call.messages)) and not call.cached
                step = next(step for step in steps if step.step == call.step)
                assert step.outputs and all(value in call.response for value in step.outputs.values())


class OwnForward(dspy.Predict):
    """A Predict whose forward is its own: it asks the model directly, then fails when told to."""

    def forward(self, **kwargs):
        answer = dspy.settings.lm(messages=[{"role": "user", "content": f"Rephrase: {kwargs['passage']}"}])[0]
        if "fail" in kwargs["passage"]:
            raise RuntimeError("boom inside the predictor")
        return dspy.Prediction(generic=answer)


class WithOwnForward(dspy.Module):
    def __init__(self):
        super().__init__()
        self.mine = OwnForward("passage -> generic")

    def forward(self, chunk):
        return dspy.Prediction(samples=[Sample(input=self.mine(passage=chunk).generic, output=chunk)])


def test_a_predictor_whose_forward_is_its_own_is_still_logged_as_a_step(workspace, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("The keeper climbed the stairs.\n")
    (corpus / "b.txt").write_text("This one will fail, as asked.\n")
    with FakeOpenAIServer() as server:
        model = build_role_model(ModelSettings(model="openai/fake", api_base=server.url), "task")
        report = generate(WithOwnForward(), [corpus], tmp_path / "run", workspace=workspace, config=Config(),
                          model=model, settings=RunSettings(max_tokens=200, concurrency=1))
    assert report.chunks == 2 and sum(report.failures.values()) == 1
    with RunStore(tmp_path / "run") as store:
        logged = {chunk.text: (store.steps(chunk.id), store.calls(chunk.id)) for chunk in store.chunks()}
    for text, (steps, calls) in logged.items():
        assert [step.step for step in steps] == ["mine"] and [call.step for call in calls] == ["mine"]
        assert calls[0].messages[0]["content"] == f"Rephrase: {text}" and calls[0].response
        if "fail" in text:
            assert steps[0].error == "RuntimeError: boom inside the predictor" and steps[0].outputs is None
        else:
            assert steps[0].outputs == {"generic": calls[0].response} and steps[0].error is None


class InParallel(TwoOfAPassage):
    """Both steps run by dspy.Parallel, in its worker threads."""

    def forward(self, chunk):
        generic, title = dspy.Parallel(num_threads=2, disable_progress_bar=True)(
            [(self.rephrase, {"passage": chunk}), (self.title, {"passage": chunk})])
        return dspy.Prediction(samples=[Sample(input=generic.generic, output=chunk)], title=title.title)


def test_the_tokens_spent_in_dspy_parallel_are_counted(workspace, tmp_path):
    """dspy.Parallel gives each of its threads a copy of the usage tracker: the chunk's tokens must be counted all
    the same, in the run's usage as in each call."""
    with FakeOpenAIServer() as server:
        model = build_role_model(ModelSettings(model="openai/fake", api_base=server.url), "task")
        report = generate(InParallel(), [workspace / "data/samples"], tmp_path / "run", workspace=workspace,
                          config=Config(), model=model, settings=RunSettings(max_tokens=200, limit=3))
        answered = len(server.arrivals)
    assert report.chunks == 3 and not report.failures and answered == 6
    with RunStore(tmp_path / "run") as store:
        calls = [call for chunk, _ in store.done() for call in store.calls(chunk.id)]
        assert sorted(call.step for call in calls) == ["rephrase"] * 3 + ["title"] * 3
        assert all(call.usage["prompt_tokens"] == 10 for call in calls)
        assert store.usage()["openai/fake"]["prompt_tokens"] == 10 * answered  # the fake's 10 a call, all counted


class CountsChunks(AsyncRephrase):
    """AsyncRephrase, counting its chunks in flight (started, not yet returned) at their most."""

    def __init__(self):
        super().__init__()
        self.in_flight = self.most = 0

    async def aforward(self, chunk):
        self.in_flight += 1  # on the run's one event loop: no lock needed
        self.most = max(self.most, self.in_flight)
        try:
            return await super().aforward(chunk)
        finally:
            self.in_flight -= 1


def test_chunks_beyond_the_concurrency_wait_at_the_gate_with_their_requests(workspace, tmp_path):
    # On the event loop more chunks run than --concurrency (runner.LOOKAHEAD), prepared, so that a request goes out
    # as soon as one comes back; the gate holds their requests: the server never has more than --concurrency.
    program = CountsChunks()
    with FakeOpenAIServer(latency=0.1, max_concurrent=100) as server:  # a limit never reached: `peak` is counted
        model = build_role_model(ModelSettings(model="openai/fake", api_base=server.url), "task")
        report = generate(program, [workspace / "data/samples"], tmp_path / "run", workspace=workspace,
                          config=Config(), model=model, settings=RunSettings(max_tokens=200, concurrency=2))
    assert report.chunks == written(report) > 4 and not report.failures
    assert server.peak == 2 and not server.rejected
    assert program.most > 2


class SecondModel(dspy.Module):
    """One step on the task model, awaited; then one on a model of the program's own (`dspy.context(lm=...)`)."""

    def __init__(self, other):
        super().__init__()
        self.other = other
        self.rephrase = dspy.Predict("passage -> generic")
        self.title = dspy.Predict("generic -> title")

    async def aforward(self, chunk):
        generic = (await self.rephrase.acall(passage=chunk)).generic
        with dspy.context(lm=self.other):
            title = (await self.title.acall(generic=generic)).title
        return dspy.Prediction(generic=generic, title=title, samples=[Sample(input=generic, output=chunk)])


def test_a_model_the_run_was_not_told_of_has_no_more_requests_in_flight_than_the_concurrency(workspace, tmp_path):
    # With chunks waiting at the task model's gate beyond --concurrency, a program's own second model would get
    # their requests all at once: it gets a gate of its own (datagen.lm.ModelGates).
    with FakeOpenAIServer(latency=0.1) as task, FakeOpenAIServer(latency=0.1, max_concurrent=100) as other:
        own = build_role_model(ModelSettings(model="openai/other", api_base=other.url), "task").lm
        model = build_role_model(ModelSettings(model="openai/fake", api_base=task.url), "task")
        report = generate(SecondModel(own), [workspace / "data/samples"], tmp_path / "run", workspace=workspace,
                          config=Config(), model=model, settings=RunSettings(max_tokens=200, concurrency=2))
    assert report.chunks == written(report) > 4 and not report.failures
    assert len(other.arrivals) == report.chunks and other.peak == 2 and not other.rejected


MIXED = """
import sys
import dspy
from datagen import Sample
from datagen.workspace.config import Config, ModelSettings
from datagen.runs import RunSettings
from datagen.runs.generate import generate
from datagen.lm.roles import build_role_model


class Mixed(dspy.Module):
    def __init__(self):
        super().__init__()
        self.rephrase = dspy.Predict("passage -> generic")
        self.title = dspy.Predict("generic -> title")

    async def aforward(self, chunk):
        generic = (await self.rephrase.acall(passage=chunk)).generic
        title = self.title(generic=generic).title  # a synchronous call on the event loop
        return dspy.Prediction(title=title, samples=[Sample(input=generic, output=chunk)])


model = build_role_model(ModelSettings(model="openai/fake", api_base=sys.argv[1]), "task")
report = generate(Mixed(), [sys.argv[2]], sys.argv[3], workspace=sys.argv[4], config=Config(), model=model,
                  settings=RunSettings(max_tokens=200, concurrency=1, limit=6))
print("chunks", report.chunks, "failures", sum(report.failures.values()))
"""


def test_a_synchronous_call_inside_aforward_waits_at_no_gate_it_would_never_leave(workspace, tmp_path):
    # The loop's thread blocked in the gate's wait for a slot that only a request of that loop would free: the run
    # hung (the chunk waiting beyond --concurrency held the slot). It is let through instead.
    with FakeOpenAIServer(latency=0.05) as server:
        done = subprocess.run([sys.executable, "-c", MIXED, server.url, str(workspace / "data/samples"),
                               str(tmp_path / "run"), str(workspace)], capture_output=True, text=True, timeout=120,
                              cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "chunks 6 failures 0" in done.stdout
