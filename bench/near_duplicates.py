"""How well the held-out split's near-duplicate test (datagen/dataset/splits.py) separates real text.

On the novels in ../shared/corpora/ (not shipped: a benchmark, not a test), chunked at several budgets:

- false groups: pairs of distinct chunks of the novels put in one group (a group of k counts k - 1);
- recall: each chunk beside a copy of it with a share of its words changed (a random word replaced by a token no
  text holds), the share of copies grouped with their original, by share changed;
- contained: a chunk beside its first half (a chunk cut at another boundary), the share grouped;
- seconds: `near_duplicate_groups` over the originals and their copies.

    .venv/bin/python -m bench.near_duplicates [--corpus ../shared/corpora] [--budgets 64 256 1024]
"""

import argparse
import random
import time
from pathlib import Path

from datagen.dataset.splits import near_duplicate_groups
from datagen.text import chunk_documents, iter_documents

RATES = (0.01, 0.03, 0.05, 0.10, 0.15)


def _changed(text: str, rate: float, rng: random.Random) -> str:
    return " ".join(f"zq{word}" if rng.random() < rate else word for word in text.split())


def _grouped(originals: list[str], copies: list[str]) -> float:
    groups = near_duplicate_groups(originals + copies)
    n = len(originals)
    return sum(groups[i] == groups[n + i] for i in range(n)) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("../shared/corpora"))
    parser.add_argument("--budgets", type=int, nargs="+", default=[64, 256, 1024])
    args = parser.parse_args()
    novels = sorted(args.corpus.glob("*.txt"))
    print(f"{len(novels)} novels: {', '.join(p.stem for p in novels)}")
    print("budget  chunks  false groups  " + "  ".join(f"{r:>4.0%} changed" for r in RATES)
          + "  first half  seconds")
    for budget in args.budgets:
        texts = [c.text for c in chunk_documents(iter_documents(novels), budget)]
        rng = random.Random(0)
        false = len(texts) - len(set(near_duplicate_groups(texts)))
        recalls = [_grouped(texts, [_changed(t, rate, rng) for t in texts]) for rate in RATES]
        started = time.perf_counter()
        halves = _grouped(texts, [" ".join(t.split()[: len(t.split()) // 2]) for t in texts])
        seconds = time.perf_counter() - started
        print(f"{budget:>6}  {len(texts):>6}  {false:>12}  " + "  ".join(f"{r:>12.1%}" for r in recalls)
              + f"  {halves:>10.1%}  {seconds:>7.1f}")


if __name__ == "__main__":
    main()
