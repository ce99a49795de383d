"""The relay on loopback with real UDP sockets: audio and RTCP both ways, latching, bleed
protection, NAT rebinding, re-learning, music on one direction, DTMF, and the port pool."""

from __future__ import annotations

import asyncio
import gc
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest

from sentral.media import g711
from sentral.media.dtmf import Digit, TelephoneEvent, build_event
from sentral.media.latch import PortPool, PortsExhausted
from sentral.media.player import Player
from sentral.media.relay import Endpoint, EndpointStats, Relay, RelaySession, _Bound
from sentral.media.rtp import parse_rtp
from tests.media.conftest import Runner
from tests.media.phones import Phone

HOST = "127.0.0.1"
# A small range high enough to stay clear of the SIP tests; each relay test runs on its own.
POOL_RANGE = (41000, 41100)


def ports_of(session: RelaySession) -> tuple[tuple[str, int], tuple[str, int]]:
    return (HOST, session.a.port), (HOST, session.b.port)


@asynccontextmanager
async def call(*, nat: bool = False) -> AsyncIterator[tuple[Relay, RelaySession, Phone, Phone]]:
    """A relay with one session between two phones whose SDP addresses are set.

    With ``nat`` the SDPs name addresses the phones do not send from (127.0.0.x, port 9), as a
    phone behind NAT writes its private address; latching has to find the real ones.
    """
    relay = Relay(HOST, PortPool(*POOL_RANGE))
    session = relay.session()
    alice, bob = Phone(), Phone()
    # Their RTCP sockets, named in the SDP with a=rtcp (RFC 3605).
    alice.rtcp_phone, bob.rtcp_phone = Phone(ssrc=alice.ssrc), Phone(ssrc=bob.ssrc)
    if nat:
        session.a.set_remote(("127.0.0.5", 9))
        session.b.set_remote(("127.0.0.6", 9))
    else:
        session.a.set_remote(alice.address, alice.rtcp_phone.address)
        session.b.set_remote(bob.address, bob.rtcp_phone.address)
    try:
        yield relay, session, alice, bob
    finally:
        for phone in (alice, bob, alice.rtcp_phone, bob.rtcp_phone):
            phone.close()
        relay.close()


def payloads(packets: list[tuple[bytes, tuple[str, int]]]) -> list[bytes]:
    return [data for data, _ in packets]


def both_loops(body: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[Runner[None]], None]:
    def test(run: Runner[None]) -> None:
        run(body())

    test.__name__ = body.__name__
    test.__doc__ = body.__doc__
    return test


@both_loops
async def test_audio_and_rtcp_cross_both_ways() -> None:
    async with call() as (_, session, alice, bob):
        a_port, b_port = ports_of(session)
        sent_by_alice = alice.send_audio(a_port, 10)
        sent_by_bob = bob.send_audio(b_port, 10)
        at_bob = await bob.expect(10)
        at_alice = await alice.expect(10)
        assert payloads(at_bob) == sent_by_alice  # byte for byte, in order
        assert payloads(at_alice) == sent_by_bob
        # Symmetric: each phone hears from the very port it sends to.
        assert {addr for _, addr in at_bob} == {b_port}
        assert {addr for _, addr in at_alice} == {a_port}

        alice.rtcp_phone.send((HOST, session.a.rtcp_port), alice.rtcp())
        bob.rtcp_phone.send((HOST, session.b.rtcp_port), bob.rtcp())
        (rtcp_at_bob,) = await bob.rtcp_phone.expect(1)
        (rtcp_at_alice,) = await alice.rtcp_phone.expect(1)
        assert rtcp_at_bob == (alice.rtcp(), (HOST, session.b.rtcp_port))
        assert rtcp_at_alice == (bob.rtcp(), (HOST, session.a.rtcp_port))

        a_stats = session.a.stats()
        assert (a_stats.rtp.packets_in, a_stats.rtp.bytes_in) == (10, 10 * 172)
        assert (a_stats.rtp.packets_out, a_stats.rtp.bytes_out) == (10, 10 * 172)
        assert a_stats.rtcp.packets_in == a_stats.rtcp.packets_out == 1
        assert a_stats.rtp_address == alice.address
        assert a_stats.latched
        assert a_stats.last_received is not None


@both_loops
async def test_latching_finds_the_phone_behind_nat() -> None:
    async with call(nat=True) as (_, session, alice, bob):
        a_port, b_port = ports_of(session)
        # Nothing can reach the phones yet: their SDP addresses are not where they are.
        alice.send_audio(a_port, 3)
        assert await bob.quiet() == []
        # Bob's first packets latch his real address, and Alice's audio now reaches him.
        bob.send_audio(b_port, 1)
        assert len(await alice.expect(1)) == 1
        sent = alice.send_audio(a_port, 3)
        assert payloads(await bob.expect(3)) == sent
        assert session.b.stats().rtp_address == bob.address
        assert not session.b.stats().latched  # one packet so far: still learning


@both_loops
async def test_a_stranger_is_dropped_after_latching() -> None:
    async with call() as (_, session, alice, bob):
        a_port, b_port = ports_of(session)
        alice.send_audio(a_port, 5)
        await bob.expect(5)
        stranger = Phone("127.0.0.9")
        try:
            stranger.send_audio(a_port, 20, payload=b"\x00" * 160)
            assert await bob.quiet() == []
            assert session.a.stats().rtp.dropped == 20
            # The stranger did not hijack Alice's return path either.
            bob.send_audio(b_port, 2)
            assert len(await alice.expect(2)) == 2
            assert stranger.collect() == []
        finally:
            stranger.close()


@both_loops
async def test_nat_rebinding_that_continues_the_sequence_is_followed() -> None:
    async with call() as (_, session, alice, bob):
        a_port, b_port = ports_of(session)
        alice.send_audio(a_port, 5)
        await bob.expect(5)
        # Alice's NAT gives her a new public port: same stream (SSRC, next sequence numbers).
        moved = Phone(ssrc=alice.ssrc)
        try:
            moved.seq, moved.timestamp = alice.seq, alice.timestamp
            sent = moved.send_audio(a_port, 3)
            assert payloads(await bob.expect(3)) == sent
            bob.send_audio(b_port, 2)
            assert len(await moved.expect(2)) == 2  # Bob's audio follows her to the new address
            assert alice.collect() == []
            assert session.a.stats().rtp_address == moved.address
            # Her old binding is now the stranger.
            alice.send_audio(a_port, 2)
            assert await bob.quiet() == []
        finally:
            moved.close()


@both_loops
async def test_a_new_sdp_opens_learning_again() -> None:
    async with call() as (_, session, alice, bob):
        a_port, _ = ports_of(session)
        alice.send_audio(a_port, 5)
        await bob.expect(5)
        other = Phone()  # Alice's phone moved to another address and sent a re-INVITE
        try:
            other.send_audio(a_port, 2)
            assert await bob.quiet() == []  # before the new SDP it is a stranger
            session.a.set_remote(other.address)
            sent = other.send_audio(a_port, 2)
            assert payloads(await bob.expect(2)) == sent
        finally:
            other.close()


@both_loops
async def test_music_replaces_one_direction_and_stops() -> None:
    async with call() as (_, session, alice, bob):
        a_port, b_port = ports_of(session)
        # Alice puts Bob on hold: Bob hears music; Alice still hears Bob without a gap.
        music = g711.ulaw_encode(b"\x10\x00" * 8000)
        session.b.play(Player(music, 0, loop=True))
        assert session.b.playing
        alice.send_audio(a_port, 5, payload=b"\x7f" * 160)
        bob_sent = []
        for _ in range(10):
            bob_sent += bob.send_audio(b_port, 1)
            await asyncio.sleep(0.02)
        heard_by_bob = bob.collect()
        assert len(heard_by_bob) >= 5  # 200 ms of music at 50 packets/s, give or take a tick
        assert all(parse_rtp(data).payload == music[:160] for data, _ in heard_by_bob)
        assert {addr for _, addr in heard_by_bob} == {b_port}
        assert payloads(await alice.expect(10)) == bob_sent
        assert session.a.stats().rtp.packets_in == 5  # Alice's audio arrived and was not relayed

        session.b.stop_playing()
        await asyncio.sleep(0.03)
        bob.collect()
        sent = alice.send_audio(a_port, 3)
        assert payloads(await bob.expect(3)) == sent
        assert await bob.quiet(0.05) == []  # the music has stopped


@both_loops
async def test_a_prompt_ends_and_relaying_resumes() -> None:
    async with call() as (_, session, alice, bob):
        a_port, _ = ports_of(session)
        ended: list[bool] = []
        session.b.play(Player(b"\xff" * 480, 0), on_done=lambda: ended.append(True))
        assert len(await bob.expect(3)) == 3
        assert ended == [True]
        assert not session.b.playing
        sent = alice.send_audio(a_port, 2)
        assert payloads(await bob.expect(2)) == sent


@both_loops
async def test_dtmf_is_detected_and_still_relayed() -> None:
    async with call() as (_, session, alice, bob):
        a_port, _ = ports_of(session)
        session.a.set_remote(alice.address, dtmf_payload_types=[101])
        digits: list[tuple[int, Digit]] = []

        def on_dtmf(endpoint: Endpoint, digit: Digit) -> None:
            digits.append((endpoint.port, digit))

        session.a.on_dtmf = on_dtmf
        events = [TelephoneEvent(5, False, 10, 0), TelephoneEvent(5, False, 10, 400)] + [
            TelephoneEvent(5, True, 10, 800)
        ] * 3
        for event in events:
            alice.send(a_port, alice.rtp(build_event(event), payload_type=101, timestamp=8000))
        assert len(await bob.expect(5)) == 5
        assert [(port, d.key) for port, d in digits] == [(session.a.port, "5")]


@both_loops
async def test_a_digit_reaches_the_other_phone_before_what_it_sets_off() -> None:
    async with call() as (_, session, alice, bob):
        a_port, _ = ports_of(session)
        session.a.dtmf_payload_types = [101]
        music = Player(g711.ulaw_encode(b"\x10\x00" * 800), 0, loop=True)
        # The key parks the call, say: Bob hears music from then on.
        session.a.on_dtmf = lambda endpoint, digit: session.b.play(music)
        key = alice.rtp(build_event(TelephoneEvent(2, False, 10, 0)), payload_type=101, timestamp=8000)
        alice.send(a_port, key)
        after = alice.send_audio(a_port, 3)  # read in the same wake-up as the key, most likely
        heard = payloads(await bob.expect(4))
        assert heard[0] == key  # before the first packet of music, which has Bob's phone resync
        assert all(parse_rtp(data).header.ssrc != alice.ssrc for data in heard[1:])
        assert not set(after) & set(heard)  # Alice's audio after the key was not relayed over the music
        assert session.a.stats().rtp.packets_in == 4


@both_loops
async def test_ports_return_to_the_pool_and_the_pool_runs_out() -> None:
    pool = PortPool(41200, 41207)  # four pairs: two calls
    relay = Relay(HOST, pool, max_resting=0)
    first = relay.session()
    second = relay.session()
    assert pool.available == 0
    with pytest.raises(PortsExhausted, match="all 4 RTP port pairs in 41200-41207 are in use"):
        relay.session()
    first.close()
    first.close()  # closing twice is harmless
    assert pool.available == 2
    third = relay.session()
    assert {third.a.port, third.b.port} == {first.a.port, first.b.port}
    # A closed endpoint's sockets are really closed: its ports can be bound again.
    third.close()
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind((HOST, third.a.port + 1))
    probe.close()
    relay.close()
    assert pool.available == pool.capacity == 4
    assert not relay.endpoints
    del second


@both_loops
async def test_resting_pairs_never_refuse_a_call() -> None:
    pool = PortPool(41200, 41207)  # four pairs: two calls
    relay = Relay(HOST, pool)
    first = relay.session()
    second = relay.session()
    first.close()
    assert (pool.available, pool.in_use, pool.resting) == (0, 2, 2)  # its pairs rest, still bound
    third = relay.session()  # the resting pairs are closed for real and bound afresh
    assert {third.a.port, third.b.port} == {first.a.port, first.b.port}
    with pytest.raises(PortsExhausted, match="all 4 RTP port pairs"):
        relay.session()
    second.close()
    third.close()
    relay.close()  # resting sockets too are closed: every port can be bound again
    for port in range(41200, 41208):
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind((HOST, port))
        probe.close()
    assert pool.available == pool.capacity == 4 and pool.resting == 0


@both_loops
async def test_a_closed_pair_rests_before_another_endpoint_takes_it() -> None:
    relay = Relay(HOST, PortPool(*POOL_RANGE))
    try:
        first = relay.open()
        first.close()
        second = relay.open()  # within the rest: a fresh pair
        assert second.port != first.port
        relay.reuse_after = 0.0
        second.close()
        third = relay.open()  # the pair that has rested longest
        assert third.port == first.port
    finally:
        relay.close()


def test_a_socket_says_whether_anything_waits_without_reading_it() -> None:
    # What the relay asks of a pair taken from rest: FIONREAD, not a read that fails when empty.
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as phone,
    ):
        sock.bind((HOST, 0))
        sock.setblocking(False)
        bound = _Bound(sock, bytearray(2048))
        assert bound.empty()
        phone.sendto(b"\x80" * 172, sock.getsockname())
        deadline = time.monotonic() + 2
        while bound.empty() and time.monotonic() < deadline:
            time.sleep(0.001)
        assert not bound.empty()
        assert bound.drain() and bound.empty()


async def _reused_hears_only(
    relay: Relay, port: int, new_phone: Phone, other: Phone, settle: float = 0.0
) -> EndpointStats:
    """Take the endpoint on ``port`` back from rest, pair it with one sending to ``other``, and
    check that the first audio it relays is ``new_phone``'s, nothing else follows, and it latched
    onto ``new_phone`` (its SDP names an address behind NAT); its stats. ``settle``: seconds to
    let the loop run between the pairing and ``new_phone``'s packet."""
    reused = relay.open()
    assert reused.port == port
    peer = relay.open()
    relay.pair(reused, peer)
    peer.set_remote(other.address)
    reused.set_remote(("127.0.0.5", 9))  # behind NAT: it learns from the first packet it admits
    if settle:
        await asyncio.sleep(settle)
    sent = new_phone.send_audio((HOST, port), 1)
    assert payloads(await other.expect(1)) == sent
    assert payloads(await other.quiet()) == []
    stats = reused.stats()
    assert stats.rtp_address == new_phone.address
    return stats


@both_loops
async def test_an_empty_datagram_queued_at_reuse_is_not_learned_from() -> None:
    """FIONREAD reads a queued datagram of no bytes as nothing, so a pair taken from rest keeps
    it: the next endpoint reads it first, and must neither latch onto its sender nor relay it."""
    stale, new_phone, other = Phone(), Phone(), Phone()
    relay = Relay(HOST, PortPool(*POOL_RANGE), reuse_after=0.0)
    try:
        endpoint = relay.open()
        port = (HOST, endpoint.port)
        endpoint.close()
        stale.send(port, b"")
        # At once: the empty datagram is still queued. Then a pause, for the loop to read it first.
        stats = await _reused_hears_only(relay, endpoint.port, new_phone, other, settle=0.05)
        assert (stats.rtp.packets_in, stats.rtp.dropped) == (1, 1)
    finally:
        relay.close()
        for phone in (stale, new_phone, other):
            phone.close()


@both_loops
async def test_what_the_old_call_sent_never_reaches_the_next_endpoint() -> None:
    """A phone still sending to a port its call no longer has must not be the first source the
    next endpoint on that port learns: whatever came while the pair rested is dropped."""
    old_phone, new_phone, other = Phone(), Phone(), Phone()
    try:
        for settle in (True, False):  # read by the loop while resting, or still queued at reuse
            relay = Relay(HOST, PortPool(*POOL_RANGE), reuse_after=0.0)
            try:
                endpoint = relay.open()
                port = (HOST, endpoint.port)
                endpoint.close()
                old_phone.send_audio(port, 3)
                old_phone.send((HOST, endpoint.rtcp_port), old_phone.rtcp())
                await asyncio.sleep(0.05 if settle else 0)
                old_phone.send_audio(port, 0 if settle else 2)
                stats = await _reused_hears_only(relay, endpoint.port, new_phone, other)
                assert (stats.rtp.packets_in, stats.rtcp.packets_in) == (1, 0)
            finally:
                relay.close()
    finally:
        for phone in (old_phone, new_phone, other):
            phone.close()


@both_loops
async def test_resting_pairs_are_capped() -> None:
    pool = PortPool(*POOL_RANGE)
    relay = Relay(HOST, pool, max_resting=1)
    try:
        a, b = relay.open(), relay.open()
        a.close()
        b.close()  # one rests, the other is closed for real
        assert (pool.available, pool.in_use, pool.resting) == (pool.capacity - 1, 0, 1)
    finally:
        relay.close()
    assert Relay(HOST, PortPool(41200, 41207)).max_resting == 4  # the whole range at most


RESTING_PAIRS_YIELD_DESCRIPTORS = """
import asyncio, resource, sys
from sentral.media.latch import PortPool
from sentral.media.relay import Relay

async def main() -> None:
    # A process allowed 64 open files, whose resting pairs may take nearly all of them.
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    relay = Relay("127.0.0.1", PortPool(int(sys.argv[1]), int(sys.argv[1]) + 199), max_resting=100)
    try:
        opened = []
        while True:
            try:
                opened.append(relay.open())
            except OSError:
                break  # the descriptors are all taken by endpoints in use
        for endpoint in opened:
            endpoint.close()  # every pair rests, holding its two descriptors
        rested = relay.pool.resting
        again = [relay.open() for _ in range(len(opened))]  # none has rested long enough to be taken
        print(len(opened), rested, len(again), relay.pool.resting)
    finally:
        relay.close()

asyncio.run(main())
"""


def test_resting_pairs_give_way_when_a_new_pair_needs_their_file_descriptors() -> None:
    """A new pair that cannot be bound for want of file descriptors closes a resting pair for real
    and takes its descriptors, as it takes its port when the range is used up."""
    result = subprocess.run(
        [sys.executable, "-c", RESTING_PAIRS_YIELD_DESCRIPTORS, "42400"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    opened, rested, again, resting_after = map(int, result.stdout.split())
    assert opened >= 20 and rested == opened
    assert again == opened and resting_after == 0


def test_pairs_left_over_from_a_burst_of_hang_ups_are_closed(run: Runner[None]) -> None:
    """Each new endpoint takes one resting pair at most, so pairs beyond what the call rate
    needs would rest for ever: once they have rested ``retire_after`` seconds they are closed."""
    clock = [1000.0]

    async def body() -> None:
        pool = PortPool(*POOL_RANGE)
        relay = Relay(HOST, pool, reuse_after=2.0, retire_after=4.0, clock=lambda: clock[0])
        try:
            burst = [relay.open() for _ in range(10)]
            for endpoint in burst:  # ten calls end at once
                endpoint.close()
            assert pool.resting == 10
            for _ in range(20):  # then one call a second, each over within that second
                clock[0] += 1.0
                relay.open().close()
            assert 2 <= pool.resting <= 5  # what one call a second needs, rested 2 to 4 s
            resting = pool.resting
            assert relay.retire(clock[0] + 60) == resting
            assert pool.resting == 0 and pool.available == pool.capacity
        finally:
            relay.close()

    run(body())


def _live_endpoints() -> int:
    return sum(1 for obj in gc.get_objects() if isinstance(obj, Endpoint))


@both_loops
async def test_a_closed_endpoint_is_freed_without_the_collector() -> None:
    """The relay opens and closes endpoints for every call: left in reference cycles, they would
    pile up between collections and make each collection longer."""
    relay = Relay(HOST, PortPool(*POOL_RANGE))
    gc.collect()
    before = _live_endpoints()
    gc.disable()
    try:
        for _ in range(3):
            session = relay.session()
            session.a.set_remote((HOST, 9))
            session.a.on_dtmf = lambda endpoint, digit: None
            session.b.play(Player(b"\xff" * 1600, 0))
            session.close()
        del session
        assert _live_endpoints() == before
    finally:
        gc.enable()
        relay.close()


@both_loops
async def test_ports_held_by_other_programs_are_skipped() -> None:
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind((HOST, 41301))  # the RTCP port of the first pair
    relay = Relay(HOST, PortPool(41300, 41303))
    try:
        endpoint = relay.open()
        assert endpoint.port == 41302
        with pytest.raises(PortsExhausted, match="could be bound"):
            relay.open()
    finally:
        squatter.close()
        relay.close()


@both_loops
async def test_a_digit_that_ends_the_call_stops_the_relay_cleanly() -> None:
    async with call() as (relay, session, alice, bob):
        a_port, _ = ports_of(session)
        session.a.dtmf_payload_types = [101]
        session.a.on_dtmf = lambda endpoint, digit: session.close()  # "#" hangs up
        key = alice.rtp(build_event(TelephoneEvent(11, True, 10, 800)), payload_type=101)
        alice.send(a_port, key)
        alice.send_audio(a_port, 3)
        await asyncio.sleep(0.1)
        assert session.a.closed and session.b.closed
        assert relay.pool.in_use == 0
        assert payloads(await bob.quiet()) == [key]  # the key itself was relayed, nothing after it
        with pytest.raises(RuntimeError, match="closed endpoint"):
            session.b.play(Player(b"\xff" * 160, 0))
