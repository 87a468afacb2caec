"""Provider batch jobs (datagen.runs.batch, with the engine of datagen.lm.batch): programs carried to their end
through OpenAI's Batch API, against the fake server's /v1/files and /v1/batches over real HTTP, with a real run
store."""

import dataclasses
import json
import math

import dspy
import pytest

from datagen.lm.adapters import ChatAdapter
from datagen.lm.batch import batch_model, canonical, request_body, request_key
from datagen.lm.errors import BatchRequestError, Deferred
from datagen.runs.batch import JobStatus, NoBatchAPI, OpenAIBatchClient, run_batches
from datagen.errors import ConfigError, DatagenError
from datagen.lm.roles import RoleModel, default_max_tokens
from datagen.store import RunStore
from datagen.runs import BatchOptions, RunSettings
from datagen.runs import generate as generate_engine
from datagen.runs.generate import generate

from .conftest import run_cli, written
from .fakes import FakeOpenAIServer, plain, status
from .test_cli import assert_one_line_error

PASSAGES = [f"Passage number {i}: The Quick Brown Fox, Jumping Over {i} Lazy Dogs!" for i in range(7)]


class Rephrase(dspy.Module):
    def __init__(self):
        super().__init__()
        self.rephrase = dspy.Predict("passage -> plain")

    def forward(self, chunk):
        return dspy.Prediction(plain=self.rephrase(passage=chunk).plain)


class RephraseThenTitle(dspy.Module):
    """Two steps, the second needing the first's output."""

    def __init__(self):
        super().__init__()
        self.rephrase = dspy.Predict("passage -> plain")
        self.title = dspy.Predict("plain -> title")

    def forward(self, chunk):
        plain_text = self.rephrase(passage=chunk).plain
        return dspy.Prediction(plain=plain_text, title=self.title(plain=plain_text).title)

    async def aforward(self, chunk):  # on the async engine
        plain_text = (await self.rephrase.acall(passage=chunk)).plain
        return dspy.Prediction(plain=plain_text, title=(await self.title.acall(plain=plain_text)).title)


def _title(text: str) -> str:
    return "TITLE " + text.upper()


def role_model(server: FakeOpenAIServer, **settings) -> RoleModel:
    lm = dspy.LM("openai/fake-model", api_base=server.url, api_key="test-key", temperature=0.0, max_tokens=200,
                 num_retries=0, cache=False, **settings)
    return RoleModel(role="task", lm=lm, adapter=ChatAdapter(), context_window=None)


def _cause(exc: BaseException, kind: type) -> BaseException | None:
    while exc is not None:
        if isinstance(exc, kind):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


class Rounds:
    """What generate does in a round, in little: every unfinished chunk run once; a Deferred anywhere in the error's
    cause chain is no failure, a BatchRequestError fails the chunk with its kind."""

    def __init__(self, program: dspy.Module, texts: list[str], use_async: bool = False):
        self.program, self.texts, self.use_async = program, texts, use_async
        self.done: dict[str, dspy.Prediction] = {}
        self.failed: dict[str, str] = {}
        self.rounds = 0

    def __call__(self, model: RoleModel) -> int:
        self.rounds += 1
        deferred = 0
        for text in self.texts:
            if text in self.done:
                continue
            try:
                with model.context():
                    if self.use_async:
                        import asyncio

                        prediction = asyncio.run(self.program.acall(chunk=text))
                    else:
                        prediction = self.program(chunk=text)
            except Exception as exc:
                if _cause(exc, Deferred):
                    deferred += 1
                    continue
                failure = _cause(exc, BatchRequestError)
                self.failed[text] = failure.kind if failure else type(exc).__name__
                continue
            self.failed.pop(text, None)
            self.done[text] = prediction
        return deferred


@pytest.fixture
def store(tmp_path):
    with RunStore(tmp_path / "run") as store:
        yield store


def test_a_one_step_program_finishes_through_one_batch_job(store):
    statuses: list[JobStatus] = []
    with FakeOpenAIServer(batch_polls=2) as server:
        rounds = Rounds(Rephrase(), PASSAGES)
        summary = run_batches(store, role_model(server), rounds, poll_seconds=0.01, on_status=statuses.append)
    assert {text: p.plain for text, p in rounds.done.items()} == {text: plain(text) for text in PASSAGES}
    assert not rounds.failed
    assert server.chat_requests == 0 and not server.arrivals  # no interactive call
    assert server.uploads == server.batches_created == 1 and server.batch_lines == len(PASSAGES)
    assert (summary.rounds, summary.jobs, summary.requests, summary.answered, summary.failed) == (
        2, 1, len(PASSAGES), len(PASSAGES), 0)
    assert summary.prompt_tokens == 10 * len(PASSAGES) and summary.completion_tokens > 0
    assert [s.status for s in statuses] == ["uploaded", "in_progress", "completed"]
    # The line sent: the role's model without its prefix, its sampling settings, max_tokens (not
    # max_completion_tokens), keyed by the sha256 of its canonical body.
    line = json.loads(server.files["file-1"]["data"].splitlines()[0])
    assert line["method"] == "POST" and line["url"] == "/v1/chat/completions"
    body = line["body"]
    assert body["model"] == "fake-model" and body["temperature"] == 0.0 and body["max_tokens"] == 200
    assert "max_completion_tokens" not in body and line["custom_id"] == request_key(canonical(body))
    assert store.batch_counts() == {"answered": len(PASSAGES), "failed": 0, "in_flight": 0, "unsubmitted": 0,
                                     "jobs": 1}


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_a_two_step_program_takes_one_job_per_step(store, use_async):
    with FakeOpenAIServer(by_field={"title": _title}) as server:
        rounds = Rounds(RephraseThenTitle(), PASSAGES, use_async)
        summary = run_batches(store, role_model(server), rounds, poll_seconds=0.01)
    assert {text: (p.plain, p.title) for text, p in rounds.done.items()} == {
        text: (plain(text), _title(plain(text))) for text in PASSAGES}
    assert server.chat_requests == 0 and server.batches_created == 2 and server.batch_lines == 2 * len(PASSAGES)
    assert (summary.rounds, summary.jobs, summary.requests) == (3, 2, 2 * len(PASSAGES))
    # The second job holds only second steps, each asking about the first step's answer.
    first_job, second_job = server.batches.values()
    second = [json.loads(line)["body"] for line in server.files[second_job["input_file_id"]]["data"].splitlines()]
    assert len(second) == len(PASSAGES)
    assert all("[[ ## plain ## ]]" in b["messages"][-1]["content"] for b in second)


def test_a_small_batch_size_splits_each_step_into_jobs(store):
    with FakeOpenAIServer(by_field={"title": _title}) as server:
        rounds = Rounds(RephraseThenTitle(), PASSAGES)
        summary = run_batches(store, role_model(server), rounds, poll_seconds=0.01, batch_size=3)
    assert len(rounds.done) == len(PASSAGES)
    per_step = math.ceil(len(PASSAGES) / 3)
    assert server.batches_created == summary.jobs == 2 * per_step
    sizes = [len(server.files[b["input_file_id"]]["data"].splitlines()) for b in server.batches.values()]
    assert sizes == [3, 3, 1, 3, 3, 1]
    assert server.chat_requests == 0


def test_a_killed_driver_resumes_by_polling_the_same_jobs(store):
    with FakeOpenAIServer(batch_polls=3) as server:
        model = role_model(server)
        rounds = Rounds(Rephrase(), PASSAGES)
        # Killed while its first job is in flight: on_status raises at the first poll's news.
        def crash(status: JobStatus):
            if status.status == "in_progress":
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            run_batches(store, model, rounds, poll_seconds=0.01, on_status=crash)
        assert server.batches_created == 1 and not rounds.done
        [job] = store.batch_jobs()
        assert job["batch_id"] and job["input_file_id"] and job["status"] == "in_progress"

        # Stopped (Ctrl-C) between polls: the job stays in flight.
        stops = iter([False, False, True])
        summary = run_batches(store, model, rounds, poll_seconds=0.01,
                              should_stop=lambda: next(stops, True))
        assert summary.stopped and summary.resumed_jobs == 1 and summary.rounds == 0

        summary = run_batches(store, model, rounds, poll_seconds=0.01)
    assert summary.resumed_jobs == 1 and summary.jobs == 0 and summary.rounds == 1
    assert len(rounds.done) == len(PASSAGES)
    assert server.uploads == server.batches_created == 1  # nothing submitted twice
    assert server.batch_lines == len(PASSAGES) and server.chat_requests == 0


def test_stopping_before_submitting_leaves_the_requests_for_the_next_run(store):
    with FakeOpenAIServer() as server:
        model = role_model(server)
        rounds = Rounds(Rephrase(), PASSAGES)
        asked = iter([False, True])  # before the round: go on; before submitting: stop
        summary = run_batches(store, model, rounds, poll_seconds=0.01, should_stop=lambda: next(asked, True))
        assert summary.stopped and summary.rounds == 1 and server.uploads == 0
        assert store.batch_counts()["unsubmitted"] == len(PASSAGES)
        summary = run_batches(store, model, rounds, poll_seconds=0.01)
    assert len(rounds.done) == len(PASSAGES) and server.uploads == server.batches_created == 1


def test_a_job_uploaded_but_not_created_is_found_not_created_again(store):
    """Killed between creating the batch and storing its id: the next run finds it by its input file."""
    with FakeOpenAIServer() as server:
        model = role_model(server)
        rounds = Rounds(Rephrase(), PASSAGES)
        assert run_batches(store, model, rounds, poll_seconds=0.01, should_stop=iter([False, True]).__next__).stopped

        client = OpenAIBatchClient.for_model(model)
        job = store.add_batch_job([key for key, _ in store.unsubmitted_batch_requests()])
        lines = "".join(f'{{"custom_id":"{k}","method":"POST","url":"/v1/chat/completions","body":{b}}}\n'
                        for k, b in store.batch_job_requests(job))
        path = store.path.parent / "job.jsonl"
        path.write_text(lines, encoding="utf-8")
        file_id = client.upload(str(path), "job.jsonl")
        store.update_batch_job(job, input_file_id=file_id, status="uploaded")
        client.create(file_id)  # the batch exists; its id never reached the store
        assert server.batches_created == 1

        summary = run_batches(store, model, rounds, poll_seconds=0.01)
    assert summary.resumed_jobs == 1 and len(rounds.done) == len(PASSAGES)
    assert server.batches_created == 1 and server.uploads == 1


def test_failed_lines_fail_their_chunks_and_the_rest_finish(store):
    bad = {PASSAGES[1], PASSAGES[4]}

    def faults(source, attempt):
        return status(400, message="this line is refused") if source in bad else None

    with FakeOpenAIServer(faults=faults) as server:
        model = role_model(server)
        rounds = Rounds(Rephrase(), PASSAGES)
        summary = run_batches(store, model, rounds, poll_seconds=0.01)
        assert rounds.failed == {text: "batch_failed" for text in bad}
        assert set(rounds.done) == set(PASSAGES) - bad
        assert (summary.answered, summary.failed, summary.rounds) == (len(PASSAGES) - 2, 2, 2)
        assert store.batch_counts()["failed"] == 2
        # A resume submits the failed requests anew (errors are cleared, answers kept): only those two.
        rounds.texts = sorted(bad)
        summary = run_batches(store, model, rounds, poll_seconds=0.01)
        assert summary.requests == 2 and rounds.failed == {text: "batch_failed" for text in bad}
    assert server.batch_lines == len(PASSAGES) + 2 and server.chat_requests == 0


def test_the_error_message_is_the_providers(store):
    with FakeOpenAIServer(faults=lambda source, attempt: status(400, message="no such thing")) as server:
        model = role_model(server)
        run_batches(store, model, Rounds(Rephrase(), PASSAGES[:1]), poll_seconds=0.01)
        with pytest.raises(dspy.utils.exceptions.LMError) as raised, batch_model(model, store).context():
            Rephrase()(chunk=PASSAGES[0])
    error = _cause(raised.value, BatchRequestError)
    assert error.kind == "batch_failed" and "no such thing" in error.message and "400" in error.message


@pytest.mark.parametrize("end, kind", [("expired", "batch_expired"), ("cancelled", "batch_cancelled"),
                                       ("failed", "batch_failed")])
def test_a_job_that_ends_early_fails_the_requests_it_left(store, end, kind):
    statuses: list[JobStatus] = []
    with FakeOpenAIServer(batch_end=end, batch_answered=3) as server:
        rounds = Rounds(Rephrase(), PASSAGES)
        summary = run_batches(store, role_model(server), rounds, poll_seconds=0.01, on_status=statuses.append)
    answered = 0 if end == "failed" else 3
    assert len(rounds.done) == answered and set(rounds.failed.values()) == {kind}
    assert len(rounds.failed) == len(PASSAGES) - answered
    assert (summary.answered, summary.failed) == (answered, len(PASSAGES) - answered)
    # The job's last status counts as the store does (a cancelled job's file names none of the requests it left).
    assert (statuses[-1].completed, statuses[-1].failed) == (answered, len(PASSAGES) - answered)
    assert (store.batch_counts()["answered"], store.batch_counts()["failed"]) == (answered, len(PASSAGES) - answered)
    assert server.batches_created == 1 and server.chat_requests == 0


def test_a_cancelled_job_is_collected_on_resume(store):
    with FakeOpenAIServer(batch_polls=100, batch_answered=2) as server:
        model = role_model(server)
        rounds = Rounds(Rephrase(), PASSAGES)
        stops = iter([False, False])
        assert run_batches(store, model, rounds, poll_seconds=0.01, should_stop=lambda: next(stops, True)).stopped
        [job] = store.batch_jobs()
        import litellm

        litellm.cancel_batch(batch_id=job["batch_id"], **OpenAIBatchClient.for_model(model).options)
        summary = run_batches(store, model, rounds, poll_seconds=0.01)
    assert summary.resumed_jobs == 1 and len(rounds.done) == 2
    assert set(rounds.failed.values()) == {"batch_cancelled"} and server.batches_created == 1


# --- result files that do not name each request once (a provider's fault) -------------------------------------

def _error_line(line: dict) -> dict:
    """An error line for the request `line` answers, as a provider writes one for a request it could not serve."""
    return {"id": "batch_req_x", "custom_id": line["custom_id"], "error": None,
            "response": {"status_code": 500, "request_id": "req_x", "body": {"error": {"message": "server had an error",
                                                                                       "type": "server_error"}}}}


def _differing(line: dict) -> dict:
    """`line` with another answer to its request (another completion, other text)."""
    other = json.loads(json.dumps(line))
    other["response"]["body"]["id"] = "chatcmpl-other"
    message = other["response"]["body"]["choices"][0]["message"]
    message["content"] = message["content"].replace(" ## ]]\n", " ## ]]\nAnother answer: ", 1)
    assert other["response"]["body"]["choices"] != line["response"]["body"]["choices"]
    return other


def _foreign(line: dict) -> dict:
    return {**line, "custom_id": request_key("a request this run never made")}


def _no_id(line: dict) -> dict:
    return {key: value for key, value in line.items() if key != "custom_id"}


# name: (rewrite of the result files (output lines, error lines), expected (answered, failed) of 3 requests, whether
# the files need a warning). The last request's line is the one each fault touches.
FAULTY_FILES = {
    "in both files": (lambda out, err: (out, err + [_error_line(out[-1])]), (3, 0), True),
    "an error line before its answer": (lambda out, err: ([_error_line(out[-1])] + out, err), (3, 0), True),
    "repeated alike": (lambda out, err: (out + [out[-1]], err), (3, 0), True),
    "repeated, differing": (lambda out, err: (out + [_differing(out[-1])], err), (2, 1), True),
    "an answer and an error, repeated, differing": (
        lambda out, err: (out + [_differing(out[-1])], err + [_error_line(out[-1])]), (2, 1), True),
    "not in the batch": (lambda out, err: (out + [_foreign(out[-1])], err), (3, 0), True),
    "without a custom_id": (lambda out, err: (out + [_no_id(out[-1])], err), (3, 0), True),
    "a line that is no JSON object": (lambda out, err: (out + [["not", "an", "object"]], err), (3, 0), True),
    "missing": (lambda out, err: (out[:-1], err), (2, 1), False),
}


@pytest.mark.parametrize("fault", FAULTY_FILES)
def test_result_files_naming_a_request_twice_or_never_are_settled_by_one_rule_and_counted_as_stored(store, caplog,
                                                                                                   fault):
    """The rule: a request with one answer gets it, however often it is repeated and whatever error lines name it
    too; one given differing answers fails (none is known to be its own); one with no line fails; a line of no
    request of the job is ignored. What the summary, the job's last status and the store count agree."""
    rewrite, (answered, failed), warned = FAULTY_FILES[fault]
    statuses: list[JobStatus] = []
    with FakeOpenAIServer(batch_results=rewrite) as server, caplog.at_level("WARNING", "datagen.runs"):
        rounds = Rounds(Rephrase(), PASSAGES[:3])
        summary = run_batches(store, role_model(server), rounds, poll_seconds=0.01, on_status=statuses.append)
    counts = store.batch_counts()
    assert (summary.answered, summary.failed) == (counts["answered"], counts["failed"]) == (answered, failed)
    assert (statuses[-1].status, statuses[-1].completed, statuses[-1].failed) == ("completed", answered, failed)
    assert counts["in_flight"] == counts["unsubmitted"] == 0
    assert len(rounds.done) == answered and list(rounds.failed.values()) == ["batch_failed"] * failed
    assert {text: p.plain for text, p in rounds.done.items()} == {text: plain(text) for text in rounds.done}
    assert summary.prompt_tokens == 10 * answered  # the tokens of the answers kept, each once
    said = [r.getMessage() for r in caplog.records if r.name == "datagen.runs.batch"]
    assert bool([line for line in said if "result files" in line]) == warned, said
    assert all("\n" not in line for line in said)


def test_generate_counts_a_job_of_faulty_result_files_as_its_run_store_holds_it(workspace):
    """The real command: its job line and its summary count what run.db holds, and the faults are said once, in
    one line."""
    def rewrite(output, errors):  # the first request also failed, the last answered twice differently, a stray line
        return output + [_differing(output[-1]), _foreign(output[0])], errors + [_error_line(output[0])]

    with FakeOpenAIServer(batch_results=rewrite) as server:
        result = run_cli("generate", "style_clone", "-i", "data/samples", "-o", "out", "--max-tokens", "300",
                         "--limit", "3", "--batch", "--batch-poll", "0.01", "--model", "openai/fake",
                         "--api-base", server.url, cwd=workspace)
    assert "Traceback" not in result.stderr, result.stderr
    with RunStore(workspace / "out") as run:
        counts = run.batch_counts()
    assert (counts["answered"], counts["failed"]) == (2, 1)
    [ended] = [line for line in result.stderr.splitlines() if line.startswith("batch job 1 (") and "completed" in line]
    assert ended.endswith("completed, 3 requests: 2 answered, 1 failed"), result.stderr
    assert "0 resumed; 2 answered, 1 failed" in result.stderr
    faults = [line for line in result.stderr.splitlines() if "its result files" in line]
    assert len(faults) == 1 and "differing answers" in faults[0] and "1 line of no request" in faults[0]
    assert "this call: 3 chunks" in result.stderr and "samples, 1 failed" in result.stderr


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_deferred_is_not_retried_by_dspy_and_the_chat_adapter_does_not_fall_back(store, use_async):
    """The engine is asked once though DSPy may retry 3 times (its retry loop lets a custom engine's error through,
    wrapped, the original as its cause), and ChatAdapter never tries JSONAdapter on it: no second request."""
    with FakeOpenAIServer() as server:
        model = batch_model(role_model(server), store)
    model.lm.num_retries = 3
    engine = model.lm._async_engine_spec if use_async else model.lm._engine_spec
    asked = []
    original = engine.book.answer
    engine.book.answer = lambda body: asked.append(body) or original(body)
    with pytest.raises(dspy.utils.exceptions.LMError) as raised, dspy.context(lm=model.lm, adapter=ChatAdapter()):
        if use_async:
            import asyncio

            asyncio.run(Rephrase().rephrase.acall(passage=PASSAGES[0]))
        else:
            Rephrase()(chunk=PASSAGES[0])
    assert isinstance(raised.value.__cause__, Deferred)
    assert len(asked) == 1 and "JSON" not in json.dumps(asked[0])
    [(key, _)] = engine.book.take_new()
    assert key == raised.value.__cause__.key


def test_batch_request_errors_pass_the_chat_adapter_unchanged(store):
    with FakeOpenAIServer(faults=lambda source, attempt: status(500, message="overloaded")) as server:
        model = role_model(server)
        summary = run_batches(store, model, Rounds(Rephrase(), PASSAGES[:1]), poll_seconds=0.01)
    assert summary.failed == 1
    batched = batch_model(model, store)
    with pytest.raises(dspy.utils.exceptions.LMError) as raised, batched.context():
        Rephrase()(chunk=PASSAGES[0])
    error = raised.value.__cause__
    assert isinstance(error, BatchRequestError) and error.kind == "batch_failed" and "overloaded" in error.message
    assert batched.lm._engine_spec.book.take_new() == []  # no JSONAdapter request after it


def test_reasoning_models_get_max_completion_tokens():
    class Capture:
        def complete(self, request):
            raise Deferred(request_key(canonical(request_body(request))) + "|" + json.dumps(request_body(request)))

    for name, field in (("openai/gpt-5-mini", "max_completion_tokens"), ("openai/gpt-4o-mini", "max_tokens")):
        settings = {"temperature": 1.0, "max_tokens": 16000}
        lm = dspy.LM(name, engine=Capture(), cache=False, **settings)
        with pytest.raises(dspy.utils.exceptions.LMError) as raised, dspy.context(lm=lm, adapter=ChatAdapter()):
            Rephrase()(chunk="x")
        body = json.loads(_cause(raised.value, Deferred).key.split("|", 1)[1])
        assert body[field] == 16000 and body["model"] == name.split("/")[1]
        assert ({"max_tokens", "max_completion_tokens"} - {field}).isdisjoint(body)


def test_only_openai_models_go_to_batch_jobs(store):
    lm = dspy.LM("anthropic/claude-3-5-haiku-latest", api_key="k")
    with pytest.raises(DatagenError, match="OpenAI model"):
        batch_model(RoleModel(role="task", lm=lm, adapter=ChatAdapter(), context_window=None), store)


def test_the_same_role_model_settings_carry_over(store):
    with FakeOpenAIServer() as server:
        model = role_model(server, stop=["\n\nEND"])
    batched = batch_model(model, store)
    assert batched.name == model.name and batched.adapter is model.adapter and batched.role == "task"
    assert batched.lm.kwargs == {"temperature": 0.0, "max_tokens": 200, "stop": ["\n\nEND"]}
    assert batched.lm.cache is False


def test_an_answer_that_does_not_parse_is_asked_again_in_json_in_the_next_round(store):
    """ChatAdapter's fallback to JSONAdapter works as it does interactively: the JSON request is one more round."""
    with FakeOpenAIServer(layout=lambda values: "no markers here") as server:
        rounds = Rounds(Rephrase(), PASSAGES[:3])
        summary = run_batches(store, role_model(server), rounds, poll_seconds=0.01)
    assert {text: p.plain for text, p in rounds.done.items()} == {text: plain(text) for text in PASSAGES[:3]}
    assert (summary.rounds, summary.jobs, server.chat_requests) == (3, 2, 0)
    second = next(reversed(server.batches.values()))
    assert all("JSON" in line.decode() for line in server.files[second["input_file_id"]]["data"].splitlines())


def test_a_configured_role_model_goes_to_the_batch_api_at_its_api_base(store):
    """A role model as datagen.toml makes it (an openai/ model at a self-hosted api_base), whatever engine and model
    string it calls the server with interactively."""
    from datagen.workspace.config import ModelSettings
    from datagen.lm.roles import build_role_model

    with FakeOpenAIServer() as server:
        model = build_role_model(ModelSettings(model="openai/served-model", api_base=server.url, max_tokens=300,
                                               temperature=0.2), "task")
        rounds = Rounds(Rephrase(), PASSAGES[:2])
        run_batches(store, model, rounds, poll_seconds=0.01)
    assert len(rounds.done) == 2 and server.chat_requests == 0 and server.batches_created == 1
    assert batch_model(model, store).name == model.name == "openai/served-model"
    body = json.loads(next(iter(server.files.values()))["data"].splitlines()[0])["body"]
    assert (body["model"], body["max_tokens"], body["temperature"]) == ("served-model", 300, 0.2)


# --- through datagen.generate ----------------------------------------------------------------------------------

def generate_batched(workspace, out, server, batch=True, size=None, **settings):
    """generate() of style_clone on the workspace's samples with the task model on `server`, as a batch run unless
    `batch=False`: jobs of at most `size` requests, polled every 10 ms."""
    from datagen.workspace.config import Config, ModelSettings

    config = Config(models={"task": ModelSettings(model="openai/fake-model", api_base=server.url)})
    options = BatchOptions(poll=0.01, size=size) if batch else None
    return generate("style_clone", [workspace / "data/samples"], out, workspace=workspace, config=config,
                    settings=RunSettings(max_tokens=200, batch=options, **settings))


def test_a_batch_run_writes_the_dataset_an_interactive_run_writes_and_makes_no_interactive_call(workspace, tmp_path):
    with FakeOpenAIServer() as server:
        interactive = generate_batched(workspace, tmp_path / "interactive", server, batch=False)
        asked = server.chat_requests
        report = generate_batched(workspace, tmp_path / "batched", server, size=4)
        assert server.chat_requests == asked  # not one interactive call
    chunks = interactive.chunks
    assert written(report) == written(interactive) == chunks and not report.failures
    assert report.batch.jobs == server.batches_created == math.ceil(chunks / 4)  # one step: ceil(n / size) jobs
    assert report.batch.rounds == 2 and report.batch.requests == chunks
    for name in ("sharegpt.jsonl",):
        assert (tmp_path / "batched" / name).read_bytes() == (tmp_path / "interactive" / name).read_bytes()
    from datagen.runs.cost import batch_key
    from datagen.runs.summary import summarize

    assert set(summarize(tmp_path / "batched").usage) == {batch_key("openai/fake-model")}  # charged as batch


def test_a_batch_run_stopped_while_its_jobs_run_resumes_them_and_submits_nothing_twice(workspace, tmp_path,
                                                                                       monkeypatch):
    out = tmp_path / "run"
    with FakeOpenAIServer(batch_polls=3) as server:
        class StopOnPoll(generate_engine.Interrupt):  # Ctrl-C once the first job is submitted
            @property
            def requested(self):
                return server.batches_created >= 1

            @requested.setter
            def requested(self, value):
                pass

        monkeypatch.setattr(generate_engine, "Interrupt", StopOnPoll)
        first = generate_batched(workspace, out, server, size=1000)
        monkeypatch.undo()
        assert first.stopped and first.interrupted and written(first) == 0
        from datagen.runs.summary import summarize

        [job] = summarize(out).batch_jobs  # `datagen status` shows it in flight
        assert job["status"] == "in_progress" and job["batch_id"]
        created = server.batches_created
        report = generate_batched(workspace, out, server, size=1000)
    assert created == 1 and server.batches_created == 1  # the resume polled the job it had, and submitted none
    assert report.batch.resumed_jobs == 1 and written(report) == report.chunks and not report.failures
    assert server.batch_lines == report.chunks and server.chat_requests == 0


def test_a_chunk_failed_by_its_batch_is_asked_afresh_on_the_next_run(workspace, tmp_path):
    out = tmp_path / "run"
    refused = []

    def faults(source, attempt):
        if not refused:  # the first passage's first request is refused
            refused.append(source)
        return status(400, message="refused once") if source == refused[0] and attempt == 0 else None

    with FakeOpenAIServer(faults=faults) as server:
        report = generate_batched(workspace, out, server)
        assert dict(report.failures) == {"batch_failed": 1} and report.stopped is None
        again = generate_batched(workspace, out, server)
    assert again.chunks == 1 and not again.failures and written(again) == written(report) + 1
    assert again.batch.requests == 1  # asked afresh: the stored error was not its answer


def test_max_cost_is_refused_with_batch(workspace, tmp_path):
    with FakeOpenAIServer() as server, pytest.raises(DatagenError, match="--max-cost does not apply with --batch"):
        generate_batched(workspace, tmp_path / "run", server, max_cost=1.0)


def test_batch_options_are_given_as_one_value_and_the_flat_spellings_still_work_with_a_warning():
    assert RunSettings(batch=True).batch == BatchOptions() and RunSettings(batch=False).batch is None
    assert RunSettings().batch is None and RunSettings(batch=BatchOptions(poll=5)).batch.poll == 5
    with pytest.warns(DeprecationWarning, match=r"batch=BatchOptions\(poll=..., size=...\)"):
        flat = RunSettings(batch=True, batch_poll=0.5, batch_size=10)
    assert flat.batch == BatchOptions(poll=0.5, size=10)
    with pytest.warns(DeprecationWarning):
        assert RunSettings(batch=False, batch_poll=0.5, batch_size=10).batch is None  # as before: no batch run
    assert dataclasses.replace(flat, limit=3).batch == flat.batch  # a copy keeps its options, and does not warn
    # 0.1's attributes read what the run uses (0.1's defaults without a batch run), not the init-only None.
    assert (flat.batch_poll, flat.batch_size) == (0.5, 10) and (RunSettings().batch_poll, RunSettings().batch_size) \
        == (30.0, 50_000)
    with pytest.raises(ConfigError, match="expected a BatchOptions"):
        RunSettings(batch="yes")
    with pytest.warns(DeprecationWarning), pytest.raises(ConfigError, match="inside BatchOptions"):
        RunSettings(batch=BatchOptions(poll=1), batch_poll=5)  # which one? neither silently


def test_a_chunk_failed_on_a_stored_answer_is_asked_afresh_on_the_next_run_not_given_it_again(workspace, tmp_path):
    from .fakes import MALFORMED

    out = tmp_path / "run"
    first = []

    def faults(source, attempt):
        first.append(source) if not first else None
        return MALFORMED if source == first[0] and attempt == 0 else None  # each prompt's first answer unparseable

    with FakeOpenAIServer(faults=faults) as server:
        report = generate_batched(workspace, out, server)
        assert dict(report.failures) == {"parse": 1}
        again = generate_batched(workspace, out, server)
    assert again.chunks == 1 and not again.failures and written(again) == written(report) + 1


def test_each_batch_line_carries_the_cap_a_role_without_max_tokens_gets(workspace, tmp_path):
    with FakeOpenAIServer() as server:
        report = generate_batched(workspace, tmp_path / "run", server)  # [models.task] sets no max_tokens
        lines = [json.loads(line) for file in server.files.values() if file["purpose"] == "batch"
                 for line in file["data"].splitlines()]
    assert written(report) == report.chunks == len(lines) > 0
    assert {line["body"].get("max_tokens") for line in lines} == {default_max_tokens("task", 200)} == {656}


# --- a server without the Batch API (llama.cpp's, vLLM's) --------------------------------------------------------

def test_a_server_without_the_batch_api_is_named_in_one_line_and_its_job_is_not_left_in_flight(store):
    with FakeOpenAIServer(batch_api=False) as server:
        rounds = Rounds(Rephrase(), PASSAGES[:3])
        with pytest.raises(NoBatchAPI) as raised:
            run_batches(store, role_model(server), rounds, poll_seconds=0.01)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"{server.url}/files answered 404")
    assert "has no Batch API" in message and "run without --batch" in message
    assert server.batch_404s == 1 and server.chat_requests == 0 and not rounds.done
    [job] = store.batch_jobs()
    assert job["status"] == "failed" and job["batch_id"] is None  # ended: no run waits for it
    assert store.batch_counts() == {"answered": 0, "failed": 3, "in_flight": 0, "unsubmitted": 0, "jobs": 1}
    with FakeOpenAIServer() as server:  # the same store, a server with the API: the requests go anew
        summary = run_batches(store, role_model(server), rounds, poll_seconds=0.01)
    assert len(rounds.done) == 3 and summary.requests == 3 and server.batches_created == 1


def test_generate_batch_against_a_server_without_the_batch_api(workspace):
    """One line naming the endpoint that answered 404, a non-zero exit; `status` does not advise --batch again, and
    the run goes on without --batch in the same folder."""
    args = ("generate", "style_clone", "--input", "data/samples", "--out", "out", "--model", "openai/fake-model",
            "--max-tokens", "300")
    with FakeOpenAIServer(batch_api=False) as server:
        batched = run_cli(*args, "--api-base", server.url, "--batch", "--batch-poll", "0.01", cwd=workspace)
        assert_one_line_error(batched, f"{server.url}/files answered 404", "no Batch API", "run without --batch")
        status_ = run_cli("status", "out", cwd=workspace)
        assert status_.returncode == 0 and "batch jobs: 1 failed" in status_.stderr
        assert "--batch" not in status_.stderr + status_.stdout
        assert server.chat_requests == 0
        interactive = run_cli(*args, "--api-base", server.url, cwd=workspace)
    assert interactive.returncode == 0, interactive.stderr
    records = (workspace / "out/sharegpt.jsonl").read_text().splitlines()
    assert len(records) == server.chat_requests > 0
