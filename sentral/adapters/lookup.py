"""The server's caller-ID lookups: one chain per clinic, built from the directory's adapter entries.

Adapters are found through Python entry points in the ``sentral.adapters`` group: each entry point
names a kind (``sql``, ``csv``, ``fhir``, ``contacts`` are Sentral's own) and loads a factory
``(entry: AdapterEntry) -> Adapter``. A clinic platform ships its own kind as a package declaring
such an entry point; Sentral needs no change.

``CallerLookup.update`` is given each new directory. A clinic's chain is rebuilt only when its
adapter entries changed, so the cache survives unrelated edits; an adapter that cannot be built
(an unknown kind, a bad URL) is logged and left out of the chain rather than stopping the others.
Adapters that want Sentral's own directory (the contacts adapter) implement ``DirectoryReader``
and are handed every new directory. Replaced chains are closed by ``close_retired``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache
from importlib.metadata import entry_points
from typing import Protocol, runtime_checkable

import structlog

from sentral.adapters.caller import Adapter, AdapterError
from sentral.adapters.chain import ADAPTER_TIMEOUT, CACHE_TTL, LookupChain
from sentral.config.directory import AdapterEntry, Directory

log = structlog.get_logger("sentral.adapters")

ENTRY_POINT_GROUP = "sentral.adapters"
DEFAULT_BUDGET = 0.150  # seconds

Factory = Callable[[AdapterEntry], Adapter]


@runtime_checkable
class DirectoryReader(Protocol):
    """An adapter that answers from Sentral's own directory, handed each new one."""

    def use_directory(self, directory: Directory) -> None: ...


@cache
def factories() -> Mapping[str, Factory]:
    """Every adapter kind installed, by name: the ``sentral.adapters`` entry points, loaded once."""
    found: dict[str, Factory] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found[point.name] = point.load()
        except Exception as error:  # a broken plug-in package must not stop the server
            log.warning("adapter_kind_unloadable", kind=point.name, error=type(error).__name__)
    return found


def build_adapter(entry: AdapterEntry) -> Adapter:
    """The adapter ``entry`` configures; AdapterError (one sentence) when it cannot be built."""
    factory = factories().get(entry.kind)
    if factory is None:
        known = ", ".join(sorted(factories())) or "none"
        raise AdapterError(f"No adapter kind {entry.kind!r} is installed (installed: {known}).")
    return factory(entry)


class CallerLookup:
    """The lookup chain of every clinic, kept in step with the directory."""

    def __init__(
        self,
        directory: Directory,
        *,
        timeout: float = ADAPTER_TIMEOUT,
        ttl: float = CACHE_TTL,
        build: Callable[[AdapterEntry], Adapter] = build_adapter,
    ) -> None:
        self._timeout = timeout
        self._ttl = ttl
        self._build = build
        self._chains: dict[str, tuple[tuple[AdapterEntry, ...], LookupChain]] = {}
        self._retired: list[LookupChain] = []
        self._directory = directory
        self.update(directory)

    def chain(self, domain: str) -> LookupChain | None:
        """Clinic ``domain``'s chain, or None when it has no adapters."""
        found = self._chains.get(domain.lower())
        return None if found is None else found[1]

    def budget(self, domain: str) -> float:
        """Seconds a lookup may hold ringing back in clinic ``domain``."""
        clinic = self._directory.clinic(domain)
        return DEFAULT_BUDGET if clinic is None else clinic.lookup_budget

    def update(self, directory: Directory) -> None:
        """Follow ``directory``: rebuild the chains whose adapter entries changed."""
        self._directory = directory
        chains: dict[str, tuple[tuple[AdapterEntry, ...], LookupChain]] = {}
        for domain, entries in directory.adapters.items():
            current = self._chains.get(domain)
            if current is not None and current[0] == entries:
                chains[domain] = current
                continue
            chains[domain] = (entries, self._new_chain(entries))
        for domain, (_, old) in self._chains.items():
            if chains.get(domain, (None, None))[1] is not old:
                self._retired.append(old)
        self._chains = chains
        for _, chain in chains.values():
            for adapter in chain.adapters:
                if isinstance(adapter, DirectoryReader):
                    adapter.use_directory(directory)

    def _new_chain(self, entries: tuple[AdapterEntry, ...]) -> LookupChain:
        adapters: list[Adapter] = []
        for entry in entries:
            try:
                adapters.append(self._build(entry))
            except Exception as error:  # one misconfigured adapter leaves the rest of the chain working
                log.warning(
                    "adapter_unusable", clinic=entry.domain, adapter=entry.name, kind=entry.kind, why=str(error)
                )
        return LookupChain(adapters, timeout=self._timeout, ttl=self._ttl)

    async def close_retired(self) -> None:
        """Close the chains replaced by earlier updates."""
        retired, self._retired = self._retired, []
        for chain in retired:
            await chain.close()

    async def close(self) -> None:
        """Close every chain, current and retired."""
        current = [chain for _, chain in self._chains.values()]
        self._chains = {}
        self._retired.extend(current)
        await self.close_retired()


__all__ = [
    "DEFAULT_BUDGET",
    "ENTRY_POINT_GROUP",
    "CallerLookup",
    "DirectoryReader",
    "Factory",
    "build_adapter",
    "factories",
]
