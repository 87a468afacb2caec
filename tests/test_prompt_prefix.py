"""The prompts datagen sends: one identical prefix (system message, then the demos) before each call's input, so
that a provider's prefix cache serves it; and none of the scaffolding tokens that buy nothing (issue 29,
bench/prompt_tokens.py measures them)."""

import json
from collections import defaultdict

import dspy
import pytest

from datagen.lm.adapters import ChatAdapter
from datagen.runs.generate import RunSettings, generate
from datagen.workspace.config import Config, ModelSettings
from datagen.workspace.pipelines import load_program

from .fakes import FakeOpenAIServer, plain

ANSWERS = {"answerable": lambda _: "True", "accurate": lambda _: "True", "trivial": lambda _: "False",
           "reasoning": lambda _: "Each check passes.",
           "questions": lambda _: json.dumps(["Why did the keeper stay on the rock?", "How was the lamp lit?"])}
DEMO_VALUES = {"passage": "The lamp was lit at dusk, as it had been for forty years.", "generic": plain("The lamp."),
               "opening": "It was a cold night.", "closing": "So the lamp was kept.", "count": 2,
               "questions": ["When was the lamp lit?", "For how long?"], "conversation": "",
               "question": "When was the lamp lit?", "answer": "At dusk.", "reasoning": "All checks pass.",
               "answerable": True, "accurate": True, "trivial": False}


def with_demos(program: dspy.Module) -> dspy.Module:
    """`program` with two demos on each predictor, as `datagen optimize` leaves a compiled one."""
    for _, predictor in program.named_predictors():
        predictor.demos = [dspy.Example(augmented=True, **{name: DEMO_VALUES[name] for name in predictor.signature.fields})
                           for _ in range(2)]
    return program


def requests_by_step(workspace, tmp_path, program) -> dict[str, list[list[dict]]]:
    """The messages of every request `program` sends on two chunks, by step (its system message)."""
    with FakeOpenAIServer(by_field=ANSWERS) as server:
        config = Config(models={"task": ModelSettings(model="openai/prefix", api_base=server.url, max_tokens=400)})
        report = generate(program, [workspace / "data/samples"], tmp_path / "run", workspace=workspace,
                          config=config, settings=RunSettings(max_tokens=300, limit=2))
    assert report.samples >= 2
    steps = defaultdict(list)
    for request in server.requests:
        steps[request["messages"][0]["content"]].append(request["messages"])
    return steps


@pytest.mark.parametrize("name, options", [("style_clone", {}), ("style_clone", {"repair_boundaries": True}),
                                           ("factual_qa", {})], ids=["style_clone", "repair", "factual_qa"])
def test_calls_of_a_step_share_the_system_message_and_every_demo_as_their_prefix(workspace, tmp_path, name, options):
    program = with_demos(load_program(name, workspace, options))
    steps = requests_by_step(workspace, tmp_path, program)
    assert len(steps) == len(program.named_predictors())  # one system message a step, the same in every call
    for calls in steps.values():
        first, *others = calls
        assert others, "each step is called on both chunks"
        assert len(first) == 1 + 2 * 2 + 1  # system, two demos as user/assistant turns, the input
        assert [m["role"] for m in first] == ["system", "user", "assistant", "user", "assistant", "user"]
        for other in others:
            assert other[:-1] == first[:-1]  # the whole system message and all demos, identical
        # The call's own input comes last, and only there.
        assert len({json.dumps(call[-1]) for call in calls}) > 1
        assert not any(value in m["content"] for call in calls for m in call[:-1]
                       for value in ("Keeper", "Skerrow"))


def test_the_chat_prompt_carries_no_scaffolding_that_buys_nothing():
    from signatures.factual_qa import ValidatePair

    adapter = ChatAdapter()
    messages = adapter.format(ValidatePair, [], {"passage": "The lamp was lit at dusk.", "conversation": "",
                                                 "question": "When was the lamp lit?", "answer": "At dusk."})
    system, user = messages[0]["content"], messages[-1]["content"]
    assert "(str)" not in system  # a text field's type goes unsaid; others keep theirs
    assert "2. `answerable` (bool)" in system.split("All interactions")[0]
    assert "1. `passage`\n" in system  # an undescribed field's line has no dangling ": "
    assert "\n        " not in system.split("your objective is:")[1]  # the instructions without DSPy's indent
    assert user.endswith("\n\nRespond with the output fields `[[ ## reasoning ## ]]`, `[[ ## answerable ## ]]` "
                         "(bool), `[[ ## accurate ## ]]` (bool), `[[ ## trivial ## ]]` (bool), then "
                         "`[[ ## completed ## ]]`.")
    # What a model answers in that layout still parses.
    answer = adapter.format_assistant_message_content(ValidatePair, {
        "reasoning": "Fine.", "answerable": True, "accurate": True, "trivial": False})
    assert adapter.parse(ValidatePair, answer) == {"reasoning": "Fine.", "answerable": True, "accurate": True,
                                                   "trivial": False}


def test_a_signatures_system_message_is_made_once_and_follows_its_instructions():
    """Made once a signature (DSPy makes it again at every call), it is still what DSPy would make: for new
    instructions (an optimizer's candidate, or instructions set on the class in place) or a field's description
    edited in place it is made afresh."""
    adapter = ChatAdapter()
    signature = dspy.Signature("passage -> generic", "Rewrite the passage.")
    first = adapter.format(signature, [], {"passage": "one"})[0]["content"]
    assert adapter.format(signature, [], {"passage": "two"})[0]["content"] is first  # made once
    assert first == dspy.ChatAdapter.format_system_message(adapter, signature)
    proposed = signature.with_instructions("Say it plainly.")
    assert "Say it plainly." in adapter.format(proposed, [], {"passage": "one"})[0]["content"]
    signature.instructions = "Changed in place."
    changed = adapter.format(signature, [], {"passage": "one"})[0]["content"]
    assert "Changed in place." in changed and changed == dspy.ChatAdapter.format_system_message(adapter, signature)
    signature.output_fields["generic"].json_schema_extra["desc"] = "the passage in plain words"  # a field, in place
    described = adapter.format(signature, [], {"passage": "one"})[0]["content"]
    assert "the passage in plain words" in described
    assert described == dspy.ChatAdapter.format_system_message(adapter, signature)
