"""The heap a command starts with, kept out of the garbage collector's walks while it runs (datagen/util/heap.py):
frozen and the thresholds raised for the duration, both as they were after (a cycle that died meanwhile is still
freed), nothing changed where the process froze objects itself; a run holds it for its whole length."""

import gc
import weakref

from datagen import Callbacks, Config, RunSettings
from datagen.runs.generate import generate
from datagen.util import frozen_heap
from datagen.util.heap import THRESHOLDS

from .fakes import FakeEngine
from .test_generate import fake_model


class Node:
    def __init__(self):
        self.me = self  # a cycle: only the collector frees it


def test_the_heap_is_frozen_for_the_duration_and_given_back():
    before = gc.get_threshold()
    cycle = Node()
    dead = weakref.ref(cycle)
    with frozen_heap():
        assert gc.get_freeze_count() > 0 and gc.get_threshold() == THRESHOLDS
        del cycle  # frozen: no collection frees it now
        gc.collect()
        assert dead() is not None
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == before
    gc.collect()
    assert dead() is None  # given back to the collector, and freed


def test_a_process_that_froze_objects_itself_keeps_its_own_settings():
    gc.freeze()
    try:
        frozen, thresholds = gc.get_freeze_count(), gc.get_threshold()
        with frozen_heap():
            assert gc.get_freeze_count() == frozen and gc.get_threshold() == thresholds
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


def test_a_run_holds_the_heap_frozen_and_gives_it_back(workspace, tmp_path):
    before, seen = gc.get_threshold(), []
    generate("style_clone", [workspace / "data/samples"], tmp_path / "run", workspace=workspace, config=Config(),
             model=fake_model(FakeEngine()), settings=RunSettings(max_tokens=200),
             callbacks=Callbacks(on_outcome=lambda _: seen.append((gc.get_freeze_count(), gc.get_threshold()))))
    assert seen and all(count > 0 and thresholds == THRESHOLDS for count, thresholds in seen)
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == before
