"""How fast `datagen view` opens a large run: each page's time over a run store of N samples (default 100,000),
through the app in process (Starlette's test client), the store on disk as `generate` leaves it.

The store is written straight into SQLite in one transaction (chunks, results with one sample each, three
metrics' scores, a review on every 50th sample and a --min-score gate), so that building it takes seconds, not a
run. Each page is fetched `--repeat` times; the median is reported. Target (issue 16): every page in under 1 s.

    python -m bench.view_bench [--samples 100000] [--repeat 5]
"""

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from starlette.testclient import TestClient

from datagen.store import RunStore
from datagen.view import Viewed, create_app, data

METRICS = ("composite", "content", "chrf")
WORDS = ("the lamp the sea a keeper night bell storm ledger board wind rail hatch pipe stair brine tide rock gull "
         "oil wick lens glass tower shore").split()


def build(folder: Path, samples: int, seed: int = 0) -> Path:
    """A run store of `samples` chunks with one scored sample each."""
    rng = random.Random(seed)
    with RunStore(folder) as store:
        store.set_meta({"pipeline": "style_clone", "model": "openai/gpt-4o-mini",
                        "min_scores": json.dumps({"composite": 0.6})})
    db = __import__("sqlite3").connect(folder / "run.db")
    with db:
        for n in range(samples):
            text = " ".join(rng.choice(WORDS) for _ in range(120))
            chunk_id = f"{n:016x}"
            db.execute("INSERT INTO chunks (id, source, start, \"end\", text, tokens) VALUES (?, ?, ?, ?, ?, ?)",
                       (chunk_id, f"book{n % 20}.txt", 0, len(text), text, 160))
            db.execute("INSERT INTO results (chunk_id, status, samples, finished_at, usage) VALUES (?, 'done', ?, 0, ?)",
                       (chunk_id, json.dumps([[text.upper(), text]]),
                        json.dumps({"openai/gpt-4o-mini": {"prompt_tokens": 300, "completion_tokens": 160}})))
            db.executemany("INSERT INTO scores VALUES (?, 0, ?, ?, NULL)",
                           ((chunk_id, metric, rng.random()) for metric in METRICS))
            if n % 50 == 0:
                db.execute("INSERT INTO reviews (chunk_id, sample, verdict, updated_at) VALUES (?, 0, ?, 0)",
                           (chunk_id, rng.choice(("good", "bad"))))
    db.close()
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        started = time.perf_counter()
        run = build(Path(temp) / "run", args.samples)
        print(f"built a store of {args.samples:,} samples in {time.perf_counter() - started:.1f} s "
              f"({(run / 'run.db').stat().st_size / 2**20:.0f} MiB)")
        started = time.perf_counter()
        viewed = [Viewed(source) for source in data.open_sources([run])]
        client = TestClient(create_app(viewed, hosts=["testserver"]))
        print(f"opened in {time.perf_counter() - started:.2f} s")
        middle = f"{args.samples // 2:016x}"
        pages = {
            "run page (counts, histograms, tokens)": "/r/0",
            "sample list, first page": "/r/0/samples",
            "worst 50 by composite": "/r/0/samples?metric=composite&order=worst",
            "not yet reviewed": "/r/0/samples?review=unreviewed",
            "below the gate": "/r/0/samples?gate=1",
            "text search": "/r/0/samples?q=lighthouse",
            f"page {args.samples // data.PAGE // 2:,} of the list": f"/r/0/samples?page={args.samples // data.PAGE // 2}",
            "a sample (worst order: its neighbours)": f"/r/0/s/{middle}/0?metric=composite&order=worst",
        }
        print(f"{'page':<45} {'median':>8} {'slowest':>8}")
        for name, url in pages.items():
            times = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                response = client.get(url)
                times.append(time.perf_counter() - started)
                assert response.status_code == 200, (url, response.status_code)
            print(f"{name:<45} {statistics.median(times) * 1000:>6.0f} ms {max(times) * 1000:>6.0f} ms")


if __name__ == "__main__":
    main()
