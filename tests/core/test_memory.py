"""Resident-memory measurement: the high-water mark the tiler's budget and the bench read."""

from __future__ import annotations

import pytest


def test_peak_rise_sees_memory_that_was_freed_again():
    from f2i_mobile.core.memory import peak_rise, touch_fresh_pages

    rise = peak_rise(lambda: touch_fresh_pages(64 << 20))
    if rise is None:
        pytest.skip("no resettable high-water mark on this system")
    assert 60 << 20 <= rise < 200 << 20
    assert peak_rise(lambda: None) < 16 << 20


def test_peak_rise_is_unknown_where_the_mark_misses_freed_memory(monkeypatch):
    # A kernel that accepts the reset but does not raise the mark for freed memory must give
    # "unknown" (the tiler then counts tensors), not a rise of 0 that would size the budget.
    from f2i_mobile.core import memory

    memory._peak_tracks_freed_memory.cache_clear()
    monkeypatch.setattr(memory, "_status", lambda key: 300 << 20)
    try:
        assert memory.reset_peak() is False
        assert memory.peak_rise(lambda: memory.touch_fresh_pages(64 << 20)) is None
    finally:
        memory._peak_tracks_freed_memory.cache_clear()
