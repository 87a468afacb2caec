"""The batch engine: an LM that answers a run's requests from the run store, for provider batch jobs.

A `--batch` run (datagen.runs.batch drives it) runs each unfinished chunk, round by round, against an LM whose engine
answers only from the store: a request whose answer is stored gets it; one that is not stored yet is recorded and
raises `Deferred`, which ends that chunk's attempt for this round; one its job answered with an error raises
`BatchRequestError`. Nothing here calls a provider.

A request is keyed by the sha256 of its canonical JSON body (`request_key`, the line's `custom_id` in a batch
input file).
"""

import dataclasses
import hashlib
import json
import threading

import dspy
from dspy.lm15 import Response, response_to_events

from datagen.errors import DatagenError
from datagen.lm.errors import BatchRequestError, Deferred
from datagen.lm.roles import RoleModel, is_reasoning_model
from datagen.store import BatchReader, RunStore

# DSPy's client settings: they configure a connection, which a custom engine refuses.
_CLIENT_KEYS = {"api_key", "api_base", "base_url", "headers", "extra_headers", "timeout", "api_version",
                "azure_ad_token_provider", "organization", "project", "extra_query", "custom_llm_provider"}

_converter = None
_converter_lock = threading.Lock()


def _openai_chat():
    """lm15's OpenAI chat-completions adapter, used only to build request bodies (it sends nothing)."""
    global _converter
    with _converter_lock:
        if _converter is None:
            from dspy._vendor.lm15.providers.openai_chat import OpenAIChatLM

            _converter = OpenAIChatLM(api_key="unused")
        return _converter


def request_body(request) -> dict:
    """The OpenAI chat-completions request body (a JSON object) of a `dspy.lm15.Request`, as lm15's own
    converter writes it, with the model's name without its `openai/` prefix, and the answer's cap as
    `max_tokens` (which self-hosted servers honour and `max_completion_tokens` they ignore), except for OpenAI's
    reasoning models, which take only `max_completion_tokens`. Temperature, stop and response_format are kept."""
    body = json.loads(_openai_chat().build_request(request, stream=False).body)
    model = body.get("model") or request.model
    body["model"] = model.split("/", 1)[1] if model.startswith("openai/") else model
    cap = body.pop("max_completion_tokens", None)
    cap = body.pop("max_tokens", None) if cap is None else cap
    if cap is not None:
        body["max_completion_tokens" if is_reasoning_model(body["model"]) else "max_tokens"] = cap
    body.pop("stream", None)
    return body


def canonical(body: dict) -> str:
    """A request body's canonical JSON: keys sorted, no spaces, text as it is (not escaped)."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_key(text: str, salt: str = "") -> str:
    """A request's key, which is also its line's custom_id.

    Args:
        text: the request body's canonical JSON (`canonical`).
        salt: keys the request apart from the same body asked under another salt (a failed chunk retried); ""
            for none.

    Returns:
        The sha256 (hex) of `text`, preceded by `salt` and a newline when salted.
    """
    return hashlib.sha256(f"{salt}\n{text}".encode() if salt else text.encode()).hexdigest()


class RequestBook:
    """The batch engine's thread-safe view of the store: answers and errors are read through a `BatchReader` (a
    connection of its own), requests not seen before are collected in memory, under a lock, for the driver to
    write after the round (`take_new`). Usable from worker threads and event loops alike."""

    def __init__(self, reader: BatchReader, salt: str = ""):
        self._reader = reader
        self._salt = salt
        self._lock = threading.Lock()
        self._new: dict[str, str] = {}

    def salted(self, salt: str) -> "RequestBook":
        """The same book (store, new requests) keying requests with `salt`: a request asked again under another
        salt is a new request, not the answer stored for it (a failed chunk retried gets a fresh answer)."""
        book = RequestBook(self._reader, salt)
        book._lock, book._new = self._lock, self._new
        return book

    def answer(self, body: dict) -> Response:
        """The stored answer to `body` as an lm15 Response (usage included). Raises BatchRequestError when its job
        gave it an error, Deferred when it has no answer yet (recording it if it is new)."""
        text = canonical(body)
        key = request_key(text, self._salt)
        found = self._reader.lookup(key)
        if found is None:
            with self._lock:
                self._new.setdefault(key, text)
            raise Deferred(key)
        _, answer, kind, message = found
        if answer is not None:
            from dspy._vendor.lm15.providers.openai_chat import response_from_openai_chat

            return response_from_openai_chat(json.loads(answer), model=body.get("model"))
        if kind is not None:
            raise BatchRequestError(kind, message, key)
        raise Deferred(key)

    def take_new(self) -> list[tuple[str, str]]:
        """The requests recorded since the last call, as (key, body JSON) pairs, and forget them."""
        with self._lock:
            new = list(self._new.items())
            self._new.clear()  # in place: a salted book shares it
        return new


class BatchEngine:
    """DSPy custom engine (sync) answering from a `RequestBook`: see `RequestBook.answer` for what it raises."""

    def __init__(self, book: RequestBook):
        self.book = book

    def complete(self, request) -> Response:
        return self.book.answer(request_body(request))

    def stream(self, request):
        return response_to_events(self.complete(request))

    def close(self) -> None:
        pass


class AsyncBatchEngine:
    """DSPy custom engine (async) answering from a `RequestBook`, as `BatchEngine` does."""

    def __init__(self, book: RequestBook):
        self.book = book

    async def complete(self, request) -> Response:
        return self.book.answer(request_body(request))

    async def stream(self, request):
        for event in response_to_events(self.book.answer(request_body(request))):
            yield event

    async def aclose(self) -> None:
        pass


def check_batchable(model: RoleModel) -> None:
    """Refuse a model batch jobs cannot carry.

    Args:
        model: the task model of a `--batch` run.

    Raises:
        DatagenError: `model` is not an `openai/NAME` model (OpenAI's Batch API is the only one supported).
    """
    if not model.name.startswith("openai/"):
        raise DatagenError(f"batch jobs need an OpenAI model (openai/NAME, OpenAI's Batch API); {model.name} is not "
                           "one: run without --batch")


def batch_model(model: RoleModel, store: RunStore | None = None, *, book: RequestBook | None = None) -> RoleModel:
    """The same role model (adapter, context window, model name and sampling settings: temperature, max_tokens,
    stop...) with an LM whose engine answers from the run store's batch answers (`book`, else a new
    `RequestBook` on `store`), never calling the provider. DSPy's response cache is off for it.

    Raises DatagenError for a model batch jobs cannot carry (only `openai/NAME` models are).
    """
    check_batchable(model)
    if book is None:
        if store is None:
            raise ValueError("batch_model needs a store or a book")
        book = RequestBook(store.batch_reader())
    sampling = {key: value for key, value in model.lm.kwargs.items() if key not in _CLIENT_KEYS}
    if "max_completion_tokens" in sampling:  # DSPy's spelling for reasoning models; its constructor takes max_tokens
        sampling["max_tokens"] = sampling.pop("max_completion_tokens")
    sampling.pop("cache", None)
    lm = dspy.LM(model.name, engine=BatchEngine(book), async_engine=AsyncBatchEngine(book), cache=False,
                 num_retries=getattr(model.lm, "num_retries", 3), **sampling)
    return dataclasses.replace(model, lm=lm)
