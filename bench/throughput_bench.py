"""Side by side (issue 15): datagen before and now, `module.batch()` and bespokelabs-curator, on one fake model.

    .venv/bin/python -m bench.throughput_bench --baseline /work/bench-baseline     # --help for the knobs

One fake OpenAI-compatible server (tests/fakes.py, in a process of its own, a fixed latency per request) answers
every client. Each client runs in a fresh process of its own, after one warm-up run of one passage through its own
entry point (`datagen.generate`, curator's `LLM.__call__`; `module.batch()`: one LM call), on the same kind of short
passages (one LM call per passage; each run's passages drawn from a seed of their own, so no cache can answer), with
rate limits off and every client's defaults on, its response caches included, as a user runs it (--caches-off: DSPy's
and curator's response caches off, the figures before issue 29):

  datagen (before)  `datagen.generate` of the baseline worktree (--baseline, e.g. commit 91c60f7's thread pool),
                    first on sys.path of its process, with this repository's venv
  datagen (now)     `datagen.generate` of this working tree (or of --now PATH), pipeline style_clone
  datagen (workers) the same with `RunSettings(cluster=WorkerProcesses(--workers))`: the chunks on worker
                    processes (`--executor processes`); its CPU counts the workers' (waited-for children)
  module.batch()    the same program's `batch()` at the same thread count (this working tree)
  curator           bespokelabs-curator 0.1.31 in a venv of its own (--curator-venv; made on first use), sent
                    the very system + user messages datagen's style_clone sends (rendered here with the adapter)

Columns: samples/s; ratio = samples/s / ideal (concurrency / latency / calls per sample); client CPU ms per LM
call (the client process's CPU time, children included, over the calls the server saw); the client's peak RSS.
With --repeat N, each client runs N times at each point, the clients alternated, and the row is its run of median
samples/s, the N runs' range after it: one run's figure moves by 1-3% from one run to the next on this shared
2-core machine, more than two clients at parity differ by.
Then the memory line: datagen (now)'s peak RSS at two corpus sizes at a short latency, and the growth. Then the
batch line: datagen (now) with `RunSettings(batch=True)` on --batch-chunks chunks (one step: style_clone makes one
LM call per chunk), every request through the fake server's Batch API (/v1/files, /v1/batches), in jobs of at most
--batch-size requests: the interactive requests it made (the target: none) and the jobs it created (the target: at
most ceil(chunks / batch size) per pipeline step), with rounds, wall and CPU seconds and peak RSS.
"""

import argparse
import datetime
import itertools
import json
import math
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = "style_clone"
CURATOR = "bespokelabs-curator==0.1.31"
CURATOR_VENV = Path.home() / ".cache" / "datagen" / "bench-curator"
MARK = "@@throughput-bench "  # the children's protocol lines on stdout (libraries may print there too)
PARAGRAPHS_PER_FILE = 100
# The chunk budget in tokens: over one passage (30 words: 36 to 67 tokens, mean 50, over 400,000 drawn), under two
# (two passages: 78 tokens at the least, over 112,000 drawn).
CHUNK_TOKENS = 72
CLIENTS = {"before": "datagen (before)", "now": "datagen (now)", "workers": "datagen (workers)",
           "batch": "module.batch()", "curator": "curator 0.1.31"}
# The passages' words: English's commonest words first, then made-up ones, drawn by Zipf's law (a word's share
# about 1 / its rank, as in English prose), so that two passages share about as many character 5-grams as two
# passages of a novel do. Thirty words drawn evenly from 72, as before, made every passage a near-duplicate
# candidate of hundreds of others (LSH candidates a text, at 5,120 texts: 445 against 0.2-7 in ../shared's novels,
# `python bench/throughput_bench.py` issue 29's note), which made the run's near-duplicate screening check
# 40-90 pairs exactly for each sample, work no real corpus makes it do.
_COMMON = ("the of and to a in that it was he i his you with as for had is her she but at not on be him my they by "
           "all this so have which from were me said one there would them an or no if their are when what could up "
           "we out been into will more then do very any little who some time upon man now your like before about "
           "than old know should only see such down our over these much other made well great must may good came "
           "come how eyes night hand never house back away again long found way might face room door").split()
_SYLLABLES = [onset + vowel for onset in ("b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w")
              for vowel in ("a", "e", "i", "o", "u")]
_VOCABULARY_SIZE = 20_000


def _vocabulary() -> tuple[list[str], list[float]]:
    """The words, commonest first, and their cumulative Zipf weights (1 / rank)."""
    rng, words = random.Random(0), list(_COMMON)
    seen = set(words)
    while len(words) < _VOCABULARY_SIZE:
        word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.choice((2, 2, 2, 3))))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words, list(itertools.accumulate(1 / rank for rank in range(1, len(words) + 1)))


_WORDS, _WEIGHTS = _vocabulary()


# --- the passages -------------------------------------------------------------------------------------------

def passage(prefix: str, index: int, words: int) -> str:
    """A distinct passage of `words` words drawn by Zipf's law, in sentences of 12, numbered `index` after the
    run's `prefix` (which also seeds the draw: each run's passages are its own, so that no cache answers them)."""
    rng = random.Random(f"{prefix}-{index}")
    body = rng.choices(_WORDS, cum_weights=_WEIGHTS, k=words)
    sentences = [" ".join(body[i:i + 12]).capitalize() + "." for i in range(0, words, 12)]
    return f"{index}. " + " ".join(sentences)


def passages(prefix: str, count: int, words: int) -> list[str]:
    return [passage(prefix, i, words) for i in range(count)]


def warm_up(generate, folder: Path, prefix: str, words: int = 30) -> None:
    """The benchmarks' warm-up of datagen: `generate(corpus, out)` of one passage under `folder`, as curator's
    warm-up is a run of one row, so that what a process does once (load the tokenizer, import the program) is left
    out of the timed run."""
    generate(write_corpus(folder / "corpus", [passage(f"{prefix} warm-up", 0, words)]), folder / "out")


def write_corpus(folder: Path, texts: list[str]) -> Path:
    """Text files under `folder`, one paragraph per passage (at a small chunk budget, one chunk per passage)."""
    folder.mkdir(parents=True)
    for first in range(0, len(texts), PARAGRAPHS_PER_FILE):
        part = texts[first:first + PARAGRAPHS_PER_FILE]
        (folder / f"part-{first // PARAGRAPHS_PER_FILE:05d}.txt").write_text("\n\n".join(part) + "\n")
    return folder


def check_chunks(folder: Path, texts: list[str], max_tokens: int) -> None:
    """The corpus chunks (with this working tree's chunker) into exactly the passages, in order."""
    from datagen.text.chunking import chunk_documents
    from datagen.text.ingest import iter_documents

    chunks = [c.text.strip() for c in chunk_documents(iter_documents([folder]), max_tokens)]
    if chunks != texts:
        raise SystemExit(f"the corpus chunks into {len(chunks)} chunks, not the {len(texts)} passages: "
                         "adjust --words or --max-tokens")


def render_messages(texts: list[str]) -> list[list[dict]]:
    """The chat messages datagen's style_clone sends for each passage: its predictor's signature formatted by
    datagen's ChatAdapter (the adapter of a model with an api_base), no demos."""
    from datagen.lm.adapters import ChatAdapter
    from datagen.workspace.pipelines import load_program

    program = load_program(PIPELINE, ROOT)
    predictors = [p for _, p in program.named_predictors()]
    if len(predictors) != 1:
        raise SystemExit(f"{PIPELINE} has {len(predictors)} predictors; the benchmark expects one call per chunk")
    signature, adapter = predictors[0].signature, ChatAdapter()
    return [adapter.format(signature, demos=[], inputs={"passage": text}) for text in texts]


# --- the clients, each in a process of its own -------------------------------------------------------------

def _say(kind: str, payload=None) -> None:
    print(MARK + json.dumps({"kind": kind, "payload": payload}), flush=True)


def _usage() -> tuple[float, float, float]:
    """CPU seconds of this process (all threads) and of its waited-for children; peak RSS MiB of either."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    return cpu, max(own.ru_maxrss, children.ru_maxrss) / 1024, own.ru_maxrss / 1024  # KiB on Linux


def _children() -> set[int]:
    """The ids of this process's children, ended ones not yet reaped among them (read from /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == os.getpid():  # its parent
                found.add(int(stat.parent.name))
        except (OSError, IndexError, ValueError):  # gone meanwhile
            pass
    return found


def _reaped(before: set[int], seconds: float = 30) -> None:
    """Wait (`seconds` at most) until the children a run started are reaped, so that their CPU is counted
    (RUSAGE_CHILDREN): datagen's near-duplicate index process ends after `generate` returns."""
    deadline = time.monotonic() + seconds
    while _children() - before and time.monotonic() < deadline:
        time.sleep(0.01)


def _datagen_model(job: dict):
    import dspy

    from datagen.workspace.config import ModelSettings
    from datagen.lm.roles import build_role_model

    if job.get("caches_off"):
        dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    settings = ModelSettings(model="openai/bench", api_base=job["url"], engine=job["engine"])
    model = build_role_model(settings, "task")
    return model


def _child_datagen(job: dict):
    sys.path.insert(0, job["code"])
    import datagen  # before dspy and litellm: it keeps litellm from fetching its price list

    where = Path(datagen.__file__).resolve()
    if not where.is_relative_to(Path(job["code"]).resolve()):
        raise SystemExit(f"datagen imported from {where}, not from {job['code']}")
    model = _datagen_model(job)

    batch = {"batch": True, "batch_poll": job["batch_poll"], "batch_size": job["batch_size"]} if job.get(
        "batch_size") else {}

    cluster = datagen.WorkerProcesses(job["workers"]) if job["client"] == "workers" else None

    def generate(corpus: str | Path, out: str | Path):
        settings = datagen.RunSettings(max_tokens=job["max_tokens"], concurrency=job["concurrency"], cluster=cluster,
                                       **batch)
        return datagen.generate(PIPELINE, [corpus], out, workspace=Path(job["workspace"]), model=model,
                                settings=settings)

    if job.get("warm", True):  # not for the batch line: its run must make no interactive call at all
        warm_up(generate, Path(job["out"]).parent / "warm-up", job["prefix"], job["words"])

    def run():
        report = generate(job["corpus"], job["out"])
        if not batch:
            return report.samples, sum(report.failures.values())
        summary = report.batch
        return report.samples, sum(report.failures.values()), {
            "chunks": report.chunks, "exported": report.exported, "deferred": report.deferred,
            "rounds": summary.rounds if summary else None, "jobs": summary.jobs if summary else None,
            "requests": summary.requests if summary else None, "stopped": report.stopped}

    return str(where.parent), run


def _child_batch(job: dict):
    sys.path.insert(0, job["code"])
    import datagen
    import dspy

    from datagen.workspace.pipelines import load_program

    model = _datagen_model(job)
    model.lm(f"{job['prefix']} warm-up")  # its warm-up: one LM call (litellm imports some modules on first use)
    program = load_program(PIPELINE, Path(job["workspace"]))
    texts = json.loads(Path(job["passages"]).read_text())

    def run():
        examples = [dspy.Example(chunk=text).with_inputs("chunk") for text in texts]
        with model.context():
            predictions = program.batch(examples, num_threads=job["concurrency"], disable_progress_bar=True)
        return (sum(len(p.samples) for p in predictions if p is not None),
                sum(p is None for p in predictions))

    return str(Path(datagen.__file__).resolve().parent), run


def curator_env(cache: Path, caches_off: bool) -> dict:
    """The environment curator runs offline in: its cache in `cache` (off with `caches_off`), no display, no
    telemetry, litellm's bundled prices."""
    return {**({"CURATOR_DISABLE_CACHE": "true"} if caches_off else {}), "CURATOR_CACHE_DIR": str(cache), "CURATOR_DISABLE_RICH_DISPLAY": "1",
            "TELEMETRY_ENABLED": "0", "BESPOKE_CURATOR_TRACKER_DISABLED": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(cache / "hf"),
            "TOKENIZERS_PARALLELISM": "false"}


def _child_curator(job: dict):
    import importlib.util

    # curator counts tokens with tiktoken's cl100k_base, which it would download: litellm ships the vocabulary.
    litellm_dir = Path(importlib.util.find_spec("litellm").origin).parent
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(litellm_dir / "litellm_core_utils" / "tokenizers"))
    from bespokelabs import curator
    from datasets import Dataset

    class Rewrite(curator.LLM):
        def prompt(self, row):
            return row["messages"]

        def parse(self, row, response):
            return {"generic": response}

    big = 10 ** 10  # rate limits out of the way: the concurrency is the only bound, as for the others
    llm = Rewrite(model_name="bench", backend="openai",
                  backend_params={"base_url": job["url"], "api_key": "no-key",
                                  "max_concurrent_requests": job["concurrency"],
                                  "max_requests_per_minute": big, "max_tokens_per_minute": big,
                                  "max_retries": 3})
    warm = [{"role": "user", "content": f"{job['prefix']} warm-up"}]
    llm(Dataset.from_list([{"messages": warm}]))
    messages = json.loads(Path(job["messages"]).read_text())

    def run():
        result = llm(Dataset.from_list([{"messages": m} for m in messages]))
        dataset = getattr(result, "dataset", result)  # newer curators wrap the dataset in a response
        return len(dataset), len(messages) - len(dataset)

    return curator.__file__, run


def child_main(job_file: str) -> None:
    """Load the client and make a warm-up call, say "ready", wait for "go", run, and say the figures."""
    import logging

    job = json.loads(Path(job_file).read_text())
    for noisy in ("LiteLLM", "httpx", "dspy", "bespokelabs", "curator"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    setup = {"before": _child_datagen, "now": _child_datagen, "workers": _child_datagen, "batch": _child_batch, "curator": _child_curator,
             "batch-api": _child_datagen}
    where, run = setup[job["client"]](job)
    _, _, baseline_mib = _usage()
    _say("ready", {"code": where, "baseline_mib": baseline_mib})
    if sys.stdin.readline().strip() != "go":
        return
    cpu_before, children = _usage()[0], _children()
    started = time.monotonic()
    samples, failed, *extra = run()
    seconds = time.monotonic() - started
    _reaped(children)
    cpu, peak, _ = _usage()
    _say("done", {"seconds": seconds, "started": started, "cpu": cpu - cpu_before, "samples": samples,
                  "failed": failed, "peak_mib": peak, **(extra[0] if extra else {})})


# --- the parent: start a client, count the server's calls, collect the figures -----------------------------

class ClientFailed(Exception):
    pass


def measure(server, job: dict, python: str, work: Path, env: dict | None = None, timeout: float = 3600) -> dict:
    """Run one client in a fresh process against `server`; its figures plus the LM calls the server saw."""
    name = f"{job['client']}-{job['concurrency']}-{uuid.uuid4().hex[:6]}"
    job_file, log_file = work / f"{name}.json", work / f"{name}.log"
    job_file.write_text(json.dumps(job))
    child_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    child_env.update(env or {})
    child_env["PYTHONUNBUFFERED"] = "1"
    # -P: the script's folder is not put on sys.path; each client puts its own code there.
    with open(log_file, "w") as log:
        process = subprocess.Popen([python, "-P", str(Path(__file__).resolve()), "--child", str(job_file)],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                                   cwd=work, env=child_env)
    deadline = time.monotonic() + timeout

    def expect(kind: str):
        for line in process.stdout:
            if line.startswith(MARK):
                message = json.loads(line[len(MARK):])
                if message["kind"] == kind:
                    return message["payload"]
            if time.monotonic() > deadline:
                break
        process.kill()
        process.wait()
        tail = "".join(log_file.read_text().splitlines(keepends=True)[-15:])
        label = CLIENTS.get(job["client"], job["client"])
        raise ClientFailed(f"{label} exited (code {process.returncode}) before '{kind}'; "
                           f"the end of {log_file}:\n{tail}")

    try:
        ready = expect("ready")
        before = server.counts()
        process.stdin.write("go\n")
        process.stdin.flush()
        figures = expect("done")
        after = server.counts()
        figures["server"] = {key: after[key] - before[key] for key in after}  # what this run made the server do
        figures["calls"] = figures["server"]["arrivals"]
    finally:
        if process.poll() is None:
            process.stdin.close()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    figures.update(code=ready["code"], baseline_mib=ready["baseline_mib"])
    return figures


def derive(figures: dict, concurrency: int, latency: float) -> dict:
    """samples/s, ratio to ideal and CPU ms per call from one client's raw figures."""
    samples, calls = figures["samples"], figures["calls"]
    rate = samples / figures["seconds"] if figures["seconds"] else 0.0
    per_sample = calls / samples if samples else 1.0
    ideal = concurrency / latency / per_sample
    return {"samples_per_s": rate, "ideal": ideal, "ratio": rate / ideal,
            "cpu_ms_per_call": 1000 * figures["cpu"] / calls if calls else float("nan")}


def ensure_curator(venv: Path, create: bool) -> str | None:
    """The curator venv's python: made (with `pip install bespokelabs-curator==0.1.31`) if missing and allowed."""
    python = venv / "bin" / "python"
    if not python.exists():
        if not create:
            return None
        print(f"creating {venv} with {CURATOR} (once; a few minutes)...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", CURATOR], check=True)
    return str(python)


def git(*args: str, cwd: Path = ROOT) -> str:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def describe_code(path: Path) -> str:
    """`abc1234`, with `+ uncommitted changes in datagen/` when the tree differs from its commit."""
    commit = git("rev-parse", "--short", "HEAD", cwd=path)
    dirty = git("status", "--porcelain", "--", "datagen", "programs", "signatures", cwd=path)
    return commit + (" + uncommitted changes in datagen/" if dirty and dirty != "?" else "")


# --- the runs -----------------------------------------------------------------------------------------------

HEADER = (f"{'latency':>7} {'conc':>4} {'chunks':>6}  {'client':<17} {'samples/s':>9} {'ratio':>6} "
          f"{'CPU ms':>7} {'peak MiB':>8}")


def median_run(runs: list[dict]) -> dict:
    """The run of median samples/s among a client's `runs` at one point (the lower middle one of an even number),
    with every run's samples/s in "runs"; the first failed run when one failed."""
    failed = [run for run in runs if "error" in run]
    if failed:
        return failed[0]
    ordered = sorted(runs, key=lambda run: run["samples_per_s"])
    return {**ordered[(len(ordered) - 1) // 2], "runs": [run["samples_per_s"] for run in runs]}


def row(latency: float, concurrency: int, chunks: int, label: str, result: dict | None, first: bool) -> str:
    point = f"{latency * 1000:>5.0f}ms {concurrency:>4} {chunks:>6}" if first else " " * 19
    if result is None or "error" in result:
        return f"{point}  {label:<17} {'(failed: see above)':>33}"
    failed = f"  ({result['failed']} failed)" if result.get("failed") else ""
    spread = result.get("runs", [])
    spread = f"  ({len(spread)} runs: {min(spread):.1f}-{max(spread):.1f})" if len(spread) > 1 else ""
    return (f"{point}  {label:<17} {result['samples_per_s']:>9.1f} {result['ratio']:>6.2f} "
            f"{result['cpu_ms_per_call']:>7.2f} {result['peak_mib']:>8.0f}{failed}{spread}")


def prepare(args, client: str, url: str, concurrency: int, folder: Path, prefix: str,
            texts: list[str]) -> tuple[dict, dict]:
    """One client's job (what `measure` hands its process) and environment, its inputs written under `folder`:
    `texts` as a corpus for datagen, rendered to messages for curator."""
    job = {"client": client, "url": url, "concurrency": concurrency, "prefix": prefix, "words": args.words,
           "engine": args.engine, "max_tokens": args.max_tokens, "out": str(folder / "out"),
           "caches_off": args.caches_off}
    env = {"DSPY_CACHEDIR": str(folder / "dspy-cache")}  # DSPy's disk cache starts empty, per client
    if client in ("before", "now", "workers"):
        code = args.baseline if client == "before" else args.now
        job.update(code=str(code), workspace=str(code), corpus=str(folder / "corpus"), workers=args.workers)
        write_corpus(folder / "corpus", texts)
        check_chunks(folder / "corpus", texts, args.max_tokens)
    elif client == "batch":
        folder.mkdir(parents=True)
        job.update(code=str(ROOT), workspace=str(ROOT), passages=str(folder / "passages.json"))
        Path(job["passages"]).write_text(json.dumps(texts))
    else:
        folder.mkdir(parents=True)
        job["messages"] = str(folder / "messages.json")
        Path(job["messages"]).write_text(json.dumps(render_messages(texts)))
        env = curator_env(folder / "curator-cache", args.caches_off)
    return job, env


def run_points(args, work: Path, pythons: dict, results: dict) -> None:
    from bench.fake_server import ServerProcess

    run_id = uuid.uuid4().hex[:8]
    print(HEADER, flush=True)
    for latency in args.latency:
        with ServerProcess(latency) as server:
            for concurrency in args.concurrency:
                chunks = args.rounds * concurrency
                point = {"latency": latency, "concurrency": concurrency, "chunks": chunks, "clients": {}}
                results["points"].append(point)
                runs: dict[str, list[dict]] = {client: [] for client in args.clients}
                for repeat, client in itertools.product(range(args.repeat), args.clients):  # alternated
                    prefix = f"Run {run_id}-{client}-{latency:g}-{concurrency}-{repeat}."
                    folder = work / f"{client}-{latency:g}-{concurrency}-{repeat}"
                    job, env = prepare(args, client, server.url, concurrency, folder, prefix,
                                       passages(prefix, chunks, args.words))
                    try:
                        figures = measure(server, job, pythons[client], work, env, args.timeout)
                        figures.update(derive(figures, concurrency, latency))
                    except ClientFailed as exc:
                        print(f"  {exc}", file=sys.stderr, flush=True)
                        figures = {"error": str(exc)}
                    runs[client].append(figures)
                    if figures.get("failed"):
                        print(f"  warning: {figures['failed']} chunks failed in this run", file=sys.stderr)
                for n, client in enumerate(args.clients):
                    point["clients"][client] = figures = median_run(runs[client])
                    print(row(latency, concurrency, chunks, CLIENTS[client], figures, n == 0), flush=True)
                if args.json:
                    Path(args.json).write_text(json.dumps(results, indent=2))


def run_memory(args, work: Path, pythons: dict, results: dict) -> None:
    from bench.fake_server import ServerProcess

    small, large = args.memory_sizes
    print(f"\nmemory: datagen (now) at concurrency {args.memory_concurrency}, "
          f"{args.memory_latency * 1000:g} ms per call", flush=True)
    memory = results["memory"] = {"concurrency": args.memory_concurrency, "latency": args.memory_latency,
                                  "runs": {}}
    run_id = uuid.uuid4().hex[:8]
    with ServerProcess(args.memory_latency) as server:
        for size in (small, large):
            prefix = f"Run {run_id}-memory-{size}."
            folder = work / f"memory-{size}"
            write_corpus(folder / "corpus", passages(prefix, size, args.words))
            job = {"client": "now", "url": server.url, "concurrency": args.memory_concurrency, "prefix": prefix,
                   "words": args.words, "engine": args.engine, "max_tokens": args.max_tokens,
                   "out": str(folder / "out"), "caches_off": args.caches_off,
                   "code": str(args.now), "workspace": str(args.now), "corpus": str(folder / "corpus")}
            try:
                m = measure(server, job, pythons["now"], work, None, args.timeout)
            except ClientFailed as exc:
                print(f"  {exc}", file=sys.stderr, flush=True)
                return
            m.update(derive(m, args.memory_concurrency, args.memory_latency))
            memory["runs"][str(size)] = m
            note = "" if m["samples"] == size else f"  (warning: {m['samples']} samples, {m['failed']} failed)"
            print(f"  {size:>7} chunks: peak RSS {m['peak_mib']:6.0f} MiB ({m['baseline_mib']:.0f} MiB before the "
                  f"run), {m['samples_per_s']:.0f} samples/s, {m['cpu_ms_per_call']:.2f} CPU ms per call{note}",
                  flush=True)
    growth = 100 * (memory["runs"][str(large)]["peak_mib"] / memory["runs"][str(small)]["peak_mib"] - 1)
    memory["growth_percent"] = growth
    print(f"  growth {small} -> {large} chunks: {growth:+.1f}%", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def run_batch_line(args, work: Path, pythons: dict, results: dict) -> None:
    """datagen (now) through the Batch API on args.batch_chunks chunks: no interactive call, at most
    ceil(chunks / batch size) jobs for style_clone's one step."""
    from bench.fake_server import ServerProcess

    chunks, size = args.batch_chunks, args.batch_size
    ceiling = math.ceil(chunks / size)
    print(f"\nbatch: datagen (now), RunSettings(batch=True, batch_poll={args.batch_poll:g}, batch_size={size}), "
          f"concurrency {args.batch_concurrency}, {PIPELINE} (1 step)", flush=True)
    line = results["batch"] = {"chunks": chunks, "batch_size": size, "batch_poll": args.batch_poll,
                               "concurrency": args.batch_concurrency, "steps": 1, "jobs_ceiling": ceiling}
    prefix = f"Run {uuid.uuid4().hex[:8]}-batch-{chunks}."
    folder = work / f"batch-{chunks}"
    write_corpus(folder / "corpus", passages(prefix, chunks, args.words))
    with ServerProcess(0.2) as server:  # the latency applies to interactive calls only: a batch has none
        job = {"client": "batch-api", "url": server.url, "concurrency": args.batch_concurrency, "prefix": prefix,
               "words": args.words, "engine": args.engine, "max_tokens": args.max_tokens,
               "out": str(folder / "out"), "caches_off": args.caches_off, "warm": False,
               "code": str(args.now), "workspace": str(args.now), "corpus": str(folder / "corpus"),
               "batch_size": size, "batch_poll": args.batch_poll}
        try:
            m = measure(server, job, pythons["now"], work, None, args.timeout)
        except ClientFailed as exc:
            print(f"  {exc}", file=sys.stderr, flush=True)
            line["error"] = str(exc)
            return
    line.update(m)
    counted = m["server"]
    no_interactive = counted["chat_requests"] == 0 and counted["arrivals"] == 0
    jobs_ok = counted["batches_created"] <= ceiling * line["steps"]
    complete = m["samples"] == chunks and not m["failed"]
    line["met"] = no_interactive and jobs_ok and complete
    print(f"  chunks {m['chunks']}, samples exported {m['exported']}"
          + (f" ({m['failed']} failed, {m['deferred']} deferred)" if m["failed"] or m["deferred"] else ""),
          flush=True)
    print(f"  interactive chat requests: {counted['chat_requests']}", flush=True)
    print(f"  jobs created: {counted['batches_created']} (ceil({chunks} / {size}) = {ceiling} per step), "
          f"files uploaded: {counted['uploads']}, batch lines answered: {counted['batch_lines']}", flush=True)
    print(f"  rounds: {m['rounds']} (1 step + the round that finds nothing left to ask), "
          f"wall {m['seconds']:.1f} s, client CPU {m['cpu']:.1f} s, peak RSS {m['peak_mib']:.0f} MiB "
          f"({m['baseline_mib']:.0f} MiB before the run)", flush=True)
    print(f"  target (no interactive call, at most {ceiling} jobs for the one step, every chunk a sample): "
          f"{'met' if line['met'] else 'NOT met'}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[32, 64, 256])
    parser.add_argument("--latency", type=float, nargs="+", default=[0.2, 2.0], help="seconds per LM call")
    parser.add_argument("--rounds", type=int, default=20,
                        help="chunks per point = rounds x concurrency (ideally rounds x latency seconds)")
    parser.add_argument("--clients", nargs="+", choices=list(CLIENTS), default=list(CLIENTS))
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of each client at each point, alternated; the median run is shown (default 1)")
    parser.add_argument("--baseline", type=Path, default=Path("/work/bench-baseline"),
                        help="a worktree of the 'before' commit (git worktree add /work/bench-baseline 91c60f7); "
                             "skipped when absent")
    parser.add_argument("--now", type=Path, default=ROOT,
                        help="the code measured as 'now' (default: this working tree; or a worktree of a commit)")
    parser.add_argument("--curator-venv", type=Path, default=CURATOR_VENV,
                        help=f"a venv with {CURATOR} (default {CURATOR_VENV}, made on first use)")
    parser.add_argument("--no-install", action="store_true", help="skip curator when its venv is missing")
    parser.add_argument("--workers", type=int, default=2,
                        help="worker processes of the 'workers' client (--executor processes; default 2)")
    parser.add_argument("--engine", choices=["auto", "lm15", "litellm"],
                        help="the datagen model's DSPy engine (default: unset, datagen's own choice)")
    parser.add_argument("--words", type=int, default=30, help="words per passage (default 30)")
    parser.add_argument("--max-tokens", type=int, default=CHUNK_TOKENS,
                        help=f"chunk budget: over one passage, under two (default {CHUNK_TOKENS})")
    parser.add_argument("--memory-sizes", type=int, nargs=2, default=[10_000, 100_000], metavar=("SMALL", "LARGE"))
    parser.add_argument("--memory-latency", type=float, default=0.005)
    parser.add_argument("--memory-concurrency", type=int, default=64)
    parser.add_argument("--batch-chunks", type=int, default=10_000, help="chunks of the batch line (default 10,000)")
    parser.add_argument("--batch-size", type=int, default=2_000, help="requests per batch job at most (default 2,000)")
    parser.add_argument("--batch-poll", type=float, default=0.05, help="seconds between polls of a batch job")
    parser.add_argument("--batch-concurrency", type=int, default=64,
                        help="chunks in flight in a batch round (no network calls there; default 64)")
    parser.add_argument("--caches-off", action="store_true",
                        help="DSPy's and curator's response caches off in every client (default: as a user runs them)")
    parser.add_argument("--skip-memory", action="store_true", help="no memory line")
    parser.add_argument("--only-memory", action="store_true", help="only the memory line")
    parser.add_argument("--skip-batch", action="store_true", help="no batch line")
    parser.add_argument("--only-batch", action="store_true", help="only the batch line")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds one client run may take")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        return child_main(args.child)
    args.now = args.now.resolve()
    clients = list(args.clients)
    pythons = {client: sys.executable for client in CLIENTS}
    if "before" in clients and not (args.baseline / "datagen" / "__init__.py").exists():
        print(f"skipping datagen (before): no worktree at {args.baseline}", file=sys.stderr)
        clients.remove("before")
    if "curator" in clients:
        python = ensure_curator(args.curator_venv, create=not args.no_install)
        if python is None:
            print(f"skipping curator: no venv at {args.curator_venv}", file=sys.stderr)
            clients.remove("curator")
        else:
            pythons["curator"] = python
    args.clients = clients
    results = {"date": datetime.date.today().isoformat(), "machine": f"{os.cpu_count()} cores, {platform.node()}",
               "now": {"path": str(args.now), "commit": describe_code(args.now)},
               "before": ({"path": str(args.baseline), "commit": describe_code(args.baseline)}
                          if "before" in clients else None),
               "engine": args.engine, "rounds": args.rounds, "words": args.words, "points": [], "memory": None,
               "batch": None}
    print(f"{PIPELINE}, 1 LM call per sample, {args.rounds} rounds of `concurrency` chunks per point, "
          f"{args.words}-word passages, engine: {args.engine or 'datagen default'}")
    print(f"now: {results['now']['commit']} ({args.now})"
          + (f"; before: {results['before']['commit']} ({args.baseline})" if results["before"] else ""))
    print()
    with tempfile.TemporaryDirectory(prefix="datagen-throughput-") as tmp:
        if not (args.only_memory or args.only_batch):
            run_points(args, Path(tmp), pythons, results)
        if not (args.skip_memory or args.only_batch):
            run_memory(args, Path(tmp), pythons, results)
        if not (args.skip_batch or args.only_memory):
            run_batch_line(args, Path(tmp), pythons, results)
    after = describe_code(args.now)
    if after != results["now"]["commit"]:
        results["now"]["commit_after"] = after
        print(f"\nnote: 'now' changed during the run: {results['now']['commit']} at the start, {after} at the end")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
