"""`datagen init [DIR]`: a new workspace anywhere, that runs at once on the embedded model.

It writes datagen.toml (the model settings commented out, so the embedded model runs until one is chosen), the
packages programs/, signatures/ and metrics/, the sample corpus (data/samples/, the built-in one), and a pipeline
to start from, as `datagen new` writes one (its signature, program, metrics, a dev set drawn from the samples,
and tests/test_NAME.py). Nothing is overwritten: any of those files existing already refuses the whole of it.
The built-in pipelines (style_clone, factual_qa) are there too, without a copy: `datagen pipelines` lists them.
"""

from pathlib import Path

from datagen.errors import DatagenError
from datagen.scaffold.pipeline import (DEFAULT_SIGNATURE, SAMPLE_CORPUS, check_name, dev_path, dev_set, parse_signature,
                                       refuse_existing, render, write_all)
from datagen.workspace import CONFIG_FILE, builtin_workspace

STARTER = "starter"

CONFIG = '''\
# datagen's settings for this workspace (every key and its default: docs/config.md in datagen's documentation).
# With the [models.*] tables commented out, every role runs the embedded offline model (SmolLM2-135M): enough
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
    """Make a workspace with a starter pipeline (what `datagen init` does); everything is checked before anything
    is written.

    Args:
        folder: Where the workspace goes (created if missing).
        name: The starter pipeline's name.
        signature: Its fields, "inputs -> outputs" (default "passage -> output").

    Returns:
        The paths written: datagen.toml, the packages, the sample corpus and the pipeline's files.

    Raises:
        DatagenError: `folder` is a file, one of the files exists (named), or a bad name or signature (nothing
            is written then); or a file cannot be written.
    """
    if folder.exists() and not folder.is_dir():
        raise DatagenError(f"{folder}: exists and is not a folder")
    files = {Path(CONFIG_FILE): CONFIG}
    files.update({Path(package, "__init__.py"): text for package, text in PACKAGES.items()})
    samples = builtin_workspace() / SAMPLE_CORPUS
    files.update({SAMPLE_CORPUS / path.name: path.read_text(encoding="utf-8") for path in sorted(samples.glob("*.md"))})
    refuse_existing(folder, files, name_folder=True)
    check_name(name, folder)
    dev = dev_path(name)
    pipeline = {**render(name, parse_signature(signature or DEFAULT_SIGNATURE)), dev: ""}
    refuse_existing(folder, pipeline, name_folder=True)
    write_all(folder, files)
    # The dev set is drawn from the samples just written, so that it names them by their place in this workspace.
    write_all(folder, {**pipeline, dev: dev_set(folder)})
    return [folder / relative for relative in [*files, *pipeline]]
