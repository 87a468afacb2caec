"""The names models go by: the model string DSPy is given, and the one the user configured, which datagen reports.

They differ when datagen addresses a model in another dialect than the one its user named (a self-hosted
`openai/NAME` is sent as `hosted_vllm/NAME`, see `datagen.lm.roles.build_role_model`). Usage, run stores, prices
and error messages name the model as configured: this process's table maps each wire name back.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import dspy
from dspy.utils.usage_tracker import UsageTracker

# The model strings DSPy is given for a model configured under another, and back.
_CONFIGURED: dict[str, str] = {}


def configured_name(model: str) -> str:
    """The model string the user configured for the LM DSPy knows as `model` (that same string, most often)."""
    return _CONFIGURED.get(model, model)


def configured_names(text: str) -> str:
    """`text` (e.g. an error message of DSPy's, "[hosted_vllm/NAME] ...") with each model named as configured."""
    for wire, configured in _CONFIGURED.items():
        text = text.replace(wire, configured)
    return text


def remember_configured(role_model) -> None:
    """Name a role model's LM as configured from now on in this process (in usage, messages).

    Called where the model is built, and in a process it was sent to (a Ray actor), which did not build it.

    Args:
        role_model: a `datagen.lm.RoleModel`; one whose `configured` is None (its LM goes by the configured name
            already) changes nothing.
    """
    if role_model.configured:
        _CONFIGURED[role_model.lm.model] = role_model.configured


class _ConfiguredNames(UsageTracker):
    def add_usage(self, lm: str, usage_entry: dict) -> None:
        super().add_usage(configured_name(lm), usage_entry)

    def __deepcopy__(self, memo) -> "_ConfiguredNames":
        # dspy.Parallel deep-copies the usage tracker into each of its worker threads and drops the copies with
        # them: the tokens a program spends in dspy.Parallel would go uncounted (not in the run's usage, its cost,
        # nor its --max-cost). The one tracker is shared instead: adding usage is a list append.
        return self


@contextmanager
def track_usage() -> Iterator[UsageTracker]:
    """`dspy.track_usage()`, with each model's tokens under the name the user configured it by.

    Returns:
        A context manager giving the tracker; on leaving it, what it counted is added to the tracker around it, as
        DSPy's nested trackers do.
    """
    tracker, parent = _ConfiguredNames(), dspy.settings.usage_tracker
    with dspy.settings.context(usage_tracker=tracker):
        try:
            yield tracker
        finally:
            if parent is not None:  # as DSPy's nested trackers do
                for lm, entries in tracker.usage_data.items():
                    parent.usage_data[lm].extend(entries)
