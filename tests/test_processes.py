"""`--executor processes`: real worker processes (spawned) against the real fake OpenAI server. The same export byte
for byte as one process, a worker killed mid-run losing nothing, a driver killed and run again resuming (its
workers exiting with it), Ctrl-C to the terminal's whole process group stopping the run as in one process (the
workers not dying of it), and a one-line error for an option of another executor."""

import os
import signal
import subprocess

import pytest

from datagen.store import RunStore

from .conftest import every_record, run_cli, start_cli
from .executors import MODEL, done_chunks, generate_args, wait_running
from .fakes import FakeOpenAIServer

pytestmark = pytest.mark.timeout(600)  # worker processes import DSPy each: seconds, more on a loaded machine


def processes_args(server, out, workers="2", concurrency="2"):
    return generate_args(server, out, "--executor", "processes", "--workers", workers, "--concurrency", concurrency)


def worker_pids(driver: int) -> list[int]:
    """The driver's worker processes (`start_child`'s interpreters running `worker_child`)."""
    found = subprocess.run(["pgrep", "-P", str(driver), "-f", "datagen.runs.processes:worker_child"],
                           capture_output=True, text=True).stdout
    return [int(pid) for pid in found.split()]


def alive(pid: int) -> bool:
    """Whether `pid` is a running process (a zombie is not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_a_run_on_two_workers_writes_the_same_export_as_one_process(workspace, tmp_path):
    with FakeOpenAIServer() as server:  # the workers first: the local run is then answered from DSPy's disk cache
        workers = run_cli(*processes_args(server, tmp_path / "workers", concurrency="4"), cwd=workspace, timeout=300)
        assert workers.returncode == 0, workers.stderr
        asked = len(server.arrivals)
        local = run_cli(*generate_args(server, tmp_path / "local"), cwd=workspace, timeout=300)
        assert local.returncode == 0, local.stderr
    exported = (tmp_path / "workers" / "sharegpt.jsonl").read_bytes()
    assert exported and exported == (tmp_path / "local" / "sharegpt.jsonl").read_bytes()
    with RunStore(tmp_path / "workers") as store:
        assert store.counts()["done"] == store.counts()["chunks"] == asked  # each chunk asked once
        assert store.calls(next(iter(store.done()))[0].id), "the call log comes back from the workers"
        assert set(store.usage()) == {"openai/fake-model"}  # the tokens, under the model's name as configured


def test_a_worker_killed_mid_run_loses_nothing(workspace, tmp_path):
    out = tmp_path / "run"
    with FakeOpenAIServer(latency=0.5) as server:
        run = start_cli(*processes_args(server, out), cwd=workspace)
        wait_running(run, lambda: len(worker_pids(run.pid)) >= 2 and done_chunks(out) >= 2)
        os.kill(worker_pids(run.pid)[0], signal.SIGKILL)
        _, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr
    assert "a worker process was killed (SIGKILL); its chunks in flight go to the others" in stderr
    with RunStore(out) as store:
        counts = store.counts()
        ids = [chunk.id for chunk, _ in store.done()]
    assert counts["failed"] == 0 and counts["done"] == counts["chunks"] and len(ids) == len(set(ids))
    assert len(every_record(out / "sharegpt.jsonl")) == counts["done"]


def test_no_more_workers_start_than_chunks_may_be_in_flight(workspace, tmp_path):
    out = tmp_path / "run"
    with FakeOpenAIServer(latency=0.5) as server:  # 8 chunks one at a time: seconds left after the first
        run = start_cli(*processes_args(server, out, workers="2", concurrency="1"), "--limit", "8", cwd=workspace)
        wait_running(run, lambda: done_chunks(out) >= 1)
        started = worker_pids(run.pid)
        _, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr
    assert len(started) == 1  # --concurrency 1: a second worker would have had nothing to run


def test_a_driver_killed_mid_run_takes_its_workers_along_and_resumes_when_run_again(workspace, tmp_path):
    out = tmp_path / "run"
    with FakeOpenAIServer(latency=0.3) as server:
        args = processes_args(server, out)
        first = start_cli(*args, cwd=workspace)
        wait_running(first, lambda: len(worker_pids(first.pid)) >= 2 and done_chunks(out) >= 3)
        workers = worker_pids(first.pid)
        first.kill()
        first.wait()
        finished = done_chunks(out)
        again = run_cli(*args, cwd=workspace, timeout=300)
        local = run_cli(*generate_args(server, tmp_path / "local"), cwd=workspace, timeout=300)
    assert not any(alive(pid) for pid in workers), "a worker outlived its driver"
    assert again.returncode == 0, again.stderr
    assert f"resumed: {finished} chunks were already done" in again.stderr
    assert (out / "sharegpt.jsonl").read_bytes() == (tmp_path / "local" / "sharegpt.jsonl").read_bytes()


def test_ctrl_c_to_the_process_group_stops_the_run_as_in_one_process(workspace, tmp_path):
    # The terminal sends Ctrl-C to its whole foreground process group, the workers too: they must not die of it.
    # The driver stops handing out chunks, the chunks in flight finish and are kept, the export is written.
    out = tmp_path / "run"
    with FakeOpenAIServer(latency=0.5) as server:
        args = processes_args(server, out)
        first = start_cli(*args, cwd=workspace, wrapper=["setsid"])  # its own process group, as a terminal's job
        wait_running(first, lambda: len(worker_pids(first.pid)) >= 2 and done_chunks(out) >= 2)
        workers = worker_pids(first.pid)
        os.killpg(first.pid, signal.SIGINT)
        _, stderr = first.communicate(timeout=300)
        asked = len(server.arrivals)
        assert first.returncode == 130, stderr
        assert "stopping (Ctrl-C)" in stderr and "Traceback" not in stderr and "worker process" not in stderr
        assert stderr.strip().splitlines()[-1].startswith("error: interrupted (Ctrl-C); run the same command again")
        assert done_chunks(out) == asked == len(every_record(out / "sharegpt.jsonl"))  # nothing paid for and lost
        assert not any(alive(pid) for pid in workers), "a worker outlived the run"
        again = run_cli(*args, cwd=workspace, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"resumed: {asked} chunks were already done" in again.stderr


@pytest.mark.parametrize("flags, message", [
    (("--workers", "3"), "--workers goes with --executor processes"),
    (("--executor", "processes", "--actors", "3"), "--actors and --ray-address go with --executor ray"),
    (("--executor", "threads"), "--executor 'threads': use local, processes or ray"),
    # More workers than cores add only memory: 1,000 of them ran this machine out of it (a new user's try).
    (("--executor", "processes", "--workers", "100000"), "--workers must be between 1 and this machine's"),
])
def test_an_option_of_another_executor_is_refused_in_one_line(workspace, tmp_path, flags, message):
    result = run_cli(*generate_args(_Unreached(), tmp_path / "out", *flags), cwd=workspace)
    assert result.returncode != 0 and message in result.stderr
    assert "Traceback" not in result.stderr


class _Unreached:
    url = "http://127.0.0.1:9/v1"  # never asked: the options are refused first


def tears_down_into(conn) -> None:
    """A `start_child` call: an exit handler that would write the file named by the first message, then "ready";
    raises when that message asks it to."""
    import atexit
    from pathlib import Path

    path = conn.recv()
    atexit.register(Path(path).write_text, "torn down")
    conn.send("ready")
    if path.endswith("raise"):
        raise RuntimeError("asked to")


@pytest.mark.parametrize("fails", [False, True])
def test_a_child_exits_as_its_call_returns_without_the_interpreters_teardown(tmp_path, fails):
    """Its answers all went through its socket: the interpreter's teardown (a third of a second with DSPy's heap,
    which the run waited for) is skipped; a call that raises exits as Python does, teardown and all."""
    from datagen.runs.processes import start_child

    process, conn = start_child(f"{__name__}:tears_down_into")
    marker = tmp_path / ("raise" if fails else "returned")
    conn.send(str(marker))
    assert conn.recv() == "ready"
    process.join(60)
    assert process.exitcode == (1 if fails else 0)
    assert marker.exists() is fails
