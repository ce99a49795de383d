"""The location service: where each address of record can be reached now (RFC 3261 §10).

Theory of operation: bindings live in memory, by (domain, extension) and then by binding key,
so the call path never reads the database. The registrar changes them only after the same change
has been committed to storage (write-through), and at start they are loaded back from storage,
so a crash loses nothing that was acknowledged. Expiry uses a heap of (deadline, aor, key) with
lazy deletion: a refresh pushes a new entry and the stale one is skipped when it surfaces.
Strings that repeat across many bindings (domain, transport, listener, source host, user agent)
are interned so that 100,000 bindings stay small.
"""

from __future__ import annotations

import heapq
import sys
from collections.abc import Iterable, Iterator

from sentral.config.store import BindingRow

Aor = tuple[str, str]  # (domain, extension)


def compact(row: BindingRow) -> BindingRow:
    """The same binding with its repeated strings interned."""
    intern = sys.intern
    for name in ("domain", "extension", "transport", "source_host", "local_listen"):
        object.__setattr__(row, name, intern(getattr(row, name)))
    if row.user_agent is not None:
        object.__setattr__(row, "user_agent", intern(row.user_agent))
    if row.key == row.contact and row.key is not row.contact:
        object.__setattr__(row, "key", row.contact)
    return row


class Location:
    """Bindings by address of record, with expiry."""

    def __init__(self) -> None:
        self._aors: dict[Aor, dict[str, BindingRow]] = {}
        self._heap: list[tuple[float, Aor, str]] = []
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def bindings(self, aor: Aor, now: float) -> list[BindingRow]:
        """The unexpired bindings of ``aor``, soonest expiry last."""
        current = self._aors.get(aor)
        if not current:
            return []
        rows = [row for row in current.values() if row.expires_at > now]
        rows.sort(key=lambda r: r.expires_at, reverse=True)
        return rows

    def binding(self, aor: Aor, key: str) -> BindingRow | None:
        """The binding of ``aor`` under ``key``, expired or not."""
        current = self._aors.get(aor)
        return current.get(key) if current else None

    def apply(self, upserts: Iterable[BindingRow], deletes: Iterable[tuple[str, str, str]]) -> None:
        """Apply a change already committed to storage."""
        for domain, extension, key in deletes:
            current = self._aors.get((domain, extension))
            if current is not None and current.pop(key, None) is not None:
                self._count -= 1
                if not current:
                    del self._aors[(domain, extension)]
        heap = self._heap
        for row in upserts:
            row = compact(row)
            aor = (row.domain, row.extension)
            current = self._aors.get(aor)
            if current is None:
                current = self._aors[aor] = {}
            if row.key not in current:
                self._count += 1
            current[row.key] = row
            heapq.heappush(heap, (row.expires_at, aor, row.key))
        if len(heap) > 4 * self._count + 1024:
            self._rebuild_heap()

    def expire(self, now: float) -> list[BindingRow]:
        """Remove and return the bindings whose expiry has passed."""
        heap = self._heap
        gone: list[BindingRow] = []
        while heap and heap[0][0] <= now:
            deadline, aor, key = heapq.heappop(heap)
            current = self._aors.get(aor)
            if current is None:
                continue
            row = current.get(key)
            if row is None or row.expires_at != deadline:
                continue  # refreshed or removed since this entry was pushed
            del current[key]
            self._count -= 1
            if not current:
                del self._aors[aor]
            gone.append(row)
        return gone

    def next_expiry(self) -> float | None:
        """When the next binding may expire (an upper bound on how long to sleep)."""
        return self._heap[0][0] if self._heap else None

    def all(self) -> Iterator[BindingRow]:
        """Every binding held."""
        for current in self._aors.values():
            yield from current.values()

    def _rebuild_heap(self) -> None:
        self._heap = [(row.expires_at, (row.domain, row.extension), row.key) for row in self.all()]
        heapq.heapify(self._heap)
