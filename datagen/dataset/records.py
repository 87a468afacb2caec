"""Record shapes: one sample as each dataset format and trainer reads it (ShareGPT, Alpaca, chat messages, TRL's
prompt-completion, the flat record), and the sample's stable id."""

import hashlib

from datagen.samples import Sample
from datagen.text.chunking import Chunk


# The flat record's fields (`jsonl`, `parquet`, and beside the messages in `hf` and on the Hub).
FLAT_FIELDS = ("id", "input", "output", "chunk_id", "source", "start", "end")


def sample_id(chunk_id: str, index: int) -> str:
    """A sample's stable id: a hash of its chunk's id (itself a hash of the chunk's text) and its place among
    the chunk's samples. It does not depend on the run's other chunks, so it survives re-runs and growth."""
    return hashlib.sha256(f"{chunk_id}/{index}".encode()).hexdigest()[:16]


_SHAREGPT_NAMES = {"system": "system", "user": "human", "assistant": "gpt"}


def sharegpt_record(sample: Sample, system: str | None = None) -> dict:
    """ShareGPT `{"conversations": [{"from", "value"}, ...]}`: the input as the human turn, the output as the gpt
    turn, after the earlier turns of a multi-turn sample and the system turn if given (what LLaMA-Factory's
    sharegpt formatting reads with its default tags)."""
    return {"conversations": [{"from": _SHAREGPT_NAMES[m["role"]], "value": m["content"]}
                              for m in messages(sample, system)]}


def alpaca_record(sample: Sample, system: str | None = None) -> dict:
    """Alpaca: the input as the instruction, with no separate input, and the output; a multi-turn sample's
    earlier turns as alpaca's `history` of [instruction, output] pairs."""
    record = {"instruction": sample.input, "input": "", "output": sample.output}
    if system is not None:
        record["system"] = system
    if sample.history:
        record["history"] = [list(turn) for turn in sample.history]
    return record


def messages(sample: Sample, system: str | None = None) -> list[dict]:
    """A sample's conversation as role/content messages: the system prompt if given, then each (user, assistant)
    turn, a multi-turn sample's earlier turns first."""
    turns = [{"role": "system", "content": system}] if system is not None else []
    for user, assistant in sample.turns:
        turns += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return turns


def openai_record(sample: Sample, system: str | None = None) -> dict:
    """Chat `messages` as fine-tuning APIs take them (OpenAI's fine-tuning format; axolotl's `chat_template`
    stanza and Unsloth's script read the same): the input as the user turn, the output as the assistant's."""
    return {"messages": messages(sample, system)}


def prompt_completion_record(sample: Sample, system: str | None = None) -> dict:
    """TRL's conversational prompt-completion: every message before the last assistant turn as `prompt`, that turn
    as `completion`; SFTTrainer computes the loss on the completion only (`completion_only_loss`, on by default)."""
    turns = messages(sample, system)
    return {"prompt": turns[:-1], "completion": turns[-1:]}


def flat_record(chunk: Chunk, index: int, sample: Sample) -> dict:
    """One sample with its id and the place in the corpus it came from (the `jsonl` and `parquet` formats), and
    a multi-turn sample's earlier turns as `history`, [user, assistant] pairs."""
    record = {"id": sample_id(chunk.id, index), "input": sample.input, "output": sample.output,
              "chunk_id": chunk.id, "source": chunk.source, "start": chunk.start, "end": chunk.end}
    if sample.history:
        record["history"] = [list(turn) for turn in sample.history]
    return record
