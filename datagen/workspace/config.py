"""Workspace configuration: `datagen.toml`, overridden by environment variables, overridden by CLI flags.

```toml
[models.task]                    # runs the pipeline
model = "openai/gpt-4o-mini"
api_key_env = "OPENAI_API_KEY"   # the NAME of the variable holding the key; keys never go in this file

[models.judge]                   # scores outputs (metrics)
model = "openai/NAME"
api_base = "http://127.0.0.1:8000/v1"   # or a list of servers of the model: ["http://a:8000/v1", "http://b:8000/v1"]
input_price = 0.05               # US dollars per million tokens, for models litellm has no price for
output_price = 0.20
rpm = 600                        # LM calls a minute at most
tpm = 2000000                    # tokens a minute at most

[chunking]
max_tokens = 512
```

Environment: `DATAGEN_<ROLE>_<SETTING>`, e.g. `DATAGEN_TASK_MODEL`, `DATAGEN_JUDGE_API_BASE`; `known_variables` lists
every DATAGEN_ variable datagen reads, and `unknown_variables` names the others set.
"""

import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from datagen.text.chunking import DEFAULT_MAX_TOKENS
from datagen.text.sentences import AUTO, languages
from datagen.errors import ConfigError, DatagenError

CONFIG_FILE = "datagen.toml"
ROLES = ("task", "judge", "prompt")
Role = Literal["task", "judge", "prompt"]
_SECRET_KEYS = {"api_key", "key", "token", "secret", "password"}
ENV_PREFIX = "DATAGEN_"
WORKSPACE_VARIABLE = "DATAGEN_WORKSPACE"  # the default of --workspace (datagen.cli.options)
# Read by this repository's tests and Makefile, not by datagen: known all the same, so that the commands a test
# runs under `make test` (which sets them) warn of none.
TEST_VARIABLES = ("DATAGEN_BROWSER_TESTS", "DATAGEN_TRAINER_EXPORTS")


class ModelSettings(BaseModel):
    """How to reach the model behind one role. Unset fields fall back to the provider's defaults."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    api_base: str | list[str] | None = Field(None, description="the server's base URL, or a list of servers of the "
                                             "same model to spread the calls over (a comma-separated string too)")
    api_key_env: str | None = Field(None, description="name of the environment variable that holds the API key")
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, gt=0, description="cap on the tokens of one answer")
    context_window: int | None = Field(None, gt=0, description="for models litellm does not know")
    engine: Literal["auto", "lm15", "litellm"] | None = None
    timeout: float | None = Field(None, gt=0, description="seconds one call may take, wall clock, before it "
                                  "counts as timed out (and is retried)")
    num_retries: int | None = Field(None, ge=0, description="retries of a call that hit a rate limit, a server "
                                    "error, a timeout or a lost connection (DSPy's default: 3)")
    rpm: float | None = Field(None, gt=0, allow_inf_nan=False, description="LM calls a minute at most, spaced "
                              "evenly (`--rpm` on the command line overrides it)")
    tpm: int | None = Field(None, gt=0, description="tokens (prompt + completion) a minute at most (`--tpm` "
                            "overrides it)")
    input_price: float | None = Field(None, ge=0, allow_inf_nan=False, description="US dollars per million prompt "
                                      "tokens; with output_price, overrides litellm's bundled price (for "
                                      "self-hosted and unknown models)")
    output_price: float | None = Field(None, ge=0, allow_inf_nan=False, description="US dollars per million "
                                       "completion tokens; set together with input_price")
    cached_input_price: float | None = Field(None, ge=0, allow_inf_nan=False, description="US dollars per "
                                             "million cached prompt tokens (read from the provider's prompt "
                                             "cache); overrides litellm's cached rate; unset and unknown to "
                                             "litellm: cached tokens cost input_price")
    cooldown: float | None = Field(None, gt=0, allow_inf_nan=False, description="with several api_bases: seconds a "
                                   "server that failed a request is left out before it is tried again (default 10)")

    @field_validator("api_base", mode="before")
    @classmethod
    def _servers(cls, value):
        """A URL as it is; a list of URLs (or a comma-separated string of them), each a distinct http(s) URL; a
        list of one is that URL."""
        if isinstance(value, str) and "," in value:
            value = value.split(",")
        if value is None or isinstance(value, str):
            return value
        if not isinstance(value, list | tuple):
            raise ValueError(f"expected a URL or a list of URLs, got {type(value).__name__}")
        if not value:
            raise ValueError("an empty list: give at least one URL")
        urls, seen = [], {}
        for number, url in enumerate(value, 1):
            if not isinstance(url, str) or not url.strip():
                raise ValueError(f"server {number} of the list is {'empty' if isinstance(url, str) else repr(url)}: "
                                 "each must be a URL")
            url = url.strip()
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"server {number} of the list, {url!r}, is not an http(s) URL (e.g. "
                                 "http://10.0.0.5:8000/v1)")
            if (same := seen.get(url.rstrip("/"))) is not None:
                raise ValueError(f"{url} is listed twice (servers {same} and {number})")
            seen[url.rstrip("/")] = number
            urls.append(url)
        return urls[0] if len(urls) == 1 else urls

    @property
    def api_bases(self) -> tuple[str, ...]:
        """The role's servers: its api_base, or each of its list (none: the provider's own)."""
        if not self.api_base:
            return ()
        return (self.api_base,) if isinstance(self.api_base, str) else tuple(self.api_base)

    @field_validator("rpm", "tpm", "input_price", "output_price", "cached_input_price", mode="before")
    @classmethod
    def _not_a_flag(cls, value):
        # TOML's `rpm = true` would otherwise read as 1 call a minute.
        if isinstance(value, bool):
            raise ValueError("expected a number, got a boolean")
        return value

    def merged(self, override: "ModelSettings") -> "ModelSettings":
        return self.model_copy(update=override.model_dump(exclude_none=True))


class ChunkingSettings(BaseModel):
    """How inputs are cut into chunks."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int = Field(DEFAULT_MAX_TOKENS, ge=16, strict=True)
    language: str = Field(AUTO, description="the sentence splitter's rules: a pysbd language code, or \"auto\" "
                          "(picked by each paragraph's script)")

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str) -> str:
        if value not in languages():
            raise ValueError(f"unknown language {value!r}: one of {', '.join(languages())}")
        return value


class SplitSettings(BaseModel):
    """How a run's held-out test split is drawn (datagen.dataset.splits): the [splits] table."""

    model_config = ConfigDict(extra="forbid")

    test_fraction: float = Field(0.1, ge=0, lt=1, strict=True, description="the share of chunks (or of source "
                                 "files) held out of training; 0: none")
    by: Literal["chunk", "source"] = Field("chunk", description="draw chunks by their id, or whole source files")


class DiversityBarSettings(BaseModel):
    """The [metrics.PIPELINE.diversity_bar] table: the pipeline's diversity bar (`DIVERSITY_BAR` in
    metrics/PIPELINE.py, a datagen.dataset.quality.DiversityBar), key by key; a key left out keeps the module's."""

    model_config = ConfigDict(extra="forbid")

    opening_share: float | None = Field(None, gt=0, le=1, strict=True, description="an opening beginning this "
                                        "share of a field's texts or more (and 3 or more) breaks the bar")
    distinct_2: float | None = Field(None, ge=0, le=1, strict=True, description="a field's distinct-2 under this "
                                     "breaks the bar")
    fields: list[Literal["input", "output"]] | None = Field(None, description="the sample fields barred; [] for "
                                                             "no bar")


class MetricSettings(BaseModel):
    """How a pipeline's composite metric is made: which metrics count and how much, and the pass mark; and the
    diversity bar its samples are held to (reported by evaluate and optimize)."""

    model_config = ConfigDict(extra="forbid")

    weights: dict[str, Annotated[float, Field(strict=True)]] | None = None
    # The model metrics' weights (`datagen eval-model`), overriding the module's MODEL_WEIGHTS.
    model_weights: dict[str, Annotated[float, Field(strict=True)]] | None = None
    threshold: float | None = Field(None, ge=0, le=1, strict=True)
    # Other prose the stylometric metrics tell the author apart from, besides data/reference/ (e.g. other
    # authors of the same genre and period): files or folders, relative to the workspace.
    background: list[Path] = []  # pydantic copies a mutable default per instance
    diversity_bar: DiversityBarSettings | None = None


class Config(BaseModel):
    """A workspace's configuration: datagen.toml, overridden by DATAGEN_* environment variables (see `load_config`).

    Unknown keys are refused (extra="forbid"), at every level.

    Attributes:
        models: {role: ModelSettings}, the [models.ROLE] tables, for roles "task", "judge" and "prompt"; default {}.
            A role left out uses the provider's defaults; the judge and prompt roles fall back to the task
            model when they set none (see `role`).
        chunking: how inputs are cut into chunks, the [chunking] table (`max_tokens` per chunk, in tokens, default
            `DEFAULT_MAX_TOKENS`; `language`, default "auto").
        splits: how the held-out test split is drawn, the [splits] table (`test_fraction`, default 0.1; `by`,
            "chunk" or "source", default "chunk").
        metrics: {pipeline name: MetricSettings}, the [metrics.PIPELINE] tables: a composite's weights, the model
            metrics' weights (`datagen eval-model`), pass mark (in [0, 1]), background prose and diversity bar,
            overriding the pipeline's metrics module; default {}.
    """

    model_config = ConfigDict(extra="forbid")

    models: dict[Role, ModelSettings] = Field(default_factory=dict)
    chunking: ChunkingSettings = Field(default_factory=ChunkingSettings)
    splits: SplitSettings = Field(default_factory=SplitSettings)
    metrics: dict[str, MetricSettings] = Field(default_factory=dict)  # by pipeline name

    def role(self, role: Role) -> ModelSettings:
        """Settings for a role; the judge and prompt roles fall back to the task model when unset."""
        own = self.models.get(role, ModelSettings())
        if role != "task" and own.model is None:
            return self.models.get("task", ModelSettings()).merged(own)
        return own


def flag_settings(**flags) -> ModelSettings:
    """A role's settings given on the command line (`model=` for --model, `api_base=` for --api-base, ...); a bad
    value is a one-line DatagenError naming its flag."""
    try:
        return ModelSettings(**flags)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise ConfigError(f"--{str(error['loc'][0]).replace('_', '-')}: {error['msg']}") from None


def find_workspace(start: Path | None = None) -> Path:
    """The nearest folder, from `start` upwards, holding datagen.toml or a programs/ folder; else `start`.

    Args:
        start: the folder to begin at (resolved to an absolute path first); default None: the current folder.

    Returns:
        The workspace's folder (absolute): `start` or the nearest folder above it with datagen.toml or programs/;
        `start` itself when none has either.
    """
    start = Path(start or Path.cwd()).resolve()  # a str path too
    for folder in (start, *start.parents):
        if (folder / CONFIG_FILE).is_file() or (folder / "programs").is_dir():
            return folder
    return start


def _refuse_secrets(data: dict, where: str) -> None:
    models = data.get("models")
    if not isinstance(models, dict):
        return  # not a table: validation names the error
    for role, settings in models.items():
        if isinstance(settings, dict) and (found := _SECRET_KEYS.intersection(settings)):
            raise ConfigError(
                f"{where}: [models.{role}] sets {sorted(found)[0]!r}; keys never go in files: put the key in an "
                f"environment variable and name it with api_key_env")


def role_variable(role: str, setting: str) -> str:
    """The environment variable that sets a role's setting: `DATAGEN_<ROLE>_<SETTING>`, upper case.

    Args:
        role: "task", "judge" or "prompt".
        setting: a field of `ModelSettings`, e.g. "max_tokens".
    """
    return f"{ENV_PREFIX}{role.upper()}_{setting.upper()}"


def known_variables() -> tuple[str, ...]:
    """Every DATAGEN_ environment variable that is read: each role's settings (`role_variable`), the workspace
    (`WORKSPACE_VARIABLE`) and the test suite's (`TEST_VARIABLES`). The one list `unknown_variables` goes by,
    with the variables a role's api_key_env names."""
    return (*(role_variable(role, name) for role in ROLES for name in ModelSettings.model_fields), WORKSPACE_VARIABLE,
            *TEST_VARIABLES)


def unknown_variables(environ: Mapping[str, str] | None = None, config: Config | None = None) -> list[str]:
    """One line for each variable named DATAGEN_... (in any case) that is set and not read: a mistyped name
    (DATAGEN_TASK_TIMOUT) would otherwise be ignored without a word. Read are the `known_variables` and the key
    variables a role's api_key_env names (in `config` or in `environ`). Each line names the variable, says it is
    ignored and names the closest known variable (difflib); a name ending in KEY, TOKEN, SECRET or PASSWORD is
    pointed to api_key_env instead, unless it is a near miss of a known one (DATAGEN_TASK_MAX_TOKEN). Values are never quoted (one may be a key).

    Args:
        environ: the environment variables; default None: `os.environ`.
        config: the workspace's configuration, whose api_key_env names count as read; default None: only those
            set in `environ` (DATAGEN_<ROLE>_API_KEY_ENV).

    Returns:
        The lines, in the order of the variables' names; [] when every DATAGEN_ variable set is read.
    """
    environ = os.environ if environ is None else environ
    known = known_variables()
    holders = {environ.get(role_variable(role, "api_key_env")) for role in ROLES}
    holders |= {settings.api_key_env for settings in (config.models.values() if config else ())}
    # Matched on what follows the prefix, which every known name shares and would make any name look close.
    rests = {variable.removeprefix(ENV_PREFIX): variable for variable in known}
    lines = []
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX) or name in known or name in holders:
            continue
        ignored = f"{name} is not a variable datagen reads: it is ignored"
        rest = name.upper().removeprefix(ENV_PREFIX)
        # A near miss of a known name (MAX_TOKEN) is a typo; a key-like name otherwise holds a key (API_KEY with
        # the key in it is no typo of API_KEY_ENV, which takes a variable's name).
        close = [match for match in difflib.get_close_matches(rest, rests, n=1, cutoff=0.85)
                 if not match.endswith("API_KEY_ENV")]
        if not close and rest.rsplit("_", 1)[-1].lower() in _SECRET_KEYS:
            setting = difflib.get_close_matches(rest, [f"{role.upper()}_API_KEY_ENV" for role in ROLES], n=1,
                                                cutoff=0)[0]
            lines.append(f"{ignored} (a key is read from the variable api_key_env names: set {ENV_PREFIX}{setting} "
                         "to its name)")
            continue
        close = close or difflib.get_close_matches(rest, rests, n=1, cutoff=0.6)
        nearest = rests[(close or difflib.get_close_matches(rest, rests, n=1, cutoff=0))[0]]
        lines.append(f"{ignored} (did you mean {nearest}?)" if close else
                     f"{ignored} (the nearest known is {nearest}; datagen reads DATAGEN_<ROLE>_<SETTING> and "
                     f"{WORKSPACE_VARIABLE}: see docs/config.md)")
    return lines


def _from_env(environ: Mapping[str, str]) -> dict:
    models: dict[str, dict] = {}
    for role in ROLES:
        for name in ModelSettings.model_fields:
            value = environ.get(role_variable(role, name))
            if value:
                models.setdefault(role, {})[name] = value
    return {"models": models}


def _validated(data: dict, where: str) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        location = ".".join(str(part) for part in error["loc"])
        raise ConfigError(f"{where}: {location}: {error['msg']}") from None


def load_config(workspace: Path | None = None, environ: dict[str, str] | None = None) -> Config:
    """The workspace's config file merged with DATAGEN_* environment variables (which win).

    Args:
        workspace: the workspace folder whose datagen.toml is read (a missing file is an empty config); default
            None: `find_workspace()` from the current folder.
        environ: the environment variables to read `DATAGEN_<ROLE>_<SETTING>` from; default None: `os.environ`.

    Returns:
        The validated `Config`, each role's environment settings merged over the file's.

    Raises:
        ConfigError: datagen.toml is not valid TOML (or not UTF-8); a [models.ROLE] table of the file sets a key
            (api_key, key, token, secret, password: keys go in the variable named by api_key_env); a setting of the
            file or of the environment is invalid (the message names the file or "environment (DATAGEN_*)" and the
            setting); or a role sets one of input_price and output_price without the other, or a
            cached_input_price above its input_price.
    """
    workspace = Path(workspace) if workspace else find_workspace()
    environ = os.environ if environ is None else environ
    path = workspace / CONFIG_FILE
    data: dict = {}
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        _refuse_secrets(data, str(path))
    config = _validated(data, str(path))
    env = _validated(_from_env(environ), "environment (DATAGEN_*)")
    for role, settings in env.models.items():
        config.models[role] = config.models.get(role, ModelSettings()).merged(settings)
    for role, settings in config.models.items():
        if (missing := unpriced_half(settings)) is not None:
            where = path if role not in env.models else f"{path} with the environment (DATAGEN_*)"
            raise ConfigError(f"{where}: models.{role}.{missing}: required when "
                               f"{'input_price' if missing == 'output_price' else 'output_price'} is set")
        if (settings.cached_input_price is not None and settings.input_price is not None
                and settings.cached_input_price > settings.input_price):
            # A provider's prompt cache discounts a token (OpenAI 50-90%, Anthropic 90%): never dearer, so a typo.
            where = path if role not in env.models else f"{path} with the environment (DATAGEN_*)"
            raise ConfigError(f"{where}: models.{role}.cached_input_price ({settings.cached_input_price:g}) is above "
                               f"input_price ({settings.input_price:g}): a cached prompt token costs at most an "
                               "uncached one")
    return config


def unpriced_half(settings: ModelSettings) -> str | None:
    """The name of the price field a role leaves unset while setting the other ("input_price" or
    "output_price"); None when both or neither are set. A price needs both halves."""
    if (settings.input_price is None) != (settings.output_price is None):
        return "input_price" if settings.input_price is None else "output_price"
    return None
