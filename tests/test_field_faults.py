"""Model answers and client behaviour met in the field (issue 13), each over real HTTP to the fake server:
reasoning before the answer, field markers out of place, an empty API key, a provider that trickles its answer,
a lone surrogate in an answer. No sample may hold reasoning or a marker, no answer may crash a run.
"""

import json
import sqlite3

import dspy
import pytest

from datagen.errors import DatagenError
from datagen.lm import RoleModel
from datagen.lm.roles import build_role_model
from datagen.runs import RunSettings
from datagen.runs.generate import generate
from datagen.text import chunk_documents, iter_documents
from datagen.workspace import Config, ModelSettings

from .conftest import SAMPLES, run_cli
from .fakes import TRICKLE, FakeEngine, FakeOpenAIServer, chat_format, fake_lm, plain, status
from .test_cli import assert_one_line_error

CHUNKS = [c.text for c in chunk_documents(iter_documents([SAMPLES]), 300)]
LIMIT = 2
OPENING, CLOSING = "It was night.", "Then all was still."  # style_clone's boundary sentences, when asked for
# Anything of the answer's format in a dataset value: a marker or a piece of one, a reasoning tag.
LEFTOVERS = ("[[", "]]", "##", "<think", "</", "<|")


def run(workspace, tmp_path, server, engine="litellm", **options):
    """Generate with style_clone over the fake server (no retries): the report and the exported records."""
    model = build_role_model(ModelSettings(model="openai/fake", api_base=server.url, num_retries=0,
                                           max_tokens=400, engine=engine), "task")
    report = generate("style_clone", [workspace / "data/samples"], tmp_path / "out", workspace=workspace,
                      config=Config(), model=model, options=options or None,
                      settings=RunSettings(max_tokens=300, limit=LIMIT))
    records = [json.loads(line) for line in report.data_path.read_text(encoding="utf-8").splitlines()]
    return report, [(r["conversations"][0]["value"], r["conversations"][1]["value"]) for r in records]


def stored(run_dir, sql: str) -> list[tuple]:
    with sqlite3.connect(run_dir / "run.db") as db:
        return db.execute(sql).fetchall()


def draft(values: dict[str, str]) -> str:
    """Reasoning that drafts the output fields in the answer's own format, as reasoning models do."""
    return ("Okay, the user wants it plain. A first draft:\n"
            + "".join(f"[[ ## {name} ## ]]\nDRAFT {value}\n" for name, value in values.items())
            + "That is too close to the original; I will refine it.\n")


def indented(values: dict[str, str], indent: str) -> str:
    return "\n".join(indent + line if line.startswith("[[") else line for line in chat_format(values).splitlines())


# Answers a model may give, each made from the right field values; every one has clean values to parse.
LAYOUTS = {
    "reasoning with no opening tag, then </think>": lambda v: draft(v) + "</think>\n\n" + chat_format(v),
    "a <thinking> block": lambda v: "<thinking>\n" + draft(v) + "</thinking>\n" + chat_format(v),
    "</reasoning> on the answer's first line": lambda v: draft(v) + "</reasoning>" + chat_format(v),
    "a <think> block, then the answer indented": lambda v: "<think>\n" + draft(v) + "</think>\n" + indented(v, "  "),
    "headers indented by two spaces": lambda v: indented(v, "  "),
    "headers indented by a tab": lambda v: indented(v, "\t"),
    "completed on the value's line": lambda v: "".join(f"[[ ## {k} ## ]]\n{x}\n\n" for k, x in v.items()).rstrip()
    + " [[ ## completed ## ]]",
    "everything on one line": lambda v: " ".join(f"[[ ## {k} ## ]] {x}" for k, x in v.items())
    + " [[ ## completed ## ]]",
    "markers spaced differently": lambda v: "".join(f"[[## {k} ##]]\n{x}\n\n" for k, x in v.items())
    + "[[##completed##]]",
}


@pytest.mark.parametrize("engine", ["litellm", "auto"])
@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_reasoning_and_misplaced_markers_leave_clean_values(workspace, tmp_path, monkeypatch, layout, engine):
    """Both steps of style_clone (one answer of two fields, one of one) answered in the layout, on either engine
    (LiteLLM moves a leading <think> block out of the answer itself; DSPy's own engine does not): each sample is
    exactly what the model meant, and the raw answer, reasoning and all, stays in the call log."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    by_field = {"opening": lambda _: OPENING, "closing": lambda _: CLOSING}
    with FakeOpenAIServer(by_field=by_field, layout=layout) as server:
        report, samples = run(workspace, tmp_path, server, engine, repair_boundaries=True)
    assert not report.failures
    passages = [f"{OPENING} {chunk} {CLOSING}" for chunk in CHUNKS[:LIMIT]]
    assert samples == [(plain(passage), passage) for passage in passages]
    responses = [r for (r,) in stored(tmp_path / "out", "SELECT response FROM calls ORDER BY chunk_id, seq")]
    assert len(responses) == 2 * LIMIT and all("[[" in r for r in responses)
    if "DRAFT" in layout({"generic": "x"}):
        assert all("DRAFT" in r for r in responses)  # the reasoning is kept in the log, not in the sample


# Answers with no clean reading: the chunk fails as `parse` (the JSON retry DSPy makes gets the same answer).
UNPARSEABLE = {
    "reasoning never closed": "<think>\nThe user wants it plain. Draft:\n[[ ## generic ## ]]\nDRAFT words\n",
    "a closing tag after the answer": "[[ ## generic ## ]]\nplain words\n</think>\n\n[[ ## completed ## ]]",
    "a field given twice": "Draft:\n[[ ## generic ## ]]\nDRAFT words\nBetter:\n[[ ## generic ## ]]\nwords\n\n"
                           "[[ ## completed ## ]]",
    "a marker with single brackets": "[[ ## generic ## ]]\nplain words\n[ ## completed ## ]",
    "a reasoning tag inside the value": "[[ ## generic ## ]]\nplain <reasoning>words</reasoning>\n\n"
                                        "[[ ## completed ## ]]",
}


@pytest.mark.parametrize("text", UNPARSEABLE.values(), ids=UNPARSEABLE.keys())
def test_an_answer_with_no_clean_reading_fails_as_parse(workspace, tmp_path, monkeypatch, text):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    first = CHUNKS[0].strip()
    with FakeOpenAIServer(faults=lambda source, attempt: text if source.strip() == first else None) as server:
        report, samples = run(workspace, tmp_path, server)
    assert report.failures == {"parse": 1}
    assert samples == [(plain(CHUNKS[1]), CHUNKS[1])]
    ((raw,),) = stored(tmp_path / "out", "SELECT raw FROM results WHERE status = 'failed'")
    assert raw == text  # the answer as the model gave it


def test_no_dataset_value_holds_a_marker_or_a_tag(workspace, tmp_path, monkeypatch):
    """Every layout above and every unparseable answer, one per chunk, in one run: nothing of the format is in
    what the model wrote."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    answers = [layout({"generic": plain(chunk)}) for layout, chunk in zip(LAYOUTS.values(), CHUNKS)]
    answers += list(UNPARSEABLE.values())
    by_chunk = dict(zip((c.strip() for c in CHUNKS), answers))
    with FakeOpenAIServer(faults=lambda source, attempt: by_chunk.get(source.strip())) as server:
        model = build_role_model(ModelSettings(model="openai/fake", api_base=server.url, num_retries=0), "task")
        report = generate("style_clone", [workspace / "data/samples"], tmp_path / "out", workspace=workspace,
                          config=Config(), model=model, settings=RunSettings(max_tokens=300, concurrency=4))
    exported = report.data_path.read_text(encoding="utf-8")
    assert report.samples >= len(LAYOUTS)
    for record in map(json.loads, exported.splitlines()):
        made = record["conversations"][0]["value"]  # the model's; the other is the chunk
        assert not any(bit in made for bit in LEFTOVERS), made


# --- an empty key ----------------------------------------------------------------------------------------------

ARGS = ["generate", "style_clone", "-i", "data/samples", "-o", "out", "--max-tokens", "300", "--limit", "1",
        "--model", "openai/fake"]


def test_an_empty_key_counts_as_unset_for_a_self_hosted_server(workspace):
    with FakeOpenAIServer() as server:
        result = run_cli(*ARGS, "--api-base", server.url, cwd=workspace,
                         env={"OPENAI_API_KEY": "", "DATAGEN_TASK_NUM_RETRIES": "0"})
    assert result.returncode == 0, result.stderr
    assert [h.get("Authorization") for h in server.headers] == ["Bearer no-key"]
    assert stored(workspace / "out", "SELECT status FROM results") == [("done",)]


@pytest.mark.parametrize("settings, env", [
    ({"model": "openai/gpt-4o-mini"}, {"OPENAI_API_KEY": ""}),
    ({"model": "anthropic/claude-3-5-haiku-latest"}, {"ANTHROPIC_API_KEY": "  "}),
    ({"model": "openai/gpt-4o-mini", "api_key_env": "MY_KEY"}, {"MY_KEY": ""}),
    ({"model": "openai/fake", "api_base": "http://127.0.0.1:9/v1", "api_key_env": "MY_KEY"}, {"MY_KEY": ""}),
], ids=["openai", "anthropic, blank", "api_key_env", "api_key_env, self-hosted"])
def test_an_empty_key_is_refused_before_any_call_where_one_is_needed(monkeypatch, settings, env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(DatagenError, match=next(iter(env))):
        build_role_model(ModelSettings(**settings), "task")


def test_an_empty_key_for_a_hosted_model_stops_the_cli_at_once(workspace):
    result = run_cli(*ARGS[:-1], "openai/gpt-4o-mini", cwd=workspace, env={"OPENAI_API_KEY": ""})
    assert_one_line_error(result, "OPENAI_API_KEY")
    assert not (workspace / "out/run.db").exists()


# --- a trickling provider ----------------------------------------------------------------------------------------

@pytest.mark.timeout(180)  # unbounded, the call would take minutes: its answer arrives over 3 minutes
@pytest.mark.parametrize("engine", ["litellm", "auto"])
def test_the_timeout_bounds_a_call_that_trickles(workspace, engine):
    env = {"DATAGEN_TASK_TIMEOUT": "1", "DATAGEN_TASK_NUM_RETRIES": "1", "DATAGEN_TASK_ENGINE": engine}
    with FakeOpenAIServer(faults=lambda source, attempt: TRICKLE) as server:
        result = run_cli(*ARGS, "--api-base", server.url, cwd=workspace, env=env, timeout=120)
    assert "Traceback" not in result.stderr
    ((status, failure, message),) = stored(workspace / "out", "SELECT status, failure, message FROM results")
    assert (status, failure) == ("failed", "timeout"), message
    assert [s.attempt for s in server.served] == [0, 1]  # the attempt timed out, and so did its retry
    # Bytes came every half second: the message names the wall-clock limit the call reached, on either engine.
    assert "within the timeout of 1 s" in message and "no bytes" not in message, message
    assert "within the timeout of 1 s" in result.stderr


# --- a lone surrogate ---------------------------------------------------------------------------------------------

def test_a_lone_surrogate_fails_its_chunk_as_encoding_and_a_rerun_asks_again(workspace):
    first = CHUNKS[0].strip()
    broken = chat_format({"generic": "the lamp \ud83d was lit"})

    def faults(source, attempt):
        return broken if source.strip() == first else None

    args = [*ARGS[:-3], "2", "--model", "openai/fake"]
    env = {"DATAGEN_TASK_NUM_RETRIES": "0"}
    with FakeOpenAIServer(faults=faults) as server:
        result = run_cli(*args, "--api-base", server.url, cwd=workspace, env=env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    results = dict(stored(workspace / "out", "SELECT text, failure FROM results JOIN chunks ON id = chunk_id"))
    assert results == {CHUNKS[0]: "encoding", CHUNKS[1]: None}
    # What is stored is valid UTF-8: the answer is in the log with U+FFFD where the surrogate was.
    with sqlite3.connect(workspace / "out/run.db") as db:
        db.text_factory = bytes
        for row in db.execute("SELECT raw, message FROM results UNION ALL SELECT response, error FROM calls"):
            for value in row:
                value is None or value.decode("utf-8")
        assert db.execute("SELECT raw FROM results WHERE failure = 'encoding'").fetchone()[0] == \
            broken.replace("\ud83d", "\ufffd").encode()
    exported = (workspace / "out/sharegpt.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(exported) == 1

    # A re-run against a healthy server asks the model again (past DSPy's cache, which holds the broken answer).
    with FakeOpenAIServer() as healthy:
        again = run_cli(*args, "--api-base", healthy.url, cwd=workspace, env=env)
    assert again.returncode == 0, again.stderr
    assert [s.source.strip() for s in healthy.served] == [first]
    assert len((workspace / "out/sharegpt.jsonl").read_text(encoding="utf-8").splitlines()) == 2


def test_a_lone_surrogate_in_a_providers_error_is_stored_and_printed_as_valid_text(workspace):
    args = [*ARGS[:-3], "2", "--model", "openai/fake"]
    first = CHUNKS[0].strip()

    def faults(source, attempt):
        return status(400, message="cannot take \udc80 here") if source.strip() == first else None

    with FakeOpenAIServer(faults=faults) as server:
        result = run_cli(*args, "--api-base", server.url, cwd=workspace, env={"DATAGEN_TASK_NUM_RETRIES": "0"})
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "cannot take \ufffd here" in result.stderr
    ((message,),) = stored(workspace / "out", "SELECT message FROM results WHERE status = 'failed'")
    assert "cannot take \ufffd here" in message


def test_a_program_output_that_is_not_valid_unicode_fails_its_chunk_as_encoding(workspace, tmp_path):
    """With an adapter of the caller's own (DSPy's, which lets a lone surrogate through), the chunk still fails
    as `encoding` rather than crashing the run when it is stored."""
    def half_an_emoji(text):
        return plain(text) + " \ud83d" if "Étienne" in text else plain(text)

    model = RoleModel("task", fake_lm(FakeEngine(respond=half_an_emoji)), dspy.ChatAdapter(), None)
    report = generate("style_clone", [workspace / "data/samples"], tmp_path / "out", workspace=workspace,
                      config=Config(), model=model, settings=RunSettings(max_tokens=300))
    bad = [chunk for chunk in CHUNKS if "Étienne" in chunk]
    assert bad and report.failures == {"encoding": len(bad)}
    assert report.samples == len(CHUNKS) - len(bad)
