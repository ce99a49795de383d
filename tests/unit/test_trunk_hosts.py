"""Trunk host names are looked up off the event loop and within a time limit."""

from __future__ import annotations

import asyncio
import time

from sentral.app import resolve_host


def test_an_address_resolves_to_itself() -> None:
    assert asyncio.run(resolve_host("127.0.0.1", 2.0)) == ["127.0.0.1"]


def test_a_name_resolves_to_its_addresses() -> None:
    found = asyncio.run(resolve_host("localhost", 2.0))
    assert found is not None
    assert set(found) & {"127.0.0.1", "::1"}


def test_a_name_that_does_not_resolve_is_none_and_does_not_raise() -> None:
    assert asyncio.run(resolve_host("no-such-carrier.invalid", 2.0)) is None


def test_a_lookup_past_its_time_counts_as_unresolved_and_the_loop_goes_on() -> None:
    async def scenario() -> tuple[list[str] | None, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        started = time.monotonic()
        found = await resolve_host("localhost", 0.0)
        await asyncio.sleep(0.05)
        task.cancel()
        assert time.monotonic() - started < 1.0
        return found, ticks

    found, ticks = asyncio.run(scenario())
    assert found is None
    assert ticks >= 2
