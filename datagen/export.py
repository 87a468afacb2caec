"""Dataset record formats."""

from datagen.samples import Sample


def sharegpt_record(sample: Sample) -> dict:
    """ShareGPT: the input as the human turn, the output as the gpt turn."""
    return {"conversations": [{"from": "human", "value": sample.input}, {"from": "gpt", "value": sample.output}]}
