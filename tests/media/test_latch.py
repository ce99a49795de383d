"""Port pool and latching decisions, with a fake clock."""

from __future__ import annotations

import pytest

from sentral.media.latch import Latch, LatchPolicy, LatchState, PortPool, PortsExhausted

SDP_ADDR = ("192.168.1.23", 4000)  # what the phone wrote in its SDP
NAT_ADDR = ("203.0.113.7", 61000)  # where its packets really come from
STRANGER = ("198.51.100.9", 5555)
SSRC = 0x11223344


def test_pool_hands_out_even_ports_round_robin() -> None:
    pool = PortPool(10001, 10010)
    assert pool.capacity == 4  # 10002, 10004, 10006, 10008 (10010 would need 10011)
    first = [pool.allocate() for _ in range(4)]
    assert first == [10002, 10004, 10006, 10008]
    with pytest.raises(PortsExhausted, match=r"all 4 RTP port pairs in 10001-10010 are in use"):
        pool.allocate()
    pool.release(10004)
    pool.release(10002)
    assert pool.available == 2
    assert pool.allocate() == 10004  # the longest free comes first
    with pytest.raises(ValueError, match="not handed out"):
        pool.release(10002)


def test_a_resting_port_is_neither_in_use_nor_free_until_woken_or_released() -> None:
    pool = PortPool(10002, 10009)
    a, b, _ = pool.allocate(), pool.allocate(), pool.allocate()
    pool.rest(a)
    pool.rest(b)
    assert (pool.in_use, pool.resting, pool.available, pool.capacity) == (1, 2, 1, 4)
    pool.wake(a)
    pool.release(b)
    assert (pool.in_use, pool.resting, pool.available) == (2, 0, 2)
    with pytest.raises(ValueError, match="not resting"):
        pool.wake(b)
    with pytest.raises(ValueError, match="not in use"):
        pool.rest(b)
    with pytest.raises(ValueError, match="not handed out"):
        pool.release(b)


def test_pool_range_is_checked() -> None:
    with pytest.raises(ValueError, match="no even/odd port pair"):
        PortPool(10001, 10002)
    with pytest.raises(ValueError, match="within 1-65535"):
        PortPool(20000, 10000)
    assert PortPool().capacity == 5000


def test_learns_the_nat_address_then_drops_strangers() -> None:
    latch = Latch(SDP_ADDR)
    assert latch.destination == SDP_ADDR
    assert latch.source is None
    for i in range(5):
        assert latch.admit(NAT_ADDR, SSRC, 100 + i, now=10.0 + 0.02 * i)
    assert latch.state is LatchState.LATCHED
    assert latch.source == latch.destination == NAT_ADDR
    assert not latch.admit(STRANGER, 0xDEAD, 1, now=11.0)
    assert latch.destination == NAT_ADDR


def test_a_packet_from_the_sdp_address_latches_at_once() -> None:
    latch = Latch(SDP_ADDR)
    assert latch.admit(SDP_ADDR, SSRC, 1, now=0.0)
    assert latch.state is LatchState.LATCHED
    assert not latch.admit(STRANGER, SSRC + 1, 2, now=0.01)


def test_learning_window_closes_after_two_seconds() -> None:
    latch = Latch(SDP_ADDR)
    assert latch.admit(NAT_ADDR, SSRC, 1, now=5.0)
    assert latch.state is LatchState.LEARNING
    # Past the window a stranger is no longer learned from; the first source stands.
    assert not latch.admit(STRANGER, 0xBAD, 7, now=7.5)
    assert latch.source == NAT_ADDR


def test_the_last_source_seen_while_learning_wins() -> None:
    latch = Latch(SDP_ADDR)
    latch.admit(STRANGER, 1, 1, now=0.0)
    for i in range(4):
        latch.admit(NAT_ADDR, SSRC, 10 + i, now=0.1 + i * 0.02)
    assert latch.source == NAT_ADDR


def test_nat_rebinding_with_the_next_sequence_numbers_is_followed() -> None:
    latch = Latch(SDP_ADDR, LatchPolicy(packets=2))
    latch.admit(NAT_ADDR, SSRC, 65534, now=0.0)
    latch.admit(NAT_ADDR, SSRC, 65535, now=0.02)
    moved = ("203.0.113.7", 61044)
    # Same SSRC, sequence just past the wrap: the same stream through a new NAT binding.
    assert latch.admit(moved, SSRC, 3, now=1.0)
    assert latch.source == latch.destination == moved
    assert latch.rebinds == 1


@pytest.mark.parametrize(
    ("ssrc", "seq"),
    [(SSRC + 1, 101), (SSRC, 100), (SSRC, 99), (SSRC, 100 + 257), (None, 101)],
    ids=["other-ssrc", "repeated-seq", "old-seq", "too-far-ahead", "no-ssrc"],
)
def test_a_stranger_that_does_not_continue_the_stream_is_dropped(ssrc: int | None, seq: int) -> None:
    latch = Latch(SDP_ADDR, LatchPolicy(packets=1))
    latch.admit(NAT_ADDR, SSRC, 100, now=0.0)
    assert not latch.admit(STRANGER, ssrc, seq, now=0.5)
    assert latch.source == NAT_ADDR


def test_note_keeps_the_sequence_the_relay_forwarded() -> None:
    latch = Latch(SDP_ADDR, LatchPolicy(packets=1))
    latch.admit(NAT_ADDR, SSRC, 100, now=0.0)
    latch.note(SSRC, 5000)  # the relay forwarded up to 5000 without asking
    assert not latch.admit(STRANGER, SSRC, 101, now=1.0)
    assert latch.admit(STRANGER, SSRC, 5001, now=1.0)


def test_rtcp_follows_on_the_sender_ssrc() -> None:
    latch = Latch((SDP_ADDR[0], 4001), LatchPolicy(packets=1))
    latch.admit(NAT_ADDR, SSRC, None, now=0.0)
    assert latch.admit(STRANGER, SSRC, None, now=3.0)
    assert not latch.admit(("198.51.100.10", 1), SSRC + 1, None, now=3.0)


def test_a_new_sdp_reopens_learning() -> None:
    latch = Latch(SDP_ADDR, LatchPolicy(packets=1))
    latch.admit(NAT_ADDR, SSRC, 1, now=0.0)
    new_sdp = ("192.168.1.23", 4010)
    latch.reset(new_sdp)
    assert latch.state is LatchState.LEARNING
    assert latch.destination == new_sdp
    assert latch.admit(STRANGER, 77, 1, now=100.0)
    assert latch.destination == STRANGER


def test_ipv6_sources_match_the_sdp_address_on_host_and_port() -> None:
    latch = Latch(("2001:db8::5", 4000))
    assert latch.admit(("2001:db8::5", 4000, 0, 0), SSRC, 1, now=0.0)
    assert latch.state is LatchState.LATCHED
    assert latch.source == ("2001:db8::5", 4000, 0, 0)


def test_a_new_sdp_with_the_same_address_keeps_the_learned_destination() -> None:
    # A held phone behind NAT answers the hold with the same SDP address and sends no RTP:
    # music must still go where its packets came from, not to its private address.
    latch = Latch(SDP_ADDR, LatchPolicy(packets=1))
    latch.admit(NAT_ADDR, SSRC, 1, now=0.0)
    latch.reset(SDP_ADDR)
    assert latch.state is LatchState.LEARNING
    assert latch.destination == NAT_ADDR
    latch.reset(None)
    assert latch.destination is None
