"""Compiled programs: a pipeline's optimized state (instructions and demos) saved with a manifest beside it.

`compiled/PIPELINE/NAME.json` is DSPy's saved state; `NAME.manifest.json` says what made it (pipeline and its
options, each predictor's fields, models per role by name, optimizer and settings, dev-set hash, scores before and
after, dspy version, date); `NAME.report.html` shows the held-out scores before and after, and `NAME.eval.json` holds
them sample by sample. DSPy's `load` re-applies saved field descriptions by position, so a state saved for other
fields would be silently misassigned: loading compares the fields first and refuses a mismatch. A demo DSPy would
leave out of the prompt, or show with an output "not supplied", is refused (see `demo_fault`), and a state saved by
another DSPy version is loaded with a warning naming both."""

import importlib.metadata
import json
import logging
import re
from datetime import UTC, datetime
from pathlib import Path

import dspy
from packaging.version import InvalidVersion, Version

from datagen.errors import DatagenError
from datagen.util.disk import writing
from datagen.util.files import replacing
from datagen.workspace.pipelines import code_fingerprint, load_program

log = logging.getLogger(__name__)

COMPILED_DIR = "compiled"
MANIFEST_SUFFIX = ".manifest.json"
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def signature_fields(program: dspy.Module) -> dict[str, list[list[str]]]:
    """Each predictor's fields in order, as [name, "input" or "output", type]: what a saved state depends on."""
    return {name: [[field, "input" if field in predictor.signature.input_fields else "output", str(info.annotation)]
                   for field, info in predictor.signature.fields.items()]
            for name, predictor in program.named_predictors()}


def manifest_path(state: Path) -> Path:
    return state.with_name(state.name.removesuffix(".json") + MANIFEST_SUFFIX)


def evaluation_path(state: Path) -> Path:
    """The held-out evaluations before and after compiling as JSON (`datagen evaluate`'s result, the uncompiled
    program's as its `baseline`), beside the state: what `datagen view` compares sample by sample."""
    return state.with_name(state.name.removesuffix(".json") + ".eval.json")


def report_path(state: Path) -> Path:
    """The HTML report of the held-out scores before and after compiling, beside the state."""
    return state.with_name(state.name.removesuffix(".json") + ".report.html")


def save_compiled(program: dspy.Module, pipeline: str, name: str, workspace: Path, manifest: dict) -> Path:
    """Write the program's state and its manifest to compiled/PIPELINE/NAME.json; returns the state's path.

    Raises:
        DatagenError: `name` is not a plain file name.
        DiskError: compiled/PIPELINE/ is on a full or read-only disk, or not writable; a program saved there
            before under `name` is left whole, state and manifest.
    """
    if not _NAME.match(name):
        raise DatagenError(f"compiled program name {name!r}: use letters, digits, '.', '_' or '-'")
    folder = workspace / COMPILED_DIR / pipeline
    with writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
    state = folder / f"{name}.json"
    full = {"pipeline": pipeline, "name": name, "signatures": signature_fields(program),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "dspy": importlib.metadata.version("dspy"), **manifest}
    # Both written in full before either takes its place (a full disk stops it with the old pair whole), then the
    # state, then its manifest: a program is only listed (and loaded) once its manifest is there.
    with replacing(manifest_path(state)) as manifest_partial:
        manifest_partial.write_text(json.dumps(full, indent=1, ensure_ascii=False), encoding="utf-8")
        with replacing(state) as partial:
            program.save(str(partial))
    return state


def read_manifest(state: str | Path) -> dict:
    state = Path(state)
    if not state.is_file():
        raise DatagenError(f"{state}: no such compiled program")
    path = manifest_path(state)
    if not path.is_file():
        raise DatagenError(f"{state}: no {path.name} beside it (not made by datagen optimize)")
    return _json_object(path)


def read_state(state: str | Path) -> dict:
    """A compiled program's saved DSPy state, with its manifest checked first.

    Args:
        state: the state file (compiled/PIPELINE/NAME.json).

    Returns:
        The state as DSPy saved it: {predictor name: its state (signature, demos...), "metadata": ...}.

    Raises:
        DatagenError: no such file, no manifest beside it, either not a JSON object, or a demo of a predictor the
            manifest lists that is malformed (see `demo_fault`), named by predictor and number.
    """
    signatures = read_manifest(state).get("signatures")
    saved = _json_object(Path(state))
    for name, fields in (signatures if isinstance(signatures, dict) else {}).items():
        _check_demos(state, name, saved.get(name), fields)
    return saved


def demo_fault(demo: object, inputs: list[str], outputs: list[str]) -> str | None:
    """What is wrong with a demo of a predictor whose signature has these fields, or None.

    DSPy's adapters show a demo with every field whole; one lacking some fields is shown as "an example of the
    task, though some input or output fields are not supplied", each missing output written "Not supplied for
    this particular example.", and one lacking every input or every output is left out of the prompt without a
    word. A missing (or null) output is a fault: the model is shown an answer that leaves a field out (what a
    dataset must never hold), or nothing at all. A missing input is not, while one input is there: the demo still
    shows a whole answer to the inputs it has, as DSPy's partly labeled demos do.

    Args:
        demo: the demo as saved (a JSON value).
        inputs: the signature's input field names.
        outputs: the signature's output field names.

    Returns:
        None for a demo DSPy shows whole; else why not, in a few words ("not an object (str)", "no output field
        'generic'", "none of the input fields 'passage'").
    """
    if not isinstance(demo, dict):
        return f"not an object ({type(demo).__name__})"
    missing = [field for field in outputs if demo.get(field) is None]
    if missing:
        return f"no output field {missing[0]!r}"
    if inputs and all(demo.get(field) is None for field in inputs):
        return f"none of the input fields {', '.join(map(repr, inputs))}"
    return None


def _check_demos(state, name: str, saved: object, fields: object) -> None:
    """Refuse a malformed demo of predictor `name` (its `saved` state; `fields` as the manifest lists them)."""
    if not isinstance(saved, dict) or "demos" not in saved or not isinstance(fields, list):
        return  # no state of that predictor, or not one of DSPy's: loading it says so
    demos = saved["demos"]
    if not isinstance(demos, list):
        raise DatagenError(f"{state}: the demos of predictor {name!r} are not a list ({type(demos).__name__})")
    inputs, outputs = ([field[0] for field in fields if isinstance(field, list) and field[1:2] == [role]]
                       for role in ("input", "output"))
    for number, demo in enumerate(demos, 1):
        fault = demo_fault(demo, inputs, outputs)
        if fault:
            raise DatagenError(f"{state}: demo {number} of {len(demos)} of predictor {name!r}: {fault} (fix or "
                               "remove it, or run datagen optimize again)")


def _json_object(path: Path) -> dict:
    try:
        data = json.loads(path.read_bytes())
    except ValueError as exc:  # not UTF-8 or not JSON; a message of the first kind would quote the whole file
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
        raise DatagenError(f"{path}: not valid JSON ({reason})") from None
    if not isinstance(data, dict):
        raise DatagenError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def compiled_state(pipeline: str, compiled: str | Path, workspace: Path) -> Path:
    """The state file a `--compiled` (or `--program`) value names.

    Args:
        pipeline: the pipeline it was compiled for.
        compiled: a path to the state (compiled/PIPELINE/NAME.json, as `datagen optimize` prints it), or the NAME
            that `datagen optimize --name` gave it, looked up in the workspace's compiled/PIPELINE/.
        workspace: the workspace a name is looked up in.

    Returns:
        The state file's path (not checked to be a compiled program: `read_manifest` does).

    Raises:
        DatagenError: it is neither an existing file nor the name of one of the pipeline's compiled programs.
    """
    path = Path(compiled)
    if path.is_file():
        return path
    named = workspace / COMPILED_DIR / pipeline / f"{compiled}.json"
    if path.name == str(compiled) and path.suffix != ".json" and named.is_file():
        return named
    raise DatagenError(f"{compiled}: no such compiled program (neither a file nor a name under "
                       f"{COMPILED_DIR}/{pipeline}/ of {workspace}; see datagen compiled list)")


def load_compiled(pipeline: str, state: str | Path, workspace: Path) -> dspy.Module:
    """The pipeline's program with the compiled state applied.

    Args:
        pipeline: the pipeline it was compiled for.
        state: a path or a name (see `compiled_state`).
        workspace: the workspace the pipeline (and a name) is looked up in.

    Returns:
        The program built with the options it was compiled with, its instructions and demos the state's. A warning
        (datagen's log) says when the state was saved by another DSPy version than the one loading it, naming
        both, and when the pipeline's code was edited since.

    Raises:
        DatagenError: no such compiled program, no manifest, compiled for another pipeline or for other fields,
            a malformed demo (see `demo_fault`; named by predictor and number), or a state this DSPy cannot load.
    """
    state = compiled_state(pipeline, state, workspace)
    manifest = read_manifest(state)
    if manifest.get("pipeline") != pipeline:
        raise DatagenError(f"{state}: compiled for pipeline {manifest.get('pipeline')!r}, not {pipeline!r}")
    program = load_program(pipeline, workspace, manifest.get("options") or {})
    _check_fields(state, manifest.get("signatures", {}), signature_fields(program))
    saved = read_state(state)
    recorded = _dspy_version(saved) or manifest.get("dspy")
    compiled_with = _shown(str(recorded)) if recorded is not None else None
    if not _same_version(compiled_with, dspy.__version__):
        # DSPy's own `load` says so through its logger, which datagen's commands keep quiet: said here instead.
        log.warning("%s: compiled with dspy %s, loaded with dspy %s: its prompts and demos may not work as they "
                    "did; run datagen optimize again with this version", state, compiled_with or "(not recorded)",
                    dspy.__version__)
    try:
        program.load_state(saved)
    except (KeyError, TypeError, ValueError, AttributeError, NotImplementedError) as exc:  # the wrong shape
        raise DatagenError(f"{state}: not a saved DSPy program state that dspy {dspy.__version__} can load "
                           f"({type(exc).__name__}: {exc})") from None
    if manifest.get("code") not in (None, code_fingerprint(program)):  # fields unchanged, code edited: it may still fit
        log.warning("%s: the pipeline's code was edited since it was compiled; run datagen optimize again if its "
                    "prompts and demos no longer fit", state)
    return program


def _dspy_version(saved: dict) -> str | None:
    """The DSPy version a state was saved by, as DSPy's `save` records it (metadata.dependency_versions.dspy)."""
    metadata = saved.get("metadata")
    versions = metadata.get("dependency_versions") if isinstance(metadata, dict) else None
    found = versions.get("dspy") if isinstance(versions, dict) else None
    return str(found) if found is not None else None


def _shown(text: str, limit: int = 40) -> str:
    """A version string from a file, safe to print: control characters escaped (a terminal's colour codes), at
    most `limit` characters."""
    text = text if text.isprintable() else text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[:limit] + "..."


def _same_version(recorded: str | None, installed: str) -> bool:
    """Whether a recorded version is the installed one, as PEP 440 compares them ("v3.4.1" is 3.4.1)."""
    try:
        return recorded is not None and Version(recorded) == Version(installed)
    except InvalidVersion:
        return recorded == installed


def _check_fields(state, saved: dict, current: dict) -> None:
    for name in sorted(set(saved) | set(current)):
        if name not in current or name not in saved:
            where = "no longer in the program" if name not in current else "not in the compiled state"
            raise DatagenError(f"{state}: predictor {name!r} is {where}; run datagen optimize again")
        if saved[name] != current[name]:
            was = ", ".join(f"{role} {f}: {kind}" for f, role, kind in saved[name])
            now = ", ".join(f"{role} {f}: {kind}" for f, role, kind in current[name])
            raise DatagenError(f"{state}: the fields of {name!r} changed since it was compiled (then: {was}; now: "
                               f"{now}); run datagen optimize again")


def list_compiled(workspace: Path) -> list[tuple[Path, dict]]:
    """Every compiled program in the workspace with its manifest, by pipeline and name."""
    found = []
    for path in sorted((workspace / COMPILED_DIR).glob(f"*/*{MANIFEST_SUFFIX}")):
        state = path.with_name(path.name.removesuffix(MANIFEST_SUFFIX) + ".json")
        if state.is_file():
            found.append((state, read_manifest(state)))
    return found


def resolve_program(program: "str | dspy.Module", workspace: Path, options: dict | None = None,
                    compiled: str | Path | None = None) -> tuple[str, dspy.Module]:
    """The pipeline name and program object a run, an evaluation or an optimization works on.

    Args:
        program: a dspy.Module, taken as it is and named by its class; or the name of a pipeline
            (programs/NAME.py of `workspace`, else the built-in one).
        workspace: the workspace a named pipeline is looked up in.
        options: a named pipeline's options (its constructor's keyword arguments); default none.
        compiled: a named pipeline's compiled state (a name under compiled/PIPELINE/ or a path) to load
            instead of building it with `options`.

    Returns:
        (name, program): the pipeline's name (the class name for a program object) and a ready program.

    Raises:
        DatagenError: `options` or `compiled` given with a program object (they apply to a pipeline given by
            name), both given, or `program` neither a dspy.Module nor a string.
        PipelineNotFound: no pipeline of that name.
    """
    if isinstance(program, dspy.Module):
        name = type(program).__name__
        for given, what in ((options, "options"), (compiled, "compiled")):
            if given:
                raise DatagenError(f"{what} applies to a pipeline given by name, not to the program object {name} "
                                   "(build it with its options, load compiled state with .load(), score it with "
                                   "datagen.evaluate)")
        return name, program
    if not isinstance(program, str):
        raise DatagenError(f"program {program!r}: expected a dspy.Module or a pipeline name")
    if compiled is not None and options:
        raise DatagenError("--option does not apply with --compiled: a compiled program keeps the options it was "
                           "compiled with")
    return program, (load_compiled(program, compiled, workspace) if compiled
                     else load_program(program, workspace, options))
