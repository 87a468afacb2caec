"""Dataset-level quality: near-duplicate samples, diversity, and contamination by protected text (docs/quality.md)."""
