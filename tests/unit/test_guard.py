"""The abuse guard on a fake clock: rate limits, blocks, trusted networks, events and memory bounds."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import pytest

from sentral.pbx.guard import (
    LOOPBACK,
    Guard,
    GuardAction,
    GuardPolicy,
    SecurityEvent,
    SecurityEventKind,
    parse_networks,
)

ALLOW, THROTTLE, BLOCK = GuardAction.ALLOW, GuardAction.THROTTLE, GuardAction.BLOCK
SCANNER = "198.51.100.7"
PHONE = "203.0.113.20"

# Small numbers so that each rule can be walked through by hand.
SMALL = GuardPolicy(
    rate=10.0,
    burst=20.0,
    excess_limit=50.0,
    excess_decay=1.0,
    auth_failures=3,
    auth_window=60.0,
    block_seconds=100.0,
    event_interval=10.0,
    trusted=(),
)


def kinds(events: list[SecurityEvent]) -> list[SecurityEventKind]:
    return [event.kind for event in events]


def send(guard: Guard, host: str, count: int, start: float, per_second: float) -> list[GuardAction]:
    """``count`` messages from ``host`` evenly spaced from ``start``."""
    return [guard.check(host, start + i / per_second) for i in range(count)]


def test_burst_then_refill() -> None:
    guard = Guard(SMALL)
    assert [guard.check(SCANNER, 0.0) for _ in range(20)] == [ALLOW] * 20
    assert guard.check(SCANNER, 0.0) is THROTTLE
    assert guard.check(SCANNER, 0.1) is ALLOW  # one token back after 1/rate
    assert guard.check(SCANNER, 0.1) is THROTTLE
    assert [guard.check(SCANNER, 10.0) for _ in range(20)] == [ALLOW] * 20


def test_sources_have_separate_buckets() -> None:
    guard = Guard(SMALL)
    for _ in range(21):
        guard.check(SCANNER, 0.0)
    assert guard.check(SCANNER, 0.0) is THROTTLE
    assert guard.check(PHONE, 0.0) is ALLOW


def test_steady_traffic_within_the_rate_is_never_throttled() -> None:
    guard = Guard(SMALL)
    assert set(send(guard, PHONE, 2000, 0.0, per_second=10.0)) == {ALLOW}
    assert guard.events() == []


def test_far_over_the_rate_is_blocked_quickly() -> None:
    guard = Guard(SMALL)
    actions = [guard.check(SCANNER, 0.0) for _ in range(100)]
    # 20 from the burst, then excess_limit throttled, then the block.
    assert actions[:20] == [ALLOW] * 20
    assert actions[20:70] == [THROTTLE] * 50
    assert actions[71:] == [BLOCK] * 29
    events = guard.events()
    assert kinds(events) == [SecurityEventKind.THROTTLED, SecurityEventKind.BLOCKED]
    assert events[1].host == SCANNER
    assert "rate" in events[1].reason


def test_sustained_slight_overload_is_blocked_eventually() -> None:
    guard = Guard(SMALL)
    # 12/s against 10/s: 2 a second throttled, 1 a second forgiven, so the excess grows by 1/s.
    actions = send(guard, SCANNER, 12 * 120, 0.0, per_second=12.0)
    first_block = actions.index(BLOCK)
    assert 40.0 < first_block / 12.0 < 80.0
    assert THROTTLE in actions[:first_block]


def test_short_overshoot_is_forgiven() -> None:
    guard = Guard(SMALL)
    for minute in range(30):
        # Every minute a burst of 40 at once: 20 throttled, all forgiven before the next one.
        actions = [guard.check(PHONE, minute * 60.0) for _ in range(40)]
        assert BLOCK not in actions


def test_block_lasts_block_seconds_then_lifts() -> None:
    guard = Guard(SMALL)
    for _ in range(100):
        guard.check(SCANNER, 0.0)
    guard.events()
    assert guard.check(SCANNER, 50.0) is BLOCK
    assert guard.check(SCANNER, 99.9) is BLOCK
    assert guard.events() == []  # dropped packets say nothing
    assert guard.check(SCANNER, 100.0) is ALLOW
    events = guard.events()
    assert kinds(events) == [SecurityEventKind.UNBLOCKED]
    assert events[0].host == SCANNER
    # It starts over with a full bucket.
    assert [guard.check(SCANNER, 100.0) for _ in range(19)] == [ALLOW] * 19


def test_poll_lifts_blocks_at_the_deadline() -> None:
    guard = Guard(SMALL)
    assert guard.next_deadline() is None
    for _ in range(100):
        guard.check(SCANNER, 5.0)
    assert guard.next_deadline() == 105.0
    guard.poll(104.0)
    assert guard.blocked_sources == 1
    guard.poll(105.0)
    assert guard.blocked_sources == 0
    assert guard.next_deadline() is None
    assert kinds(guard.events())[-1] is SecurityEventKind.UNBLOCKED


def test_auth_failures_over_the_threshold_block() -> None:
    guard = Guard(SMALL)
    assert [guard.auth_failed(SCANNER, float(t)) for t in range(3)] == [ALLOW] * 3
    assert guard.check(SCANNER, 3.0) is ALLOW
    assert guard.auth_failed(SCANNER, 4.0) is BLOCK
    assert guard.check(SCANNER, 5.0) is BLOCK
    events = guard.events()
    assert kinds(events) == [SecurityEventKind.AUTH_FAILURE] * 4 + [SecurityEventKind.BLOCKED]
    assert "4 authentication failures" in events[-1].reason
    # Failures reported for requests in flight when the block began add nothing.
    assert guard.auth_failed(SCANNER, 6.0) is BLOCK
    assert guard.events() == []


def test_failures_age_out_of_the_window() -> None:
    guard = Guard(SMALL)
    # One failure every 25 s: never more than three within 60 s.
    assert {guard.auth_failed(PHONE, t * 25.0) for t in range(40)} == {ALLOW}
    # Four within the window do block.
    guard.auth_failed(PHONE, 2000.0)
    guard.auth_failed(PHONE, 2001.0)
    guard.auth_failed(PHONE, 2059.0)
    assert guard.auth_failed(PHONE, 2059.9) is BLOCK


def test_success_does_not_erase_failures() -> None:
    guard = Guard(SMALL)
    for t in range(3):
        guard.auth_failed(SCANNER, float(t))
        guard.auth_succeeded(SCANNER, t + 0.5)
    assert guard.auth_failed(SCANNER, 3.0) is BLOCK


def test_trusted_networks_are_never_throttled_or_blocked() -> None:
    policy = GuardPolicy(
        rate=10.0,
        burst=20.0,
        excess_limit=50.0,
        auth_failures=3,
        trusted=parse_networks(["10.0.0.0/8", "2001:db8::/32", "fe80::/10"]),
    )
    guard = Guard(policy)
    for host in ["10.1.2.3", "::ffff:10.1.2.3", "2001:db8::5", "[2001:db8::6]", "fe80::1%eth0"]:
        assert {guard.check(host, 0.0) for _ in range(1000)} == {ALLOW}, host
        assert {guard.auth_failed(host, 1.0) for _ in range(100)} == {ALLOW}, host
    assert SecurityEventKind.BLOCKED not in kinds(guard.events())
    assert guard.tracked_sources == 0
    # Neighbours outside the networks, and names that are no address, get no such favour.
    for host in ["11.1.2.3", "::ffff:11.1.2.3", "2001:db9::5", "::a01:203", "pbx.example", "10.1.2"]:
        actions = {guard.check(host, 0.0) for _ in range(1000)}
        assert BLOCK in actions, host


def test_a_carriers_address_trusted_besides_the_networks_is_never_throttled() -> None:
    guard = Guard(GuardPolicy(rate=10.0, burst=20.0, excess_limit=50.0, trusted=()))
    carriers = {"192.0.2.7"}
    guard.also_trusted = carriers.__contains__
    assert {guard.check("192.0.2.7", 0.0) for _ in range(1000)} == {ALLOW}
    assert guard.tracked_sources == 0
    assert BLOCK in {guard.check("192.0.2.8", 0.0) for _ in range(1000)}


def test_new_limits_and_trusted_networks_apply_to_later_requests() -> None:
    guard = Guard(SMALL)
    assert [guard.check(PHONE, 0.0) for _ in range(21)][-1] is THROTTLE
    # The operator trusts the clinic's NAT address and raises the rate (SIGHUP).
    guard.reconfigure(dataclasses.replace(SMALL, rate=100.0, burst=200.0, trusted=parse_networks(["203.0.113.0/24"])))
    assert {guard.check(PHONE, 0.0) for _ in range(500)} == {ALLOW}
    assert [guard.check(SCANNER, 0.0) for _ in range(201)][-1] is THROTTLE  # the new burst, not the old
    guard.reconfigure(SMALL)  # and back: the address is judged again
    assert [guard.check(PHONE, 0.0) for _ in range(21)][-1] is THROTTLE


def test_loopback_is_trusted_by_default() -> None:
    guard = Guard()
    assert guard.policy.trusted == LOOPBACK
    for host in ["127.0.0.1", "::1", "[::1]"]:
        assert {guard.check(host, 0.0) for _ in range(5000)} == {ALLOW}


def test_throttled_events_are_rate_limited_per_source() -> None:
    policy = GuardPolicy(rate=10.0, burst=20.0, excess_limit=1e9, event_interval=10.0, trusted=())
    guard = Guard(policy)
    actions = send(guard, SCANNER, 1000 * 35, 0.0, per_second=1000.0)
    throttled = [e for e in guard.events() if e.kind is SecurityEventKind.THROTTLED]
    # At 0 s, 10 s, 20 s and 30 s: not one per refused packet.
    assert len(throttled) == 4
    assert [round(e.at) for e in throttled] == [0, 10, 20, 30]
    assert throttled[0].count == 1
    # The counts add up to what was refused, except those still waiting for the next event.
    refused = actions.count(THROTTLE)
    assert refused - 5 * 1000 <= sum(e.count for e in throttled) <= refused
    # When the source falls idle, the sweep reports the rest.
    guard.poll(10_000.0)
    tail = guard.events()
    assert kinds(tail) == [SecurityEventKind.THROTTLED]
    assert sum(e.count for e in throttled) + tail[0].count == refused


def test_events_have_a_global_budget_for_spoofed_floods() -> None:
    policy = GuardPolicy(auth_failures=5, event_rate=1.0, event_burst=5.0, trusted=())
    guard = Guard(policy)
    for i in range(100):
        guard.auth_failed(f"192.0.2.{i}", 0.0)
    assert len(guard.events()) == 5
    assert guard.events_suppressed == 95
    # The budget refills.
    guard.auth_failed("192.0.2.200", 2.0)
    assert len(guard.events()) == 1


def test_block_events_are_not_budgeted() -> None:
    policy = GuardPolicy(rate=10.0, burst=1.0, excess_limit=1.0, event_rate=1.0, event_burst=1.0, trusted=())
    guard = Guard(policy)
    for i in range(20):
        for _ in range(3):
            guard.check(f"192.0.2.{i}", 0.0)
    assert Counter(kinds(guard.events()))[SecurityEventKind.BLOCKED] == 20


def test_event_queue_is_bounded() -> None:
    policy = GuardPolicy(auth_failures=1000, max_events=10, trusted=())
    guard = Guard(policy)
    for i in range(50):
        guard.auth_failed(SCANNER, float(i))
    events = guard.events()
    assert len(events) == 10
    assert events[-1].at == 49.0  # the newest are kept
    assert guard.events_suppressed == 40


def test_spoofed_flood_does_not_grow_state_without_bound() -> None:
    guard = Guard(GuardPolicy(rate=10.0, burst=20.0, trusted=()))
    # 200 000 one-packet sources over 20 s: each is idle again 0.1 s later.
    for i in range(200_000):
        guard.check(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", i / 10_000)
        if i % 10_000 == 0:
            assert guard.tracked_sources < 3_000
    assert guard.tracked_sources < 3_000


def test_source_table_is_capped_even_when_nothing_is_idle() -> None:
    guard = Guard(GuardPolicy(max_sources=1_000, trusted=()))
    for i in range(20_000):
        guard.auth_failed(f"192.0.{i >> 8 & 255}.{i & 255}", 0.0)
        assert guard.tracked_sources <= 1_000


def test_a_flood_of_new_sources_does_not_unblock_a_scanner() -> None:
    guard = Guard(
        GuardPolicy(
            rate=10.0, burst=20.0, excess_limit=50.0, block_seconds=100.0, max_sources=100, trusted=()
        )
    )
    for _ in range(100):
        guard.check(SCANNER, 0.0)
    for i in range(50_000):
        guard.check(f"10.0.{i >> 8 & 255}.{i & 255}", 1.0)
    assert guard.check(SCANNER, 2.0) is BLOCK


def test_blocked_table_is_capped() -> None:
    guard = Guard(GuardPolicy(auth_failures=0, max_blocked=5, block_seconds=100.0, trusted=()))
    for i in range(12):
        assert guard.auth_failed(f"192.0.2.{i}", float(i)) is BLOCK
        assert guard.blocked_sources <= 5
    events = guard.events()
    # The blocks closest to their end made room.
    lifted = [e.host for e in events if e.kind is SecurityEventKind.UNBLOCKED]
    assert lifted == [f"192.0.2.{i}" for i in range(7)]
    assert guard.check("192.0.2.11", 20.0) is BLOCK
    assert guard.check("192.0.2.0", 20.0) is ALLOW


def test_poll_sweeps_idle_sources() -> None:
    guard = Guard(SMALL)
    for i in range(250):
        guard.check(f"192.0.2.{i}", 0.0)
    for i in range(3):
        guard.auth_failed(f"198.51.100.{i}", 0.0)
        guard.auth_failed(f"198.51.100.{i}", 1.0)
    assert guard.tracked_sources == 253
    # Buckets are full again, but the failures are still inside the window.
    guard.poll(60.5)
    assert guard.tracked_sources == 3
    guard.poll(61.5)
    assert guard.tracked_sources == 0


def test_clock_going_backwards_gives_no_free_tokens() -> None:
    guard = Guard(SMALL)
    for _ in range(20):
        guard.check(SCANNER, 100.0)
    assert guard.check(SCANNER, 50.0) is THROTTLE


@pytest.mark.parametrize(
    "changes",
    [{"rate": 0.0}, {"burst": 0.5}, {"auth_window": -1.0}, {"max_sources": 0}, {"auth_failures": -1}],
)
def test_policy_rejects_nonsense(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        GuardPolicy(**changes)


def test_parse_networks_names_the_bad_entry() -> None:
    assert parse_networks([" 10.0.0.0/8", "192.168.1.7"])[1].num_addresses == 1
    with pytest.raises(ValueError, match="clinic-lan"):
        parse_networks(["clinic-lan"])
