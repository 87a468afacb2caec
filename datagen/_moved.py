"""The import paths of datagen 0.1's flat modules, kept working for one release with a DeprecationWarning.

Issue 23 moved each module into a subpackage (`datagen.models` is now `datagen.lm.roles`, ...). Workspaces
written for 0.1 (pipelines made by `datagen new` import `datagen.degenerate`) and scripts that followed the docs
(`from datagen.models import role_model`) keep working: importing an old path warns and gives a stand-in module
whose attributes are the new module's. Only names under `datagen.` are answered, so no other import is touched.

`datagen.generate`, `datagen.evaluate` and `datagen.optimize` are not here: they are the functions of the package
face, and a module of the same name would shadow them again (what issue 23 removed). Their documented names
are importable from `datagen` itself (`datagen.RunStatus`, `datagen.write_evaluation`).
"""

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

# The old path, and where its module lives now.
MOVED = {
    "datagen.files": "datagen.util.files",
    "datagen.locking": "datagen.util.locking",
    "datagen.redaction": "datagen.util.redaction",
    "datagen.formats": "datagen.text.formats",
    "datagen.ingest": "datagen.text.ingest",
    "datagen.tokens": "datagen.text.tokens",
    "datagen.chunking": "datagen.text.chunking",
    "datagen.degenerate": "datagen.text.degenerate",
    "datagen.config": "datagen.workspace.config",
    "datagen.pipelines": "datagen.workspace.pipelines",
    "datagen.compiled": "datagen.workspace.compiled",
    "datagen.models": "datagen.lm.roles",
    "datagen.adapters": "datagen.lm.adapters",
    "datagen.local_model": "datagen.lm.local",
    "datagen.export": "datagen.dataset.export",
    "datagen.review": "datagen.dataset.review",
    "datagen.devset": "datagen.dataset.devset",
    "datagen.scoring": "datagen.metrics.scoring",
    "datagen.judge_check": "datagen.metrics.checks.judges",
    "datagen.validity": "datagen.metrics.checks.pairs",
    "datagen.human_check": "datagen.metrics.checks.human",
    "datagen.distributed": "datagen.runs.cluster",
    "datagen.cost": "datagen.runs.cost",
    "datagen.summary": "datagen.runs.summary",
    "datagen.inspection": "datagen.runs.inspection",
    "datagen.report": "datagen.tuning.report",
    "datagen.search": "datagen.tuning.search",
    "datagen.init": "datagen.scaffold.workspace",
}
REMOVED_IN = "0.3"


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers the imports of `MOVED`'s old paths with a stand-in module that warns once and forwards every
    attribute to the module's new home."""

    def find_spec(self, name, path=None, target=None):
        if name in MOVED:
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):
        new = MOVED[spec.name]
        # stacklevel 2 names the importer's frame only roughly (importlib's frames sit between): the message
        # names both paths, which is what a user needs to fix it.
        warnings.warn(f"{spec.name} moved to {new}; the old path will be removed in datagen {REMOVED_IN}",
                      DeprecationWarning, stacklevel=2)
        stand_in = types.ModuleType(spec.name, f"Moved to {new}.")
        target = importlib.import_module(new)
        stand_in.__getattr__ = lambda attribute: getattr(target, attribute)
        stand_in.__all__ = getattr(target, "__all__", [name for name in vars(target) if not name.startswith("_")])
        return stand_in

    def exec_module(self, module):
        """Nothing to run: the stand-in forwards to a module that is already imported."""


def install() -> None:
    """Put the finder on sys.meta_path (once): after the standard finders, so that it answers only names that
    no longer exist as files."""
    if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(MovedModules())
