"""The collector's pacing: the young and middle generations at every tick (once a second in the
server), the whole heap on a slower clock."""

from __future__ import annotations

import gc
import weakref

import pytest

from sentral.app import CollectorPacer


def test_each_tick_collects_the_young_generations_and_the_whole_heap_on_its_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    collected: list[int] = []

    def collect(generation: int = 2) -> int:
        collected.append(generation)
        return 0

    monkeypatch.setattr(gc, "collect", collect)
    pacer = CollectorPacer(100.0, full_every=900.0)
    ticks = [pacer.tick(now) for now in (101.0, 102.0, 999.0, 1000.0, 1001.0, 1899.5, 1900.0)]
    assert collected == ticks == [1, 1, 1, 2, 1, 1, 2]


class _Node:
    def __init__(self) -> None:
        self.me: _Node | None = self


def test_a_tick_frees_a_reference_cycle_made_since_the_last() -> None:
    node = _Node()
    gone = weakref.ref(node)
    del node
    assert gone() is not None  # a cycle: only the collector frees it
    CollectorPacer(0.0).tick(1.0)
    assert gone() is None
