"""Finding pipelines in a workspace by convention: `datagen generate NAME` runs the dspy.Module in programs/NAME.py.

A pipeline program's `forward(chunk: str)` returns a `dspy.Prediction` whose `samples` is a list of
`datagen.Sample`. A module defining several dspy.Module classes names the pipeline with `PROGRAM = ClassName`.
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

from datagen.errors import DatagenError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The workspace packages a pipeline imports from.
_WORKSPACE_PACKAGES = ("programs", "signatures", "metrics")


def list_pipelines(workspace: Path) -> list[str]:
    folder = workspace / "programs"
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))


def _use_workspace(workspace: Path) -> None:
    """Import from this workspace, afresh: edits to a pipeline take effect on the next load (a notebook
    iterating on a prompt needs no restart), and another workspace's modules of the same names are dropped."""
    root = str(workspace.resolve())
    for name in list(sys.modules):
        if name.split(".")[0] in _WORKSPACE_PACKAGES:
            del sys.modules[name]
    if root in sys.path:
        sys.path.remove(root)
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


def _program_module(name: str, workspace: Path):
    available = list_pipelines(workspace)
    if not _NAME.match(name) or name not in available:
        listing = ", ".join(available) or "none"
        raise DatagenError(f"unknown pipeline {name!r}: no programs/{name}.py in {workspace} (available: {listing})")
    _use_workspace(workspace)
    return importlib.import_module(f"programs.{name}")


def search_space(name: str, workspace: Path) -> dict[str, list]:
    """The pipeline's own options worth searching (`datagen optimize --trials`), as its module declares them:
    `SEARCH_SPACE = {"option": [choice, ...]}`; none when it declares none."""
    declared = getattr(_program_module(name, workspace), "SEARCH_SPACE", {})
    return {option: list(choices) for option, choices in declared.items()}


def load_program(name: str, workspace: Path, options: dict | None = None) -> dspy.Module:
    """A fresh instance of the pipeline program `name` from the workspace's programs/ folder, built with
    `options` (keyword arguments of its constructor, e.g. {"repair_boundaries": True})."""
    cls = _program_class(_program_module(name, workspace))
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(options or {}) - set(accepted))
    if unknown:
        raise DatagenError(f"pipeline {name!r} has no option {unknown[0]!r} (options: {', '.join(accepted) or 'none'})")
    return cls(**(options or {}))


def load_metric_suite(name: str, workspace: Path):
    """The module metrics/NAME.py of the workspace: the metrics of pipeline `name` (see datagen.scoring)."""
    if not _NAME.match(name) or not (workspace / "metrics" / f"{name}.py").is_file():
        raise DatagenError(f"pipeline {name!r} has no metrics: add metrics/{name}.py to {workspace} "
                           "(see metrics/style_clone.py)")
    _use_workspace(workspace)
    return importlib.import_module(f"metrics.{name}")


def program_sources(program: dspy.Module) -> dict[str, str]:
    """The source files a program's behaviour comes from, as {path: sha256 of its code}: the module defining its
    class, and the workspace modules (programs/, signatures/, metrics/) it imports, directly or through one
    another, with the packages they sit in. Paths are relative to the workspace (the module's root); a file's
    comments and formatting do not count (see `_code`)."""
    module = sys.modules.get(type(program).__module__)
    file, name = getattr(module, "__file__", None), getattr(module, "__name__", "")
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
                  if imported.split(".")[0] in _WORKSPACE_PACKAGES for pair in _module_files(root, imported)]
    return found


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
