"""Python's cyclic garbage collector kept off the heap a command starts with, and run less often (`frozen_heap`).

A process that imports DSPy, litellm and pydantic starts with millions of objects, and each collection of the
collector's oldest generation walks them all: about a quarter of a second each, 18 times in a 5,120-chunk run, 4.3
of its 20 CPU seconds, and 5.8 s with the younger generations' (`python -m bench.phase_cpu 256 20`, gc.callbacks
timing each collection). Frozen (`gc.freeze`, CPython 3.7+), the objects there when the command starts are never
walked; with the thresholds raised (THRESHOLDS), what the command makes is collected in fewer, larger passes:
1.2 s of collection in all, and the run 16.7 s instead of 21.5 s.
"""

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# gc.set_threshold's (young, middle, old) while frozen, against CPython's (700, 10, 10): a young collection after
# 50,000 more allocations than frees (a few MB of garbage cycles at most, waiting), the older ones each after 20 of
# the one below.
THRESHOLDS = (50_000, 20, 20)


@contextmanager
def frozen_heap() -> Iterator[None]:
    """For the duration: the objects alive now kept out of the collector's walks (`gc.freeze`) and the collector's
    THRESHOLDS raised; after, both as they were (`gc.unfreeze`: the objects that died meanwhile are freed by a later
    collection). The thresholds are the process's: its other threads' garbage is collected by them too. Nothing is
    done when some objects are frozen already: the process (a caller's own `gc.freeze`, an enclosing
    `frozen_heap`) decides."""
    if gc.get_freeze_count():
        yield
        return
    thresholds = gc.get_threshold()
    gc.set_threshold(*THRESHOLDS)
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
