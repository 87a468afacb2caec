"""The `datagen` command, run for real in subprocesses."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from datagen.text import chunk_documents, iter_documents

from .conftest import run_cli
from .fakes import MALFORMED, FakeOpenAIServer, plain

ROOT = Path(__file__).resolve().parent.parent


def assert_one_line_error(result, *fragments):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_help_lists_every_command_with_a_description(tmp_path):
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command, words in [("chunk", "token budget"), ("generate", "ShareGPT"), ("models", "role"),
                           ("pipelines", "List")]:
        line = next(line for line in result.stdout.splitlines() if f" {command} " in line)
        assert words in line


def test_python_m_datagen_is_the_datagen_command(tmp_path):
    """`python -m datagen`, for an environment whose scripts folder is not on PATH: the same commands, the same
    exit codes."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    helped = subprocess.run([sys.executable, "-m", "datagen", "--help"], capture_output=True, text=True, cwd=tmp_path,
                            env=env, timeout=120)
    assert helped.returncode == 0 and re.search(r"\bgenerate\b.*ShareGPT", helped.stdout)
    unknown = subprocess.run([sys.executable, "-m", "datagen", "nosuch"], capture_output=True, text=True,
                             cwd=tmp_path, env=env, timeout=120)
    assert unknown.returncode != 0 and "nosuch" in unknown.stderr


def test_chunk_writes_jsonl_that_recovers_the_source(workspace):
    result = run_cli("chunk", "data/samples", "--max-tokens", "200", "--out", "chunks.jsonl", cwd=workspace)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (workspace / "chunks.jsonl").read_text().splitlines()]
    assert f"{len(rows)} chunks" in result.stderr
    source = (workspace / rows[0]["source"]).read_text(encoding="utf-8")
    for row in rows:
        assert row["tokens"] <= 200
        assert source[row["start"]:row["end"]] == row["text"]


@pytest.mark.parametrize("engine", ["litellm", "auto"])
def test_generate_against_an_openai_compatible_server(workspace, engine):
    with FakeOpenAIServer(latency=0.01) as server:
        result = run_cli("generate", "style_clone", "--input", "data/samples", "--out", "out",
                         "--max-tokens", "300", "--concurrency", "4", "--model", "openai/fake-model",
                         "--api-base", server.url, cwd=workspace, env={"DATAGEN_TASK_ENGINE": engine})
    assert result.returncode == 0, result.stderr
    chunks = list(chunk_documents(iter_documents([workspace / "data/samples"]), 300))
    assert len(server.requests) == len(chunks)
    assert {r["model"] for r in server.requests} == {"fake-model"}
    assert "out/sharegpt.jsonl" in result.stdout
    records = [json.loads(line) for line in (workspace / "out/sharegpt.jsonl").read_text().splitlines()]
    assert [r["conversations"] for r in records] == [
        [{"from": "human", "value": plain(c.text)}, {"from": "gpt", "value": c.text}] for c in chunks]
    assert f"{len(chunks)} samples, 0 failed" in result.stderr


def test_generate_reads_the_model_from_datagen_toml(workspace):
    with FakeOpenAIServer() as server:
        (workspace / "datagen.toml").write_text(
            f'[models.task]\nmodel = "openai/from-toml"\napi_base = "{server.url}"\n\n[chunking]\nmax_tokens = 200\n')
        result = run_cli("generate", "style_clone", "-i", "data/samples", "-o", "out", "--limit", "2", cwd=workspace)
    assert result.returncode == 0, result.stderr
    assert [r["model"] for r in server.requests] == ["from-toml", "from-toml"]


def test_models_shows_each_role(workspace):
    (workspace / "datagen.toml").write_text('[models.judge]\nmodel = "openai/gpt-4o"\napi_key_env = "JUDGE_KEY"\n')
    result = run_cli("models", cwd=workspace, env={"DATAGEN_TASK_MODEL": "ollama_chat/llama3.2"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "ollama_chat/llama3.2" in next(line for line in lines if " task " in line)
    assert "JUDGE_KEY" in next(line for line in lines if " judge " in line)
    assert "ollama_chat/llama3.2" in next(line for line in lines if " prompt " in line)


def test_rerunning_generate_resumes_without_calling_the_model(workspace):
    args = ["generate", "style_clone", "-i", "data/samples", "-o", "out", "--max-tokens", "300", "--model",
            "openai/fake"]
    with FakeOpenAIServer() as server:
        first = run_cli(*args, "--limit", "2", "--api-base", server.url, cwd=workspace)
        assert first.returncode == 0, first.stderr
        second = run_cli(*args, "--api-base", server.url, cwd=workspace)
        assert second.returncode == 0, second.stderr
    chunks = list(chunk_documents(iter_documents([workspace / "data/samples"]), 300))
    assert len(server.requests) == len(chunks)
    assert "resumed: 2 chunks were already done" in second.stderr
    assert f"({len(chunks)} samples)" in second.stdout


def test_status_reports_progress_failures_and_tokens_of_an_interrupted_run(workspace):
    def garbled(text):
        from .fakes import Unparseable

        if "Étienne" in text:
            raise Unparseable
        return plain(text)

    with FakeOpenAIServer(respond=garbled) as server:
        result = run_cli("generate", "style_clone", "-i", "data/samples", "-o", "out", "--max-tokens", "300",
                         "--limit", "7", "--model", "openai/fake", "--api-base", server.url, cwd=workspace)
    assert result.returncode == 0, result.stderr
    status = run_cli("status", "out", cwd=workspace)
    assert status.returncode == 0, status.stderr
    total = len(list(chunk_documents(iter_documents([workspace / "data/samples"]), 300)))
    failed = sum("Étienne" in c.text for c in list(chunk_documents(iter_documents([workspace / "data/samples"]),
                                                                      300))[:7])
    assert failed
    assert f"{7 - failed}/{total} chunks done, {failed} failed, {total - 7} not yet run" in status.stderr
    assert f"{failed} × parse: e.g." in status.stderr
    assert "tokens on openai/fake:" in status.stderr and "cost: unknown" in status.stderr
    assert_one_line_error(run_cli("status", "data", cwd=workspace), "not a datagen run folder")


def test_max_failures_stops_cleanly_keeping_finished_work(workspace):
    from .fakes import Unparseable

    def fails_after_two(text, seen=[]):  # noqa: B006 - a counter across calls
        seen.append(text)
        if len(seen) > 2:
            raise Unparseable
        return plain(text)

    with FakeOpenAIServer(respond=fails_after_two) as server:
        result = run_cli("generate", "style_clone", "-i", "data/samples", "-o", "out", "--max-tokens", "300",
                         "--max-failures", "2", "--model", "openai/fake", "--api-base", server.url, cwd=workspace)
    assert_one_line_error(result, "stopped after 2 failed chunks", "again to resume")
    assert len((workspace / "out/sharegpt.jsonl").read_text().splitlines()) == 2


def test_rpm_is_taken_by_generate(workspace):
    # The spacing itself is checked on the limiter's own clock (test_ratelimit.py): no wall-clock gaps here.
    with FakeOpenAIServer() as server:
        result = run_cli("generate", "style_clone", "-i", "data/samples", "-o", "out", "--max-tokens", "300",
                         "--limit", "3", "--concurrency", "3", "--rpm", "6000", "--model", "openai/fake",
                         "--api-base", server.url, cwd=workspace)
    assert result.returncode == 0, result.stderr
    assert len(server.arrivals) == 3


def test_generate_takes_batch_and_max_cost_and_says_what_the_jobs_did(workspace):
    with FakeOpenAIServer() as server:
        result = run_cli("generate", "style_clone", "-i", "data/samples", "-o", "out", "--max-tokens", "300",
                         "--limit", "3", "--batch", "--batch-poll", "0.01", "--batch-size", "2", "--tpm", "100000",
                         "--model", "openai/fake", "--api-base", server.url, cwd=workspace)
        assert result.returncode == 0, result.stderr
        assert "batch: 2 rounds, 2 jobs submitted (3 requests)" in result.stderr
        assert "tokens on openai/fake (batch)" in result.stderr
        assert server.chat_requests == 0 and server.batches_created == 2
        status = run_cli("status", "out", cwd=workspace)
        assert "batch jobs: 2 completed" in status.stderr and "in flight" not in status.stderr
        (workspace / "datagen.toml").write_text('[models.task]\nmodel = "openai/fake"\ninput_price = 1000000\n'
                                                'output_price = 0\n')
        priced = run_cli("status", str(workspace / "out"), "--workspace", str(workspace), cwd=workspace.parent)
        assert "cost: $" in priced.stderr and "unknown" not in priced.stderr  # the workspace's price, from outside
        refused = run_cli("generate", "style_clone", "-i", "data/samples", "-o", "out2", "--batch", "--max-cost", "1",
                          "--model", "openai/fake", "--api-base", server.url, cwd=workspace)
    assert_one_line_error(refused, "--max-cost does not apply with --batch")


# Greek written in Latin letters ("Greeklish"), asking with Greek's question mark ';': the paragraph's script is
# Latin, so "auto" takes English rules (';' ends no sentence); `language = "el"` ends a sentence at each ';'.
GREEKLISH = " ".join([
    "Ti na kanei kaneis otan o kairos allazei kathe mera kai i thalassa den isychazei pote sto limani mas;",
    "O psaras koitaxe ton ourano gia poli ora kai meta gyrise sto spiti tou xoris na milisei se kanena.",
    "Pos na zisei kaneis otan o kairos allazei kathe mera kai i thalassa den isychazei pote sto limani mas;",
    "I giagia koitaxe ton ourano gia poli ora kai meta gyrise sto spiti tis xoris na milisei se kanena.",
]) + "\n"


def _configure(workspace, language: str) -> None:
    (workspace / "datagen.toml").write_text(f'[chunking]\nmax_tokens = 40\nlanguage = "{language}"\n')


def _greek_workspace(workspace, language: str) -> None:
    (workspace / "greek").mkdir()
    (workspace / "greek/limani.txt").write_text(GREEKLISH, encoding="utf-8")
    _configure(workspace, language)


def reworded(text: str) -> str:
    """A rephrase of a short line that is no copy of it: the fake's own keeps a line of short words as it is."""
    return "Put plainly: " + plain(text)


def test_the_configured_language_reaches_the_chunker(workspace):
    _greek_workspace(workspace, "el")
    questions = GREEKLISH.count(";")
    # English rules cut a question mid-sentence, at the budget; Greek ones after each ';'.
    assert not any(c.text.endswith(";") for c in chunk_documents(iter_documents([workspace / "greek"]), 40))

    result = run_cli("chunk", "greek", "--out", "chunks.jsonl", cwd=workspace)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (workspace / "chunks.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [row["text"].endswith(";") for row in rows] == [True, False] * questions

    devset = run_cli("devset", "style_clone", "-i", "greek", "--n", "10", "-o", "dev.jsonl", cwd=workspace)
    assert devset.returncode == 0, devset.stderr
    records = [json.loads(line) for line in (workspace / "dev.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["chunk"] for r in records] == [row["text"] for row in rows]

    with FakeOpenAIServer(respond=reworded) as server:
        generate = run_cli("generate", "style_clone", "-i", "greek", "-o", "out", "--model", "openai/fake",
                           "--api-base", server.url, cwd=workspace)
    assert generate.returncode == 0, generate.stderr
    assert [s["output"] for s in _every_sample(workspace)] == [row["text"] for row in rows]


def _every_sample(workspace) -> list[dict]:
    """Every sample of the run in out/, near-duplicates included (the text repeats its sentences on purpose)."""
    exported = run_cli("export", "out", "--format", "jsonl", "--keep-near-duplicates", "--val-fraction", "0",
                       cwd=workspace)
    assert exported.returncode == 0, exported.stderr
    return [json.loads(line) for line in (workspace / "out/samples.jsonl").read_text().splitlines()]


def test_a_changed_language_is_noticed_on_resume(workspace):
    _greek_workspace(workspace, "el")
    args = ["generate", "style_clone", "-i", "greek", "-o", "out", "--model", "openai/fake"]
    with FakeOpenAIServer(respond=reworded) as server:
        first = run_cli(*args, "--limit", "1", "--api-base", server.url, cwd=workspace)
        assert first.returncode == 0, first.stderr
        _configure(workspace, "auto")  # the input file itself is untouched
        second = run_cli(*args, "--api-base", server.url, cwd=workspace)
        assert_one_line_error(second, "different inputs", "--force")
        assert len(server.requests) == 1
        third = run_cli(*args, "--force", "--api-base", server.url, cwd=workspace)
    assert third.returncode == 0, third.stderr
    assert [s["output"] for s in _every_sample(workspace)] == [
        c.text for c in chunk_documents(iter_documents([workspace / "greek"]), 40)]


def _dev_chunks(workspace, split: str) -> list[str]:
    lines = (workspace / "data/style_clone/dev.jsonl").read_text(encoding="utf-8").splitlines()
    return [row["chunk"] for row in map(json.loads, lines) if row.get("split") == split]


def _requests_line(stderr: str) -> str:
    return next(line for line in stderr.splitlines() if line.startswith("LM requests sent:"))


def test_optimize_counts_the_requests_the_server_saw_and_keeps_library_logs_for_v(workspace):
    # The first train item's answers never parse: DSPy's bootstrap logs an ERROR line for it (chunk and all).
    unreadable = _dev_chunks(workspace, "train")[0]
    with FakeOpenAIServer(faults=lambda source, attempt: MALFORMED if source == unreadable else None) as server:
        args = ("optimize", "style_clone", "--dev", "data/style_clone/dev.jsonl", "--yes", "--metric",
                "generic_offline", "--model", "openai/fake-model", "--api-base", server.url)
        first = run_cli(*args, cwd=workspace)
        sent = len(server.requests)
        manifest = json.loads((workspace / "compiled/style_clone/bootstrap.manifest.json").read_text())
        # The same run again: DSPy's cache (on, under the workspace) answers every call, so nothing is sent and
        # a cap of 1 request is never reached.
        again = run_cli(*args, "--max-calls", "1", cwd=workspace)
        resent = len(server.requests) - sent
        verbose = run_cli("-v", *args, "--name", "verbose", cwd=workspace)
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    assert _requests_line(first.stderr).startswith(f"LM requests sent: task {sent} (")
    assert "answered from DSPy's cache" not in _requests_line(first.stderr)
    assert resent == 0 and _requests_line(again.stderr).startswith("LM requests sent: none (")
    assert re.search(r"answered from DSPy's cache: task \d+", _requests_line(again.stderr))
    # --metric generic_offline: the composite of that metric alone; no judge was asked (it would be this server).
    assert manifest["metrics"] == {"generic_offline": 1.0} and manifest["calls"] == {"task": sent}
    assert not any("`rating`" in json.dumps(body) for body in server.requests)
    assert manifest["demos"]["rejected"].get("program failed") == 1
    assert re.search(r"demos kept: rephrase \d; candidates rejected: \d+ \(.*program failed 1", first.stderr)
    assert re.search(r"held out: before \d\.\d{3} \(n 4, 0 failed\) -> after \d\.\d{3} \(n 4, 0 failed\): ",
                     first.stderr)
    # The libraries' log lines (DSPy's ERROR line quotes the whole chunk) only with -v; datagen's own stay.
    for quiet in (first, again):
        assert "Failed to run or to evaluate example" not in quiet.stderr and unreadable[:60] not in quiet.stderr
        assert "it/s]" not in quiet.stderr  # nor the optimizer's progress bar
        assert not [line for line in quiet.stderr.splitlines() if line.startswith(("ERROR:", "DEBUG:", "INFO:"))]
    assert verbose.returncode == 0 and "Failed to run or to evaluate example" in verbose.stderr


@pytest.mark.parametrize("command", ["optimize", "evaluate"])
def test_an_unknown_metric_is_a_one_line_error_naming_the_known_ones(workspace, command):
    result = run_cli(command, "style_clone", "--dev", "data/style_clone/dev.jsonl", "--yes" if command == "optimize"
                     else "--split=val", "--metric", "nope", cwd=workspace)
    assert_one_line_error(result, "'nope'", "generic_offline", "composite")


def test_optimize_metric_must_count_in_the_composite(workspace):
    result = run_cli("optimize", "style_clone", "--dev", "data/style_clone/dev.jsonl", "--yes", "--metric", "chrf",
                     cwd=workspace)
    assert_one_line_error(result, "metric 'chrf' does not count in style_clone's composite", "[metrics.style_clone]")


def test_evaluate_shows_n_and_the_failed_items_by_kind(workspace):
    unreadable = _dev_chunks(workspace, "val")[0]
    with FakeOpenAIServer(faults=lambda source, attempt: MALFORMED if source == unreadable else None) as server:
        result = run_cli("evaluate", "style_clone", "--dev", "data/style_clone/dev.jsonl", "--split", "val",
                         "--metric", "generic_offline", "--model", "openai/fake-model", "--api-base", server.url,
                         "--out", "evals/e", cwd=workspace)
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "generic_offline" in line)
    assert re.search(r"│ 4\s+│ 1 \(parse 1\)", row), result.stdout
    saved = json.loads((workspace / "evals/e/eval.json").read_text())["metrics"]["generic_offline"]
    assert saved["n"] == 4 and saved["failed"] == 1 and saved["failures"] == {"parse": 1} and saved["samples"] == 3
