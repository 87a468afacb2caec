"""The pipeline-level search: an optuna study in SQLite that finds a better program, resumes its trial count,
stops at the call cap without damage, and hands its tuned settings to `generate --compiled`."""

import json
import sqlite3

import optuna
import pytest

from datagen.dataset import read_devset
from datagen.dataset.devset import recut
from datagen.errors import DatagenError
from datagen.runs.generate import generate
from datagen.store import DB_FILE
from datagen.text import DEFAULT_MAX_TOKENS
from datagen.tuning.search import search_pipeline, study_storage
from datagen.workspace import read_manifest
from datagen.workspace.compiled import report_path

from .conftest import run_cli
from .fakes import FakeOpenAIServer
from .test_generate import fake_model
from .test_optimize import CONFIG, DEV, engine  # noqa: F401  (engine: the fixture of a model that learns from demos)


def run_search(workspace, engine, trials, **kwargs):
    return search_pipeline("style_clone", workspace / DEV, trials, workspace=workspace, config=CONFIG,
                           model=fake_model(engine), **kwargs)


def stored_trials(workspace, states=(optuna.trial.TrialState.COMPLETE,)):
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{study_storage(workspace, 'style_clone')}")
    return study.get_trials(states=states)


def test_a_search_finds_a_better_program_and_saves_it_with_its_settings(workspace, engine):
    result = run_search(workspace, engine, 6, seed=1)
    assert [t.number for t in result.trials] == list(range(6)) and result.ran == 6
    assert result.best.score == max(t.score for t in result.trials)
    assert result.best.score > result.before["metrics"]["composite"]["mean"] + 0.2
    assert result.best.params["demos"] > 0  # the model only rephrases well when shown examples
    manifest = read_manifest(result.state)
    assert manifest["search"] == {"study": "search", "storage": "studies/style_clone.db", "trial": result.best.number}
    assert manifest["settings"]["temperature"] == result.best.params["temperature"]
    assert manifest["options"] == {"repair_boundaries": result.best.params["option.repair_boundaries"]}
    assert manifest["scores"]["after"] == result.best.score
    report = report_path(result.state).read_text()
    assert "Baseline mean" in report  # the uncompiled program beside the best trial
    assert sum(result.calls.values()) == engine.calls <= result.estimate


def test_a_resumed_study_continues_its_trial_count(workspace, engine):
    first = run_search(workspace, engine, 2)
    assert first.ran == 2
    second = run_search(workspace, engine, 4)
    assert second.ran == 2 and [t.number for t in second.trials] == [0, 1, 2, 3]
    assert [t.number for t in stored_trials(workspace)] == [0, 1, 2, 3]
    calls = engine.calls
    third = run_search(workspace, engine, 4)  # complete already: nothing to run, nothing spent
    assert third.ran == 0 and third.estimate == 0 and engine.calls == calls
    assert third.state == workspace / "compiled/style_clone/search.json"
    assert third.best.score == max(t.score for t in second.trials)


def test_the_call_cap_stops_a_search_that_then_resumes(workspace, engine):
    stopped = run_search(workspace, engine, 3, max_calls=40)
    assert stopped.stopped and "--max-calls 40" in stopped.stopped
    assert engine.calls == sum(stopped.calls.values()) <= 40
    assert len(stored_trials(workspace)) == stopped.ran < 3
    assert len(stored_trials(workspace, (optuna.trial.TrialState.FAIL,))) == 1  # the trial the cap cut short
    resumed = run_search(workspace, engine, 3)
    assert not resumed.stopped and len(resumed.trials) == 3
    assert [t.number for t in stored_trials(workspace)] == sorted(t.number for t in resumed.trials)


def test_a_study_refuses_another_search_space(workspace, engine):
    run_search(workspace, engine, 1)
    with pytest.raises(DatagenError, match="searched another space"):
        run_search(workspace, engine, 2, optimizers=["bootstrap"])


def test_generate_runs_a_searched_program_at_its_tuned_temperature_and_chunk_budget(workspace, engine, tmp_path):
    state = run_search(workspace, engine, 3, seed=2).state
    manifest = json.loads(state.with_name("search.manifest.json").read_text())
    manifest["settings"].update(temperature=0.7, chunk_tokens=256)  # as if the search had chosen these
    state.with_name("search.manifest.json").write_text(json.dumps(manifest))
    temperatures, answer = [], engine.complete

    def recording(request):
        temperatures.append(request.config.temperature)
        return answer(request)

    engine.complete = recording
    generate("style_clone", [workspace / "data/samples"], tmp_path / "out", workspace=workspace, config=CONFIG,
             model=fake_model(engine), compiled=state)
    assert temperatures and set(temperatures) == {0.7}
    with sqlite3.connect(tmp_path / "out" / DB_FILE) as db:
        assert db.execute("SELECT max(tokens) FROM chunks").fetchone()[0] <= 256 < DEFAULT_MAX_TOKENS


def test_recut_keeps_each_item_in_its_split_without_overlap(workspace):
    items = read_devset(workspace / DEV)
    for budget in (64, 256, 1024):
        cut = recut(items, budget, workspace)
        val = [i.chunk for i in cut if i.split == "val"]
        train = [i.chunk for i in cut if i.split == "train"]
        assert val and all(c.tokens <= budget for c in val + train)
        assert not any(t.start < v.end and v.start < t.end for t in train for v in val)
    (workspace / "data/samples/lighthouse_keeper.md").write_text("rewritten\n\nentirely\n")
    with pytest.raises(DatagenError, match="changed since the dev set was drawn"):
        recut(items, 256, workspace)


def test_optimize_trials_on_the_command_line(workspace):
    with FakeOpenAIServer() as server:
        args = ["optimize", "style_clone", "--dev", DEV, "--yes", "--model", "openai/fake", "--api-base",
                server.url, "--trials"]
        (workspace / "datagen.toml").write_text('[metrics.style_clone]\nweights = { generic_offline = 1 }\n')
        first = run_cli(*args, "2", cwd=workspace)
        assert first.returncode == 0, first.stderr
        assert "2 trials (2 this run)" in first.stdout and "compiled/style_clone/search.json" in first.stdout
        second = run_cli(*args, "3", cwd=workspace)
    assert second.returncode == 0, second.stderr
    assert "3 trials (1 this run)" in second.stdout and "held-out scores" in second.stdout
    assert "studies/style_clone.db" in second.stderr
