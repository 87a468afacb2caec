"""Deterministic stand-ins for a model, reused by the tests and the benchmarks.

`answer()` reads a DSPy prompt the way a model would: it finds the output fields the prompt asks for, and the
input fields' values, and answers every output field in the format the adapter asked for (ChatAdapter's
`[[ ## field ## ]]` markers, or a JSON object). The answer is a deterministic function of the inputs.

`FakeEngine` serves it in process as a DSPy custom engine; `FakeOpenAIServer` serves it over real HTTP as an
OpenAI-compatible `/v1/chat/completions` endpoint on 127.0.0.1, with a fixed latency per request, and the
faults a real server has (`Fault`), scripted per request. It also serves OpenAI's Batch API (`/v1/files`,
`/v1/batches`), answering each line of a batch as `/v1/chat/completions` would (see `FakeOpenAIServer`).
"""

import email.parser
import hashlib
import itertools
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dspy
from dspy.lm15 import Message, Response, TextPart, Usage, response_to_events

_OUTPUT_FIELDS = re.compile(r"Your output fields are:\n((?:\d+\. `\w+`.*\n?)+)")
_FIELD = re.compile(r"\d+\. `(\w+)`")
_INPUT_VALUE = re.compile(r"\[\[ ## (\w+) ## \]\]\n(.*?)(?=\n\n\[\[ ## |\n\nRespond with|\Z)", re.S)


def plain(text: str) -> str:
    """The fake model's 'rephrase': the passage's words, lower-cased, without punctuation, the middle two of every
    four swapped and the last of every four replaced by "plain" (one added to a passage of fewer than four words).
    (Reworded: the passage's own words in another order, or without their punctuation, are a copy of it, which the
    pipelines drop, see datagen/text/degenerate.py.)"""
    words = re.findall(r"[\w’']+", text.lower())
    for i in range(1, len(words) - 1, 4):
        words[i], words[i + 1] = words[i + 1], words[i]
    words = ["plain" if i % 4 == 3 else word for i, word in enumerate(words)]
    return " ".join(words if len(words) >= 4 else [*words, "plain"])


class Unparseable(Exception):
    """Raised by a `respond` function: the fake model then answers with text no adapter can parse."""


@dataclass(frozen=True)
class FromInputs:
    """A `by_field` answer made from every input value of the prompt ({field: value}), not only the first."""

    answer: Callable[[dict[str, str]], str]


def chat_format(values: dict[str, str]) -> str:
    """Output field values as DSPy's ChatAdapter asks for them: `[[ ## field ## ]]` headers, then the end marker."""
    return "".join(f"[[ ## {name} ## ]]\n{value}\n\n" for name, value in values.items()) + "[[ ## completed ## ]]"


def answer(system: str, user: str, respond=plain, by_field: dict | None = None,
           layout: Callable[[dict[str, str]], str] | None = None) -> str:
    """Answer a DSPy-formatted prompt: every requested output field gets `respond(first input value)`, or
    `by_field[name](first input value)` for the fields named there (`by_field[name].answer(input values)` for a
    `FromInputs`). A ChatAdapter prompt is answered `layout(values)` when given (a model with habits of its own:
    reasoning first, markers out of place), else `chat_format(values)`."""
    match = _OUTPUT_FIELDS.search(system)
    fields = _FIELD.findall(match.group(1)) if match else ["answer"]
    inputs = dict(_INPUT_VALUE.findall(user))
    source = next(iter(inputs.values()), user)
    by_field = by_field or {}

    def value(name: str) -> str:
        made = by_field.get(name, respond)
        return made.answer(inputs) if isinstance(made, FromInputs) else made(source)

    try:
        values = {name: value(name) for name in fields}
    except Unparseable:
        return "Sorry, I would rather not."
    if "JSON object" in user or "JSON object" in system:
        return json.dumps(values)
    return (layout or chat_format)(values)


def _split(messages: list[dict]) -> tuple[str, str]:
    system = "\n".join(m["content"] for m in messages if m["role"] == "system")
    user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    return system, user


class FakeEngine:
    """A DSPy custom engine answering with `answer()`; counts its calls."""

    def __init__(self, respond=plain, fail_after: int | None = None, by_field: dict | None = None):
        self.respond = respond
        self.by_field = by_field
        self.calls = 0
        self.fail_after = fail_after
        self._lock = threading.Lock()

    def complete(self, request) -> Response:
        with self._lock:
            self.calls += 1
            if self.fail_after is not None and self.calls > self.fail_after:
                raise RuntimeError(f"fake engine stopped after {self.fail_after} calls")
        system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system or ())
        user = next((m.text for m in reversed(request.messages) if m.role == "user"), "")
        text = answer(system or "", user or "", self.respond, self.by_field)
        return Response(id=None, model="fake", message=Message.assistant([TextPart(text)]), finish_reason="stop",
                        usage=Usage(input_tokens=len(user.split()), output_tokens=len(text.split())))

    def stream(self, request):
        return response_to_events(self.complete(request))

    def close(self) -> None:
        pass


def fake_lm(engine: FakeEngine | None = None) -> dspy.LM:
    return dspy.LM("fake/model", engine=engine or FakeEngine(), cache=False)


@dataclass(frozen=True)
class Fault:
    """What the fake server does instead of answering well: see the constants below."""

    kind: str  # "status", "hang", "reset", "truncated", "malformed", "empty" or "trickle"
    status: int = 0
    retry_after: float | None = None  # seconds, sent as Retry-After with a status
    message: str | None = None  # the error's message with a status


def status(code: int, retry_after: float | None = None, message: str | None = None) -> Fault:
    """Fail with HTTP `code` (429, 500, 503...), with a Retry-After header and an error message when given."""
    return Fault("status", code, retry_after, message)


HANG = Fault("hang")  # answer nothing until the server stops: the client times out
RESET = Fault("reset")  # close the connection without answering (a TCP reset)
TRUNCATED = Fault("truncated")  # the answer cut off half-way, with finish_reason "length"
MALFORMED = Fault("malformed")  # text no adapter can parse
EMPTY = Fault("empty")  # an empty message
TRICKLE = Fault("trickle")  # a good answer whose body arrives one byte every TRICKLE_GAP seconds
TRICKLE_GAP = 0.5


@dataclass
class Served:
    """One request as the fake server saw it: what it answered, and the how-manieth identical request it was."""

    at: float  # time.monotonic() on arrival
    source: str  # the prompt's first input value: the chunk's text, for a pipeline's first step
    attempt: int  # 0 for the first request with these exact messages, 1 for its first retry, ...
    fault: Fault | None


class PromptCache:
    """A provider's automatic prompt caching, as OpenAI reports it: a request's cached tokens are the longest prefix
    of its prompt that an earlier request's prompt shares, rounded down to `minimum` + a multiple of `step` tokens
    (0 below `minimum`; OpenAI's are 1024 and 128). A prompt's tokens are the words (split on whitespace) of each
    message's role and content, in order. Thread-safe."""

    def __init__(self, minimum: int = 64, step: int = 16):
        self.minimum, self.step = minimum, step
        self._prefixes: set[bytes] = set()  # digests of the prefixes seen, at each length a cached count can take
        self._lock = threading.Lock()

    @staticmethod
    def tokens(messages: list[dict]) -> list[str]:
        """The prompt's tokens, as this cache counts them (and the fake server's prompt_tokens with it)."""
        return [word for m in messages for word in f"{m.get('role', '')} {_content(m)}".split()]

    def cached(self, tokens: list[str]) -> int:
        """How many of `tokens` (a prompt) are cached, remembering the prompt for the requests after it."""
        digest, boundaries = hashlib.sha256(), []
        for length in range(self.minimum, len(tokens) + 1, self.step):
            start = length - self.step if boundaries else 0
            digest.update("\0".join(tokens[start:length]).encode() + b"\1")
            boundaries.append((length, digest.digest()))
        with self._lock:
            hit = 0
            for length, key in boundaries:  # a prefix seen means every shorter one was seen too
                if key not in self._prefixes:
                    break
                hit = length
            self._prefixes.update(key for _, key in boundaries)
        return hit


def _content(message: dict) -> str:
    content = message.get("content") or ""
    if isinstance(content, list):  # content parts
        return " ".join(part.get("text") or "" for part in content if isinstance(part, dict))
    return str(content)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The listen backlog: the default (5) refuses or resets connections when dozens of clients connect at once.
    request_queue_size = 128

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.connections: set = set()  # open client connections (`FakeOpenAIServer.stop` cuts them)
        self._connections_lock = threading.Lock()

    def process_request(self, request, client_address):
        with self._connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def cut_connections(self) -> None:
        with self._connections_lock:
            connections, self.connections = self.connections, set()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address):
        pass  # a client that gave up (timed out) mid-answer, or a connection reset on purpose: not news


class FakeOpenAIServer:
    """An OpenAI-compatible chat-completions server on 127.0.0.1 with a fixed latency per request.

    `responses` may script the first requests, in order of arrival: each item is a status code to fail with
    (e.g. 429, 500), a `Fault`, or a string to answer verbatim; once they are used up, `answer()` replies.
    `faults(source, attempt)` scripts by content instead, so deterministically under concurrency: it gets the
    prompt's first input value and how many identical requests came before (0 first, 1 for a retry...) and
    returns what to do (a `Fault`, a status code, a string) or None to answer well. `served` records every
    request. With `record=False` the request bodies are not kept, nor `served` (a long benchmark would hold
    them all); `arrivals` still counts every request. `layout` formats the field values of ChatAdapter answers
    (see `answer()`). `max_concurrent` admits at most that many requests at once and answers any request over it
    429 at once (as a provider's concurrency limit does); `peak` is the most it has admitted at once and
    `rejected` the requests it turned away. A string answer is sent as the message content as it is, lone
    surrogates included (JSON escapes them, as a server's JSON encoder does). `port` (default: any free one) lets
    a test start a server again where a stopped one was; `stop()` takes it down mid-run, as a crash does. `chat`
    answers a request that is not a DSPy prompt (plain chat messages, as a fine-tuned model is asked) with
    `chat(messages)`: a stand-in model whose answers are known.

    The Batch API: `POST /v1/files` (multipart, purpose "batch") stores an upload (`files`, counted in `uploads`);
    `POST /v1/batches` creates a batch of an uploaded JSONL file (`batches`, counted in `batches_created`), in
    progress; `GET /v1/batches/{id}` retrieves it, and its `batch_polls`-th retrieval (default the first) ends it
    as `batch_end` says ("completed", "expired", "cancelled" or "failed"; a function gets the batch's ordinal, 0 for
    the first created); `GET /v1/batches` lists them (newest first, `limit` and `after` as OpenAI takes them);
    `POST /v1/batches/{id}/cancel` cancels one (its next retrieval ends it "cancelled"); `GET
    /v1/files/{id}/content` downloads a file. When a batch ends, each of its lines is answered as
    `/v1/chat/completions` would answer it (`responses`, `faults`, `respond`, `by_field` and `layout` apply; a
    `Fault` or status makes the line an error line of the error file; `attempt` counts batch lines and direct
    requests alike). An expired or cancelled batch answers only its first `batch_answered` lines (default half,
    rounded down): an expired one lists the rest in its error file with the code "batch_expired", a cancelled one
    leaves them out of both files. A failed batch answers none and has no files. A file of lines that are not
    each a POST to /v1/chat/completions with a unique `custom_id` fails its batch, as OpenAI's validation does.
    `batch_lines` counts the lines answered; `chat_requests` the requests to `/v1/chat/completions` itself, so
    that a test can tell a batch run made no interactive call. With `batch_api=False` it is a server without the
    Batch API (llama.cpp's, vLLM's): every `/v1/files` and `/v1/batches` route answers 404 `{"detail": "Not
    Found"}`, as their FastAPI apps do, counted in `batch_404s`. `batch_results(output, errors)` rewrites the
    result files of a batch as it ends (gets the lines of its output and error files, returns the lines to
    serve in each): a provider's faulty files (a custom_id twice, in both files, one of no request, one left
    out); the batch's request counts are those of the lines served.

    `prompt_cache` (a `PromptCache`, or True for one with its test-friendly defaults) reports cached prompt tokens
    as OpenAI's automatic prompt caching does, in `usage.prompt_tokens_details.cached_tokens` (summed in
    `cached_tokens`), with `prompt_tokens` the prompt's words (`PromptCache.tokens`). Without it every answer
    reports 10 prompt tokens and no details.
    """

    def __init__(self, latency: float = 0.0, respond=plain, responses: list | None = None, record: bool = True,
                 by_field: dict | None = None, faults: Callable[[str, int], Fault | int | str | None] | None = None,
                 layout: Callable[[dict[str, str]], str] | None = None, max_concurrent: int | None = None,
                 batch_polls: int = 1, batch_end: "str | Callable[[int], str]" = "completed",
                 batch_answered: int | None = None, port: int = 0, batch_api: bool = True,
                 chat: Callable[[list[dict]], str] | None = None,
                 batch_results: Callable[[list[dict], list[dict]], tuple[list[dict], list[dict]]] | None = None,
                 prompt_cache: "PromptCache | bool" = False):
        self.latency = latency
        self.prompt_cache = PromptCache() if prompt_cache is True else prompt_cache or None
        self.cached_tokens = 0  # cached prompt tokens reported, in all
        self.batch_results = batch_results
        self.chat = chat
        self.batch_api = batch_api
        self.batch_404s = 0
        self._init_batches(batch_polls, batch_end, batch_answered)
        self.max_concurrent = max_concurrent
        self.admitted = 0  # requests being answered now
        self.peak = 0
        self.rejected = 0
        self.layout = layout
        self.respond = respond
        self.by_field = by_field
        self.scripted = list(responses or [])
        self.faults = faults
        self.record = record
        self.served: list[Served] = []
        self._seen: dict[str, int] = {}  # requests so far per exact message list
        self._stopping = threading.Event()  # ends the HANG faults' waits
        self.requests: list[dict] = []
        self.headers: list = []  # each recorded request's HTTP headers (`.get` ignores case), e.g. Authorization
        self.arrivals: list[float] = []  # time.monotonic() of each request
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # as real servers do: no 40 ms delayed-ACK stall per response

            def log_message(self, *args):
                pass

            def do_POST(self):
                if server._batch_api(self, "POST"):
                    return
                if server.max_concurrent is None:
                    return self._serve()
                with server._lock:
                    admit = server.admitted < server.max_concurrent
                    server.admitted += admit
                    server.peak = max(server.peak, server.admitted)
                    server.rejected += not admit
                if not admit:
                    self.rfile.read(int(self.headers.get("Content-Length", 0)))
                    return self._send(429, {"error": {"message": "too many concurrent requests", "type": "fake"}},
                                      {"Retry-After": "0"})
                try:
                    self._serve()
                finally:
                    with server._lock:
                        server.admitted -= 1

            def do_GET(self):
                if not server._batch_api(self, "GET"):
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

            def _serve(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                arrived = time.monotonic()
                source, attempt, fault = server._script(body.get("messages") or [], arrived)
                with server._lock:
                    if server.record:
                        server.requests.append(body)
                        server.headers.append(self.headers)
                        server.served.append(Served(arrived, source, attempt,
                                                    fault if isinstance(fault, Fault) else None))
                if server.latency:
                    time.sleep(server.latency)
                if not isinstance(fault, Fault):
                    return self._answer(body, fault)
                if fault.kind == "status":
                    # A 429 without Retry-After says "now": the scripted ones always did, and tests stay fast.
                    retry_after = 0 if fault.retry_after is None and fault.status == 429 else fault.retry_after
                    message = fault.message or f"scripted {fault.status}"
                    return self._send(fault.status, {"error": {"message": message, "type": "fake"}},
                                      {} if retry_after is None else {"Retry-After": f"{retry_after:g}"})
                if fault.kind == "hang":
                    server._stopping.wait()
                    self.close_connection = True
                elif fault.kind == "reset":
                    # Linger 0: close() sends a TCP RST instead of a clean FIN, as a crashed proxy does.
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                else:
                    text = {"malformed": "Sorry, I would rather not.", "empty": ""}.get(fault.kind)
                    self._answer(body, text, truncated=fault.kind == "truncated", trickle=fault.kind == "trickle")

            def _answer(self, body: dict, text: str | None = None, truncated: bool = False, trickle: bool = False):
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                self._send(200, server._completion(body, text, truncated, f"fake-{len(server.arrivals)}"),
                           trickle=trickle)

            def _send(self, status: int, payload: dict, headers: dict | None = None, trickle: bool = False):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                if not trickle:
                    return self.wfile.write(data)
                for i in range(len(data)):  # never a read timeout's worth of silence, and never done
                    self.wfile.write(data[i:i + 1])
                    self.wfile.flush()
                    if server._stopping.wait(TRICKLE_GAP):
                        break
                self.close_connection = True

        self._httpd = _Server(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> "FakeOpenAIServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def stop(self) -> None:
        """Go down as a crashed server does, mid-run: stop listening (new connections are refused) and cut the open
        ones (keep-alive connections included: a request on one gets a reset). `with` is done with it after."""
        self.__exit__()
        self._httpd.cut_connections()

    # --- the Batch API ---------------------------------------------------------------------------------------

    _TERMINAL = ("completed", "expired", "cancelled", "failed")

    def _init_batches(self, polls: int, end, answered: int | None) -> None:
        self.batch_polls = polls
        self.batch_end = end
        self.batch_answered = answered
        self.files: dict[str, dict] = {}  # id -> {"id", "purpose", "filename", "data": bytes}
        self.batches: dict[str, dict] = {}  # id -> the batch object as retrieved (plus "_polls", "_ordinal")
        self.uploads = 0
        self.batches_created = 0
        self.batch_lines = 0  # lines of batches answered (well or with an error line)
        self.chat_requests = 0  # requests to /v1/chat/completions itself
        self._ids = itertools.count(1)

    def _batch_api(self, handler, method: str) -> bool:
        """Serve a Batch API request; False when `handler.path` is not one (chat completions, or a 404)."""
        path = handler.path.split("?", 1)[0].rstrip("/")
        query = dict(part.split("=", 1) for part in handler.path.partition("?")[2].split("&") if "=" in part)
        parts = path.split("/")
        route = parts[parts.index("v1") + 1:] if "v1" in parts else parts[1:]
        if method == "POST" and route == ["chat", "completions"]:
            with self._lock:
                self.chat_requests += 1
            return False
        if not self.batch_api and route[:1] in (["files"], ["batches"]):
            handler.rfile.read(int(handler.headers.get("Content-Length", 0)))  # the connection stays usable
            with self._lock:
                self.batch_404s += 1
            handler._send(404, {"detail": "Not Found"})
            return True
        if method == "POST" and route == ["files"]:
            length = int(handler.headers.get("Content-Length", 0))
            fields = _multipart(handler.headers.get("Content-Type", ""), handler.rfile.read(length))
            with self._lock:
                self.uploads += 1
                file_id = f"file-{next(self._ids)}"
                filename, data = fields.get("file", ("upload.jsonl", b""))
                self.files[file_id] = {"id": file_id, "purpose": fields.get("purpose", (None, b""))[1].decode(),
                                       "filename": filename, "data": data}
                payload = self._file_object(file_id)
            handler._send(200, payload)
        elif method == "POST" and route == ["batches"]:
            body = json.loads(handler.rfile.read(int(handler.headers.get("Content-Length", 0))) or b"{}")
            with self._lock:
                if body.get("input_file_id") not in self.files:
                    return handler._send(404, {"error": {"message": f"no file {body.get('input_file_id')}"}}) or True
                batch_id = f"batch_{next(self._ids)}"
                self.batches[batch_id] = {
                    "id": batch_id, "object": "batch", "endpoint": body.get("endpoint"), "errors": None,
                    "input_file_id": body["input_file_id"], "completion_window": body.get("completion_window"),
                    "status": "in_progress", "output_file_id": None, "error_file_id": None,
                    "created_at": int(time.time()), "request_counts": {"total": 0, "completed": 0, "failed": 0},
                    "metadata": body.get("metadata"), "_polls": 0, "_ordinal": self.batches_created}
                self.batches_created += 1
                payload = _public(self.batches[batch_id])
            handler._send(200, payload)
        elif method == "POST" and len(route) == 3 and route[0] == "batches" and route[2] == "cancel":
            with self._lock:
                batch = self.batches.get(route[1])
                if batch is not None and batch["status"] not in self._TERMINAL:
                    batch["status"], batch["_cancel"] = "cancelling", True
                payload = _public(batch) if batch else None
            handler._send(200, payload) if payload else handler._send(404, {"error": {"message": "no batch"}})
        elif method == "GET" and route == ["batches"]:
            with self._lock:
                listed = [_public(b) for b in reversed(self.batches.values())]
            if query.get("after"):
                ids = [b["id"] for b in listed]
                listed = listed[ids.index(query["after"]) + 1:] if query["after"] in ids else []
            limit = int(query.get("limit", 20))
            page = listed[:limit]
            handler._send(200, {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                                "last_id": page[-1]["id"] if page else None, "has_more": len(listed) > limit})
        elif method == "GET" and len(route) == 2 and route[0] == "batches":
            batch = self.batches.get(route[1])
            if batch is None:
                handler._send(404, {"error": {"message": f"no batch {route[1]}"}})
            else:
                handler._send(200, self._retrieve(batch))
        elif method == "GET" and len(route) == 3 and route[0] == "files" and route[2] == "content":
            file = self.files.get(route[1])
            if file is None:
                handler._send(404, {"error": {"message": f"no file {route[1]}"}})
            else:
                handler.send_response(200)
                handler.send_header("Content-Type", "application/octet-stream")
                handler.send_header("Content-Length", str(len(file["data"])))
                handler.end_headers()
                handler.wfile.write(file["data"])
        elif method == "GET" and len(route) == 2 and route[0] == "files":
            with self._lock:
                payload = self._file_object(route[1]) if route[1] in self.files else None
            handler._send(200, payload) if payload else handler._send(404, {"error": {"message": "no file"}})
        else:
            return False
        return True

    def _file_object(self, file_id: str) -> dict:
        file = self.files[file_id]
        return {"id": file_id, "object": "file", "bytes": len(file["data"]), "created_at": int(time.time()),
                "filename": file["filename"], "purpose": file["purpose"], "status": "processed"}

    def _add_file(self, name: str, lines: list[dict]) -> str | None:
        if not lines:
            return None
        file_id = f"file-{next(self._ids)}"
        data = "".join(json.dumps(line) + "\n" for line in lines).encode()
        self.files[file_id] = {"id": file_id, "purpose": "batch_output", "filename": name, "data": data}
        return file_id

    def _retrieve(self, batch: dict) -> dict:
        """The batch as a retrieval sees it, ending it on its `batch_polls`-th retrieval (or after a cancel)."""
        with self._lock:
            if batch["status"] in self._TERMINAL:
                return _public(batch)
            batch["_polls"] += 1
            if not batch.get("_cancel") and batch["_polls"] < self.batch_polls:
                return _public(batch)
            end = "cancelled" if batch.get("_cancel") else (
                self.batch_end(batch["_ordinal"]) if callable(self.batch_end) else self.batch_end)
            lines = [json.loads(line) for line in self.files[batch["input_file_id"]]["data"].splitlines()
                     if line.strip()]
            ids = [line.get("custom_id") for line in lines]
            bad = [line for line in lines if line.get("method") != "POST" or line.get("url") != "/v1/chat/completions"
                   or not isinstance(line.get("body"), dict)]
            if end != "failed" and (bad or len(set(ids)) != len(ids) or None in ids):
                end, batch["errors"] = "failed", {"object": "list", "data": [{
                    "code": "invalid_request", "message": "each line must be a POST to /v1/chat/completions "
                    "with a unique custom_id", "line": None}]}
        if end == "failed":
            batch["errors"] = batch["errors"] or {"object": "list", "data": [
                {"code": "scripted", "message": "the batch failed (scripted)", "line": None}]}
            answered = 0
        elif end == "completed":
            answered = len(lines)
        else:
            answered = len(lines) // 2 if self.batch_answered is None else self.batch_answered
        output, errors = [], []
        for index, line in enumerate(lines):
            if index >= answered:
                if end == "expired":
                    errors.append({"id": f"batch_req_{index}", "custom_id": line["custom_id"], "response": None,
                                   "error": {"code": "batch_expired", "message": "This request could not be executed "
                                             "before the completion window expired."}})
                continue
            status_code, payload = self._answer_line(line["body"])
            row = {"id": f"batch_req_{index}", "custom_id": line["custom_id"],
                   "response": {"status_code": status_code, "request_id": f"req_{index}", "body": payload},
                   "error": None}
            (output if status_code == 200 else errors).append(row)
        if self.batch_results is not None:
            output, errors = self.batch_results(output, errors)
        with self._lock:
            self.batch_lines += answered
            batch["status"] = end
            batch["output_file_id"] = self._add_file(f"{batch['id']}_output.jsonl", output)
            batch["error_file_id"] = self._add_file(f"{batch['id']}_error.jsonl", errors)
            batch["request_counts"] = {"total": len(lines), "completed": len(output), "failed": len(errors)}
            batch[f"{end}_at"] = int(time.time())
            return _public(batch)

    def _script(self, messages: list, arrived: float | None = None) -> tuple[str, int, "Fault | str | None"]:
        """What to do with a request of `messages`: its source (the prompt's first input value), how many identical
        requests came before it, and the scripted answer (a Fault, a verbatim string, or None: answer well).
        With `arrived` (time.monotonic()), it counts as an HTTP request in `arrivals`."""
        source = next(iter(dict(_INPUT_VALUE.findall(_split(messages)[1])).values()), "")
        key = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
        with self._lock:
            if arrived is not None:
                self.arrivals.append(arrived)
            attempt = self._seen.get(key, 0)
            self._seen[key] = attempt + 1
            scripted = self.scripted.pop(0) if self.scripted else None
        if scripted is None and self.faults:
            scripted = self.faults(source, attempt)
        return source, attempt, status(scripted) if isinstance(scripted, int) else scripted

    def _completion(self, body: dict, text: str | None, truncated: bool, completion_id: str) -> dict:
        """A chat.completion answering `body`: `text`, else `answer()`'s; `truncated` cut off half-way with
        finish_reason length, as a model that ran out of tokens, reporting it used them all."""
        messages = body.get("messages") or []
        if text is None and self.chat is not None and not _OUTPUT_FIELDS.search(_split(messages)[0]):
            text = self.chat(messages)
        if text is None:
            text = answer(*_split(messages), self.respond, self.by_field, self.layout)
        if truncated:
            text = text[:len(text) // 2]
        completion = len(text.split())
        if truncated:
            completion = body.get("max_tokens") or body.get("max_completion_tokens") or completion
        usage = {"prompt_tokens": 10}
        if self.prompt_cache is not None:
            tokens = PromptCache.tokens(messages)
            cached = self.prompt_cache.cached(tokens)
            usage = {"prompt_tokens": len(tokens), "prompt_tokens_details": {"cached_tokens": cached}}
            with self._lock:
                self.cached_tokens += cached
        return {"id": completion_id, "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", "fake"),
                "choices": [{"index": 0, "finish_reason": "length" if truncated else "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": {**usage, "completion_tokens": completion,
                          "total_tokens": usage["prompt_tokens"] + completion}}

    def _answer_line(self, body: dict) -> tuple[int, dict]:
        """(status, body) for one batch line: what `/v1/chat/completions` would answer it."""
        _, _, fault = self._script(body.get("messages") or [])
        text = fault if isinstance(fault, str) else None
        if isinstance(fault, Fault):
            if fault.kind in ("status", "hang", "reset"):
                code = fault.status if fault.kind == "status" else 500
                message = fault.message or (f"scripted {code}" if fault.kind == "status" else f"scripted {fault.kind}")
                return code, {"error": {"message": message, "type": "fake"}}
            text = {"malformed": "Sorry, I would rather not.", "empty": ""}.get(fault.kind)
        truncated = isinstance(fault, Fault) and fault.kind == "truncated"
        return 200, self._completion(body, text, truncated, f"fake-batch-{next(self._ids)}")


def _public(batch: dict) -> dict:
    """A batch object as the API shows it (without the fake's own bookkeeping)."""
    return {key: value for key, value in batch.items() if not key.startswith("_")}


def _multipart(content_type: str, data: bytes) -> dict[str, tuple[str | None, bytes]]:
    """The fields of a multipart/form-data body: {name: (filename, bytes)}."""
    message = email.parser.BytesParser().parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + data)
    fields = {}
    for part in message.get_payload() if message.is_multipart() else ():
        name = part.get_param("name", header="content-disposition")
        fields[name] = (part.get_filename(), part.get_payload(decode=True) or b"")
    return fields
