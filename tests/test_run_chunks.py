"""How `run_chunks` keeps its slots busy: a chunk that succeeded gives its slot to the next chunk before the caller
records its outcome; after a failure (the caller or the run may stop there), or under a spending cap (which must
first see what the chunk cost), the next chunk waits for the caller. On the event loop, once a chunk has succeeded,
`LOOKAHEAD` chunks more than `concurrency` are in flight, their requests held at the gate."""

import threading

import dspy
import pytest

from datagen import Sample
from datagen.lm.roles import build_role_model
from datagen.runs.runner import run_chunks
from datagen.text.chunking import Chunk
from datagen.workspace.config import ModelSettings

from .fakes import FakeOpenAIServer


class Marks(dspy.Module):
    """Calls no model: sets each chunk's event as it starts; fails the chunks in `failing`."""

    def __init__(self, chunks, failing=()):
        super().__init__()
        self.started = {chunk.text: threading.Event() for chunk in chunks}
        self.failing = set(failing)

    async def aforward(self, chunk):
        self.started[chunk].set()
        if chunk in self.failing:
            raise ValueError("this chunk fails")
        return dspy.Prediction(samples=[Sample(input=chunk, output=chunk)])


def chunks_of(count: int) -> list[Chunk]:
    return [Chunk(f"c{i}", "s.txt", i, i + 1, f"passage {i}", 2) for i in range(count)]


@pytest.mark.parametrize("case", ["succeeded", "capped", "failed"])
def test_the_next_chunk_starts_while_the_caller_records_one_that_succeeded(case):
    chunks = chunks_of(4)
    program = Marks(chunks, failing=["passage 0"] if case == "failed" else ())
    admitted = []

    def admit(in_flight: int) -> bool:
        admitted.append(in_flight)
        return True

    with FakeOpenAIServer() as server:  # never called: the program asks no model
        model = build_role_model(ModelSettings(model="openai/fake", api_base=server.url), "task")
        outcomes = run_chunks(program, model, chunks, concurrency=1, admit=admit if case == "capped" else None)
        first = next(outcomes)
        assert first.chunk.id == "c0" and bool(first.failure) == (case == "failed")
        # One slot, and on the event loop, once a chunk has succeeded, a chunk more waiting at the gate (none under a
        # spending cap, whose first chunks start before their cost is known): it started before the first's outcome
        # came. None while every chunk has failed: a waiting one would send as soon as a failed one's slot is freed.
        ahead = 1 if case == "succeeded" else 0
        assert all(program.started[f"passage {i}"].wait(timeout=30) for i in range(1, 1 + ahead))
        # The caller holds the first outcome (as generate does while it stores it): the next chunk may start
        # meanwhile only if the first's slot was given back before its outcome was handed on.
        eager = case == "succeeded"
        assert program.started[f"passage {1 + ahead}"].wait(timeout=30 if eager else 0.5) is eager
        assert [o.chunk.id for o in outcomes] == ["c1", "c2", "c3"]
    assert all(program.started[c.text].is_set() for c in chunks)
    if case == "capped":
        # Each chunk admitted with none in flight, the one before it recorded (asked once more at the end).
        assert len(admitted) >= 4 and set(admitted) == {0}
