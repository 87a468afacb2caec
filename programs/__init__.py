"""dspy.Module pipelines: `datagen generate NAME` runs the program defined in programs/NAME.py."""
