"""What a clean stop (Ctrl-C) costs: the seconds from the signal to the command's exit, and the requests sent after it.

    .venv/bin/python -m bench.stop_cost                         # ~1 minute; --help for the knobs
    .venv/bin/python -m bench.stop_cost --concurrency 8 --latency 2

A first Ctrl-C starts no chunk, lets those that have sent a request finish (they are paid for) and gives back those
waiting for their first request's slot (up to min(concurrency, datagen.runs.runner.LOOKAHEAD) of them on the event
loop), unsent. So the ideal is no request sent after the signal, and an exit after the requests in flight come back:
at most one latency. This runs style_clone (one call a chunk) through the CLI, as a user does, against the fake
server (its own process, a fixed latency); once 2 x concurrency requests have been sent and a quarter of a latency
has passed, it sends SIGINT, and counts.
"""

import argparse
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from bench.fake_server import ServerProcess
from bench.kill_resume import cli_env, command
from bench.throughput_bench import passages, write_corpus
from datagen.runs.runner import LOOKAHEAD


def stop_once(corpus: Path, run: Path, url: str, server: ServerProcess, concurrency: int,
              latency: float) -> tuple[int, float, int]:
    """One run stopped with SIGINT: (its exit status, seconds from the signal to its exit, requests sent after
    the signal)."""
    before = server.count()
    process = subprocess.Popen(command(corpus, run, url, concurrency), env=cli_env(run.parent),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while server.count() - before < 2 * concurrency and process.poll() is None:
        time.sleep(0.01)
    time.sleep(latency / 4)
    sent, signalled = server.count(), time.monotonic()
    process.send_signal(signal.SIGINT)
    status = process.wait()
    return status, time.monotonic() - signalled, server.count() - sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--latency", type=float, default=2.0, help="seconds per request (default 2)")
    parser.add_argument("--runs", type=int, default=2, help="stops at each concurrency (default 2)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="stop-cost-"))
    with ServerProcess(args.latency) as server:
        for concurrency in args.concurrency:
            for attempt in range(args.runs):
                # Enough chunks that the run is still going when it is stopped: 4 rounds of chunks in flight.
                chunks = 4 * (concurrency + min(concurrency, LOOKAHEAD))
                folder = work / f"c{concurrency}-{attempt}"
                corpus = write_corpus(folder / "corpus", passages(f"Run {time.time_ns()}.", chunks, 30))
                status, seconds, after = stop_once(corpus, folder / "run", server.url, server, concurrency,
                                                   args.latency)
                print(f"concurrency {concurrency}, {args.latency:g} s a request: exit {status}, {seconds:.2f} s "
                      f"from Ctrl-C to exit, {after} requests sent after it")


if __name__ == "__main__":
    main()
