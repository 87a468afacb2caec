"""The version of datagen, in one small module that the engine and the package face both read."""

__version__ = "0.1.0"
