"""The endpoint's one event-loop timer: set to the end of the timer wheel's tick its earliest
deadline falls in, so that timers due within one tick fire on one wake-up, never early."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import MappingProxyType

import pytest

from sentral.config.directory import ClinicEntry, Directory
from sentral.config.settings import Listen
from sentral.pbx.endpoint import Endpoint
from sentral.pbx.sip.message import Response
from sentral.pbx.sip.timers import TICK
from sentral.pbx.transport import Origin
from tests.protocol.test_presence import FakeTransports, endpoint_for

DOMAIN = "clinic.test"
LISTEN = Listen("udp", "127.0.0.1", 5060)
PHONE = Origin("udp", "192.0.2.10", 4001, LISTEN)


class Handle:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """The monotonic clock, stopped, and the endpoint's timers as the instants they are set for."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.timers: list[tuple[float, Callable[[], None], Handle]] = []

    def monotonic(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], None]) -> Handle:
        handle = Handle()
        self.timers.append((self.now + delay, callback, handle))
        return handle

    def fire(self) -> None:
        """Move the clock to the last timer set and run it."""
        at, callback, handle = self.timers[-1]
        assert not handle.cancelled
        self.now = at
        callback()


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> tuple[Endpoint, FakeTransports, FakeLoop]:
    loop = FakeLoop(1000.0 + 0.3 * TICK)  # the clock a third into a tick
    monkeypatch.setattr(time, "monotonic", loop.monotonic)
    clinics = MappingProxyType({DOMAIN: ClinicEntry(DOMAIN, "Clinic", ("MD5",))})
    people = Directory(1, clinics, MappingProxyType({}))
    endpoint, transports = endpoint_for(lambda: people)
    endpoint.attach(loop)  # type: ignore[arg-type]
    return endpoint, transports, loop


def invite(n: int) -> bytes:
    """An INVITE without credentials: its 407 goes again after T1 (Timer G) until it is ACKed."""
    return (
        f"INVITE sip:1002@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:4001;branch=z9hG4bK-i{n};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:1001@{DOMAIN}>;tag=i{n}\r\nTo: <sip:1002@{DOMAIN}>\r\n"
        f"Call-ID: timer-{n}@phone\r\nCSeq: 1 INVITE\r\nContact: <sip:1001@192.0.2.10:4001>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def statuses(transports: FakeTransports) -> list[int]:
    return [message.status for message in transports.take() if isinstance(message, Response)]


def ends_a_tick(at: float) -> bool:
    return abs(at / TICK - round(at / TICK)) < 1e-6


def wake_ups_until_sent(endpoint: Endpoint, transports: FakeTransports, loop: FakeLoop) -> list[int]:
    """Fire the endpoint's timer until it sends something; each timer is set for the end of the
    tick its deadline falls in."""
    for _ in range(5):
        deadline = endpoint.layer.next_deadline()
        assert deadline is not None
        at = loop.timers[-1][0]
        assert deadline <= at < deadline + TICK * 1.001 and ends_a_tick(at)
        loop.fire()
        sent = statuses(transports)
        if sent:
            return sent
    raise AssertionError("nothing sent in five wake-ups")


def test_the_timer_is_set_for_the_end_of_the_tick_of_the_earliest_deadline(
    world: tuple[Endpoint, FakeTransports, FakeLoop],
) -> None:
    endpoint, transports, loop = world
    endpoint.on_message(invite(1), PHONE)
    assert statuses(transports) == [407]
    # The 407 goes again after T1, from a timer set for the end of its tick, as every one before.
    assert wake_ups_until_sent(endpoint, transports, loop) == [407]
    assert ends_a_tick(loop.timers[-1][0])


def test_timers_due_within_one_tick_fire_on_one_wake_up(world: tuple[Endpoint, FakeTransports, FakeLoop]) -> None:
    endpoint, transports, loop = world
    # Two INVITEs half a tick apart: their timers fall in one tick, and fire together at its end.
    endpoint.on_message(invite(1), PHONE)
    loop.now += TICK / 2
    endpoint.on_message(invite(2), PHONE)
    assert statuses(transports) == [407, 407]
    assert wake_ups_until_sent(endpoint, transports, loop) == [407, 407]
