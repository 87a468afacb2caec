"""Built-in pipelines: style_clone and factual_qa, their metrics and reference texts, from a folder that has
none; a workspace file of the same name overrides a built-in."""

import sys

from datagen.metrics.stylometry import background_path
from datagen.workspace.pipelines import builtin_workspace, find_pipelines, is_builtin, load_program

from .conftest import SAMPLES, every_record, run_cli
from .fakes import FakeOpenAIServer


def test_a_folder_without_pipelines_has_the_builtins(tmp_path):
    found = find_pipelines(tmp_path)
    assert list(found) == ["factual_qa", "style_clone"] and all(is_builtin(root) for root in found.values())
    assert background_path(tmp_path) == builtin_workspace() / "data" / "reference"
    listed = run_cli("pipelines", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == ["factual_qa  (built-in)", "style_clone  (built-in)"]


def test_a_workspace_file_overrides_the_builtin_of_the_same_name(workspace):
    program = workspace / "programs/style_clone.py"
    program.write_text(program.read_text().replace("class StyleClone(", "class MyStyleClone("))
    assert not is_builtin(find_pipelines(workspace)["style_clone"])
    assert type(load_program("style_clone", workspace)).__name__ == "MyStyleClone"


def test_generate_style_clone_works_in_an_empty_folder(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "text.md").write_text(SAMPLES.joinpath("lighthouse_keeper.md").read_text())
    with FakeOpenAIServer() as server:
        run = run_cli("generate", "style_clone", "--input", "corpus", "--out", "out", "--limit", "2",
                      "--model", "openai/fake", "--api-base", server.url, "--min-score", "generic_offline=0",
                      cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert len(every_record(tmp_path / "out/sharegpt.jsonl")) == 2


def test_loading_workspaces_leaves_the_processs_own_sys_path_entries(workspace, monkeypatch):
    """A workspace folder the process itself put on sys.path (pytest's rootdir, a notebook's folder) stays there
    after another workspace is used: only the entries datagen inserted are taken out. (A process spawned later
    inherits sys.path; it failed to import this test package when the repository root had been removed.)"""
    own = str(builtin_workspace().resolve())
    monkeypatch.setattr("sys.path", [*sys.path, own])
    before = sys.path.count(own)
    load_program("style_clone", builtin_workspace())
    assert type(load_program("style_clone", workspace)).__module__ == "programs.style_clone"
    assert sys.path[0] == str(workspace.resolve()) and own in sys.path
    load_program("style_clone", builtin_workspace())
    assert str(workspace.resolve()) not in sys.path and sys.path.count(own) == before + 1
    load_program("style_clone", workspace)
    assert sys.path.count(own) == before
