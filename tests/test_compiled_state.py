"""A compiled program's state as it comes from elsewhere (issue 27, item 6): saved by another DSPy version (a
warning naming both, over the real command), or holding a demo DSPy would drop from the prompt or show with a
field "not supplied" (refused, naming the file, the predictor, the demo and the field)."""

import json
import logging

import dspy
import pytest

from datagen.errors import DatagenError
from datagen.workspace import load_compiled, load_program, read_manifest, save_compiled

from .conftest import run_cli
from .fakes import FakeOpenAIServer
from .test_cli import assert_one_line_error

OTHER = "3.3.0"  # a DSPy version that is not the one installed
GOOD = {"passage": "A passage in the author's words.", "generic": "The passage in plain words.", "augmented": True}


def compiled(ws, name="x", pipeline="style_clone", options=None, state=None, manifest=None):
    """A compiled program made as `datagen optimize` makes it, then its saved state and manifest changed:
    `state(saved)` and `manifest(saved)` edit them in place. Returns the state's path."""
    path = save_compiled(load_program(pipeline, ws, options), pipeline, name, ws, {"options": options or {}})
    for edit, file in ((state, path), (manifest, path.with_name(f"{name}.manifest.json"))):
        if edit:
            saved = json.loads(file.read_text(encoding="utf-8"))
            edit(saved)
            file.write_text(json.dumps(saved), encoding="utf-8")
    return path


def demos(predictor, *items):
    """A state edit: the predictor's demos are `items`."""
    return lambda saved: saved[predictor].__setitem__("demos", list(items))


def other_version_in_metadata(saved):
    saved["metadata"]["dependency_versions"]["dspy"] = OTHER


def no_metadata(saved):
    del saved["metadata"]


def other_version_in_manifest(manifest):
    manifest["dspy"] = OTHER


# --- another DSPy version ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("state, manifest", [(other_version_in_metadata, None),
                                             (no_metadata, other_version_in_manifest)],
                         ids=["as DSPy records it", "in the manifest alone"])
def test_a_program_compiled_by_another_dspy_runs_with_a_warning_naming_both_versions(workspace, state, manifest):
    compiled(workspace, state=state, manifest=manifest)
    with FakeOpenAIServer() as server:
        result = run_cli("generate", "style_clone", "-i", "data/samples", "-o", "out", "--limit", "1", "--max-tokens",
                         "300", "--model", "openai/fake", "--api-base", server.url, "--compiled", "x", cwd=workspace)
    assert result.returncode == 0, result.stderr
    warned = [line for line in result.stderr.splitlines() if f"dspy {OTHER}" in line]
    assert len(warned) == 1 and f"dspy {dspy.__version__}" in warned[0] and "compiled/style_clone/x.json" in warned[0]
    assert (workspace / "out/sharegpt.jsonl").read_text(encoding="utf-8").strip()


def test_only_another_version_is_warned_of(workspace, caplog):
    same = compiled(workspace, "same", state=demos("rephrase", GOOD))
    other = compiled(workspace, "other", state=other_version_in_metadata)
    with caplog.at_level(logging.WARNING, "datagen"):
        program = load_compiled("style_clone", same, workspace)
        assert not caplog.records and [dict(demo) for demo in program.rephrase.demos] == [GOOD]
        load_compiled("style_clone", other, workspace)
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [str(other)]
    assert f"compiled with dspy {OTHER}, loaded with dspy {dspy.__version__}" in caplog.text


def test_a_version_is_compared_as_pep_440_and_shown_safe_to_print(workspace, caplog):
    # "v3.4.1" is the installed 3.4.1; a version string made to garble a terminal is shown escaped and cut short.
    spelled = compiled(workspace, "spelled", state=lambda saved: saved["metadata"]["dependency_versions"].update(
        dspy=f"v{dspy.__version__}"))
    hostile = compiled(workspace, "hostile", state=lambda saved: saved["metadata"]["dependency_versions"].update(
        dspy="9" * 5000 + "\x1b[31mRED"))
    with caplog.at_level(logging.WARNING, "datagen"):
        load_compiled("style_clone", spelled, workspace)
        assert not caplog.records
        load_compiled("style_clone", hostile, workspace)
    [warning] = [record.getMessage() for record in caplog.records]
    assert "\x1b" not in warning and len(warning) < 400 and f"loaded with dspy {dspy.__version__}" in warning


def test_a_state_this_dspy_cannot_load_is_refused_naming_its_version(workspace):
    """DSPy 2.5's chain-of-thought state (extended_signature), which DSPy 3 refuses with NotImplementedError."""
    def old(saved):
        saved["rephrase"]["extended_signature"] = saved["rephrase"]["signature"]
        other_version_in_metadata(saved)

    compiled(workspace, state=old)
    result = run_cli("compiled", "show", "compiled/style_clone/x.json", cwd=workspace)
    assert result.returncode == 0, result.stderr  # shown as it is: what there is to see of it
    with FakeOpenAIServer() as server:
        result = run_cli("generate", "style_clone", "-i", "data/samples", "-o", "out", "--model", "openai/fake",
                         "--api-base", server.url, "--compiled", "x", cwd=workspace)
        assert not server.requests
    assert_one_line_error(result, "compiled/style_clone/x.json", f"dspy {dspy.__version__} can load",
                          "NotImplementedError")
    assert not (workspace / "out").exists()


# --- malformed demos --------------------------------------------------------------------------------------------

BOUNDARIES = {"repair_boundaries": True}
MALFORMED = {
    "an output missing": ("rephrase", None, {"passage": "A passage."}, "no output field 'generic'"),
    "an output null": ("rephrase", None, {"passage": "A passage.", "generic": None}, "no output field 'generic'"),
    "one output of two missing": ("add_boundaries", BOUNDARIES, {"passage": "A passage.", "opening": "It began."},
                                  "no output field 'closing'"),
    "every input missing": ("rephrase", None, {"generic": "Plain words."}, "none of the input fields 'passage'"),
    "not an object": ("rephrase", None, "A passage. Plain words.", "not an object (str)"),
    "a list": ("rephrase", None, [GOOD["passage"], GOOD["generic"]], "not an object (list)"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_demo_is_refused_naming_the_file_the_predictor_the_demo_and_the_field(workspace, case):
    predictor, options, demo, fault = MALFORMED[case]
    first = GOOD if predictor == "rephrase" else {"passage": "A passage.", "opening": "It began.", "closing": "Done."}
    path = compiled(workspace, options=options, state=demos(predictor, first, demo))
    with pytest.raises(DatagenError) as refused:
        load_compiled("style_clone", path, workspace)
    assert str(refused.value).startswith(f"{path}: demo 2 of 2 of predictor {predictor!r}: {fault}")


def test_demos_that_are_not_a_list_are_refused(workspace):
    path = compiled(workspace, state=lambda saved: saved["rephrase"].__setitem__("demos", GOOD))
    with pytest.raises(DatagenError, match="the demos of predictor 'rephrase' are not a list"):
        load_compiled("style_clone", path, workspace)


def test_a_demo_missing_one_input_of_several_is_shown_one_missing_them_all_is_refused(workspace):
    """DSPy shows the first, said to lack some fields, with the inputs it has: its answer is whole. It would leave
    the second out of the prompt."""
    demo = {"passage": "The keeper counted 41 gulls.", "question": "How many gulls were counted?", "answer": "41."}
    path = compiled(workspace, pipeline="factual_qa", state=demos("answer", demo))
    assert read_manifest(path)["signatures"]["answer"][1][:2] == ["conversation", "input"]
    program = load_compiled("factual_qa", path, workspace)
    assert [dict(d) for d in program.answer.demos] == [demo]
    with FakeOpenAIServer() as server:
        lm = dspy.LM("openai/fake", api_base=server.url, api_key="no-key", cache=False, num_retries=0)
        with dspy.context(lm=lm):
            program.answer(passage="A passage.", conversation="", question="What?")
        prompt = json.dumps(server.requests[-1]["messages"])
    assert "How many gulls were counted?" in prompt and "some input or output fields are not supplied" in prompt
    path = compiled(workspace, "y", pipeline="factual_qa", state=demos("answer", demo, {"answer": "41."}))
    with pytest.raises(DatagenError, match="demo 2 of 2 of predictor 'answer': none of the input fields 'passage', "
                                           "'conversation', 'question'"):
        load_compiled("factual_qa", path, workspace)
