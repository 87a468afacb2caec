"""What a hard-killed run pays twice, now that `generate` keeps no response cache (issue 29).

    .venv/bin/python -m bench.kill_resume                  # ~2 minutes; --help for the knobs

`datagen generate` used to send its task model's calls through DSPy's response cache, whose one use in a run the
run store does not already serve is this: a chunk of several LM calls killed half-way (SIGKILL, a power cut, a
second Ctrl-C) gets its finished calls from the cache when the run resumes. The store records a chunk when it is
done, so without the cache those calls are asked again. The bound: each chunk in flight at the kill asks again the
calls it had finished (at most calls a chunk - 1: what the cache would have answered), and each request in flight
is asked again (with any cache): at most chunks in flight x (calls a chunk - 1) + concurrency requests a kill, the
chunks in flight being concurrency + min(concurrency, datagen.runs.runner.LOOKAHEAD) (those waiting at the gate).

This runs style_clone with boundary repair (two calls a chunk) through the CLI, as a user does, against the fake
server (its own process, a fixed latency), kills the run with SIGKILL once some chunks are done, resumes it to the
end, and counts the requests the server saw against the two a chunk an unkilled run sends.
"""

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.fake_server import ServerProcess
from bench.throughput_bench import CHUNK_TOKENS, passages, write_corpus
from datagen.runs.runner import LOOKAHEAD

ROOT = Path(__file__).resolve().parent.parent
CALLS_PER_CHUNK = 2  # style_clone with repair_boundaries: the boundary sentences, then the rephrase


def done_chunks(run: Path) -> int:
    """Chunks the run store holds as done (0 before it exists)."""
    try:
        with sqlite3.connect(f"file:{run / 'run.db'}?mode=ro", uri=True, timeout=5) as db:
            return db.execute("SELECT count(*) FROM results WHERE status = 'done'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def command(corpus: Path, run: Path, url: str, concurrency: int, *options: str) -> list[str]:
    """`datagen generate` of style_clone (with `options`, e.g. "--option", "repair_boundaries=true") through this
    checkout's CLI, against the fake server at `url`."""
    return [str(ROOT / ".venv/bin/datagen"), "generate", "style_clone", "--input", str(corpus), "--out", str(run),
            *options, "--model", "openai/bench", "--api-base", url,
            "--max-tokens", str(CHUNK_TOKENS), "--concurrency", str(concurrency), "--workspace", str(ROOT)]


def cli_env(work: Path) -> dict[str, str]:
    """The CLI's environment: DSPy's cache in `work`, and this checkout's datagen first on the path (whatever
    checkout the venv's editable install points at)."""
    return {**os.environ, "DSPY_CACHEDIR": str(work / "dspy-cache"), "PYTHONPATH": str(ROOT)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.3, help="seconds per request (default 0.3)")
    parser.add_argument("--kill-after", type=float, default=0.3,
                        help="share of the chunks done when the run is killed (default 0.3)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kill-resume-"))
    corpus, run = write_corpus(work / "corpus", passages(f"Run {time.time_ns()}.", args.chunks, 30)), work / "run"
    env = cli_env(work)
    with ServerProcess(args.latency) as server:
        cmd = command(corpus, run, server.url, args.concurrency, "--option", "repair_boundaries=true")
        first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while done_chunks(run) < args.kill_after * args.chunks and first.poll() is None:
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed_at, sent_before = done_chunks(run), server.count()
        resumed = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if resumed.returncode != 0:
            sys.exit(f"the resumed run failed:\n{resumed.stderr[-2000:]}")
        total, finished = server.count(), done_chunks(run)
    ideal = CALLS_PER_CHUNK * finished
    extra = total - ideal
    chunks_in_flight = args.concurrency + min(args.concurrency, LOOKAHEAD)
    cached = chunks_in_flight * (CALLS_PER_CHUNK - 1)  # finished calls a response cache would have answered
    bound = cached + args.concurrency
    print(f"style_clone with repair_boundaries ({CALLS_PER_CHUNK} calls a chunk), {args.chunks} chunks, "
          f"concurrency {args.concurrency}, {args.latency:g} s a request")
    print(f"  killed (SIGKILL) with {killed_at} chunks done and {sent_before} requests sent; resumed to "
          f"{finished} chunks done")
    print(f"  requests: {total} against {ideal} for an unkilled run: {extra} asked twice "
          f"({100 * extra / ideal:.1f}% of the run; the bound is {bound} a kill, of which {cached} finished calls "
          f"a response cache would have answered)")


if __name__ == "__main__":
    main()
