"""Offline token counting.

Budgets are counted with tiktoken's `o200k_base` encoding, a yardstick close to modern tokenizers. tiktoken
downloads its vocabularies on first use; litellm ships them, so they are read from litellm's bundled copy and
nothing is fetched at run time.
"""

import functools
import importlib.util
import os
from pathlib import Path

from datagen.errors import DatagenError

ENCODING = "o200k_base"


def _bundled_vocabularies() -> Path:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        raise DatagenError("litellm is not installed: it ships the tokenizer vocabularies datagen counts with")
    return Path(spec.submodule_search_locations[0]) / "litellm_core_utils" / "tokenizers"


@functools.cache
def _encoding():
    import tiktoken

    # tiktoken looks for a cached vocabulary in TIKTOKEN_CACHE_DIR before downloading it; point it at the
    # bundled copy only while loading, so a user's own setting is left as it was.
    previous = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(_bundled_vocabularies())
    try:
        return tiktoken.get_encoding(ENCODING)
    except Exception as exc:  # tiktoken raises requests/blobfile errors when it falls back to the network
        raise DatagenError(f"cannot load the {ENCODING} tokenizer from litellm's bundled copy: {exc}") from exc
    finally:
        if previous is None:
            del os.environ["TIKTOKEN_CACHE_DIR"]
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = previous


def count_tokens(text: str) -> int:
    """Number of tokens in `text` (special-token strings count as plain text)."""
    return len(_encoding().encode_ordinary(text))


def head_within(text: str, budget: int) -> int:
    """Characters of the longest head of `text` made of its first `budget` tokens (all of it when it fits): one
    encoding, where finding the cut by counting candidate heads takes several."""
    encoding = _encoding()
    tokens = encoding.encode_ordinary(text)
    if len(tokens) <= budget:
        return len(text)
    # A token may end inside a character: the bytes of that partial character are dropped.
    return len(encoding.decode_bytes(tokens[:budget]).decode("utf-8", errors="ignore"))
