"""A full disk and a read-only one (issue 27's items 2 and 3), on real file systems: a tmpfs of a few MiB that fills up
(root mounts it; elsewhere those tests skip), and a run folder bind-mounted read-only (root), or without write
permission (any other user). Every command that writes there says so in one line naming the folder, exits non-zero
and leaves what was there whole; every command that reads works on a read-only run folder, however SQLite's files
were left beside run.db. Each drives the installed `datagen` command against a run the fake server made."""

import errno
import json
import os
import re
import shutil
import sqlite3
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dspy
import pytest

from datagen.errors import DiskError
from datagen.workspace.compiled import manifest_path, save_compiled

from .browser import ViewServer, copy_workspace
from .conftest import ROOT, every_record, run_cli
from .fakes import FakeOpenAIServer
from .test_cli import assert_one_line_error

GENERATE = ["generate", "style_clone", "-i", "data/samples", "--max-tokens", "300", "--model", "openai/fake"]
ENV = {"DATAGEN_TASK_NUM_RETRIES": "0"}
FULL = "no space left on its disk"


def _sh(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(arg) for arg in args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> tuple[Path, Path]:
    """A workspace whose runs hold half their chunks out (for eval-model), and a finished style_clone run in it,
    made by `datagen generate` over the fake server: (workspace, run folder). Tests copy the run before using it."""
    base = tmp_path_factory.mktemp("made")
    workspace = copy_workspace(ROOT, base / "ws")
    (workspace / "datagen.toml").write_text("[splits]\ntest_fraction = 0.5\n")
    with FakeOpenAIServer() as server:
        result = run_cli(*GENERATE, "-o", str(base / "run"), "--api-base", server.url, cwd=workspace, env=ENV)
    assert result.returncode == 0, result.stderr
    return workspace, base / "run"


@pytest.fixture
def disk(tmp_path) -> Iterator[Path]:
    """A 16 MiB file system of its own (tmpfs) at tmp_path/disk, for `fill` to fill: a real full disk."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a real full disk needs a small file system of its own, which only root may mount")
    mounted = _sh("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", folder)
    if mounted.returncode:
        pytest.skip(f"mount -t tmpfs is refused here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        if _sh("umount", folder).returncode:
            _sh("umount", "-l", folder)


def fill(disk: Path) -> Path:
    """Fill `disk` until it refuses another byte; returns the file that fills it (unlink it to free the space)."""
    filler = disk / "filler"
    with filler.open("ab", buffering=0) as sink:
        for block in (1 << 16, 1 << 12, 1):
            try:
                while True:
                    sink.write(b"\0" * block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    return filler


@contextmanager
def read_only(folder: Path) -> Iterator[str]:
    """`folder` read-only for the block: bind-mounted read-only onto itself (root), else its write permission and its
    files' taken away (the mode bits do not stop root). Yields the words datagen uses for it."""
    if os.geteuid() != 0:
        modes = {path: path.stat().st_mode for path in [folder, *folder.rglob("*")]}
        for path, mode in modes.items():
            path.chmod(mode & ~0o222)
        try:
            yield "no permission to write there"
        finally:
            for path, mode in modes.items():
                path.chmod(mode)
        return
    bound = _sh("mount", "--bind", folder, folder)
    if bound.returncode:
        pytest.skip(f"mount --bind is refused here, and root writes whatever the mode bits say: {bound.stderr}")
    try:
        remounted = _sh("mount", "-o", "remount,bind,ro", folder)
        assert remounted.returncode == 0, remounted.stderr
        yield "on a read-only disk"
    finally:
        _sh("umount", folder)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` by its relative path, with its bytes."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def partials(folder: Path) -> list[Path]:
    """What a write cut short would leave: datagen's temporary names (`replacing`)."""
    return [path for path in folder.rglob("*") if ".partial" in path.name]


def stored(run: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(run / "run.db") as db:
        return db.execute(sql).fetchall()


# --- a full disk ----------------------------------------------------------------------------------------------

def test_a_disk_that_fills_mid_run_stops_generate_in_one_line_and_the_same_command_finishes_it(made, disk):
    workspace, _ = made
    run = disk / "run"
    chunks_asked: set[str] = set()

    def fill_at_the_third_chunk(source, attempt):
        chunks_asked.add(source)
        if len(chunks_asked) == 3 and not (disk / "filler").exists():
            fill(disk)
        return None  # answered as usual: the commit of its result is what the disk refuses

    args = [*GENERATE, "-o", str(run), "--concurrency", "1"]
    env = {**ENV, "DSPY_CACHEDIR": str(disk.parent / "cache")}  # not the made run's: every chunk is asked
    with FakeOpenAIServer(faults=fill_at_the_third_chunk) as server:
        stopped = run_cli(*args, "--api-base", server.url, cwd=workspace, env=env)
    assert_one_line_error(stopped, f"{run}: {FULL}", "0 bytes free", "free some space there")
    assert stored(run, "PRAGMA integrity_check") == [("ok",)]
    kept = {chunk for (chunk,) in stored(run, "SELECT c.text FROM results r JOIN chunks c ON c.id = r.chunk_id "
                                              "WHERE r.status = 'done'")}
    assert len(kept) < 13 and not partials(run)

    (disk / "filler").unlink()
    with FakeOpenAIServer() as server:
        finished = run_cli(*args, "--api-base", server.url, cwd=workspace, env=env)
        asked = {served.source.strip() for served in server.served}
    assert finished.returncode == 0, finished.stderr
    assert not asked & {chunk.strip() for chunk in kept}  # what was committed before the disk filled is kept
    assert stored(run, "SELECT count(*) FROM results WHERE status = 'done'") == stored(run, "SELECT count(*) FROM "
                                                                                           "chunks")
    assert len(every_record(run / "sharegpt.jsonl")) == stored(run, "SELECT count(*) FROM chunks")[0][0]


EXPORTS = {"a file": ["-f", "sharegpt"], "a folder (hf)": ["-f", "hf"],
           "a trainer's folder": ["--for", "trl", "--base-model", "Qwen/Qwen2.5-0.5B-Instruct"]}


@pytest.mark.parametrize("export", EXPORTS.values(), ids=EXPORTS.keys())
def test_an_export_on_a_full_disk_fails_in_one_line_and_leaves_the_one_there_whole(made, disk, export):
    workspace, made_run = made
    run = shutil.copytree(made_run, disk / "run")
    first = run_cli("export", str(run), *export, cwd=workspace)
    assert first.returncode == 0, first.stderr
    before = snapshot(run)
    filler = fill(disk)
    again = run_cli("export", str(run), *export, cwd=workspace)
    assert_one_line_error(again, str(run), FULL)  # the run folder, or the trainer's folder in it
    assert snapshot(run) == before and not partials(run)
    filler.unlink()
    assert run_cli("export", str(run), *export, cwd=workspace).returncode == 0  # with room again, as before


class Program(dspy.Module):
    """A program of one predictor whose instructions name it; with `fills`, saving its state fills that disk after
    the state is written (what is written next meets a full disk)."""

    def __init__(self, name: str, fills: Path | None = None):
        super().__init__()
        self.rephrase = dspy.Predict(dspy.Signature("chunk -> generic", name))
        self.fills = fills

    def save(self, path, **kwargs):
        super().save(path, **kwargs)
        if self.fills is not None:
            fill(self.fills)


def saved(state: Path) -> tuple[str, str]:
    """(the program the state is, the program the manifest describes)."""
    return (json.loads(state.read_text())["rephrase"]["signature"]["instructions"],
            json.loads(manifest_path(state).read_text())["scores"]["program"])


def manifest(program: str) -> dict:
    """A manifest larger than the space a replaced state frees (a long list of demos' sources, say)."""
    return {"scores": {"program": program}, "notes": "n" * 100_000}


def test_a_compiled_program_and_its_manifest_stay_one_saves_pair_whenever_the_disk_fills(disk):
    state = save_compiled(Program("first"), "style_clone", "kept", disk, manifest("first"))
    # The disk fills once the state is written: the manifest was written before it, so the pair is replaced whole.
    save_compiled(Program("second", fills=disk), "style_clone", "kept", disk, manifest("second"))
    assert saved(state) == ("second", "second")
    fill(disk)  # again: the first pair's files were freed when the second took their place
    before = snapshot(state.parent)
    with pytest.raises(DiskError, match=re.escape(f"{state.parent}: {FULL}")):
        save_compiled(Program("third"), "style_clone", "kept", disk, manifest("third"))
    assert snapshot(state.parent) == before and not partials(disk)


def test_optimize_on_a_full_disk_fails_in_one_line_naming_the_compiled_folder(made, disk):
    workspace, _ = made
    ws = copy_workspace(ROOT, disk.parent / "ws")
    (ws / "compiled").symlink_to(disk, target_is_directory=True)
    fill(disk)
    with FakeOpenAIServer() as server:
        result = run_cli("optimize", "style_clone", "--dev", "data/style_clone/dev.jsonl", "--yes", "--optimizer",
                         "bootstrap", "--metric", "generic_offline", "--model", "openai/fake", "--api-base",
                         server.url, cwd=ws, env=ENV, timeout=300)
    assert_one_line_error(result, f"{ws / 'compiled'}", FULL)
    assert not partials(disk)


def test_eval_model_on_a_full_disk_stops_in_one_line_and_goes_on_after(made, disk):
    workspace, made_run = made
    run = shutil.copytree(made_run, disk / "run")

    def copy_after_filling(messages):
        if not (disk / "filler").exists():
            fill(disk)
        return messages[-1]["content"]

    args = ["eval-model", str(run), "-m", "copy=openai/copy"]
    with FakeOpenAIServer(chat=copy_after_filling) as server:
        stopped = run_cli(*args, "--api-base", server.url, cwd=workspace)
    assert_one_line_error(stopped, f"{run / 'model-eval'}: {FULL}")
    assert not partials(run) and not (run / "model-eval/eval.json").exists()
    (disk / "filler").unlink()
    with FakeOpenAIServer(chat=lambda messages: messages[-1]["content"]) as server:
        finished = run_cli(*args, "--api-base", server.url, cwd=workspace)
    assert finished.returncode == 0, finished.stderr
    assert json.loads((run / "model-eval/eval.json").read_text())["models"]


# --- a read-only run folder -------------------------------------------------------------------------------------

# How SQLite's files may be left beside run.db when the disk becomes read-only, each holding one review's commit.
LEFT = {"checkpointed": "no -wal nor -shm, run.db still in WAL mode", "in the -wal": "its -wal and -shm beside it",
        "in the -wal, no -shm": "its -wal alone beside it"}


def left_reviewed(made_run: Path, target: Path, left: str) -> Path:
    """A copy of the run at `target` in which a reviewer approved one sample, that commit left as `left` says (see
    LEFT): checkpointed into run.db as a clean close leaves it, or still in the -wal, as a process stopped while
    writing leaves it (with or without its -shm)."""
    scratch = shutil.copytree(made_run, target.with_name(target.name + ".scratch"))
    db = sqlite3.connect(scratch / "run.db", isolation_level=None)
    db.execute("PRAGMA wal_autocheckpoint = 0")
    chunk_id = db.execute("SELECT chunk_id FROM results WHERE status = 'done' ORDER BY rowid").fetchone()[0]
    db.execute("INSERT INTO reviews (chunk_id, sample, verdict, updated_at) VALUES (?, 0, 'good', ?)",
               (chunk_id, time.time()))
    if left != "checkpointed":
        shutil.copytree(scratch, target)  # while the writer is open: the commit is in the -wal only
        assert (target / "run.db-wal").stat().st_size > 0
    db.close()
    if left == "checkpointed":
        shutil.copytree(scratch, target)
        assert not (target / "run.db-wal").exists()
    elif left == "in the -wal, no -shm":
        (target / "run.db-shm").unlink()
    shutil.rmtree(scratch)
    return target


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode()


@pytest.mark.parametrize("left", LEFT, ids=LEFT.values())
def test_every_reading_command_works_on_a_read_only_run_folder(made, tmp_path, left):
    workspace, made_run = made
    run = left_reviewed(made_run, tmp_path / "run", left)
    before = snapshot(run)
    elsewhere = tmp_path / "elsewhere" / "reviewed.jsonl"
    with read_only(run):
        status = run_cli("status", str(run), cwd=workspace)
        assert status.returncode == 0 and "13/13 chunks done" in status.stderr, status.stderr
        ((chunk_id,),) = stored(made_run, "SELECT chunk_id FROM results LIMIT 1")
        for args in ([], ["--failed"], [chunk_id]):
            shown = run_cli("inspect", str(run), *args, cwd=workspace)
            assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
        exported = run_cli("export", str(run), "-f", "alpaca", "--reviewed-only", "-o", str(elsewhere), cwd=workspace)
        assert exported.returncode == 0, exported.stderr
        with ViewServer(str(run), cwd=workspace) as view:
            approved = get(f"{view.url}/r/0/samples?review=good")
        assert snapshot(run) == before
    assert len(every_record(elsewhere)) == 1  # the review's commit was read, wherever SQLite had left it
    assert approved.count('data-href="/r/0/s/') == 1


def test_the_reading_commands_work_on_a_full_disk_and_write_nothing_there(made, disk):
    workspace, made_run = made
    run = shutil.copytree(made_run, disk / "run")
    fill(disk)
    before = snapshot(run)
    status = run_cli("status", str(run), cwd=workspace)
    assert status.returncode == 0 and "13/13 chunks done" in status.stderr, status.stderr
    elsewhere = disk.parent / "elsewhere" / "alpaca.jsonl"
    exported = run_cli("export", str(run), "-f", "alpaca", "-o", str(elsewhere), cwd=workspace)
    assert exported.returncode == 0, exported.stderr
    assert len(every_record(elsewhere)) == len(every_record(made_run / "sharegpt.jsonl"))
    assert snapshot(run) == before  # not even the -shm SQLite makes where it can


def test_every_writing_command_says_the_run_folder_is_read_only_and_asks_no_model(made, tmp_path):
    workspace, made_run = made
    run = shutil.copytree(made_run, tmp_path / "run")
    before = snapshot(run)
    with read_only(run) as said, FakeOpenAIServer(chat=lambda messages: "an answer") as server:
        resumed = run_cli(*GENERATE, "-o", str(run), "--api-base", server.url, cwd=workspace, env=ENV)
        assert_one_line_error(resumed, f"{run}: {said}")
        exported = run_cli("export", str(run), "-f", "sharegpt", cwd=workspace)
        assert_one_line_error(exported, f"{run}: {said}")
        evaluated = run_cli("eval-model", str(run), "-m", "tuned=openai/tuned", "--api-base", server.url,
                            cwd=workspace)
        assert_one_line_error(evaluated, f"{run}: {said}")
        with ViewServer(str(run), cwd=workspace) as view:
            page = get(f"{view.url}/r/0/samples")
            chunk, index = re.search(r'data-href="/r/0/s/(\w+)/(\d+)', page).groups()
            form = get(f"{view.url}/r/0/s/{chunk}/{index}")
            token = re.search(r'name="token" value="([^"]+)"', form).group(1)
            body = urllib.parse.urlencode({"token": token, "verdict": "good"}).encode()
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"{view.url}/r/0/s/{chunk}/{index}/review", data=body, timeout=30)
        assert refused.value.code == 400 and said in refused.value.read().decode()
        assert server.requests == []  # eval-model stopped before asking (and paying) any model
        assert snapshot(run) == before


def test_a_run_folder_whose_name_holds_uri_characters_is_read(made, tmp_path):
    """SQLite opens a read-only connection by URI: '?', '#' and '%' in a folder name stay part of the path."""
    workspace, made_run = made
    run = shutil.copytree(made_run, tmp_path / "run #1?x=%41")
    status = run_cli("status", str(run), cwd=workspace)
    assert status.returncode == 0 and "13/13 chunks done" in status.stderr, status.stderr
    with ViewServer(str(run), cwd=workspace) as view:
        listed = get(f"{view.url}/r/0/samples")
    assert listed.count('data-href="/r/0/s/') == 13
