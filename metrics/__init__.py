"""Metric functions and LLM judges."""
