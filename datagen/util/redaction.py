"""Blanking out API keys from text that is stored, reported or printed: a provider's error message may quote
the key it was sent, and DSPy's optimizers log such errors as they are."""

import os
import re

REDACTED = "[redacted]"
# Variables named like credentials: a provider's usual variable (OPENAI_API_KEY, HF_TOKEN, ...) that litellm reads
# itself, so datagen never sees which one is in use.
_KEY_VARIABLE = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)$", re.I)
_keys_read: set[str] = set()  # the values read through a role's api_key_env, whatever the variable's name


def remember_key(key: str) -> None:
    """Redact `key` from now on (a key datagen read itself, from the variable a role's api_key_env names)."""
    _keys_read.add(key)


def redact(text: str | None) -> str | None:
    """`text` with every API key in use replaced by REDACTED."""
    if not text:
        return text
    keys = {*_keys_read, *(value for name, value in os.environ.items() if _KEY_VARIABLE.search(name))}
    # Longest first, so that a key containing another is blanked whole; short values are no keys ("no-key", "1").
    for key in sorted((k for k in keys if len(k) >= 8), key=len, reverse=True):
        text = text.replace(key, REDACTED)
    return text
