"""The ground layer: atomic file writes (JSONL among them), a write the disk refuses said in one line, file locks,
and the redaction of API keys."""

from datagen.util.disk import disk_error, refused_write, unwritable, writing
from datagen.util.files import json_line, jsonl_sink, replacing, write_jsonl
from datagen.util.locking import exclusive
from datagen.util.redaction import REDACTED, redact, remember_key

__all__ = ["REDACTED", "disk_error", "exclusive", "json_line", "jsonl_sink", "redact", "refused_write", "remember_key",
           "replacing", "unwritable", "write_jsonl", "writing"]
