"""The timer wheel against the plain rule it keeps: a timer comes out once the clock reaches its
deadline, never before, earliest first."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentral.pbx.sip.timers import TimerWheel


def test_a_timer_comes_out_at_its_deadline_not_before() -> None:
    wheel: TimerWheel[str] = TimerWheel()
    wheel.push(0.5, "a")
    assert wheel.next_deadline() == 0.5
    assert wheel.pop_due(0.499) == []
    assert wheel.pop_due(0.5) == [(0.5, "a")]
    assert wheel.next_deadline() is None and len(wheel) == 0


def test_timers_come_out_earliest_first_across_slots_and_within_one() -> None:
    wheel: TimerWheel[str] = TimerWheel(tick=0.01, slots=8)
    for at, name in [(0.034, "d"), (0.031, "c"), (0.005, "a"), (0.0051, "b"), (5.0, "far")]:
        wheel.push(at, name)
    assert wheel.next_deadline() == 0.005
    assert [name for _, name in wheel.pop_due(0.0335)] == ["a", "b", "c"]
    assert wheel.next_deadline() == 0.034
    assert [name for _, name in wheel.pop_due(1.0)] == ["d"]
    # Beyond the window (8 slots of 10 ms) a timer waits in the heap, and still comes out on time.
    assert wheel.next_deadline() == 5.0
    assert wheel.pop_due(4.99) == []
    assert wheel.pop_due(5.0) == [(5.0, "far")]


def test_a_timer_pushed_behind_the_first_ones_is_not_lost() -> None:
    wheel: TimerWheel[str] = TimerWheel(tick=0.01, slots=8)
    wheel.push(32.0, "late")  # the first timer puts the window at 32 s
    wheel.push(0.2, "soon")
    assert wheel.next_deadline() == 0.2
    assert wheel.pop_due(0.2) == [(0.2, "soon")]
    assert wheel.pop_due(31.9) == []
    assert wheel.pop_due(40.0) == [(32.0, "late")]


def test_timers_before_the_first_one_go_on_the_wheel_not_into_the_heap() -> None:
    # A server's first timer is often Timer J, 32 s ahead; the calls of the next 32 s set timers
    # before it, and each of those in the heap would cost a logarithmic push and pop.
    wheel: TimerWheel[str] = TimerWheel(tick=0.01, slots=4096)
    wheel.push(132.0, "J")
    for i in range(100):
        wheel.push(100.0 + i * 0.01, f"t{i}")
    assert wheel._far == []
    assert [name for _, name in wheel.pop_due(100.995)] == [f"t{i}" for i in range(100)]
    assert wheel.pop_due(132.0) == [(132.0, "J")]


def test_the_window_moves_back_only_as_far_as_its_latest_timer_allows() -> None:
    wheel: TimerWheel[str] = TimerWheel(tick=0.01, slots=8)
    wheel.push(1.0, "latest")  # slot 100: the window may start no earlier than slot 93
    wheel.push(0.95, "near")  # slot 95: the window moves back to it
    wheel.push(0.1, "early")  # slot 10: too far back, it waits in the heap
    assert [entry[2] for entry in wheel._far] == ["early"]
    assert [name for _, name in wheel.pop_due(2.0)] == ["early", "near", "latest"]


def test_compact_drops_the_timers_no_longer_needed() -> None:
    wheel: TimerWheel[int] = TimerWheel(tick=0.01, slots=16)
    for i in range(100):
        wheel.push(i * 0.05, i)
    wheel.compact(lambda at, i: i % 10 == 0)
    assert len(wheel) == 10 and wheel.next_deadline() == 0.0
    assert [i for _, i in wheel.pop_due(10.0)] == list(range(0, 100, 10))


def test_slots_must_be_a_power_of_two() -> None:
    with pytest.raises(ValueError, match="power of two"):
        TimerWheel(slots=100)


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("push"), st.floats(min_value=0.0, max_value=3.0)),
            st.tuples(st.just("advance"), st.floats(min_value=0.0, max_value=1.5)),
            st.tuples(st.just("compact"), st.integers(min_value=2, max_value=4)),
        ),
        max_size=80,
    ),
    slots=st.sampled_from([2, 8, 64]),
)
def test_the_wheel_fires_exactly_what_a_sorted_list_would(steps: list[tuple[str, float]], slots: int) -> None:
    wheel: TimerWheel[int] = TimerWheel(tick=0.01, slots=slots)
    held: list[tuple[float, int]] = []
    now = 0.0
    for n, (kind, value) in enumerate(steps):
        if kind == "push":
            # Deadlines from a little behind the clock to a few seconds ahead, as a layer sets them.
            at = max(0.0, now - 0.1) + value
            wheel.push(at, n)
            held.append((at, n))
        elif kind == "advance":
            now += value
            due = sorted((e for e in held if e[0] <= now), key=lambda e: e[0])
            held = [e for e in held if e[0] > now]
            fired = wheel.pop_due(now)
            assert [at for at, _ in fired] == [at for at, _ in due]
            assert sorted(i for _, i in fired) == sorted(i for _, i in due)
        else:
            keep = int(value)
            wheel.compact(lambda at, i, keep=keep: i % keep == 0)
            held = [e for e in held if e[1] % keep == 0]
        assert len(wheel) == len(held)
        expected = min((at for at, _ in held), default=None)
        assert wheel.next_deadline() == expected
