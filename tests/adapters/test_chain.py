"""The lookup chain: order, failures and hangs skipped, the cache, and what reaches the logs."""

from __future__ import annotations

import asyncio
import time
from types import MappingProxyType

import pytest
from structlog.testing import capture_logs

from sentral.adapters import CallerKind, CallerLookup, LookupChain, Match, build_adapter
from sentral.config.directory import AdapterEntry, ClinicEntry, ContactEntry, Directory

NUMBER = "+4791234567"
NATIONAL_ID = "15076500565"


class Fixed:
    """An adapter that knows one number and one national ID, and counts how often it is asked."""

    def __init__(self, name: str, number: str | None = None, national_id: str | None = None) -> None:
        self.name = name
        self.number = number
        self.national_id = national_id
        self.asked = 0
        self.closed = False

    async def by_number(self, e164: str) -> Match | None:
        self.asked += 1
        return Match(self.name.title(), CallerKind.PATIENT, "p-1", self.name) if e164 == self.number else None

    async def by_national_id(self, national_id: str) -> Match | None:
        self.asked += 1
        if national_id == self.national_id:
            return Match(self.name.title(), CallerKind.PATIENT, "p-2", self.name)
        return None

    async def close(self) -> None:
        self.closed = True


class Broken(Fixed):
    """An adapter whose backend is down: it raises with the number in its message."""

    async def by_number(self, e164: str) -> Match | None:
        self.asked += 1
        raise ConnectionError(f"could not look up {e164}")

    async def by_national_id(self, national_id: str) -> Match | None:
        self.asked += 1
        raise ConnectionError(f"could not look up {national_id}")


class Hanging(Fixed):
    """An adapter whose backend never answers."""

    async def by_number(self, e164: str) -> Match | None:
        self.asked += 1
        await asyncio.sleep(3600)
        return None

    async def by_national_id(self, national_id: str) -> Match | None:
        return await self.by_number(national_id)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_first_adapter_in_order_that_knows_the_caller_wins() -> None:
    first, second, third = Fixed("first"), Fixed("second", NUMBER), Fixed("third", NUMBER)
    chain = LookupChain([first, second, third])
    match = asyncio.run(chain.by_number(NUMBER))
    assert match == Match("Second", CallerKind.PATIENT, "p-1", "second")
    assert asyncio.run(chain.by_number("+4799999999")) is None


def test_a_failing_adapter_is_skipped_and_logged_without_the_number_above_debug() -> None:
    broken, good = Broken("broken"), Fixed("good", NUMBER, NATIONAL_ID)
    chain = LookupChain([broken, good])
    with capture_logs() as logs:
        assert asyncio.run(chain.by_number(NUMBER)) is not None
        assert asyncio.run(chain.by_national_id(NATIONAL_ID)) is not None
    warnings = [entry for entry in logs if entry["log_level"] != "debug"]
    assert [entry["event"] for entry in warnings] == ["lookup_failed", "lookup_failed"]
    assert all(entry["adapter"] == "broken" for entry in warnings)
    assert NUMBER not in repr(warnings)
    assert NATIONAL_ID not in repr(logs)


def test_a_hanging_adapter_is_given_up_after_its_timeout() -> None:
    hanging, good = Hanging("hanging"), Fixed("good", NUMBER)
    chain = LookupChain([hanging, good], timeout=0.05)
    started = time.monotonic()
    with capture_logs() as logs:
        match = asyncio.run(chain.by_number(NUMBER))
    assert match is not None and match.source == "good"
    assert time.monotonic() - started < 1.0
    assert [entry["event"] for entry in logs if entry["log_level"] == "warning"] == ["lookup_timed_out"]


def test_a_later_adapter_answers_without_waiting_for_an_earlier_miss_to_time_out() -> None:
    # A match behind a hanging adapter still waits for it (order decides), but a match *ahead* of
    # one does not: the hanging adapter is cancelled.
    good, hanging = Fixed("good", NUMBER), Hanging("hanging")
    chain = LookupChain([good, hanging], timeout=30)
    started = time.monotonic()
    assert asyncio.run(chain.by_number(NUMBER)) is not None
    assert time.monotonic() - started < 1.0


def test_hits_and_misses_are_cached_for_the_ttl() -> None:
    clock = Clock()
    adapter = Fixed("records", NUMBER)
    chain = LookupChain([adapter], ttl=30, clock=clock)

    async def twice(number: str) -> None:
        await chain.by_number(number)
        await chain.by_number(number)

    asyncio.run(twice(NUMBER))
    asyncio.run(twice("+4799999999"))
    assert adapter.asked == 2
    clock.now += 31
    asyncio.run(twice(NUMBER))
    assert adapter.asked == 3


def test_a_miss_caused_by_a_failure_is_not_cached() -> None:
    broken = Broken("broken")
    chain = LookupChain([broken])
    assert asyncio.run(chain.by_number(NUMBER)) is None
    assert asyncio.run(chain.by_number(NUMBER)) is None
    assert broken.asked == 2


def directory(adapters: tuple[AdapterEntry, ...], contacts: tuple[ContactEntry, ...] = ()) -> Directory:
    clinic = ClinicEntry("clinic.test", "Clinic", ("SHA-256",), lookup_budget=0.2)
    return Directory(
        1,
        MappingProxyType({clinic.domain: clinic}),
        MappingProxyType({}),
        adapters=MappingProxyType({clinic.domain: adapters}),
        contacts=MappingProxyType({clinic.domain: contacts}),
    )


def test_caller_lookup_builds_chains_from_entry_points_and_follows_the_directory() -> None:
    entry = AdapterEntry("clinic.test", "own", "contacts", 1)
    pharmacy = ContactEntry("clinic.test", "Apotek 1", NUMBER, "contact")
    lookup = CallerLookup(directory((entry,), (pharmacy,)))
    chain = lookup.chain("Clinic.Test")
    assert chain is not None
    assert asyncio.run(chain.by_number(NUMBER)) == Match("Apotek 1", CallerKind.CONTACT, "", "own")
    assert lookup.budget("clinic.test") == pytest.approx(0.2)
    assert lookup.chain("other.test") is None

    # New contacts reach the same chain (its adapters did not change); new adapters make a new one.
    nurse = ContactEntry("clinic.test", "Kari", "+4722334455", "staff")
    lookup.update(directory((entry,), (pharmacy, nurse)))
    assert lookup.chain("clinic.test") is chain
    chain.forget()
    assert asyncio.run(chain.by_number("+4722334455")) == Match("Kari", CallerKind.STAFF, "", "own")
    lookup.update(directory((entry, AdapterEntry("clinic.test", "more", "contacts", 2))))
    assert lookup.chain("clinic.test") is not chain
    asyncio.run(lookup.close())


def test_an_unknown_kind_leaves_the_rest_of_the_chain_working() -> None:
    entries = (AdapterEntry("clinic.test", "x", "nosuchkind", 1), AdapterEntry("clinic.test", "own", "contacts", 2))
    with capture_logs() as logs:
        lookup = CallerLookup(directory(entries, (ContactEntry("clinic.test", "Apotek 1", NUMBER),)))
    chain = lookup.chain("clinic.test")
    assert chain is not None and [adapter.name for adapter in chain.adapters] == ["own"]
    assert [entry["event"] for entry in logs] == ["adapter_unusable"]
    with pytest.raises(Exception, match="No adapter kind 'nosuchkind'"):
        build_adapter(entries[0])
