"""The ground layer: atomic file writes (JSONL among them), file locks, the redaction of API keys, and the
signals that stop a command."""

from datagen.util.files import json_line, jsonl_sink, replacing, write_jsonl
from datagen.util.locking import exclusive
from datagen.util.redaction import REDACTED, redact, remember_key
from datagen.util.signals import Stopped, handling_stop_signals, interrupted, signal_label, stop_signal

__all__ = ["REDACTED", "Stopped", "exclusive", "handling_stop_signals", "interrupted", "json_line", "jsonl_sink", "redact",
           "remember_key", "replacing", "signal_label", "stop_signal", "write_jsonl"]
