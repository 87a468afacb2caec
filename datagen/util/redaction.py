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
    for key in _keys():
        text = text.replace(key, REDACTED)
    return text


_known: tuple = (None, None, ())  # (the environment's raw items, the keys read, the keys) when last looked at


def _keys() -> tuple[str, ...]:
    """The keys to blank out, longest first (so that a key containing another is blanked whole); short values are
    no keys ("no-key", "1"). Read again only when the environment or the keys read changed: decoding every variable
    at each call was a few percent of a run's CPU (every LM answer is redacted before it is stored)."""
    global _known
    # The raw (bytes) items, compared without decoding; `os.environ` keeps them in `_data` on every platform.
    environment, read = tuple(getattr(os.environ, "_data", os.environ).items()), frozenset(_keys_read)
    if (environment, read) != _known[:2]:
        keys = {*read, *(value for name, value in os.environ.items() if _KEY_VARIABLE.search(name))}
        _known = (environment, read, tuple(sorted((k for k in keys if len(k) >= 8), key=len, reverse=True)))
    return _known[2]
