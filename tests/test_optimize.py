"""Optimizing against a dev set: a held-out gain, the call cap, compiled artifacts and their safety checks."""

import json
import re

import dspy
import pytest

from datagen.errors import DatagenError
from datagen.lm import RoleModel
from datagen.runs import RunSettings
from datagen.runs.generate import generate
from datagen.samples import Sample
from datagen.tuning import (DemoCheck, Session, estimate_calls, evaluate_pipeline, failed_text, optimize_pipeline,
                            write_evaluation)
from datagen.workspace import Config, MetricSettings, list_compiled, load_compiled, read_manifest

from .conftest import run_cli
from .fakes import MALFORMED, TRUNCATED, FakeEngine, FakeOpenAIServer
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
    return optimize_pipeline("style_clone", workspace / DEV, optimizer, workspace=workspace, config=config,
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
    # The items that made a sample both times (a copy the pipeline dropped made none: it counts 0 in the mean).
    assert total == result.before["metrics"]["composite"]["samples"] >= 1
    gains = [row["change"] for row in rows]
    assert gains == sorted(gains)


def test_a_compiled_program_round_trips_and_reproduces_its_outputs(workspace, engine):
    result = run_optimize(workspace, engine)
    program = load_compiled("style_clone", result.state, workspace)
    from datagen.dataset import read_devset

    val = [item.chunk.text for item in read_devset(workspace / DEV, "val")]
    after = [s["input"] for s in result.after["samples"]]
    with fake_model(engine).context():
        assert [program(chunk=text).samples[0].input for text in val] == after
    # `optimize --name NAME` names it: the name finds it as the path does (generate --compiled, evaluate --program)
    assert load_compiled("style_clone", "bootstrap", workspace).dump_state() == program.dump_state()
    with pytest.raises(DatagenError, match="nope: no such compiled program"):
        load_compiled("style_clone", "nope", workspace)


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
    with pytest.raises(DatagenError, match="--option does not apply with --program"):
        evaluate_pipeline("style_clone", workspace / DEV, workspace=workspace, config=CONFIG, program_path=state,
                          options={"repair_boundaries": True}, model=fake_model(engine))


# --- every item counted, a judge's failure its own, demos a person would keep (issue 22) ---------------------------

def val_chunks(workspace) -> list[str]:
    from datagen.dataset import read_devset

    return [item.chunk.text for item in read_devset(workspace / DEV, "val")]


def http_model(server: FakeOpenAIServer, role: str = "task") -> RoleModel:
    return RoleModel(role, dspy.LM(f"openai/{role}-model", api_base=server.url, api_key="no-key", cache=False,
                                   num_retries=0), dspy.ChatAdapter(), None)


def test_a_failed_item_counts_0_in_every_mean_with_n_and_its_kind_shown(workspace, tmp_path):
    bad = val_chunks(workspace)[:2]
    with FakeOpenAIServer(faults=lambda source, attempt: MALFORMED if source in bad else None) as server:
        result = evaluate_pipeline("style_clone", workspace / DEV, workspace=workspace, config=CONFIG, split="val",
                                   model=http_model(server), metrics=["composite"])
    composite = result["metrics"]["composite"]
    values = [sample["composite"] for sample in result["samples"]]
    assert len(values) == 2 and composite["n"] == 4 and composite["samples"] == 2
    assert composite["failed"] == 2 and composite["failures"] == {"parse": 2}
    assert composite["mean"] == pytest.approx(sum(values) / 4)  # as dspy.Evaluate: a failure is a 0
    assert composite["min"] == 0.0
    assert result["metrics"]["generic_offline"]["failures"] == {"parse": 2}
    assert sorted(f["kind"] for f in result["failures"]) == ["parse", "parse"]
    _, report = write_evaluation(result, tmp_path / "eval")
    page = report.read_text()
    assert "<th>Failed</th>" in page and "<td>2 (parse 2)</td>" in page


def test_a_dev_set_is_scored_whole_even_when_every_item_fails(workspace):
    # A corpus run stops when its first 5 chunks all fail; a dev set is scored whole (an uncompiled baseline that
    # fails everywhere is what a compiled program is measured against).
    with FakeOpenAIServer(faults=lambda source, attempt: MALFORMED) as server:
        result = evaluate_pipeline("style_clone", workspace / DEV, workspace=workspace, config=CONFIG,
                                   model=http_model(server), metrics=["composite"])
    composite = result["metrics"]["composite"]
    assert composite["n"] == composite["failed"] == 16 and composite["failures"] == {"parse": 16}
    assert composite["mean"] == 0.0 and not result["samples"]


def judge_faults(truncated: str, malformed: str):
    """The judge's answers: cut off at max_tokens for `truncated`'s samples, unparseable for `malformed`'s."""
    def fault(source, attempt):
        return TRUNCATED if source == truncated else MALFORMED if source == malformed else None
    return fault


def test_a_failing_judge_costs_only_its_own_score_with_its_kind(workspace):
    weights = Config(metrics={"style_clone": MetricSettings(weights={"content": 1, "generic_offline": 1},
                                                            threshold=0.5)})
    cut, unreadable, *_ = val_chunks(workspace)  # the content judge is shown the sample's output: its chunk
    with (FakeOpenAIServer() as task,
          FakeOpenAIServer(by_field={"rating": lambda _: "5", "reasoning": lambda _: "all there"},
                           faults=judge_faults(cut, unreadable)) as judge):
        result = evaluate_pipeline("style_clone", workspace / DEV, workspace=workspace, config=weights, split="val",
                                   model=http_model(task), judge=http_model(judge, "judge"), metrics=["composite"])
    assert not result["failures"]  # every item made its sample: a judge's truncation is not the chunk's
    metrics = result["metrics"]
    assert metrics["content"]["failures"] == {"judge_content_truncated": 1, "judge_content_parse": 1}
    assert metrics["content"]["n"] == 4 and metrics["content"]["mean"] == pytest.approx(2 / 4)
    assert metrics["generic_offline"]["n"] == metrics["generic_offline"]["samples"] == 4
    assert metrics["generic_offline"]["failed"] == 0
    # No item failed, yet the composite counted content 0 on two: its summary, and the evaluate table's and the
    # report's "failed" cell, say so.
    assert metrics["composite"]["failed"] == 0 and metrics["composite"]["parts_failed"] == {"content": 2}
    assert failed_text(metrics["composite"]) == "0; parts failed, counted 0: content 2"
    by_chunk = {sample["chunk"]: sample for sample in result["samples"]}
    failed = by_chunk[cut]["scores"]["content"]
    assert failed["value"] == 0.0 and failed["failure"] == "judge_content_truncated"
    generic = by_chunk[cut]["scores"]["generic_offline"]["value"]
    # The composite counts the failed part as 0: a lower bound of what the judge would have given.
    assert by_chunk[cut]["composite"] == pytest.approx(generic / 2)
    assert "content failed, counted as 0" in by_chunk[cut]["scores"]["composite"]["feedback"]


def test_the_held_out_line_names_the_composite_parts_whose_judge_calls_failed(workspace):
    # Every judge answer unparseable: each judged part counts 0 in the composite without failing an item, so the
    # composite alone would read "0 failed"; the line, the manifest and eval.json say which parts failed.
    with (FakeOpenAIServer() as task, FakeOpenAIServer(faults=lambda source, attempt: MALFORMED) as judge):
        (workspace / "datagen.toml").write_text(
            f'[models.task]\nmodel = "openai/task-model"\napi_base = "{task.url}"\n\n'
            f'[models.judge]\nmodel = "openai/judge-model"\napi_base = "{judge.url}"\n\n'
            '[metrics.style_clone]\nweights = { content = 1, genericness = 1, generic_offline = 1 }\n'
            'threshold = 0.5\n')
        result = run_cli("optimize", "style_clone", "--dev", DEV, "--yes", "--name", "judged", cwd=workspace,
                         timeout=600)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    line = next(line for line in result.stderr.splitlines() if line.startswith("held out:"))
    state = workspace / "compiled/style_clone/judged.json"
    manifest = read_manifest(state)
    # Each of the 4 val items that made a sample (the pipeline may drop the fake's rephrase of some: "dropped")
    # had both judged parts fail.
    shown = r"\(n 4, (\d) failed[^;)]*; parts failed, counted 0: content (\d), genericness (\d)\)"
    for text in (*line.split(" -> "), *manifest["held_out"].values()):
        found = re.search(shown, text)
        assert found, (text, line)
        assert int(found[2]) == int(found[3]) == 4 - int(found[1]) > 0, text
    saved = json.loads(state.with_name("judged.eval.json").read_text())["metrics"]
    made = 4 - saved["composite"]["failed"]  # no item failed for the parts' sake: they count 0 in it
    assert saved["composite"]["parts_failed"] == {"content": made, "genericness": made}
    assert saved["content"]["failures"].get("judge_content_parse") == made


def test_a_split_is_scored_with_style_metrics_fitted_on_the_whole_dev_set(workspace):
    engine = FakeEngine()
    whole = evaluate_pipeline("style_clone", workspace / DEV, workspace=workspace, config=CONFIG,
                              model=fake_model(engine), metrics=["composite"])
    val = evaluate_pipeline("style_clone", workspace / DEV, workspace=workspace, config=CONFIG, split="val",
                            model=fake_model(engine), metrics=["composite"])
    by_chunk = {sample["chunk"]: sample["composite"] for sample in whole["samples"]}
    assert len(val["samples"]) == 4
    assert [sample["composite"] for sample in val["samples"]] == [by_chunk[s["chunk"]] for s in val["samples"]]


def test_bootstrap_keeps_only_demos_that_pass_the_mark_alone_and_counts_the_rest(workspace, engine):
    result = run_optimize(workspace, engine)
    # This engine copies about half the passages: the pipeline drops a copy (datagen/text/degenerate.py), and the
    # candidate with it; a copy it let through would score below the pass mark.
    rejected = result.demos["rejected"]
    assert sum(rejected.values()) >= 1 and set(rejected) <= {"dropped: copy", "below the pass mark"}, rejected
    assert result.demos["kept"] == {"rephrase": 3}
    manifest = read_manifest(result.state)
    assert manifest["demos"] == result.demos and manifest["metrics"] == {"generic_offline": 1.0}
    scorer = Session("style_clone", workspace / DEV, ["bootstrap"], workspace=workspace, config=CONFIG,
                     model=fake_model(engine)).scorer  # fitted on the dev set, as optimize's
    for demo in json.loads(result.state.read_text())["rephrase"]["demos"]:
        assert scorer.score(demo["passage"], Sample(demo["generic"], demo["passage"]))["composite"].value >= 0.5


def test_a_demo_must_pass_on_each_sample_not_on_the_mean(workspace, engine):
    low_mark = Config(metrics={"style_clone": MetricSettings(weights={"generic_offline": 1}, threshold=0.4)})
    session = Session("style_clone", workspace / DEV, ["bootstrap"], workspace=workspace, config=low_mark,
                      model=fake_model(engine))
    chunk = session.train[0].chunk.text
    good, copy = Sample(engine.plain_prose[0], chunk), Sample(chunk, chunk)
    composite = session.scorer.composite
    check = DemoCheck(composite)
    example = dspy.Example(chunk=chunk).with_inputs("chunk")
    values = [session.scorer.score(chunk, s)["composite"].value for s in (good, copy)]
    assert values[0] >= 0.4 > values[1] and sum(values) / 2 >= 0.4
    both = dspy.Prediction(samples=[good, copy])
    assert composite(example, both, trace=[]) is True  # the mean passes: the copy would have come along
    assert check(example, dspy.Prediction(samples=[good]), trace=[]) is True
    assert check(example, both, trace=[]) is False
    assert check(example, dspy.Prediction(samples=[good], dropped=[{"reason": "placeholder"}]), trace=[]) is False
    assert check(example, dspy.Prediction(samples=[]), trace=[]) is False
    assert check.rejected == {"below the pass mark": 1, "dropped: placeholder": 1, "no samples": 1}
    assert check.accepted == 1
    assert check(example, dspy.Prediction(samples=[good])) == pytest.approx(values[0])  # scoring: the metric


def test_optimize_metric_chooses_the_composites_parts(workspace, engine):
    weighted = Config(metrics={"style_clone": MetricSettings(weights={"content": 2, "generic_offline": 1,
                                                                      "chrf": 0.5}, threshold=0.5)})
    result = run_optimize(workspace, engine, config=weighted, metrics=["generic_offline", "chrf"])
    assert read_manifest(result.state)["metrics"] == {"generic_offline": 1.0, "chrf": 0.5}
    assert result.after["metrics"]["composite"]["n"] == 4 and "content" not in result.after["metrics"]
    assert engine.calls == result.calls["task"]  # no judge was asked: every request was the task model's
    with pytest.raises(DatagenError, match="has no metric 'nope' .*metrics: .*generic_offline"):
        run_optimize(workspace, engine, metrics=["nope"])
    with pytest.raises(DatagenError, match="metric 'chrf' does not count in style_clone's composite"):
        run_optimize(workspace, engine, metrics=["chrf"])
    # "composite" names the configured composite, as evaluate --metric composite takes it.
    configured = run_optimize(workspace, engine, config=weighted, metrics=["composite"])
    assert read_manifest(configured.state)["metrics"] == {"content": 2.0, "generic_offline": 1.0, "chrf": 0.5}


def test_in_a_corpus_run_a_sample_its_judge_failed_on_is_held_back_by_a_gate_on_that_judge(workspace, tmp_path):
    from datagen.text import chunk_documents, iter_documents
    from datagen.workspace import ModelSettings

    chunks = [c.text for c in chunk_documents(iter_documents([workspace / "data/samples"]), 300)]
    with (FakeOpenAIServer() as task,
          FakeOpenAIServer(by_field={"rating": lambda _: "5", "reasoning": lambda _: "all there"},
                           faults=judge_faults(chunks[0], chunks[1])) as judge):
        config = Config(models={"judge": ModelSettings(model="openai/judge-model", api_base=judge.url)})
        report = generate("style_clone", [workspace / "data/samples"], tmp_path / "run", workspace=workspace,
                          config=config, model=http_model(task), min_scores={"content": 0.5},
                          settings=RunSettings(max_tokens=300))
    assert not report.failures and report.samples == len(chunks)  # the chunks are done: their samples kept
    assert report.held_back == 2 and report.exported == len(chunks) - 2  # but not past a gate they were not scored on
    import sqlite3

    with sqlite3.connect(tmp_path / "run" / "run.db") as db:
        scored = db.execute("SELECT count(*) FROM scores WHERE metric = 'content'").fetchone()[0]
    assert scored == len(chunks) - 2  # a failed score is no score


@pytest.mark.parametrize("engine", ["auto", "litellm"])
def test_an_answer_cut_off_is_truncated_when_read_from_dspys_cache_too(workspace, engine):
    cut = val_chunks(workspace)[0]
    dspy.configure_cache(enable_memory_cache=True, enable_disk_cache=False)  # off again by the next test's fixture
    with FakeOpenAIServer(faults=lambda source, attempt: TRUNCATED if source == cut else None) as server:
        model = RoleModel("task", dspy.LM("openai/cached-model", api_base=server.url, api_key="no-key", cache=True,
                                          num_retries=0, engine=engine, max_tokens=300), dspy.ChatAdapter(), None)
        runs = [evaluate_pipeline("style_clone", workspace / DEV, workspace=workspace, config=CONFIG, split="val",
                                  model=model, metrics=["composite"]) for _ in range(2)]
        sent = len(server.requests)
    dspy.configure_cache(enable_memory_cache=False, enable_disk_cache=False)
    assert sent == 4  # the first run's 4 val items: the second run was answered from the cache
    for result in runs:
        assert result["metrics"]["composite"]["failures"] == {"truncated": 1}, result["metrics"]


def test_bootstrap_runs_through_more_failed_candidates_than_dspys_max_errors(workspace):
    # A tiny real model (SmolLM2-135M) answered none of 12 train items in a parseable form; DSPy's bootstrap
    # re-raises at its 10th error (dspy.settings.max_errors), which ended optimize with a traceback.
    with FakeOpenAIServer(faults=lambda source, attempt: MALFORMED) as server:
        result = optimize_pipeline("style_clone", workspace / DEV, "bootstrap", workspace=workspace, config=CONFIG,
                                   model=http_model(server))
    assert result.state is not None and result.stopped is None
    assert result.demos["kept"] == {} and result.demos["rejected"] == {"program failed": 12}
    assert result.after["metrics"]["composite"]["failures"] == {"parse": 4}
