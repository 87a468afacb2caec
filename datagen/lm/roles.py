"""Models by role: `task` runs the pipeline, `judge` scores outputs, `prompt` proposes instructions.

Each role is a model string dspy/litellm understands (`openai/gpt-4o-mini`, `ollama_chat/llama3.2`, `openai/NAME`
plus `api_base` for any OpenAI-compatible server). With no model configured, the embedded offline model runs.
API keys are read from environment variables at call time and never written anywhere.
"""

import dataclasses
import logging
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import dspy

from datagen.errors import ConfigError, DatagenError, ModelUnreachable
from datagen.lm.adapters import ChatAdapter, DescribedJSONAdapter
from datagen.lm.hooks import install as install_hooks
from datagen.lm.local import CONTEXT_WINDOW, EMBEDDED_MODELS, LOCAL_MODEL, local_lm
from datagen.lm.names import remember_configured
# Moved to datagen.lm.names; kept here until every importer takes it from the package face, datagen.lm.
from datagen.lm.names import track_usage  # noqa: F401
from datagen.lm.servers import BOARD, DEFAULT_COOLDOWN, ServerSet, servers_of, spread
from datagen.util.redaction import remember_key
from datagen.workspace.config import Config, ModelSettings, Role, role_variable

log = logging.getLogger(__name__)


@dataclass
class RoleModel:
    """A role's ready-to-use model: the LM, the adapter that formats prompts for it, and what is known of it.

    Making one, or unpickling one (in a Ray actor), installs datagen's hooks into DSPy (`datagen.lm.hooks.install`,
    once per process), which its calls need: the role's timeout on each attempt, the rate gate, the spread over
    several servers.

    Args:
        role: "task", "judge" or "prompt".
        lm: the dspy.LM its calls go to.
        adapter: the DSPy adapter that formats its prompts and parses its answers.
        context_window: the model's context window in tokens; None when unknown.
        configured: the model string as the user wrote it, when the LM is addressed by another (see
            `build_role_model`): it names the model in reports, run stores and prices.
        default_cap: True when the LM's max_tokens is not the user's but datagen's default for the role (see
            `bounded`).
    """

    role: Role
    lm: dspy.LM
    adapter: dspy.Adapter
    context_window: int | None
    configured: str | None = None
    default_cap: bool = False

    def __post_init__(self):
        install_hooks()

    def __setstate__(self, state: dict) -> None:
        # Unpickled in another process (a Ray actor, a worker process), which never made it: its calls need the
        # hooks there too.
        install_hooks()
        self.__dict__.update(state)

    @property
    def name(self) -> str:
        """The model's name as the user configured it."""
        return self.configured or self.lm.model

    def context(self, **settings):
        """`with model.context(): program(...)` runs DSPy calls against this model (plus other settings)."""
        return dspy.context(lm=self.lm, adapter=self.adapter, **settings)

    def with_settings(self, **settings) -> "RoleModel":
        """The same model with other request settings, e.g. `temperature=0.7` (the LM is copied, not changed)."""
        return dataclasses.replace(self, lm=self.lm.copy(**settings),
                                   default_cap=self.default_cap and "max_tokens" not in settings)

    @property
    def asynchronous(self) -> bool:
        """Whether a program's `aforward` runs with it (datagen.runs.runner; else its `forward` does): a dspy.LM
        on DSPy's native engine (`engine = "lm15"`, or the default for a provider it serves: NATIVE_PROVIDERS), or a
        custom engine given with its `async_engine`; a BaseLM of the caller's own that overrides `aforward`. Not on
        litellm's route: its async path loses the retries of a request a server refused or let time out (the
        first chunks of tests/test_faults.py's fault mix all failed there, none on its sync path)."""
        lm = self.lm
        if not isinstance(lm, dspy.LM):
            return type(lm).aforward is not dspy.BaseLM.aforward
        if not isinstance(lm.engine, str):
            return lm._async_engine_spec is not None
        return lm.engine == "lm15" or (lm.engine == "auto" and lm.model.split("/")[0] in NATIVE_PROVIDERS)

    @property
    def max_tokens(self) -> int | None:
        """The cap on one answer's tokens its requests carry (None: none, the server's default)."""
        return self.lm.kwargs.get("max_tokens") or self.lm.kwargs.get("max_completion_tokens")


# The providers DSPy 3.4's native engine (lm15) serves itself; others go through litellm under engine "auto".
NATIVE_PROVIDERS = ("openai", "hosted_vllm", "anthropic", "gemini", "xai")
# The cap on one answer's tokens for a role that sets no max_tokens (see `bounded`). Without a cap a self-hosted
# server generates until the model stops or its context ends: a rambling model held one call 5 minutes (2,380
# tokens, issue 22). A task answer carries its chunk's content about once: a plain rewrite of the shared parallel
# Bible pairs is 0.95x its passage's tokens (median; 1.18x at most over 220 pairs, both plain versions), and
# SmolLM2's tokenizer counts 1.00-1.05x tiktoken's o200k_base (the chunk budget's) on English. Twice the chunk
# leaves room for tokenizers that count more (other scripts, smaller vocabularies) and several outputs (questions
# and answers); SCAFFOLD_TOKENS is for the output fields' markers. A judge answers a sentence or two and a rating
# (what datagen's judge signatures ask for). The prompt role writes instructions (MIPROv2, COPRO, GEPA's reflection).
TASK_TOKENS_PER_CHUNK_TOKEN = 2
SCAFFOLD_TOKENS = 256
JUDGE_MAX_TOKENS = 512
PROMPT_MAX_TOKENS = 2048
# DSPy refuses a smaller cap for OpenAI's reasoning models: their hidden reasoning counts against it.
REASONING_MIN_TOKENS = 16_000


def default_max_tokens(role: Role, chunk_tokens: int | None = None) -> int:
    """The cap datagen sets on one answer of `role` when its config sets no max_tokens: for the task role,
    TASK_TOKENS_PER_CHUNK_TOKEN x `chunk_tokens` (the largest chunk it is given, in tiktoken o200k_base tokens,
    required for it) + SCAFFOLD_TOKENS; JUDGE_MAX_TOKENS for the judge, PROMPT_MAX_TOKENS for the prompt role.
    Raises ValueError for a task role without `chunk_tokens`."""
    if role == "task":
        if chunk_tokens is None:
            raise ValueError("the task role's cap depends on the chunk: give chunk_tokens")
        return TASK_TOKENS_PER_CHUNK_TOKEN * chunk_tokens + SCAFFOLD_TOKENS
    return JUDGE_MAX_TOKENS if role == "judge" else PROMPT_MAX_TOKENS


_WHY = {"judge": "a judge answers a sentence or two and a rating", "prompt": "room for the instructions an "
        "optimizer proposes"}


def is_reasoning_model(model: str) -> bool:
    """Whether `model` (with or without its provider prefix) is one of OpenAI's reasoning models (o1, o3, o4-mini,
    gpt-5...), which take `max_completion_tokens`, not `max_tokens`, as DSPy tells them."""
    try:
        from dspy.clients.lm import _is_openai_reasoning_model
    except ImportError:  # a later DSPy without the helper
        import re

        return re.match(r"^(o\d|gpt-5(?!.*-chat))", model.split("/")[-1].lower()) is not None
    return _is_openai_reasoning_model(model)


_WARNED: set[tuple] = set()  # the warnings of `_warn_once` given in this process, by key
_WARNED_LOCK = threading.Lock()


def _warn_once(key: tuple, message: str, *args) -> None:
    """Log `message` % `args` as a warning, the first time only that `key` is given in this process."""
    with _WARNED_LOCK:
        if key in _WARNED:
            return
        _WARNED.add(key)
    log.warning(message, *args)


def bounded(model: RoleModel, cap: int, why: str = "") -> RoleModel:
    """`model` with every answer capped at `cap` tokens, when its user set no cap: its max_tokens unset, or set
    by an earlier call of this function to less (larger chunks get a larger cap; smaller ones keep it, so that the
    requests, and DSPy's cache keys, stay the same). A model with a cap of the user's (datagen.toml,
    DATAGEN_<ROLE>_MAX_TOKENS, a dspy.LM's max_tokens; the embedded model's is always set) is returned as it is.
    `why` (e.g. "twice the 512-token chunk + 256") says in the warning where `cap` comes from.

    The cap goes on the wire as the model's engine spells it (see docs/config.md, `engine`), at least
    REASONING_MIN_TOKENS for OpenAI's reasoning models. Logs one warning per role, model and cap in a process,
    saying the cap and how to set one."""
    if model.max_tokens is not None and not model.default_cap:
        return model
    reasoning = is_reasoning_model(model.lm.model)
    if reasoning:
        cap = max(cap, REASONING_MIN_TOKENS)
    if model.default_cap and model.max_tokens >= cap:
        return model
    why = "DSPy's least for a reasoning model" if reasoning else why
    _warn_once(("cap", model.role, model.name, cap), "%s (%s role) has no max_tokens: its answers are capped at %s "
               "tokens%s; to choose the cap, set max_tokens in [models.%s] of datagen.toml or %s", model.name,
               model.role, f"{cap:,}", f" ({why})" if why else "", model.role, role_variable(model.role, "max_tokens"))
    lm = model.lm.copy(**{"max_completion_tokens" if reasoning else "max_tokens": cap})
    return dataclasses.replace(model, lm=lm, default_cap=True)


def _known_context_window(model: str) -> int | None:
    import litellm

    try:
        info = litellm.get_model_info(model)
    except Exception:  # litellm raises a bare Exception for models missing from its (bundled) catalogue
        return None
    return info.get("max_input_tokens") or info.get("max_tokens")


def _missing_keys(model: str) -> list[str]:
    """The variables litellm says `model` needs and the environment lacks. One set to "" (or blanks) counts as
    unset: litellm counts it as a key, and every call then fails for want of credentials, after its retries."""
    import litellm

    with _ENVIRON_LOCK:
        blank = {name: value for name, value in os.environ.items() if not value.strip()}
        for name in blank:  # for the moment of the check only: litellm reads os.environ itself
            del os.environ[name]
        try:
            return litellm.validate_environment(model=model).get("missing_keys") or []
        finally:
            os.environ.update(blank)


_ENVIRON_LOCK = threading.Lock()


def _check_key(settings: ModelSettings, role: Role) -> dict:
    if settings.api_key_env:
        key = os.environ.get(settings.api_key_env, "").strip()
        if not key:
            raise ConfigError(f"{settings.api_key_env} is not set or empty (the API key of the {role} model "
                               f"{settings.model})")
        remember_key(key)  # a provider's error may quote it back
        return {"api_key": key}
    missing = _missing_keys(settings.model)
    if not missing:
        return {}
    if settings.api_base is None:
        # Hosted providers need a key: failing here costs nothing, failing on the first call costs retries.
        raise ConfigError(f"{missing[0]} is not set or empty (needed by the {role} model {settings.model})")
    # A self-hosted server usually needs no key, but litellm's OpenAI client refuses to send a request
    # without one: give it a placeholder, which is no secret.
    return {"api_key": "no-key"}


def build_role_model(settings: ModelSettings, role: Role) -> RoleModel:
    """The model `settings` describe, for `role`, as it is (no default cap: see `role_model`).

    Raises ConfigError for a model string without a provider prefix or with an unknown provider, or an API key
    that is needed and not set."""
    if settings.model is None or settings.model in EMBEDDED_MODELS:
        lm = local_lm(settings.model or LOCAL_MODEL, max_tokens=settings.max_tokens, temperature=settings.temperature)
        return _embedded(role, lm, settings.context_window)
    if "/" not in settings.model:
        raise ConfigError(f"model {settings.model!r} for the {role} role needs a provider prefix, "
                           "e.g. openai/gpt-4o-mini or ollama_chat/llama3.2")
    import litellm

    provider = settings.model.split("/", 1)[0]
    if provider not in litellm.provider_list:  # else the first call fails, after the run store is opened
        raise ConfigError(f"model {settings.model!r} for the {role} role: unknown provider {provider!r} "
                           "(e.g. openai, anthropic, ollama_chat)")
    kwargs = _check_key(settings, role)
    bases = settings.api_bases
    if bases:
        kwargs["api_base"] = bases[0]  # several: the others are reached through the same engine (datagen.lm.servers)
    if settings.timeout:
        kwargs["timeout"] = settings.timeout
    if settings.num_retries is not None:
        kwargs["num_retries"] = settings.num_retries
    wire = settings.model
    if bases and provider == "openai" and settings.engine is None:
        # A self-hosted OpenAI-compatible server. DSPy's native engine costs a quarter of litellm's client CPU a
        # call (3.1 against 15-17 ms, bench/README.md), but in OpenAI's dialect it sends `max_completion_tokens`,
        # which llama.cpp's server and older vLLM ignore (they then generate to the end of the context). Its vLLM
        # dialect is OpenAI's chat API with `max_tokens`, which they all honour.
        wire = "hosted_vllm/" + settings.model.split("/", 1)[1]
        if "api_key" not in kwargs:  # litellm would have sent OPENAI_API_KEY; the vLLM dialect reads another name
            kwargs["api_key"] = os.environ["OPENAI_API_KEY"].strip()
            remember_key(kwargs["api_key"])
    elif bases and provider == "openai" and settings.engine != "litellm" and not is_reasoning_model(settings.model):
        # Chosen outright (a gateway to OpenAI, say), but a cap llama-cpp-python's server ignores: a SmolLM2 answer
        # capped at 768 ran to the end of its 2,048-token context, 1,645 tokens (docs/config.md, Answer caps).
        _warn_once(("dialect", role, settings.model), "%s (%s role): engine = %r speaks OpenAI's dialect, which sends "
                   "the answer's cap as max_completion_tokens: llama.cpp's server (and older vLLM) ignore it and "
                   "answer to the end of their context; for such a server leave engine unset or set it to litellm",
                   settings.model, role, settings.engine)
    lm = dspy.LM(wire, temperature=settings.temperature, max_tokens=settings.max_tokens,
                 engine=settings.engine or "auto", **kwargs)
    if len(bases) > 1:
        spread(lm, ServerSet(role, bases, settings.cooldown or DEFAULT_COOLDOWN))
    window = settings.context_window or _known_context_window(settings.model)
    model = RoleModel(role, lm, ChatAdapter(), window, configured=settings.model if wire != settings.model else None)
    remember_configured(model)
    return model


def check_reachable(model: RoleModel, timeout: float = 5.0) -> None:
    """Fail fast, before any chunk is read, when a self-hosted server's address does not answer, or an embedded
    model's weights are not installed: otherwise each chunk would spend its retries (tens of seconds) on a
    connection that cannot succeed, or fail on its own.

    Args:
        model: the role model; one without an api_base (a hosted provider, the embedded model) is not probed.
        timeout: seconds a TCP connection to each server may take.

    Raises:
        DatagenError: an embedded model whose package (or llama-cpp-python) is missing, naming the command that
            installs it.
        ModelUnreachable: nothing answers at its api_base, or at any of its servers. A model with several
            servers fails only when none answers; those that do not are left out until their cooldown ends
            (logged).
    """
    if model.lm.model in EMBEDDED_MODELS:
        EMBEDDED_MODELS[model.lm.model].gguf()
        return
    pool = servers_of(model.lm)
    api_base = model.lm.kwargs.get("api_base")
    if pool is None:
        if api_base and (error := _unreachable(api_base, timeout)):
            raise ModelUnreachable(f"cannot reach {model.name} at {api_base}: {error}")
        return
    with ThreadPoolExecutor(max_workers=min(len(pool.urls), 16)) as probes:
        errors = dict(zip(pool.urls, probes.map(lambda url: _unreachable(url, timeout), pool.urls)))
    down = {url: error for url, error in errors.items() if error}
    if len(down) == len(pool.urls):
        url, error = next(iter(down.items()))
        raise ModelUnreachable(f"cannot reach {model.name} at any of its {len(pool.urls)} servers: {url}: {error}")
    for url, error in down.items():
        log.warning("%s: the server at %s does not answer (%s): left out for %g s, then tried again", model.name,
                    url, error, pool.cooldown)
        BOARD.take_out(url, f"does not answer: {error}", pool.cooldown)


def _unreachable(api_base: str, timeout: float) -> str | None:
    """Why nothing answers a TCP connection at `api_base`'s host and port; None when something does."""
    url = urlsplit(api_base)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as exc:
        return str(exc.strerror or exc)
    return None


def role_model(config: Config, role: Role) -> RoleModel:
    """The `role`'s model as the config sets it.

    A role the config leaves unset falls back as `Config.role` says, and at the end to the embedded model. A judge
    or prompt role without max_tokens gets `default_max_tokens`' cap (`bounded`); the task role's depends on the
    chunk: see `datagen.runs.bound_answers`.

    Args:
        config: the workspace's configuration (`datagen.load_config`).
        role: "task", "judge" or "prompt".

    Returns:
        The role's model, ready to run (its API key read from the environment, its servers known).

    Raises:
        ConfigError: the role's model string has no provider prefix or an unknown provider, or its API key
            variable is not set (or empty).
    """
    model = build_role_model(config.role(role), role)
    return model if role == "task" else bounded(model, default_max_tokens(role), _WHY[role])


def _embedded(role: Role, lm: dspy.LM, context_window: int | None = None, adapter: dspy.Adapter | None = None):
    # The JSON adapter sends the signature's schema, which the engine turns into a decoding grammar; described in
    # words, not as a template a tiny model copies (DescribedJSONAdapter).
    return RoleModel(role, lm, adapter or DescribedJSONAdapter(), context_window or CONTEXT_WINDOW)


def as_role_model(model: "RoleModel | dspy.LM", role: Role = "task") -> RoleModel:
    """`model` as a RoleModel.

    Args:
        model: a RoleModel, returned as it is; or a dspy.LM, given the adapter DSPy is set to use (else datagen's
            ChatAdapter; for an embedded model, `local_lm`'s, the DescribedJSONAdapter it is configured with) and its
            context window as litellm's catalogue knows it (an embedded model's: CONTEXT_WINDOW; else unknown).
        role: the role a dspy.LM plays.

    Returns:
        The role model.

    Raises:
        DatagenError: `model` is neither.
    """
    if isinstance(model, RoleModel):
        return model
    if not isinstance(model, dspy.BaseLM):
        raise DatagenError(f"model {model!r}: expected a dspy.LM or a datagen RoleModel")
    if model.model in EMBEDDED_MODELS:
        return _embedded(role, model, adapter=dspy.settings.adapter)
    return RoleModel(role, model, dspy.settings.adapter or ChatAdapter(), _known_context_window(model.model))


def task_model(config: Config, model: "RoleModel | dspy.LM | None" = None) -> RoleModel:
    """The model that runs a program.

    Args:
        config: the workspace's configuration, whose task role is the last resort.
        model: the model to use, a RoleModel or a dspy.LM (see `as_role_model`); None: the LM set by
            `dspy.configure(lm=...)` or `dspy.context(lm=...)`, else the config's task role (by default the
            embedded model).

    Returns:
        The task's role model.

    Raises:
        ConfigError: the config's task role cannot be built (see `role_model`).
        DatagenError: `model` is neither a RoleModel nor a dspy.LM.
    """
    if model is not None:
        return as_role_model(model)
    if dspy.settings.lm is not None:
        return as_role_model(dspy.settings.lm)
    return role_model(config, "task")


def judge_model(config: Config) -> RoleModel:
    """The judge role's model, at temperature 0 unless configured otherwise: the same sample gets the same
    verdict, and a repeated verdict comes from DSPy's cache. Without a max_tokens of its own or inherited from the
    task role, its answers are capped at JUDGE_MAX_TOKENS (`bounded`).

    Args:
        config: the workspace's configuration.

    Returns:
        The judge's role model.

    Raises:
        ConfigError: the judge's model cannot be built (see `role_model`).
    """
    settings = config.role("judge")
    own = config.models.get("judge")
    # Only the judge's own setting counts: a judge falling back to the task model must not take its temperature.
    if own is None or own.temperature is None:
        settings = settings.model_copy(update={"temperature": 0.0})
    return bounded(build_role_model(settings, "judge"), default_max_tokens("judge"), _WHY["judge"])
