"""A timer wheel: deadlines kept in slots of a fixed width, for many timers of similar length.

A transaction layer under load holds a timer for every transaction of the last half minute (the
RFC 3261 timers that absorb retransmissions run 64*T1 = 32 s), a hundred thousand and more. A
binary heap pays a logarithmic walk through memory for every timer that comes due; the wheel
appends a timer to the list of the slot its deadline falls in, and fires a slot's timers together.
Firing stays exact: a timer is returned once the clock has reached its deadline, never before, and
timers come out in deadline order. Deadlines further ahead than the wheel reaches wait in a heap
until the wheel comes round to them.

Timers are not removed when their owner no longer needs them: the owner tells, when one comes out,
whether it still matters (the transaction layer compares the deadline with the one it holds).
``compact`` drops those that no longer do when they pile up.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from math import inf
from typing import Generic, TypeVar

T = TypeVar("T")

TICK = 0.01  # seconds a slot spans
SLOTS = 4096  # a power of two: 41 s ahead, past 64*T1 with the default T1


def _deadline(entry: tuple[float, object]) -> float:
    return entry[0]


class TimerWheel(Generic[T]):
    """Timers, each a deadline (seconds on the owner's clock) and an item handed back when due."""

    def __init__(self, tick: float = TICK, slots: int = SLOTS) -> None:
        if slots & (slots - 1) or slots < 2:
            raise ValueError("the number of slots must be a power of two")
        self._per_second = 1.0 / tick
        self._size = slots
        self._mask = slots - 1
        self._slots: list[list[tuple[float, T]]] = [[] for _ in range(slots)]
        self._near = 0  # timers on the wheel
        # Timers outside the wheel's window: too far ahead, or behind it by more than it can move
        # back (see ``push``).
        self._far: list[tuple[float, int, T]] = []
        self._far_seq = 0
        self._cursor = -1  # the slot the window starts at; -1 until the first timer
        self._top = -1  # the latest slot a timer on the wheel was put in (it may have fired since)
        self._next = inf

    def __len__(self) -> int:
        """Timers held, those no longer needed included."""
        return self._near + len(self._far)

    def next_deadline(self) -> float | None:
        """The earliest deadline held, or None; it may belong to a timer no longer needed."""
        return self._next if self._near or self._far else None

    def push(self, at: float, item: T) -> None:
        """Hand ``item`` back from ``pop_due`` once the clock reaches ``at``."""
        index = int(at * self._per_second)
        cursor = self._cursor
        if (index < cursor or cursor < 0) and self._top - index < self._size:
            # The first timer, or one before the window: the window moves back to it, as far as it
            # can without losing the latest slot in use. Set from the first timer alone, the window
            # would start where that one falls, often Timer J's 32 s ahead, and every timer until
            # the clock got there would wait in the heap.
            cursor = self._cursor = index
        if 0 <= index - cursor < self._size:
            self._slots[index & self._mask].append((at, item))
            self._near += 1
            if index > self._top:
                self._top = index
        else:
            self._far_seq += 1
            heapq.heappush(self._far, (at, self._far_seq, item))
        if at < self._next:
            self._next = at

    def pop_due(self, now: float) -> list[tuple[float, T]]:
        """Remove and return every timer whose deadline is at or before ``now``, earliest first."""
        out: list[tuple[float, T]] = []
        end = int(now * self._per_second)
        far = self._far
        early = False
        while far and far[0][0] <= now:
            at, _, item = heapq.heappop(far)
            out.append((at, item))
            early = True
        if self._near:
            self._turn(end, now, out)
        elif end > self._cursor:
            self._cursor = end
        self._bring_near()
        if early and len(out) > 1:
            out.sort(key=_deadline)
        self._find_next()
        return out

    def compact(self, needed: Callable[[float, T], bool]) -> None:
        """Drop every timer for which ``needed(deadline, item)`` is false."""
        near = 0
        slots = self._slots
        for i in range(self._size):
            slot = slots[i]
            if slot:
                kept = [entry for entry in slot if needed(entry[0], entry[1])]
                slots[i] = kept
                near += len(kept)
        self._near = near
        far = [entry for entry in self._far if needed(entry[0], entry[2])]
        heapq.heapify(far)
        self._far = far
        self._find_next()

    def _turn(self, end: int, now: float, out: list[tuple[float, T]]) -> None:
        """Take the due timers off the wheel into ``out`` and move the window up to ``end``."""
        size = self._size
        slots = self._slots
        mask = self._mask
        taken = len(out)
        cursor = self._cursor
        if end - cursor >= size:
            # The clock has passed the whole window: everything on the wheel is due.
            due: list[tuple[float, T]] = []
            for slot in slots:
                if slot:
                    due.extend(slot)
                    slot.clear()
            due.sort(key=_deadline)
            out.extend(due)
            cursor = end
        while cursor < end:
            slot = slots[cursor & mask]
            if slot:
                if len(slot) > 1:
                    slot.sort(key=_deadline)
                out.extend(slot)
                slot.clear()
            cursor += 1
        self._cursor = cursor
        slot = slots[cursor & mask]
        if slot:
            keep: list[tuple[float, T]] = []
            due = []
            for entry in slot:
                if entry[0] <= now:
                    due.append(entry)
                else:
                    keep.append(entry)
            if due:
                due.sort(key=_deadline)
                out.extend(due)
                slots[cursor & mask] = keep
        self._near -= len(out) - taken

    def _bring_near(self) -> None:
        """Move timers from the far heap onto the wheel once its window covers them."""
        far = self._far
        cursor = self._cursor
        limit = cursor + self._size
        per_second = self._per_second
        slots = self._slots
        mask = self._mask
        while far:
            index = int(far[0][0] * per_second)
            if index >= limit:
                return
            if index < cursor:
                # Behind the window (pushed before the clock caught up): it waits in the heap,
                # as do all after it, until it is due.
                return
            at, _, item = heapq.heappop(far)
            slots[index & mask].append((at, item))
            self._near += 1
            if index > self._top:
                self._top = index

    def _find_next(self) -> None:
        nearest = self._far[0][0] if self._far else inf
        if self._near:
            slots = self._slots
            mask = self._mask
            cursor = self._cursor
            for offset in range(self._size):
                slot = slots[(cursor + offset) & mask]
                if slot:
                    first = min(entry[0] for entry in slot)
                    if first < nearest:
                        nearest = first
                    break
        self._next = nearest


__all__ = ["SLOTS", "TICK", "TimerWheel"]
