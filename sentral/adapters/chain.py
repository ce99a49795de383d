"""A clinic's lookup chain: its adapters in order, the first match wins, answers cached briefly.

Theory of operation
-------------------
Every adapter of the chain is asked at once, each within its own ``timeout``; the answers are then
read in chain order, so the first adapter that knows the caller wins as if they had been asked one
after another, but the chain takes as long as its slowest needed adapter rather than the sum.
Once a winner is known the adapters still running are cancelled.

An adapter that raises or overruns its timeout counts as a miss for this lookup and is logged at
WARNING with the adapter's name and the kind of failure only; the number looked up appears at
DEBUG, a national ID never. The chain never raises (cancelling the lookup cancels its adapters).

The whole chain's time budget is the caller's to apply: call control waits as long as the clinic's
``lookup_budget`` and lets a late answer land on the live call.

Hits and misses are cached for ``ttl`` seconds in a small LRU, so a caller who rings back or is
transferred is not looked up again. A miss caused by a failing adapter is not cached, so the next
call tries again. National IDs are cached under a keyed hash, never as the number itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from sentral.adapters.caller import Adapter, Match

log = structlog.get_logger("sentral.adapters")

ADAPTER_TIMEOUT = 2.0  # seconds one adapter may take before it counts as a miss
CACHE_TTL = 60.0  # seconds an answer (or a miss) is reused
CACHE_SIZE = 4096

# Keys the hash of national IDs in the cache; fresh per process, so the cache holds nothing that
# could be turned back into an ID by trying every birth date.
_ID_KEY = os.urandom(16)


@dataclass(slots=True)
class _Cached:
    match: Match | None
    expires: float


class LookupChain:
    """A clinic's adapters in chain order: first match wins, hits and misses cached for ``ttl`` seconds."""

    def __init__(
        self,
        adapters: Sequence[Adapter],
        *,
        timeout: float = ADAPTER_TIMEOUT,
        ttl: float = CACHE_TTL,
        size: int = CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.adapters = tuple(adapters)
        self.timeout = timeout
        self.ttl = ttl
        self._size = size
        self._clock = clock
        self._cache: OrderedDict[tuple[str, str], _Cached] = OrderedDict()

    async def by_number(self, e164: str) -> Match | None:
        """The caller with phone number ``e164``, or None; never raises."""
        return await self._lookup(("number", e164), "number", e164, lambda adapter: adapter.by_number(e164))

    async def by_national_id(self, national_id: str) -> Match | None:
        """The caller with national ID ``national_id``, or None; never raises. The ID is never logged."""
        digest = hashlib.blake2b(national_id.encode(), key=_ID_KEY, digest_size=16).hexdigest()
        return await self._lookup(
            ("id", digest), "national_id", None, lambda adapter: adapter.by_national_id(national_id)
        )

    def forget(self) -> None:
        """Drop every cached answer (the records changed)."""
        self._cache.clear()

    async def close(self) -> None:
        """Close every adapter; a failure to close is logged, not raised."""
        for adapter in self.adapters:
            try:
                await adapter.close()
            except Exception as error:  # one bad adapter must not keep the others open
                log.warning("adapter_close_failed", adapter=adapter.name, error=type(error).__name__)

    def _cached(self, key: tuple[str, str]) -> _Cached | None:
        found = self._cache.get(key)
        if found is None:
            return None
        if found.expires <= self._clock():
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        return found

    def _remember(self, key: tuple[str, str], match: Match | None) -> None:
        if self.ttl <= 0:
            return
        self._cache[key] = _Cached(match, self._clock() + self.ttl)
        self._cache.move_to_end(key)
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)

    async def _lookup(
        self,
        key: tuple[str, str],
        by: str,
        shown: str | None,
        ask: Callable[[Adapter], Awaitable[Match | None]],
    ) -> Match | None:
        cached = self._cached(key)
        if cached is not None:
            return cached.match
        if not self.adapters:
            return None
        tasks = [asyncio.ensure_future(self._ask(adapter, by, shown, ask)) for adapter in self.adapters]
        failed = False
        try:
            for task in tasks:
                match, broke = await task
                failed = failed or broke
                if match is not None:
                    self._remember(key, match)
                    return match
        finally:
            for task in tasks:
                task.cancel()
        if not failed:
            self._remember(key, None)
        return None

    async def _ask(
        self, adapter: Adapter, by: str, shown: str | None, ask: Callable[[Adapter], Awaitable[Match | None]]
    ) -> tuple[Match | None, bool]:
        """The adapter's answer and whether it failed; a failure is logged and is a miss."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                match = await ask(adapter)
        except TimeoutError:
            log.warning("lookup_timed_out", adapter=adapter.name, by=by, timeout=self.timeout)
            return None, True
        except Exception as error:  # an adapter's bug or outage is a miss, never the call's problem
            log.warning("lookup_failed", adapter=adapter.name, by=by, error=type(error).__name__)
            if shown is not None:
                log.debug("lookup_failed_number", adapter=adapter.name, number=shown, detail=str(error))
            return None, True
        if shown is not None:
            log.debug(
                "lookup_answered",
                adapter=adapter.name,
                number=shown,
                found=match is not None,
                ms=round((time.perf_counter() - started) * 1000, 2),
            )
        return match, False


__all__ = ["ADAPTER_TIMEOUT", "CACHE_TTL", "LookupChain"]
