"""Ring-group hunts: strategies, the reject rule, timeouts, overflow and the transfer return."""

from __future__ import annotations

import random
from collections.abc import Sequence
from math import inf

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentral.config.directory import GroupEntry, GroupKind, MemberEntry, Strategy
from sentral.routing.groups import (
    Candidate,
    ConnectMember,
    GroupMemory,
    Hunt,
    HuntCommand,
    HuntState,
    MemberOutcome,
    Overflow,
    OverflowCause,
    ReturnToTransferer,
    RingMember,
    StopMember,
    StopReason,
    classify,
)

MEMBERS = ("101", "102", "103")
HUNTING = [s for s in Strategy if s is not Strategy.RINGALL]


def group(
    strategy: Strategy,
    members: Sequence[str] = MEMBERS,
    *,
    member_timeout: float = 10.0,
    ring_timeout: float = 60.0,
    overflow: str | None = None,
    ring_busy: bool = False,
    name: str = "reception",
) -> GroupEntry:
    return GroupEntry(
        domain="clinic.test",
        name=name,
        kind=GroupKind.GROUP,
        number="200",
        acute_number=None,
        strategy=strategy,
        member_timeout=member_timeout,
        ring_timeout=ring_timeout,
        overflow=overflow,
        ring_busy=ring_busy,
        max_wait=120.0,
        members=tuple(MemberEntry(ext, True) for ext in members),
    )


def free(*extensions: str) -> list[Candidate]:
    return [Candidate(ext, available=True, busy=False) for ext in extensions]


def hunt(
    g: GroupEntry,
    candidates: Sequence[Candidate] | None = None,
    memory: GroupMemory | None = None,
    rng: random.Random | None = None,
    return_to: str | None = None,
) -> Hunt:
    cands = free(*(m.extension for m in g.members)) if candidates is None else candidates
    return Hunt(g, cands, memory if memory is not None else GroupMemory(), rng, return_to)


def rung(commands: Sequence[HuntCommand]) -> list[str]:
    return [c.extension for c in commands if isinstance(c, RingMember)]


# -- ringall -------------------------------------------------------------------------------------


def test_ringall_rings_everyone_and_a_reject_leaves_the_others_ringing() -> None:
    h = hunt(group(Strategy.RINGALL))
    assert h.start(0.0) == [RingMember("101"), RingMember("102"), RingMember("103")]
    assert h.next_deadline() == 60.0
    assert h.failed("102", 486, 3.0) == []
    assert not h.done
    assert h.answered("103", 5.0) == [
        ConnectMember("103"),
        StopMember("101", StopReason.ANSWERED_ELSEWHERE),
    ]
    assert h.state is HuntState.ANSWERED
    assert dict(h.outcomes()) == {
        "101": MemberOutcome.STOPPED,
        "102": MemberOutcome.REJECTED,
        "103": MemberOutcome.ANSWERED,
    }
    assert h.next_deadline() == inf


def test_ringall_ring_timeout_stops_everyone_still_ringing_as_no_answer() -> None:
    h = hunt(group(Strategy.RINGALL, ring_timeout=30.0))
    h.start(0.0)
    h.failed("101", 603, 1.0)
    assert h.on_timer(29.9) == []
    assert h.on_timer(30.0) == [
        StopMember("102", StopReason.RING_TIMEOUT),
        StopMember("103", StopReason.RING_TIMEOUT),
        Overflow(None, OverflowCause.NO_ANSWER),
    ]
    assert h.outcomes()["102"] is MemberOutcome.NO_ANSWER


# -- hunting -------------------------------------------------------------------------------------


def test_linear_reject_rings_the_next_member_at_once() -> None:
    h = hunt(group(Strategy.LINEAR))
    assert h.start(0.0) == [RingMember("101")]
    assert h.next_deadline() == 10.0
    assert h.failed("101", 486, 2.0) == [RingMember("102")]
    assert h.next_deadline() == 12.0  # the next member gets a full turn from when it rings
    assert h.outcomes()["101"] is MemberOutcome.REJECTED


def test_a_member_timing_out_is_stopped_and_the_next_one_rings() -> None:
    h = hunt(group(Strategy.LINEAR))
    h.start(0.0)
    assert h.on_timer(9.0) == []
    assert h.on_timer(10.0) == [StopMember("101", StopReason.MEMBER_TIMEOUT), RingMember("102")]
    assert h.next_deadline() == 20.0
    assert h.outcomes()["101"] is MemberOutcome.NO_ANSWER
    # The stopped phone's 487 arrives afterwards and changes nothing.
    assert h.failed("101", 487, 10.1) == []
    assert h.outcomes()["101"] is MemberOutcome.NO_ANSWER


@pytest.mark.parametrize("strategy", list(Strategy))
@pytest.mark.parametrize("status", [486, 600, 603])
def test_everyone_rejecting_overflows_as_rejected_by_all(strategy: Strategy, status: int) -> None:
    h = hunt(group(strategy, overflow="300"), rng=random.Random(1))
    commands = h.start(0.0)
    while not h.done:
        ringing = rung(commands)
        assert ringing, "the hunt neither rang anyone nor ended"
        commands = []
        for extension in ringing:
            commands += h.failed(extension, status, 1.0)
    assert commands[-1] == Overflow("300", OverflowCause.ALL_REJECTED)
    assert isinstance(commands[-1], Overflow) and commands[-1].all_rejected
    assert h.state is HuntState.OVERFLOWED
    assert set(h.outcomes().values()) == {MemberOutcome.REJECTED}


@pytest.mark.parametrize(
    ("statuses", "cause", "outcomes"),
    [
        ((486, 480, 603), OverflowCause.NO_ANSWER, ("rejected", "no answer", "rejected")),
        ((408, 408, 408), OverflowCause.NO_ANSWER, ("no answer",) * 3),
        ((404, 500, 503), OverflowCause.NO_ANSWER, ("failed",) * 3),
        ((486, 503, 600), OverflowCause.NO_ANSWER, ("rejected", "failed", "rejected")),
    ],
)
def test_failures_pass_the_call_on_and_are_told_apart(
    statuses: tuple[int, int, int], cause: OverflowCause, outcomes: tuple[str, str, str]
) -> None:
    h = hunt(group(Strategy.LINEAR, overflow="busy"))
    h.start(0.0)
    last: list[HuntCommand] = []
    for extension, status in zip(MEMBERS, statuses, strict=True):
        last = h.failed(extension, status, 1.0)
    assert last == [Overflow("busy", cause)]
    assert isinstance(last[0], Overflow) and not last[0].all_rejected
    assert tuple(o.value for o in h.outcomes().values()) == outcomes


def test_ring_timeout_bounds_a_long_linear_hunt() -> None:
    members = ("101", "102", "103", "104", "105")
    h = hunt(group(Strategy.LINEAR, members, member_timeout=10.0, ring_timeout=25.0))
    ringing = rung(h.start(0.0))
    now = 0.0
    seen: list[HuntCommand] = []
    while not h.done:
        now = h.next_deadline()
        seen = h.on_timer(now)
        ringing += rung(seen)
    assert ringing == ["101", "102", "103"]
    assert now == 25.0  # the third member's turn is cut to what is left of the ring time
    assert seen == [StopMember("103", StopReason.RING_TIMEOUT), Overflow(None, OverflowCause.NO_ANSWER)]
    assert list(h.outcomes()) == ["101", "102", "103"]


def test_a_reject_after_the_ring_time_ran_out_overflows_instead_of_ringing_more() -> None:
    h = hunt(group(Strategy.LINEAR, ring_timeout=15.0))
    h.start(0.0)
    h.on_timer(10.0)  # 102 rings until 15
    # The controller reports 102's reject late, after the ring time is over but before on_timer.
    assert h.failed("102", 486, 16.0) == [Overflow(None, OverflowCause.NO_ANSWER)]


def test_rrmemory_continues_after_the_member_rung_last_across_calls() -> None:
    g = group(Strategy.RRMEMORY)
    memory = GroupMemory()
    first = hunt(g, memory=memory)
    assert first.start(0.0) == [RingMember("101")]
    first.failed("101", 486, 1.0)  # 102 rings
    first.answered("102", 2.0)
    second = hunt(g, memory=memory)
    assert second.start(5.0) == [RingMember("103")]
    assert second.order == ("103", "101", "102")
    second.answered("103", 6.0)
    third = hunt(g, memory=memory)
    assert third.start(7.0) == [RingMember("101")]  # wraps around


def test_rrmemory_keeps_the_turn_when_the_next_member_is_logged_out() -> None:
    g = group(Strategy.RRMEMORY, ("101", "102", "103", "104"))
    memory = GroupMemory()
    memory.rung(g, "102")
    candidates = [*free("101", "102", "104"), Candidate("103", available=False, busy=False)]
    assert hunt(g, candidates, memory).start(0.0) == [RingMember("104")]


def test_rrmemory_memory_is_per_group() -> None:
    memory = GroupMemory()
    a = group(Strategy.RRMEMORY, name="lab")
    memory.rung(a, "102")
    assert hunt(group(Strategy.RRMEMORY, name="reception"), memory=memory).start(0.0) == [RingMember("101")]
    assert hunt(a, memory=memory).start(0.0) == [RingMember("103")]


@pytest.mark.parametrize(
    ("strategy", "answers", "order"),
    [
        # leastrecent: never answered first, then whoever answered longest ago; ties in member order.
        (Strategy.LEASTRECENT, [("101", 50.0), ("102", 10.0)], ("103", "102", "101")),
        (Strategy.LEASTRECENT, [("102", 10.0)], ("101", "103", "102")),
        (Strategy.LEASTRECENT, [("103", 1.0), ("101", 2.0), ("102", 3.0)], ("103", "101", "102")),
        # fewestcalls: fewest answered calls first; ties in member order.
        (
            Strategy.FEWESTCALLS,
            [("101", 1.0), ("101", 2.0), ("101", 3.0), ("102", 4.0)],
            ("103", "102", "101"),
        ),
        (Strategy.FEWESTCALLS, [("103", 1.0), ("101", 2.0)], ("102", "101", "103")),
        (Strategy.FEWESTCALLS, [], MEMBERS),
    ],
)
def test_leastrecent_and_fewestcalls_order_from_memory(
    strategy: Strategy, answers: list[tuple[str, float]], order: tuple[str, ...]
) -> None:
    g = group(strategy)
    memory = GroupMemory()
    for extension, at in answers:
        memory.answered(g, extension, at)
    h = hunt(g, memory=memory)
    assert h.start(100.0) == [RingMember(order[0])]
    assert h.order == order


def test_an_answer_is_remembered_for_the_next_call() -> None:
    g = group(Strategy.FEWESTCALLS)
    memory = GroupMemory()
    first = hunt(g, memory=memory)
    first.start(0.0)
    first.answered("101", 4.0)
    assert memory.answered_calls(g, "101") == 1
    assert memory.last_answered(g, "101") == 4.0
    assert hunt(g, memory=memory).start(10.0) == [RingMember("102")]


def test_random_with_a_seed_rings_each_member_exactly_once() -> None:
    members = ("101", "102", "103", "104", "105", "106")
    g = group(Strategy.RANDOM, members, ring_timeout=600.0)
    orders = set()
    for seed in range(8):
        h = hunt(g, rng=random.Random(seed))
        ringing = rung(h.start(0.0))
        while not h.done:
            ringing += rung(h.on_timer(h.next_deadline()))
        assert sorted(ringing) == sorted(members)
        assert tuple(ringing) == h.order
        again = hunt(g, rng=random.Random(seed))
        again.start(0.0)
        assert again.order == h.order  # the seed decides
        orders.add(h.order)
    assert len(orders) > 1  # and different seeds give different orders


# -- who may ring --------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", list(Strategy))
def test_busy_members_are_skipped_unless_ring_busy(strategy: Strategy) -> None:
    candidates = [Candidate("101", True, busy=True), *free("102", "103")]
    skipping = hunt(group(strategy), candidates, rng=random.Random(3))
    skipping.start(0.0)
    assert "101" not in skipping.order
    ringing = hunt(group(strategy, ring_busy=True), candidates, rng=random.Random(3))
    ringing.start(0.0)
    assert sorted(ringing.order) == ["101", "102", "103"]


@pytest.mark.parametrize("strategy", list(Strategy))
def test_unavailable_members_and_strangers_never_ring(strategy: Strategy) -> None:
    candidates = [
        Candidate("101", available=False, busy=False),
        Candidate("102", available=False, busy=True),
        *free("103", "999"),  # 999 is not a member of the group
    ]
    h = hunt(group(strategy, ring_busy=True), candidates, rng=random.Random(3))
    assert h.start(0.0) == [RingMember("103")]
    assert h.order == ("103",)


def test_linear_order_is_member_order_whatever_order_the_candidates_come_in() -> None:
    h = hunt(group(Strategy.LINEAR), free("103", "101", "102"))
    h.start(0.0)
    assert h.order == MEMBERS


@pytest.mark.parametrize(
    ("candidates", "cause"),
    [
        ([Candidate("101", True, True), Candidate("102", True, True)], OverflowCause.ALL_BUSY),
        ([Candidate("101", False, False)], OverflowCause.NOBODY_AVAILABLE),
        ([], OverflowCause.NOBODY_AVAILABLE),
    ],
)
def test_nobody_to_ring_overflows_at_once(candidates: list[Candidate], cause: OverflowCause) -> None:
    h = hunt(group(Strategy.LINEAR, overflow="300"), candidates)
    assert h.start(0.0) == [Overflow("300", cause)]
    assert h.done and h.next_deadline() == inf


# -- answers, late answers, hang-ups -------------------------------------------------------------


def test_a_member_whose_turn_just_ended_may_still_answer_while_the_hunt_goes_on() -> None:
    h = hunt(group(Strategy.LINEAR))
    h.start(0.0)
    h.on_timer(10.0)  # 101 stopped, 102 rings
    assert h.answered("101", 10.05) == [
        ConnectMember("101"),
        StopMember("102", StopReason.ANSWERED_ELSEWHERE),
    ]
    assert h.outcomes()["101"] is MemberOutcome.ANSWERED


@pytest.mark.parametrize("strategy", [Strategy.RINGALL, Strategy.LINEAR])
def test_an_answer_after_the_hunt_is_over_is_hung_up(strategy: Strategy) -> None:
    h = hunt(group(strategy, ring_timeout=5.0))
    h.start(0.0)
    assert isinstance(h.on_timer(5.0)[-1], Overflow)
    assert h.answered("101", 5.1) == [StopMember("101", StopReason.TOO_LATE)]
    assert h.state is HuntState.OVERFLOWED


def test_a_second_answer_racing_in_is_hung_up_and_the_first_keeps_the_call() -> None:
    h = hunt(group(Strategy.RINGALL))
    h.start(0.0)
    h.answered("102", 1.0)
    assert h.answered("103", 1.0) == [StopMember("103", StopReason.TOO_LATE)]
    assert h.outcomes()["102"] is MemberOutcome.ANSWERED


def test_events_about_members_never_rung_are_ignored() -> None:
    h = hunt(group(Strategy.LINEAR))
    h.start(0.0)
    assert h.failed("103", 486, 1.0) == []
    assert h.answered("103", 1.0) == []
    assert h.ringing("101", 1.0) == []
    assert list(h.outcomes()) == ["101"]


def test_the_caller_hanging_up_stops_whoever_rings() -> None:
    h = hunt(group(Strategy.RINGALL))
    h.start(0.0)
    h.failed("101", 486, 1.0)
    assert h.abandon(2.0) == [
        StopMember("102", StopReason.CALLER_LEFT),
        StopMember("103", StopReason.CALLER_LEFT),
    ]
    assert h.state is HuntState.ABANDONED
    assert h.next_deadline() == inf
    assert h.on_timer(100.0) == []
    assert h.answered("102", 2.1) == [StopMember("102", StopReason.TOO_LATE)]


def test_a_hunt_starts_once() -> None:
    h = hunt(group(Strategy.LINEAR))
    h.start(0.0)
    with pytest.raises(RuntimeError):
        h.start(1.0)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(486, "rejected"), (600, "rejected"), (603, "rejected"), (408, "no answer"), (480, "no answer"),
     (404, "failed"), (500, "failed"), (503, "failed"), (487, "failed")],
)  # fmt: skip
def test_classify(status: int, outcome: str) -> None:
    assert classify(status).value == outcome


# -- back to the transferer ----------------------------------------------------------------------


def test_a_transferred_call_rejected_by_its_target_goes_back_to_the_transferer() -> None:
    g = group(Strategy.LINEAR, ("102",), overflow="300")
    h = hunt(g, free("102"), return_to="101")
    assert h.start(0.0) == [RingMember("102")]
    assert h.failed("102", 603, 3.0) == [ReturnToTransferer("101", ("102",))]
    assert h.state is HuntState.RETURNED


def test_a_transferred_call_nobody_answers_still_overflows() -> None:
    g = group(Strategy.LINEAR, ("102",), overflow="300")
    h = hunt(g, free("102"), return_to="101")
    h.start(0.0)
    assert h.on_timer(10.0) == [
        StopMember("102", StopReason.MEMBER_TIMEOUT),
        Overflow("300", OverflowCause.NO_ANSWER),
    ]


def test_a_transferred_call_to_a_group_passes_a_reject_on_before_going_back() -> None:
    h = hunt(group(Strategy.LINEAR, ("102", "103")), free("102", "103"), return_to="101")
    h.start(0.0)
    assert h.failed("102", 486, 1.0) == [RingMember("103")]
    assert h.failed("103", 486, 2.0) == [ReturnToTransferer("101", ("102", "103"))]


# -- the property: whatever the members do, a hunt ends once, ringing nobody twice ------------------

member_event = st.one_of(
    st.tuples(st.just("answer"), st.integers(0, 4), st.just(0)),
    st.tuples(
        st.just("fail"), st.integers(0, 4), st.sampled_from([404, 408, 480, 486, 487, 500, 503, 600, 603])
    ),
    st.tuples(st.just("tick"), st.integers(0, 4), st.integers(0, 25)),
    st.tuples(st.just("abandon"), st.just(0), st.just(0)),
)


@settings(max_examples=300, deadline=None)
@given(
    strategy=st.sampled_from(list(Strategy)),
    size=st.integers(1, 5),
    # (available, busy), mostly free so that most examples ring several members.
    states=st.lists(
        st.sampled_from([(True, False)] * 4 + [(True, True), (False, False)]), min_size=5, max_size=5
    ),
    ring_busy=st.booleans(),
    member_timeout=st.integers(1, 20),
    ring_timeout=st.integers(0, 80),
    return_to=st.sampled_from([None, "999"]),
    seed=st.integers(0, 1000),
    events=st.lists(member_event, max_size=30),
)
def test_a_hunt_rings_each_member_at_most_once_and_ends_exactly_once(
    strategy: Strategy,
    size: int,
    states: list[tuple[bool, bool]],
    ring_busy: bool,
    member_timeout: int,
    ring_timeout: int,
    return_to: str | None,
    seed: int,
    events: list[tuple[str, int, int]],
) -> None:
    members = [f"10{i}" for i in range(size)]
    g = group(
        strategy, members, member_timeout=member_timeout, ring_timeout=ring_timeout, ring_busy=ring_busy
    )
    candidates = [
        Candidate(ext, available, busy) for ext, (available, busy) in zip(members, states, strict=False)
    ]
    h = Hunt(g, candidates, GroupMemory(), random.Random(seed), return_to=return_to)

    # The controller's view: legs it was told to ring, legs still live, legs that sent a final answer.
    ever_rung: list[str] = []
    live: set[str] = set()
    final: set[str] = set()
    endings: list[HuntCommand] = []
    abandoned = False

    def carry_out(commands: list[HuntCommand]) -> None:
        for command in commands:
            assert not endings or not isinstance(command, RingMember), "rang after the hunt ended"
            match command:
                case RingMember(extension=ext):
                    assert ext not in ever_rung, "rang a member twice"
                    ever_rung.append(ext)
                    live.add(ext)
                case StopMember(extension=ext):
                    live.discard(ext)
                case ConnectMember(extension=ext):
                    assert ext in ever_rung
                    live.discard(ext)
                    endings.append(command)
                case Overflow() | ReturnToTransferer():
                    endings.append(command)

    now = 0.0

    def run_timers() -> None:
        for _ in range(100):
            if h.next_deadline() > now:
                return
            carry_out(h.on_timer(now))
        raise AssertionError("on_timer made no progress")

    carry_out(h.start(now))
    for kind, index, value in events:
        ext = members[index % size]
        if kind == "tick":
            now += value
            run_timers()
        elif kind == "abandon":
            if not h.done:
                abandoned = True
            carry_out(h.abandon(now))
        elif ext in ever_rung and ext not in final:  # the controller only reports legs it has
            final.add(ext)
            if kind == "answer":
                carry_out(h.answered(ext, now))
            else:
                live.discard(ext)
                carry_out(h.failed(ext, value, now))
    while not h.done:
        assert h.next_deadline() < inf, "a hunt that waits for nothing must be over"
        now = max(now, h.next_deadline())
        run_timers()

    assert len(endings) == (0 if abandoned else 1)
    if abandoned:
        assert h.state is HuntState.ABANDONED
    else:
        expected = {ConnectMember: HuntState.ANSWERED, Overflow: HuntState.OVERFLOWED}
        assert h.state is expected.get(type(endings[0]), HuntState.RETURNED)
        assert not isinstance(endings[0], ReturnToTransferer) or return_to is not None
    assert live == set(), "a member is left ringing"
    assert list(h.outcomes()) == ever_rung
    assert MemberOutcome.RINGING not in h.outcomes().values()
    assert h.next_deadline() == inf
    eligible = {c.extension for c in candidates if c.available and (ring_busy or not c.busy)}
    assert set(ever_rung) <= eligible
    if endings and isinstance(endings[0], ConnectMember):
        assert list(h.outcomes().values()).count(MemberOutcome.ANSWERED) == 1
