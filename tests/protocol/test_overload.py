"""Overload: the transports find a UDP socket's queue too deep, and the endpoint refuses new calls.

The first tests run the endpoint on fake transports with ``shedding`` set as the transports would
set it; the last ones fill a real UDP socket on loopback and read what the transports report.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

import pytest

from sentral.config.settings import Listen
from sentral.pbx.endpoint import OVERLOAD_RETRY_AFTER, Endpoint
from sentral.pbx.sip.message import Response
from sentral.pbx.transport import BACKLOG_CHECK, Origin, Transports
from tests.protocol.test_presence import DOMAIN, LISTEN, FakeTransports, endpoint

__all__ = ["endpoint"]  # the fixture, used here by name

PHONE = Origin("udp", "192.0.2.10", 4001, LISTEN)


def invite(call_id: str, branch: str, *, to_tag: str = "", cseq: int = 1) -> bytes:
    to = f"<sip:1002@{DOMAIN}>" + (f";tag={to_tag}" if to_tag else "")
    return (
        f"INVITE sip:1002@{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.10:4001;branch=z9hG4bK-{branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:1001@{DOMAIN}>;tag=caller\r\nTo: {to}\r\n"
        f"Call-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\n"
        "Contact: <sip:1001@192.0.2.10:4001>\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def ack(call_id: str, branch: str, to_tag: str) -> bytes:
    return (
        f"ACK sip:1002@{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.10:4001;branch=z9hG4bK-{branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:1001@{DOMAIN}>;tag=caller\r\nTo: <sip:1002@{DOMAIN}>;tag={to_tag}\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def only_response(transports: FakeTransports) -> Response:
    [answer] = transports.take()
    assert isinstance(answer, Response)
    return answer


def test_a_new_call_is_refused_statelessly_with_503_while_overloaded(
    endpoint: tuple[Endpoint, FakeTransports],
) -> None:
    ep, transports = endpoint
    ep.shedding = True
    servers = ep.layer.server_count
    ep.on_message(invite("new@phone", "n1"), PHONE)
    refused = only_response(transports)
    assert (refused.status, refused.header("retry-after")) == (503, OVERLOAD_RETRY_AFTER)
    assert refused.to.tag  # a final response from a UAS tags the To (RFC 3261 §8.2.6.2)
    assert refused.header("call-id") == "new@phone"
    assert ep.layer.server_count == servers  # no transaction, no challenge: nothing spent on it
    # Its retransmission is refused the same way, with the same tag; its ACK meets nothing.
    ep.on_message(invite("new@phone", "n1"), PHONE)
    again = only_response(transports)
    assert (again.status, again.to.tag) == (503, refused.to.tag)
    ep.on_message(ack("new@phone", "n1", refused.to.tag or ""), PHONE)
    assert transports.take() == []
    assert ep.shed == 2


def test_what_is_already_under_way_is_served_while_overloaded(
    endpoint: tuple[Endpoint, FakeTransports],
) -> None:
    ep, transports = endpoint
    ep.on_message(invite("early@phone", "e1"), PHONE)
    challenge = only_response(transports)
    assert challenge.status == 407
    ep.shedding = True
    # A retransmission of an INVITE the server is already serving: its transaction answers again.
    ep.on_message(invite("early@phone", "e1"), PHONE)
    assert only_response(transports).status == 407
    # A request inside a dialog (a re-INVITE here, of a call this server does not know) is call
    # control's to answer, not the overload's.
    ep.on_message(invite("other@phone", "r1", to_tag="known", cseq=2), PHONE)
    assert only_response(transports).status == 481
    # Other methods are served: a phone can still register.
    register = (
        f"REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:4001;branch=z9hG4bK-g1;rport\r\n"
        f"From: <sip:1001@{DOMAIN}>;tag=r\r\nTo: <sip:1001@{DOMAIN}>\r\nCall-ID: reg@phone\r\n"
        "CSeq: 1 REGISTER\r\nContact: <sip:1001@192.0.2.10:4001>\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    ep.on_message(register, PHONE)
    assert only_response(transports).status == 401
    assert ep.shed == 0
    # Once the queue is short again, new calls are challenged as ever.
    ep.shedding = False
    ep.on_message(invite("later@phone", "l1"), PHONE)
    assert only_response(transports).status == 407


# -- the transports' reading of a real socket ---------------------------------------------------


DATAGRAM = b"OPTIONS sip:x SIP/2.0\r\n" + b"X: y\r\n" * 80  # the size of a SIP request


async def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


def fill(
    count: Callable[[int, int], int], *, then_one_more: bool = False
) -> tuple[list[tuple[bool, int]], int, tuple[int, int]]:
    """Send ``count(high, low)`` datagrams to a UDP listener (its marks, from its receive buffer)
    while its loop is not reading, let it drain them, and (``then_one_more``) send one more a
    little later: what ``on_backlog`` was told, how many datagrams arrived, and the marks."""
    reports: list[tuple[bool, int]] = []
    received: list[bytes] = []
    marks = (0, 0)

    async def scenario() -> None:
        nonlocal marks
        transports = Transports(
            lambda data, origin: received.append(data),
            on_backlog=lambda overloaded, queued: reports.append((overloaded, queued)),
        )
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        listen = Listen("udp", "127.0.0.1", port)
        await transports.start((listen,))
        marks = transports.backlog_marks()[listen]
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sent = count(*marks)
            for _ in range(sent):
                sender.sendto(DATAGRAM, ("127.0.0.1", port))
            await _until(lambda: len(received) >= sent)
            if then_one_more:
                # The queue is read again before a later wake-up drains it.
                await asyncio.sleep(BACKLOG_CHECK * 2)
                sender.sendto(DATAGRAM, ("127.0.0.1", port))
                await _until(lambda: len(received) > sent)
        finally:
            sender.close()
            await transports.close()

    asyncio.run(scenario())
    return reports, len(received), marks


# The kernel counts some 1,280 bytes for each of these datagrams.
def test_a_deep_udp_queue_is_reported_and_so_is_its_end() -> None:
    reports, received, (high, low) = fill(lambda high, low: (high + low) // 1000, then_one_more=True)
    assert received == (high + low) // 1000 + 1
    assert [flag for flag, _ in reports] == [True, False]
    (_, deep), (_, short) = reports
    assert deep >= high
    assert short <= low


@pytest.mark.parametrize("share", [0.05, 0.6])
def test_a_queue_below_the_mark_is_not_overload(share: float) -> None:
    reports, received, (high, _) = fill(lambda high, low: int(high * share) // 1280)
    assert received == int(high * share) // 1280
    assert reports == []


def test_a_pause_in_the_middle_of_a_drain_is_measured_before_the_next_datagram() -> None:
    """A handler that holds the loop (or a process stopped while draining) while the queue fills
    past the mark: the very next datagram is taken with the server already overloaded."""
    seen: list[bool] = []

    async def scenario() -> None:
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

        def handle(data: bytes, origin: Origin) -> None:
            seen.append(transports.overloaded)
            if len(seen) == 1:  # the first datagram: the queue fills while it is handled
                high, low = transports.backlog_marks()[listen]
                for _ in range((high + low) // 1000):
                    sender.sendto(DATAGRAM, ("127.0.0.1", port))
                time.sleep(BACKLOG_CHECK * 2)

        transports = Transports(handle)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        listen = Listen("udp", "127.0.0.1", port)
        await transports.start((listen,))
        try:
            sender.sendto(DATAGRAM, ("127.0.0.1", port))
            await _until(lambda: len(seen) >= 2)
        finally:
            sender.close()
            await transports.close()

    asyncio.run(scenario())
    assert seen[:2] == [False, True]
