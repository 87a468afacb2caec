"""Finding pipelines by convention: `datagen generate NAME` runs the dspy.Module in programs/NAME.py.

A pipeline program's `forward(chunk: str)` returns a `dspy.Prediction` whose `samples` is a list of
`datagen.Sample`. A module defining several dspy.Module classes names the pipeline with `PROGRAM = ClassName`.

Pipelines come from two workspaces: the user's (the folder the command runs in, or the nearest one above it with
datagen.toml or programs/) and the one datagen ships (`builtin_workspace()`: style_clone and factual_qa, their
metrics, the plain-prose reference texts and the sample corpus). A workspace file overrides the built-in of the
same name, file by file (programs/NAME.py, metrics/NAME.py): customizing a built-in is copying its file into the
workspace and editing it, and the copy wins without touching the installed package, while a datagen upgrade
never changes a pipeline a workspace has made its own.
"""

import ast
import hashlib
import importlib
import inspect
import json
import logging
import re
import sys
import textwrap
import types
import weakref
from pathlib import Path

import dspy

from datagen.errors import DatagenError, PipelineNotFound

log = logging.getLogger(__name__)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The workspace packages a pipeline imports from.
WORKSPACE_PACKAGES = ("programs", "signatures", "metrics")
# The sys.path entries this module inserted (one per workspace used, the one in use last): only these are ever
# taken out again. An entry the process put there itself (pytest's rootdir, a notebook's folder, PYTHONPATH) stays,
# even when it is a workspace: a child process spawned later inherits sys.path and must still import from it.
_INSERTED: list[str] = []
# The program classes without a source file already said to have a partial code fingerprint: said once each.
_PARTIAL_SAID: "weakref.WeakSet[type]" = weakref.WeakSet()


def builtin_workspace() -> Path:
    """The workspace shipped with datagen, where the built-in pipelines (style_clone, factual_qa) live.

    In an installed wheel it is datagen/_builtin/ (the repository's programs/, signatures/, metrics/ and data/,
    packaged there); in a source checkout (an editable install), the repository root, which is that same workspace.

    Returns:
        The built-in workspace's folder (absolute: resolved from this module's own file). It is not checked to
        hold any pipeline.
    """
    package = Path(__file__).resolve().parents[1]  # datagen/, above datagen/workspace/
    shipped = package / "_builtin"
    return shipped if shipped.is_dir() else package.parent


def _names(workspace: Path, folder: str) -> list[str]:
    found = workspace / folder
    if not found.is_dir():
        return []
    return sorted(p.stem for p in found.glob("*.py") if not p.stem.startswith("_"))


def list_pipelines(workspace: Path) -> list[str]:
    """The pipelines defined in `workspace` itself (programs/*.py), built-ins left out."""
    return _names(workspace, "programs")


def find_pipelines(workspace: Path) -> dict[str, Path]:
    """Every pipeline a command run in `workspace` can use, by name, with the workspace that defines it.

    A pipeline is a programs/NAME.py file (files whose name starts with "_" are left out): the workspace's own, and
    the built-ins it does not override (a workspace file wins over the built-in of the same name).

    Args:
        workspace: the user's workspace folder (see `datagen.workspace.find_workspace`); a folder without
            programs/ (or one that does not exist) defines no pipeline of its own, and offers the built-ins alone.

    Returns:
        {pipeline name: the workspace folder whose programs/NAME.py defines it (`workspace` or
        `builtin_workspace()`; see `is_builtin`)}, sorted by name.
    """
    found = {name: builtin_workspace() for name in _names(builtin_workspace(), "programs")}
    found.update({name: workspace for name in list_pipelines(workspace)})
    return dict(sorted(found.items()))


def is_builtin(root: Path) -> bool:
    """Whether `root` (a value of `find_pipelines`) is the built-in workspace."""
    return root.resolve() == builtin_workspace().resolve()


def _use_workspace(workspace: Path) -> None:
    """Import from this workspace, afresh: edits to a pipeline take effect on the next load (a notebook
    iterating on a prompt needs no restart), and another workspace's modules of the same names are dropped."""
    root = str(workspace.resolve())
    for name in list(sys.modules):
        if name.split(".")[0] in WORKSPACE_PACKAGES:
            del sys.modules[name]
    while _INSERTED:  # the workspace used before must not answer first for this one's packages
        ours = _INSERTED.pop()
        if ours in sys.path:
            sys.path.remove(ours)  # the first occurrence: ours, inserted at the front
    _INSERTED.append(root)
    sys.path.insert(0, root)
    importlib.invalidate_caches()


def _program_class(module) -> type[dspy.Module]:
    named = getattr(module, "PROGRAM", None)
    if named is not None:
        return named
    defined = [obj for _, obj in inspect.getmembers(module, inspect.isclass)
               if issubclass(obj, dspy.Module) and obj.__module__ == module.__name__]
    if len(defined) != 1:
        found = ", ".join(cls.__name__ for cls in defined) or "none"
        raise DatagenError(f"{module.__file__}: expected one dspy.Module class (found: {found}); "
                           "set PROGRAM = ClassName to choose")
    return defined[0]


def pipeline_root(name: str, workspace: Path) -> Path:
    """The workspace whose programs/NAME.py a command run in `workspace` uses: `workspace` itself, else the
    built-in one. Raises DatagenError, listing the pipelines there are, for an unknown name."""
    available = find_pipelines(workspace)
    if not _NAME.match(name) or name not in available:
        listing = ", ".join(available) or "none"
        raise PipelineNotFound(f"unknown pipeline {name!r}: no programs/{name}.py in {workspace} and no built-in "
                           f"of that name (available: {listing})")
    return available[name]


def _program_module(name: str, workspace: Path):
    _use_workspace(pipeline_root(name, workspace))
    return importlib.import_module(f"programs.{name}")


def search_space(name: str, workspace: Path) -> dict[str, list]:
    """The pipeline's own options worth searching (`datagen optimize --trials`), as its module declares them:
    `SEARCH_SPACE = {"option": [choice, ...]}`; none when it declares none."""
    declared = getattr(_program_module(name, workspace), "SEARCH_SPACE", {})
    return {option: list(choices) for option, choices in declared.items()}


def load_program(name: str, workspace: Path, options: dict | None = None) -> dspy.Module:
    """A fresh instance of the pipeline program `name` from the workspace's programs/ folder.

    The module is imported afresh (an edit to the pipeline takes effect on the next load, with no restart); the
    workspace's programs/NAME.py overrides a built-in of the same name. Its program class is the module's one
    dspy.Module class, or the one it names with `PROGRAM = ClassName`.

    Args:
        name: the pipeline's name, programs/NAME.py without the suffix (e.g. "style_clone").
        workspace: the workspace folder to look in first; the built-in workspace answers for a name it lacks.
        options: keyword arguments of the program class's constructor (e.g. {"repair_boundaries": True});
            default None: built with none.

    Returns:
        A new instance of the pipeline's program class, built with `options`.

    Raises:
        PipelineNotFound: no programs/NAME.py in `workspace` nor a built-in of that name (or `name` is not a
            Python identifier); the message lists the pipelines there are.
        DatagenError: the module defines no dspy.Module class or several, and no `PROGRAM`; or `options` names an
            argument the constructor does not take (the message lists those it does).
        Exception: whatever importing the module or the constructor raises (e.g. a SyntaxError or ImportError in
            the program's file), as it is.
    """
    cls = _program_class(_program_module(name, Path(workspace)))  # a str path too
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(options or {}) - set(accepted))
    if unknown:
        raise DatagenError(f"pipeline {name!r} has no option {unknown[0]!r} (options: {', '.join(accepted) or 'none'})")
    return cls(**(options or {}))


def metric_suite_file(name: str, workspace: Path) -> Path | None:
    """The file metrics/NAME.py of pipeline `name` that `load_metric_suite` loads: the workspace's, else the
    built-in one; None when neither exists (or `name` is not a Python identifier)."""
    files = [root / "metrics" / f"{name}.py" for root in (workspace, builtin_workspace()) if _NAME.match(name)]
    return next((file for file in files if file.is_file()), None)


def load_metric_suite(name: str, workspace: Path):
    """The module metrics/NAME.py, the metrics of pipeline `name` (see datagen.metrics.scoring): the workspace's, else
    the built-in one. Raises DatagenError when neither exists."""
    file = metric_suite_file(name, workspace)
    if file is None:
        raise DatagenError(f"pipeline {name!r} has no metrics: add metrics/{name}.py to {workspace} "
                           "(see metrics/style_clone.py)")
    _use_workspace(file.parents[1])
    return importlib.import_module(f"metrics.{name}")


def program_sources(program: dspy.Module) -> dict[str, str]:
    """The source files a program's behaviour comes from, as {path: sha256 of its code}: the module defining its
    class, and the workspace modules (programs/, signatures/, metrics/) it imports, directly or through one
    another, with the packages they sit in. Paths are relative to the workspace (the module's root); a file's
    comments and formatting do not count (see `_code`). A class without a source file (defined in `python -`,
    `python -c`, `exec`, some notebook kernels) has none: {} (see `code_fingerprint`)."""
    name = type(program).__module__
    file = _class_file(type(program))
    if file is None and not _own_functions(type(program)):
        # No method of its own to tell where it was defined: the file of the module it names, where there is one.
        # The module may since have been dropped from sys.modules (another workspace's, or the same one's loaded
        # afresh), or replaced by a module of the same name from elsewhere: a method's file is the surer sign.
        file = getattr(sys.modules.get(name), "__file__", None)
    if not file or not Path(file).is_file():  # `python -` names its __main__ "<stdin>"
        return {}
    path = Path(file).resolve()
    root = path.parents[name.count(".") + (path.name == "__init__.py")]
    found: dict[str, str] = {}
    queue = _module_files(root, name) or [(name, path)]
    while queue:
        name, path = queue.pop()
        key = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        if key in found:
            continue
        source = path.read_bytes()
        found[key] = hashlib.sha256(_code(source)).hexdigest()
        queue += [pair for imported in _imports(source, name, path.name == "__init__.py")
                  if imported.split(".")[0] in WORKSPACE_PACKAGES for pair in _module_files(root, imported)]
    return found


def _own_functions(cls: type) -> dict[str, types.FunctionType]:
    """The functions a class defines itself, by attribute name: methods, and those under a staticmethod,
    classmethod or property."""
    found = {}
    for attr, value in vars(cls).items():
        value = getattr(value, "__func__", None) or getattr(value, "fget", None) or value
        if isinstance(value, types.FunctionType):
            found[attr] = value
    return found


def _class_file(cls: type) -> str | None:
    """The source file of a class's own methods (their code objects keep it), or None: none of them has one that
    exists (a class defined in `python -`, `exec` or a notebook cell), or the class defines no method."""
    for function in _own_functions(cls).values():
        if Path(function.__code__.co_filename).is_file():
            return function.__code__.co_filename
    return None


def code_fingerprint(program: dspy.Module) -> str:
    """A hash of the program's own code: an edit to it changes the fingerprint, and the same code gives the same
    hash in every process.

    Args:
        program: the program; its class's source files are hashed (see `program_sources`).

    Returns:
        The sha256 (hex) of its source files' code; for a class without a source file, of what can be known of
        it (see `_sourceless_code`), which is said once per class in a warning (datagen's log).
    """
    sources = program_sources(program)
    if not sources:
        sources = _sourceless_code(program)
        if type(program) not in _PARTIAL_SAID:
            _PARTIAL_SAID.add(type(program))
            log.warning("%s has no source file (defined in %s): its code fingerprint is partial, made of its own "
                        "methods and class attributes and its predictors' signatures and instructions; an edit to "
                        "code it calls elsewhere goes unnoticed when a run resumes", type(program).__qualname__,
                        _defined_in(type(program)))
    return hashlib.sha256(json.dumps(sources, sort_keys=True).encode()).hexdigest()


def _sourceless_code(program: dspy.Module) -> dict[str, str]:
    """What can be known of the code of a program whose class has no source file, as {part: what it holds}.

    Each function the class, or a base class without a source file either, defines itself counts by its source
    where Python keeps it (`inspect` reads it from linecache, where a notebook kernel puts each cell; comments and
    formatting aside), else by its compiled code (bytecode, constants and names, line numbers aside; a new Python
    version compiles it anew; a decorated function's own code too); their other class attributes by value, the
    base classes by name, and each predictor's signature (fields and instructions).

    Args:
        program: the program.

    Returns:
        {"class:ATTR": ..., "doc": ..., "bases": ..., "predictor:NAME": ...}: strings that are the same in every
        process for the same code (object addresses are left out).
    """
    cls = type(program)
    parts = {}
    # The class, and its base classes without a source file either (defined beside it: their methods are its own).
    for owner in [cls, *(base for base in cls.__mro__[1:] if _class_file(base) is None and _own_functions(base))]:
        where = "class" if owner is cls else f"base {owner.__qualname__}"
        functions = _own_functions(owner)
        parts.update({f"{where}:{attr}": _function_code(function) for attr, function in functions.items()})
        parts.update({f"{where}:{attr}": json.dumps(_constant(value)) for attr, value in vars(owner).items()
                      if attr not in functions and not (attr.startswith("__") and attr.endswith("__"))})
    parts["doc"] = cls.__doc__ or ""
    parts["bases"] = " ".join(f"{base.__module__}.{base.__qualname__}" for base in cls.__mro__)
    parts.update({f"predictor:{name}": json.dumps(signature_parts(predictor.signature), sort_keys=True,
                                                  default=str) for name, predictor in program.named_predictors()})
    return parts


def signature_parts(signature: type[dspy.Signature]) -> dict:
    """A signature's fields in order, as [name, type, description], and its instructions: what a program's
    fingerprints hold of it.

    Args:
        signature: a predictor's signature.

    Returns:
        {"fields": [[name, annotation as text, description or None], ...], "instructions": text}.
    """
    return {"fields": [[f, str(info.annotation), (info.json_schema_extra or {}).get("desc")]
                       for f, info in signature.fields.items()],
            "instructions": signature.instructions}


def _defined_in(cls: type) -> str:
    files = {function.__code__.co_filename for function in _own_functions(cls).values()}
    return ", ".join(sorted(files)) or f"module {cls.__module__}"


def _function_code(function: types.FunctionType) -> str:
    try:
        source = textwrap.dedent(inspect.getsource(function))  # a decorated function's own (inspect unwraps it)
    except (OSError, TypeError):  # no file and nothing in linecache: `python -`, `python -c`, `exec`
        # A function behind a decorator (functools.wraps' __wrapped__) counts too: the wrapper's code is the
        # decorator's, the same whatever it wraps.
        chain = [function] + ([inspect.unwrap(function)] if hasattr(function, "__wrapped__") else [])
        return json.dumps([_code_object(f.__code__) + [_constant(f.__defaults__), _constant(f.__kwdefaults__)]
                           for f in chain if isinstance(f, types.FunctionType)])
    return hashlib.sha256(_code(source.encode())).hexdigest()


def _code_object(code: types.CodeType) -> list:
    """What a code object does, the same in every process: its bytecode, constants (nested functions' code
    included), names and arguments; not its file or line numbers."""
    return [code.co_name, code.co_code.hex(), _constant(code.co_consts), code.co_names, code.co_varnames,
            code.co_freevars, code.co_cellvars, code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount]


def _constant(value) -> str | list:
    """A value as the same text in every process: a set's items sorted (their order follows string hashing,
    which differs from process to process), an object's address left out of its repr."""
    if isinstance(value, types.CodeType):
        return _code_object(value)
    if isinstance(value, (set, frozenset)):
        return sorted(json.dumps(_constant(item)) for item in value)
    if isinstance(value, (tuple, list)):
        return [_constant(item) for item in value]
    if isinstance(value, dict):
        return [[_constant(key), _constant(item)] for key, item in value.items()]
    return re.sub(r" at 0x[0-9A-Fa-f]+", "", repr(value))


def _code(source: bytes) -> bytes:
    """What a module's source does, without its comments and formatting (its syntax tree; docstrings count)."""
    try:
        return ast.dump(ast.parse(source)).encode()
    except (SyntaxError, ValueError):
        return source


def _imports(source: bytes, module: str, package: bool) -> set[str]:
    """The modules a module's source imports, anywhere in it, by absolute name (`from a import b` names both
    `a` and `a.b`, which may be a module)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    here = module.split(".") if package else module.split(".")[:-1]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = here[:len(here) - node.level + 1] if node.level else []
            prefix = ".".join([*base, *([node.module] if node.module else [])])
            if prefix:
                names.add(prefix)
            names.update(f"{prefix}.{alias.name}".lstrip(".") for alias in node.names if alias.name != "*")
    return names


def _module_files(root: Path, module: str) -> list[tuple[str, Path]]:
    """The modules importing `module` from `root` runs, by name and file: each enclosing package's __init__.py,
    then the module's own."""
    parts, files = module.split("."), []
    for depth in range(1, len(parts) + 1):
        name, folder = ".".join(parts[:depth]), root.joinpath(*parts[:depth])
        candidates = [folder / "__init__.py"] + ([folder.with_suffix(".py")] if depth == len(parts) else [])
        files += [(name, path) for path in candidates if path.is_file()]
    return files
