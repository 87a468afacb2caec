"""An ended batch job's result files (its output and error files), settled into one outcome per request.

The files should name each request of the job once, by its `custom_id`. When they do not, one rule decides, so that
what the run store keeps, what the job's last status line counts and what the run's summary counts are the same:

- a request with one answer (a line with status 200) gets it, however often that answer is repeated and whatever
  error lines name the request too: the provider did answer it, and charged for it;
- a request given differing answers (lines with status 200 whose choices differ) fails (`batch_failed`): none is
  known to be the answer to the request that was sent, and a failed request is asked afresh by the next run;
- a request with error lines only fails with the first one's kind and message;
- a line naming no request of the job (another job's, an unknown id, none at all), or not a JSON object, is
  ignored;
- a request no line names is left to the caller, which fails it with the kind the job's end says.
"""

import json
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field

from datagen.errors import FailureKind

# Kinds of BatchRequestError by the error code of a line of the error file.
_KIND_BY_CODE = {"batch_expired": FailureKind.BATCH_EXPIRED, "batch_cancelled": FailureKind.BATCH_CANCELLED}


@dataclass
class Settled:
    """What an ended job's result files say about its requests, each request once.

    Attributes:
        answers: {key: the answer's response body as JSON}, for the requests answered.
        errors: {key: (failure kind, message)}, for the requests failed; disjoint from `answers`.
        prompt_tokens, completion_tokens: the tokens of the answers kept, each counted once (as the provider
            counted them in its usage).
        repeated: requests named by more than one line without differing answers (settled once: by their one
            answer, else by their first error line).
        conflicting: requests given differing answers (failed).
        foreign: lines naming no request of the job (ignored).
        unreadable: lines that are not JSON objects (ignored).
    """

    answers: dict[str, str] = field(default_factory=dict)
    errors: dict[str, tuple[str, str]] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    repeated: int = 0
    conflicting: int = 0
    foreign: int = 0
    unreadable: int = 0

    def faults(self) -> str | None:
        """The ways the files broke the one-line-per-request rule, in words (one line); None when they kept it."""
        said = []
        if self.repeated:
            said.append(f"name {_requests(self.repeated)} more than once (each kept once: its one answer, else its "
                        "first error)")
        if self.conflicting:
            said.append(f"give {_requests(self.conflicting)} differing answers (failed: none is known to be its "
                        "own; the next run asks afresh)")
        if self.foreign:
            said.append(f"hold {_lines_of(self.foreign)} of no request of the job (ignored)")
        if self.unreadable:
            said.append(f"hold {_lines_of(self.unreadable)} that are not JSON objects (ignored)")
        return "; ".join(said) or None


def settle(keys: Collection[str], contents: Iterable[bytes]) -> Settled:
    """Settle an ended job's result files into one outcome per request, by the rule of this module.

    Args:
        keys: the keys (custom_ids) of the requests the job carries.
        contents: the result files' contents (JSONL bytes), the output file's before the error file's.

    Returns:
        `Settled`: answers and errors of requests among `keys` only; a key no line names is in neither.
    """
    keys = set(keys)
    answers: dict[str, list[dict]] = {}
    failures: dict[str, list[tuple[str, str]]] = {}
    settled = Settled()
    for content in contents:
        for line in _lines(content):
            if not isinstance(line, dict):
                settled.unreadable += 1
                continue
            key = line.get("custom_id")
            if not isinstance(key, str) or key not in keys:
                settled.foreign += 1
                continue
            response = line.get("response") if isinstance(line.get("response"), dict) else {}
            body = response.get("body")
            if response.get("status_code") == 200 and isinstance(body, dict) and not line.get("error"):
                answers.setdefault(key, []).append(body)
            else:
                failures.setdefault(key, []).append(_line_error(line))
    for key in answers.keys() | failures.keys():
        given = answers.get(key, [])
        distinct = {json.dumps(body.get("choices"), sort_keys=True) for body in given}
        if len(distinct) > 1:
            settled.conflicting += 1
            settled.errors[key] = (FailureKind.BATCH_FAILED, f"the batch's result files give this request "
                                   f"{len(distinct)} differing answers; none is kept")
        elif given:
            settled.answers[key] = json.dumps(given[0], ensure_ascii=False)
            usage = given[0].get("usage") if isinstance(given[0].get("usage"), dict) else {}
            settled.prompt_tokens += usage.get("prompt_tokens") or 0
            settled.completion_tokens += usage.get("completion_tokens") or 0
        else:
            settled.errors[key] = failures[key][0]
        if len(distinct) <= 1 and len(given) + len(failures.get(key, ())) > 1:
            settled.repeated += 1
    return settled


def _requests(n: int) -> str:
    return f"{n} request{'' if n == 1 else 's'}"


def _lines_of(n: int) -> str:
    return f"{n} line{'' if n == 1 else 's'}"


def _lines(data: bytes) -> Iterator[object]:
    """The JSON values of the lines of a JSONL file (None for a line that is not JSON), blank lines skipped."""
    for raw in data.splitlines():
        if raw.strip():
            try:
                yield json.loads(raw)
            except ValueError:  # not JSON, or not UTF-8
                yield None


def _line_error(line: dict) -> tuple[str, str]:
    """(kind, message) of a line the provider did not answer well."""
    error = line.get("error") if isinstance(line.get("error"), dict) else {}
    response = line.get("response") if isinstance(line.get("response"), dict) else {}
    body = response.get("body") if isinstance(response.get("body"), dict) else {}
    inner = body.get("error") if isinstance(body.get("error"), dict) else {}
    code = error.get("code") or inner.get("code") or inner.get("type")
    message = str(error.get("message") or inner.get("message") or "") or (
        f"HTTP {response.get('status_code')}" if response.get("status_code") else "no answer")
    status = response.get("status_code")
    if status and status != 200 and not message.startswith("HTTP"):
        message = f"HTTP {status}: {message}"
    return _KIND_BY_CODE.get(code, FailureKind.BATCH_FAILED), message
