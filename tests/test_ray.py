"""`--executor ray` on a real local Ray cluster (started for each run and stopped after it): the same export byte
for byte as a single-process run, an actor killed mid-run losing nothing, a driver killed and run again resuming, a
driver sent SIGTERM stopping cleanly, and evaluate on actors. Ray is an optional extra: these tests need it (`make test` installs it)."""

import json
import os
import signal
import subprocess

import pytest

from datagen.store import RunStore

from .conftest import every_record, run_cli, start_cli
from .executors import MODEL, done_chunks, generate_args, wait_running
from .fakes import FakeOpenAIServer

ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")
# A local Ray cluster starts in seconds, and minutes on a loaded machine: more than the suite's 300 s per test.
pytestmark = pytest.mark.timeout(900)


def actor_pids() -> list[int]:
    """The processes of datagen's Ray actors (Ray names them after the actor class)."""
    found = subprocess.run(["pgrep", "-f", "ray::ChunkWorker"], capture_output=True, text=True).stdout
    return [int(pid) for pid in found.split()]


def test_a_run_on_two_actors_writes_the_same_export_as_one_process(workspace, tmp_path):
    with FakeOpenAIServer() as server:  # Ray first: the local run is then answered from DSPy's disk cache
        distributed = run_cli(*generate_args(server, tmp_path / "ray", "--executor", "ray", "--actors", "2",
                                             "--concurrency", "4"), cwd=workspace, timeout=600)
        assert distributed.returncode == 0, distributed.stderr
        local = run_cli(*generate_args(server, tmp_path / "local"), cwd=workspace, timeout=300)
        assert local.returncode == 0, local.stderr
    exported = (tmp_path / "ray" / "sharegpt.jsonl").read_bytes()
    assert exported and exported == (tmp_path / "local" / "sharegpt.jsonl").read_bytes()
    with RunStore(tmp_path / "ray") as store:
        assert store.calls(next(iter(store.done()))[0].id), "the call log comes back from the actors"
        assert set(store.usage()) == {"openai/fake-model"}  # the tokens, under the model's name as configured


def test_an_actor_killed_mid_run_loses_nothing(workspace, tmp_path):
    out = tmp_path / "run"
    with FakeOpenAIServer(latency=0.5) as server:
        run = start_cli(*generate_args(server, out, "--executor", "ray", "--actors", "2", "--concurrency", "2"),
                        cwd=workspace)
        wait_running(run, lambda: len(actor_pids()) >= 2 and done_chunks(out) >= 2)
        os.kill(actor_pids()[0], signal.SIGKILL)
        _, stderr = run.communicate(timeout=600)
    assert run.returncode == 0, stderr
    assert "a Ray actor died" in stderr  # its chunks in flight were handed on, not lost
    with RunStore(out) as store:
        counts = store.counts()
        ids = [chunk.id for chunk, _ in store.done()]
    assert counts["failed"] == 0 and counts["done"] == counts["chunks"] and len(ids) == len(set(ids))
    assert len(every_record(out / "sharegpt.jsonl")) == counts["done"]


def test_a_driver_killed_mid_run_resumes_when_run_again(workspace, tmp_path):
    out = tmp_path / "run"
    with FakeOpenAIServer(latency=0.3) as server:
        args = generate_args(server, out, "--executor", "ray", "--actors", "2", "--concurrency", "2")
        first = start_cli(*args, cwd=workspace)
        wait_running(first, lambda: done_chunks(out) >= 3)
        first.kill()
        first.wait()
        finished = done_chunks(out)
        again = run_cli(*args, cwd=workspace, timeout=600)
        local = run_cli(*generate_args(server, tmp_path / "local"), cwd=workspace, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"resumed: {finished} chunks were already done" in again.stderr
    assert (out / "sharegpt.jsonl").read_bytes() == (tmp_path / "local" / "sharegpt.jsonl").read_bytes()


def test_sigterm_to_the_driver_stops_the_run_as_ctrl_c_does(workspace, tmp_path):
    # ray.init makes SIGTERM end a driver at once: datagen keeps its own handler, so the chunks in flight on the
    # actors finish and are kept, and the export is written.
    out = tmp_path / "run"
    with FakeOpenAIServer(latency=0.3) as server:
        args = generate_args(server, out, "--executor", "ray", "--actors", "2", "--concurrency", "2")
        first = start_cli(*args, cwd=workspace)
        wait_running(first, lambda: done_chunks(out) >= 2)
        first.send_signal(signal.SIGTERM)
        _, stderr = first.communicate(timeout=600)
        asked = len(server.arrivals)
        assert first.returncode == 143, stderr
        assert "stopping (SIGTERM)" in stderr and "Traceback" not in stderr
        assert stderr.strip().splitlines()[-1].startswith("error: interrupted (SIGTERM); run the same command again")
        assert done_chunks(out) == asked == len(every_record(out / "sharegpt.jsonl"))  # nothing paid for and lost
        again = run_cli(*args, cwd=workspace, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"resumed: {asked} chunks were already done" in again.stderr


def test_evaluate_on_actors_scores_as_one_process_does(workspace, tmp_path):
    dev = "data/style_clone/dev.jsonl"
    with FakeOpenAIServer() as server:
        scored = []
        for executor in ("local", "ray"):
            result = run_cli("evaluate", "style_clone", "--dev", dev, "--metric", "chrf", *MODEL, "--api-base",
                             server.url, "--executor", executor, "--out", str(tmp_path / executor), cwd=workspace,
                             timeout=600)
            assert result.returncode == 0, result.stderr
            scored.append((tmp_path / executor / "eval.json").read_text())
    local, distributed = (json.loads(text) for text in scored)
    assert [s["scores"] for s in distributed["samples"]] == [s["scores"] for s in local["samples"]]
    assert distributed["metrics"]["chrf"]["n"] == local["metrics"]["chrf"]["n"] > 0


def test_without_ray_the_error_says_what_to_install(workspace, tmp_path):
    blocker = tmp_path / "noray"
    (blocker / "ray").mkdir(parents=True)
    (blocker / "ray" / "__init__.py").write_text("raise ImportError('no ray here')\n")
    result = run_cli(*generate_args(_Unreached(), tmp_path / "out", "--executor", "ray"), cwd=workspace,
                     env={"PYTHONPATH": str(blocker)})
    assert result.returncode != 0 and "pip install 'datagen[ray]'" in result.stderr
    assert "Traceback" not in result.stderr


class _Unreached:
    url = "http://127.0.0.1:9/v1"  # never asked: the executor is refused first
