"""datagen.workspace.config: datagen.toml, overridden by DATAGEN_* environment variables."""

import logging
from pathlib import Path

import pytest

from datagen.text.chunking import DEFAULT_MAX_TOKENS
from datagen.workspace.config import CONFIG_FILE, Config, ModelSettings, find_workspace, load_config
from datagen.errors import DatagenError
from datagen.lm.roles import judge_model

SECRET = "sk-live-DO-NOT-LEAK-0123456789abcdef"


def write_config(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CONFIG_FILE
    path.write_text(text, encoding="utf-8")
    return path


# --- reading the file ----------------------------------------------------------------------------------------


def test_file_with_task_model_and_chunking_is_read(tmp_path):
    write_config(tmp_path, """
[models.task]
model = "openai/gpt-4o-mini"
api_key_env = "OPENAI_API_KEY"
api_base = "http://127.0.0.1:8000/v1"
temperature = 0.2
max_tokens = 300
engine = "litellm"

[chunking]
max_tokens = 256
language = "de"
""")
    config = load_config(tmp_path, environ={})

    task = config.role("task")
    assert task == ModelSettings(model="openai/gpt-4o-mini", api_key_env="OPENAI_API_KEY",
                                 api_base="http://127.0.0.1:8000/v1", temperature=0.2, max_tokens=300,
                                 engine="litellm")
    assert config.chunking.max_tokens == 256
    assert config.chunking.language == "de"
    assert set(config.models) == {"task"}


def test_no_file_gives_defaults(tmp_path):
    config = load_config(tmp_path, environ={})
    assert config.models == {}
    assert config.chunking.max_tokens == DEFAULT_MAX_TOKENS
    assert config.chunking.language == "auto"
    assert config.role("task") == ModelSettings()
    assert config.role("judge") == ModelSettings()


def test_without_workspace_argument_the_workspace_is_found_from_cwd(tmp_path, monkeypatch):
    write_config(tmp_path / "ws", '[models.task]\nmodel = "openai/from-file"\n')
    nested = tmp_path / "ws" / "data" / "raw"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)
    assert load_config(environ={}).role("task").model == "openai/from-file"


# --- environment overrides -----------------------------------------------------------------------------------


def test_environment_overrides_the_file(tmp_path):
    write_config(tmp_path, """
[models.task]
model = "openai/gpt-4o-mini"
temperature = 0.9
api_key_env = "OPENAI_API_KEY"
""")
    config = load_config(tmp_path, environ={"DATAGEN_TASK_MODEL": "ollama_chat/llama3",
                                            "DATAGEN_TASK_TEMPERATURE": "0.25"})
    task = config.role("task")
    assert task.model == "ollama_chat/llama3"
    assert task.temperature == 0.25
    assert isinstance(task.temperature, float)
    assert task.api_key_env == "OPENAI_API_KEY"  # not overridden: kept from the file


def test_environment_alone_sets_a_role(tmp_path):
    config = load_config(tmp_path, environ={"DATAGEN_JUDGE_MODEL": "openai/judge",
                                            "DATAGEN_JUDGE_API_BASE": "http://judge:8000/v1",
                                            "DATAGEN_PROMPT_MAX_TOKENS": "64",
                                            "UNRELATED": "x"})
    assert config.models["judge"] == ModelSettings(model="openai/judge", api_base="http://judge:8000/v1")
    assert config.models["prompt"].max_tokens == 64
    assert "task" not in config.models


def test_empty_environment_variable_is_ignored(tmp_path):
    write_config(tmp_path, '[models.task]\nmodel = "openai/from-file"\n')
    config = load_config(tmp_path, environ={"DATAGEN_TASK_MODEL": ""})
    assert config.role("task").model == "openai/from-file"


def test_invalid_environment_value_is_an_error_naming_the_environment(tmp_path):
    with pytest.raises(DatagenError) as exc:
        load_config(tmp_path, environ={"DATAGEN_TASK_TEMPERATURE": "5"})
    message = str(exc.value)
    assert "DATAGEN_" in message and "temperature" in message
    assert "\n" not in message


# --- role fallback -------------------------------------------------------------------------------------------


def test_judge_and_prompt_fall_back_to_the_task_model_but_keep_their_own_settings(tmp_path):
    write_config(tmp_path, """
[models.task]
model = "openai/task-model"
api_key_env = "TASK_KEY"
temperature = 0.1
max_tokens = 500

[models.judge]
temperature = 0.0
max_tokens = 20
""")
    config = load_config(tmp_path, environ={})

    judge = config.role("judge")
    assert judge.model == "openai/task-model"
    assert judge.temperature == 0.0  # its own, even though falsy
    assert judge.max_tokens == 20
    assert judge.api_key_env == "TASK_KEY"  # inherited along with the model

    prompt = config.role("prompt")  # no [models.prompt] at all
    assert prompt == config.role("task")
    assert prompt.model == "openai/task-model"
    assert prompt.temperature == 0.1

    # The task role itself is untouched by the fallback.
    assert config.role("task") == ModelSettings(model="openai/task-model", api_key_env="TASK_KEY",
                                                temperature=0.1, max_tokens=500)


def test_role_with_its_own_model_keeps_it_and_inherits_nothing(tmp_path):
    write_config(tmp_path, """
[models.task]
model = "openai/task-model"
api_key_env = "TASK_KEY"
temperature = 0.1

[models.judge]
model = "openai/judge-model"
api_base = "http://judge:8000/v1"
""")
    judge = load_config(tmp_path, environ={}).role("judge")
    assert judge == ModelSettings(model="openai/judge-model", api_base="http://judge:8000/v1")


def test_role_fallback_through_the_environment(tmp_path):
    write_config(tmp_path, '[models.judge]\ntemperature = 0.7\n')
    config = load_config(tmp_path, environ={"DATAGEN_TASK_MODEL": "openai/env-task"})
    judge = config.role("judge")
    assert judge.model == "openai/env-task"
    assert judge.temperature == 0.7


def test_role_on_a_config_built_directly():
    config = Config(models={"task": ModelSettings(model="m", temperature=1.0),
                            "prompt": ModelSettings(temperature=0.5)})
    assert config.role("prompt") == ModelSettings(model="m", temperature=0.5)
    assert config.role("judge") == ModelSettings(model="m", temperature=1.0)


# --- errors --------------------------------------------------------------------------------------------------


def test_malformed_toml_is_a_single_line_error_naming_the_file(tmp_path):
    path = write_config(tmp_path, '[models.task\nmodel = "x"\n\n\n')
    with pytest.raises(DatagenError) as exc:
        load_config(tmp_path, environ={})
    message = str(exc.value)
    assert message.startswith(f"{path}: not valid TOML")
    assert "line 1" in message
    assert "\n" not in message


def test_non_utf8_config_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / CONFIG_FILE
    path.write_bytes(b'[models.task]\nmodel = "caf\xe9"\n')
    with pytest.raises(DatagenError) as exc:
        load_config(tmp_path, environ={})
    assert str(exc.value).startswith(f"{path}: ")
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(("toml", "names"), [
    ('[models.task]\nmodle = "x"\n', ["models.task.modle"]),
    ('[models.critic]\nmodel = "x"\n', ["critic"]),
    ('[chunkin]\nmax_tokens = 100\n', ["chunkin"]),
    ('[chunking]\nmax_token = 100\n', ["chunking.max_token"]),
], ids=["misspelt-setting", "unknown-role", "unknown-section", "misspelt-chunking-setting"])
def test_unknown_key_is_an_error_naming_the_file_and_the_key(tmp_path, toml, names):
    path = write_config(tmp_path, toml)
    with pytest.raises(DatagenError) as exc:
        load_config(tmp_path, environ={})
    message = str(exc.value)
    assert message.startswith(f"{path}: ")
    for name in names:
        assert name in message
    assert "\n" not in message


@pytest.mark.parametrize(("toml", "key"), [
    ("[models.task]\ntemperature = 3.5\n", "temperature"),
    ("[models.judge]\ntemperature = -0.1\n", "temperature"),
    ("[models.task]\nmax_tokens = 0\n", "max_tokens"),
    ("[chunking]\nmax_tokens = 8\n", "chunking.max_tokens"),
    ('[models.task]\nengine = "turbo"\n', "engine"),
    ("[splits]\ntest_fraction = 1.5\n", "splits.test_fraction"),
    ('[splits]\ntest_fraction = "0.2"\n', "splits.test_fraction"),
    ('[splits]\nby = "file"\n', "splits.by"),
    ('[chunking]\nmax_tokens = "512"\n', "chunking.max_tokens"),
    ('[metrics.style_clone]\nweights = { content = "2" }\n', "weights"),
], ids=["temperature-too-high", "temperature-negative", "max-tokens-zero", "chunk-too-small", "unknown-engine",
        "test-fraction-too-high", "test-fraction-a-string", "split-by-unknown", "chunk-budget-a-string",
        "weight-a-string"])
def test_out_of_range_value_is_an_error_naming_the_file_and_the_setting(tmp_path, toml, key):
    path = write_config(tmp_path, toml)
    with pytest.raises(DatagenError) as exc:
        load_config(tmp_path, environ={})
    message = str(exc.value)
    assert message.startswith(f"{path}: ")
    assert key in message
    assert "\n" not in message


def test_temperature_bounds_are_inclusive(tmp_path):
    write_config(tmp_path, "[models.task]\ntemperature = 2\n[models.judge]\ntemperature = 0\n")
    config = load_config(tmp_path, environ={})
    assert config.models["task"].temperature == 2.0
    assert config.models["judge"].temperature == 0.0


@pytest.mark.parametrize("key", ["api_key", "token", "secret", "password", "key"])
@pytest.mark.parametrize("role", ["task", "judge"])
def test_secret_in_the_file_is_refused_without_echoing_it(tmp_path, key, role):
    path = write_config(tmp_path, f'[models.{role}]\nmodel = "openai/x"\n{key} = "{SECRET}"\n')
    with pytest.raises(DatagenError) as exc:
        load_config(tmp_path, environ={})
    message = str(exc.value)
    assert message.startswith(f"{path}: [models.{role}]")
    assert repr(key) in message
    assert "api_key_env" in message
    assert "\n" not in message
    assert SECRET not in message
    assert SECRET not in repr(exc.value)
    # Nothing chained onto the error could carry the value into a traceback either.
    assert exc.value.__cause__ is None and exc.value.__context__ is None


def test_misspelt_secret_key_is_refused_without_echoing_its_value(tmp_path):
    path = write_config(tmp_path, f'[models.task]\napikey = "{SECRET}"\n')
    with pytest.raises(DatagenError) as exc:
        load_config(tmp_path, environ={})
    message = str(exc.value)
    assert message.startswith(f"{path}: ") and "apikey" in message
    assert SECRET not in message


def test_api_key_env_naming_a_variable_is_allowed(tmp_path):
    write_config(tmp_path, '[models.task]\nmodel = "openai/x"\napi_key_env = "MY_KEY"\n')
    assert load_config(tmp_path, environ={"MY_KEY": SECRET}).role("task").api_key_env == "MY_KEY"


@pytest.mark.parametrize("value", ["1", '"openai/x"'])
def test_models_that_is_not_a_table_is_a_datagen_error(tmp_path, value):
    path = write_config(tmp_path, f"models = {value}\n")
    with pytest.raises(DatagenError, match=str(path)):
        load_config(tmp_path, environ={})


# --- find_workspace ------------------------------------------------------------------------------------------


def test_find_workspace_walks_up_to_the_folder_with_datagen_toml(tmp_path):
    write_config(tmp_path / "ws", "")
    nested = tmp_path / "ws" / "a" / "b" / "c"
    nested.mkdir(parents=True)
    assert find_workspace(nested) == (tmp_path / "ws").resolve()
    assert find_workspace(tmp_path / "ws") == (tmp_path / "ws").resolve()


def test_find_workspace_walks_up_to_the_folder_with_programs(tmp_path):
    (tmp_path / "ws" / "programs").mkdir(parents=True)
    nested = tmp_path / "ws" / "data" / "raw"
    nested.mkdir(parents=True)
    assert find_workspace(nested) == (tmp_path / "ws").resolve()


def test_find_workspace_stops_at_the_nearest_marker(tmp_path):
    write_config(tmp_path / "outer", "")
    (tmp_path / "outer" / "inner" / "programs").mkdir(parents=True)
    nested = tmp_path / "outer" / "inner" / "deep"
    nested.mkdir()
    assert find_workspace(nested) == (tmp_path / "outer" / "inner").resolve()


def test_find_workspace_ignores_markers_of_the_wrong_kind(tmp_path):
    _skip_if_an_ancestor_is_a_workspace(tmp_path)
    (tmp_path / "ws" / CONFIG_FILE).mkdir(parents=True)  # a folder, not a file
    (tmp_path / "ws" / "programs").write_text("a file, not a folder")
    nested = tmp_path / "ws" / "sub"
    nested.mkdir()
    assert find_workspace(nested) == nested.resolve()


def test_find_workspace_returns_the_start_when_nothing_is_found(tmp_path, monkeypatch):
    _skip_if_an_ancestor_is_a_workspace(tmp_path)
    nested = tmp_path / "x" / "y"
    nested.mkdir(parents=True)
    assert find_workspace(nested) == nested.resolve()
    monkeypatch.chdir(nested)
    assert find_workspace() == nested.resolve()


def test_find_workspace_defaults_to_cwd(tmp_path, monkeypatch):
    (tmp_path / "ws" / "programs").mkdir(parents=True)
    (tmp_path / "ws" / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "ws" / "sub")
    assert find_workspace() == (tmp_path / "ws").resolve()


def _skip_if_an_ancestor_is_a_workspace(folder: Path) -> None:
    for parent in folder.resolve().parents:
        if (parent / CONFIG_FILE).is_file() or (parent / "programs").is_dir():
            pytest.skip(f"{parent} already looks like a workspace")


def test_a_judge_falling_back_to_the_task_model_judges_at_temperature_0(tmp_path):
    write_config(tmp_path, '[models.task]\nmodel = "openai/task-model"\napi_base = "http://127.0.0.1:9/v1"\n'
                           'temperature = 0.7\n')
    config = load_config(tmp_path, environ={})
    assert judge_model(config).lm.kwargs["temperature"] == 0.0
    write_config(tmp_path, '[models.task]\nmodel = "openai/task-model"\napi_base = "http://127.0.0.1:9/v1"\n'
                           'temperature = 0.7\n[models.judge]\ntemperature = 0.3\n')
    assert judge_model(load_config(tmp_path, environ={})).lm.kwargs["temperature"] == 0.3  # its own counts


# --- the cap on an answer's tokens of a role without max_tokens (issue 22) -----------------------------------------


def test_a_judge_or_prompt_role_without_max_tokens_gets_its_cap_and_one_set_anywhere_is_kept(tmp_path):
    from datagen.lm.roles import JUDGE_MAX_TOKENS, PROMPT_MAX_TOKENS, role_model

    task = '[models.task]\nmodel = "openai/task-model"\napi_base = "http://127.0.0.1:9/v1"\n'
    write_config(tmp_path, task)
    config = load_config(tmp_path, environ={})
    assert judge_model(config).max_tokens == JUDGE_MAX_TOKENS == 512
    assert role_model(config, "prompt").max_tokens == PROMPT_MAX_TOKENS == 2048
    assert role_model(config, "task").max_tokens is None  # the task's cap depends on the chunk (generate.bound_answers)
    environ = {"DATAGEN_JUDGE_MAX_TOKENS": "64", "DATAGEN_PROMPT_MAX_TOKENS": "4000"}
    assert judge_model(load_config(tmp_path, environ=environ)).max_tokens == 64
    assert role_model(load_config(tmp_path, environ=environ), "prompt").max_tokens == 4000
    write_config(tmp_path, task + "max_tokens = 900\n")  # inherited from the task role: the user's, kept
    assert judge_model(load_config(tmp_path, environ={})).max_tokens == 900
    assert not judge_model(load_config(tmp_path, environ={})).default_cap


def test_the_embedded_model_keeps_its_own_cap():
    from datagen.lm.local import DEFAULT_MAX_TOKENS as LOCAL_MAX_TOKENS
    from datagen.lm.roles import role_model

    for role in ("task", "judge", "prompt"):
        model = role_model(Config(), role)
        assert model.max_tokens == LOCAL_MAX_TOKENS == 768 and not model.default_cap


def test_a_reasoning_model_is_capped_at_dspys_least_as_max_completion_tokens(monkeypatch):
    from datagen.lm.roles import REASONING_MIN_TOKENS

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    model = judge_model(Config(models={"judge": ModelSettings(model="openai/o4-mini", temperature=1.0)}))
    assert model.lm.kwargs["max_completion_tokens"] == REASONING_MIN_TOKENS == 16_000
    assert model.lm.kwargs.get("max_tokens") is None


@pytest.mark.parametrize("engine, warned", [(None, False), ("litellm", False), ("lm15", True), ("auto", True)])
def test_openais_dialect_chosen_for_a_self_hosted_server_is_warned_of_once(caplog, engine, warned):
    """It sends the cap as max_completion_tokens, which llama-cpp-python's server ignores (docs/config.md)."""
    from datagen.lm.roles import build_role_model

    settings = ModelSettings(model=f"openai/dialect-{engine}", api_base="http://127.0.0.1:9/v1", engine=engine)
    with caplog.at_level(logging.WARNING, "datagen.lm.roles"):
        for _ in range(2):
            build_role_model(settings, "task")
    lines = [r.getMessage() for r in caplog.records if "max_completion_tokens" in r.getMessage()]
    assert len(lines) == warned
    if warned:
        assert f"engine = {engine!r}" in lines[0] and "leave engine unset or set it to litellm" in lines[0]


# --- rate limits and prices per role (issue 15) -----------------------------------------------------------------


def test_rate_limits_and_prices_are_read_from_the_file(tmp_path):
    write_config(tmp_path, """
[models.task]
model = "openai/Qwen2.5-7B-Instruct"
api_base = "http://127.0.0.1:8000/v1"
rpm = 600
tpm = 2000000
input_price = 0.05
output_price = 0.2

[models.judge]
model = "openai/gpt-4o-mini"
rpm = 0.5
""")
    config = load_config(tmp_path, environ={})
    task = config.role("task")
    assert (task.rpm, task.tpm, task.input_price, task.output_price) == (600, 2_000_000, 0.05, 0.2)
    judge = config.role("judge")
    assert judge.rpm == 0.5
    assert (judge.tpm, judge.input_price, judge.output_price) == (None, None, None)  # its own model: not inherited


def test_rate_limits_and_prices_from_the_environment(tmp_path):
    write_config(tmp_path, '[models.task]\nmodel = "openai/x"\ninput_price = 1\noutput_price = 2\nrpm = 60\n')
    config = load_config(tmp_path, environ={"DATAGEN_TASK_RPM": "30", "DATAGEN_TASK_TPM": "90000",
                                            "DATAGEN_TASK_OUTPUT_PRICE": "2.5",
                                            "DATAGEN_JUDGE_INPUT_PRICE": "0", "DATAGEN_JUDGE_OUTPUT_PRICE": "0"})
    task = config.role("task")
    assert (task.rpm, task.tpm, task.input_price, task.output_price) == (30, 90_000, 1.0, 2.5)
    assert isinstance(task.tpm, int)
    judge = config.role("judge")  # the task's model with a price of its own: free
    assert (judge.model, judge.input_price, judge.output_price, judge.rpm) == ("openai/x", 0.0, 0.0, 30)


def test_a_judge_with_no_model_of_its_own_inherits_the_task_price_and_limits(tmp_path):
    write_config(tmp_path, '[models.task]\nmodel = "openai/x"\ninput_price = 1\noutput_price = 2\ntpm = 1000\n'
                           '[models.judge]\ntemperature = 0\n')
    judge = load_config(tmp_path, environ={}).role("judge")
    assert (judge.input_price, judge.output_price, judge.tpm) == (1.0, 2.0, 1000)


@pytest.mark.parametrize(("toml", "key"), [
    ("[models.task]\nrpm = 0\n", "models.task.rpm"),
    ("[models.task]\nrpm = -5\n", "models.task.rpm"),
    ("[models.judge]\ntpm = 0\n", "models.judge.tpm"),
    ("[models.task]\ntpm = 1.5\n", "models.task.tpm"),
    ('[models.task]\ntpm = "lots"\n', "models.task.tpm"),
    ("[models.task]\ninput_price = -0.1\noutput_price = 1\n", "models.task.input_price"),
    ("[models.prompt]\ninput_price = 1\noutput_price = -1\n", "models.prompt.output_price"),
    ('[models.task]\ninput_price = "free"\noutput_price = 1\n', "models.task.input_price"),
    ("[models.task]\nrpm = true\n", "models.task.rpm"),
    ("[models.task]\ntpm = true\n", "models.task.tpm"),
    ("[models.task]\nrpm = inf\n", "models.task.rpm"),
    ("[models.task]\ninput_price = inf\noutput_price = 1\n", "models.task.input_price"),
], ids=["rpm-zero", "rpm-negative", "tpm-zero", "tpm-fraction", "tpm-text", "input-price-negative",
        "output-price-negative", "input-price-text", "rpm-boolean", "tpm-boolean", "rpm-infinite",
        "input-price-infinite"])
def test_a_bad_rate_limit_or_price_is_a_one_line_error_naming_it(tmp_path, toml, key):
    path = write_config(tmp_path, toml)
    with pytest.raises(DatagenError) as exc:
        load_config(tmp_path, environ={})
    message = str(exc.value)
    assert message.startswith(f"{path}: {key}: ")
    assert "\n" not in message


@pytest.mark.parametrize(("variable", "key"), [("DATAGEN_TASK_RPM", "rpm"), ("DATAGEN_JUDGE_TPM", "tpm"),
                                               ("DATAGEN_TASK_INPUT_PRICE", "input_price")])
def test_a_bad_rate_limit_or_price_in_the_environment_names_it(tmp_path, variable, key):
    with pytest.raises(DatagenError) as exc:
        load_config(tmp_path, environ={variable: "-1"})
    message = str(exc.value)
    assert message.startswith("environment (DATAGEN_*): ") and key in message and "\n" not in message


@pytest.mark.parametrize(("toml", "environ", "missing"), [
    ("[models.task]\ninput_price = 1\n", {}, "models.task.output_price"),
    ("[models.judge]\noutput_price = 1\n", {}, "models.judge.input_price"),
    ("", {"DATAGEN_TASK_INPUT_PRICE": "1"}, "models.task.output_price"),
], ids=["input-alone", "output-alone", "input-alone-from-the-environment"])
def test_one_price_without_the_other_is_a_one_line_error_naming_the_missing_one(tmp_path, toml, environ, missing):
    write_config(tmp_path, toml)
    with pytest.raises(DatagenError) as exc:
        load_config(tmp_path, environ=environ)
    message = str(exc.value)
    assert f"{missing}: required when" in message and "\n" not in message


def test_one_price_in_the_file_and_the_other_in_the_environment_make_a_price(tmp_path):
    write_config(tmp_path, "[models.task]\ninput_price = 1\n")
    task = load_config(tmp_path, environ={"DATAGEN_TASK_OUTPUT_PRICE": "3"}).role("task")
    assert (task.input_price, task.output_price) == (1.0, 3.0)
