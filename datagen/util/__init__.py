"""The ground layer: atomic file writes (JSONL among them), a write the disk refuses told from other errors, file
locks, and the redaction of API keys."""

from datagen.util.disk import disk_error, unwritable
from datagen.util.files import json_line, jsonl_sink, replacing, write_jsonl
from datagen.util.locking import exclusive
from datagen.util.redaction import REDACTED, redact, remember_key

__all__ = ["REDACTED", "disk_error", "exclusive", "json_line", "jsonl_sink", "redact", "remember_key", "replacing",
           "unwritable", "write_jsonl"]
