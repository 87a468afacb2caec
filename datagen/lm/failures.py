"""The kind of a failed LM call (or of a chunk that failed because of one), and its message in one line.

A kind is stored in the run store (results.failure), counted by `datagen status`, listed by `datagen inspect` and
the view, and decides the runner's policy (a fatal kind stops the run). The kinds are the members of
`datagen.errors.FailureKind`; two families are open-ended: an error no kind names is stored under its class name,
and a failure of a judge or an offline metric is stored as `judge_<kind>` (the chunk) or
`<judge|metric>_<metric>_<kind>` (one score; see datagen.metrics.scoring).
"""

from dspy.utils.exceptions import AdapterParseError, LMError

from datagen.errors import FailureKind
from datagen.lm.adapters import InvalidText, valid_text
from datagen.lm.errors import BatchRequestError, Deferred, causes, root_cause
from datagen.lm.gate import MAX_RETRY_AFTER
from datagen.lm.names import configured_names
from datagen.util.redaction import redact


# No other chunk would escape these: the run stops at the first (a key refused, no such model, no LM).
FATAL = frozenset({FailureKind.AUTH, FailureKind.BILLING, FailureKind.UNSUPPORTED_MODEL,
                   FailureKind.CONFIGURATION, FailureKind.NOT_CONFIGURED})
# A judge's failure that no other sample would escape fails the chunk, as the program's would.
UNRECOVERABLE = FATAL | {FailureKind.TRANSPORT}
BATCH_KINDS = frozenset({FailureKind.BATCH_FAILED, FailureKind.BATCH_EXPIRED, FailureKind.BATCH_CANCELLED})


def failure_kind(exc: BaseException) -> str:
    """A failure's kind, as stored and reported.

    Args:
        exc: what the program's (or a judge's) call raised.

    Returns:
        A `FailureKind` member, DSPy's LMError code for an LM error no member names, or the error's class name.
    """
    for cause in causes(exc):  # what a batch engine raised reaches here wrapped in DSPy's LMError
        if isinstance(cause, Deferred):
            return FailureKind.DEFERRED
        if isinstance(cause, BatchRequestError):
            return cause.kind
    if isinstance(exc, InvalidText):
        return FailureKind.ENCODING
    if isinstance(exc, AdapterParseError):
        return FailureKind.PARSE if (exc.lm_response or "").strip() else FailureKind.EMPTY_ANSWER
    if isinstance(exc, LMError) and any(getattr(c, "status", None) == 404 for c in causes(exc)):
        # No such model (or no such route) at this server: litellm says so, DSPy's own engine calls it an invalid
        # request. Either way no other chunk would fare better.
        return FailureKind.UNSUPPORTED_MODEL
    if isinstance(exc, LMError):
        # The engines disagree on what a slow answer or a dropped connection is (litellm calls a reset a server
        # error, DSPy's own engine calls a timeout a transport error); the OS error under them does not.
        # A refused connection stays "transport": nothing listens there, which the runner treats as fatal.
        cause = root_cause(exc)
        if isinstance(cause, TimeoutError):
            return FailureKind.TIMEOUT
        if isinstance(cause, ConnectionRefusedError):
            return FailureKind.TRANSPORT
        if isinstance(cause, ConnectionError):
            return FailureKind.CONNECTION
        return exc.code
    return type(exc).__name__


def first_line(exc: BaseException) -> str:
    """The error in one line that names its cause (the provider's own wording keeps it only a layer down).

    Stored, reported and printed, so API keys are redacted (before the line is cut short, which could cut a key in
    two, and again for the cause added to it) and models are named as the user configured them.

    Args:
        exc: the error.

    Returns:
        At most about 500 characters of valid Unicode, no newline.
    """
    text = redact(str(exc).strip())
    line = text.splitlines()[0][:500] if text else type(exc).__name__
    if isinstance(exc, AdapterParseError):
        line = f"{exc.adapter_name} could not parse the model's answer: {line}"
    cause = root_cause(exc)
    if isinstance(cause, OSError) and str(cause) not in line:  # litellm's "Connection error." hides a reset
        line += f" ({cause})"
    wait = getattr(exc, "retry_after", None)
    if isinstance(wait, (int, float)) and wait > MAX_RETRY_AFTER:
        line += (f" (the provider asked to retry after {wait:g} s, longer than datagen waits: "
                 "run the same command again later)")
    return valid_text(redact(configured_names(line)))  # an error may quote an answer that is not valid Unicode
