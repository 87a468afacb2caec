"""The diversity bar: how little diversity a pipeline's samples may show, declared in its metrics module and
overridden in datagen.toml, reported (never enforced) by `datagen evaluate` and `datagen optimize` from the
predictions they already made."""

import html
import json
import re

import pytest

import datagen
from datagen.dataset.quality import DiversityBar, diversity_of
from datagen.errors import ConfigError, DatagenError
from datagen.metrics import diversity_bar
from datagen.workspace import Config, load_config, read_manifest

from .conftest import ROOT, run_cli
from .fakes import FakeEngine, FakeOpenAIServer, chat_format, plain
from .test_generate import fake_model

DEV = "data/style_clone/dev.jsonl"
FORMULA = "Here is a plain version: "
# Plain expository paragraphs, each opening its own way.
PROSE = [p for p in (ROOT / "data/reference/neutral.md").read_text().split("\n\n") if len(p.split()) > 30]


def formula(passage: str) -> str:
    """A rephrase that mostly opens with one formula: a template a program fell into."""
    return (FORMULA if len(passage) % 7 else "") + plain(passage)


def evaluate(workspace, server, *args):
    return run_cli("evaluate", "style_clone", "--dev", DEV, "--metric", "chrf", "--out", "ev", "--model",
                   "openai/fake", "--api-base", server.url, *args, cwd=workspace)


def bar_override(workspace, lines: str) -> None:
    (workspace / "datagen.toml").write_text(f"[metrics.style_clone.diversity_bar]\n{lines}\n")


# --- the bar ---------------------------------------------------------------------------------------------------

def test_a_formula_breaks_the_bar_with_its_share_and_varied_prose_meets_it():
    bar = DiversityBar(opening_share=0.1, fields=("input",))
    varied = bar.check({"input": diversity_of(PROSE)}, "predictions")
    assert varied.met is True and varied.broken == ()
    templated = [FORMULA + text for text in PROSE[:9]] + PROSE[9:]
    verdict = bar.check({"input": diversity_of(templated)}, "predictions")
    share = 9 / len(PROSE)
    assert verdict.met is False
    assert verdict.broken == (f"input: 'here is a' opens {share:.0%} of the {len(PROSE)} predictions (bar 10%)",)
    # The same texts pass a bar above their share, and a field the bar does not name is not held to it.
    assert DiversityBar(opening_share=round(share + 0.01, 2)).check({"input": diversity_of(templated)}).met
    assert DiversityBar(fields=("output",)).check({"input": diversity_of(templated),
                                                   "output": diversity_of(PROSE)}).met


def test_a_shared_opening_needs_three_texts_and_distinct_2_has_its_own_bar():
    bar = DiversityBar(opening_share=0.1)
    two = [FORMULA + PROSE[0], FORMULA + PROSE[1]] + PROSE[2:5]
    assert bar.check({"input": diversity_of(two)}).met  # 2 of 5 (40%): no sign of a template on a dev set's scale
    three = [FORMULA + text for text in PROSE[:3]]
    assert not bar.check({"input": diversity_of(three)}).met  # 3 of 3
    repeated = [PROSE[0]] * 4
    figures = diversity_of(repeated)
    verdict = DiversityBar(opening_share=None, distinct_2=0.5).check({"input": figures})
    assert verdict.broken == (f"input: distinct-2 {figures.distinct_2:.3f} over the 4 texts, under the bar's 0.500",)
    assert DiversityBar(opening_share=None, distinct_2=figures.distinct_2).check({"input": figures}).met
    assert DiversityBar(fields=()).describe() == "none" and DiversityBar(fields=()).check({"input": figures}).met is None
    # Nothing to measure (every item failed): neither met nor broken.
    assert DiversityBar().check({}).met is None
    assert DiversityBar().check({"input": diversity_of([])}).met is None


@pytest.mark.parametrize("settings, named", [
    ({"opening_share": 0}, "opening_share"), ({"opening_share": 1.5}, "opening_share"),
    ({"opening_share": True}, "opening_share"), ({"opening_share": "0.1"}, "opening_share"),
    ({"distinct_2": -0.1}, "distinct_2"), ({"fields": ("question",)}, "fields"), ({"fields": "input"}, "fields"),
])
def test_a_bar_out_of_range_is_refused_naming_the_setting(settings, named):
    with pytest.raises(ConfigError, match=f"DiversityBar {named}: expected"):
        DiversityBar(**settings)


# --- where it is declared --------------------------------------------------------------------------------------

def test_datagen_toml_overrides_the_modules_bar_key_by_key(workspace):
    assert diversity_bar("style_clone", workspace, Config()) == DiversityBar(0.1, None, ("input",))
    assert diversity_bar("factual_qa", workspace, Config()).fields == ("input",)
    bar_override(workspace, "distinct_2 = 0.5\nfields = [\"input\", \"output\"]")
    assert diversity_bar("style_clone", workspace, load_config(workspace, {})) == \
        DiversityBar(0.1, 0.5, ("input", "output"))
    bar_override(workspace, "fields = []")  # no bar: none is checked, none reported
    assert diversity_bar("style_clone", workspace, load_config(workspace, {})) is None


def test_a_module_declaring_something_else_is_named(workspace):
    suite = workspace / "metrics/style_clone.py"
    source = suite.read_text()
    suite.write_text(source.replace('DIVERSITY_BAR = DiversityBar(opening_share=0.1, fields=("input",))',
                                    "DIVERSITY_BAR = 0.1"))
    with pytest.raises(DatagenError, match=r"metrics/style_clone.py: DIVERSITY_BAR must be a datagen.DiversityBar"):
        diversity_bar("style_clone", workspace, Config())
    suite.write_text(source.replace('DIVERSITY_BAR = DiversityBar(opening_share=0.1, fields=("input",))',
                                    "DIVERSITY_BAR = None"))
    assert diversity_bar("style_clone", workspace, Config()) is None  # none declared, none overridden
    bar_override(workspace, "opening_share = 0.3")
    assert diversity_bar("style_clone", workspace, load_config(workspace, {})) == DiversityBar(0.3)


def test_a_caller_metric_on_a_named_pipeline_is_held_to_its_bar_too(workspace):
    def everything(example, prediction, trace=None):
        return 1.0

    result = datagen.evaluate("style_clone", workspace / DEV, everything, workspace=workspace, config=Config(),
                              model=fake_model(FakeEngine(respond=formula)), split="val")
    assert result.diversity_bar["met"] is False and result.diversity_bar["opening_share"] == 0.1
    assert result.diversity["input"]["samples"]["openings"][0]["text"] == "here is a"
    assert set(result.diversity) == {"input", "output"}


# --- datagen evaluate ------------------------------------------------------------------------------------------

def test_evaluate_warns_of_a_formula_with_its_share_and_a_datagen_toml_bar_above_it_is_met(workspace):
    with FakeOpenAIServer(respond=formula) as server:
        broken = evaluate(workspace, server)
        assert broken.returncode == 0, broken.stderr  # reported, not enforced
        data = json.loads((workspace / "ev/eval.json").read_text())
        inputs = [sample["input"] for sample in data["samples"]]
        share = sum(text.startswith(FORMULA) for text in inputs) / len(inputs)
        assert 0.5 < share < 1
        said = f"input: 'here is a' opens {share:.0%} of the {len(inputs)} predictions (bar 10%)"
        assert f"warning: diversity bar broken: {said}\n" in broken.stderr
        assert data["diversity_bar"] == {"opening_share": 0.1, "distinct_2": None, "fields": ["input"],
                                         "met": False, "broken": [said]}
        assert data["diversity"]["input"]["samples"]["openings"][0]["share"] == round(share, 4)
        assert "template collapse" in " ".join(data["diversity"]["input"]["narrowed"])
        assert "diversity of input:" in broken.stdout and "most common opening 'here is a'" in broken.stdout
        page = (workspace / "ev/report.html").read_text()
        assert "<h2>Diversity</h2>" in page and html.escape(said) in page

        above = round(share + 0.01, 2)
        bar_override(workspace, f"opening_share = {above}")
        met = evaluate(workspace, server)
    assert met.returncode == 0, met.stderr
    assert "warning: diversity bar" not in met.stderr
    assert f"diversity bar: met (input: no opening on {above:.0%} or more of the texts, 3 at least)" in met.stdout
    assert json.loads((workspace / "ev/eval.json").read_text())["diversity_bar"]["opening_share"] == above


def test_evaluate_says_varied_rephrases_meet_the_bar_and_a_distinct_2_bar_above_them_breaks(workspace):
    with FakeOpenAIServer() as server:  # plain(): each rephrase opens as its passage does
        met = evaluate(workspace, server)
        assert met.returncode == 0, met.stderr
        assert "diversity bar: met (input: no opening on 10% or more of the texts, 3 at least)" in met.stdout
        assert "warning: diversity bar" not in met.stderr
        bar_override(workspace, "distinct_2 = 1.0")
        broken = evaluate(workspace, server)
    assert broken.returncode == 0, broken.stderr
    figure = json.loads((workspace / "ev/eval.json").read_text())["diversity"]["input"]["samples"]["distinct_2"]
    assert re.search(rf"warning: diversity bar broken: input: distinct-2 {figure:.3f} over the 16 predictions, "
                     r"under the bar's 1\.000\n", broken.stderr), broken.stderr


@pytest.mark.parametrize("line, key", [
    ("opening_share = 1.5", "metrics.style_clone.diversity_bar.opening_share"),
    ('distinct_2 = "high"', "metrics.style_clone.diversity_bar.distinct_2"),
    ('fields = ["question"]', "metrics.style_clone.diversity_bar.fields.0"),
    ("opening = 0.1", "metrics.style_clone.diversity_bar.opening"),
])
def test_a_bad_bar_override_is_a_one_line_error_naming_the_key(workspace, line, key):
    bar_override(workspace, line)
    result = run_cli("evaluate", "style_clone", "--dev", DEV, "--out", "ev", cwd=workspace)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"datagen.toml: {key}: " in result.stderr
    assert not (workspace / "ev").exists()


# --- datagen optimize ------------------------------------------------------------------------------------------

class FormulaOnceShown(FakeOpenAIServer):
    """A task model that rephrases into plain prose of its own, opening each its own way, until its prompt shows
    worked examples (bootstrapped demos): then every rephrase opens with one formula, the template an optimizer
    may climb into."""

    def _script(self, messages, arrived=None):
        source, attempt, scripted = super()._script(messages, arrived)
        if scripted is None:
            prose = PROSE[len(source) % len(PROSE)]
            demos = sum(message["role"] == "user" for message in messages) > 1
            scripted = chat_format({"generic": (FORMULA if demos else "") + prose})
        return source, attempt, scripted


def test_optimize_reports_the_bar_before_and_after_and_names_a_climb_into_a_template(workspace):
    with FormulaOnceShown() as task:
        (workspace / "datagen.toml").write_text(
            f'[models.task]\nmodel = "openai/task-model"\napi_base = "{task.url}"\n\n'
            '[metrics.style_clone]\nweights = { generic_offline = 1 }\nthreshold = 0.5\n')
        result = run_cli("optimize", "style_clone", "--dev", DEV, "--yes", "--name", "climbed", cwd=workspace,
                         timeout=600)
    assert result.returncode == 0, result.stderr
    state = workspace / "compiled/style_clone/climbed.json"
    assert json.loads(state.read_text())["rephrase"]["demos"]  # the demos that brought the formula
    saved = json.loads(state.with_name("climbed.eval.json").read_text())
    before, after = saved["baseline"], saved
    assert before["diversity_bar"]["met"] is True and after["diversity_bar"]["met"] is False
    made = len(after["samples"])
    said = f"input: 'here is a' opens 100% of the {made} predictions (bar 10%)"
    assert after["diversity_bar"]["broken"] == [said]
    assert "diversity bar (before): met (input: no opening on 10% or more of the texts, 3 at least)" in result.stdout
    assert (f"warning: diversity bar (after) broken: {said}: the optimizer climbed into a template the uncompiled "
            "program did not use") in result.stderr
    manifest = read_manifest(state)
    assert manifest["diversity_bar"] == {"before": "met (input: no opening on 10% or more of the texts, 3 at least)",
                                         "after": f"broken: {said}"}
    page = state.with_name("climbed.report.html").read_text()
    assert "Baseline&#x27;s diversity bar" in page and html.escape(said) in page
