"""datagen: declarative DSPy pipelines that turn raw text into training datasets for custom LLMs."""

import os

# Everything must run offline: without this, litellm fetches its pricing table over the network
# (retrying for seconds) the first time a model is priced.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from datagen._version import __version__  # noqa: E402
from datagen._moved import install as _keep_moved_paths  # noqa: E402
from datagen.errors import DatagenError  # noqa: E402
from datagen.samples import Sample  # noqa: E402

# The objects-first API (docs/api.md).
from datagen.api import Evaluation, Optimization, evaluate, optimize  # noqa: E402
from datagen.runs.generate import Callbacks, Report, RunSettings, generate  # noqa: E402
from datagen.metrics.base import Score  # noqa: E402
from datagen.metrics.composite import Composite  # noqa: E402

_keep_moved_paths()  # the 0.1 import paths (datagen.models, ...), with a DeprecationWarning

__all__ = ["Callbacks", "Composite", "DatagenError", "Evaluation", "Optimization", "Report", "RunSettings", "Sample",
           "Score", "__version__", "evaluate", "generate", "optimize"]
