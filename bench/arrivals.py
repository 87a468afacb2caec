"""Where each client's time goes at one point of the side-by-side benchmark (bench/throughput_bench.py), read from
when its requests reached the fake server: before its first request, the spread of its first round, each round,
and after its last answer.

    python -m bench.arrivals CONCURRENCY LATENCY_S [--clients now curator] [--repeat N] [throughput_bench options]

Each client runs as the benchmark runs it (a fresh process, a warm-up call, the same passages), alternated `--repeat`
times (default 2) on one server. Columns: samples/s; `pre`: from the run's start to its first request reaching the
server; `spread`: from the first request of the first round to its last (`concurrency` requests); `round`: median
and 90th percentile of the time between a request and the one `concurrency` requests later (a slot's turnaround,
the server's latency included); `post`: from the last request's answer (its arrival plus the latency) to the run's
end (the export, for datagen). The server's and the client's clocks are one (`time.monotonic()`, the machine's).
"""

import argparse
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

from bench.fake_server import ServerProcess
from bench.throughput_bench import CLIENTS, ensure_curator, measure, parse_args, passages, prepare


def timings(times: list[float], figures: dict, concurrency: int, latency: float) -> str:
    """One client run's line, from the arrival `times` of its requests (the run's own: warm-up left out) and its
    figures (`measure`'s: `started`, `seconds`, `samples`)."""
    times = sorted(times)
    rounds = sorted(later - earlier for earlier, later in zip(times, times[concurrency:]))
    end = figures["started"] + figures["seconds"]
    return (f"{figures['samples'] / figures['seconds']:9.1f}  pre {1000 * (times[0] - figures['started']):5.0f} ms"
            f"  spread {1000 * (times[min(concurrency, len(times)) - 1] - times[0]):5.0f} ms"
            f"  round {1000 * statistics.median(rounds):6.1f} / {1000 * rounds[int(0.9 * len(rounds))]:6.1f} ms"
            f"  post {1000 * (end - times[-1] - latency):5.0f} ms")


def main(argv: list[str]) -> None:
    own = argparse.ArgumentParser(prog="python -m bench.arrivals", description=__doc__.split("\n\n")[0],
                                  epilog="Other options are bench.throughput_bench's (--clients, --rounds, --words, "
                                         "--now, --curator-venv, ...): python -m bench.throughput_bench --help")
    own.add_argument("concurrency", type=int, help="requests in flight")
    own.add_argument("latency", type=float, metavar="latency_s", help="seconds a request")
    own.add_argument("--repeat", type=int, default=2, help="runs of each client, alternated (default 2)")
    mine, rest = own.parse_known_args(argv)
    concurrency, latency = mine.concurrency, mine.latency
    args = parse_args(rest + ([] if "--clients" in rest else ["--clients", "now", "curator"]))
    args.now = args.now.resolve()
    pythons = {client: sys.executable for client in CLIENTS}
    if "curator" in args.clients:
        pythons["curator"] = ensure_curator(args.curator_venv, create=not args.no_install)
        if pythons["curator"] is None:
            raise SystemExit(f"no curator venv at {args.curator_venv}")
    chunks = args.rounds * concurrency
    print(f"{concurrency} x {latency:g} s, {chunks} chunks: samples/s, pre, spread of the first round, round "
          f"(median / p90), post")
    with tempfile.TemporaryDirectory(prefix="datagen-arrivals-") as tmp, ServerProcess(latency) as server:
        for _ in range(mine.repeat):
            for client in args.clients:
                prefix = f"Arrivals {uuid.uuid4().hex[:8]}-{client}."
                job, env = prepare(args, client, server.url, concurrency, Path(tmp) / prefix, prefix,
                                   passages(prefix, chunks, args.words))
                seen = len(server.times())
                figures = measure(server, job, pythons[client], Path(tmp), env, args.timeout)
                own = server.times()[seen:][-chunks:]  # the run's requests, after the client's warm-up
                print(f"{CLIENTS[client]:<17} {timings(own, figures, concurrency, latency)}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
