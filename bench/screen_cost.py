"""What the export's contamination and diversity measure costs (`SampleIndex.screened`), from the units a
`SampleIndex` kept as a run's samples and chunks came (as the near-duplicate index's process keeps them beside a
run) against from nothing (as a run without the process measures), and what the kept units weigh.

    python -m bench.screen_cost [SAMPLES ...]     # default: 640 5120 (the throughput benchmark's 32 and 256 points)

style_clone-like samples of bench/throughput_bench.py's 30-word passages (input: the fake server's rewording,
output: the passage), a twentieth of the chunks held out, eight dev texts protected; best of five, milliseconds.
"""

import argparse
import time
import tracemalloc

from bench.fake_server import reworded
from bench.throughput_bench import passages
from datagen.dataset.quality import Protected
from datagen.dataset.quality.text_units import TextUnits
from datagen.dataset.screening import Protection, SampleIndex
from datagen.samples import Sample
from datagen.text import units


def best_ms(call, times: int = 5) -> float:
    """The shortest of `times` runs of `call`, in ms."""
    best = float("inf")
    for _ in range(times):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return 1000 * best


def main(sizes: list[int]) -> None:
    for size in sizes:
        chunks = passages("Screen cost.", size, 30)
        samples = [Sample(reworded(text), text) for text in chunks]
        keys = [(f"c{i:05d}", 0) for i in range(size)]
        fields = {"input": [s.input for s in samples], "output": [s.output for s in samples]}
        test = frozenset(key for key, _ in keys[::20])
        protection = Protection([Protected("dev", reworded(text)) for text in chunks[:8]],
                                [Protected(f"held-out chunk {key}", chunks[i]) for i, (key, _) in enumerate(keys)
                                 if key in test], test)
        index = SampleIndex()
        index.read(chunks)
        index.add(samples)
        kept = best_ms(lambda: index.screened(keys, fields, chunks, protection, 13))
        cold = best_ms(lambda: SampleIndex().screened(keys, fields, chunks, protection, 13))
        texts = chunks + fields["input"]
        tracemalloc.start()
        known = TextUnits()
        known.add(texts, 13)
        weight = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        count = sum(len(units(text)) for text in texts)
        print(f"{size} samples: {kept:.1f} ms from the units kept, {cold:.1f} ms from nothing; "
              f"{weight / count:.0f} bytes a unit kept ({count} units, their texts not counted)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.screen_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("samples", type=int, nargs="*", default=[640, 5120], help="run sizes (default 640 5120)")
    main(parser.parse_args().samples)
