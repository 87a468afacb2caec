"""What the tests of the executors that run chunks in other processes share (tests/test_processes.py,
tests/test_ray.py): the CLI run they start, and waiting on its run store."""

import time

from datagen.store import RunStore

MODEL = ("--model", "openai/fake-model")


def generate_args(server, out, *more):
    """`datagen generate` of style_clone on the workspace's samples into `out`, against the fake `server`."""
    return ("generate", "style_clone", "--input", "data/samples", "--out", str(out), "--max-tokens", "200",
            *MODEL, "--api-base", server.url, *more)


def done_chunks(run) -> int:
    """The run's chunks done; 0 before its store exists."""
    if not (run / "run.db").exists():
        return 0
    with RunStore(run) as store:
        return store.counts()["done"]


def wait_running(process, condition) -> None:
    """Wait until `condition()` holds, `process` running all along (the test's timeout bounds the wait)."""
    while not condition():
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.2)
