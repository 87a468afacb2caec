"""Built-in pipelines: style_clone and factual_qa, their metrics and reference texts, from a folder that has
none; a workspace file of the same name overrides a built-in."""

from datagen.metrics.stylometry import background_path
from datagen.workspace.pipelines import builtin_workspace, find_pipelines, is_builtin, load_program

from .conftest import SAMPLES, run_cli
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
    assert len((tmp_path / "out/sharegpt.jsonl").read_text().splitlines()) == 2
