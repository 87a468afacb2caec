"""What a pipeline produces, and what a metric says of it: training samples (turned into dataset records by
`datagen.dataset.export`) and their scores (`Score`, or `Failed` where a metric could not give one)."""

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    """One training pair: what the fine-tuned model will be given, and what it should answer.

    In a multi-turn conversation, a sample is its last turn, after the earlier turns in `history`. Frozen.

    Args:
        input: what the fine-tuned model will be given (the user's turn).
        output: what it should answer (the assistant's turn).
        history: the earlier (user, assistant) turns of the conversation, oldest first; default (): a single turn.
    """

    input: str
    output: str
    history: tuple[tuple[str, str], ...] = ()

    @property
    def turns(self) -> list[tuple[str, str]]:
        """Every (user, assistant) turn of the conversation, this sample's own last."""
        return [*self.history, (self.input, self.output)]


def transcript(turns: Iterable[tuple[str, str]]) -> str:
    """Earlier (question, answer) turns as a `conversation` field shows them.

    Args:
        turns: the (question, answer) turns, oldest first (e.g. a `Sample`'s `history`).

    Returns:
        "User: ...\nAssistant: ..." per turn, separated by blank lines; "" when there are none.
    """
    return "\n\n".join(f"User: {question}\nAssistant: {answer}" for question, answer in turns)


@dataclass(frozen=True)
class Score:
    """A metric's score of one sample. Frozen.

    Args:
        value: the score, in [0, 1] (higher is better).
        feedback: why, in a sentence: what GEPA reads, and what a report shows beside the worst samples; default "".
    """

    value: float  # in [0, 1], higher is better
    feedback: str = ""  # why, in a sentence: what GEPA reads, and what a report shows beside the worst samples


@dataclass(frozen=True)
class Failed(Score):
    """A metric's score on a sample that it could not score; it counts as 0 wherever values are averaged. Frozen.

    Args:
        value: 0 (see `datagen.metrics.scoring.measure`).
        feedback: the error, in a line; default "".
        kind: the failure's kind: `judge_<metric>_<kind>` for a judge, `metric_<metric>_<kind>` for an offline
            metric (e.g. "judge_content_truncated"); default "".
    """

    kind: str = ""
