"""The call log a run keeps (each chunk's steps and LM calls, written with its result) and `datagen inspect`."""

import json
import sqlite3

import dspy
import pytest

from datagen.workspace.config import Config, ModelSettings
from datagen.errors import DatagenError
from datagen.dataset.export import sample_id, write_export
from datagen.runs import RunSettings
from datagen.runs.generate import generate
from datagen.runs.inspection import inspect_item, list_failed, list_samples, render
from datagen.lm.roles import RoleModel
from datagen.store import RunStore

from .conftest import run_cli, written
from .fakes import FakeEngine, FakeOpenAIServer, Unparseable, plain
from .test_cli import assert_one_line_error
from .test_generate import Crash, DiesAfter, run

REFUSAL = "Sorry, I would rather not."  # what the fake model answers when it cannot (see fakes.answer)
JUDGE_ANSWERS = {"rating": lambda text: str(1 + len(text) % 5), "reasoning": lambda text: f"read {text[:12]}"}


def garbled_for_etienne(text):
    if "Étienne" in text:
        raise Unparseable
    return plain(text)


@pytest.fixture
def served(workspace, tmp_path):
    """A run against an OpenAI-compatible server that records what it was sent: some chunks fail to parse, the
    others are scored by the content judge (same server) and chrF."""
    out = tmp_path / "run"
    with FakeOpenAIServer(respond=garbled_for_etienne, by_field=JUDGE_ANSWERS) as server:
        config = Config(models={"task": ModelSettings(model="openai/task", api_base=server.url),
                                "judge": ModelSettings(model="openai/judge", api_base=server.url)})
        report = generate("style_clone", [workspace / "data/samples"], out, workspace=workspace, config=config,
                          min_scores={"content": 0.0, "chrf": 0.0},
                          settings=RunSettings(max_tokens=300, concurrency=2))
    assert report.failures["parse"] > 0 and report.samples > 3
    return out, server.requests, report


def first_sample(out):
    with RunStore(out) as store:
        chunk, samples = next(store.done())
    return chunk, samples[0], sample_id(chunk.id, 0)


def first_failed(out):
    with RunStore(out) as store:
        return next(store.failed())[0]


def test_a_sample_shows_its_steps_scores_and_the_exact_prompts_the_model_got(served):
    out, requests, _ = served
    chunk, sample, sid = first_sample(out)
    view = inspect_item(out, sid, prompts=True)

    assert (view["kind"], view["status"], view["chunk"]["text"]) == ("sample", "done", chunk.text)
    assert [s["step"] for s in view["steps"]] == ["rephrase", "judge:content"]
    rephrase, judge = view["steps"]
    assert rephrase["inputs"] == {"passage": chunk.text} and rephrase["outputs"] == {"generic": plain(chunk.text)}
    assert judge["inputs"] == {"original": chunk.text, "rewrite": plain(chunk.text)}
    [shown] = view["samples"]
    assert (shown["id"], shown["input"], shown["output"]) == (sid, sample.input, sample.output)
    content = shown["scores"]["content"]
    assert content["feedback"] == JUDGE_ANSWERS["reasoning"](chunk.text)
    assert content["value"] == (int(JUDGE_ANSWERS["rating"](chunk.text)) - 1) / 4
    assert set(shown["scores"]) == {"content", "chrf"}

    calls = view["calls"]
    assert [(c["step"], c["model"]) for c in calls] == [("rephrase", "openai/task"), ("judge:content", "openai/judge")]
    for call in calls:  # the messages logged are the ones the server received, word for word
        assert call["messages"] in [r["messages"] for r in requests]
        assert call["error"] is None and call["cached"] is False and call["seconds"] > 0
        assert call["usage"]["completion_tokens"] == len(call["response"].split())  # the server's count
    assert calls[0]["response"] == f"[[ ## generic ## ]]\n{plain(chunk.text)}\n\n[[ ## completed ## ]]"

    text = render(view)
    system_prompt = calls[0]["messages"][0]["content"]
    assert system_prompt in text and calls[1]["response"] in text
    assert "=== step 2: judge:content ===" in text and content["feedback"] in text
    assert "calls" not in inspect_item(out, sid)  # only on request
    assert system_prompt not in render(inspect_item(out, sid))


def test_a_failed_chunk_shows_its_failure_raw_answer_and_both_attempts(served):
    out, _, _ = served
    chunk = first_failed(out)
    view = inspect_item(out, chunk.id, prompts=True)

    assert (view["kind"], view["status"], view["samples"]) == ("chunk", "failed", [])
    assert view["failure"]["kind"] == "parse" and view["failure"]["raw"] == REFUSAL
    assert view["failure"]["message"]
    [step] = view["steps"]
    assert step["step"] == "rephrase" and step["outputs"] is None
    assert step["inputs"] == {"passage": chunk.text} and step["error"].startswith("AdapterParseError")
    # ChatAdapter's answer did not parse, so DSPy asked again for JSON: both calls are logged.
    assert [c["response"] for c in view["calls"]] == [REFUSAL, REFUSAL]
    assert "JSON object" in view["calls"][1]["messages"][-1]["content"]
    text = render(view)
    assert "=== failure: parse ===" in text and REFUSAL in text


def test_a_chunk_id_shows_every_sample_of_the_chunk(served):
    out, _, _ = served
    chunk, sample, sid = first_sample(out)
    view = inspect_item(out, f" {chunk.id.upper()} ")  # ids are read leniently: pasted with spaces, any case
    assert view["kind"] == "chunk" and [s["id"] for s in view["samples"]] == [sid]


def test_the_list_is_a_seeded_random_pick_or_the_worst_first(served):
    out, _, report = served
    picked = list_samples(out, limit=3, seed=7)
    assert picked == list_samples(out, limit=3, seed=7) and len(picked["samples"]) == 3
    assert picked["total"] == report.samples
    assert len(list_samples(out, limit=100)["samples"]) == report.samples

    worst = list_samples(out, limit=100, worst=True)["samples"]
    lowest = [min(row["scores"].values()) for row in worst]
    assert lowest == sorted(lowest) and set(worst[0]["scores"]) == {"content", "chrf"}
    assert worst[0]["input"] and worst[0]["source"].endswith(".md")

    failed = list_failed(out, limit=2)
    assert failed["total"] == report.failures["parse"] and len(failed["failed"]) == 2
    assert all(row["kind"] == "parse" and row["raw"] == REFUSAL for row in failed["failed"])


def test_a_chunk_not_run_yet_is_shown_and_worst_needs_scores(workspace, tmp_path):
    out = tmp_path / "run"
    run(workspace, out, FakeEngine(), limit=2)
    with RunStore(out) as store:
        waiting = next(store.pending())
    view = inspect_item(out, waiting.id, prompts=True)
    assert (view["status"], view["steps"], view["samples"], view["calls"]) == ("not run", [], [], [])
    assert "not run yet" in render(view) and waiting.text in render(view)
    with pytest.raises(DatagenError, match="no sample has scores"):
        list_samples(out, worst=True)


def test_inspect_command_prints_the_prompts_and_json_that_round_trips(served, workspace):
    out, _, _ = served
    chunk, _, sid = first_sample(out)
    shown = run_cli("inspect", str(out), sid, "--prompts", cwd=workspace)
    assert shown.returncode == 0, shown.stderr
    view = inspect_item(out, sid, prompts=True)
    assert render(view) in shown.stdout
    as_json = run_cli("inspect", str(out), sid, "--prompts", "--json", cwd=workspace)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == json.loads(json.dumps(view))

    listed = run_cli("inspect", str(out), "--worst", "--limit", "2", "--json", cwd=workspace)
    assert json.loads(listed.stdout) == list_samples(out, limit=2, worst=True)
    table = run_cli("inspect", str(out), "--failed", cwd=workspace)
    assert table.returncode == 0 and first_failed(out).id in table.stdout and "parse" in table.stdout


@pytest.mark.parametrize("args, fragments", [
    (["run", "0123456789abcdef"], ["'0123456789abcdef'", "no sample or chunk"]),
    (["data"], ["data", "not a datagen run folder"]),
    (["run", "--prompts"], ["--prompts", "id"]),
    (["run", "--worst", "--failed"], ["--worst", "--failed"]),
])
def test_bad_ids_and_folders_get_a_one_line_error(workspace, args, fragments):
    run(workspace, workspace / "run", FakeEngine(), limit=1)
    assert_one_line_error(run_cli("inspect", *args, cwd=workspace), *fragments)


def test_a_store_made_before_the_call_log_opens_resumes_and_exports(workspace, tmp_path):
    out = tmp_path / "run"
    run(workspace, out, FakeEngine(), limit=3)
    with sqlite3.connect(out / "run.db") as db:  # the store as datagen wrote it before it logged calls
        db.executescript("DROP TABLE calls; DROP TABLE steps;")
    _, _, old_sid = first_sample(out)
    view = inspect_item(out, old_sid, prompts=True)
    assert view["steps"] == [] and view["calls"] == [] and view["samples"][0]["id"] == old_sid
    assert "no steps logged" in render(view) and "no LM calls logged" in render(view)

    report = run(workspace, out, FakeEngine())
    assert report.resumed == 3 and report.chunks > 0
    assert write_export(out, "jsonl").samples == written(report) == 3 + report.chunks
    with RunStore(out) as store:
        chunks = [chunk for chunk, _ in store.done()]
        assert store.steps(chunks[0].id) == [] and [s.step for s in store.steps(chunks[-1].id)] == ["rephrase"]


def test_a_retried_chunk_keeps_only_its_last_attempt(workspace, tmp_path):
    out = tmp_path / "run"
    run(workspace, out, FakeEngine(respond=garbled_for_etienne))
    chunk = first_failed(out)
    run(workspace, out, FakeEngine())
    view = inspect_item(out, chunk.id, prompts=True)
    assert view["status"] == "done" and view["failure"] is None
    assert [s["error"] for s in view["steps"]] == [None] and len(view["calls"]) == 1


def consistent(out) -> set[str]:
    """The chunks with a result, checked to be exactly those with steps and LM calls logged."""
    with sqlite3.connect(out / "run.db") as db:
        results, steps, calls = ({row[0] for row in db.execute(f"SELECT DISTINCT chunk_id FROM {table}")}
                                 for table in ("results", "steps", "calls"))
    assert results == steps == calls
    return results


def test_a_killed_run_leaves_no_result_without_its_log_nor_a_log_without_its_result(workspace, tmp_path,
                                                                                      monkeypatch):
    out = tmp_path / "run"
    with pytest.raises(Crash):  # the process dies with chunks in flight
        run(workspace, out, DiesAfter(4, workspace), concurrency=2)
    recorded = consistent(out)
    # Of the 4 chunks answered, those committed before the crash reached the run: with 2 in flight, how many is the
    # threads' timing (3 or 4), so the property is checked, not the count (each result with its log, see consistent).
    assert 1 <= len(recorded) <= 4

    def dies_while_writing(*args):
        raise Crash
    monkeypatch.setattr(RunStore, "_replace_log", dies_while_writing)  # after the result's row, before its log
    with pytest.raises(Crash):
        run(workspace, out, FakeEngine())
    assert consistent(out) == recorded  # the half-written chunk was rolled back whole


def test_a_call_answered_from_dspys_cache_is_marked_cached(workspace, tmp_path):
    # generate's task model skips DSPy's cache (the run store is the cache): a new run folder asks it again. The
    # quality gate's judge keeps DSPy's cache, and the second run's judge call, answered from it, is marked so.
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)  # (the disk default is ~/.dspy_cache)
    with FakeOpenAIServer(by_field=JUDGE_ANSWERS) as server:
        config = Config(models={"task": ModelSettings(model="openai/task", api_base=server.url),
                                "judge": ModelSettings(model="openai/judge", api_base=server.url)})
        for out in (tmp_path / "first", tmp_path / "again"):
            generate("style_clone", [workspace / "data/samples"], out, workspace=workspace, config=config,
                     min_scores={"content": 0.0}, settings=RunSettings(max_tokens=300, limit=1))
    (task, judge), (task_again, judge_again) = (inspect_item(out, first_sample(out)[2], prompts=True)["calls"]
                                                for out in (tmp_path / "first", tmp_path / "again"))
    assert [call["step"] for call in (task, judge)] == ["rephrase", "judge:content"]
    assert (task["cached"], task_again["cached"]) == (False, False)  # asked twice
    assert (judge["cached"], judge_again["cached"], judge_again["usage"]) == (False, True, None)
    assert judge["messages"] == judge_again["messages"] and judge["response"] == judge_again["response"]
    assert len(server.requests) == 3  # the task's twice, the judge's once
