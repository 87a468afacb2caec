"""DSPy's model-metadata lookup, answered once per model instead of once per call.

DSPy 3.4 prices every completed call (`dspy.clients.costs.estimate_cost`) and checks each request's capabilities
(`dspy.clients.capabilities`) through `dspy.clients.model_metadata.model_info`, which, for a model its bundled
snapshot does not list (any self-hosted model), walks every entry of the snapshot looking for an alias: about
4 ms of CPU a call, measured with cProfile on `style_clone` against the fake server (9.3 ms a chunk in all,
`python /tmp/prof.py`-style: `_run_one` in a loop). The snapshot is read-only, so the answer for a given
(provider, model, namespaces) never changes while the process runs: it is computed once and copied out, as
`model_info` itself copies its result. The memo is installed by `datagen.lm.hooks.install`.
"""

import copy
import functools

MEMO_SIZE = 1024  # models remembered: far more than a run names


def memoise(model_info):
    """`model_info`, memoised: each call gets a fresh copy of the entry for its model (empty if none).

    Args:
        model_info: `dspy.clients.model_metadata.model_info(provider, model, *, namespaces=None) -> dict`.

    Returns:
        A function with `model_info`'s signature.
    """
    @functools.lru_cache(maxsize=MEMO_SIZE)
    def entry(provider, model, namespaces) -> dict:
        return model_info(provider, model, namespaces=namespaces)

    def model_info_memoised(provider, model, *, namespaces=None) -> dict:
        key = tuple(namespaces) if namespaces is not None else None  # hashable, for the memo
        return copy.deepcopy(entry(provider, model, key))
    return model_info_memoised
