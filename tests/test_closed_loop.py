"""bench/closed_loop.py, as far as a machine without a GPU can check it: the plan its dry run prints, and the one-line
refusal of a real run."""

import os
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT


def closed_loop(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.closed_loop", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=env)


def test_the_dry_run_prints_the_loop_in_order(tmp_path):
    out = tmp_path / "loop"
    result = closed_loop("--dry-run", "--corpus", "data/samples", "--out", str(out))
    assert result.returncode == 0, result.stderr
    plan = [line for line in result.stdout.splitlines() if line[:3].strip().rstrip(".").isdigit()]

    def first(*words: str, after: int = -1) -> int:
        found = [i for i, line in enumerate(plan) if i > after and all(word in line for word in words)]
        assert found, f"no step with {words} after step {after + 1}:\n" + "\n".join(plan)
        return found[0]

    serve_generator = first("vllm serve", "--served-model-name generator")
    uncompiled = first("datagen generate style_clone", "--limit", after=serve_generator)
    devset = first("datagen devset style_clone")
    optimize = first("datagen optimize style_clone", "--dev", after=max(devset, uncompiled))
    compiled = first("datagen generate style_clone", "--compiled", after=optimize)
    stop_generator = first("stop the server on port 8000", after=compiled)
    exports = [first("datagen export", f"runs/{run}", "--for trl", "--base-model", after=stop_generator)
               for run in ("uncompiled", "compiled")]
    trainings = [first(f"cd {out}/runs/{run}/for-trl", "trl sft --config trl_sft.yaml", after=max(exports))
                 for run in ("uncompiled", "compiled")]
    serve_eval = first("vllm serve", "--enable-lora", "--lora-modules", after=max(trainings))
    evaluation = first("datagen eval-model", f"{out}/runs/compiled", "--model base=openai/base", after=serve_eval)
    first("stop the server on port 8001", after=evaluation)
    # Both runs draw the same chunks: the same --limit and chunk budget.
    assert plan[uncompiled].split("--limit")[1] == plan[compiled].split("--limit")[1]
    assert "tuned-uncompiled=" in plan[serve_eval] and "tuned-compiled=" in plan[serve_eval]
    assert not out.exists()  # nothing was run


def test_a_real_run_without_a_gpu_refuses_in_one_line(tmp_path):
    # An empty PATH: no nvidia-smi, whatever this machine has.
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {**os.environ, "PATH": str(empty)}
    out = tmp_path / "loop"
    result = closed_loop("--corpus", "data/samples", "--out", str(out), env=env)
    assert result.returncode != 0
    message = result.stderr.strip()
    assert message and "\n" not in message, message
    assert "no CUDA GPU" in message and "nvidia-smi" in message
    beside = Path(sys.executable).parent  # where the script looks for vllm and trl besides PATH
    if not (beside / "vllm").is_file() or not (beside / "trl").is_file():
        assert "pip install vllm==" in message and "trl==" in message  # what to install
    assert not out.exists() and result.stdout == ""
