"""DATAGEN_ environment variables that datagen does not read (a mistyped name) get a warning naming the closest one
it does: through the real `datagen` command, and `unknown_variables` over many names."""

import re

import pytest

from datagen.workspace import known_variables, unknown_variables

from .conftest import ROOT, run_cli
from .fakes import FakeOpenAIServer
from .test_config import SECRET, write_config

IGNORED = "is not a variable datagen reads: it is ignored"


def warnings_about_variables(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if IGNORED in line]


def test_a_mistyped_variable_is_warned_of_in_one_line_naming_the_closest_and_the_command_goes_on(tmp_path):
    env = {"DATAGEN_TASK_TIMOUT": "3", "DATAGEN_TASK_MODLE": "openai/typo", "DATAGEN_TASK_MODEL": "openai/right",
           "DATAGEN_TASK_API_KEY": SECRET}
    result = run_cli("models", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "openai/right" in result.stdout and "openai/typo" not in result.stdout
    lines = warnings_about_variables(result.stderr)
    assert lines == [
        f"WARNING: DATAGEN_TASK_API_KEY {IGNORED} (a key is read from the variable api_key_env names: set "
        "DATAGEN_TASK_API_KEY_ENV to its name)",
        f"WARNING: DATAGEN_TASK_MODLE {IGNORED} (did you mean DATAGEN_TASK_MODEL?)",
        f"WARNING: DATAGEN_TASK_TIMOUT {IGNORED} (did you mean DATAGEN_TASK_TIMEOUT?)"], result.stderr
    assert SECRET not in result.stderr + result.stdout  # a value is never quoted


def test_no_known_variable_is_warned_of_nor_a_key_variable_an_api_key_env_names(tmp_path):
    workspace = tmp_path / "ws"
    write_config(workspace, '[models.task]\nmodel = "openai/gpt-4o-mini"\napi_key_env = "DATAGEN_MY_KEY"\n')
    env = {"DATAGEN_TASK_MODEL": "openai/gpt-4o-mini", "DATAGEN_JUDGE_API_BASE": "http://127.0.0.1:9/v1",
           "DATAGEN_PROMPT_MAX_TOKENS": "64", "DATAGEN_WORKSPACE": str(workspace), "DATAGEN_BROWSER_TESTS": "0",
           "DATAGEN_MY_KEY": SECRET, "DATAGEN_JUDGE_API_KEY_ENV": "DATAGEN_JUDGE_KEY", "DATAGEN_JUDGE_KEY": SECRET}
    result = run_cli("models", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "DATAGEN_MY_KEY" in result.stdout  # the workspace DATAGEN_WORKSPACE names was the one read
    assert not warnings_about_variables(result.stderr), result.stderr


def test_the_warning_comes_once_per_command_whether_it_reads_the_config_or_not(workspace):
    env = {"DATAGEN_TASK_TIMOUT": "3"}
    with FakeOpenAIServer() as server:
        generated = run_cli("generate", "style_clone", "-i", "data/samples", "-o", "out", "--limit", "2",
                            "--max-tokens", "300", "--model", "openai/fake", "--api-base", server.url,
                            cwd=workspace, env=env)
    assert generated.returncode == 0, generated.stderr
    listed = run_cli("pipelines", cwd=workspace, env=env)
    for result in (generated, listed):
        assert warnings_about_variables(result.stderr) == [
            f"WARNING: DATAGEN_TASK_TIMOUT {IGNORED} (did you mean DATAGEN_TASK_TIMEOUT?)"], result.stderr


@pytest.mark.parametrize(("name", "closest"), [
    ("DATAGEN_TASK_TIMOUT", "DATAGEN_TASK_TIMEOUT"), ("DATAGEN_JUGDE_API_BASE", "DATAGEN_JUDGE_API_BASE"),
    ("DATAGEN_MODEL", "DATAGEN_TASK_MODEL"), ("DATAGEN_TASK_MAXTOKENS", "DATAGEN_TASK_MAX_TOKENS"),
    ("DATAGEN_PROMPT_TEMPERATUR", "DATAGEN_PROMPT_TEMPERATURE"), ("DATAGEN_WORKSPASE", "DATAGEN_WORKSPACE"),
    ("datagen_task_model", "DATAGEN_TASK_MODEL"),  # read only in upper case
    ("DATAGEN_JUDGE_KEY_ENV", "DATAGEN_JUDGE_API_KEY_ENV"), ("DATAGEN_JUDGE_TOKEN", "DATAGEN_JUDGE_API_KEY_ENV"),
    # A near miss ending like a key's name is a typo; a key set where its variable's name goes is not.
    ("DATAGEN_TASK_MAX_TOKEN", "DATAGEN_TASK_MAX_TOKENS"), ("DATAGEN_TASK_API_KEY", "DATAGEN_TASK_API_KEY_ENV"),
    ("DATAGEN_FOO", "DATAGEN_"),  # nothing close: the nearest all the same, and what datagen reads
])
def test_each_unknown_name_is_one_line_naming_the_closest_known_variable(name, closest):
    environ = {name: SECRET, "DATAGEN_TASK_MODEL": "openai/x", "HOME": "/home/someone", "XDATAGEN_TASK": "1"}
    [line] = unknown_variables(environ)
    assert line.startswith(f"{name} {IGNORED} (") and "\n" not in line and SECRET not in line
    named = [word for word in re.findall(r"DATAGEN_[A-Z_]+", line.split("(", 1)[1]) if word in known_variables()]
    assert named[0].startswith(closest)


def test_every_datagen_variable_read_anywhere_in_the_repository_is_a_known_one():
    """The one list: a variable read by the code, the tests or the Makefile and missing from `known_variables`
    would be warned of as mistyped whenever it is set."""
    read = re.compile(r"""(?:environ(?:\.get)?[(\[]|getenv\(|envvar=)\s*["'](DATAGEN_\w+)|^\s*(DATAGEN_\w+)=""", re.M)
    files = [*(ROOT / "datagen").rglob("*.py"), *(ROOT / "tests").rglob("*.py"), *(ROOT / "bench").rglob("*.py"),
             *(ROOT / "scripts").rglob("*.py"), ROOT / "Makefile"]
    found = {name for path in files for match in read.finditer(path.read_text(encoding="utf-8"))
             for name in match.groups() if name}
    assert {"DATAGEN_BROWSER_TESTS", "DATAGEN_TRAINER_EXPORTS"} <= found  # the pattern finds what is there
    assert found <= set(known_variables()), found - set(known_variables())


def test_a_key_like_name_is_sent_to_api_key_env_and_a_near_miss_of_max_tokens_is_not():
    [key] = unknown_variables({"DATAGEN_TASK_API_KEY": SECRET})
    [typo] = unknown_variables({"DATAGEN_TASK_MAX_TOKEN": "5"})
    assert "set DATAGEN_TASK_API_KEY_ENV to its name" in key and "did you mean" not in key
    assert typo.endswith("(did you mean DATAGEN_TASK_MAX_TOKENS?)")
