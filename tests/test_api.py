"""The objects-first API: a dspy.Module and a metric function of one's own, over real HTTP to the fake server, and
the task model taken from dspy.configure/dspy.context."""

import json

import dspy
import pytest

import datagen
from datagen import DatagenError, Sample
from datagen.lm import task_model
from datagen.workspace import Config, MetricSettings, ModelSettings

from .conftest import SAMPLES, every_record
from .fakes import FakeOpenAIServer, plain


class Shout(dspy.Signature):
    """Repeat the passage."""

    passage: str = dspy.InputField()
    echo: str = dspy.OutputField()


class Echo(dspy.Module):
    """A program of the user's own: one sample per chunk, (echo -> passage)."""

    def __init__(self):
        super().__init__()
        self.say = dspy.Predict(Shout)

    def forward(self, chunk: str) -> dspy.Prediction:
        echo = self.say(passage=chunk).echo
        return dspy.Prediction(echo=echo, samples=[Sample(input=echo, output=chunk)])


def lowercase(example, prediction, trace=None) -> float:
    """A DSPy metric of the user's own: 1 when every sample's input is the chunk's words in lower case."""
    return float(all(s.input == plain(example.chunk) for s in prediction.samples))


def lm(server: FakeOpenAIServer) -> dspy.LM:
    return dspy.LM("openai/fake", api_base=server.url, api_key="no-key", engine="litellm", cache=False)


def chunks(n: int) -> list[str]:
    return [f"Passage number {i}: the Lamp was Lit, and the Sea was calm." for i in range(n)]


def test_generate_runs_a_program_object_on_the_lm_dspy_is_configured_with(tmp_path):
    with FakeOpenAIServer() as server, dspy.context(lm=lm(server)):
        report = datagen.generate(Echo(), [SAMPLES], tmp_path / "run", workspace=tmp_path, config=Config(),
                                  settings=datagen.RunSettings(limit=2))
    assert isinstance(report, datagen.Report)
    assert report.pipeline == "Echo" and report.model == "openai/fake" and report.samples == 2
    assert len(server.requests) == 2
    assert [r["conversations"][1]["from"] for r in every_record(report.data_path)] == ["gpt", "gpt"]


def test_one_input_path_and_a_workspace_may_be_given_as_strings(tmp_path):
    with FakeOpenAIServer() as server, dspy.context(lm=lm(server)):
        report = datagen.generate(Echo(), str(SAMPLES), str(tmp_path / "run"), workspace=str(tmp_path),
                                  config=Config(), settings=datagen.RunSettings(limit=1))
    assert report.samples == 1 and len(server.requests) == 1  # the folder, not its path's characters
    assert datagen.find_workspace(str(tmp_path)) == tmp_path.resolve()
    assert isinstance(datagen.load_config(str(tmp_path)), Config)
    assert type(datagen.load_program("style_clone", str(tmp_path))).__name__ == "StyleClone"


def test_a_program_object_refuses_what_only_a_named_pipeline_has(tmp_path):
    with pytest.raises(DatagenError, match="min_scores applies to a pipeline given by name"):
        datagen.generate(Echo(), [SAMPLES], tmp_path / "run", workspace=tmp_path, config=Config(),
                         min_scores={"chrf": 0.5})
    with pytest.raises(DatagenError, match="expected a dspy.Module or a pipeline name"):
        datagen.generate(42, [SAMPLES], tmp_path / "run", workspace=tmp_path, config=Config())


def test_the_task_model_is_the_given_one_then_dspys_then_the_configs():
    config = Config(models={"task": ModelSettings(model="openai/from-config", api_base="http://127.0.0.1:9/v1")})
    given, configured = dspy.LM("openai/given"), dspy.LM("openai/configured")
    with dspy.context(lm=configured):
        assert task_model(config, given).name == "openai/given"
        assert task_model(config).name == "openai/configured"
    assert task_model(config).name == "openai/from-config"


def test_evaluate_scores_a_program_object_with_a_metric_function(tmp_path):
    with FakeOpenAIServer() as server, dspy.context(lm=lm(server)):
        result = datagen.evaluate(Echo(), chunks(3), lowercase, workspace=tmp_path, config=Config())
    assert isinstance(result, datagen.Evaluation)
    assert result.score == 1.0 and result.metrics["lowercase"]["n"] == 3 and not result.failures
    assert len(result.samples) == 3 and result.models == {"task": "openai/fake"}


def test_evaluate_a_program_object_needs_a_metric(tmp_path):
    with pytest.raises(DatagenError, match="needs a metric"):
        datagen.evaluate(Echo(), chunks(2), workspace=tmp_path, config=Config())


def test_optimize_compiles_a_program_object_against_a_metric_function(tmp_path):
    dev = [dspy.Example(chunk=text, split="val" if i >= 4 else "train") for i, text in enumerate(chunks(6))]
    program = Echo()
    with FakeOpenAIServer() as server, dspy.context(lm=lm(server)):
        result = datagen.optimize(program, dev, lowercase, workspace=tmp_path, config=Config())
    assert isinstance(result, datagen.Optimization) and result.stopped is None
    assert result.before == 1.0 and result.after == 1.0
    assert result.program is not program and result.program.say.demos  # bootstrapped demos that passed
    assert not program.say.demos  # the program given is left as it was
    assert result.calls["task"] == len(server.requests)


def test_optimize_stops_at_max_calls_with_nothing_compiled(tmp_path):
    dev = [dspy.Example(chunk=text, split="val" if i >= 4 else "train") for i, text in enumerate(chunks(6))]
    with FakeOpenAIServer() as server, dspy.context(lm=lm(server)):
        result = datagen.optimize(Echo(), dev, lowercase, max_calls=3, workspace=tmp_path, config=Config())
    assert result.program is None and "--max-calls 3" in result.stopped and len(server.requests) == 3


class Picky(Echo):
    """Echo, with a drop check of its own: a passage with an odd number drops its candidate as a placeholder."""

    def forward(self, chunk: str) -> dspy.Prediction:
        made = super().forward(chunk)
        if int(chunk.split()[2].rstrip(":")) % 2:
            return dspy.Prediction(echo=made.echo, samples=[], dropped=[{"reason": "placeholder"}])
        return made


def test_a_dropped_item_counts_0_and_no_demo_comes_from_it(tmp_path):
    with FakeOpenAIServer() as server, dspy.context(lm=lm(server)):
        result = datagen.evaluate(Picky(), chunks(4), lowercase, workspace=tmp_path, config=Config())
        evaluated = len(server.requests)
        dev = [dspy.Example(chunk=text, split="val" if i >= 6 else "train") for i, text in enumerate(chunks(8))]
        optimized = datagen.optimize(Picky(), dev, lowercase, workspace=tmp_path, config=Config())
    summary = result.metrics["lowercase"]
    assert summary["n"] == 4 and summary["failed"] == 2 and summary["failures"] == {"dropped": 2}
    assert result.score == 0.5  # two items made a sample scored 1, two made none: 0, as dspy.Evaluate counts
    assert [f["message"] for f in result.failures] == ["the pipeline dropped every candidate (placeholder 1)"] * 2
    assert optimized.demos["rejected"] == {"dropped: placeholder": 2}  # items 1 and 3: 3 demos kept by item 4
    demos = optimized.program.say.demos
    assert demos and optimized.demos["kept"] == {"say": len(demos)}
    assert all(int(demo.passage.split()[2].rstrip(":")) % 2 == 0 for demo in demos)
    assert optimized.before == optimized.after == 0.5  # val items 6 and 7: one dropped
    assert optimized.calls["task"] == len(server.requests) - evaluated


def test_optimize_a_pipeline_by_name_takes_the_metrics_of_its_composite(workspace):
    config = Config(metrics={"style_clone": MetricSettings(weights={"content": 1, "generic_offline": 1})})
    with FakeOpenAIServer() as server:
        model = dspy.LM("openai/fake", api_base=server.url, api_key="no-key", cache=False)
        result = datagen.optimize("style_clone", workspace / "data/style_clone/dev.jsonl", model=model,
                                  workspace=workspace, config=config, metrics=["generic_offline"])
        with pytest.raises(DatagenError, match="give `metric` or `metrics`"):
            datagen.optimize(Echo(), [], lowercase, metrics=["chrf"], workspace=workspace, config=config)
    assert result.state is not None and json.loads(result.state.with_name("bootstrap.manifest.json").read_text())[
        "metrics"] == {"generic_offline": 1.0}
    assert not any("`rating`" in json.dumps(body) for body in server.requests)  # the content judge never asked
    assert sum(result.calls.values()) == len(server.requests) and not result.cached
