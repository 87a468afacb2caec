"""`--executor ray` against the single-process runner, side by side in one run: samples/s with 1, 2 and 4 actors
against the fake server (latency-bound) and with a CPU-bound scorer (the offline embedding metric on every
sample), the per-chunk overhead of the Ray path, and the driver's commit rate (its ceiling).

Every point is a `datagen.generate` of style_clone over copies of the sample corpus into a fresh run folder; the
fake OpenAI-compatible server runs in its own process (bench/fake_server.py). Rates are chunks committed a second
from the first commit to the last, so that start-up (a local Ray cluster's, a few seconds, paid once per run
whatever its size) is left out; the time to the first commit is printed beside them.

    python -m bench.ray_bench [--chunks 96] [--latency 0.2] [--concurrency 16]
"""

import argparse
import itertools
import shutil
import tempfile
import time
from pathlib import Path

import dspy

from bench.fake_server import ServerProcess
from datagen.text.chunking import Chunk
from datagen.workspace.config import Config, ModelSettings
from datagen.runs.cluster import RayCluster
from datagen.runs.generate import Callbacks, RunSettings, generate
from datagen.samples import Sample
from datagen.store import Outcome, RunStore

ROOT = Path(__file__).resolve().parents[1]


def corpus(folder: Path, copies: int) -> Path:
    """`copies` copies of the sample corpus, each paragraph marked with its copy's number, so that no chunk
    repeats another (a repeat is dropped) and every copy costs the fake model the same."""
    folder.mkdir(parents=True)
    for n in range(copies):
        for path in (ROOT / "data/samples").glob("*.md"):
            paragraphs = path.read_text(encoding="utf-8").split("\n\n")
            (folder / f"{n:03d}-{path.name}").write_text("\n\n".join(f"({n}) {p}" for p in paragraphs),
                                                        encoding="utf-8")
    return folder


def timed_run(inputs: Path, out: Path, url: str, chunks: int, concurrency: int, cluster: RayCluster | None,
              min_scores: dict | None) -> tuple[float, float, float]:
    """One run: its seconds in all, until its first chunk was committed (a Ray cluster's start is in that), and
    its chunks a second from the first commit to the last (the steady rate, start-up left out)."""
    config = Config()
    config.models["task"] = ModelSettings(model="openai/fake", api_base=url)
    commits: list[float] = []
    started = time.perf_counter()
    generate("style_clone", [inputs], out, workspace=ROOT, config=config, min_scores=min_scores,
             settings=RunSettings(max_tokens=200, limit=chunks, concurrency=concurrency, cluster=cluster),
             callbacks=Callbacks(on_outcome=lambda _: commits.append(time.perf_counter())))
    wall = time.perf_counter() - started
    return wall, commits[0] - started, (len(commits) - 1) / (commits[-1] - commits[0])


def commit_rate(folder: Path, outcomes: int = 5000) -> float:
    """Outcomes a second the driver commits (RunStore.record: one transaction each, samples, scores, steps and
    calls as a style_clone chunk has them)."""
    text = (ROOT / "data/samples").glob("*.md").__next__().read_text(encoding="utf-8")[:2000]
    with RunStore(folder) as store:
        chunks = [Chunk(f"{n:016x}", "bench.md", 0, len(text), text, 500) for n in range(outcomes)]
        store.add_chunks(chunks)
        started = time.perf_counter()
        for chunk in chunks:
            store.record(Outcome(chunk, samples=[Sample(text.lower(), text)], seconds=0.1,
                                 usage={"openai/fake": {"prompt_tokens": 600, "completion_tokens": 500}}))
        return outcomes / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=96)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)  # every call reaches the server
    with tempfile.TemporaryDirectory() as temp:
        work = Path(temp)
        inputs = corpus(work / "corpus", copies=max(1, args.chunks // 20 + 1))
        print(f"driver commit rate: {commit_rate(work / 'commits'):,.0f} outcomes/s (RunStore.record, one "
              "transaction each)")
        runs = itertools.count()
        points = [("one process", None), *((f"ray, {n} actor{'s' * (n > 1)}", RayCluster(n)) for n in (1, 2, 4))]
        for title, latency, scores, concurrency in (
                (f"latency-bound: {args.latency * 1000:.0f} ms answers, {args.concurrency} in flight", args.latency,
                 None, args.concurrency),
                ("CPU-bound: the embedding metric scores every sample, 0 ms answers", 0.0, {"embedding": 0.0},
                 args.concurrency),
                ("per-chunk overhead: 0 ms answers, 1 chunk in flight", 0.0, None, 1)):
            print(f"\n{title} ({args.chunks} chunks)")
            with ServerProcess(latency) as server:
                base = None
                for name, cluster in points:
                    out = work / "runs" / str(next(runs))
                    asked = server.count()
                    wall, first, rate = timed_run(inputs, out, server.url, args.chunks, concurrency, cluster,
                                                  scores)
                    assert server.count() - asked == args.chunks, "every chunk's call reaches the server"
                    base = base or rate
                    print(f"  {name:<16} {rate:7.1f} chunks/s (x{rate / base:.2f}), {1000 / rate:6.1f} ms a chunk; "
                          f"first chunk after {first:4.1f} s, {wall:5.1f} s in all")
                    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
