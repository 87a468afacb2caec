"""Which embedded model, sampling settings and demos make the offline default (issue 24).

    python -m bench.embedded_models                        # from the repository root: about 15 minutes on 2 cores
    python -m bench.embedded_models --items 4 --configs smollm2

`style_clone` runs, in process, on each embedded model (datagen.lm.local.EMBEDDED_MODELS) over two corpora: the
workspace's demo corpus (data/samples, the text `make demo` runs on) and a public-domain novel
(../shared/corpora/shelley_frankenstein.txt, left out when absent), `--items` chunks of each, cut at
`--chunk-tokens` and drawn as `datagen devset` draws them. Each configuration is a model, its sampling settings
(temperature, llama.cpp's repeat penalty), how many labeled demos its rephrase step is shown (the first
human-written pairs of data/style_clone/pairs.jsonl, as `datagen optimize` puts labeled demos first), and how the
prompt lays out the fields: DSPy's JSON template, or described in words (DescribedJSONAdapter). Every answer goes
through the grammar the engine makes of the signature's JSON schema; DSPy's cache is off.

For each it prints, per corpus: the chunks answered (parsed, not cut off at the answer cap: failures are counted
by kind at the end of the row); those that made a sample (the pipeline's own drop
checks passed, datagen.text.degenerate); those whose sample reaches the pipeline's pass mark (metrics/
style_clone.py THRESHOLD) on the offline composite (generic_offline, coverage, novelty and, when installed,
embedding: what a run without a capable judge climbs), and that composite's mean over the samples made; the drop
reasons; and the mean seconds per chunk. Then, with `--show N`, N samples of each configuration as they came out, to read.
The figures in docs/models.md come from this script.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price list fetched

ROOT = Path(__file__).resolve().parent.parent
NOVEL = ROOT.parent / "shared/corpora/shelley_frankenstein.txt"
PAIRS = ROOT / "data/style_clone/pairs.jsonl"
OFFLINE = ["composite", "generic_offline", "coverage", "novelty", "embedding"]
GEMMA, SMOLLM2 = "local/gemma-3-270m", "local/smollm2-135m-instruct"
# (label, model, temperature, repeat penalty, labeled demos, adapter): "template" is DSPy's JSON layout, a template
# of the fields; "described" says the same in words (datagen.lm.adapters.DescribedJSONAdapter).
CONFIGS = [
    ("gemma t0.3 r1.1 template", GEMMA, 0.3, 1.1, 0, "template"),
    ("gemma t0.3 r1.1 described", GEMMA, 0.3, 1.1, 0, "described"),
    ("gemma t0.3 r1.1 described +2", GEMMA, 0.3, 1.1, 2, "described"),
    ("smollm2 t0.3 r1.1 template", SMOLLM2, 0.3, 1.1, 0, "template"),
    ("smollm2 t0.3 r1.1 template +2", SMOLLM2, 0.3, 1.1, 2, "template"),
    ("smollm2 t0.3 r1.1 described", SMOLLM2, 0.3, 1.1, 0, "described"),
    ("smollm2 t0.3 r1.1 described +2", SMOLLM2, 0.3, 1.1, 2, "described"),
    ("smollm2 t0.7 r1.1 described", SMOLLM2, 0.7, 1.1, 0, "described"),
    ("smollm2 t0.3 r1.3 described", SMOLLM2, 0.3, 1.3, 0, "described"),
    ("smollm2 t0.0 r1.0 described", SMOLLM2, 0.0, 1.0, 0, "described"),
]


def corpora(items: int, chunk_tokens: int) -> dict[str, list]:
    """{corpus name: dev items}, drawn as `datagen devset` draws them."""
    from datagen.dataset.devset import read_devset, sample_devset, write_devset

    found = {"demo": [ROOT / "data/samples"]}
    if NOVEL.is_file():
        found["novel"] = [NOVEL]
    folder = Path(tempfile.mkdtemp(prefix="datagen-bench-dev-"))
    return {name: read_devset(write_devset(sample_devset(paths, items, max_tokens=chunk_tokens, seed=0),
                                           folder / f"{name}.jsonl"))
            for name, paths in found.items()}


def run_config(config: tuple, items: list, workspace: Path, settings) -> dict:
    """One configuration over one corpus's items: counts, drop reasons, seconds, and the samples made."""
    import dspy

    from datagen.lm import RoleModel
    from datagen.lm.adapters import DescribedJSONAdapter, JSONAdapter
    from datagen.lm.local import CONTEXT_WINDOW, DEFAULT_MAX_TOKENS, AsyncLlamaCppEngine, LlamaCppEngine
    from datagen.metrics import MetricContext
    from datagen.metrics import scorer_for
    from datagen.tuning.evaluate import Evaluator
    from datagen.workspace.pipelines import load_program
    from metrics.style_clone import THRESHOLD

    _, model, temperature, penalty, demos, layout = config
    engine = LlamaCppEngine(model, repeat_penalty=penalty)
    # No cache: the repeat penalty is not in DSPy's cache key, and each configuration is measured afresh.
    lm = dspy.LM(model, engine=engine, async_engine=AsyncLlamaCppEngine(engine), cache=False,
                 temperature=temperature, max_tokens=max(DEFAULT_MAX_TOKENS, 2 * settings.chunk_tokens + 256))
    program = load_program("style_clone", workspace)
    pairs = [json.loads(line) for line in PAIRS.read_text().splitlines()][:demos]
    program.rephrase.demos = [dspy.Example(passage=p["styled"], generic=p["plain"]) for p in pairs]
    context = MetricContext(workspace, settings.config, corpus=[item.chunk.text for item in items])
    evaluator = Evaluator("style_clone", items, scorer_for("style_clone", context, settings.metrics),
                          settings.config, dev="bench")
    started = time.monotonic()
    adapter = DescribedJSONAdapter() if layout == "described" else JSONAdapter()
    result = evaluator(program, config[0], model=RoleModel("task", lm, adapter, CONTEXT_WINDOW))
    seconds = (time.monotonic() - started) / max(1, len(items))
    failures = Counter(str(f["kind"]) for f in result["failures"] if f["kind"] != "dropped")
    reasons = Counter()
    for failure in result["failures"]:
        if failure["kind"] == "dropped":
            reasons.update(part.split()[0] for part in failure["message"].split("(", 1)[-1].rstrip(")").split(", "))
    composite = [s["scores"]["composite"]["value"] for s in result["samples"] if "composite" in s["scores"]]
    return {"n": len(items), "answered": len(items) - sum(failures.values()),
            "failures": dict(failures), "samples": len(result["samples"]),
            "pass": sum(value >= THRESHOLD for value in composite),
            "mean": statistics.fmean(composite) if composite else None, "reasons": dict(reasons),
            "seconds": seconds, "made": result["samples"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=8, help="chunks drawn from each corpus (default 8)")
    parser.add_argument("--chunk-tokens", type=int, default=256, help="the chunk budget (default 256)")
    parser.add_argument("--configs", default="", help="only the configurations whose label contains this")
    parser.add_argument("--show", type=int, default=2, help="samples of each configuration to print (default 2)")
    args = parser.parse_args()
    from datagen.workspace import load_config
    from datagen.workspace.pipelines import builtin_workspace

    workspace = builtin_workspace()
    from datagen.metrics.overlap import embedding_available

    args.config = load_config(workspace)
    args.metrics = OFFLINE if embedding_available() else OFFLINE[:-1]
    dev = corpora(args.items, args.chunk_tokens)
    print(f"chunks of at most {args.chunk_tokens} tokens; {', '.join(f'{k}: {len(v)}' for k, v in dev.items())}; "
          f"offline composite of {', '.join(args.metrics[1:])}")
    print(f"{'configuration':31} {'corpus':6} {'answer':>7} {'sample':>7} {'pass':>5} {'mean':>5} {'s/chunk':>8}  "
          "dropped by reason / failures")
    shown = []
    for config in CONFIGS:
        if args.configs not in config[0]:
            continue
        for name, items in dev.items():
            row = run_config(config, items, workspace, args)
            mean = f"{row['mean']:.2f}" if row["mean"] is not None else "-"
            print(f"{config[0]:31} {name:6} {row['answered']:>3}/{row['n']:<3} {row['samples']:>3}/{row['n']:<3} "
                  f"{row['pass']:>5} {mean:>5} {row['seconds']:>8.1f}  {row['reasons']} {row['failures'] or ''}",
                  flush=True)
            shown += [(config[0], name, sample) for sample in row["made"][:args.show]]
    for label, name, sample in shown:
        print(f"\n--- {label}, {name} (composite {sample['scores'].get('composite', {}).get('value', 0):.2f})\n"
              f"chunk:   {sample['chunk'][:300]!r}\ngeneric: {sample['input'][:300]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
