"""The models `datagen eval-model` compares: what `--model` and `--api-base` name, and how one is asked.

A candidate is any model datagen can call: a model on an OpenAI-compatible server (`openai/NAME` with an api_base:
vLLM, llama.cpp's server, SGLang, TGI, serving the fine-tune or its base), a hosted model (`openai/gpt-4o-mini`,
`anthropic/...`, with its key in the environment) or an embedded one (`local/smollm2-135m-instruct`). Each is asked
with the chat messages the trained model was trained on (datagen.dataset.records.messages: the export's system
prompt, then the held-out sample's turns up to its last input), at temperature 0 unless told otherwise, so that its
answers are reproducible.
"""

import hashlib
import json
import re
import time
from dataclasses import dataclass

from datagen.errors import DatagenError, FailureKind, InputError
from dspy.lm15 import Config, Message, Request

from datagen.dataset.records import messages
from datagen.lm import UNRECOVERABLE, RoleModel, failure_kind, first_line, holds_invalid_text
from datagen.lm.adapters import without_reasoning
from datagen.lm.local import EMBEDDED_MODELS
from datagen.lm.roles import build_role_model
from datagen.model_eval.store import Answer
from datagen.samples import Sample
from datagen.workspace.config import ModelSettings, flag_settings

_LABEL = re.compile(r"^[A-Za-z0-9_.\-]+$")
DEFAULT_TEMPERATURE = 0.0  # greedy: the same model gives the same answers, so two runs compare
DEFAULT_MAX_TOKENS = 1024
_MESSAGE = {"user": Message.user, "assistant": Message.assistant}


@dataclass(frozen=True)
class Candidate:
    """A model to evaluate: the label reports give it, and the settings that reach it.

    Args:
        label: its name in reports and `datagen view` (e.g. "tuned"); unique among the candidates compared.
        settings: its model string, server, temperature and answer cap (a `ModelSettings`, as a role's).
    """

    label: str
    settings: ModelSettings

    def key(self, system: str | None) -> str:
        """The fingerprint its answers are kept under: its model, servers, temperature, answer cap and the system
        prompt it is given (another of any of these is another set of answers)."""
        fields = {"model": self.settings.model, "api_base": list(self.settings.api_bases),
                  "temperature": self.settings.temperature, "max_tokens": self.settings.max_tokens, "system": system}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]

    def model(self) -> RoleModel:
        """The model, ready to call, with DSPy's cache off (the answer store is the cache: a model served again
        under the same name after more training must be asked again, not answered from a cache).

        Raises:
            ConfigError: the model string has no provider prefix or an unknown one, or the key it needs is unset.
        """
        model = build_role_model(self.settings, "candidate")
        return model.with_settings(cache=False)


def _labelled(value: str, option: str) -> tuple[str | None, str]:
    """(label, rest) of `--option LABEL=VALUE`; (None, value) when it has no label (a URL's or a model string's own
    characters before any "=" are not a label: they hold ":" or "/")."""
    label, sep, rest = value.partition("=")
    if not (sep and _LABEL.match(label)):
        return None, value
    if not rest:
        raise InputError(f"{option} {value!r}: nothing after '='")
    return label, rest


def parse_candidates(models: list[str], api_bases: list[str] | None = None, *,
                     temperature: float | None = None, max_tokens: int | None = None) -> list[Candidate]:
    """The candidates `--model` names, each with its server from `--api-base`.

    Args:
        models: each `[LABEL=]MODEL`: a model string (e.g. `openai/tuned`, `local/smollm2-135m-instruct`), with
            the label reports give it (default: the model string itself).
        api_bases: each `[LABEL=]URL`: a labelled URL is that candidate's server (a comma-separated list of
            servers too); one without a label is the server of every candidate without its own, the embedded
            models excepted; default None: none.
        temperature: the sampling temperature of every candidate; default None: DEFAULT_TEMPERATURE (0).
        max_tokens: the cap on each answer, in tokens; default None: DEFAULT_MAX_TOKENS (1024).

    Returns:
        The candidates, in the order given.

    Raises:
        InputError: no model; two candidates with the same label; an `--api-base` label that names no
            candidate, or two unlabelled ones; a label without a model.
        ConfigError: a URL or setting that is not valid (named by its option).
    """
    if not models:
        raise InputError("--model: name at least one model to evaluate (e.g. --model openai/tuned)")
    named = [_labelled(spec, "--model") for spec in models]
    labels = [label or model for label, model in named]
    if (twice := next((label for label in labels if labels.count(label) > 1), None)) is not None:
        raise InputError(f"--model: two models labelled {twice!r}; label them apart, e.g. --model base={twice}")
    servers: dict[str | None, str] = {}
    for value in api_bases or []:
        label, url = _labelled(value, "--api-base")
        if label is not None and label not in labels:
            raise InputError(f"--api-base {value!r}: no model is labelled {label!r} (labels: {', '.join(labels)})")
        if label in servers:
            raise InputError(f"--api-base: two servers for {label or 'the models without their own'}")
        servers[label] = url
    candidates = []
    for label, (_, model) in zip(labels, named):
        server = servers.get(label, None if model in EMBEDDED_MODELS else servers.get(None))
        settings = flag_settings(model=model, api_base=server, max_tokens=max_tokens or DEFAULT_MAX_TOKENS,
                                 temperature=DEFAULT_TEMPERATURE if temperature is None else temperature)
        candidates.append(Candidate(label, settings))
    return candidates


def chat_request(model: RoleModel, sample: Sample, system: str | None, settings: ModelSettings) -> Request:
    """The request that asks `model` a held-out sample's input as the trained model saw its pairs: `system` first
    (None or "": none), then the sample's earlier turns and its input (datagen.dataset.records.messages, less the
    answer), capped and sampled as `settings` say (an explicit request carries its own: the LM's defaults do not
    apply to it)."""
    turns = messages(sample)[:-1]  # the system prompt goes apart, in the request's own field
    # An empty system prompt goes as none: a request's system text may not be empty (lm15 refuses it).
    return Request(model=model.lm.model, system=system or None,
                   messages=tuple(_MESSAGE[turn["role"]](turn["content"]) for turn in turns),
                   config=Config(max_tokens=settings.max_tokens, temperature=settings.temperature))


def ask(model: RoleModel, request: Request) -> Answer:
    """One candidate's answer to one held-out sample, or the failure of the call.

    Args:
        model: the candidate's model (`Candidate.model`).
        request: the sample's request (`chat_request`).

    Returns:
        The `Answer`: its text (after any reasoning up to a closing tag such as </think>, as the pipelines read
        answers), tokens and finish reason ("length": cut off at max_tokens); or the error and its kind
        (datagen.lm.failures) when the call failed after its retries, or answered text that is not valid Unicode
        (kind "encoding").

    Raises:
        DatagenError: a failure no other sample would escape (datagen.lm.failures.UNRECOVERABLE: a key refused, an
            unknown model, nothing listening), in one line naming the model.
    """
    start = time.monotonic()
    try:
        response = model.lm(request)
    except Exception as exc:
        kind = failure_kind(exc)
        if kind in UNRECOVERABLE:  # no other sample would fare better: one line, the evaluation stops
            raise DatagenError(f"{model.name}: {kind}: {first_line(exc)}") from exc
        return Answer(None, first_line(exc), kind, seconds=time.monotonic() - start)
    usage = response.usage
    text = without_reasoning(response.text or "")  # a reasoning model's thinking is not its answer
    if holds_invalid_text(text):  # a lone surrogate (half a character): not text, and SQLite cannot store it
        return Answer(None, "the answer holds a lone surrogate (half of a character): not valid Unicode",
                      FailureKind.ENCODING, seconds=time.monotonic() - start)
    return Answer(text, prompt_tokens=usage.input_tokens if usage else None,
                  completion_tokens=usage.output_tokens if usage else None, seconds=time.monotonic() - start,
                  finish_reason=response.finish_reason)
