"""Queues and the call distributor: acute first, first come first served, max_wait, who rings when."""

from __future__ import annotations

import random
from collections.abc import Sequence
from math import inf

import pytest

from sentral.config.directory import GroupEntry, GroupKind, MemberEntry, Strategy
from sentral.routing.groups import (
    Candidate,
    GroupMemory,
    HuntState,
    Overflow,
    OverflowCause,
    RingMember,
)
from sentral.routing.queue import CallDistributor, DistributorCommand, Divert, GroupQueue, StartHunt, Wait


def group(
    strategy: Strategy = Strategy.RINGALL,
    members: Sequence[str] = ("101", "102"),
    *,
    max_wait: float = 120.0,
    overflow: str | None = "300",
    ring_busy: bool = False,
) -> GroupEntry:
    return GroupEntry(
        domain="clinic.test",
        name="reception",
        kind=GroupKind.FUNCTION,
        number="200",
        acute_number="201",
        strategy=strategy,
        member_timeout=10.0,
        ring_timeout=60.0,
        overflow=overflow,
        ring_busy=ring_busy,
        max_wait=max_wait,
        members=tuple(MemberEntry(ext, True) for ext in members),
    )


def members(**states: str) -> list[Candidate]:
    """``members(m101="free", m102="busy")``: free, busy or away (not available)."""
    return [
        Candidate(key.removeprefix("m"), state != "away", state == "busy") for key, state in states.items()
    ]


def kinds(commands: Sequence[DistributorCommand]) -> list[tuple[str, str]]:
    return [(type(c).__name__, c.call_key) for c in commands]


# -- the queue -----------------------------------------------------------------------------------


def test_an_acute_call_jumps_ahead_of_two_normal_calls() -> None:
    queue = GroupQueue(max_wait=120.0)
    assert queue.join("a", acute=False, now=0.0) == 1
    assert queue.join("b", acute=False, now=1.0) == 2
    assert queue.join("x", acute=True, now=2.0) == 1
    assert queue.join("y", acute=True, now=3.0) == 2  # acute calls among themselves: arrival order
    assert [w.call_key for w in queue] == ["x", "y", "a", "b"]
    assert [queue.position(k) for k in "abxy"] == [3, 4, 1, 2]
    assert queue.pop().call_key == "x"
    assert queue.position("a") == 2
    assert len(queue) == 3


def test_a_caller_leaving_the_queue_moves_those_behind_up() -> None:
    queue = GroupQueue(max_wait=120.0)
    for key, at in (("a", 0.0), ("b", 1.0), ("c", 2.0)):
        queue.join(key, acute=False, now=at)
    assert queue.leave("b")
    assert not queue.leave("b")
    assert queue.position("b") is None
    assert queue.position("c") == 2
    assert "b" not in queue and "c" in queue


def test_max_wait_takes_out_the_callers_who_waited_too_long_longest_first() -> None:
    queue = GroupQueue(max_wait=30.0)
    queue.join("a", acute=False, now=0.0)
    queue.join("b", acute=False, now=10.0)
    queue.join("x", acute=True, now=5.0)
    assert queue.next_deadline() == 30.0
    assert queue.expired(29.0) == []
    assert [w.call_key for w in queue.expired(35.0)] == ["a", "x"]
    assert queue.next_deadline() == 40.0
    assert [w.call_key for w in queue] == ["b"]


def test_an_empty_queue_has_no_head_and_no_deadline() -> None:
    queue = GroupQueue(max_wait=30.0)
    assert queue.head() is None and queue.next_deadline() == inf and len(queue) == 0
    with pytest.raises(IndexError):
        queue.pop()
    queue.join("a", acute=False, now=0.0)
    with pytest.raises(ValueError):
        queue.join("a", acute=True, now=1.0)


def test_every_caller_leaving_with_a_time_tells_how_long_they_waited() -> None:
    waits: list[float] = []
    queue = GroupQueue(max_wait=30.0, waited=waits.append)
    for key, at in (("a", 0.0), ("b", 1.0), ("c", 2.0), ("d", 3.0)):
        queue.join(key, acute=False, now=at)
    queue.pop(4.0)  # a: served
    queue.leave("b", 6.5)  # b: hung up
    queue.leave("c")  # without a time (taken out for another reason): not a wait
    queue.expired(40.0)  # d: waited too long
    assert waits == [4.0, 5.5, 37.0]


def test_the_distributor_tells_the_wait_of_callers_it_serves_and_those_who_leave() -> None:
    waits: list[float] = []
    distributor = CallDistributor(group(), GroupMemory(), random.Random(1), waits.append)
    distributor.arrive("c1", False, members(m101="free", m102="away"), 0.0)  # rings at once
    distributor.arrive("c2", False, members(m101="busy", m102="away"), 1.0)  # waits
    distributor.release("c2", members(m101="busy", m102="away"), 9.0)  # hangs up after 8 s
    assert waits == [0.0, 8.0]


# -- the distributor -----------------------------------------------------------------------------


def test_a_call_rings_at_once_when_a_member_is_free() -> None:
    d = CallDistributor(group(Strategy.LINEAR), GroupMemory())
    (command,) = d.arrive("c1", acute=False, candidates=members(m101="busy", m102="free"), now=0.0)
    assert isinstance(command, StartHunt)
    assert command.call_key == "c1"
    assert command.commands == (RingMember("102"),)
    assert command.hunt.state is HuntState.HUNTING
    assert d.offered == {"c1"}


@pytest.mark.parametrize(
    "candidates",
    [[], members(m101="away", m102="away"), [Candidate("999", True, False)]],
)
def test_a_call_when_nobody_is_available_goes_straight_to_the_overflow(candidates: list[Candidate]) -> None:
    d = CallDistributor(group(), GroupMemory())
    assert d.arrive("c1", False, candidates, 0.0) == [
        Divert("c1", Overflow("300", OverflowCause.NOBODY_AVAILABLE))
    ]
    assert len(d.queue) == 0


def test_when_everyone_is_busy_the_caller_waits_and_overflows_after_max_wait() -> None:
    d = CallDistributor(group(max_wait=45.0), GroupMemory())
    busy = members(m101="busy", m102="busy")
    assert d.arrive("c1", False, busy, 0.0) == [Wait("c1", 1)]
    assert d.arrive("c2", False, busy, 5.0) == [Wait("c2", 2)]
    assert d.next_deadline() == 45.0
    assert d.on_timer(44.0) == []
    assert d.on_timer(45.0) == [Divert("c1", Overflow("300", OverflowCause.WAIT_EXPIRED))]
    assert d.position("c2") == 1
    assert d.on_timer(50.0) == [Divert("c2", Overflow("300", OverflowCause.WAIT_EXPIRED))]
    assert d.next_deadline() == inf


def test_ring_busy_rings_members_in_a_call_instead_of_queueing() -> None:
    d = CallDistributor(group(ring_busy=True), GroupMemory())
    (command,) = d.arrive("c1", False, members(m101="busy", m102="busy"), 0.0)
    assert isinstance(command, StartHunt)
    assert command.commands == (RingMember("101"), RingMember("102"))


def test_no_more_calls_ring_than_there_are_free_members() -> None:
    d = CallDistributor(group(), GroupMemory())
    two_free = members(m101="free", m102="free")
    assert kinds(d.arrive("c1", False, two_free, 0.0)) == [("StartHunt", "c1")]
    assert kinds(d.arrive("c2", False, two_free, 1.0)) == [("StartHunt", "c2")]
    assert d.arrive("c3", False, two_free, 2.0) == [Wait("c3", 1)]


def test_a_member_freed_starts_the_head_of_the_queue_and_only_as_many_as_are_free() -> None:
    d = CallDistributor(group(Strategy.LINEAR, ("101", "102", "103")), GroupMemory())
    all_busy = members(m101="busy", m102="busy", m103="busy")
    for key in ("c1", "c2", "c3"):
        d.arrive(key, False, all_busy, 0.0)
    (command,) = d.members_changed(members(m101="busy", m102="free", m103="busy"), 10.0)
    assert isinstance(command, StartHunt)
    assert command.call_key == "c1"
    assert command.commands == (RingMember("102"),)
    assert [d.position(k) for k in ("c2", "c3")] == [1, 2]
    # Nothing more changes while the one free member is being offered c1.
    assert d.members_changed(members(m101="busy", m102="free", m103="busy"), 11.0) == []
    # 102 answers c1 and becomes busy, 101 and 103 come free: two more calls ring.
    after = members(m101="free", m102="busy", m103="free")
    assert kinds(d.release("c1", after, 12.0)) == [("StartHunt", "c2"), ("StartHunt", "c3")]
    assert len(d.queue) == 0


def test_an_acute_call_is_offered_before_normal_calls_waiting() -> None:
    d = CallDistributor(group(), GroupMemory())
    busy = members(m101="busy", m102="busy")
    d.arrive("n1", False, busy, 0.0)
    d.arrive("n2", False, busy, 1.0)
    assert d.arrive("acute", True, busy, 2.0) == [Wait("acute", 1)]
    assert kinds(d.members_changed(members(m101="free", m102="busy"), 3.0)) == [("StartHunt", "acute")]
    assert [d.position(k) for k in ("n1", "n2")] == [1, 2]


def test_an_acute_call_jumps_ahead_when_a_member_comes_free_at_the_moment_it_arrives() -> None:
    d = CallDistributor(group(), GroupMemory())
    d.arrive("n1", False, members(m101="busy", m102="busy"), 0.0)
    # 101 hung up but the controller has not told us yet when the acute call comes in.
    commands = d.arrive("acute", True, members(m101="free", m102="busy"), 1.0)
    assert kinds(commands) == [("StartHunt", "acute")]
    assert d.position("n1") == 1


def test_a_normal_call_does_not_overtake_those_already_waiting() -> None:
    d = CallDistributor(group(), GroupMemory())
    d.arrive("n1", False, members(m101="busy", m102="busy"), 0.0)
    commands = d.arrive("n2", False, members(m101="free", m102="busy"), 1.0)
    assert kinds(commands) == [("StartHunt", "n1"), ("Wait", "n2")]
    assert commands[-1] == Wait("n2", 1)


def test_a_queued_caller_hanging_up_leaves_the_queue() -> None:
    d = CallDistributor(group(), GroupMemory())
    busy = members(m101="busy", m102="busy")
    for key in ("c1", "c2", "c3"):
        d.arrive(key, False, busy, 0.0)
    assert d.release("c2", busy, 5.0) == []
    assert d.position("c2") is None
    assert d.position("c3") == 2
    assert [c.call_key for c in d.on_timer(200.0)] == ["c1", "c3"]


def test_a_call_everyone_rejected_is_not_queued_again() -> None:
    d = CallDistributor(group(Strategy.LINEAR), GroupMemory())
    two_free = members(m101="free", m102="free")
    (start,) = d.arrive("c1", False, two_free, 0.0)
    assert isinstance(start, StartHunt)
    start.hunt.failed("101", 486, 1.0)
    outcome = start.hunt.failed("102", 603, 2.0)
    assert outcome == [Overflow("300", OverflowCause.ALL_REJECTED)]
    assert d.release("c1", two_free, 2.0) == []
    assert "c1" not in d.queue and d.offered == frozenset()


def test_waiting_callers_are_diverted_when_the_last_member_leaves() -> None:
    d = CallDistributor(group(), GroupMemory())
    d.arrive("c1", False, members(m101="busy", m102="away"), 0.0)
    d.arrive("c2", True, members(m101="busy", m102="away"), 1.0)
    nobody = Overflow("300", OverflowCause.NOBODY_AVAILABLE)
    assert d.members_changed(members(m101="away", m102="away"), 2.0) == [
        Divert("c2", nobody),
        Divert("c1", nobody),
    ]
    assert len(d.queue) == 0


def test_a_group_without_a_queue_diverts_a_call_that_cannot_ring() -> None:
    d = CallDistributor(group(max_wait=0.0, overflow="busy"), GroupMemory())
    assert d.arrive("c1", False, members(m101="busy", m102="busy"), 0.0) == [
        Divert("c1", Overflow("busy", OverflowCause.ALL_BUSY))
    ]
    assert len(d.queue) == 0


def test_a_call_is_offered_to_a_group_once() -> None:
    d = CallDistributor(group(), GroupMemory())
    d.arrive("c1", False, members(m101="busy", m102="busy"), 0.0)
    with pytest.raises(ValueError):
        d.arrive("c1", False, members(m101="busy", m102="busy"), 1.0)


def test_a_new_max_wait_applies_to_callers_already_waiting() -> None:
    d = CallDistributor(group(max_wait=120.0), GroupMemory())
    d.arrive("c1", False, members(m101="busy", m102="busy"), 0.0)
    d.reconfigure(group(max_wait=30.0))
    assert d.next_deadline() == 30.0
    assert kinds(d.on_timer(30.0)) == [("Divert", "c1")]


def test_hunts_started_from_the_queue_share_the_group_memory() -> None:
    memory = GroupMemory()
    d = CallDistributor(group(Strategy.RRMEMORY, ("101", "102", "103")), memory, random.Random(0))
    everyone = members(m101="free", m102="free", m103="free")
    (first,) = d.arrive("c1", False, everyone, 0.0)
    (second,) = d.arrive("c2", False, everyone, 1.0)
    assert isinstance(first, StartHunt) and isinstance(second, StartHunt)
    assert first.commands == (RingMember("101"),)
    assert second.commands == (RingMember("102"),)


# -- a member calling their own group --------------------------------------------------------------


def test_a_member_calling_their_own_group_is_not_rung_for_it() -> None:
    d = CallDistributor(group(), GroupMemory())
    (start,) = d.arrive("c1", False, members(m101="free", m102="free"), 0.0, caller="101")
    assert isinstance(start, StartHunt)
    assert start.commands == (RingMember("102"),)


def test_a_member_calling_a_group_with_nobody_else_gets_what_nobody_available_gets() -> None:
    d = CallDistributor(group(), GroupMemory())
    nobody = Overflow("300", OverflowCause.NOBODY_AVAILABLE)
    assert d.arrive("c1", False, members(m101="free", m102="away"), 0.0, caller="101") == [
        Divert("c1", nobody)
    ]
    assert d.arrive("c2", False, members(m101="away", m102="away"), 0.0) == [Divert("c2", nobody)]
    assert len(d.queue) == 0


def test_a_member_waits_for_a_busy_colleague_rather_than_ringing_themselves() -> None:
    d = CallDistributor(group(), GroupMemory())
    # 101 is free, but it is 101 calling: the call waits for 102.
    assert d.arrive("c1", False, members(m101="free", m102="busy"), 0.0, caller="101") == [Wait("c1", 1)]
    assert d.members_changed(members(m101="free", m102="busy"), 1.0) == []
    (start,) = d.members_changed(members(m101="free", m102="free"), 2.0)
    assert isinstance(start, StartHunt) and start.commands == (RingMember("102"),)
    # 102 leaves while 101 waits for them: 101's call is diverted, another caller's is not.
    d2 = CallDistributor(group(), GroupMemory())
    d2.arrive("own", False, members(m101="free", m102="busy"), 0.0, caller="101")
    d2.arrive("other", False, members(m101="busy", m102="busy"), 0.0)
    assert d2.members_changed(members(m101="busy", m102="away"), 1.0) == [
        Divert("own", Overflow("300", OverflowCause.NOBODY_AVAILABLE))
    ]
    assert d2.position("other") == 1
