import json
import logging
import sqlite3
import threading
import time
from pathlib import Path

import dspy
import pytest

from datagen.text.chunking import Chunk, chunk_documents
from datagen.workspace.config import Config, ModelSettings
from datagen.errors import DatagenError
from datagen.runs import RunSettings, bound_answers, program_fingerprint
from datagen.runs import generate as ENGINE
from datagen.runs.generate import generate
from datagen.runs.runner import FAILURES_BEFORE_FIRST_SUCCESS
from datagen.runs.window import check_budget, prompt_overhead
from datagen.samples import Sample
from datagen.store import Outcome, RunStore
from datagen.text.ingest import iter_documents, read_text
from datagen.lm.roles import JUDGE_MAX_TOKENS, RoleModel, build_role_model, default_max_tokens
from datagen.workspace.pipelines import load_program

from .conftest import every_record, written
from .fakes import TRUNCATED, FakeEngine, FakeOpenAIServer, Unparseable, fake_lm, plain



def fake_model(engine: FakeEngine | None = None, adapter=None, window: int | None = None) -> RoleModel:
    return RoleModel("task", fake_lm(engine), adapter or dspy.ChatAdapter(), window)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("adapter", [dspy.ChatAdapter(), dspy.JSONAdapter()], ids=["chat", "json"])
def test_generate_writes_generic_to_original_pairs(workspace, tmp_path, adapter):
    engine = FakeEngine()
    report = generate("style_clone", [workspace / "data/samples"], tmp_path / "out", workspace=workspace,
                      config=Config(), model=fake_model(engine, adapter),
                      settings=RunSettings(max_tokens=300, concurrency=3))

    chunks = list(chunk_documents(iter_documents([workspace / "data/samples"]), 300))
    records = read_jsonl(report.data_path)
    metadata = read_jsonl(report.metadata_path)
    assert report.chunks == report.samples == len(chunks) == len(records) == len(metadata) == engine.calls
    assert not report.failures
    for chunk, record, meta in zip(chunks, records, metadata):
        human, gpt = record["conversations"]
        assert human == {"from": "human", "value": plain(chunk.text)}
        assert gpt == {"from": "gpt", "value": chunk.text}
        assert meta["chunk_id"] == chunk.id and meta["model"] == "fake/model"
        # Metadata points back at the exact source text.
        assert read_text(workspace / meta["source"])[meta["start"]:meta["end"]] == chunk.text
    assert not list((tmp_path / "out").glob("*.partial*"))


def test_failed_chunks_are_recorded_and_skipped(workspace, tmp_path, caplog):
    def garbled_for_etienne(text):
        if "Étienne" in text:
            raise Unparseable
        return plain(text)

    report = generate("style_clone", [workspace / "data/samples"], tmp_path / "out", workspace=workspace,
                      config=Config(), model=fake_model(FakeEngine(respond=garbled_for_etienne)),
                      settings=RunSettings(max_tokens=300))
    bad = [c for c in chunk_documents(iter_documents([workspace / "data/samples"]), 300) if "Étienne" in c.text]
    assert bad and report.failures == {"parse": len(bad)}
    assert report.samples == report.chunks - len(bad)
    assert len(read_jsonl(report.data_path)) == report.samples
    assert all("Étienne" not in r["conversations"][1]["value"] for r in read_jsonl(report.data_path))
    assert bad[0].id in caplog.text


def test_run_stops_when_the_first_chunks_all_fail(workspace, tmp_path):
    engine = FakeEngine(fail_after=0)
    with pytest.raises(DatagenError, match=f"first {FAILURES_BEFORE_FIRST_SUCCESS} chunks all failed"):
        generate("style_clone", [workspace / "data/samples"], tmp_path / "out", workspace=workspace, config=Config(),
                 model=fake_model(engine), settings=RunSettings(max_tokens=200))
    # No more calls than chunks read: the fifth failure stopped it, nothing was read ahead beyond concurrency.
    assert engine.calls == FAILURES_BEFORE_FIRST_SUCCESS


def by_first_chunks(count: int, first, rest):
    """A FakeOpenAIServer `faults` function: each request of the first `count` chunks the server sees (by source)
    gets `first()`, every other request `rest()` (None: answered well)."""
    seen, lock = set(), threading.Lock()

    def fault(source: str, attempt: int):
        with lock:
            among_first = source in seen or len(seen) < count
            if among_first:
                seen.add(source)
        return first() if among_first else rest()
    return fault


def test_a_run_stopped_by_its_first_failures_keeps_the_chunks_that_had_sent_a_request(workspace, tmp_path):
    # The first five chunks the server sees fail at once; the others are answered well, a second later. The fifth
    # failure stops the run while chunks that have sent a request are in flight: they are paid for, so they are
    # recorded (a resume does not ask them again), and the DatagenError comes after.
    first_five_fail = by_first_chunks(FAILURES_BEFORE_FIRST_SUCCESS, lambda: TRUNCATED, lambda: time.sleep(1.0))
    with FakeOpenAIServer(faults=first_five_fail) as server:
        model = build_role_model(ModelSettings(model="openai/fake", api_base=server.url), "task")
        with pytest.raises(DatagenError, match=f"first {FAILURES_BEFORE_FIRST_SUCCESS} chunks all failed"):
            generate("style_clone", [workspace / "data/samples"], tmp_path / "out", workspace=workspace,
                     config=Config(), model=model, settings=RunSettings(max_tokens=200, concurrency=4))
        answered = {served.source for served in server.served if served.fault is None}
    with RunStore(tmp_path / "out") as store:
        assert answered and store.counts()["done"] == len(answered)


def test_max_failures_starts_no_more_chunks_and_keeps_those_in_flight(workspace, tmp_path):
    """As a first Ctrl-C does: the chunks in flight when the last allowed failure comes finish and are recorded
    (they are paid for), so that a resume does not ask them again."""
    engine = FakeEngine(fail_after=3)
    report = generate("style_clone", [workspace / "data/samples"], tmp_path / "out", workspace=workspace,
                      config=Config(), model=fake_model(engine),
                      settings=RunSettings(max_tokens=200, concurrency=4, max_failures=2))
    failed = sum(report.failures.values())
    assert report.stopped == f"stopped after {failed} failed chunks (--max-failures 2)"
    with RunStore(tmp_path / "out") as store:
        recorded = [call for chunk in store.chunks() for call in store.calls(chunk.id)]
        assert store.pending_count(None) > 0  # it stopped before the end
    assert len(recorded) == engine.calls  # every call asked is in the store
    assert report.chunks == 3 + sum(report.failures.values()) and sum(report.failures.values()) >= 2


@pytest.mark.parametrize("good", [0, 4])
def test_max_failures_sends_no_chunk_waiting_at_the_gate(workspace, tmp_path, good):
    """While failures are counted, a failed request's slot goes to no chunk waiting at the gate before the count
    stops the run: the first `good` chunks answered, every later answer cut off, the failures are those of the
    --concurrency slots, no more (chunks waiting at the gate, a slot's worth each, made 8 fail at -c 4 for
    --max-failures 1)."""
    later_ones_cut_off = by_first_chunks(good, lambda: None, lambda: TRUNCATED)
    with FakeOpenAIServer(latency=0.2, faults=later_ones_cut_off) as server:  # answers that come back together
        model = build_role_model(ModelSettings(model="openai/fake", api_base=server.url), "task")
        report = generate("style_clone", [workspace / "data/samples"], tmp_path / "out", workspace=workspace,
                          config=Config(), model=model,
                          settings=RunSettings(max_tokens=200, concurrency=4, max_failures=1))
    failed = sum(report.failures.values())
    assert 1 <= failed <= 4 and report.samples == good
    assert report.stopped == f"stopped after {failed} failed chunk{'s' * (failed != 1)} (--max-failures 1)"


def test_chunks_wait_at_the_gate_only_once_one_has_succeeded(workspace, tmp_path):
    """Until a chunk succeeds the model may fail every request, and a chunk waiting at the gate would send as soon as
    a failed one freed its slot: every answer cut off at -c 4, the first five failures stop the run with at most
    the three others in flight sent besides (answers that come back together, as they would from one server)."""
    with FakeOpenAIServer(latency=0.2, faults=lambda source, attempt: TRUNCATED) as server:
        model = build_role_model(ModelSettings(model="openai/fake", api_base=server.url), "task")
        with pytest.raises(DatagenError, match=f"first {FAILURES_BEFORE_FIRST_SUCCESS} chunks all failed"):
            generate("style_clone", [workspace / "data/samples"], tmp_path / "out", workspace=workspace,
                     config=Config(), model=model, settings=RunSettings(max_tokens=200, concurrency=4))
        sent = {served.source for served in server.served}
    assert FAILURES_BEFORE_FIRST_SUCCESS <= len(sent) <= FAILURES_BEFORE_FIRST_SUCCESS + 3


def test_limit_stops_after_n_chunks(workspace, tmp_path):
    engine = FakeEngine()
    report = generate("style_clone", [workspace / "data/samples"], tmp_path / "out", workspace=workspace,
                      config=Config(), model=fake_model(engine),
                      settings=RunSettings(max_tokens=200, limit=2, concurrency=4))
    assert report.chunks == report.samples == engine.calls == 2


def test_budget_that_cannot_fit_the_context_window_is_refused(workspace):
    program = load_program("style_clone", workspace)
    model = fake_model(window=1000)
    check_budget(program, model, 300)  # fits: prompt ~250 + 300 + 300
    with pytest.raises(DatagenError) as caught:
        check_budget(program, model, 600)
    message = str(caught.value)
    assert "1000-token context" in message and "fake/model" in message
    fits = int(message.split("--max-tokens ")[1].split()[0])
    assert 300 <= fits < 600
    check_budget(program, model, fits)  # the advice is right: that budget is accepted...
    with pytest.raises(DatagenError):
        check_budget(program, model, fits + 1)  # ...and one more token is not


# --- the cap on an answer's tokens of a role without max_tokens (issue 22) -----------------------------------------

JUDGE_ANSWERS = {"rating": lambda _: "4", "reasoning": lambda _: "the same content"}


def _judged(request: dict) -> bool:
    """Whether a request the fake server saw is a judge's (it asks for a rating), not the pipeline's."""
    return any("`rating`" in m["content"] for m in request["messages"] if m["role"] == "system")


@pytest.mark.parametrize("engine", [None, "litellm"])
def test_roles_without_max_tokens_send_a_cap_and_say_so_once(workspace, tmp_path, caplog, engine):
    name = f"openai/uncapped-{engine or 'native'}"  # a model of its own: the warning is once per process and model
    with FakeOpenAIServer(by_field=JUDGE_ANSWERS) as server:
        config = Config(models={"task": ModelSettings(model=name, api_base=server.url, engine=engine)})
        with caplog.at_level(logging.WARNING, "datagen.lm.roles"):
            for out in ("first", "second"):
                report = generate("style_clone", [workspace / "data/samples"], tmp_path / out, workspace=workspace,
                                  config=config, settings=RunSettings(max_tokens=300, limit=2),
                                  min_scores={"content": 0.0})
                assert written(report) == 2
    task = [r for r in server.requests if not _judged(r)]
    judge = [r for r in server.requests if _judged(r)]
    assert len(task) >= 4 and len(judge) == 4  # two chunks a run, each judged once
    assert {r.get("max_tokens") for r in task} == {default_max_tokens("task", 300)} == {2 * 300 + 256}
    assert {r.get("max_tokens") for r in judge} == {JUDGE_MAX_TOKENS}
    assert not any("max_completion_tokens" in r for r in server.requests)
    warned = [r.getMessage() for r in caplog.records if "has no max_tokens" in r.getMessage()]
    assert len(warned) == 2, warned  # one a role, the second run adding none
    assert all(r.levelname == "WARNING" for r in caplog.records if "has no max_tokens" in r.getMessage())
    for role, cap in (("task", "856"), ("judge", "512")):
        [line] = [w for w in warned if f"({role} role)" in w]
        assert name in line and f"capped at {cap} tokens" in line
        assert f"[models.{role}] of datagen.toml" in line and f"DATAGEN_{role.upper()}_MAX_TOKENS" in line


def test_a_max_tokens_of_the_users_is_sent_as_it_is_without_a_warning(workspace, tmp_path, caplog):
    with FakeOpenAIServer(by_field=JUDGE_ANSWERS) as server:
        config = Config(models={"task": ModelSettings(model="openai/capped", api_base=server.url, max_tokens=200)})
        with caplog.at_level(logging.WARNING, "datagen.lm.roles"):
            generate("style_clone", [workspace / "data/samples"], tmp_path / "out", workspace=workspace,
                     config=config, settings=RunSettings(max_tokens=300, limit=2), min_scores={"content": 0.0})
    assert server.requests and {r.get("max_tokens") for r in server.requests} == {200}  # the judge inherits it
    assert "has no max_tokens" not in caplog.text


def test_the_task_cap_follows_the_chunk_and_fits_a_known_context_window(workspace):
    program = load_program("style_clone", workspace)
    model = bound_answers(program, fake_model(), 300)
    assert model.max_tokens == 856 and model.default_cap
    assert bound_answers(program, model, 200).max_tokens == 856  # a smaller chunk keeps it: same requests
    larger = bound_answers(program, model, 200, [Chunk("c", "s", 0, 1, "x", 700)])  # a dev set's largest item
    assert larger.max_tokens == 2 * 700 + 256 and larger.default_cap
    windowed = bound_answers(program, fake_model(window=2000), 512)
    room = 2000 - prompt_overhead(program, windowed) - 512
    assert 512 <= windowed.max_tokens == room < 2 * 512 + 256  # what the window leaves, prompt and chunk aside
    check_budget(program, windowed, 512)  # and generate's check agrees it fits
    own = fake_model().with_settings(max_tokens=100)
    assert bound_answers(program, own, 300) is own  # the user's cap, however small, is theirs


def test_a_cap_datagen_set_leaves_the_runs_identity_as_it_was(workspace):
    """A run begun before datagen set caps (or with another chunk budget's cap) resumes as the same run; a cap the
    user sets is part of what made the run."""
    program = load_program("style_clone", workspace)
    bare = fake_model()
    assert program_fingerprint(program, bound_answers(program, bare, 300)) == program_fingerprint(
        program, bare)
    assert program_fingerprint(program, bare.with_settings(max_tokens=856)) != program_fingerprint(
        program, bare)


def test_the_embedded_model_keeps_its_cap_and_is_not_warned_of(workspace, caplog):
    from datagen.lm.local import DEFAULT_MAX_TOKENS as LOCAL_MAX_TOKENS
    from datagen.lm.roles import role_model

    model = role_model(Config(), "task")
    with caplog.at_level(logging.WARNING, "datagen.lm.roles"):
        assert bound_answers(load_program("style_clone", workspace), model, 512) is model
    assert model.max_tokens == LOCAL_MAX_TOKENS and not caplog.records


def test_unknown_pipeline_lists_the_available_ones(workspace, tmp_path):
    with pytest.raises(DatagenError, match=r"unknown pipeline 'nope'.*available: factual_qa, style_clone"):
        generate("nope", [workspace / "data/samples"], tmp_path / "out", workspace=workspace, config=Config(),
                 model=fake_model())


def test_pipeline_module_with_several_programs_must_name_one(workspace):
    (workspace / "programs" / "two.py").write_text(
        "import dspy\nclass A(dspy.Module):\n    pass\nclass B(dspy.Module):\n    pass\n")
    with pytest.raises(DatagenError, match="found: A, B"):
        load_program("two", workspace)
    (workspace / "programs" / "two.py").write_text(
        "import dspy\nclass A(dspy.Module):\n    pass\nclass B(dspy.Module):\n    pass\nPROGRAM = B\n")
    assert type(load_program("two", workspace)).__name__ == "B"


def test_local_default_when_no_model_is_configured():
    from datagen.lm.local import LOCAL_MODEL, LlamaCppEngine
    from datagen.lm.roles import role_model

    model = role_model(Config(), "task")
    assert model.name == LOCAL_MODEL and isinstance(model.lm.engine, LlamaCppEngine)
    assert isinstance(model.adapter, dspy.JSONAdapter) and model.context_window == 4096
    # Declared so that JSONAdapter sends the signature's schema (turned into a llama.cpp grammar).
    assert model.lm.supports_response_schema and "response_format" in model.lm.supported_params


def test_hosted_model_without_its_key_is_refused_before_any_call(monkeypatch):
    from datagen.lm.roles import role_model

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(DatagenError, match="OPENAI_API_KEY is not set"):
        role_model(Config(models={"task": ModelSettings(model="openai/gpt-4o-mini")}), "task")
    monkeypatch.setenv("MY_KEY", "sk-test-not-a-real-key")
    model = role_model(Config(models={"task": ModelSettings(model="openai/gpt-4o-mini", api_key_env="MY_KEY")}),
                       "task")
    assert model.lm.kwargs["api_key"] == "sk-test-not-a-real-key"
    assert model.context_window and model.context_window >= 100_000  # known to litellm's bundled catalogue


class Crash(BaseException):
    """Stands for the process dying mid-run (not an error a chunk could be failed with)."""


class DiesAfter(FakeEngine):
    """Answers the first `chunks` chunks of the run and crashes on the next. Decided by the chunk a prompt holds,
    not by a count of calls: with chunks in flight together, the order of their calls is the threads' choice."""

    def __init__(self, chunks: int, workspace: Path):
        super().__init__()
        texts = [c.text for c in chunk_documents(iter_documents([workspace / "data/samples"]), RUN_BUDGET)]
        self.first, self.fatal = texts[:chunks], texts[chunks]

    def complete(self, request):
        if any(self.fatal in m.text for m in request.messages):
            raise Crash
        return super().complete(request)


RUN_BUDGET = 200


def run(workspace, out, engine, **settings):
    """generate() of style_clone on the samples, with the fake model and `settings` (RunSettings' fields)."""
    return generate("style_clone", [workspace / "data/samples"], out, workspace=workspace, config=Config(),
                    model=fake_model(engine), settings=RunSettings(**{"max_tokens": RUN_BUDGET, **settings}))


def test_resume_sends_only_unfinished_chunks_and_exports_each_once(workspace, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(Crash):
        run(workspace, out, DiesAfter(4, workspace), concurrency=2)
    assert not (out / "sharegpt.jsonl").exists()  # no export from a run that did not finish

    healthy = FakeEngine()
    report = run(workspace, out, healthy, concurrency=2)
    total = len(list(chunk_documents(iter_documents([workspace / "data/samples"]), 200)))
    # Chunks 0-2 finished before chunk 4 started; chunk 3, or 3 and 5, ran beside it: each of those was kept if it
    # finished before the crash reached the run, and is run again if not.
    assert report.resumed >= 3 and healthy.calls == total - report.resumed == report.chunks
    records = every_record(out / "sharegpt.jsonl")
    assert len(records) == written(report) == total
    assert len({r["conversations"][1]["value"] for r in records}) == total

    again = FakeEngine()
    report = run(workspace, out, again)
    assert again.calls == 0 and report.resumed == total and written(report) == total
    assert every_record(out / "sharegpt.jsonl") == records


def test_a_resume_with_unchanged_files_does_not_chunk_them_again(workspace, tmp_path, monkeypatch):
    out = tmp_path / "run"
    run(workspace, out, FakeEngine(), limit=3)
    chunked = []
    monkeypatch.setattr(ENGINE, "chunk_documents", lambda *a: chunked.append(a) or chunk_documents(*a))
    report = run(workspace, out, FakeEngine())
    assert not chunked and report.resumed == 3 and written(report) > 3  # the store's chunks were used
    sample = workspace / "data/samples/lighthouse_keeper.md"
    sample.write_text(sample.read_text() + "\nA last word, mark you.\n")
    with pytest.raises(DatagenError, match="different inputs"):  # an edited file is chunked and noticed
        run(workspace, out, FakeEngine())
    assert chunked


def test_a_new_run_chunks_its_inputs_once_unless_they_are_too_many_to_keep(workspace, tmp_path, monkeypatch):
    chunked = []
    monkeypatch.setattr(ENGINE, "chunk_documents", lambda *a: chunked.append(a) or chunk_documents(*a))
    report = run(workspace, tmp_path / "kept", FakeEngine())
    total = len(list(chunk_documents(iter_documents([workspace / "data/samples"]), RUN_BUDGET)))
    assert len(chunked) == 1 and report.chunks == written(report) == total  # identified and stored from one pass
    monkeypatch.setattr(ENGINE, "CLAIM_KEPT_CHARS", 100)  # more than a claim keeps: chunked again to be stored
    report = run(workspace, tmp_path / "again", FakeEngine())
    assert len(chunked) == 3 and report.chunks == written(report) == total
    assert (tmp_path / "kept/sharegpt.jsonl").read_bytes() == (tmp_path / "again/sharegpt.jsonl").read_bytes()


def test_limit_then_full_run_continues_the_same_run(workspace, tmp_path):
    out = tmp_path / "run"
    first = FakeEngine()
    assert written(run(workspace, out, first, limit=3)) == 3 and first.calls == 3
    rest = FakeEngine()
    report = run(workspace, out, rest)
    assert rest.calls == report.chunks == written(report) - 3


def test_failed_chunks_are_retried_on_resume(workspace, tmp_path):
    out = tmp_path / "run"

    def garbled_for_etienne(text):
        if "Étienne" in text:
            raise Unparseable
        return plain(text)

    report = run(workspace, out, FakeEngine(respond=garbled_for_etienne))
    failed = report.failures["parse"]
    assert failed > 0
    healthy = FakeEngine()
    report = run(workspace, out, healthy)
    assert healthy.calls == failed and not report.failures and written(report) == report.resumed + failed


def test_changed_program_or_inputs_are_refused_unless_forced(workspace, tmp_path):
    out = tmp_path / "run"
    run(workspace, out, FakeEngine())
    signature = workspace / "signatures" / "style.py"
    signature.write_text(signature.read_text().replace("Rewrite the passage", "Rewrite this passage"))
    with pytest.raises(DatagenError, match="different program"):
        run(workspace, out, FakeEngine())
    forced = FakeEngine()
    report = run(workspace, out, forced, force=True)
    total = len(list(chunk_documents(iter_documents([workspace / "data/samples"]), 200)))
    assert forced.calls == report.chunks == written(report) == total  # started afresh under the new program

    (workspace / "data/samples/extra.txt").write_text("A new passage, mark you.\n")
    with pytest.raises(DatagenError, match="different inputs"):
        run(workspace, out, FakeEngine())


def test_run_store_passes_integrity_check(workspace, tmp_path):
    import sqlite3

    out = tmp_path / "run"
    run(workspace, out, FakeEngine())
    with sqlite3.connect(out / "run.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_store_keeps_step_outputs_usage_and_raw_answers_of_failures(workspace, tmp_path):
    import json
    import sqlite3

    def garbled_for_etienne(text):
        if "Étienne" in text:
            raise Unparseable
        return plain(text)

    out = tmp_path / "run"
    run(workspace, out, FakeEngine(respond=garbled_for_etienne))
    with sqlite3.connect(out / "run.db") as db:
        done = db.execute("SELECT c.text, r.outputs, r.usage FROM results r JOIN chunks c ON c.id = r.chunk_id "
                          "WHERE status = 'done'").fetchall()
        failed = db.execute("SELECT raw, usage, failure FROM results WHERE status = 'failed'").fetchall()
    text, outputs, usage = done[0]
    assert json.loads(outputs) == {"generic": plain(text)}
    assert json.loads(usage)["fake/model"]["prompt_tokens"] > 0
    assert failed and all(f == "parse" and raw == "Sorry, I would rather not." for raw, _, f in failed)
    # The tokens of failed attempts are spent too: they are counted (ChatAdapter, then its JSON retry).
    assert all(json.loads(u)["fake/model"]["prompt_tokens"] > 0 for _, u, _ in failed)


def test_a_run_keeps_no_predictions_in_memory(workspace, tmp_path):
    """DSPy's shared trace keeps the last 10,000 predictions with their inputs: a corpus run must not fill it."""
    report = generate("style_clone", [workspace / "data/samples"], tmp_path / "out", workspace=workspace,
                      config=Config(), model=fake_model(), settings=RunSettings(max_tokens=150, concurrency=2))
    assert report.samples > 10
    assert dspy.settings.trace == []


def test_chunks_in_parallel_call_numpy_with_one_blas_thread_each(workspace, tmp_path):
    """Chunks in flight are the parallelism: a BLAS pool per numpy call on top of them would oversubscribe the
    cores (the embedding metric ran 4.6x slower so). The process's own setting comes back after the run."""
    import numpy  # noqa: F401  (loads its BLAS)
    from threadpoolctl import threadpool_info, threadpool_limits

    def threads() -> set[int]:
        return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}

    seen = []

    class Probe(dspy.Module):
        def forward(self, chunk):
            seen.append(threads())
            return dspy.Prediction(samples=[Sample(chunk[:20], chunk)])

    with threadpool_limits(limits=2, user_api="blas"):
        assert threads() == {2}
        generate(Probe(), [workspace / "data/samples"], tmp_path / "out", workspace=workspace, config=Config(),
                 model=fake_model(), settings=RunSettings(max_tokens=200, limit=4, concurrency=2))
        assert threads() == {2}
    assert len(seen) == 4 and all(pools == {1} for pools in seen)


def test_pending_chunks_are_read_a_page_at_a_time_and_hold_no_snapshot(tmp_path):
    """Read as a run reads them, each recorded as it comes: every chunk within the limit that is not done, once, in
    order (a failed one again); and between two chunks no read holds a snapshot, so that a checkpoint can start
    SQLite's write-ahead log over (it grew to the whole run's writes behind one)."""
    chunks = [Chunk(f"c{i:04d}", "doc.txt", i, i + 1, f"text {i}", 1) for i in range(700)]
    with RunStore(tmp_path / "run") as store:
        store.add_chunks(chunks)
        store.record(Outcome(chunk=chunks[3], samples=[Sample("in", "out")]))  # done: not pending
        store.record(Outcome(chunk=chunks[400], failure="parse", message="no output"))  # failed: pending again
        seen, checkpoints = [], sqlite3.connect(store.path, timeout=0)
        for chunk in store.pending(650):
            seen.append(chunk.id)
            store.record(Outcome(chunk=chunk, samples=[Sample("in", "out")]))
            if len(seen) % 100 == 1:  # busy: a reader's snapshot kept it from restarting the log
                assert checkpoints.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
        checkpoints.close()
    assert seen == [chunk.id for chunk in chunks[:650] if chunk.id != "c0003"]
