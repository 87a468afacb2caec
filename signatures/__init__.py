"""Typed dspy.Signature classes, one module per pipeline."""
