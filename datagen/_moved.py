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

# The old path, and where its module's names live now: one module, or several searched in order (a module that was
# split, such as datagen.models into the role models and the configured-name table).
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
    "datagen.models": ("datagen.lm.roles", "datagen.lm.names", "datagen.lm.gate"),
    "datagen.adapters": "datagen.lm.adapters",
    "datagen.local_model": "datagen.lm.local",
    "datagen.limits": "datagen.lm.gate",
    "datagen.deadline": "datagen.lm.deadline",
    "datagen.servers": "datagen.lm.servers",
    "datagen.metadata_cache": "datagen.lm.metadata_cache",
    "datagen.calllog": "datagen.lm.calllog",
    "datagen.batch": ("datagen.lm.batch", "datagen.runs.batch", "datagen.lm.errors"),
    "datagen.export": "datagen.dataset.export",
    "datagen.review": "datagen.dataset.review",
    "datagen.devset": "datagen.dataset.devset",
    "datagen.scoring": "datagen.metrics.scoring",
    "datagen.judge_check": ("datagen.metrics.checks.judges", "datagen.metrics.checks.stats"),
    "datagen.validity": "datagen.metrics.checks.pairs",
    "datagen.human_check": ("datagen.metrics.checks.human", "datagen.metrics.checks.stats"),
    "datagen.distributed": "datagen.runs.cluster",
    "datagen.cost": "datagen.runs.cost",
    "datagen.summary": "datagen.runs.summary",
    "datagen.inspection": "datagen.runs.inspection",
    "datagen.report": "datagen.tuning.report",
    "datagen.search": "datagen.tuning.search",
    "datagen.init": "datagen.scaffold.workspace",
}
# Names that were renamed as they moved, by old path: {old name: new name}.
RENAMED = {
    "datagen.judge_check": {"judge_check": "check_judges"},
    "datagen.search": {"search": "search_pipeline"},
}
REMOVED_IN = "0.3"


class StandIn(types.ModuleType):
    """An old path's module: reads and writes of its attributes go to the module that now holds the name (so a
    test that patches `datagen.models.X` patches the real `X`)."""

    def __init__(self, name: str, homes: list[types.ModuleType], renamed: dict[str, str]):
        super().__init__(name, f"Moved to {', '.join(home.__name__ for home in homes)}.")
        object.__setattr__(self, "_homes", homes)
        object.__setattr__(self, "_renamed", renamed)
        self.__all__ = sorted({name for home in homes for name in getattr(home, "__all__", None) or
                               [public for public in vars(home) if not public.startswith("_")]} | set(renamed))

    def _home_of(self, name: str) -> tuple[types.ModuleType, str]:
        name = self._renamed.get(name, name)
        for home in self._homes:
            if hasattr(home, name):
                return home, name
        return self._homes[0], name

    def __getattr__(self, name: str):
        home, name = self._home_of(name)
        return getattr(home, name)

    def __setattr__(self, name: str, value) -> None:
        if name.startswith("__"):  # the import system's own attributes (__spec__, __loader__, ...)
            object.__setattr__(self, name, value)
            return
        home, name = self._home_of(name)
        setattr(home, name, value)


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers the imports of `MOVED`'s old paths with a stand-in module that warns once and forwards every
    attribute to the module's new home."""

    def find_spec(self, name, path=None, target=None):
        if name in MOVED:
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):
        new = MOVED[spec.name]
        homes = [new] if isinstance(new, str) else list(new)
        # stacklevel 2 names the importer's frame only roughly (importlib's frames sit between): the message
        # names both paths, which is what a user needs to fix it.
        warnings.warn(f"{spec.name} moved to {' and '.join(homes)}; the old path will be removed in datagen "
                      f"{REMOVED_IN}", DeprecationWarning, stacklevel=2)
        return StandIn(spec.name, [importlib.import_module(home) for home in homes], RENAMED.get(spec.name, {}))

    def exec_module(self, module):
        """Nothing to run: the stand-in forwards to a module that is already imported."""


def install() -> None:
    """Put the finder on sys.meta_path (once): after the standard finders, so that it answers only names that
    no longer exist as files."""
    if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(MovedModules())
