"""datagen: declarative DSPy pipelines that turn raw text into training datasets for custom LLMs."""

import os

# Everything must run offline: without this, litellm fetches its pricing table over the network
# (retrying for seconds) the first time a model is priced.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__version__ = "0.1.0"  # before the imports below: datagen.generate reads it

from datagen.errors import DatagenError  # noqa: E402
from datagen.samples import Sample  # noqa: E402

# The objects-first API (docs/api.md). `generate`, `evaluate` and `optimize` are these functions; the engine
# modules of the same names stay importable with `from datagen.generate import Report` and the like.
from datagen.api import Evaluation, Optimization, evaluate, optimize  # noqa: E402
from datagen.generate import Callbacks, Report, RunSettings, generate  # noqa: E402
from datagen.metrics.base import Score  # noqa: E402
from datagen.metrics.composite import Composite  # noqa: E402

__all__ = ["Callbacks", "Composite", "DatagenError", "Evaluation", "Optimization", "Report", "RunSettings", "Sample",
           "Score", "evaluate", "generate", "optimize"]
