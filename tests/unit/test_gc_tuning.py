"""The server's garbage-collector tuning (process-wide, so each test restores it)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from agent_server.gc_tuning import OLDER_THRESHOLDS, tune_gc


@pytest.fixture
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restore_gc")
def test_freezes_start_up_objects_and_raises_the_young_threshold() -> None:
    gc.unfreeze()
    assert tune_gc(50_000) == (50_000, *OLDER_THRESHOLDS)
    assert gc.get_threshold() == (50_000, *OLDER_THRESHOLDS)
    assert gc.get_freeze_count() > 0


@pytest.mark.usefixtures("restore_gc")
def test_zero_keeps_pythons_settings() -> None:
    gc.unfreeze()
    before = gc.get_threshold()
    assert tune_gc(0) == before
    assert gc.get_freeze_count() == 0
