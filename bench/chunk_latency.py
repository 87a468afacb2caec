"""Where a chunk's time goes between the model's answers: timestamps along each chunk of one style_clone run.

    python -m bench.chunk_latency CONCURRENCY ROUNDS [LATENCY_S]       # default latency 0.2 s
    RUNNER=1 python -m bench.chunk_latency 32 20                       # run_chunks alone: no store, no export

One fake server (bench/fake_server.py) answers CONCURRENCY x ROUNDS one-call chunks after a warm-up run of one
passage. Each chunk is stamped at: its start (`ChunkRunner._arun`), DSPy's `aexecute` (the LM call, after the
adapter's format and DSPy's prepare), lm15's request write, the response head, `aexecute`'s return, and the
chunk's end; the table gives each step's median and mean in ms. With RUNNER=1 the chunks go through
`datagen.runs.runner.run_chunks` alone (no run store, no near-duplicate index, no export): the throughput of
DSPy's call path with datagen's runner, to set beside the whole `generate`'s. The stamps are wrappers of DSPy's
and lm15's functions, installed here only; they cost a few microseconds a step.
"""

import contextvars
import functools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("start", "aexecute", "request written", "response head", "aexecute returned", "end")
_stamps: contextvars.ContextVar[dict | None] = contextvars.ContextVar("stamps", default=None)
_records: list[dict] = []


def _stamp(step: str) -> None:
    record = _stamps.get()
    if record is not None and step not in record:  # the first time only: a retry would stamp again
        record[step] = time.monotonic()


def _around(fn, before: str | None, after: str | None):
    """`fn` (a coroutine function), stamping `before` it starts and `after` it returns."""
    @functools.wraps(fn)
    async def stamped(*args, **kwargs):
        if before:
            _stamp(before)
        result = await fn(*args, **kwargs)
        if after:
            _stamp(after)
        return result
    return stamped


def install_stamps() -> None:
    """Wrap the runner's chunk, DSPy's `aexecute` and lm15's request write and head read with stamps (after
    datagen's own hooks, which a role model installs, so that the stamps are outermost)."""
    import dspy.clients.execution as execution
    import dspy._vendor.lm15.transports._async as transport

    import datagen.runs.runner as runner

    arun = runner.ChunkRunner._arun

    @functools.wraps(arun)
    async def arun_stamped(self, chunk, model):
        record = {"start": time.monotonic()}
        _stamps.set(record)
        _records.append(record)
        outcome = await arun(self, chunk, model)
        record["end"] = time.monotonic()
        return outcome

    runner.ChunkRunner._arun = arun_stamped
    execution.aexecute = _around(execution.aexecute, "aexecute", "aexecute returned")
    transport.StdlibAsyncTransport._send_request = _around(transport.StdlibAsyncTransport._send_request,
                                                           None, "request written")
    transport.StdlibAsyncTransport._read_head = _around(transport.StdlibAsyncTransport._read_head,
                                                        None, "response head")


def table(records: list[dict]) -> str:
    """Median and mean ms of each step, over the chunks stamped at every step."""
    full = [r for r in records if all(step in r for step in STEPS)]
    lines = [f"{len(full)} of {len(records)} chunks stamped at every step; ms, median (mean)"]
    for first, second in zip(STEPS, STEPS[1:]):
        spans = [1000 * (r[second] - r[first]) for r in full]
        lines.append(f"  {first:>17} -> {second:<17} {statistics.median(spans):7.2f} ({statistics.mean(spans):7.2f})")
    spans = [1000 * (r["end"] - r["start"]) for r in full]
    lines.append(f"  {'whole chunk':>38} {statistics.median(spans):7.2f} ({statistics.mean(spans):7.2f})")
    return "\n".join(lines)


def main() -> None:
    sys.path.insert(0, str(ROOT))
    import datagen
    from bench.fake_server import ServerProcess
    from bench.throughput_bench import CHUNK_TOKENS, passages, warm_up, write_corpus
    from datagen.lm.roles import build_role_model
    from datagen.runs.runner import run_chunks
    from datagen.text import chunk_documents, iter_documents
    from datagen.workspace.config import ModelSettings
    from datagen.workspace.pipelines import load_program

    concurrency, rounds = int(sys.argv[1]), int(sys.argv[2])
    latency = float(sys.argv[3]) if len(sys.argv) > 3 else 0.2
    work = Path(tempfile.mkdtemp())
    os.environ["DSPY_CACHEDIR"] = str(work / "dspy-cache")
    settings = datagen.RunSettings(max_tokens=CHUNK_TOKENS, concurrency=concurrency)
    with ServerProcess(latency) as server:
        model = build_role_model(ModelSettings(model="openai/bench", api_base=server.url), "task")
        def generate(corpus: Path, out: Path):
            return datagen.generate("style_clone", [corpus], out, workspace=ROOT, model=model, settings=settings)

        warm_up(generate, work / "warm-up", "chunk-latency")
        install_stamps()
        corpus = write_corpus(work / "corpus", passages(f"P{time.time()}.", concurrency * rounds, 30))
        wall, cpu = time.monotonic(), time.process_time()
        if os.environ.get("RUNNER"):
            chunks = list(chunk_documents(iter_documents([corpus]), CHUNK_TOKENS))
            outcomes = list(run_chunks(load_program("style_clone", ROOT), model.with_settings(cache=False), chunks,
                                       concurrency))
            done = sum(1 for outcome in outcomes if outcome.failure is None)
        else:
            done = generate(corpus, work / "out").samples
        wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    what = "run_chunks alone" if os.environ.get("RUNNER") else "generate"
    print(f"{what}: {done} chunks done of {concurrency * rounds} in {wall:.2f} s ({done / wall:.1f}/s, ideal "
          f"{concurrency / latency:.1f}/s), {1000 * cpu / max(done, 1):.2f} CPU ms a chunk (this process)")
    print(table(_records))


if __name__ == "__main__":
    main()
