"""What reaches stderr besides the commands' own lines: datagen's log lines only (the libraries' with --verbose),
no optimizer progress bars, and no API key anywhere."""

import functools
import logging
import sys
import traceback
import warnings


def setup_logging(verbose: bool) -> None:
    """Set up logging for one run of the app, before any command.

    Args:
        verbose: Debug logging, the libraries' log lines and progress bars included (`--verbose`).
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    if not verbose:
        handler.addFilter(_own_records)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, handlers=[handler], force=True)
    if not verbose:
        _no_progress_bars()
    quiet_libraries()
    _redact_output()
    _show_datagen_deprecations()


def _show_datagen_deprecations() -> None:
    """A workspace's own code that uses one of datagen's moved paths (datagen/_moved.py) or a deprecated spelling
    is told so in the command's output: Python shows a DeprecationWarning only in __main__ by default, and a
    pipeline's module is never that. Shown once per place, as Python's "default" action does."""
    warnings.filterwarnings("default", category=DeprecationWarning, message=r"(datagen\.|RunSettings\()")


def _no_progress_bars() -> None:
    """The optimizers' tqdm bars off (DSPy draws them over the command's own status line): tqdm's default for
    `disable`, which it reads from TQDM_DISABLE only when imported, and DSPy imports it before any option is
    read. A bar asked for explicitly (disable=False) still draws."""
    import tqdm

    init = tqdm.tqdm.__dict__["__init__"]
    if not getattr(init, "datagen_quiet", False):  # once per process (the app may run again in one)
        tqdm.tqdm.__init__ = functools.partialmethod(init, disable=True)
        tqdm.tqdm.__init__.datagen_quiet = True


def _own_records(record: logging.LogRecord) -> bool:
    """Without -v, only datagen's own log lines reach stderr: the libraries' (DSPy logs an ERROR line with the
    whole chunk and the raw answer for each example an optimizer could not run, litellm its retries) are what
    datagen reports itself, counted, or noise. Their loggers still run, so datagen's filters on them (the
    truncation count of datagen.lm.calllog) see every record."""
    return record.name == "datagen" or record.name.startswith("datagen.")


def _redact_output() -> None:
    """No API key on stderr: a provider's error may quote the key, and it reaches stderr outside datagen's own
    messages too, in the libraries' log lines (DSPy's optimizers log each failed example with its error) and in
    the traceback of an error nothing catches."""
    from datagen.util import redact

    make_record = logging.getLogRecordFactory()
    if getattr(make_record, "redacting", False):  # set up already (the app run again in one process)
        return

    def record(*args, **kwargs) -> logging.LogRecord:
        made = make_record(*args, **kwargs)
        try:
            message = made.getMessage()
        except Exception:  # a malformed call: logging reports it when the record is emitted
            return made
        if (cleaned := redact(message)) != message:
            made.msg, made.args = cleaned, ()
        if made.exc_info:  # formatted now, redacted, and kept where the formatter looks for it first
            made.exc_text = redact(logging.Formatter().formatException(made.exc_info))
        return made

    record.redacting = True
    logging.setLogRecordFactory(record)
    sys.excepthook = lambda kind, value, tb: sys.stderr.write(redact("".join(
        traceback.format_exception(kind, value, tb))))


def quiet_libraries() -> None:
    """Libraries' log lines only with --verbose: their INFO lines drown the command's own output, and their ERROR
    lines repeat, chunk and raw answer included, what datagen reports itself (a failed item, counted by kind).
    Some write through handlers of their own (litellm's, DSPy's stream), past the filter on datagen's handler:
    those are silenced at the source. Called again once DSPy is imported, since importing it sets its loggers
    to INFO, and by the commands whose work imports more libraries that log."""
    import dspy

    verbose = logging.getLogger().level <= logging.DEBUG
    # pypdf: its warnings do not name the file
    # huggingface_hub: its own handler (datagen push says what it did; its retries and skips show with -v)
    for noisy in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "httpx", "httpx2", "dspy", "pypdf", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.CRITICAL + 1)
    (dspy.enable_logging if verbose else dspy.disable_logging)()
    # Never quieter than WARNING: its warning is DSPy's only sign of an answer cut off at max_tokens (see calllog);
    # the record is counted there, and shown only where a handler lets it through.
    logging.getLogger("dspy.clients.lm").setLevel(logging.DEBUG if verbose else logging.WARNING)
