"""CPU seconds of each phase of `datagen.generate` (claim, prepare, run, export) on bench/fake_server.py. The
held-out split's draw is in the run's phase (datagen.runs.screening.SplitDraw: at its start, or once the
near-duplicate index's process beside it found its groups); in prepare before issue 29's sixth pass.

    python -m bench.phase_cpu CONCURRENCY ROUNDS [LATENCY_S]    # CONCURRENCY x ROUNDS one-call chunks

SRC=folder: the datagen checkout to import and take style_clone from (default: this one), to time another commit
in the same session, run from that folder (its fake server is started from it):
`cd ../before && SRC=$PWD SEED=M. python ../datagen/bench/phase_cpu.py 64 20`. SEED=text: the corpus' prefix
(default: the time), so that two checkouts run on the same corpus. PROFILE=N: print cProfile's N costliest calls
of each phase. KEEP=folder: copy the run folder there. WARM=1: a run of one passage first, as the throughput
benchmark's warm-up (what a process does once is then not counted).
"""

import cProfile
import io
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

SOURCE = Path(os.environ.get("SRC", Path(__file__).resolve().parents[1]))
PHASES = ("_claim", "_prepare", "_run", "_export")


def timed(name: str, fn, times: dict, profile: int):
    """`fn`, its (wall, CPU) seconds put in `times[name]`, and its profile printed when `profile`."""
    def wrapper(*args, **kwargs):
        profiler = cProfile.Profile() if profile else None
        wall, cpu = time.monotonic(), time.process_time()
        if profiler:
            profiler.enable()
        result = fn(*args, **kwargs)
        if profiler:
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(profile)
            print("=====", name, out.getvalue())
        times[name] = (round(time.monotonic() - wall, 2), round(time.process_time() - cpu, 2))
        return result
    return wrapper


def main() -> None:
    sys.path.insert(0, str(SOURCE))
    import datagen
    import datagen.runs.generate as engine
    from bench.fake_server import ServerProcess
    from bench.throughput_bench import CHUNK_TOKENS, passages, warm_up, write_corpus
    from datagen.lm.roles import build_role_model
    from datagen.workspace.config import ModelSettings

    concurrency, rounds = int(sys.argv[1]), int(sys.argv[2])
    latency = float(sys.argv[3]) if len(sys.argv) > 3 else 0.2
    work = Path(tempfile.mkdtemp())
    os.environ["DSPY_CACHEDIR"] = str(work / "dc")
    times: dict = {}
    with ServerProcess(latency) as server:
        model = build_role_model(ModelSettings(model="openai/bench", api_base=server.url), "task")
        model.lm("warm-up x")
        settings = datagen.RunSettings(max_tokens=CHUNK_TOKENS, concurrency=concurrency)

        def generate(corpus: Path, out: Path):
            return datagen.generate("style_clone", [corpus], out, workspace=SOURCE, model=model, settings=settings)

        if os.environ.get("WARM"):
            warm_up(generate, work / "warm-up", "phase-cpu")
        for name in PHASES:
            setattr(engine, name, timed(name, getattr(engine, name), times, int(os.environ.get("PROFILE", 0))))
        write_corpus(work / "corpus", passages(os.environ.get("SEED", f"P{time.time()}."), concurrency * rounds, 30))
        wall, cpu = time.monotonic(), time.process_time()
        report = generate(work / "corpus", work / "out")
        wall, cpu = time.monotonic() - wall, time.process_time() - cpu
        print(f"samples {report.samples} wall {wall:.1f}s {report.samples / wall:.1f}/s cpu {cpu:.1f}s "
              f"{1000 * cpu / report.samples:.2f} ms/sample; (wall, cpu) {times}")
        if os.environ.get("KEEP"):
            shutil.copytree(work / "out", os.environ["KEEP"], dirs_exist_ok=True)


if __name__ == "__main__":
    main()
