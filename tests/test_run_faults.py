"""A run's account of itself: tokens of every attempt counted, edited program code noticed, and an empty
dataset explained (issue 13's faults 8, 9 and 10)."""

import logging

import pytest

from datagen.workspace.compiled import load_compiled, save_compiled
from datagen.workspace.config import Config, ModelSettings
from datagen.errors import DatagenError
from datagen.runs import RunSettings, summarize
from datagen.runs.generate import generate
from datagen.workspace.pipelines import code_fingerprint, load_program, program_sources

from .conftest import run_cli, written
from .fakes import FakeEngine, FakeOpenAIServer, Unparseable, plain
from .test_cli import assert_one_line_error
from .test_factual_qa import QA_MODEL
from .test_generate import run


class Tally(FakeEngine):
    """The fake model, adding up the tokens it reports (as a provider bills them)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.prompt = self.completion = 0

    def complete(self, request):
        response = super().complete(request)
        with self._lock:
            self.prompt += response.usage.input_tokens
            self.completion += response.usage.output_tokens
        return response


def garbled_for_etienne(text):
    if "Étienne" in text:
        raise Unparseable
    return plain(text)


# --- 8. tokens of failed attempts ------------------------------------------------------------------------------

def test_the_tokens_of_failed_attempts_count_after_the_chunk_succeeds_on_resume(workspace, tmp_path):
    out = tmp_path / "run"
    failing, healthy = Tally(respond=garbled_for_etienne), Tally()
    assert run(workspace, out, failing).failures["parse"] > 0
    assert not run(workspace, out, healthy).failures
    billed = {"prompt_tokens": failing.prompt + healthy.prompt,
              "completion_tokens": failing.completion + healthy.completion}
    assert summarize(out).usage == {"fake/model": {**billed, "prompt_tokens_details": {"cached_tokens": 0}}}
    card = (out / "README.md").read_text(encoding="utf-8")
    assert f"{billed['prompt_tokens']:,} prompt + {billed['completion_tokens']:,} completion" in card


def test_a_judge_scoring_a_finished_run_has_its_tokens_counted(workspace, tmp_path):
    out = tmp_path / "run"
    with FakeOpenAIServer(by_field={"rating": lambda _: "4", "reasoning": lambda _: "fine"}) as server:
        config = Config(models={"task": ModelSettings(model="openai/task", api_base=server.url),
                                "judge": ModelSettings(model="openai/judge", api_base=server.url)})
        generate("style_clone", [workspace / "data/samples"], out, workspace=workspace, config=config,
                 settings=RunSettings(max_tokens=300, limit=2))
        before = len(server.requests)
        generate("style_clone", [workspace / "data/samples"], out, workspace=workspace, config=config,
                 min_scores={"content": 0.0}, settings=RunSettings(max_tokens=300, limit=2))
        judged = server.requests[before:]
    assert judged and all(body["model"] == "judge" for body in judged)
    assert summarize(out).usage["openai/judge"]["prompt_tokens"] == 10 * len(judged)  # the fake server's 10 a call


# --- 9. edited program code ------------------------------------------------------------------------------------

def test_the_code_fingerprint_covers_the_program_module_and_the_workspace_modules_it_imports(workspace):
    sources = program_sources(load_program("style_clone", workspace))
    assert set(sources) == {"programs/__init__.py", "programs/style_clone.py", "signatures/__init__.py",
                            "signatures/style.py"}


def edit(path, old, new):
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_a_run_resumed_after_forward_was_edited_is_refused_unless_forced(workspace, tmp_path):
    out = tmp_path / "run"
    run(workspace, out, FakeEngine(), limit=1)
    edit(workspace / "programs/style_clone.py", "self.rephrase(passage=styled).generic)",
         "self.rephrase(passage=styled).generic.strip())")
    with pytest.raises(DatagenError, match="different program code"):
        run(workspace, out, FakeEngine())
    forced = FakeEngine()
    report = run(workspace, out, forced, force=True)
    assert report.resumed == 0 and forced.calls == report.chunks == written(report)  # afresh, one code throughout


def test_an_edited_module_the_program_imports_is_noticed_even_through_another(workspace, tmp_path):
    out = tmp_path / "run"
    (workspace / "signatures/wording.py").write_text("def tidy(text):\n    return text\n", encoding="utf-8")
    edit(workspace / "signatures/style.py", "import dspy\n", "import dspy\n\nfrom signatures import wording\n")
    run(workspace, out, FakeEngine(), limit=1)
    edit(workspace / "signatures/wording.py", "return text", "return text.strip()")
    with pytest.raises(DatagenError, match="different program code"):
        run(workspace, out, FakeEngine())


def test_comments_and_other_pipelines_do_not_refuse_a_resume(workspace, tmp_path):
    out = tmp_path / "run"
    run(workspace, out, FakeEngine(), limit=1)
    edit(workspace / "programs/style_clone.py", "        boundaries, styled = framed(chunk, added)\n",
         "        # A comment changes no behaviour.\n        boundaries, styled = framed(chunk, added)\n")
    edit(workspace / "programs/factual_qa.py", "import dspy\n", "import dspy\nimport os\n")
    report = run(workspace, out, FakeEngine())
    assert report.resumed == 1 and written(report) == report.chunks + 1


def test_a_compiled_program_records_its_code_and_says_when_it_was_edited_since(workspace, caplog):
    program = load_program("style_clone", workspace)
    state = save_compiled(program, "style_clone", "x", workspace, {"code": code_fingerprint(program)})
    with caplog.at_level(logging.WARNING, "datagen.workspace.compiled"):
        load_compiled("style_clone", state, workspace)
        assert not caplog.records
        edit(workspace / "programs/style_clone.py", "self.rephrase(passage=styled).generic)",
             "self.rephrase(passage=styled).generic.strip())")
        load_compiled("style_clone", state, workspace)
    assert "code was edited since it was compiled" in caplog.text


# --- 10. an empty dataset --------------------------------------------------------------------------------------

def test_a_run_whose_candidates_were_all_dropped_says_so_by_reason(workspace):
    rejects = {**QA_MODEL, "accurate": lambda _: "false"}
    with FakeOpenAIServer(by_field=rejects) as server:
        result = run_cli("generate", "factual_qa", "-i", "data/factual_qa/corpus", "-o", "out", "--max-tokens", "300",
                         "--limit", "2", "-O", "questions=2", "--model", "openai/fake", "--api-base", server.url,
                         cwd=workspace)
    assert_one_line_error(result, "the dataset is empty", "the pipeline's own checks dropped every candidate",
                          "4 (inaccurate 4)")
    assert "see the failures above" not in result.stderr
    status = run_cli("status", "out", cwd=workspace)
    assert status.returncode == 0, status.stderr
    assert "dropped by the pipeline's own checks: 4 (inaccurate 4)" in status.stderr
    assert "why so few samples: the pipeline's own checks dropped every candidate" in status.stderr


def test_a_run_whose_gate_kept_every_sample_out_names_the_gate_and_its_counts(workspace):
    with FakeOpenAIServer() as server:  # the fake's rephrase drops case and punctuation: chrF is below 1
        result = run_cli("generate", "style_clone", "-i", "data/samples", "-o", "out", "--max-tokens", "300",
                         "--limit", "3", "--min-score", "chrf=1", "--model", "openai/fake", "--api-base", server.url,
                         cwd=workspace)
        assert_one_line_error(result, "the dataset is empty", "the quality gate kept every sample out",
                              "--min-score chrf >= 1: 0 of 3 samples pass, 3 kept out")
        status = run_cli("status", "out", cwd=workspace)
        assert "quality gate --min-score chrf >= 1: 0 of 3 samples pass, 3 kept out" in status.stderr
        # A later run without the gate exports them all, and status no longer speaks of one.
        again = run_cli("generate", "style_clone", "-i", "data/samples", "-o", "out", "--max-tokens", "300",
                        "--limit", "3", "--model", "openai/fake", "--api-base", server.url, cwd=workspace)
        assert again.returncode == 0, again.stderr
        assert "quality gate" not in run_cli("status", "out", cwd=workspace).stderr


def test_an_empty_dataset_is_blamed_on_the_gate_when_the_gate_kept_out_the_samples_the_checks_left():
    """`make demo` on the embedded model: 18 candidates dropped, the 2 samples made both below the gate. The dataset
    is empty because of the gate, and the drops are said after it."""
    from pathlib import Path

    from datagen.runs import RunSummary

    summary = RunSummary(Path("run"), {}, chunks=21, done=20, failed=1, samples=2, failures={}, usage={},
                         dropped={"too_short": 18}, gate={"composite": 0.45}, kept=0)
    assert summary.why_few_samples() == ("the quality gate kept every sample out: --min-score composite >= 0.45: 0 "
                                         "of 2 samples pass, 2 kept out; the pipeline's own checks dropped 18 "
                                         "(too_short 18) before it")
    summary.kept = 1  # one sample exported: the drops are why there are so few
    assert summary.why_few_samples().startswith("the pipeline's own checks dropped most candidates")
