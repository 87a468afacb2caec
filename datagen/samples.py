"""What a pipeline produces: training samples, turned into dataset records by `datagen.export`."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    """One training pair: what the fine-tuned model will be given, and what it should answer."""

    input: str
    output: str
