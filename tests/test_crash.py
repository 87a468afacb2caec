"""Interruptions, for real: `datagen generate` killed (SIGKILL) at random moments and resumed, stopped with
Ctrl-C, SIGTERM or SIGHUP, and raced by a second process on the same run folder or study."""

import json
import os
import random
import signal
import sqlite3
import subprocess
import threading
import time

import pytest

from datagen.runs.interrupt import Interrupt
from datagen.text.chunking import chunk_documents
from datagen.text.ingest import iter_documents

from .conftest import every_record, run_cli, start_cli
from .fakes import FakeOpenAIServer
from .test_cli import assert_one_line_error

BUDGET = "100"  # small chunks: 44 of the sample corpus, so kills land at many points of a run
CONCURRENCY = 4


def generate_args(server, out="out", *extra):
    return ["generate", "style_clone", "-i", "data/samples", "-o", out, "--max-tokens", BUDGET, "--concurrency",
            str(CONCURRENCY), "--model", "openai/fake", "--api-base", server.url, *extra]


def wait_for(condition, timeout=60.0, process=None):
    """Poll until `condition()` holds; False if `process` ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if process is not None and process.poll() is not None:
            return False
        time.sleep(0.02)
    raise AssertionError("timed out waiting")


def integrity(run_dir):
    with sqlite3.connect(run_dir / "run.db") as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


def exported(run_dir):
    names = ("sharegpt.jsonl", "metadata.jsonl", "sharegpt.test.jsonl", "metadata.test.jsonl")
    return [(run_dir / name).read_bytes() for name in names]


def test_killed_at_random_moments_and_resumed_the_export_is_byte_identical(workspace):
    chunks = list(chunk_documents(iter_documents([workspace / "data/samples"]), int(BUDGET)))
    rng = random.Random(20261125)
    with FakeOpenAIServer(latency=0.05) as server:
        # Its own DSPy cache: the runs below must ask the model themselves.
        reference = run_cli(*generate_args(server, "reference"), cwd=workspace,
                            env={"DSPY_CACHEDIR": str(workspace / "reference-cache")})
        assert reference.returncode == 0, reference.stderr
        paid_by_reference = len(server.arrivals)
        killed = 0
        for _ in range(6):
            started, before = time.monotonic(), len(server.arrivals)
            # Either after a random number of LM calls (mid-run), or after a random time (start-up, chunking,
            # opening the store, writing the export: wherever that lands).
            if rng.random() < 0.7:
                calls = rng.randint(1, 24)
                moment = lambda: len(server.arrivals) - before >= calls  # noqa: E731
            else:
                delay = rng.uniform(0.5, 6.0)
                moment = lambda: time.monotonic() - started >= delay  # noqa: E731
            process = start_cli(*generate_args(server), cwd=workspace)
            if wait_for(moment, process=process):
                process.send_signal(signal.SIGKILL)
                killed += 1
            process.communicate()
            if (workspace / "out/run.db").exists():  # not yet made when killed early in start-up
                assert integrity(workspace / "out") == "ok"
        assert killed >= 4  # most rounds did die mid-way (one may finish first: it is then a plain resume)
        final = run_cli(*generate_args(server), cwd=workspace)
    assert final.returncode == 0, final.stderr
    assert exported(workspace / "out") == exported(workspace / "reference")
    train = [json.loads(line)["chunk_id"] for line in (workspace / "out/metadata.jsonl").read_text().splitlines()]
    held = [json.loads(line)["chunk_id"] for line in (workspace / "out/metadata.test.jsonl").read_text().splitlines()]
    order = [c.id for c in chunks]
    assert sorted(train + held) == sorted(order) and held  # each chunk once, in one split or the other
    assert train == [cid for cid in order if cid in set(train)]  # in chunk order
    assert integrity(workspace / "out") == "ok"
    # A kill loses at most the chunks in flight: everything committed before it was not paid for again.
    paid = len(server.arrivals) - paid_by_reference
    assert len(chunks) <= paid <= len(chunks) + killed * CONCURRENCY


# What a user, a service manager (systemd, Docker, Kubernetes, Slurm: SIGTERM) and a closed terminal (SIGHUP) send:
# each stops a run as Ctrl-C does, with the shell's exit status for it.
STOPS = [(signal.SIGINT, "Ctrl-C", 130), (signal.SIGTERM, "SIGTERM", 143), (signal.SIGHUP, "SIGHUP", 129)]


@pytest.mark.parametrize("signum, label, status", STOPS, ids=[label for _, label, _ in STOPS])
def test_a_stop_signal_finishes_the_chunks_in_flight_and_says_how_to_resume(workspace, signum, label, status):
    with FakeOpenAIServer(latency=0.3) as server:
        process = start_cli(*generate_args(server), cwd=workspace)
        assert wait_for(lambda: len(server.arrivals) >= 6, process=process)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=30)
        asked = len(server.arrivals)
        assert process.returncode == status, stderr
        assert "Traceback" not in stderr
        assert f"stopping ({label}): nothing new starts; what has been sent finishes and is kept" in stderr
        assert_one_line_error(subprocess.CompletedProcess([], process.returncode, "", stderr),
                              f"interrupted ({label})", "run the same command again to resume")
        # Every call made was for a chunk that finished and was kept: none paid for and thrown away.
        with sqlite3.connect(workspace / "out/run.db") as db:
            assert db.execute("SELECT count(*) FROM results WHERE status = 'done'").fetchone()[0] == asked
        assert len(every_record(workspace / "out/sharegpt.jsonl")) == asked
        resumed = run_cli(*generate_args(server), cwd=workspace)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed: {asked} chunks were already done" in resumed.stderr
    assert len(server.arrivals) == 44


def test_a_stop_signal_sends_nothing_for_the_chunks_waiting_their_turn(workspace):
    # Chunks beyond --concurrency wait at the gate, prepared (datagen.runs.runner.LOOKAHEAD). A stop gives them
    # back unsent: only the requests in flight are paid for, and the chunks that waited run on resume. The model
    # answers nothing until the stop has been heard, so no request can slip through before it whatever the load.
    heard = threading.Event()
    with FakeOpenAIServer(faults=lambda source, attempt: heard.wait(120) and None) as server:
        process = start_cli(*generate_args(server), cwd=workspace)
        assert wait_for(lambda: len(server.arrivals) >= CONCURRENCY, process=process)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
        reader.start()
        process.send_signal(signal.SIGINT)
        assert wait_for(lambda: any("stopping (Ctrl-C)" in line for line in lines), process=process)
        heard.set()
        assert process.wait(timeout=60) == 130
        reader.join(timeout=10)
        asked = len(server.arrivals)
        resumed = run_cli(*generate_args(server), cwd=workspace)
        total = len(server.arrivals)
    assert asked == CONCURRENCY, "".join(lines)
    with sqlite3.connect(workspace / "out/run.db") as db:
        assert db.execute("SELECT count(*) FROM results WHERE status = 'done'").fetchone()[0] == 44
    assert resumed.returncode == 0 and f"resumed: {CONCURRENCY} chunks were already done" in resumed.stderr
    assert total == 44  # every chunk asked once: none paid for twice


def test_the_run_hears_once_that_it_is_ending_by_a_signal_or_for_its_own_reason():
    # What gives back the chunks waiting their turn (above) on a stop signal and on --max-failures.
    heard: list[str] = []
    interrupt = Interrupt()
    with interrupt.calling(lambda: heard.append("runner")):
        assert not heard
        interrupt.finish()  # --max-failures
        interrupt.finish()
        assert heard == ["runner"]
        with interrupt.calling(lambda: heard.append("late")):  # already ending: told at once
            pass
    assert heard == ["runner", "late"]
    signalled = Interrupt()
    with signalled.calling(lambda: heard.append("signal")):
        signalled(signal.SIGTERM, None)
    signalled.finish()
    assert heard == ["runner", "late", "signal"] and signalled.requested


@pytest.mark.parametrize("first, second, label, status", [
    (signal.SIGINT, signal.SIGINT, "Ctrl-C", 130), (signal.SIGTERM, signal.SIGTERM, "SIGTERM", 143),
    (signal.SIGHUP, signal.SIGINT, "Ctrl-C", 130)], ids=["ctrl-c twice", "sigterm twice", "sighup then ctrl-c"])
def test_a_second_stop_signal_stops_at_once_without_waiting_for_the_model(workspace, first, second, label, status):
    with FakeOpenAIServer(latency=30) as server:  # a model that hangs
        process = start_cli(*generate_args(server, "out", "--limit", "8"), cwd=workspace)
        assert wait_for(lambda: len(server.arrivals) >= CONCURRENCY, process=process)
        process.send_signal(first)
        time.sleep(0.5)
        process.send_signal(second)
        _, stderr = process.communicate(timeout=20)
    # It ended without waiting for the model: no answer came (each would take 30 s), so no chunk finished.
    with sqlite3.connect(workspace / "out" / "run.db") as db:
        assert db.execute("SELECT count(*) FROM results").fetchone()[0] == 0
    assert process.returncode == status, stderr
    assert "Traceback" not in stderr
    assert_one_line_error(subprocess.CompletedProcess([], status, "", stderr), f"interrupted ({label})",
                          "finished chunks are kept in out", "again to resume")
    assert integrity(workspace / "out") == "ok"


@pytest.mark.parametrize("signum, label", [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")],
                         ids=["ctrl-c", "sigterm"])
def test_evaluate_stops_at_the_first_stop_signal_without_waiting_for_the_model(workspace, signum, label):
    # evaluate (and optimize, which scores through it) keeps nothing of an item in flight: the first signal stops
    # it at once, instead of after every call in flight has come back.
    with FakeOpenAIServer(latency=30) as server:  # a model that hangs
        process = start_cli("evaluate", "style_clone", "--dev", "data/style_clone/dev.jsonl", "--metric", "chrf",
                            "--concurrency", "2", "--model", "openai/fake", "--api-base", server.url, "--out",
                            "evals/e", cwd=workspace)
        assert wait_for(lambda: len(server.arrivals) >= 2, process=process)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=20)  # before any call in flight comes back (each takes 30 s)
    assert process.returncode == 128 + signum and "Traceback" not in stderr
    assert_one_line_error(subprocess.CompletedProcess([], process.returncode, "", stderr), f"interrupted ({label})")


def test_a_run_whose_terminal_hangs_up_stops_cleanly_with_sighups_status(workspace):
    # The terminal closes (its master side goes), then SIGHUP comes, as the kernel sends it: every write to the
    # terminal now fails (EIO), and the run must still finish its chunks in flight, write the dataset and exit 129.
    with FakeOpenAIServer(latency=0.3) as server:
        master, terminal = os.openpty()
        process = start_cli(*generate_args(server), cwd=workspace, terminal=terminal)
        os.close(terminal)
        try:
            assert wait_for(lambda: len(server.arrivals) >= 6, process=process)
        finally:
            os.close(master)
        process.send_signal(signal.SIGHUP)
        assert process.wait(timeout=60) == 129
        asked = len(server.arrivals)
    with sqlite3.connect(workspace / "out/run.db") as db:
        assert db.execute("SELECT count(*) FROM results WHERE status = 'done'").fetchone()[0] == asked
    assert len(every_record(workspace / "out/sharegpt.jsonl")) == asked
    assert integrity(workspace / "out") == "ok"


def test_a_stop_signal_ignored_at_start_stays_ignored(workspace):
    # nohup starts a command with SIGHUP ignored: the terminal closing must not stop it.
    with FakeOpenAIServer(latency=0.2) as server:
        process = start_cli(*generate_args(server, "out", "--limit", "8"), cwd=workspace, wrapper=["nohup"])
        assert wait_for(lambda: len(server.arrivals) >= 2, process=process)
        process.send_signal(signal.SIGHUP)
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "stopping" not in stderr and len(every_record(workspace / "out/sharegpt.jsonl")) > 0


def test_a_second_generate_on_a_run_folder_in_use_is_refused(workspace):
    # The model answers nothing until the second run is over, so the first holds the folder all along however
    # slowly either starts: no race on timings.
    second_done = threading.Event()
    with FakeOpenAIServer(faults=lambda source, attempt: second_done.wait(120) and None) as server:
        first = start_cli(*generate_args(server), cwd=workspace)
        lock = workspace / "out/run.lock"
        # The first holds the lock (its pid is in the lock file) and is waiting on the model.
        assert wait_for(lambda: len(server.arrivals) >= 1 and lock.read_text() == str(first.pid), timeout=120,
                        process=first)
        try:
            second = run_cli(*generate_args(server), cwd=workspace)
        finally:
            second_done.set()
        first.communicate(timeout=120)
        assert first.returncode == 0
        assert_one_line_error(second, "out is in use by process", str(first.pid), "another --out")
        assert len(server.arrivals) == 44  # the second paid for nothing
        # The lock dies with its holder: a run killed outright leaves its lock file, but not its folder locked.
        killed = start_cli(*generate_args(server, "other"), cwd=workspace)
        lock = workspace / "other/run.lock"
        assert wait_for(lambda: lock.exists() and lock.read_text() == str(killed.pid), timeout=120, process=killed)
        killed.send_signal(signal.SIGKILL)
        killed.communicate()
        assert run_cli(*generate_args(server, "other"), cwd=workspace).returncode == 0


def test_a_second_search_of_a_study_in_use_is_refused_while_another_study_runs(workspace):
    (workspace / "datagen.toml").write_text('[metrics.style_clone]\nweights = { generic_offline = 1 }\n')
    args = ["optimize", "style_clone", "--dev", "data/style_clone/dev.jsonl", "--yes", "--model", "openai/fake",
            "--trials"]
    # The first search waits on a slow model while the others run; theirs answers at once.
    with FakeOpenAIServer(latency=5) as slow, FakeOpenAIServer() as fast:
        first = start_cli(*args, "3", "--api-base", slow.url, cwd=workspace)
        try:
            assert wait_for(lambda: len(slow.arrivals) >= 1, process=first)
            same = run_cli(*args, "1", "--api-base", fast.url, cwd=workspace)
            assert not fast.arrivals
            other = run_cli(*args, "1", "--api-base", fast.url, "--name", "other", cwd=workspace)
        finally:
            first.send_signal(signal.SIGKILL)
            first.communicate()
    assert_one_line_error(same, "study 'search' of style_clone is in use by process", str(first.pid),
                          "another --name")
    # Another study in the same database runs beside it.
    assert other.returncode == 0, other.stderr
    assert "1 trials (1 this run)" in other.stdout
