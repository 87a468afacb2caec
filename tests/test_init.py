"""`datagen init [DIR]`: a workspace anywhere, that runs at once, and never overwrites a file."""

import json
import os
import subprocess
import sys
import tomllib

from datagen.workspace import load_config

from .conftest import embedded_run_records, every_record, run_cli
from .fakes import FakeOpenAIServer

MADE = ["datagen.toml", "programs/__init__.py", "signatures/__init__.py", "metrics/__init__.py",
        "data/samples/lighthouse_keeper.md", "signatures/starter.py", "programs/starter.py", "metrics/starter.py",
        "tests/test_starter.py", "data/starter/dev.jsonl"]


def test_init_makes_a_workspace_whose_pipeline_and_test_run(tmp_path):
    made = run_cli("init", "demo", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    demo = tmp_path / "demo"
    assert sorted(made.stdout.split()) == sorted(word for path in MADE for word in ("wrote", f"demo/{path}"))
    config = (demo / "datagen.toml").read_text()
    assert '# model = "openai/gpt-4o-mini"' in config and "api_key_env" in config
    assert tomllib.loads(config) == {"chunking": {"max_tokens": 512}}  # the model settings are commented out
    assert load_config(demo).role("task").model is None  # so the embedded model runs
    assert "datagen generate starter" in made.stderr

    with FakeOpenAIServer() as server:
        run = run_cli("generate", "starter", "--input", "data/samples", "--out", "out", "--limit", "2",
                      "--model", "openai/fake", "--api-base", server.url, cwd=demo)
    assert run.returncode == 0, run.stderr
    assert len(every_record(demo / "out/sharegpt.jsonl")) == 2
    own = subprocess.run([sys.executable, "-m", "pytest", "tests/test_starter.py", "-q", "-p", "no:cacheprovider"],
                         cwd=demo, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "DSPY_CACHEDIR": str(demo / ".dspy_cache")})
    assert own.returncode == 0, own.stdout + own.stderr


def test_init_in_the_current_folder_with_a_pipeline_of_ones_choosing(tmp_path):
    made = run_cli("init", "--pipeline", "qa", "--signature", "passage -> question, answer", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "programs/qa.py").is_file() and (tmp_path / "data/qa/dev.jsonl").is_file()
    listed = run_cli("pipelines", cwd=tmp_path).stdout.splitlines()
    assert listed == ["factual_qa  (built-in)", "qa", "style_clone  (built-in)"]


def test_init_refuses_to_overwrite_anything(tmp_path):
    (tmp_path / "demo" / "metrics").mkdir(parents=True)
    (tmp_path / "demo" / "metrics" / "__init__.py").write_text("# mine\n")
    refused = run_cli("init", "demo", cwd=tmp_path)
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines() == [
        "error: demo/metrics/__init__.py already exists: refusing to overwrite it (nothing was written)"]
    assert sorted(p.name for p in (tmp_path / "demo").rglob("*")) == ["__init__.py", "metrics"]
    assert (tmp_path / "demo" / "metrics" / "__init__.py").read_text() == "# mine\n"


def test_init_refuses_a_builtin_name_and_a_file_for_a_folder(tmp_path):
    taken = run_cli("init", "demo", "--pipeline", "style_clone", cwd=tmp_path)
    assert taken.returncode != 0 and "'style_clone' is a built-in pipeline" in taken.stderr
    (tmp_path / "file").write_text("")
    not_folder = run_cli("init", "file", cwd=tmp_path)
    assert not_folder.returncode != 0 and "file: exists and is not a folder" in not_folder.stderr
    assert not (tmp_path / "demo").exists()


def test_a_new_workspace_runs_on_the_embedded_model(tmp_path):
    assert run_cli("init", "demo", cwd=tmp_path).returncode == 0
    demo = tmp_path / "demo"
    (demo / "tiny.txt").write_text("The lamp was lit at dusk, and the sea lay calm under it.\n")
    run = run_cli("generate", "starter", "--input", "tiny.txt", "--out", "out", cwd=demo,
                  env={"DATAGEN_TASK_MAX_TOKENS": "48"}, timeout=180)
    for record in embedded_run_records(run, demo / "out/sharegpt.jsonl"):
        assert record["conversations"][0]["value"].startswith("The lamp was lit")
