"""Where the throughput goes, layer by layer: the same passages at CONCURRENCY in flight through each layer that a
`datagen generate` call passes, from a bare HTTP client up to datagen's whole run.

    python -m bench.call_floors CONCURRENCY ROUNDS [LATENCY_S]      # e.g. 32 20; latency 0.2 s by default

One fake server (bench/fake_server.py, its own process) answers CONCURRENCY x ROUNDS passages in each of:

  aiohttp      a bare aiohttp POST of style_clone's messages (what curator sends with), an asyncio semaphore
  lm15         DSPy's native engine's provider (`dspy.lm15`, the vLLM dialect datagen picks for an api_base), the same
  dspy.LM      `lm.acall(messages=...)` of datagen's task model (DSPy's LM layer: prepare, engine choice, retries,
               pricing; datagen's hooks: gate, deadline, call log), the same messages
  program      style_clone's `acall(chunk=...)`, DSPy's Predict and adapter around the LM (no datagen runner)
  run_chunks   datagen's runner (`datagen.runs.runner.run_chunks`): the chunks' call logs, gates, outcomes
  generate     `datagen.generate` as a user calls it: the run store, the near-duplicate index, the export

Each mode runs in a fresh process (its imports not counted), after one warm-up call or run; samples/s = passages
over the wall time of the timed part, CPU ms = that process's CPU time a passage (threads included, children not).
"""

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODES = ("aiohttp", "lm15", "dspy.LM", "program", "run_chunks", "generate")


async def _gathered(call, items: list, concurrency: int) -> list:
    """`call(item)` for each item, at most `concurrency` at once."""
    gate = asyncio.Semaphore(concurrency)

    async def one(item):
        async with gate:
            return await call(item)
    return await asyncio.gather(*(one(item) for item in items))


def _caller(mode: str, url: str):
    """An async callable for `mode` taking one passage, and whether it takes the rendered messages instead."""
    from datagen.lm.roles import build_role_model
    from datagen.workspace.config import ModelSettings
    from datagen.workspace.pipelines import load_program

    if mode == "aiohttp":
        import aiohttp

        session = {}

        async def post(messages):
            if "open" not in session:  # made on the running loop
                session["open"] = aiohttp.ClientSession()
            async with session["open"].post(f"{url}/chat/completions",
                                             json={"model": "bench", "messages": messages, "max_tokens": 400}) as r:
                return (await r.json())["choices"][0]["message"]["content"]
        return post, True
    if mode == "lm15":
        from dspy.lm15 import AsyncLMRouter, Message, Request, RouterConfig

        provider = AsyncLMRouter(RouterConfig(api_keys={"vllm": "no-key"}, base_urls={"vllm": url})).lm("vllm:bench")

        async def complete(messages):
            request = Request(model="bench", system=messages[0]["content"],
                              messages=tuple(Message.user(m["content"]) for m in messages[1:]))
            return (await provider.complete(request)).text
        return complete, True
    model = build_role_model(ModelSettings(model="openai/bench", api_base=url, max_tokens=400), "task")
    lm = model.lm.copy(cache=False)  # as generate calls it: the run store is the cache
    if mode == "dspy.LM":
        async def acall(messages):
            return await lm.acall(messages=messages)
        return acall, True
    import dspy

    dspy.configure(lm=lm, disable_history=True)
    program = load_program("style_clone", ROOT)

    async def run(passage):
        return await program.acall(chunk=passage)
    return run, False


def _timed_calls(mode: str, url: str, texts: list[str], concurrency: int) -> tuple[float, float]:
    """Wall and CPU seconds the passages took through `mode`'s callable, after one warm-up call."""
    from bench.throughput_bench import render_messages

    call, takes_messages = _caller(mode, url)
    items = render_messages(texts) if takes_messages else texts

    async def main() -> tuple[float, float]:
        await call(items[0])
        started, cpu = time.monotonic(), time.process_time()
        await _gathered(call, items[1:], concurrency)
        return time.monotonic() - started, time.process_time() - cpu
    return asyncio.run(main())


def _timed_run(mode: str, url: str, texts: list[str], concurrency: int, work: Path) -> tuple[float, float]:
    """Wall and CPU seconds `run_chunks` or `generate` took over the passages, after a run of one passage."""
    import datagen
    from bench.throughput_bench import CHUNK_TOKENS, warm_up, write_corpus
    from datagen.lm.roles import build_role_model
    from datagen.runs.runner import run_chunks
    from datagen.text import chunk_documents, iter_documents
    from datagen.workspace.config import ModelSettings
    from datagen.workspace.pipelines import load_program

    model = build_role_model(ModelSettings(model="openai/bench", api_base=url), "task")
    settings = datagen.RunSettings(max_tokens=CHUNK_TOKENS, concurrency=concurrency)

    def generate(corpus: Path, out: Path):
        return datagen.generate("style_clone", [corpus], out, workspace=ROOT, model=model, settings=settings)

    warm_up(generate, work / "warm-up", "call-floors")
    corpus = write_corpus(work / "corpus", texts[1:])
    started, cpu = time.monotonic(), time.process_time()
    if mode == "generate":
        generate(corpus, work / "out")
    else:
        chunks = list(chunk_documents(iter_documents([corpus]), CHUNK_TOKENS))
        program = load_program("style_clone", ROOT)
        list(run_chunks(program, model.with_settings(cache=False), chunks, concurrency))
    return time.monotonic() - started, time.process_time() - cpu


def child(mode: str, url: str, concurrency: int, count: int) -> None:
    """One mode, in this fresh process: print its figures as one JSON line."""
    sys.path.insert(0, str(ROOT))
    import datagen  # noqa: F401  (before DSPy: keeps litellm's price list the bundled one)
    from bench.throughput_bench import passages

    work = Path(tempfile.mkdtemp())
    os.environ["DSPY_CACHEDIR"] = str(work / "dspy-cache")
    texts = passages(f"F{time.time()}.", count + 1, 30)
    timed = _timed_run if mode in ("run_chunks", "generate") else _timed_calls
    seconds, cpu = timed(mode, url, texts, concurrency, *((work,) if timed is _timed_run else ()))
    print(json.dumps({"mode": mode, "seconds": seconds, "cpu": cpu, "count": count}))


def main() -> None:
    from bench.fake_server import ServerProcess

    concurrency, rounds = int(sys.argv[1]), int(sys.argv[2])
    latency = float(sys.argv[3]) if len(sys.argv) > 3 else 0.2
    count = concurrency * rounds
    print(f"{count} passages, {concurrency} in flight, {latency:g} s a call (ideal {concurrency / latency:.1f}/s)")
    with ServerProcess(latency) as server:
        for mode in MODES:
            done = subprocess.run([sys.executable, "-P", __file__, "--child", mode, server.url, str(concurrency),
                                   str(count)], capture_output=True, text=True, cwd=ROOT)
            lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
            if done.returncode or not lines:
                print(f"  {mode:<11} failed: {done.stderr.strip().splitlines()[-1:]}")
                continue
            figures = json.loads(lines[-1])
            print(f"  {mode:<11} {count / figures['seconds']:7.1f}/s   {1000 * figures['cpu'] / count:5.2f} CPU ms "
                  f"a passage")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.path.insert(0, str(ROOT))
        main()
