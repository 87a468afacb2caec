"""Tuning: evaluating a program on a dev set, optimizing it with DSPy's optimizers, pipeline-level search, and
the HTML report."""
