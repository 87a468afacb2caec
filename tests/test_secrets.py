"""API keys never reach a file or a command's output, and a private api_base stays out of shareable artifacts.

One scenario runs every command that calls a model or writes a file, for real (subprocesses, HTTP), with a
distinctive key per role: the task's and the judge's named by `api_key_env`, the prompt role's taken from
OPENAI_API_KEY, the provider's usual variable. Each role talks to a server of its own, whose URL stands for a
private api_base. Then every file under the workspace, the DSPy cache, HOME and TMPDIR is searched, binary files
too, read both as bytes and (SQLite, Parquet) as the rows they hold.
"""

import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer.main

from datagen.cli import app
from datagen.workspace.config import ModelSettings
from datagen.lm.roles import build_role_model
from datagen.util.redaction import REDACTED, redact

from .conftest import ROOT
from .fakes import FakeOpenAIServer, _Server
from .test_docs import ANSWERS

DATAGEN = Path(sys.executable).with_name("datagen")
FORMATS = ("sharegpt", "alpaca", "openai", "jsonl", "parquet", "hf")


def new_keys() -> dict[str, str]:
    """Distinctive keys, new each run, so that nothing left over from another run can match."""
    return {name: f"sk-{name.lower().replace('_', '-')}-{secrets.token_hex(16)}"
            for name in ("TASK_KEY", "JUDGE_KEY", "OPENAI_API_KEY")}


# --- the scanner ---------------------------------------------------------------------------------------------

def _views(path: Path) -> list[bytes]:
    """A file's bytes, and for a database or a columnar file the text of every row too: a long value is cut
    across SQLite overflow pages, and Parquet pages may be compressed, so a byte search alone could miss it."""
    data = path.read_bytes()
    views = [data]
    if data.startswith(b"SQLite format 3\0"):
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            views.append("\n".join(db.iterdump()).encode())
    elif data.startswith(b"PAR1"):
        views.append(json.dumps(pq.read_table(path).to_pylist(), default=str).encode())
    return views


def _forms(needle: str) -> list[bytes]:
    """How a secret may be written: as UTF-8 (SQLite's default, JSON, pickles) or UTF-16 text."""
    return [needle.encode(), needle.encode("utf-16-le")]


def holders(roots: list[Path], needles: list[str]) -> dict[str, list[str]]:
    """{needle: files holding it} over every file under `roots` (symlinks not followed)."""
    files = sorted({path for root in roots for path in ([root] if root.is_file() else root.rglob("*"))
                    if path.is_file() and not path.is_symlink()})
    assert files, f"nothing to scan under {roots}"
    found: dict[str, list[str]] = {}
    for path in files:
        views = _views(path)
        for needle in needles:
            if any(form in view for view in views for form in _forms(needle)):
                found.setdefault(needle, []).append(str(path))
    return found


# --- a provider that quotes the key back ---------------------------------------------------------------------

class EchoingProvider:
    """An OpenAI-compatible endpoint that refuses every request with `status`, quoting the bearer token in its
    error message, as some providers do."""

    def __init__(self, status: int):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                data = json.dumps({"error": {"message": f"Invalid API key provided: {token}.",
                                             "type": "invalid_request_error"}}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self):
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._httpd.shutdown()
        self._httpd.server_close()


# --- the scenario --------------------------------------------------------------------------------------------

@dataclass
class Scenario:
    root: Path  # the workspace, HOME, TMPDIR and the DSPy cache are all under it
    workspace: Path
    keys: dict[str, str]
    servers: dict[str, FakeOpenAIServer]
    outputs: dict[str, str] = field(default_factory=dict)  # command line: its stdout and stderr

    @property
    def env(self) -> dict[str, str]:
        # A fresh HOME and TMPDIR, so whatever a library writes there is searched too; no DATAGEN_* of this machine.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATAGEN_", "HF_", "XDG_"))}
        return {**env, **self.keys, "HOME": str(self.root / "home"), "TMPDIR": str(self.root / "tmp"),
                "DSPY_CACHEDIR": str(self.workspace / ".dspy_cache")}

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([str(DATAGEN), *args], cwd=self.workspace, env=self.env, stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=120)
        line = " ".join(args)
        self.outputs[line] = result.stdout + result.stderr
        if ok:
            assert result.returncode == 0, f"datagen {line}: {result.stderr[-2000:]}"
        return result


def _toml(servers: dict[str, str]) -> str:
    """Each role at its server; the task's and the judge's keys named by api_key_env, the prompt role's read
    by litellm from OPENAI_API_KEY."""
    keys = {"task": 'api_key_env = "TASK_KEY"\n', "judge": 'api_key_env = "JUDGE_KEY"\n', "prompt": ""}
    return "".join(f'[models.{role}]\nmodel = "openai/fake-{role}"\napi_base = "{url}"\n{keys[role]}\n'
                   for role, url in servers.items())


def _workspace(root: Path) -> Path:
    ws = root / "ws"
    for name in ("programs", "signatures", "metrics", "data"):
        shutil.copytree(ROOT / name, ws / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("home", "tmp"):
        (root / name).mkdir()
    return ws


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    root = tmp_path_factory.mktemp("secrets")
    with (FakeOpenAIServer(by_field=ANSWERS) as task, FakeOpenAIServer(by_field=ANSWERS) as judge,
          FakeOpenAIServer(by_field=ANSWERS) as prompt):
        s = Scenario(root, _workspace(root), new_keys(), {"task": task, "judge": judge, "prompt": prompt})
        ws = s.workspace
        # One judge metric in the composite: every role still calls, without the offline metrics' minutes.
        (ws / "datagen.toml").write_text(_toml({role: server.url for role, server in s.servers.items()})
                                         + "[metrics.style_clone]\nweights = { content = 1 }\n")
        # A small dev set (both splits) keeps the optimizers to a few dozen calls.
        lines = (ws / "data/style_clone/dev.jsonl").read_text().splitlines()
        small = [line for line in lines if '"train"' in line][:3] + [line for line in lines if '"val"' in line][:1]
        (ws / "dev.jsonl").write_text("\n".join(small) + "\n")

        s.run("-v", "generate", "style_clone", "--input", "data/samples", "--out", "out/run", "--limit", "3",
              "--min-score", "content=0.1", "--max-tokens", "300")
        s.run("status", "out/run")
        chunk_id = json.loads((ws / "out/run/metadata.jsonl").read_text().splitlines()[0])["chunk_id"]
        s.run("inspect", "out/run", chunk_id, "--prompts", "--json")
        for fmt in FORMATS:
            s.run("export", "out/run", "--format", fmt)
        s.run("evaluate", "style_clone", "--dev", "dev.jsonl", "--out", "evals/e", "--metric", "content")
        s.run("optimize", "style_clone", "--dev", "dev.jsonl", "--optimizer", "copro", "--yes")  # the prompt role
        s.run("optimize", "style_clone", "--dev", "dev.jsonl", "--trials", "2", "--yes")
        s.run("compiled", "show", "compiled/style_clone/copro.json")
        s.run("compiled", "list")
        yield s


# --- the tests -----------------------------------------------------------------------------------------------

def test_no_command_takes_a_key_on_the_command_line():
    """A key on a command line is kept in shell history and shown by `ps`: keys come from the environment."""
    options = []

    def walk(group):
        for command in group.commands.values():
            if hasattr(command, "commands"):
                walk(command)
            else:
                options.extend(opt for param in command.params for opt in param.opts + param.secondary_opts)

    walk(typer.main.get_command(app))
    assert "--max-tokens" in options  # the walk reached the commands
    words = {"key", "api-key", "apikey", "token", "secret", "password", "credential", "auth"}
    assert not [opt for opt in options if words & set(opt.lstrip("-").split("-"))]


def test_each_role_sent_its_own_key(scenario):
    sent = {role: {h.get("Authorization") for h in server.headers} for role, server in scenario.servers.items()}
    assert sent == {"task": {f"Bearer {scenario.keys['TASK_KEY']}"},
                    "judge": {f"Bearer {scenario.keys['JUDGE_KEY']}"},
                    "prompt": {f"Bearer {scenario.keys['OPENAI_API_KEY']}"}}


def test_no_file_and_no_output_holds_a_key(scenario):
    found = holders([scenario.root], list(scenario.keys.values()))
    assert not found, f"keys written to files: {found}"
    printed = [line for line, text in scenario.outputs.items() for key in scenario.keys.values() if key in text]
    assert not printed, f"keys printed by: {printed}"
    assert "DEBUG" in scenario.outputs[next(iter(scenario.outputs))]  # -v did log: its lines were searched


def shareable(workspace: Path) -> list[Path]:
    """What is made to be handed on: datasets, their cards, compiled programs with manifests, reports."""
    run, compiled = workspace / "out/run", workspace / "compiled/style_clone"
    paths = [run / name for name in ("sharegpt.jsonl", "metadata.jsonl", "alpaca.jsonl", "openai.jsonl",
                                     "samples.jsonl", "dataset.parquet", "README.md", "hf/README.md")]
    paths += [workspace / "evals/e/eval.json", workspace / "evals/e/report.html"]
    paths += [compiled / f"{name}{suffix}" for name in ("copro", "search")
              for suffix in (".json", ".manifest.json", ".report.html")]
    missing = [str(p) for p in paths if not p.exists()]
    assert not missing, f"not written: {missing}"
    return [*paths, run / "hf"]  # the hf folder whole: its arrow files and dataset_info.json too


def test_shareable_artifacts_do_not_name_the_private_api_base(scenario):
    hosts = [server.url.split("//")[1].split("/")[0] for server in scenario.servers.values()]
    found = holders(shareable(scenario.workspace), hosts)
    assert not found, f"the private api_base is named in: {found}"


def test_the_scanner_finds_a_key_in_sqlite_parquet_arrow_and_text(tmp_path):
    key = new_keys()["TASK_KEY"]
    db = sqlite3.connect(tmp_path / "run.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (v TEXT)")  # a value long enough to spill onto overflow pages
    db.execute("INSERT INTO t VALUES (?)", ("x" * 9000 + key,))
    db.commit()
    db.close()
    pq.write_table(pa.table({"v": [key * 3]}), tmp_path / "data.parquet", compression="zstd")
    table = pa.table({"v": [key]})
    with pa.OSFile(str(tmp_path / "data.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)  # as datasets' save_to_disk writes its shards
    (tmp_path / "log.txt").write_text(f"Authorization: Bearer {key}\n")
    (tmp_path / "clean.txt").write_text("nothing here\n")
    found = holders([tmp_path], [key, "sk-not-there"])
    assert set(found) == {key}
    assert {Path(p).name for p in found[key]} >= {"run.db", "data.parquet", "data.arrow", "log.txt"}
    assert "clean.txt" not in {Path(p).name for p in found[key]}


def test_a_key_quoted_back_by_the_provider_is_stored_and_printed_redacted(tmp_path):
    ws = _workspace(tmp_path)
    s = Scenario(tmp_path, ws, new_keys(), {})
    # The task model's answers for one chunk quote a key and parse as nothing (a raw answer, stored); the other
    # chunks' judges get an error quoting theirs (a failure message, the step's and the call's error, all stored).
    # Scripted by the chunk, not by the order of arrival: chunks in flight interleave their requests.
    quoted = s.keys["OPENAI_API_KEY"]
    quoting = f"My key is {quoted}, as you asked."
    chosen: dict[str, str] = {}

    def quote_for_one_chunk(source: str, attempt: int) -> str | None:
        return quoting if chosen.setdefault("source", source) == source else None

    with (FakeOpenAIServer(by_field=ANSWERS, faults=quote_for_one_chunk) as task, EchoingProvider(400) as judge,
          EchoingProvider(401) as refusing, FakeOpenAIServer() as prompt):
        (ws / "datagen.toml").write_text(_toml({"task": task.url, "judge": judge.url, "prompt": prompt.url}))
        s.run("generate", "style_clone", "--input", "data/samples", "--out", "out/judged", "--limit", "3",
              "--min-score", "content=0.1", "--max-tokens", "300", ok=False)
        s.run("inspect", "out/judged", "--failed", "--json")
        # A refused key stops the run at once, printing the provider's message.
        (ws / "datagen.toml").write_text(_toml({"task": refusing.url, "judge": judge.url, "prompt": prompt.url}))
        refused = s.run("generate", "style_clone", "--input", "data/samples", "--out", "out/refused", "--limit", "2",
                        ok=False)
    assert refused.returncode == 1 and REDACTED in refused.stderr, refused.stderr
    with sqlite3.connect(ws / "out/judged/run.db") as db:
        stored = db.execute("SELECT failure, message, raw FROM results").fetchall()
        errors = [e for (e,) in db.execute("SELECT error FROM calls UNION ALL SELECT error FROM steps") if e]
        responses = [r for (r,) in db.execute("SELECT response FROM calls") if r and REDACTED in r]
    # A judge's error costs only its score (datagen.metrics.scoring): the chunks it judged are done, their error in
    # the log.
    stored = [(kind, message, raw) for kind, message, raw in stored if kind]
    assert {kind for kind, _, _ in stored} == {"parse"}, stored
    assert all(REDACTED in raw for _, _, raw in stored), stored
    assert errors and all(REDACTED in error for error in errors), errors
    assert responses  # the raw answers in the call log too
    found = holders([tmp_path], list(s.keys.values()))
    # DSPy's disk cache keeps every answer verbatim (pickled litellm responses): an answer quoting a key stays
    # there, out of datagen's reach. Errors are not cached: the keys the providers quoted are nowhere.
    cached = found.pop(quoted, [])
    assert not found and all("/.dspy_cache/" in path for path in cached), (found, cached)
    assert not [line for line, text in s.outputs.items() for key in s.keys.values() if key in text]


def test_a_key_quoted_in_an_optimizers_log_or_a_traceback_is_printed_redacted(tmp_path):
    ws = _workspace(tmp_path)
    s = Scenario(tmp_path, ws, new_keys(), {})
    lines = (ws / "data/style_clone/dev.jsonl").read_text().splitlines()
    (ws / "dev.jsonl").write_text("\n".join([*[line for line in lines if '"train"' in line][:3],
                                             next(line for line in lines if '"val"' in line)]) + "\n")
    quoting = f"My key is {s.keys['OPENAI_API_KEY']}, as you asked."
    with (FakeOpenAIServer(by_field=ANSWERS, responses=[quoting] * 20) as task, EchoingProvider(400) as judge,
          EchoingProvider(400) as prompt):
        (ws / "datagen.toml").write_text(_toml({"task": task.url, "judge": judge.url, "prompt": prompt.url})
                                         + "[metrics.style_clone]\nweights = { content = 1 }\n")
        # DSPy's bootstrap logs every example its program failed on, with the error quoting the answer (shown
        # with -v: the libraries' log lines are not shown without it).
        logged = s.run("-v", "optimize", "style_clone", "--dev", "dev.jsonl", "--optimizer", "bootstrap", "--yes")
        # COPRO's first call, to the prompt model, raises out of the optimizer: a traceback.
        raised = s.run("optimize", "style_clone", "--dev", "dev.jsonl", "--optimizer", "copro", "--yes", ok=False)
    assert "Failed to run or to evaluate example" in logged.stderr and REDACTED in logged.stderr, logged.stderr
    assert "Traceback" in raised.stderr and REDACTED in raised.stderr, raised.stderr
    assert not [line for line, text in s.outputs.items() for key in s.keys.values() if key in text]
    found = holders([tmp_path], list(s.keys.values()))
    cached = found.pop(s.keys["OPENAI_API_KEY"], [])  # the answers quoting it, in DSPy's cache (as above)
    assert not found and all("/.dspy_cache/" in path for path in cached), (found, cached)


def test_redact_blanks_the_keys_read_and_the_variables_named_like_keys(monkeypatch):
    read, usual = "cred-" + secrets.token_hex(8), "sk-" + secrets.token_hex(8)
    monkeypatch.setenv("MY_LLM_CREDENTIAL", read)  # named like no key: known only because a role read it
    monkeypatch.setenv("ANTHROPIC_API_KEY", usual)  # a provider's usual variable, which litellm reads itself
    monkeypatch.setenv("SHORT_KEY", "abc")  # too short to be a key: blanking it would garble every message
    text = f"refused {read} and {usual}; abc"
    assert redact(text) == f"refused {read} and {REDACTED}; abc"
    build_role_model(ModelSettings(model="openai/m", api_base="http://127.0.0.1:9/v1",
                                   api_key_env="MY_LLM_CREDENTIAL"), "task")
    assert redact(text) == f"refused {REDACTED} and {REDACTED}; abc"
    assert redact(None) is None and redact("") == ""


def test_redact_follows_the_environment_as_it_changes(monkeypatch):
    """The keys are looked up again once the environment changes (they are kept between calls, for speed)."""
    first, second = "sk-" + secrets.token_hex(8), "sk-" + secrets.token_hex(8)
    monkeypatch.setenv("SOME_PROVIDER_API_KEY", first)
    assert redact(f"{first} {second}") == f"{REDACTED} {second}"
    monkeypatch.setenv("SOME_PROVIDER_API_KEY", second)  # changed in place: the same variable, a new value
    assert redact(f"{first} {second}") == f"{first} {REDACTED}"
    monkeypatch.setenv("ANOTHER_TOKEN", first)  # a variable added
    assert redact(f"{first} {second}") == f"{REDACTED} {REDACTED}"
    monkeypatch.delenv("ANOTHER_TOKEN")
    monkeypatch.delenv("SOME_PROVIDER_API_KEY")
    assert redact(f"{first} {second}") == f"{first} {second}"
