import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dspy
import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "data" / "samples"


@pytest.fixture(autouse=True)
def _isolated_dspy(tmp_path, monkeypatch):
    """No DSPy response cache between tests (a cached answer would hide a broken path), and a trace of its own
    per test (a program called outside datagen's runner records its predictions in the trace in effect)."""
    monkeypatch.setenv("DSPY_CACHEDIR", str(tmp_path / ".dspy_cache"))
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    with dspy.context(lm=None, trace=[]):
        yield


@pytest.fixture
def workspace(tmp_path) -> Path:
    """A copy of this repository's workspace (programs, signatures, metrics, data) in a temp folder."""
    ws = tmp_path / "ws"
    for name in ("programs", "signatures", "metrics", "data"):
        shutil.copytree(ROOT / name, ws / name, ignore=shutil.ignore_patterns("__pycache__"))
    return ws


def _cli(args: tuple[str, ...], cwd: Path, env: dict | None, wrapper: list[str] | None = None) -> dict:
    """subprocess arguments that run the installed `datagen` command (optionally under `wrapper`) in `cwd`."""
    exe = Path(sys.executable).with_name("datagen")
    return {"args": [*(wrapper or []), str(exe), *args], "cwd": cwd, "text": True,
            "env": {**os.environ, "DSPY_CACHEDIR": str(cwd / ".dspy_cache"), **(env or {})}}


def run_cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 120,
            wrapper: list[str] | None = None) -> subprocess.CompletedProcess:
    """Run the installed `datagen` command for real, in a subprocess, to the end."""
    return subprocess.run(**_cli(args, cwd, env, wrapper), capture_output=True, timeout=timeout)


def start_cli(*args: str, cwd: Path, env: dict | None = None, wrapper: list[str] | None = None,
              terminal: int | None = None) -> subprocess.Popen:
    """Start the installed `datagen` command (optionally under `wrapper`) in a subprocess and return at once (to
    signal it, to race it). Its stdout and stderr are pipes; with `terminal` (a pseudo-terminal's file descriptor)
    its stdin, stdout and stderr are that terminal."""
    streams = ({"stdout": subprocess.PIPE, "stderr": subprocess.PIPE} if terminal is None
               else {"stdin": terminal, "stdout": terminal, "stderr": terminal})
    return subprocess.Popen(**_cli(args, cwd, env, wrapper), **streams)


def embedded_run_records(result: subprocess.CompletedProcess, export: Path) -> list[dict]:
    """The records a one-chunk `datagen generate` on the embedded model exported, after checking that it ended as
    such a run may: its chunk done, with a sample (exit 0), or with what a tiny model mostly writes (a title, a
    placeholder, part of the passage) dropped with its reason (no sample, exit 1 and the drop named)."""
    from datagen.lm import LOCAL_MODEL

    assert LOCAL_MODEL in result.stderr and "1/1 chunks done, 0 failed" in result.stderr, result.stderr
    records = every_record(export)
    if records:
        assert result.returncode == 0 and len(records) == 1, result.stderr
    else:
        assert result.returncode == 1 and "dropped by the pipeline's own checks: 1 (" in result.stderr, result.stderr
    return records

# tests/trainers/ checks the trainer exports with the trainers' own code, in .venv-trainers (make trainers): the
# default suite does not collect it.
collect_ignore = ["trainers"]


def written(report) -> int:
    """Samples a generate call's export holds in every split: the training file's and the held-out test file's."""
    return report.exported + report.held_out


def every_record(path: Path) -> list[dict]:
    """The records of an export's train file and of its other splits beside it (NAME.validation.jsonl,
    NAME.test.jsonl), where there are."""
    files = [path] + [path.with_name(f"{path.stem}.{split}{path.suffix}") for split in ("validation", "test")]
    return [json.loads(line) for file in files if file.exists()
            for line in file.read_text(encoding="utf-8").splitlines()]
