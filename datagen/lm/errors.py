"""What an LM call can raise besides DSPy's own errors, and the walk down an error's causes."""

from collections.abc import Iterator


class Deferred(Exception):
    """Raised by the batch engine for a request whose answer is not in yet: it is recorded (`key`, the request's
    custom_id) and a batch job will bring its answer. Not a failure: the chunk is run again in the next round.

    Args:
        key: the request's custom_id in the run store's batch_requests table.
    """

    def __init__(self, key: str):
        self.key = key
        super().__init__(f"the answer to batch request {key[:12]} is not in yet")


class BatchRequestError(Exception):
    """Raised by the batch engine for a request its batch job answered with an error, or ended without answering.

    Args:
        kind: "batch_failed" (the provider answered the line with an error or a non-200 status, or the job
            failed), "batch_expired" (the job's 24 h window ended first) or "batch_cancelled".
        message: the provider's message (default: `kind`).
        key: the request's custom_id, if known.
    """

    def __init__(self, kind: str, message: str | None = None, key: str | None = None):
        self.kind = kind
        self.message = message or kind
        self.key = key
        super().__init__(f"{kind}: {self.message}")


def causes(exc: BaseException | None) -> Iterator[BaseException]:
    """`exc`, then what it was raised from (or while handling), down to the first cause; each error once.

    Engines wrap what they catch (DSPy's LMError around litellm's around httpx's around an OSError), so every
    question about an LM failure (a 429? a server's fault? a batch request?) is asked of the whole chain.

    Args:
        exc: the error raised (None yields nothing).

    Returns:
        An iterator over the chain, outermost first.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def root_cause(exc: BaseException) -> BaseException:
    """The first error of `exc`'s chain (`exc` itself when it has no cause)."""
    *_, root = causes(exc)
    return root
