"""Scaffolding: `datagen init` (a workspace) and `datagen new` (a pipeline)."""
