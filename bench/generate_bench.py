"""Throughput, client CPU and memory of `datagen.generate` against a fake model with a fixed latency.

    python -m bench.generate_bench            # from the repository root; --help for the knobs

A fake OpenAI-compatible server (tests/fakes.py) runs in its own process and answers every request after a
fixed latency. A synthetic corpus with one chunk per paragraph goes through the `style_clone` pipeline (one LM
call per chunk) at each concurrency, with `generate()` and, side by side, with a plain `module.batch()` at the
same thread count. Each measurement runs in a fresh process, so its CPU time and peak RSS are its own.
Then: peak RSS at two corpus sizes (does memory grow with the corpus?) and a re-run of finished runs (resume).
"""

import argparse
import logging
import multiprocessing
import random
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.fake_server import ServerProcess
from datagen.text.chunking import chunk_documents  # datagen first: it keeps litellm from fetching its price list
from datagen.text.ingest import iter_documents

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = "style_clone"
PARAGRAPHS_PER_FILE = 100
_WORDS = ("the river lantern morning harbour quiet letter garden window winter market captain kitchen "
          "station evening village doctor mountain ribbon story silver meadow candle journey travel stranger "
          "answered slowly carried across beneath although because whenever never always perhaps certainly "
          "bright heavy narrow golden patient curious ancient gentle restless open closed distant familiar "
          "walked remembered wondered listened returned promised gathered watched waited followed").split()


@dataclass
class Measurement:
    """One run in its own process: wall time, the client's CPU time, samples made, LM calls the server saw."""

    seconds: float
    cpu: float
    samples: int
    failed: int
    calls: int
    peak_mib: float
    baseline_mib: float  # peak RSS before the run: the interpreter with datagen, dspy and litellm loaded

    @property
    def rate(self) -> float:
        return self.samples / self.seconds

    def ratio(self, concurrency: int, latency: float) -> float:
        """Samples/s over the ideal: `concurrency` calls in flight all the time, each taking `latency`."""
        calls_per_sample = self.calls / self.samples
        return self.rate / (concurrency / (latency * calls_per_sample))

    @property
    def cpu_ms_per_call(self) -> float:
        return 1000 * self.cpu / self.calls


# --- the corpus ---------------------------------------------------------------------------------------------

def paragraph(index: int, words: int) -> str:
    """A distinct paragraph of about `words` words (so no chunk repeats another)."""
    rng = random.Random(index)
    body = [rng.choice(_WORDS) for _ in range(words)]
    sentences = [" ".join(body[i:i + 12]).capitalize() + "." for i in range(0, words, 12)]
    return f"Passage {index}. " + " ".join(sentences)


def make_corpus(folder: Path, chunks: int, words: int, max_tokens: int) -> Path:
    """Text files under `folder` that chunk (at `max_tokens`) into exactly `chunks` chunks, one per paragraph."""
    folder.mkdir(parents=True)
    for first in range(0, chunks, PARAGRAPHS_PER_FILE):
        texts = (paragraph(i, words) for i in range(first, min(first + PARAGRAPHS_PER_FILE, chunks)))
        (folder / f"part-{first // PARAGRAPHS_PER_FILE:05d}.txt").write_text("\n\n".join(texts) + "\n")
    made = sum(1 for _ in chunk_documents(iter_documents([folder]), max_tokens))
    if made != chunks:
        raise SystemExit(f"the corpus chunks into {made} chunks, not {chunks}: adjust --words or --max-tokens")
    return folder


# --- one measurement, in a child process --------------------------------------------------------------------

def _run_generate(model, job: dict) -> tuple[int, int]:
    from datagen.runs.generate import RunSettings, generate

    report = generate(PIPELINE, [job["corpus"]], job["out"], workspace=ROOT, model=model,
                      settings=RunSettings(max_tokens=job["max_tokens"], concurrency=job["concurrency"]))
    return report.samples, sum(report.failures.values())


def _run_batch(model, job: dict) -> tuple[int, int]:
    import dspy

    from datagen.workspace.pipelines import load_program

    program = load_program(PIPELINE, ROOT)
    examples = [dspy.Example(chunk=c.text).with_inputs("chunk")
                for c in chunk_documents(iter_documents([job["corpus"]]), job["max_tokens"])]
    with model.context():
        predictions = program.batch(examples, num_threads=job["concurrency"], disable_progress_bar=True)
    samples = sum(len(p.samples) for p in predictions if p is not None)
    return samples, sum(p is None for p in predictions)


_RUNS = {"generate": _run_generate, "batch": _run_batch}


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _child(job: dict, conn) -> None:
    """Load everything and make one warm-up call, say "ready", wait for "go", then run the job and send back
    (seconds, CPU seconds, samples, failed, peak MiB, baseline MiB)."""
    import dspy

    from datagen.workspace.config import ModelSettings
    from datagen.lm.roles import build_role_model

    for noisy in ("LiteLLM", "httpx", "dspy"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)  # every call reaches the server
    settings = ModelSettings(model="openai/bench", api_base=job["url"], engine=job["engine"])
    model = build_role_model(settings, "task")
    model.lm("warm-up")  # litellm imports some modules on first use
    baseline = _peak_mib()
    conn.send("ready")
    conn.recv()
    started, cpu = time.monotonic(), time.process_time()
    samples, failed = _RUNS[job["mode"]](model, job)
    conn.send((time.monotonic() - started, time.process_time() - cpu, samples, failed, _peak_mib(), baseline))


def measure(server: ServerProcess, mode: str, corpus: Path, concurrency: int, args: argparse.Namespace,
            out: Path | None = None) -> Measurement:
    """Run `mode` ("generate" into `out`, or "batch") in a fresh process; the server counts its LM calls."""
    job = {"mode": mode, "corpus": str(corpus), "out": str(out), "url": server.url, "concurrency": concurrency,
           "max_tokens": args.max_tokens, "engine": args.engine}
    context = multiprocessing.get_context("spawn")
    conn, child_conn = context.Pipe()
    process = context.Process(target=_child, args=(job, child_conn))
    process.start()
    child_conn.close()  # so that a crashed child reads as EOF here
    try:
        conn.recv()
        before = server.count()
        conn.send("go")
        seconds, cpu, samples, failed, peak, baseline = conn.recv()
        calls = server.count() - before
    except EOFError:
        process.join()
        raise SystemExit(f"the {mode} run crashed (exit code {process.exitcode})") from None
    process.join()
    return Measurement(seconds, cpu, samples, failed, calls, peak, baseline)


# --- the report ---------------------------------------------------------------------------------------------

def _cells(m: Measurement, concurrency: int, latency: float) -> str:
    return (f"{m.rate:9.1f} {m.ratio(concurrency, latency):6.2f} {m.cpu_ms_per_call:8.2f} "
            f"{m.peak_mib:8.0f}")


def concurrency_table(args, work: Path) -> None:
    """The side-by-side table, then a resume of the finished generate() run at --resume-concurrency."""
    latency = args.latency
    print(f"{PIPELINE}: 1 LM call per sample, {latency * 1000:.0f} ms per call, "
          f"{args.rounds} rounds of `concurrency` chunks per point, engine: {args.engine or 'datagen default'}\n")
    print(f"{'':>13} {'generate()':^35} | {'module.batch()':^35}")
    header = f"{'samples/s':>9} {'ratio':>6} {'CPU ms':>8} {'peak MiB':>8}"
    print(f"{'conc':>4} {'chunks':>7}  {header}  | {header}")
    with ServerProcess(latency) as server:
        finished = {}
        for concurrency in args.concurrency:
            chunks = args.rounds * concurrency
            corpus = make_corpus(work / f"corpus-{concurrency}", chunks, args.words, args.max_tokens)
            out = work / f"run-{concurrency}"
            ours = measure(server, "generate", corpus, concurrency, args, out)
            theirs = measure(server, "batch", corpus, concurrency, args)
            print(f"{concurrency:>4} {chunks:>7}  {_cells(ours, concurrency, latency)}  | "
                  f"{_cells(theirs, concurrency, latency)}", flush=True)
            _warn_failures(ours, theirs)
            finished[concurrency] = corpus, out, ours
        if args.resume_concurrency in finished:
            print(f"\nresume at concurrency {args.resume_concurrency}:")
            resume_line(server, *finished[args.resume_concurrency], args.resume_concurrency, args)


def memory_growth(args, work: Path) -> None:
    """Peak RSS of generate() at each --memory-sizes corpus size, and a resume of the largest run."""
    print(f"\nmemory: generate() at concurrency {args.memory_concurrency}, {args.memory_latency * 1000:.0f} ms "
          "per call")
    runs = {}
    with ServerProcess(args.memory_latency) as server:
        for size in args.memory_sizes:
            corpus = make_corpus(work / f"memory-{size}", size, args.words, args.max_tokens)
            out = work / f"memory-run-{size}"
            m = measure(server, "generate", corpus, args.memory_concurrency, args, out)
            runs[size] = corpus, out, m
            print(f"  {size:>6} samples: peak RSS {m.peak_mib:6.0f} MiB ({m.baseline_mib:.0f} MiB before the run), "
                  f"{m.rate:.0f} samples/s, {m.cpu_ms_per_call:.2f} CPU ms per call", flush=True)
            _warn_failures(m)
        small, large = (runs[size][2].peak_mib for size in args.memory_sizes)
        print(f"  growth {args.memory_sizes[0]} -> {args.memory_sizes[1]} samples: {100 * (large / small - 1):+.1f}%")
        resume_line(server, *runs[args.memory_sizes[1]], args.memory_concurrency, args)


def resume_line(server: ServerProcess, corpus: Path, out: Path, original: Measurement, concurrency: int,
                args: argparse.Namespace) -> None:
    """Re-run a finished run: it should make no LM call and take a small fraction of the original's time."""
    again = measure(server, "generate", corpus, concurrency, args, out)
    print(f"  resume of the finished {original.samples}-sample run: {again.calls} LM calls, {again.seconds:.2f} s "
          f"= {100 * again.seconds / original.seconds:.1f}% of the original {original.seconds:.2f} s", flush=True)


def _warn_failures(*measurements: Measurement) -> None:
    for m in measurements:
        if m.failed:
            print(f"  warning: {m.failed} chunks failed in this run", file=sys.stderr)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per LM call (default 0.2)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--rounds", type=int, default=20,
                        help="chunks per point = rounds x concurrency, so each point ideally takes rounds x latency")
    parser.add_argument("--resume-concurrency", type=int, default=32,
                        help="re-run this point's finished run to time a resume")
    parser.add_argument("--memory-sizes", type=int, nargs=2, default=[1000, 10000], metavar=("SMALL", "LARGE"))
    parser.add_argument("--memory-latency", type=float, default=0.01)
    parser.add_argument("--memory-concurrency", type=int, default=32)
    parser.add_argument("--words", type=int, default=300, help="words per paragraph (one paragraph per chunk)")
    parser.add_argument("--max-tokens", type=int, default=512, help="chunk budget (default 512, datagen's)")
    parser.add_argument("--engine", choices=["auto", "lm15", "litellm"],
                        help="the task model's DSPy engine (default: datagen's choice, litellm for an api_base)")
    parser.add_argument("--skip-memory", action="store_true", help="only the concurrency table")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="datagen-bench-") as tmp:
        concurrency_table(args, Path(tmp))
        if not args.skip_memory:
            memory_growth(args, Path(tmp))


if __name__ == "__main__":
    main()
