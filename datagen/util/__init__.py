"""The ground layer: atomic file writes (JSONL among them), file locks, and the redaction of API keys."""

from datagen.util.files import json_line, jsonl_sink, replacing, write_jsonl
from datagen.util.locking import exclusive
from datagen.util.redaction import REDACTED, redact, remember_key

__all__ = ["REDACTED", "exclusive", "json_line", "jsonl_sink", "redact", "remember_key", "replacing", "write_jsonl"]
