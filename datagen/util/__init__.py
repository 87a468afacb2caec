"""The ground layer: atomic file writes (JSONL among them), a write the disk refuses said in one line, file locks,
the redaction of API keys, the signals that stop a command, and the heap kept out of the garbage collector's walks."""

from datagen.util.disk import disk_error, refused_write, unwritable, writing
from datagen.util.files import json_line, jsonl_sink, replacing, write_jsonl
from datagen.util.heap import frozen_heap
from datagen.util.locking import exclusive
from datagen.util.redaction import REDACTED, redact, remember_key
from datagen.util.signals import Stopped, handling_stop_signals, interrupted, signal_label, stop_signal

__all__ = ["REDACTED", "Stopped", "disk_error", "exclusive", "frozen_heap", "handling_stop_signals", "interrupted", "json_line",
           "jsonl_sink", "redact", "refused_write", "remember_key", "replacing", "signal_label", "stop_signal",
           "unwritable", "write_jsonl", "writing"]
