"""What an optimize run costs: LM calls and wall time of each optimizer preset on the sample dev set.

    python -m bench.optimize_bench            # from the repository root; --help for the knobs

Every preset runs `datagen.tuning.optimize_pipeline` on data/style_clone/dev.jsonl (12 train, 4 val items) with the
style_clone pipeline's own composite metric: its two LLM judges (content, genericness) and its offline metrics.
Task, judge and prompt roles all talk over HTTP to a fake OpenAI-compatible server in its own process that
answers each request after a fixed latency (its judge ratings vary with the passage, so optimizers see a
signal). Side by side: the estimate `datagen optimize` prints before it starts, the LM requests counted by role,
the requests the server saw, and the wall time, with the share of it spent waiting on the model
(requests x latency). A response cache would hide calls: DSPy's is off.
"""

import argparse
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # optimizers' progress bars; read when tqdm is first imported

from bench.fake_server import ServerProcess  # noqa: E402
# datagen first: it keeps litellm from fetching its price list
from datagen.workspace.config import Config, ModelSettings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PRESETS = ["bootstrap", "bootstrap-rs", "copro", "simba", "gepa", "mipro"]
DEV = "data/style_clone/dev.jsonl"


def workspace_copy(folder: Path) -> Path:
    for name in ("programs", "signatures", "metrics", "data"):
        shutil.copytree(ROOT / name, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def run(kind: str, server: ServerProcess, work: Path, trials: int) -> dict:
    """One preset (or a search of `trials` trials) in a fresh workspace; its counts and seconds."""
    import dspy

    from datagen.tuning import optimize_pipeline
    from datagen.tuning.search import search_pipeline

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    # The fake prompt model cannot write SIMBA's structured advice: each failed strategy logs a page. Its requests
    # are counted all the same.
    logging.getLogger("dspy").setLevel(logging.CRITICAL)
    workspace = workspace_copy(work / kind)
    config = Config(models={"task": ModelSettings(model="openai/fake", api_base=server.url)})
    seen = server.count()
    started = time.perf_counter()
    if kind == "search":
        result = search_pipeline("style_clone", workspace / DEV, trials, workspace=workspace, config=config)
    else:
        result = optimize_pipeline("style_clone", workspace / DEV, kind, workspace=workspace, config=config)
    seconds = time.perf_counter() - started
    return {"estimate": result.estimate, "calls": dict(result.calls), "requests": server.count() - seen,
            "seconds": seconds, "stopped": result.stopped}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per LM request (default 0.05)")
    parser.add_argument("--presets", nargs="+", default=PRESETS, choices=PRESETS)
    parser.add_argument("--trials", type=int, default=4, help="trials of the search run (0: no search run)")
    args = parser.parse_args(argv)
    kinds = args.presets + (["search"] if args.trials else [])
    print(f"style_clone on {DEV}: composite = 2 LLM judges + offline metrics, "
          f"{args.latency * 1000:.0f} ms per request, one thread")
    print(f"{'preset':<13} {'estimate':>8} {'requests':>8} {'task':>6} {'judge':>6} {'prompt':>6} "
          f"{'req/est':>7} {'wall s':>7} {'waiting':>7}")
    with ServerProcess(latency=args.latency, judge=True) as server, tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            row = run(kind, server, Path(tmp), args.trials)
            calls = row["calls"]
            waiting = row["requests"] * args.latency / row["seconds"]
            label = f"search x{args.trials}" if kind == "search" else kind
            print(f"{label:<13} {row['estimate']:>8} {row['requests']:>8} {calls.get('task', 0):>6} "
                  f"{calls.get('judge', 0):>6} {calls.get('prompt', 0):>6} {row['requests'] / row['estimate']:>7.2f} "
                  f"{row['seconds']:>7.1f} {waiting:>7.0%}" + (f"  ({row['stopped']})" if row["stopped"] else ""))


if __name__ == "__main__":
    main()
