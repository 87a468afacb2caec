"""Prompt tokens per sample that datagen sends, for each built-in pipeline, against the task's minimal prompt and
against the prompt a curator (bespokelabs-curator) user would write; and the share of each prompt that is one
identical prefix across samples (what a provider's prefix cache could serve).

    python -m bench.prompt_tokens            # from the repository root; --help for the knobs

The pipelines run through `datagen.generate` against the fake OpenAI-compatible server (tests/fakes.py, in this
process, DSPy's caches off), on the first chunks of data/samples; the server keeps every request as datagen sent
it. "compiled" variants carry two demos on each predictor, as `datagen optimize` leaves them. Tokens are counted
with cl100k_base, the vocabulary litellm ships (litellm points TIKTOKEN_CACHE_DIR at its bundled copy: nothing is
downloaded), per message as OpenAI counts chat prompts: 3 tokens a message, its role, its content, 3 to prime the
reply.

- minimal: the same instructions (the system message) and the same input values (and demos, as turns), without
  DSPy's scaffolding: no field list, no `[[ ## field ## ]]` markers, no format instructions; a field's name as a
  label only where a message holds more than one field.
- curator: what `prompt(row)` of a `curator.LLM` would return for the same step, written as its users write it:
  the same instructions as the system message, the inputs under plain labels, and for a step with structured
  output the pydantic `response_format` curator sends (its JSON schema counted as prompt tokens). No demos: a
  curator user has no optimizer to write them.
- cached: the tokens of each request that open every request of its step identically (system message, demos, and
  any identical start of the input message), over all its tokens.
"""

import argparse
import json
import re
import tempfile
import textwrap
from collections import defaultdict
from pathlib import Path

from datagen.text.chunking import chunk_documents  # datagen first: it keeps litellm from fetching its price list
from datagen.text.ingest import iter_documents

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "data" / "samples"
_SECTION = re.compile(r"\[\[ ## (\w+) ## \]\]\n(.*?)(?=\n\n\[\[ ## |\n\nRespond with|\s*\Z)", re.S)
_OBJECTIVE = "your objective is:"
# What the fake model answers for the fields whose values must parse (bools, a list); the rest get its rephrase.
ANSWERS = {"answerable": lambda _: "True", "accurate": lambda _: "True", "trivial": lambda _: "False",
           "reasoning": lambda _: "Each check passes.", "rating": lambda _: "4",
           "questions": lambda _: json.dumps(["Why did the keeper stay on the rock?", "How was the lamp lit?",
                                              "What did the keeper see in winter?"])}


def encoding():
    """cl100k_base as litellm bundles it (litellm sets TIKTOKEN_CACHE_DIR to its own copy)."""
    from litellm.litellm_core_utils.default_encoding import encoding as bundled

    return bundled


def message_tokens(messages: list[dict], enc) -> list[int]:
    """Each message's tokens as OpenAI counts a chat prompt: 3 + its role + its content (the reply's 3 apart)."""
    return [3 + len(enc.encode(m["role"])) + len(enc.encode(m["content"])) for m in messages]


def prompt_tokens(messages: list[dict], enc, extra: str = "") -> int:
    """A chat prompt's tokens: its messages, 3 to prime the reply, and `extra` (a response_format's schema)."""
    return sum(message_tokens(messages, enc)) + 3 + (len(enc.encode(extra)) if extra else 0)


def shared_prefix_tokens(requests: list[list[dict]], enc) -> int:
    """Tokens that open every request of `requests` identically: whole messages, then the identical start of the
    first message that differs (cut back to a token boundary of the shorter text)."""
    first = requests[0]
    whole = 0
    while whole < len(first) and all(len(r) > whole and r[whole] == first[whole] for r in requests):
        whole += 1
    tokens = sum(message_tokens(first[:whole], enc))
    if whole < len(first) and all(len(r) > whole and r[whole]["role"] == first[whole]["role"] for r in requests):
        texts = [r[whole]["content"] for r in requests]
        common = texts[0]
        for text in texts[1:]:
            end = next((i for i, (a, b) in enumerate(zip(common, text)) if a != b), min(len(common), len(text)))
            common = common[:end]
        ids = enc.encode(common)
        tokens += 3 + len(enc.encode(first[whole]["role"])) + max(0, len(ids) - 1) if ids else 0
    return tokens


# --- the prompts datagen sends, without the scaffolding -----------------------------------------------------

def fields(content: str) -> dict[str, str]:
    """The `[[ ## name ## ]]` sections of a DSPy message (the end marker left out)."""
    return {name: value.strip() for name, value in _SECTION.findall(content) if name != "completed"}


def instructions(system: str) -> str:
    """The task's instructions as the system message states them, without DSPy's indentation."""
    return textwrap.dedent(system.split(_OBJECTIVE, 1)[-1]).strip()


def plain_message(values: dict[str, str]) -> str:
    if len(values) == 1:
        return next(iter(values.values()))
    return "\n\n".join(f"{name.replace('_', ' ').capitalize()}: {value}" for name, value in values.items())


def minimal(messages: list[dict]) -> list[dict]:
    """The request without DSPy's scaffolding: the instructions, then each turn's field values."""
    turns = [{"role": m["role"], "content": plain_message(fields(m["content"]))} for m in messages[1:]]
    return [{"role": "system", "content": instructions(messages[0]["content"])}, *turns]


def _schema(**properties) -> str:
    """The JSON schema curator sends as `response_format` for a pydantic model of these properties."""
    return json.dumps({"type": "json_schema", "json_schema": {"name": "Answer", "strict": True, "schema": {
        "type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}}})


_TEXT, _BOOL = {"type": "string"}, {"type": "boolean"}
# Per step (the output fields it asks for): the user message a curator user writes, and its response_format.
CURATOR = {
    ("generic",): (lambda v: v["passage"], ""),
    ("opening", "closing"): (lambda v: v["passage"], _schema(opening=_TEXT, closing=_TEXT)),
    ("questions",): (lambda v: f"Write {v['count']} questions.\n\nPassage:\n{v['passage']}",
                     _schema(questions={"type": "array", "items": _TEXT})),
    ("answer",): (lambda v: f"Passage:\n{v['passage']}\n\n{v['conversation']}\n\nQuestion: {v['question']}".replace(
        "\n\n\n\n", "\n\n"), ""),
    ("reasoning", "answerable", "accurate", "trivial"): (
        lambda v: f"Passage:\n{v['passage']}\n\n{v['conversation']}\n\nQuestion: {v['question']}\n\nAnswer: "
                  f"{v['answer']}".replace("\n\n\n\n", "\n\n"),
        _schema(reasoning=_TEXT, answerable=_BOOL, accurate=_BOOL, trivial=_BOOL)),
}


def output_fields(system: str) -> tuple[str, ...]:
    listed = system.split("Your output fields are:", 1)[1].split("All interactions", 1)[0]
    return tuple(re.findall(r"^\d+\. `(\w+)`", listed, re.M))


def curator(messages: list[dict]) -> tuple[list[dict], str]:
    """The curator user's prompt for this request's step: (messages, response_format schema or "")."""
    user, schema = CURATOR[output_fields(messages[0]["content"])]
    values = fields(messages[-1]["content"])
    return ([{"role": "system", "content": instructions(messages[0]["content"])},
             {"role": "user", "content": user(values)}], schema)


# --- the runs -----------------------------------------------------------------------------------------------

def demos_for(program, passages: list[str]) -> None:
    """Two demos on each predictor of `program`, as `datagen optimize` leaves them (bootstrapped: every field)."""
    import dspy
    from tests.fakes import plain

    values = {"generic": plain, "opening": lambda p: "The winter came early that year.", "closing":
              lambda p: "And so the lamp was kept.", "questions": lambda p: ["Why did the keeper stay?",
              "How was the lamp lit?"], "count": lambda p: 2, "conversation": lambda p: "",
              "question": lambda p: "Why did the keeper stay?", "answer": lambda p: plain(p)[:200],
              "reasoning": lambda p: "It is answerable, accurate and not trivial.", "answerable": lambda p: True,
              "accurate": lambda p: True, "trivial": lambda p: False, "passage": lambda p: p}
    for _, predictor in program.named_predictors():
        names = list(predictor.signature.fields)
        predictor.demos = [dspy.Example(augmented=True, **{n: values[n](p) for n in names}) for p in passages]


def variants():
    """(name, a program factory) for each built-in pipeline, plain and compiled."""
    from programs.factual_qa import FactualQA
    from programs.style_clone import StyleClone

    return [("style_clone", lambda: StyleClone()), ("style_clone repair", lambda: StyleClone(True)),
            ("factual_qa", lambda: FactualQA())]


def capture(program, corpus: Path, chunks: int, max_tokens: int) -> tuple[list[list[dict]], int]:
    """Run `program` on the first `chunks` chunks: (the messages of every task request, samples made)."""
    from datagen.runs.generate import RunSettings, generate
    from datagen.workspace.config import Config, ModelSettings
    from tests.fakes import FakeOpenAIServer

    with FakeOpenAIServer(by_field=ANSWERS) as server, tempfile.TemporaryDirectory() as tmp:
        config = Config(models={"task": ModelSettings(model="openai/fake", api_base=server.url, max_tokens=400)})
        report = generate(program, [corpus], Path(tmp) / "run", workspace=ROOT, config=config,
                          settings=RunSettings(max_tokens=max_tokens, limit=chunks))
        task = [r["messages"] for r in server.requests
                if not any("`rating`" in m["content"] for m in r["messages"] if m["role"] == "system")]
    return task, report.samples


def measure(requests: list[list[dict]], samples: int, enc) -> dict[str, float]:
    """Per sample: datagen's, the minimal and the curator prompt tokens, and datagen's tokens a prefix cache holds."""
    steps = defaultdict(list)
    for messages in requests:
        steps[messages[0]["content"]].append(messages)
    cached = sum(shared_prefix_tokens(group, enc) * len(group) for group in steps.values() if len(group) > 1)
    return {"datagen": sum(prompt_tokens(m, enc) for m in requests) / samples,
            "minimal": sum(prompt_tokens(minimal(m), enc) for m in requests) / samples,
            "curator": sum(prompt_tokens(*curator(m)[:1], enc, curator(m)[1]) for m in requests) / samples,
            "cached": cached / samples, "calls": len(requests) / samples}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=6, help="chunks of data/samples each pipeline runs on (6)")
    parser.add_argument("--max-tokens", type=int, default=300, help="the chunk budget in tokens (300)")
    parser.add_argument("--show", action="store_true", help="print one request of each step as datagen sends it")
    args = parser.parse_args(argv)

    import dspy

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    enc = encoding()
    passages = [c.text for c in chunk_documents(iter_documents([CORPUS]), args.max_tokens)][-2:]
    print(f"prompt tokens per sample (cl100k_base), {args.chunks} chunks of data/samples at {args.max_tokens} tokens")
    print(f"{'pipeline':28} {'calls':>5} {'datagen':>8} {'minimal':>8} {'curator':>8} {'x min':>6} "
          f"{'x cur':>6} {'cached':>7} {'share':>6}")
    for name, make in variants():
        for compiled in (False, True):
            program = make()
            if compiled:
                demos_for(program, passages)
            requests, samples = capture(program, CORPUS, args.chunks, args.max_tokens)
            m = measure(requests, samples, enc)
            label = f"{name}{' compiled' if compiled else ''}"
            print(f"{label:28} {m['calls']:5.1f} {m['datagen']:8.0f} {m['minimal']:8.0f} {m['curator']:8.0f} "
                  f"{m['datagen'] / m['minimal']:6.2f} {m['datagen'] / m['curator']:6.2f} {m['cached']:7.0f} "
                  f"{m['cached'] / m['datagen']:6.0%}")
            if args.show and not compiled:
                for messages in {r[0]["content"]: r for r in requests}.values():
                    print("\n".join(f"--- {m['role']}\n{m['content']}" for m in messages), "\n")


if __name__ == "__main__":
    main()
