"""The collector's pacing: at every tick (once a second in the server) the young and middle
generations are collected while collections find something, and frozen, with one tick in
``sample_every`` still collecting, while they find nothing; the whole heap on a slower clock."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from sentral.app import CollectorPacer


class Collector:
    """The collector's calls the pacer makes, as "collect N", "freeze" and "unfreeze"; each
    collection finds what ``found`` holds next (nothing once it runs out)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.found: list[int] = []

    def collect(self, generation: int = 2) -> int:
        self.calls.append(f"collect {generation}")
        return self.found.pop(0) if self.found else 0


@pytest.fixture
def collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[Collector]:
    fake = Collector()
    monkeypatch.setattr(gc, "collect", fake.collect)
    monkeypatch.setattr(gc, "freeze", lambda: fake.calls.append("freeze"))
    monkeypatch.setattr(gc, "unfreeze", lambda: fake.calls.append("unfreeze"))
    yield fake


def test_ticks_freeze_while_collections_find_nothing_and_collect_while_they_find_garbage(
    collector: Collector,
) -> None:
    pacer = CollectorPacer(0.0, full_every=900.0, sample_every=3)
    collector.found += [5, 0, 2, 0]  # what the young collections find, in turn
    ticks = [pacer.tick(float(now)) for now in range(1, 10)]
    # Garbage found: the next tick collects; nothing found: two ticks freeze, the third looks.
    assert ticks == [1, 1, -1, -1, 1, 1, -1, -1, 1]
    assert collector.calls == [
        "collect 1", "collect 1", "freeze", "freeze", "collect 1", "collect 1", "freeze", "freeze", "collect 1",
    ]  # fmt: skip


def test_the_whole_heap_is_collected_on_its_clock_frozen_objects_included(collector: Collector) -> None:
    pacer = CollectorPacer(100.0, full_every=900.0, sample_every=10)
    ticks = [pacer.tick(now) for now in (101.0, 102.0, 999.0, 1000.0, 1001.0, 1899.5, 1900.0)]
    assert ticks == [1, -1, -1, 2, -1, -1, 2]
    assert collector.calls == [
        "collect 1", "freeze", "freeze", "unfreeze", "collect 2", "freeze", "freeze", "freeze",
        "unfreeze", "collect 2", "freeze",
    ]  # fmt: skip


class _Node:
    def __init__(self) -> None:
        self.me: _Node | None = self


def test_a_collecting_tick_frees_a_reference_cycle_made_since_the_last() -> None:
    node = _Node()
    gone = weakref.ref(node)
    del node
    assert gone() is not None  # a cycle: only the collector frees it
    CollectorPacer(0.0).tick(1.0)
    assert gone() is None


def test_a_cycle_frozen_by_a_tick_is_freed_by_the_full_collection() -> None:
    pacer = CollectorPacer(0.0, full_every=900.0, sample_every=10)
    pacer.tick(1.0)  # collects; nothing found (or something: then the next tick collects too)
    while pacer.tick(2.0) != -1:
        pass
    try:
        node = _Node()
        gone = weakref.ref(node)
        del node
        assert pacer.tick(3.0) == -1  # frozen with the rest of the young generation
        gc.collect(1)
        assert gone() is not None  # out of every collection but the full one
        assert pacer.tick(900.0) == 2
        assert gone() is None
    finally:
        gc.unfreeze()
