"""Copying never wins: with offline metrics alone, optimize ends with the task model that rephrases, not with the
one that hands the passage back unchanged (the pairs are data/style_clone/pairs.jsonl, written for the project)."""

import json

import pytest

from datagen.workspace.compiled import read_manifest
from datagen.workspace.config import Config, MetricSettings
from datagen.tuning import optimize_pipeline
from datagen.tuning.search import search_pipeline
from metrics.style_clone import THRESHOLD, WEIGHTS

from .conftest import ROOT
from .fakes import FakeEngine
from .test_generate import fake_model

PAIRS = [json.loads(line) for line in (ROOT / "data/style_clone/pairs.jsonl").read_text().splitlines()]
PLAIN = {pair["styled"]: pair["plain"] for pair in PAIRS}
# The composite of the offline metrics as style_clone weighs them: no judge model, every LM call is the task's.
OFFLINE = {name: WEIGHTS[name] for name in ("generic_offline", "embedding", "coverage", "novelty") if name in WEIGHTS}
CONFIG = Config(metrics={"style_clone": MetricSettings(weights=OFFLINE, threshold=THRESHOLD)})


class StandIns(FakeEngine):
    """Two stand-in task models behind one engine: the copier answers with the passage itself, the rephraser
    with a person's plain version of it. `copies(passage, temperature)` says which one answers."""

    def __init__(self, copies):
        super().__init__()
        self.copies = copies
        self.temperature = None

    def complete(self, request):
        self.temperature = request.config.temperature
        return super().complete(request)

    def rephrase(self, passage: str) -> str:
        return passage if self.copies(passage, self.temperature) else PLAIN[passage]


@pytest.fixture
def dev(workspace):
    """The pairs' styled passages as a dev set: six to learn from, two held out."""
    path = workspace / "data/style_clone/pairs-dev.jsonl"
    path.write_text("".join(json.dumps({"chunk": pair["styled"], "split": "val" if i % 4 == 3 else "train"}) + "\n"
                            for i, pair in enumerate(PAIRS)))
    return path


def engine_for(copies) -> StandIns:
    engine = StandIns(copies)
    engine.respond = engine.rephrase
    return engine


def test_bootstrap_keeps_the_rephrasers_demos_and_never_a_copy(workspace, dev):
    # The copier answers for half the passages (one of the two held out among them), the rephraser for the rest.
    copied = {list(PLAIN)[i] for i in (0, 2, 3, 4)}
    engine = engine_for(lambda passage, _: passage in copied)
    result = optimize_pipeline("style_clone", dev, "bootstrap", workspace=workspace, config=CONFIG,
                               model=fake_model(engine))
    demos = json.loads(result.state.read_text())["rephrase"]["demos"]
    assert demos and all(demo["generic"] == PLAIN[demo["passage"]] for demo in demos)
    assert not any(demo["passage"] in copied for demo in demos)
    held_out = {s["output"]: s["composite"] for s in result.before["samples"]}
    # The copier's held-out passage makes no sample (style_clone drops a copy before any metric sees it); the
    # rephraser's passes.
    assert [(text in copied, score >= THRESHOLD) for text, score in held_out.items()] == [(False, True)]
    assert [failure["kind"] for failure in result.before["failures"]] == ["dropped"]


def test_a_search_ends_with_the_rephraser(workspace, dev):
    # The knob the search tunes picks the stand-in: at the two low temperatures the copier answers.
    engine = engine_for(lambda _, temperature: (temperature or 0.0) < 0.5)
    result = search_pipeline("style_clone", dev, 6, optimizers=["bootstrap"], workspace=workspace, config=CONFIG,
                             model=fake_model(engine))
    temperatures = {trial.params["temperature"] for trial in result.trials}
    assert temperatures & {0.0, 0.3} and temperatures & {0.7, 1.0}  # both stand-ins were tried
    assert result.best.params["temperature"] >= 0.7
    assert read_manifest(result.state)["settings"]["temperature"] >= 0.7
    copier = max(t.score for t in result.trials if t.params["temperature"] < 0.5)
    assert result.best.score > copier
