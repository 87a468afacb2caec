"""What a pipeline produces, and what a metric says of it: training samples (turned into dataset records by
`datagen.dataset.export`) and their scores (`Score`, or `Failed` where a metric could not give one)."""

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


@dataclass(frozen=True)
class Score:
    """A metric's score of one sample: `value` in [0, 1] (higher is better) and `feedback`, why in a sentence."""

    value: float  # in [0, 1], higher is better
    feedback: str = ""  # why, in a sentence: what GEPA reads, and what a report shows beside the worst samples


@dataclass(frozen=True)
class Failed(Score):
    """A metric's score on a sample that it could not score: value 0, `feedback` the error in a line, `kind` the
    failure's kind (`judge_<metric>_<kind>` for a judge, `metric_<metric>_<kind>` for an offline metric)."""

    kind: str = ""
