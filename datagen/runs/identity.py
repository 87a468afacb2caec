"""A run folder's identity: what decides its results (the program, the model, the code, the inputs, the options),
fingerprinted so that a run folder is resumed only by the same run, and the input files' stamp, which tells a
resume that the files are unchanged without chunking them again."""

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

import dspy

from datagen._version import __version__
from datagen.lm import RoleModel
from datagen.text import Chunk, iter_files
from datagen.workspace import code_fingerprint, signature_parts


def program_fingerprint(program: dspy.Module, model: RoleModel) -> str:
    """Hash of what decides a chunk's result.

    Args:
        program: the program: each predictor's fields, instructions and demos count.
        model: the task model: its name, temperature and a cap of the user's count.

    Returns:
        The sha256 (hex) of them.
    """
    # A cap datagen set (`bound_answers`) follows from the chunk budget, which the inputs' fingerprint holds: left
    # out, a run begun before datagen set caps resumes as the same run.
    cap = None if model.default_cap else model.lm.kwargs.get("max_tokens")
    parts = {"model": [model.name, model.lm.kwargs.get("temperature"), cap]}
    for name, predictor in program.named_predictors():
        parts[name] = {**signature_parts(predictor.signature), "demos": [dict(demo) for demo in predictor.demos]}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def files_stamp(inputs: Iterable[str | Path], budget: int, language: str) -> str:
    """What the chunks of `inputs` depend on, read without reading the files: each file's path, size and
    modification time, the chunk budget and the sentence splitter's language, and the chunker's version."""
    digest = hashlib.sha256(f"{__version__}\0{budget}\0{language}\n".encode())
    for path, _ in iter_files(inputs):
        stat = path.stat()
        digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def inputs_fingerprint(chunks: Iterable[Chunk]) -> str:
    """Hash of the chunks' ids, in order: the inputs as the run sees them."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk.id.encode())
    return digest.hexdigest()


def run_identity(pipeline: str, program: dspy.Module, model: RoleModel, inputs: str,
                 options: dict | None) -> dict[str, str]:
    """What a run folder is claimed with (`RunStore.claim`).

    Args:
        pipeline: the pipeline's name.
        program: the program, as it runs.
        model: the task model, as it runs.
        inputs: the inputs' fingerprint (`inputs_fingerprint`).
        options: the pipeline's options; none or empty: left out.

    Returns:
        {"pipeline", "program", "code", "inputs", "model"} and, with options, "options": their sorted JSON.
    """
    identity = {"pipeline": pipeline, "program": program_fingerprint(program, model),
                "code": code_fingerprint(program), "inputs": inputs, "model": model.name}
    if options:  # e.g. factual_qa's questions=5 changes results without changing any predictor
        identity["options"] = json.dumps(options, sort_keys=True)
    return identity
