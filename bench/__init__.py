"""Benchmarks of datagen (see bench/README.md)."""
