"""The run store: one SQLite database per run folder, with the records it holds."""

from datagen.store.records import Call, Outcome, Review, Step, cached_tokens, sum_usage
from datagen.store.batch_reader import BatchReader
from datagen.store.run_store import RunStore, read_only_db
from datagen.store.schema import (CHUNK_TOKENS, COMPILED, DB_FILE, GATE, QUALITY, SCHEMA, SPLIT_RULE, SPLIT_SEEN,
                                  SYSTEM_PROMPT)

__all__ = ["CHUNK_TOKENS", "COMPILED", "DB_FILE", "GATE", "QUALITY", "SCHEMA", "SPLIT_RULE", "SPLIT_SEEN", "SYSTEM_PROMPT",
           "BatchReader", "Call", "Outcome",
           "Review", "RunStore", "Step", "cached_tokens", "read_only_db", "sum_usage"]
