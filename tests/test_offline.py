"""Nothing downloads at run time: the commands run in a network namespace with no network at all."""

import json
import shutil
import subprocess

import pytest

from .conftest import embedded_run_records, run_cli


def _no_network_available() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(not _no_network_available(), reason="needs `unshare -n` (root or user namespaces)")


def offline(*args, cwd, env=None):
    return run_cli(*args, cwd=cwd, env=env, wrapper=["unshare", "-n"])


def test_chunking_counts_tokens_and_splits_sentences_offline(workspace, tmp_path):
    # A fresh tiktoken cache location proves the vocabulary is not fetched into a cache on first use.
    result = offline("chunk", "data/samples", "--max-tokens", "64", cwd=workspace,
                     env={"TIKTOKEN_CACHE_DIR": str(tmp_path / "empty-cache"), "HF_HUB_OFFLINE": "0"})
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) > 10 and all(r["tokens"] <= 64 for r in rows)
    assert not (tmp_path / "empty-cache").exists()


def test_generate_with_the_embedded_model_offline(workspace):
    (workspace / "tiny.txt").write_text("Aye, the Sea did roar that night, mark you.\n", encoding="utf-8")
    result = offline("generate", "style_clone", "-i", "tiny.txt", "-o", "out", cwd=workspace,
                     env={"DATAGEN_TASK_MAX_TOKENS": "48"})
    embedded_run_records(result, workspace / "out/sharegpt.jsonl")
