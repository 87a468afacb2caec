"""What an optimize (or search) run will spend, read before it starts: the LM requests by role (the presets'
readings, datagen.tuning.presets), the tokens a request of each role, and US dollars at each role's price; and
whether a cap leaves the preset room to do what it is for.

Tokens a request are counted offline, never fetched:

- prompts are rendered as the role's adapter formats them (DSPy's `Adapter.format`) and counted with tiktoken's
  o200k_base from litellm's bundled vocabularies (`datagen.text.count_tokens`, the chunk budget's yardstick), plus
  MESSAGE_TOKENS a chat message as OpenAI counts them. Not with litellm's `token_counter`: it picks a tokenizer by
  the model's name and for some names (Llama's) fetches one from Hugging Face (23 s of retries without a network);
- task: each predictor's prompt with each input field given a dev-set chunk (a later step's inputs, an earlier
  step's outputs, read as about a chunk long), averaged over the dev items and the predictors; as the uncompiled
  program sends it (the demos a compile adds make later prompts longer);
- judge: each judge signature's prompt, each input field given a dev-set chunk;
- prompt (the model that proposes instructions): read as the task prompt plus PROPOSAL_EXAMPLES examples, each a
  chunk in and a chunk out;
- completions at the role's max_tokens cap: an upper bound (a rewrite is about its chunk's length).

Prices are the roles' (`datagen.runs.run_prices`: the config's `input_price` / `output_price`, else litellm's
bundled list); a role whose model has no price makes the dollars unknown, never guessed.
"""

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import dspy

from datagen.runs import Price
from datagen.text import count_tokens

MESSAGE_TOKENS = 3  # a chat message's role and separators (OpenAI's count; litellm's token_counter adds as many)
PROPOSAL_EXAMPLES = 3
ASSUMES = ("prompts rendered from the dev set, completions at each role's max_tokens cap, "
           "DSPy's cache answering none")


@dataclass(frozen=True)
class RoleCost:
    """One role's share of an estimate: its model, the LM requests it makes, the tokens a request (prompt and
    completion), and its price (US dollars per million tokens; None: unknown)."""

    role: str
    model: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    price: Price | None

    @property
    def dollars(self) -> float | None:
        """US dollars for the role's requests; None when its price is unknown."""
        if self.price is None:
            return None
        return self.price.cost(self.calls * self.prompt_tokens, self.calls * self.completion_tokens)


class Estimate(int):
    """The estimate of a run made before it starts: an int, the LM requests of every role (what `on_estimate` got
    before it got this), carrying `roles` (a `RoleCost` each), `cost` (US dollars, None when a price is unknown),
    `unpriced` (the models without a price) and `warning` (a budget too small for the preset, or None)."""

    roles: tuple[RoleCost, ...]
    warning: str | None

    def __new__(cls, roles: Iterable[RoleCost], warning: str | None = None):
        roles = tuple(roles)
        estimate = super().__new__(cls, sum(role.calls for role in roles))
        estimate.roles, estimate.warning = roles, warning
        return estimate

    @property
    def cost(self) -> float | None:
        """US dollars in all; None when a role that makes requests has no price."""
        spent = [role.dollars for role in self.roles if role.calls]
        return None if None in spent else sum(spent)

    @property
    def unpriced(self) -> list[str]:
        """The models of the roles that make requests and have no price."""
        return list(dict.fromkeys(role.model for role in self.roles if role.calls and role.price is None))

    def per_call(self) -> float | None:
        """US dollars a request on average; None when unknown or without requests."""
        cost = self.cost
        return None if cost is None or not int(self) else cost / int(self)

    def line(self) -> str:
        """The estimate in words: "about 40 LM requests (task 20, judge 20), about $0.0123 (an estimate: ...)",
        or "..., price unknown for MODEL" when a role's model has no price."""
        calls = ", ".join(f"{role.role} {role.calls}" for role in self.roles if role.calls)
        text = f"about {int(self)} LM requests ({calls or 'none'})"
        if self.unpriced:
            return text + ", price unknown for " + ", ".join(self.unpriced)
        tokens = "; ".join(f"{role.role} {role.prompt_tokens:,} in + {role.completion_tokens:,} out"
                           for role in self.roles if role.calls)
        return text + f", about ${self.cost:.4f} (an estimate, tokens a request: {tokens}; {ASSUMES})"


def message_tokens(messages: list[dict]) -> int:
    """Tokens of a chat prompt: each message's text counted (o200k_base) plus MESSAGE_TOKENS, and MESSAGE_TOKENS
    for the reply's start."""
    return sum(count_tokens(str(m.get("content") or "")) + MESSAGE_TOKENS for m in messages) + MESSAGE_TOKENS


def signature_tokens(signature: type[dspy.Signature], adapter: dspy.Adapter, chunks: list[str],
                     demos: list | None = None) -> float:
    """The mean tokens of `signature`'s prompt as `adapter` formats it, each input field given each of `chunks`
    in turn (with `demos`, a predictor's, shown). An adapter whose `format` raises counts the instructions and
    the inputs alone (an estimate never stops a run)."""
    if not chunks:
        return 0.0
    total = 0
    for chunk in chunks:
        inputs = {name: chunk for name in signature.input_fields}
        try:
            messages = adapter.format(signature, demos=list(demos or []), inputs=inputs)
        except Exception:  # an adapter that cannot format offline: its instructions and inputs, no scaffolding
            messages = [{"content": signature.instructions}, {"content": "\n".join(inputs.values())}]
        total += message_tokens(messages)
    return total / len(chunks)


def role_tokens(program: dspy.Module, task, judges: list, judge, prompt, chunks: list[str]) -> dict:
    """Tokens a request by role, {role: (prompt tokens, completion tokens)}, read as the module says.

    Args:
        program: the program compiled (its predictors' signatures and demos).
        task: the task's RoleModel (its adapter and max_tokens).
        judges: the judge metrics scored (each with a `signature`); empty: no judge.
        judge: the judges' RoleModel, or None.
        prompt: the prompt role's RoleModel, or None.
        chunks: the dev set's chunk texts.
    """
    chunk = sum(count_tokens(text) for text in chunks) / max(len(chunks), 1)
    predictors = [p for _, p in program.named_predictors()]
    task_prompt = sum(signature_tokens(p.signature, task.adapter, chunks, p.demos)
                      for p in predictors) / max(len(predictors), 1)
    tokens = {"task": (round(task_prompt), task.max_tokens or round(chunk))}
    if judge is not None and judges:
        judged = sum(signature_tokens(m.signature, judge.adapter, chunks) for m in judges) / len(judges)
        tokens["judge"] = (round(judged), judge.max_tokens or round(chunk))
    if prompt is not None:
        tokens["prompt"] = (round(task_prompt + 2 * PROPOSAL_EXAMPLES * chunk), prompt.max_tokens or round(chunk))
    return tokens


def estimate(calls: Mapping[str, int], tokens: Mapping[str, tuple[int, int]],
             models: Mapping[str, tuple[str, Price | None]], warning: str | None = None) -> Estimate:
    """The Estimate of `calls` by role, at `tokens` a request by role ((prompt, completion); a role missing makes
    requests of 0 tokens), of `models` by role ((name, price)). `warning`: see `budget_warning`."""
    return Estimate([RoleCost(role, models[role][0], n, *tokens.get(role, (0, 0)), models[role][1])
                     for role, n in Counter(calls).items() if role in models], warning)


def budget_warning(optimizer: str, purpose: str, least: int, max_calls: int | None, max_cost: float | None,
                   per_call: float | None) -> str | None:
    """A one-line warning when a cap leaves `optimizer` too few LM requests to `purpose` (`least` requests,
    held-out scoring before and after included, see `datagen.tuning.presets.least_calls`), naming the cap it
    needs; None when it fits. `max_cost` (US dollars) is read as requests at `per_call` dollars each (the
    estimate's mean; None: the cost cap is not judged)."""
    caps = []
    if max_calls is not None and max_calls < least:
        caps.append((max_calls, f"--max-calls {max_calls} allows {max_calls}", f"--max-calls {least}"))
    if max_cost is not None and per_call and max_cost < least * per_call:
        allows = int(max_cost // per_call)
        caps.append((allows, f"--max-cost ${max_cost:g} allows about {allows}",
                     f"--max-cost ${least * per_call:.4f}"))
    if not caps:
        return None
    _, allows, needs = min(caps)
    return (f"{optimizer} needs about {least} LM requests to {purpose} and score it before and after; {allows}: "
            f"the cap would stop it first (raise it to at least {needs})")
