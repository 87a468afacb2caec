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
import re
import sys
from pathlib import Path

import dspy

from datagen.errors import DatagenError, PipelineNotFound

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The workspace packages a pipeline imports from.
WORKSPACE_PACKAGES = ("programs", "signatures", "metrics")
# The sys.path entries this module inserted (one per workspace used, the one in use last): only these are ever
# taken out again. An entry the process put there itself (pytest's rootdir, a notebook's folder, PYTHONPATH) stays,
# even when it is a workspace: a child process spawned later inherits sys.path and must still import from it.
_INSERTED: list[str] = []


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


def load_metric_suite(name: str, workspace: Path):
    """The module metrics/NAME.py, the metrics of pipeline `name` (see datagen.metrics.scoring): the workspace's, else
    the built-in one. Raises DatagenError when neither exists."""
    roots = [root for root in (workspace, builtin_workspace())
             if _NAME.match(name) and (root / "metrics" / f"{name}.py").is_file()]
    if not roots:
        raise DatagenError(f"pipeline {name!r} has no metrics: add metrics/{name}.py to {workspace} "
                           "(see metrics/style_clone.py)")
    _use_workspace(roots[0])
    return importlib.import_module(f"metrics.{name}")


def program_sources(program: dspy.Module) -> dict[str, str]:
    """The source files a program's behaviour comes from, as {path: sha256 of its code}: the module defining its
    class, and the workspace modules (programs/, signatures/, metrics/) it imports, directly or through one
    another, with the packages they sit in. Paths are relative to the workspace (the module's root); a file's
    comments and formatting do not count (see `_code`)."""
    name = type(program).__module__
    # The file its class was defined in: its module may since have been dropped from sys.modules (another
    # workspace's, or the same one's loaded afresh), or replaced by a module of the same name from elsewhere.
    file = _class_file(type(program)) or getattr(sys.modules.get(name), "__file__", None)
    if not file:
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


def _class_file(cls: type) -> str | None:
    """The source file of a class's own methods (their code objects keep it), or None."""
    for value in vars(cls).values():
        code = getattr(value, "__code__", None)
        if code is not None and Path(code.co_filename).is_file():
            return code.co_filename
    return None


def code_fingerprint(program: dspy.Module) -> str:
    """A hash of the program's own code (see `program_sources`): an edit to it changes the fingerprint."""
    return hashlib.sha256(json.dumps(program_sources(program), sort_keys=True).encode()).hexdigest()


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
