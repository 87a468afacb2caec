"""What a pipeline produces: training samples, turned into dataset records by `datagen.export`."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    """One training pair: what the fine-tuned model will be given, and what it should answer; in a multi-turn
    conversation, its last turn, after the earlier (user, assistant) turns in `history`, oldest first."""

    input: str
    output: str
    history: tuple[tuple[str, str], ...] = ()

    @property
    def turns(self) -> list[tuple[str, str]]:
        """Every (user, assistant) turn of the conversation, this sample's own last."""
        return [*self.history, (self.input, self.output)]
