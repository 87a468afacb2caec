"""Looking into a run: what happened to one sample or chunk (the chunk, each step's inputs and outputs, the
scores and their feedback, the failure, and on request every LM call's exact messages and raw answer), and a
readable pick of a run's samples, random or worst-scored first, or of its failed chunks.

Everything is read from the run store and returned as plain data (what `datagen inspect --json` prints);
`render` writes a detail view as text.
"""

import json
import random
from dataclasses import asdict
from pathlib import Path

from datagen.dataset.export import sample_id
from datagen.errors import DatagenError
from datagen.metrics import COMPOSITE
from datagen.store import RunStore
from datagen.text import Chunk


# --- one sample or chunk ------------------------------------------------------------------------------------

def inspect_item(run_dir: str | Path, item_id: str, prompts: bool = False) -> dict:
    """What happened to a sample (an id as exports write it) or a chunk (its id; failed and not yet run ones
    too): the chunk, its status, its steps, its samples with their scores and feedback (only the one asked
    for, given a sample id), its failure, and with `prompts` every LM call it made."""
    item_id = item_id.strip().lower()
    with RunStore.reading(run_dir) as store:
        chunk, index = _resolve(store, item_id)
        result = store.result(chunk.id) or {}
        feedback = store.sample_feedback(chunk.id)
        samples = [{"id": sample_id(chunk.id, i), "index": i, "input": s.input, "output": s.output,
                    "history": [list(turn) for turn in s.history],
                    "scores": {metric: {"value": value, "feedback": text}
                               for metric, (value, text) in sorted(feedback.get(i, {}).items())}}
                   for i, s in enumerate(result.get("samples", [])) if index in (None, i)]
        view = {"run": str(run_dir), "id": item_id, "kind": "chunk" if index is None else "sample",
                "chunk": chunk.to_dict(), "status": result.get("status", "not run"),
                "seconds": result.get("seconds"), "usage": result.get("usage", {}),
                "steps": [asdict(step) for step in store.steps(chunk.id)], "outputs": result.get("outputs", {}),
                "samples": samples, "failure": None}
        if result.get("status") == "failed":
            view["failure"] = {"kind": result["failure"], "message": result["message"], "raw": result["raw"]}
        if prompts:
            # Call.servers is a run's tally in flight (summed in the store's servers table), not stored with a call.
            view["calls"] = [{key: value for key, value in asdict(call).items() if key != "servers"}
                             for call in store.calls(chunk.id)]
        return view


def _resolve(store: RunStore, item_id: str) -> tuple[Chunk, int | None]:
    """The chunk an id names and, for a sample id, the sample's index within it."""
    chunk = store.chunk(item_id)
    if chunk is not None:
        return chunk, None
    # A sample id is a hash, not stored: each finished sample's is computed until one matches.
    for chunk, samples in store.done():
        for index in range(len(samples)):
            if sample_id(chunk.id, index) == item_id:
                return chunk, index
    raise DatagenError(f"{store.path.parent}: no sample or chunk with id {item_id!r} in this run")


# --- many samples --------------------------------------------------------------------------------------------

def list_samples(run_dir: str | Path, limit: int = 5, worst: bool = False, seed: int = 0) -> dict:
    """Up to `limit` finished samples with their place in the corpus and their scores: a random pick (`seed`),
    or with `worst` the lowest-scored first (by composite where a sample has one, else its lowest score)."""
    with RunStore.reading(run_dir) as store:
        rows = [{"id": sample_id(chunk.id, i), "chunk_id": chunk.id, "source": chunk.source, "start": chunk.start,
                 "end": chunk.end, "input": sample.input, "output": sample.output,
                 "scores": dict(sorted(scores.get(i, {}).items()))}
                for chunk, samples in store.done() for scores in [store.sample_scores(chunk.id)]
                for i, sample in enumerate(samples)]
    if worst:
        if not any(row["scores"] for row in rows):
            raise DatagenError(f"{run_dir}: no sample has scores to order by; score them with datagen generate ... "
                               "--min-score METRIC=0 (finished chunks are only scored, not run again)")
        picked = sorted(rows, key=_badness)[:limit]
    else:
        picked = random.Random(seed).sample(rows, min(limit, len(rows)))
    return {"run": str(run_dir), "order": "worst" if worst else "random", "seed": None if worst else seed,
            "total": len(rows), "samples": picked}


def _badness(row: dict) -> float:
    """How a sample ranks for --worst: its composite, else its lowest score; unscored samples last."""
    scores = row["scores"]
    if COMPOSITE in scores:
        return scores[COMPOSITE]
    return min(scores.values(), default=float("inf"))


def list_failed(run_dir: str | Path, limit: int = 5) -> dict:
    """The first `limit` failed chunks in corpus order, each with its failure's kind, message and raw answer."""
    with RunStore.reading(run_dir) as store:
        failed = [{"chunk_id": chunk.id, "source": chunk.source, "start": chunk.start, "end": chunk.end,
                   "kind": kind, "message": message, "raw": raw} for chunk, kind, message, raw in store.failed()]
    return {"run": str(run_dir), "total": len(failed), "failed": failed[:limit]}


def shorten(text: str | None, width: int = 160) -> str:
    """Text on one line (whitespace runs collapsed), cut to `width` characters with an ellipsis."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[:width - 1].rstrip() + "…"


# --- text ----------------------------------------------------------------------------------------------------

_REPEAT_AT = 80  # characters: a text this long, shown once, is referred to afterwards

def render(view: dict) -> str:
    """A detail view (`inspect_item`) as text, in the order things happened: the chunk, each step, the samples
    and their scores, the failure, then the LM calls when they were asked for."""
    chunk = view["chunk"]
    named = f"chunk {chunk['id']}" if view["kind"] == "chunk" else f"sample {view['id']} from chunk {chunk['id']}"
    lines = [f"{named}: {chunk['source']} [{chunk['start']}:{chunk['end']}], {chunk['tokens']} tokens; "
             f"{_status(view)}"]
    lines += _section("chunk text", chunk["text"])
    seen = {chunk["text"]: "the chunk text"}
    for number, step in enumerate(view["steps"], 1):
        where = f"step {number}"
        lines += _section(f"{where}: {step['step']}", *_fields(step["inputs"], "input", seen, where),
                          *_fields(step["outputs"] or {}, "output", seen, where),
                          *_unless_empty("error", step["error"]))
    if not view["steps"] and view["status"] != "not run":
        lines += ["", "(no steps logged: this chunk ran before datagen kept a call log)"]
    if view["outputs"]:
        lines += _section("program outputs", *_fields(view["outputs"], "output", seen, "the program"))
    for sample in view["samples"]:
        turns = [(f"earlier turn {n} ({who})", text) for n, turn in enumerate(sample["history"], 1)
                 for who, text in zip(("user", "assistant"), turn)]
        scores = [f"{metric:<16} {score['value']:.3f}  {score['feedback'] or ''}".rstrip()
                  for metric, score in sample["scores"].items()]
        where = f"sample {sample['id']}"
        lines += _section(f"{where} (number {sample['index'] + 1} of the chunk)", *turns,
                          *_fields({"input": sample["input"], "output": sample["output"]}, "", seen, where),
                          *_unless_empty("scores", "\n".join(scores)))
    if view["failure"]:
        failure = view["failure"]
        lines += _section(f"failure: {failure['kind']}", ("message", failure["message"]),
                          *_unless_empty("raw answer", failure["raw"]))
    for number, call in enumerate(view.get("calls", []), 1):
        lines += _section(f"LM call {number}: {call['step']} ({_call_summary(call)})",
                          *((message["role"], _text(message.get("content"))) for message in call["messages"]),
                          ("response", call["response"]) if call["error"] is None else ("error", call["error"]))
    if "calls" in view and not view["calls"]:
        lines += ["", "(no LM calls logged for this chunk)"]
    return "\n".join(lines)


def _status(view: dict) -> str:
    if view["status"] == "not run":
        return "not run yet"
    tokens = ", ".join(f"{model} {u.get('prompt_tokens', 0)} + {u.get('completion_tokens', 0)} tokens"
                       for model, u in view["usage"].items())
    return f"{view['status']} in {view['seconds'] or 0:.2f} s" + (f" ({tokens})" if tokens else "")


def _call_summary(call: dict) -> str:
    usage = call["usage"] or {}
    parts = [call["model"], f"{call['seconds'] or 0:.2f} s"]
    if usage:
        parts.append(f"{usage.get('prompt_tokens', 0)} + {usage.get('completion_tokens', 0)} tokens")
    if call["cached"]:
        parts.append("cached")
    return ", ".join(parts)


def _fields(values: dict, role: str, seen: dict[str, str], where: str) -> list[tuple[str, str]]:
    """(heading, text) for each field. A long text shown before is named by where it was, not repeated (a
    style_clone chunk would otherwise appear four times); one shown here for the first time joins `seen`."""
    pairs = []
    for name, value in values.items():
        text = _text(value) or "(empty)"
        if len(text) > _REPEAT_AT and text in seen:
            text = f"(the same as {seen[text]})"
        elif len(text) > _REPEAT_AT:
            seen[text] = f"{where}'s {name}"
        pairs.append((f"{name} ({role})" if role else name, text))
    return pairs


def _unless_empty(heading: str, text: str | None) -> list[tuple[str, str]]:
    return [(heading, text)] if text else []


def _section(title: str, *parts: tuple[str, str]) -> list[str]:
    """A titled block; `parts` are (heading, text) pairs, or a single text under the title."""
    lines = ["", f"=== {title} ==="]
    for part in parts:
        heading, text = part if isinstance(part, tuple) else (None, part)
        lines += ([f"--- {heading} ---"] if heading else []) + [text]
    return lines


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2, default=str)
