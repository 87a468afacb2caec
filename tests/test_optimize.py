"""Optimizing against a dev set: a held-out gain, the call cap, compiled artifacts and their safety checks."""

import json

import pytest

from datagen.compiled import list_compiled, load_compiled, read_manifest
from datagen.config import Config, MetricSettings
from datagen.errors import DatagenError
from datagen.generate import RunSettings, generate
from datagen.optimize import estimate_calls, optimize

from .conftest import run_cli
from .fakes import FakeEngine
from .test_generate import fake_model

DEV = "data/style_clone/dev.jsonl"
# The offline genericness score alone: no judge model, so every LM call is the task model's.
CONFIG = Config(metrics={"style_clone": MetricSettings(weights={"generic_offline": 1}, threshold=0.5)})


class LearnsFromDemos(FakeEngine):
    """A task model that rephrases well (plain expository prose) when its prompt shows worked examples, and
    otherwise only for about half of the passages, copying the rest: what a bootstrapped demo should fix."""

    def __init__(self, plain_prose: list[str]):
        super().__init__()
        self.plain_prose = plain_prose
        self.with_demos = False

    def complete(self, request):
        self.with_demos = sum(m.role == "user" for m in request.messages) > 1
        return super().complete(request)

    def rephrase(self, passage: str) -> str:
        if self.with_demos or len(passage) % 2 == 0:
            return self.plain_prose[len(passage) % len(self.plain_prose)]
        return passage


@pytest.fixture
def engine(workspace):
    text = (workspace / "data/reference/neutral.md").read_text()
    engine = LearnsFromDemos([p for p in text.split("\n\n") if len(p.split()) > 30])
    engine.respond = engine.rephrase
    return engine


def run_optimize(workspace, engine, optimizer="bootstrap", config=CONFIG, **kwargs):
    return optimize("style_clone", workspace / DEV, optimizer, workspace=workspace, config=config,
                    model=fake_model(engine), **kwargs)


def test_bootstrap_raises_the_held_out_score_and_saves_a_compiled_program(workspace, engine):
    estimates = []
    result = run_optimize(workspace, engine, on_estimate=estimates.append)
    before, after = (r["metrics"]["composite"]["mean"] for r in (result.before, result.after))
    assert after > before + 0.2
    assert result.before["metrics"]["composite"]["n"] == 4  # the val split only
    assert result.state == workspace / "compiled/style_clone/bootstrap.json"
    manifest = read_manifest(result.state)
    assert manifest["scores"] == {"before": before, "after": after}
    assert manifest["dev"]["train"] == 12 and manifest["dev"]["val"] == 4 and len(manifest["dev"]["sha256"]) == 64
    assert manifest["models"] == {"task": "fake/model", "judge": None, "prompt": None}
    assert result.calls["task"] == engine.calls <= estimates[0]
    saved = json.loads(result.state.read_text())
    assert saved["rephrase"]["demos"]  # what made the difference
    # The held-out samples before and after, beside the state, are what datagen view compares one by one.
    from datagen.view.data import compare, open_sources

    uncompiled, compiled = open_sources([result.state])
    assert (uncompiled.name, compiled.name) == ("bootstrap (uncompiled)", "bootstrap (compiled)")
    rows, total = compare(uncompiled, compiled, "composite")
    assert total == 4
    gains = [row["change"] for row in rows]
    assert sum(gains) / 4 == pytest.approx(after - before) and gains == sorted(gains)


def test_a_compiled_program_round_trips_and_reproduces_its_outputs(workspace, engine):
    result = run_optimize(workspace, engine)
    program = load_compiled("style_clone", result.state, workspace)
    from datagen.devset import read_devset

    val = [item.chunk.text for item in read_devset(workspace / DEV, "val")]
    after = [s["input"] for s in result.after["samples"]]
    with fake_model(engine).context():
        assert [program(chunk=text).samples[0].input for text in val] == after


def test_max_calls_is_a_hard_cap(workspace, engine):
    result = run_optimize(workspace, engine, max_calls=6)
    assert result.stopped and "--max-calls 6" in result.stopped
    assert engine.calls == result.calls["task"] == 6
    assert result.state is None and not list_compiled(workspace)


def test_generate_refuses_a_compiled_program_whose_fields_changed(workspace, engine, tmp_path):
    state = run_optimize(workspace, engine).state
    report = generate("style_clone", [workspace / "data/samples"], tmp_path / "ok", workspace=workspace,
                      config=Config(), model=fake_model(engine), compiled=state, settings=RunSettings(max_tokens=300))
    assert report.exported > 0
    signature = workspace / "signatures/style.py"
    text = signature.read_text()
    generic = '    generic: str = dspy.OutputField(desc="the same content in plain, generic modern prose")\n'
    notes = '    notes: str = dspy.OutputField(desc="anything left out")\n'
    assert generic in text
    signature.write_text(text.replace(generic, notes + generic))  # DSPy would misassign descriptions by position
    with pytest.raises(DatagenError, match="fields of 'rephrase' changed since it was compiled"):
        generate("style_clone", [workspace / "data/samples"], tmp_path / "bad", workspace=workspace, config=Config(),
                 model=fake_model(engine), compiled=state, settings=RunSettings(max_tokens=300))


def test_estimates_grow_with_the_dev_set_and_the_preset():
    small, large = estimate_calls("bootstrap", 10, 4, 2), estimate_calls("bootstrap", 40, 10, 2)
    assert 0 < small < large
    assert estimate_calls("bootstrap", 10, 4, 2) < estimate_calls("mipro", 10, 4, 2)


def test_compiled_list_and_show(workspace, engine):
    run_optimize(workspace, engine)
    listed = run_cli("compiled", "list", cwd=workspace)
    assert listed.returncode == 0, listed.stderr
    assert "compiled/style_clone/bootstrap.json" in listed.stdout and "bootstrap" in listed.stdout
    shown = run_cli("compiled", "show", "compiled/style_clone/bootstrap.json", cwd=workspace)
    assert shown.returncode == 0, shown.stderr
    assert "== rephrase ==" in shown.stdout and "-- demo 1 --" in shown.stdout
    assert "Rewrite the passage in plain" in shown.stdout


@pytest.mark.parametrize("args, message", [
    (["--optimizer", "nope"], "unknown optimizer 'nope'"),
    (["--max-calls", "0"], "--max-calls"),
])
def test_bad_optimize_input_gets_a_one_line_error(workspace, args, message):
    result = run_cli("optimize", "style_clone", "--dev", DEV, "--yes", *args, cwd=workspace)
    assert result.returncode != 0 and message in result.stderr


def test_a_dev_set_without_both_splits_is_refused(workspace):
    (workspace / "dev.jsonl").write_text('{"chunk": "one"}\n{"chunk": "two"}\n')
    result = run_cli("optimize", "style_clone", "--dev", "dev.jsonl", "--yes", cwd=workspace)
    assert result.returncode == 1 and "needs items in both splits" in result.stderr


@pytest.mark.parametrize("optimizer", ["bootstrap-rs", "mipro", "gepa", "copro", "simba"])
def test_every_preset_runs_end_to_end_within_its_estimate(workspace, engine, optimizer):
    proposer = FakeEngine()
    # A little chrF spreads the scores: generic_offline alone scores this engine's copies 0 and its rephrases 1,
    # and SIMBA writes a rule only from a trajectory above the batch's 10th percentile and one below its 90th.
    spread = Config(metrics={"style_clone": MetricSettings(weights={"generic_offline": 1, "chrf": 0.1},
                                                           threshold=0.5)})
    result = run_optimize(workspace, engine, optimizer=optimizer, prompt=fake_model(proposer), config=spread)
    assert result.state == workspace / f"compiled/style_clone/{optimizer}.json" and not result.stopped
    assert sum(result.calls.values()) == engine.calls + proposer.calls <= result.estimate
    if optimizer != "bootstrap-rs":
        assert proposer.calls > 0  # the prompt role wrote instructions (or rules)
    assert read_manifest(result.state)["models"]["prompt"] == ("fake/model" if optimizer != "bootstrap-rs" else None)


def test_the_cap_holds_for_an_optimizer_asking_several_completions_at_once(workspace, engine):
    proposer = FakeEngine()
    result = run_optimize(workspace, engine, optimizer="copro", prompt=fake_model(proposer), max_calls=30)
    assert result.stopped and engine.calls + proposer.calls == sum(result.calls.values()) <= 30


def test_evaluate_refuses_options_for_a_compiled_program(workspace, engine):
    state = run_optimize(workspace, engine).state
    from datagen.evaluate import evaluate

    with pytest.raises(DatagenError, match="--option does not apply with --program"):
        evaluate("style_clone", workspace / DEV, workspace=workspace, config=CONFIG, program_path=state,
                 options={"repair_boundaries": True}, model=fake_model(engine))
