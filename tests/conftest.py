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


def run_cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 120,
            wrapper: list[str] | None = None) -> subprocess.CompletedProcess:
    """Run the installed `datagen` command for real, in a subprocess (optionally under `wrapper`)."""
    full_env = {**os.environ, "DSPY_CACHEDIR": str(cwd / ".dspy_cache"), **(env or {})}
    exe = Path(sys.executable).with_name("datagen")
    return subprocess.run([*(wrapper or []), str(exe), *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
