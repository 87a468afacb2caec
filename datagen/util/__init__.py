"""The ground layer: atomic file writes, file locks, and the redaction of API keys."""

from datagen.util.files import replacing
from datagen.util.locking import exclusive
from datagen.util.redaction import REDACTED, redact, remember_key

__all__ = ["REDACTED", "exclusive", "redact", "remember_key", "replacing"]
