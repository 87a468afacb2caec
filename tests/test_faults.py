"""`datagen generate` against a model server that fails the ways real ones do, with several chunks in flight.

Faults are scripted per chunk (by the chunk's text and the attempt number of an identical request), so which
chunk meets which fault does not depend on the order requests arrive in.
"""

import json
import sqlite3

import pytest

from datagen.text.chunking import chunk_documents
from datagen.text.ingest import iter_documents

from .conftest import SAMPLES, run_cli
from .fakes import EMPTY, HANG, MALFORMED, RESET, TRUNCATED, FakeOpenAIServer, status
from .test_cli import assert_one_line_error

CHUNKS = [c.text for c in chunk_documents(iter_documents([SAMPLES]), 300)]
NUM_RETRIES = 1
ENV = {"DATAGEN_TASK_TIMEOUT": "0.3", "DATAGEN_TASK_NUM_RETRIES": str(NUM_RETRIES),
       "DATAGEN_TASK_MAX_TOKENS": "400"}
ARGS = ["generate", "style_clone", "-i", "data/samples", "-o", "out", "--max-tokens", "300", "--concurrency", "4",
        "--model", "openai/fake"]

# Per chunk, in chunk order: (fault, how many times it is served before good answers, the chunk's failure kind
# or None for done, a word its message must hold). The first two recover, so the run is known to work before
# the others fail (failures only, from the first chunk on, stop a run: see generate.run_chunks).
MIX = [
    (status(429, retry_after=1), 1, None, None),
    (status(500), 1, None, None),
    (status(503), 9, "server", "503"),
    (HANG, 9, "timeout", "time"),
    (RESET, 9, "connection", "reset"),
    (TRUNCATED, 9, "truncated", "max_tokens"),
    (MALFORMED, 9, "parse", "pars"),
    (EMPTY, 9, "empty_answer", "empty"),
    (None, 0, None, None),
]


def scripted(mix):
    by_text = {CHUNKS[i].strip(): (fault, times) for i, (fault, times, *_) in enumerate(mix)}

    def fault(source: str, attempt: int):
        fault, times = by_text.get(source.strip(), (None, 0))
        return fault if attempt < times else None
    return fault


def results(workspace) -> dict[str, tuple]:
    """{chunk text: (status, failure, message)} from the run store."""
    with sqlite3.connect(workspace / "out/run.db") as db:
        return {text.strip(): rest for text, *rest in db.execute(
            "SELECT c.text, r.status, r.failure, r.message FROM results r JOIN chunks c ON c.id = r.chunk_id")}


def exported(workspace) -> list[str]:
    """The exported samples' outputs (the chunk's text, for style_clone), each one at most once."""
    records = [json.loads(line) for line in (workspace / "out/sharegpt.jsonl").read_text().splitlines()]
    outputs = [r["conversations"][1]["value"].strip() for r in records]
    assert len(outputs) == len(set(outputs)), "a sample was exported twice"
    return outputs


@pytest.mark.parametrize("engine", ["litellm", "auto"])
def test_a_run_through_every_fault_records_each_cause_and_a_resume_finishes_it(workspace, engine):
    env = {**ENV, "DATAGEN_TASK_ENGINE": engine}
    with FakeOpenAIServer(faults=scripted(MIX)) as server:
        first = run_cli(*ARGS, "--limit", str(len(MIX)), "--api-base", server.url, cwd=workspace, env=env)
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr

    stored = results(workspace)
    assert len(stored) == len(MIX)
    for i, (fault, _, kind, word) in enumerate(MIX):
        state, failure, message = stored[CHUNKS[i].strip()]
        assert (state, failure) == (("failed", kind) if kind else ("done", None)), (fault, message)
        if kind:
            assert word in message.lower() and "\n" not in message, (fault, message)
    done = [CHUNKS[i].strip() for i, (*_, kind, _) in enumerate(MIX) if kind is None]
    assert sorted(exported(workspace)) == sorted(done)

    # Retries are bounded: no identical request was sent more than 1 + num_retries times.
    assert max(s.attempt for s in server.served) == NUM_RETRIES
    # And a 429's retry waited the Retry-After it asked for.
    limited = [s for s in server.served if s.source.strip() == CHUNKS[0].strip()]
    assert [s.attempt for s in limited] == [0, 1]
    assert limited[1].at - limited[0].at >= 1.0

    # A resume asks the model again for the failed chunks, and only those (past DSPy's cache, which holds the bad
    # answers), and then exports every chunk once.
    with FakeOpenAIServer() as healthy:
        second = run_cli(*ARGS, "--api-base", healthy.url, "--limit", str(len(MIX)), cwd=workspace, env=env)
    assert second.returncode == 0, second.stderr
    failed = {CHUNKS[i].strip() for i, (*_, kind, _) in enumerate(MIX) if kind}
    assert {s.source.strip() for s in healthy.served} == failed
    assert sorted(exported(workspace)) == sorted(text.strip() for text in CHUNKS[:len(MIX)])


def test_a_retry_after_longer_than_datagen_waits_fails_the_chunk_at_once(workspace):
    with FakeOpenAIServer(faults=lambda source, attempt: status(429, retry_after=3600)) as server:
        # Not an hour: no sleep for the Retry-After (run_cli's timeout holds it, without timing the run).
        result = run_cli(*ARGS, "--limit", "1", "--api-base", server.url, cwd=workspace, env=ENV, timeout=120)
    assert_one_line_error(result, "the dataset is empty: most chunks failed: 1 × rate_limit")
    assert len(server.served) == 1  # asked to come back in an hour: no retry now
    ((state, failure, message),) = results(workspace).values()
    assert (state, failure) == ("failed", "rate_limit")
    assert "3600" in message
