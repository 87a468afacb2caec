"""What fits a model's context window: the program's prompt, a chunk, and the answer's cap."""

from collections.abc import Iterable

import dspy

from datagen.errors import ConfigError
from datagen.lm import SCAFFOLD_TOKENS, RoleModel, bounded, default_max_tokens
from datagen.text import Chunk, count_tokens


def prompt_overhead(program: dspy.Module, model: RoleModel) -> int:
    """Tokens of the largest prompt the program sends, with its inputs left empty."""
    largest = 0
    for _, predictor in program.named_predictors():
        signature = predictor.signature
        messages = model.adapter.format(signature, predictor.demos,
                                        {name: "" for name in signature.input_fields})
        largest = max(largest, sum(count_tokens(str(m.get("content", ""))) for m in messages))
    return largest


def check_budget(program: dspy.Module, model: RoleModel, budget: int) -> None:
    """Refuse a chunk budget that cannot fit the model's context window with the prompt and the answer.

    Args:
        program: the program whose prompts are measured.
        model: the task model (a window of None is not checked).
        budget: the chunk budget, in tokens.

    Raises:
        ConfigError: prompt + chunk + answer exceed the window; the message says what budget would fit.
    """
    if model.context_window is None:
        return
    prompt = prompt_overhead(program, model)
    cap = model.lm.kwargs.get("max_tokens")
    # With no cap on the answer, reserve as much as the chunk: a rewrite is about as long as its input.
    answer = cap or budget
    if prompt + budget + answer > model.context_window:
        room = model.context_window - prompt
        fits = room - cap if cap else room // 2
        advice = f"use --max-tokens {fits} or less" if fits >= 16 else "lower the model's max_tokens"
        raise ConfigError(
            f"chunks of {budget} tokens do not fit {model.name}'s {model.context_window}-token context "
            f"(prompt ~{prompt} + chunk {budget} + answer up to {answer}): {advice}")


def bound_answers(program: dspy.Module, model: RoleModel, chunk_tokens: int,
                  chunks: Iterable[Chunk] = ()) -> RoleModel:
    """The task model with its answers capped, when the user set no max_tokens for it.

    The cap is `default_max_tokens("task", n)` (twice the chunk + 256), n the larger of `chunk_tokens` and the
    largest of `chunks`; or less where the model's known context window leaves less room after the program's
    largest prompt and the chunk (never less than the chunk itself: a budget the window cannot hold is
    `check_budget`'s to refuse). `datagen.lm.roles.bounded` sets it, and warns once. Used by generate, evaluate
    and optimize.

    Args:
        program: the program whose largest prompt counts against the window.
        model: the task model; one with a cap of the user's is returned as it is.
        chunk_tokens: the chunk budget (tiktoken o200k_base tokens).
        chunks: a dev set's items, whose largest counts too.

    Returns:
        The model, its answers capped.
    """
    if model.max_tokens is not None and not model.default_cap:
        return model
    chunk_tokens = max([chunk_tokens, *(chunk.tokens for chunk in chunks)])
    cap = default_max_tokens("task", chunk_tokens)
    why = f"twice the {chunk_tokens}-token chunk + {SCAFFOLD_TOKENS} for the output fields"
    if model.context_window is not None:
        room = max(model.context_window - prompt_overhead(program, model) - chunk_tokens, chunk_tokens)
        if room < cap:
            cap, why = room, f"what {model.name}'s {model.context_window}-token context leaves after the prompt"
    return bounded(model, cap, why)
