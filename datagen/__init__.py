"""datagen: declarative DSPy pipelines that turn raw text into training datasets for custom LLMs.

This face is the public API (docs/api.md): every name the docs tell users to import is here, in `__all__`. The
engine's subpackages (docs/architecture.md) have faces of their own for what the other layers use.
"""

import os

# Everything must run offline: without this, litellm fetches its pricing table over the network (retrying for
# seconds) the first time it is imported, which `datagen status` does without building a role model. It sets a
# default for an environment variable; it patches no code (that is datagen.lm.hooks, installed when a run needs it).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from datagen._moved import install as _keep_moved_paths  # noqa: E402
from datagen._version import __version__  # noqa: E402
from datagen.api import Evaluation, Optimization, evaluate, optimize  # noqa: E402
from datagen.dataset.quality import DiversityBar  # noqa: E402
from datagen.errors import (ConfigError, DatagenError, DiskError, FailureKind, InputError,  # noqa: E402
                            Interrupted, ModelUnreachable, PipelineNotFound, RunFolderError)
from datagen.lm import RoleModel, role_model  # noqa: E402
from datagen.metrics import Composite, Failed, Metric, MetricContext, Score  # noqa: E402
from datagen.runs import (BatchOptions, Callbacks, RayCluster, Report, RunSettings, RunStatus,  # noqa: E402
                          WorkerProcesses)
from datagen.runs.generate import generate  # noqa: E402
from datagen.samples import Sample  # noqa: E402
from datagen.tuning import write_evaluation  # noqa: E402
from datagen.workspace import Config, find_workspace, load_config, load_program  # noqa: E402

_keep_moved_paths()  # the 0.1 import paths (datagen.models, ...) answered, with a DeprecationWarning

__all__ = [
    "__version__",
    # generate, evaluate, optimize: the three verbs
    "generate", "evaluate", "optimize", "RunSettings", "BatchOptions", "RayCluster", "WorkerProcesses", "Callbacks",
    "RunStatus", "Report", "Evaluation", "Optimization", "write_evaluation",
    # what they take
    "Sample", "Score", "Failed", "Metric", "MetricContext", "Composite", "RoleModel", "role_model", "Config",
    "load_config", "find_workspace", "load_program", "DiversityBar",
    # what they raise, and how a chunk fails
    "DatagenError", "InputError", "ConfigError", "PipelineNotFound", "RunFolderError", "ModelUnreachable", "DiskError",
    "Interrupted", "FailureKind",
]
