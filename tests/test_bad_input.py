"""Bad input, one table: each case runs the real `datagen` command and gets a one-line `error:` naming the culprit
(or, for a file found in a folder, a warning naming it while the rest is processed), never a traceback; and a
`generate` that fails leaves the run store made before it in out/ exactly as it was."""

import json
import os
import random
import shutil
import socket
import sqlite3
import zipfile
from pathlib import Path

import pytest

from datagen.workspace import load_program, save_compiled

from .conftest import ROOT, run_cli
from .fakes import FakeOpenAIServer
from .test_cli import assert_one_line_error

# A single line this long, made in the test. What keeps a longer one linear is checked in tests/test_chunking.py;
# bench/chunk_bench.py times 8 MiB and 50 MB lines (a 60 s test of 8 MiB failed on a loaded 2-core machine).
LONG_LINE_BYTES = 2**20
GENERATE = ["generate", "style_clone", "-i", "data/samples", "-o", "out", "--model", "openai/fake"]
COMPILED = "compiled/style_clone/broken.json"


def _words_line(path: Path, sep: str) -> None:
    """LONG_LINE_BYTES of random words joined by `sep`, no newline: distinct chunks, none dropped as repeats."""
    rng = random.Random(0)
    vocab = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9))) for _ in range(5000)]
    words = rng.choices(vocab, k=LONG_LINE_BYTES // 5)
    path.write_text(sep.join(w.capitalize() if not sep else w for w in words)[:LONG_LINE_BYTES])


def _zip_bomb(path: Path, member: str) -> None:
    """A small archive (about 1 MB) whose one member inflates to 1 GiB of zeros, written streamed."""
    zeros = bytes(2**20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open(member, "w", force_zip64=True) as sink:
            for _ in range(1024):
                sink.write(zeros)


def _unreadable_corpus(ws: Path) -> None:
    """A folder of files no one can read, root included, beside one that is fine."""
    corpus = ws / "corpus"
    (corpus / "notes.txt").mkdir(parents=True)  # a folder named like a file: searched, not read
    (corpus / "notes.txt" / "inner.md").write_text("Inside a folder named like a file.\n")
    (corpus / "good.txt").write_text("The good file is read.\n")
    os.mkfifo(corpus / "fifo.txt")  # reading it would block forever
    (corpus / "dangling.txt").symlink_to("nowhere.txt")
    (corpus / "a.txt").symlink_to("b.txt")  # a file symlink loop
    (corpus / "b.txt").symlink_to("a.txt")
    (corpus / "self").symlink_to(corpus)  # a folder symlinked into itself
    (corpus / "empty.md").write_text("")
    (corpus / "binary.txt").write_bytes(b"\x00\x01\x02binary")
    _zip_bomb(corpus / "bomb.docx", "word/document.xml")


def _compiled(ws: Path, state: bytes | None, manifest: bool = True) -> None:
    """A compiled style_clone made as `datagen optimize` makes it, then its state or manifest damaged."""
    path = save_compiled(load_program("style_clone", ws), "style_clone", "broken", ws, {})
    if state is not None:
        path.write_bytes(state)
    if not manifest:
        path.with_name("broken.manifest.json").unlink()


def _demos(ws: Path, *demos) -> None:
    """A compiled style_clone made as `datagen optimize` makes it, its rephrase's demos then replaced by `demos`."""
    path = save_compiled(load_program("style_clone", ws), "style_clone", "broken", ws, {})
    saved = json.loads(path.read_text(encoding="utf-8"))
    saved["rephrase"]["demos"] = list(demos)
    path.write_text(json.dumps(saved), encoding="utf-8")


def _dev(ws: Path, second_line: bytes) -> None:
    (ws / "dev.jsonl").write_bytes(b'{"chunk": "A fine passage.", "split": "train"}\n' + second_line + b"\n")


def _free_port() -> int:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TRUNCATED = b'{"rephrase": {"traces": [], "demos": [{"chunk": "x", '
# name: (setup(ws), argv, env, error fragments; or None and the warnings expected of a run that goes on).
# "{api}" in argv is the fake server's URL; "{dead}" a URL nothing answers at.
CASES = {
    "missing path": (None, ["chunk", "nowhere.txt"], {}, ["nowhere.txt", "no such file"]),
    "empty folder": (lambda ws: (ws / "empty_dir").mkdir(), ["chunk", "empty_dir"], {}, ["empty_dir", "no text files"]),
    "empty file": (lambda ws: (ws / "empty.txt").write_text(""), ["chunk", "empty.txt"], {}, ["empty.txt", "empty"]),
    "binary file": (lambda ws: (ws / "bin.txt").write_bytes(b"\x00\x01binary"), ["chunk", "bin.txt"], {},
                    ["bin.txt", "binary"]),
    "FIFO": (lambda ws: os.mkfifo(ws / "fifo.txt"), ["chunk", "fifo.txt"], {}, ["fifo.txt", "not a regular file"]),
    "dangling symlink": (lambda ws: (ws / "gone.txt").symlink_to("nowhere.txt"), ["chunk", "gone.txt"], {},
                         ["gone.txt", "no such file", "symlink"]),
    "symlink loop": (lambda ws: ((ws / "a.txt").symlink_to("b.txt"), (ws / "b.txt").symlink_to("a.txt")),
                     ["chunk", "a.txt"], {}, ["a.txt", "symbolic links"]),
    "DOCX zip bomb": (lambda ws: _zip_bomb(ws / "bomb.docx", "word/document.xml"), ["chunk", "bomb.docx"], {},
                      ["bomb.docx", "1,024 MiB", "limit"]),
    "EPUB zip bomb": (lambda ws: _zip_bomb(ws / "bomb.epub", "META-INF/container.xml"), ["chunk", "bomb.epub"], {},
                      ["bomb.epub", "1,024 MiB", "limit"]),
    "unreadable files in a folder": (_unreadable_corpus, ["chunk", "corpus"], {}, None),
    "generate on an empty file": (lambda ws: (ws / "empty.txt").write_text(""),
                                  [*GENERATE[:3], "empty.txt", *GENERATE[4:], "--api-base", "{api}"], {},
                                  ["empty.txt", "empty"]),
    "invalid UTF-8": (lambda ws: (ws / "latin1.txt").write_bytes("Café au lait, mon ami.".encode("latin-1")),
                      ["chunk", "latin1.txt"], {}, None),
    "long line of words": (lambda ws: _words_line(ws / "long.txt", " "), ["chunk", "long.txt", "-o", "c.jsonl"],
                           {}, None),
    "long line without spaces": (lambda ws: _words_line(ws / "long.txt", ""),
                                 ["chunk", "long.txt", "-o", "c.jsonl"], {}, None),
    "output folder is a file": (lambda ws: (ws / "file").write_text("x"),
                                ["generate", "style_clone", "-i", "data/samples", "-o", "file"], {}, ["file", "not a folder"]),
    "output file is a folder": (lambda ws: (ws / "dir").mkdir(), ["chunk", "data/samples", "-o", "dir"], {},
                                ["dir", "is a folder"]),
    "unknown pipeline": (None, ["generate", "nope", "-i", "data/samples", "-o", "out"], {}, ["'nope'", "style_clone"]),
    "malformed option": (None, [*GENERATE, "-O", "repair"], {}, ["--option 'repair'", "KEY=VALUE"]),
    "unknown option": (None, [*GENERATE, "--api-base", "{api}", "-O", "colour=1"], {},
                       ["no option 'colour'", "repair_boundaries"]),
    "bad TOML": (lambda ws: (ws / "datagen.toml").write_text("[models.task\nmodel = 1\n"), ["chunk", "data/samples"],
                 {}, ["datagen.toml", "not valid TOML"]),
    "unknown config key": (lambda ws: (ws / "datagen.toml").write_text('[models.task]\nmodle = "openai/x"\n'),
                           ["models"], {}, ["datagen.toml", "models.task.modle", "not permitted"]),
    "config value of the wrong type": (lambda ws: (ws / "datagen.toml").write_text('[chunking]\nmax_tokens = "big"\n'),
                                       ["chunk", "data/samples"], {}, ["datagen.toml", "chunking.max_tokens"]),
    "model without a provider": (None, [*GENERATE[:-1], "fake"], {}, ["'fake'", "provider prefix"]),
    "unknown provider": (None, [*GENERATE[:-1], "nosuchprovider/fake"], {}, ["nosuchprovider/fake", "unknown provider"]),
    "model the server does not know": (None, [*GENERATE, "--api-base", "{api404}"], {}, ["openai/fake", "404"]),
    "API key not set": (None, [*GENERATE[:-1], "openai/gpt-4o-mini"], {},
                        ["OPENAI_API_KEY is not set", "openai/gpt-4o-mini"]),
    "api_key_env not set": (lambda ws: (ws / "datagen.toml").write_text('[models.task]\napi_key_env = "NO_SUCH_KEY"\n'),
                            [*GENERATE, "--api-base", "{api}"], {}, ["NO_SUCH_KEY is not set", "openai/fake"]),
    "unreachable server": (None, [*GENERATE, "--api-base", "{dead}"], {}, ["openai/fake", "onnect"]),
    "compiled: garbage bytes": (lambda ws: _compiled(ws, b"\x89PNG\x00\xff\xfe"),
                                [*GENERATE, "--api-base", "{api}", "--compiled", COMPILED], {}, [COMPILED, "not valid JSON"]),
    "compiled: wrong shape": (lambda ws: _compiled(ws, b'{"rephrase": 5}'),
                              [*GENERATE, "--api-base", "{api}", "--compiled", COMPILED], {}, [COMPILED, "not a saved DSPy"]),
    "compiled: truncated": (lambda ws: _compiled(ws, TRUNCATED),
                            [*GENERATE, "--api-base", "{api}", "--compiled", COMPILED], {}, [COMPILED, "not valid JSON"]),
    "compiled: no manifest": (lambda ws: _compiled(ws, None, manifest=False),
                              [*GENERATE, "--api-base", "{api}", "--compiled", COMPILED], {}, [COMPILED, "manifest"]),
    "compiled: a demo without its output": (lambda ws: _demos(ws, {"passage": "A passage.", "generic": "Plain."},
                                                              {"passage": "A passage."}),
                                             [*GENERATE, "--api-base", "{api}", "--compiled", COMPILED], {},
                                             [COMPILED, "demo 2 of 2 of predictor 'rephrase'",
                                              "no output field 'generic'"]),
    "compiled: no such name": (None, [*GENERATE, "--api-base", "{api}", "--compiled", "nosuch"], {},
                               ["nosuch", "no such compiled program", "compiled/style_clone/"]),
    "compiled show: garbage bytes": (lambda ws: _compiled(ws, b"\x89PNG\x00\xff\xfe"), ["compiled", "show", COMPILED],
                                     {}, [COMPILED, "not valid JSON"]),
    "compiled show: wrong shape": (lambda ws: _compiled(ws, b"[1, 2]"), ["compiled", "show", COMPILED], {},
                                   [COMPILED, "expected a JSON object"]),
    "compiled show: truncated": (lambda ws: _compiled(ws, TRUNCATED), ["compiled", "show", COMPILED], {},
                                 [COMPILED, "not valid JSON"]),
    "compiled show: a demo not an object": (lambda ws: _demos(ws, "A passage. Plain."), ["compiled", "show", COMPILED],
                                            {}, [COMPILED, "demo 1 of 1 of predictor 'rephrase'", "not an object"]),
    "compiled show: no manifest": (lambda ws: _compiled(ws, None, manifest=False), ["compiled", "show", COMPILED], {},
                                   [COMPILED, "manifest"]),
    "evaluate: bad JSON line": (lambda ws: _dev(ws, b'{"chunk": "cut'), ["evaluate", "style_clone", "--dev", "dev.jsonl"],
                                {}, ["dev.jsonl:2", "not valid JSON"]),
    "evaluate: not UTF-8": (lambda ws: _dev(ws, b'{"chunk": "caf\xe9"}'), ["evaluate", "style_clone", "--dev", "dev.jsonl"],
                            {}, ["dev.jsonl:2", "UTF-8"]),
    "optimize: bad JSON line": (lambda ws: _dev(ws, b"[1, 2]"), ["optimize", "style_clone", "--dev", "dev.jsonl"], {},
                                ["dev.jsonl:2", "JSON object"]),
    "optimize: not UTF-8": (lambda ws: _dev(ws, b'{"chunk": "caf\xe9"}'), ["optimize", "style_clone", "--dev", "dev.jsonl"],
                            {}, ["dev.jsonl:2", "UTF-8"]),
}


def _dump(run_dir: Path) -> list[str]:
    """The run store's chunks and results, as SQL, after checking it is not damaged. (Not its meta table: a
    resumed run stamps its inputs' paths, and the copied workspace moved them.)"""
    with sqlite3.connect(run_dir / "run.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return [line for line in db.iterdump() if not line.startswith('INSERT INTO "meta"')]


@pytest.fixture(scope="module")
def servers():
    """Shared by the cases (each server takes half a second to stop): one that answers, one that answers 404."""
    with FakeOpenAIServer() as server, FakeOpenAIServer(responses=[404] * 1000) as missing:
        yield server, missing


@pytest.fixture(scope="module")
def baseline_run(tmp_path_factory, servers) -> Path:
    """A first successful `generate --limit 2`: the run store every failing generate must leave as it is."""
    ws = tmp_path_factory.mktemp("baseline")
    for name in ("programs", "signatures", "metrics", "data"):
        shutil.copytree(ROOT / name, ws / name, ignore=shutil.ignore_patterns("__pycache__"))
    result = run_cli(*GENERATE, "--api-base", servers[0].url, "--limit", "2", cwd=ws)
    assert result.returncode == 0, result.stderr
    return ws / "out"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(workspace, baseline_run, servers, monkeypatch, case):
    setup, argv, env, error = CASES[case]
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # run_cli passes this process's environment on
    if setup:
        setup(workspace)
    generate = argv[0] == "generate"
    if generate:
        shutil.copytree(baseline_run, workspace / "out")
        before = _dump(workspace / "out")
    server, missing = servers
    answered = len(server.requests)
    urls = {"{api}": server.url, "{api404}": missing.url, "{dead}": f"http://127.0.0.1:{_free_port()}/v1"}
    result = run_cli(*(urls.get(arg, arg) for arg in argv), cwd=workspace, env=env)
    assert "Traceback" not in result.stderr
    if error is not None:
        assert_one_line_error(result, *error)
    else:
        assert result.returncode == 0, result.stderr
        CHECKS[case](workspace, result)
    if generate:
        assert _dump(workspace / "out") == before
        assert len(server.requests) == answered  # nothing was sent before the error


def _unreadable_checked(ws: Path, result) -> None:
    sources = {json.loads(line)["source"] for line in result.stdout.splitlines()}
    assert sources == {"corpus/good.txt", "corpus/notes.txt/inner.md"}  # each once, through the loop too
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING: skipped")]
    for name, why in [("fifo.txt", "FIFO"), ("dangling.txt", "No such file"), ("a.txt", "symbolic links"),
                      ("b.txt", "symbolic links"), ("empty.md", "empty"), ("binary.txt", "binary"),
                      ("bomb.docx", "limit")]:
        assert any(f"corpus/{name}" in w and why in w for w in warnings), (name, result.stderr)
    assert len(warnings) == 7


def _latin1_checked(ws: Path, result) -> None:
    assert "latin1.txt: not valid UTF-8" in result.stderr
    assert json.loads(result.stdout)["text"] == "Caf\ufffd au lait, mon ami."


def _long_line_checked(ws: Path, result) -> None:
    text = (ws / "long.txt").read_text()
    rows = [json.loads(line) for line in (ws / "c.jsonl").read_text().splitlines()]
    assert "".join(text[r["start"]:r["end"]] for r in rows).replace(" ", "") == text.replace(" ", "")
    assert max(r["tokens"] for r in rows) <= 512


CHECKS = {"unreadable files in a folder": _unreadable_checked, "invalid UTF-8": _latin1_checked,
          "long line of words": _long_line_checked, "long line without spaces": _long_line_checked}
