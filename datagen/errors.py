"""What can go wrong: the errors datagen raises, and the kinds of failure a chunk is stored with.

The exceptions, for a library caller to catch apart (the CLI turns each into a one-line error and its exit code):

    DatagenError          a problem the user can fix; the message is one line that names the culprit
    ├── InputError        bad input: a file, a folder, a dev set, an option's value
    ├── ConfigError       a setting in datagen.toml, a DATAGEN_ variable or a flag that cannot be used
    ├── PipelineNotFound  no pipeline of that name in the workspace or among the built-in ones
    ├── RunFolderError    a run folder that is not datagen's, or was made by another run (other pipeline or settings)
    ├── ModelUnreachable  a model's server that cannot be reached
    ├── DiskError         a folder datagen must write to that cannot take it: a full disk, a read-only one, no
    │                     permission; what was written before is kept
    └── Interrupted       the command was stopped (Ctrl-C, SIGTERM, SIGHUP); what was finished is kept

`FailureKind` is not an exception: it names why a chunk failed, as the run store keeps it.
"""

import signal
from enum import StrEnum


class DatagenError(Exception):
    """A problem the user can fix: bad input, bad config, an unreachable model.

    The message is a single line that names the culprit (a file, a setting, a model). `exit_code` is the exit
    status the CLI gives it.
    """

    exit_code = 1


class InputError(DatagenError):
    """Bad input: a file or folder that is missing or unreadable, a dev set that does not parse, a value out of
    range."""


class ConfigError(DatagenError):
    """A setting (datagen.toml, a DATAGEN_ environment variable, a flag) that is invalid or missing, such as a
    model without its provider prefix or an API key variable that is not set."""


class PipelineNotFound(DatagenError):
    """No pipeline of that name: neither programs/NAME.py in the workspace nor a built-in one."""


class RunFolderError(DatagenError):
    """A run folder that is not a datagen run store, or that was made by another run (another pipeline, program
    or chunking): resuming it would mix two datasets."""


class ModelUnreachable(DatagenError):
    """A model's server that cannot be reached (nothing listens at its api_base, or the connection fails)."""


class DiskError(DatagenError):
    """A folder datagen must write to cannot take the write: its disk is full, it is read-only, or permission is
    denied. The message names the folder and what to do; what was written before is kept (the run store's
    commits, files written whole)."""


class Interrupted(DatagenError):
    """The command was stopped by a signal (Ctrl-C, SIGTERM, SIGHUP); what was finished is kept.

    Args:
        message: the one line to show.
        signum: the signal that stopped it; default SIGINT (Ctrl-C). The exit status is the shell's for it,
            128 + its number: 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP.
    """

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.exit_code = 128 + signum


class FailureKind(StrEnum):
    """Why a chunk (or one LM call) failed, as stored: each member is the string the run store holds."""

    PARSE = "parse"  # the adapter could not parse a non-empty answer
    EMPTY_ANSWER = "empty_answer"  # the model answered nothing
    ENCODING = "encoding"  # the answer (or an output) is not valid Unicode
    TIMEOUT = "timeout"  # no answer within the role's timeout
    CONNECTION = "connection"  # the connection was reset or dropped
    TRANSPORT = "transport"  # nothing listens at the api_base
    RATE_LIMIT = "rate_limit"  # 429s past every retry
    AUTH = "auth"  # the key was refused
    BILLING = "billing"  # the account cannot pay
    UNSUPPORTED_MODEL = "unsupported_model"  # no such model (or route) at the server
    CONFIGURATION = "configuration"  # DSPy's: the LM is misconfigured
    NOT_CONFIGURED = "not_configured"  # DSPy's: no LM configured
    CONTEXT_WINDOW_EXCEEDED = "context_window_exceeded"
    TRUNCATED = "truncated"  # the program's answer was cut off at max_tokens (finish_reason length)
    NO_SAMPLES = "no_samples"  # the program returned no samples (and dropped no candidate)
    EMPTY_OUTPUT = "empty_output"  # a sample has an empty input or output
    WORKER_DIED = "worker_died"  # the Ray actor running the chunk died, again and again
    DEFERRED = "deferred"  # a batch run's request, not answered yet (not a failure: run again next round)
    BATCH_FAILED = "batch_failed"  # the batch job answered the request with an error, or failed
    BATCH_EXPIRED = "batch_expired"  # the batch job's 24 h window ended first
    BATCH_CANCELLED = "batch_cancelled"

    @staticmethod
    def of_judge(kind: str) -> str:
        """The kind of a chunk failed by its judge's `kind` of failure (stored as `judge_<kind>`)."""
        return f"judge_{kind}"
