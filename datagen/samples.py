"""What a pipeline produces: training samples, turned into dataset records by `datagen.export`."""

from collections.abc import Iterable
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


def transcript(turns: Iterable[tuple[str, str]]) -> str:
    """Earlier (question, answer) turns as a `conversation` field shows them: "User: ...\nAssistant: ..." per
    turn, separated by blank lines; empty when there are none."""
    return "\n\n".join(f"User: {question}\nAssistant: {answer}" for question, answer in turns)
