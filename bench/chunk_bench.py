"""How long `datagen chunk` takes on one very long line (no line or sentence end in megabytes of text).

    python -m bench.chunk_bench                 # from the repository root; --sizes 8 50 (MiB) by default

The test suite checks what keeps this linear (tests/test_chunking.py: pysbd and the tokenizer never get the
whole line) on a small line, with no clock; this measures the large ones: a line of random words joined by
spaces, and the same words run together with no space, each chunked at the default budget in a fresh process.
"""

import argparse
import multiprocessing
import random
import time

from datagen.text.chunking import DEFAULT_MAX_TOKENS, chunk_documents
from datagen.text.ingest import Document


def words_line(size: int, sep: str) -> str:
    """`size` characters of random words joined by `sep` (capitalised when run together)."""
    rng = random.Random(0)
    vocab = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9))) for _ in range(5000)]
    words = rng.choices(vocab, k=size // 5)
    return sep.join(w.capitalize() if not sep else w for w in words)[:size]


def _measure(size: int, sep: str, budget: int, results) -> None:
    text = words_line(size, sep)
    started, cpu = time.perf_counter(), time.process_time()
    chunks = sum(1 for _ in chunk_documents([Document("long.txt", text)], budget))
    results.put((chunks, time.perf_counter() - started, time.process_time() - cpu))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[8, 50], help="line lengths in MiB")
    parser.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS)
    args = parser.parse_args()
    print(f"{'MiB':>5} {'line':<14} {'chunks':>7} {'wall s':>7} {'CPU s':>6} {'MiB/s':>6}")
    for mib in args.sizes:
        for sep, name in ((" ", "words"), ("", "no spaces")):
            results = multiprocessing.Queue()
            worker = multiprocessing.Process(target=_measure, args=(int(mib * 2**20), sep, args.max_tokens, results))
            worker.start()
            chunks, wall, cpu = results.get()
            worker.join()
            print(f"{mib:>5g} {name:<14} {chunks:>7} {wall:>7.1f} {cpu:>6.1f} {mib / cpu:>6.1f}")


if __name__ == "__main__":
    main()
