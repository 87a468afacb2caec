"""datagen: declarative DSPy pipelines that turn raw text into training datasets for custom LLMs."""

import os

# Everything must run offline: without this, litellm fetches its pricing table over the network
# (retrying for seconds) the first time a model is priced.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from datagen.errors import DatagenError  # noqa: E402
from datagen.samples import Sample  # noqa: E402

__all__ = ["DatagenError", "Sample"]
__version__ = "0.1.0"
