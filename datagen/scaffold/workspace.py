"""`datagen init [DIR]`: a new workspace anywhere, that runs at once on the embedded model.

It writes datagen.toml (the model settings commented out, so the embedded model runs until one is chosen), the
packages programs/, signatures/ and metrics/, the sample corpus (data/samples/, the built-in one), and a pipeline
to start from, as `datagen new` writes one (its signature, program, metrics, a dev set drawn from the samples,
and tests/test_NAME.py). Nothing is overwritten: any of those files existing already refuses the whole of it.
The built-in pipelines (style_clone, factual_qa) are there too, without a copy: `datagen pipelines` lists them.
"""

from pathlib import Path

from datagen.workspace.config import CONFIG_FILE
from datagen.errors import DatagenError
from datagen.workspace.pipelines import builtin_workspace
from datagen.scaffold.pipeline import DEFAULT_SIGNATURE, SAMPLE_CORPUS, check_name, dev_set, parse_signature, render, write_all

STARTER = "starter"

CONFIG = '''\
# datagen's settings for this workspace (every key and its default: docs/config.md in datagen's documentation).
# With the [models.*] tables commented out, every role runs the embedded offline model (Gemma 3 270M): enough
# to try everything, far too small to write good data. Point the task role at a capable model for that.
# Keys never go in this file: name the environment variable that holds one with api_key_env.

# [models.task]                       # runs the pipeline
# model = "openai/gpt-4o-mini"
# api_key_env = "OPENAI_API_KEY"
# temperature = 0.7
# max_tokens = 1024

# [models.judge]                      # scores samples (metrics, --min-score, optimize)
# model = "openai/Qwen2.5-7B-Instruct"
# api_base = "http://127.0.0.1:8000/v1"   # any OpenAI-compatible server: vLLM, llama.cpp, ...

# [models.prompt]                     # proposes instructions (mipro, gepa, copro, simba)
# model = "openai/gpt-4o"

[chunking]
max_tokens = 512
'''

PACKAGES = {
    "programs": '"""dspy.Module pipelines: `datagen generate NAME` runs the program in programs/NAME.py (a file named '
                'like a built-in pipeline overrides it)."""\n',
    "signatures": '"""Typed dspy.Signature classes, one module per pipeline."""\n',
    "metrics": '"""Each pipeline\'s metrics and their weights (metrics/NAME.py), chosen from datagen.metrics."""\n',
}


def init_workspace(folder: Path, name: str = STARTER, signature: str | None = None) -> list[Path]:
    """Make a workspace in `folder` (created if missing) with a starter pipeline `name` of `signature` ("inputs
    -> outputs", default "passage -> output"), and return the files written. Raises DatagenError, naming the
    file, when any of them exists (nothing is written then), or for a bad name or signature."""
    if folder.exists() and not folder.is_dir():
        raise DatagenError(f"{folder}: exists and is not a folder")
    files = {Path(CONFIG_FILE): CONFIG}
    files.update({Path(package, "__init__.py"): text for package, text in PACKAGES.items()})
    samples = builtin_workspace() / SAMPLE_CORPUS
    files.update({SAMPLE_CORPUS / path.name: path.read_text(encoding="utf-8") for path in sorted(samples.glob("*.md"))})
    _refuse_existing(folder, files)
    check_name(name, folder)
    pipeline = {**render(name, parse_signature(signature or DEFAULT_SIGNATURE)), Path("data", name, "dev.jsonl"): ""}
    _refuse_existing(folder, pipeline)
    write_all(folder, files)
    # The dev set is drawn from the samples just written, so that it names them by their place in this workspace.
    dev = Path("data", name, "dev.jsonl")
    write_all(folder, {**pipeline, dev: dev_set(folder)})
    return [folder / relative for relative in [*files, *pipeline]]


def _refuse_existing(folder: Path, files: dict[Path, str]) -> None:
    for relative in files:
        if (folder / relative).exists():
            raise DatagenError(f"{folder / relative} already exists: refusing to overwrite it (nothing was written)")
