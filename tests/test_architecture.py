"""The shape of the engine holds: layers that import only downward, no import cycles, no private name used
outside its module, package faces that decide what is public, and modules and functions a reader can take in.

The layers and the cycle rule are import-linter contracts in pyproject.toml ([tool.importlinter]); the rest is
checked here over the source with `ast`. docs/architecture.md says which layer may import which.
"""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "datagen"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def engine_files() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if "_builtin" not in path.parts)


def module_name(path: Path, root: Path = ROOT) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """import-linter's contracts of pyproject.toml, run on the package found under `root`."""
    return subprocess.run([str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=root,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=300)


def test_the_layers_and_cycle_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "BROKEN" not in result.stdout and "KEPT" in result.stdout


@pytest.mark.parametrize("importer, imported", [
    ("text/tokens.py", "datagen.runs.generate"),  # a lower layer reaching up, lazily
    ("lm/roles.py", "datagen.metrics.scoring"),
    ("lm/servers.py", "datagen.lm.gate"),  # gate already imports servers' layer-mates: a cycle inside lm/
])
def test_an_import_against_the_contracts_breaks_them(tmp_path, importer, imported):
    copy = tmp_path / "datagen"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "_builtin"))
    target = copy / importer
    target.write_text(target.read_text() + f"\n\ndef _reach_up():\n    import {imported}  # noqa\n")
    if importer == "lm/servers.py":  # make it a cycle: gate imports servers
        gate = copy / "lm/gate.py"
        gate.write_text(gate.read_text() + "\n\ndef _back():\n    import datagen.lm.servers  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0 and "BROKEN" in result.stdout, result.stdout[-3000:]
    assert Path(importer).stem in result.stdout.split("Broken contracts")[-1]  # named as the culprit


def test_no_private_name_is_imported_from_another_module():
    """No `from datagen.x import _name`, in the engine, its tests or its benchmarks: a name another module needs
    is public (and documented), and tests go through public names."""
    found = []
    for path in [*engine_files(), *(ROOT / "tests").glob("*.py"), *(ROOT / "bench").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("datagen"):
                private = [alias.name for alias in node.names
                           if alias.name.startswith("_") and not alias.name.startswith("__")]
                if private:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {private} from {node.module}")
    assert not found, "\n".join(found)


def test_no_module_imports_its_own_package_face():
    """A module of `datagen.lm` importing `datagen.lm` would make a cycle through the face (the face imports the
    module) that import-linter's sibling contract does not see: inside a package, modules import each other."""
    found = []
    for path in engine_files():
        package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else None
        if package in (None, "datagen"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module] if isinstance(node, ast.ImportFrom) else
                     [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
            if package in names:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports its own face {package}")
    assert not found, "\n".join(found)


def faces() -> list[Path]:
    return [path for path in PACKAGE.rglob("__init__.py") if "_builtin" not in path.parts]


@pytest.mark.parametrize("face", faces(), ids=lambda path: module_name(path))
def test_each_package_face_decides_what_is_public(face):
    """Every subpackage with re-exports lists them in `__all__`, and none exports a name that is also one of its
    submodules (`import datagen.runs.generate as m` must bind the module, never a function)."""
    tree = ast.parse(face.read_text())
    exported = {alias.asname or alias.name for node in tree.body if isinstance(node, ast.ImportFrom)
                for alias in node.names}
    declared = [node for node in tree.body if isinstance(node, ast.Assign)
                and any(isinstance(target, ast.Name) and target.id == "__all__" for target in node.targets)]
    if exported:
        assert declared, f"{face.relative_to(ROOT)} re-exports names without an __all__"
        names = set(ast.literal_eval(declared[0].value))
        assert names <= exported | {"__version__"}, f"__all__ names what the face does not import: {names - exported}"
    submodules = {path.stem for path in face.parent.glob("*.py")} | {path.name for path in face.parent.iterdir()
                                                                     if (path / "__init__.py").is_file()}
    assert not exported & submodules, f"{face.relative_to(ROOT)} shadows its submodules {exported & submodules}"


def test_modules_and_functions_stay_readable():
    long_modules = [f"{path.relative_to(ROOT)}: {lines} lines" for path in engine_files()
                    if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES]
    long_functions = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines"
        for path in engine_files() for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long_modules and not long_functions, "\n".join(long_modules + long_functions)


def test_importing_datagen_reaches_every_documented_name():
    import datagen

    missing = [name for name in datagen.__all__ if not hasattr(datagen, name)]
    assert not missing
    assert callable(datagen.generate) and callable(datagen.evaluate) and callable(datagen.optimize)


MOVED_PATHS = """
import warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    from datagen.models import role_model
    from datagen.degenerate import degenerate
    import datagen.config as old_config
import datagen
from datagen.lm.roles import role_model as moved_role_model
from datagen.text.degenerate import degenerate as moved_degenerate
from datagen.workspace.config import Config
assert role_model is moved_role_model and degenerate is moved_degenerate and old_config.Config is Config
assert callable(datagen.generate) and callable(datagen.evaluate) and callable(datagen.optimize)
messages = [str(warning.message) for warning in caught if warning.category is DeprecationWarning]
assert any("datagen.models moved to datagen.lm.roles" in message for message in messages), messages
assert any("datagen.degenerate moved to datagen.text.degenerate" in message for message in messages), messages
with warnings.catch_warnings(record=True):
    from datagen.judge_check import judge_check  # renamed as it moved
    from datagen.batch import batch_model, run_batches  # split in two
    import datagen.pipelines as old_pipelines
from datagen.metrics.checks.judges import check_judges
from datagen.lm.batch import batch_model as engine_half
from datagen.runs.batch import run_batches as driver_half
import datagen.workspace.pipelines as pipelines
assert judge_check is check_judges and batch_model is engine_half and run_batches is driver_half
keep = pipelines.builtin_workspace
old_pipelines.builtin_workspace = "patched"  # a 0.1 test's monkeypatch through the old path reaches the module
assert pipelines.builtin_workspace == "patched"
pipelines.builtin_workspace = keep
try:
    import datagen.no_such_module  # noqa: F401
except ModuleNotFoundError:
    print("ok")
"""


def test_the_old_import_paths_still_work_with_a_warning():
    """A workspace written for 0.1 (`from datagen.degenerate import degenerate` in a scaffolded program) and a
    script that followed the 0.1 docs (`from datagen.models import role_model`) keep working for a release."""
    result = subprocess.run([sys.executable, "-c", MOVED_PATHS], capture_output=True, text=True, cwd=ROOT,
                            timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
