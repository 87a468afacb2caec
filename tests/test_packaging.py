"""`pip install .` (not editable) works outside the repository: the wheel, built once per session, is installed into
a fresh virtualenv, and in an empty folder elsewhere `datagen init`, `datagen generate style_clone`, `datagen new`
and a script of one's own through the objects API all run, against the fake OpenAI server over real HTTP.

The virtualenv gets datagen from the wheel alone (`--no-deps`); its dependencies resolve, offline, from the test
run's own site-packages, listed in a .pth file (whose own .pth files, the editable datagen's among them, are not
read: only a site directory's are).
"""

import os
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

from .conftest import ROOT, every_record
from .fakes import FakeOpenAIServer, plain

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> tuple[Path, str]:
    """The wheel `pip wheel --no-deps .` builds from the repository, and the build's output."""
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(out), str(ROOT)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    return next(out.glob("datagen-*.whl")), build.stdout + build.stderr


@pytest.fixture(scope="session")
def installed(built, tmp_path_factory) -> Path:
    """A fresh virtualenv with the wheel installed (not editable); returns its bin/ folder."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "dev_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    install = subprocess.run([python, "-m", "pip", "install", "--no-deps", "--no-index", str(built[0])],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr
    return venv / "bin"


def run(bin_dir: Path, command: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`command` (a program of the virtualenv: datagen, python) with `args`, in `cwd`; it must succeed."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(DSPY_CACHEDIR=str(cwd / ".dspy_cache"), PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")
    result = subprocess.run([bin_dir / command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{command} {args}: {result.stdout}{result.stderr}"
    return result


def test_the_wheel_carries_the_builtin_workspace_and_builds_without_the_license_warning(built):
    wheel, output = built
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("programs", "signatures", "metrics", "data"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                assert f"datagen/_builtin/{path.relative_to(ROOT).as_posix()}" in names, path
    assert "datagen/metrics/composite.py" in names
    # datagen view serves only what the package holds: every template, the stylesheet and the script.
    for path in (ROOT / "datagen/view").rglob("*"):
        if path.suffix in (".html", ".css", ".js"):
            assert path.relative_to(ROOT).as_posix() in names, path
    assert "License classifiers are deprecated" not in output and "project.license` as a TOML table" not in output
    assert "is absent from the `packages` configuration" not in output


def test_installed_datagen_runs_anywhere(installed, tmp_path):
    where = run(installed, "python", "-c", "import datagen; print(datagen.__file__)", cwd=tmp_path).stdout
    assert str(ROOT) not in where and "site-packages" in where  # the wheel's copy, not the repository's

    run(installed, "datagen", "init", "demo", cwd=tmp_path)
    demo = tmp_path / "demo"
    for path in ("datagen.toml", "programs", "signatures", "metrics", "data/samples", "tests"):
        assert (demo / path).exists(), path
    listed = run(installed, "datagen", "pipelines", cwd=demo).stdout.split()
    assert {"starter", "style_clone", "factual_qa"} <= set(listed)

    # The fake's summary: the first half of its reworded passage, never longer than the passage.
    with FakeOpenAIServer(by_field={"summary": lambda text: " ".join(plain(text).split()[:len(text.split()) // 2 + 1])}
                          ) as server:
        fake = ("--model", "openai/fake", "--api-base", server.url)
        run(installed, "datagen", "generate", "style_clone", "--input", "data/samples", "--out", "out",
            "--min-score", "generic_offline=0", *fake, cwd=demo)
        assert (demo / "out/sharegpt.jsonl").read_text().strip()

        run(installed, "datagen", "new", "qa", "--signature", "passage -> question, answer", cwd=demo)
        run(installed, "datagen", "generate", "qa", "--input", "data/samples", "--out", "out-qa", "--limit", "2",
            *fake, cwd=demo)
        assert len(every_record(demo / "out-qa/sharegpt.jsonl")) == 2

        script = demo / "own.py"
        script.write_text(textwrap.dedent(f'''\
            import dspy
            import datagen


            class Summarize(dspy.Module):
                def __init__(self):
                    super().__init__()
                    self.summarize = dspy.Predict("passage -> summary")

                def forward(self, chunk):
                    summary = self.summarize(passage=chunk).summary
                    return dspy.Prediction(samples=[datagen.Sample(input=chunk, output=summary)])


            def shorter(example, prediction, trace=None):
                return float(all(len(s.output) <= len(example.chunk) for s in prediction.samples))


            dspy.configure(lm=dspy.LM("openai/fake", api_base="{server.url}", api_key="no-key", engine="litellm"))
            report = datagen.generate(Summarize(), ["data/samples"], "out-own", settings=datagen.RunSettings(limit=2))
            evaluation = datagen.evaluate(Summarize(), ["The lamp was lit.", "The sea was calm."], shorter)
            print(report.samples, evaluation.score)
            '''))
        said = run(installed, "python", str(script), cwd=demo).stdout.split()
    assert said == ["2", "1.0"]
