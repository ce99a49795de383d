"""Park lots: first free slot, retrieve by slot, recall after the timeout, and the dial plan's park rule."""

from __future__ import annotations

from collections.abc import Sequence
from math import inf
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentral.config.directory import ClinicEntry, Directory, GroupEntry, GroupKind, ParkLotEntry, Strategy
from sentral.config.store import BindingRow
from sentral.routing.dialplan import (
    DialPlan,
    ExtensionResolver,
    FeatureCodeResolver,
    NumberResolver,
    Query,
    Reject,
    RingGroup,
    RoleResolver,
)
from sentral.routing.park import (
    GiveUp,
    LotFull,
    Park,
    Parked,
    ParkLot,
    ParkResolver,
    Recall,
    Reparked,
    Retrieve,
    StayState,
)

DOMAIN = "clinic.test"
LOT = ParkLotEntry(DOMAIN, "main", "700", "701", "703", 45.0)


def test_a_lot_lists_its_slots_in_order_and_knows_which_numbers_are_slots() -> None:
    assert LOT.slots == ("701", "702", "703")
    assert [LOT.has_slot(n) for n in ("700", "701", "703", "704", "0701", "7010", "70a", "")] == [
        False, True, True, False, False, False, False, False,
    ]  # fmt: skip
    padded = ParkLotEntry(DOMAIN, "ward", "80", "0098", "0102")
    assert padded.slots == ("0098", "0099", "0100", "0101", "0102")
    assert padded.has_slot("0100") and not padded.has_slot("100") and not padded.has_slot("0103")


# -- parking and retrieving ----------------------------------------------------------------------


def test_calls_take_the_first_free_slot_and_a_full_lot_says_so() -> None:
    lot = ParkLot(LOT)
    assert lot.park("a", "1001", 0.0) == Parked("a", "701")
    assert lot.park("b", "1002", 1.0) == Parked("b", "702")
    assert lot.park("c", "1001", 2.0) == Parked("c", "703")
    assert lot.park("d", "1003", 3.0) == LotFull("d")
    assert "d" not in lot and len(lot) == 3
    # Slot 702 frees up: the next call takes it, ahead of no slot at all.
    assert lot.retrieve("702") == "b"
    assert lot.park("d", "1003", 4.0) == Parked("d", "702")
    assert dict(lot.occupied()) == {"701": "a", "702": "d", "703": "c"}
    assert list(lot.occupied()) == ["701", "702", "703"]


def test_retrieving_takes_the_call_once_and_an_empty_slot_gives_nothing() -> None:
    lot = ParkLot(LOT)
    lot.park("a", "1001", 0.0)
    assert lot.retrieve("702") is None
    assert lot.retrieve("999") is None
    assert lot.retrieve("701") == "a"
    assert lot.retrieve("701") is None
    assert dict(lot.occupied()) == {}
    assert lot.next_deadline() == inf
    assert lot.on_timer(1000.0) == []


def test_a_caller_who_hangs_up_frees_the_slot_and_is_not_recalled() -> None:
    lot = ParkLot(LOT)
    lot.park("a", "1001", 0.0)
    lot.park("b", "1002", 10.0)
    assert lot.leave("a") == "701"
    assert lot.leave("a") is None
    assert lot.slot_of("a") is None and lot.slot_of("b") == "702"
    assert lot.next_deadline() == 55.0
    assert lot.on_timer(55.0) == [Recall("b", "702", "1002", 1)]


def test_parking_one_call_twice_is_a_mistake_of_the_caller() -> None:
    lot = ParkLot(LOT)
    lot.park("a", "1001", 0.0)
    with pytest.raises(ValueError, match="parked already"):
        lot.park("a", "1001", 1.0)


def test_occupied_is_a_read_only_view_in_slot_order_across_widths() -> None:
    lot = ParkLot(ParkLotEntry(DOMAIN, "main", "70", "98", "99"))
    lot.park("a", "1001", 0.0)
    lot.park("b", "1001", 0.0)
    lot.reconfigure(ParkLotEntry(DOMAIN, "main", "70", "100", "101"))
    lot.park("c", "1001", 0.0)
    assert list(lot.occupied().items()) == [("98", "a"), ("99", "b"), ("100", "c")]
    with pytest.raises(TypeError):
        lot.occupied()["98"] = "x"  # type: ignore[index]


# -- recall --------------------------------------------------------------------------------------


def test_a_call_nobody_takes_rings_its_parker_after_the_timeout() -> None:
    lot = ParkLot(LOT)
    lot.park("a", "1001", 100.0)
    lot.park("b", "1002", 110.0)
    assert lot.next_deadline() == 145.0
    assert lot.on_timer(144.9) == []
    assert lot.on_timer(145.0) == [Recall("a", "701", "1001", 1)]
    # While its parker's phone rings the call keeps its slot and its lamp stays lit.
    assert lot.state_of("a") is StayState.RECALLING
    assert dict(lot.occupied()) == {"701": "a", "702": "b"}
    assert lot.next_deadline() == 155.0
    assert lot.on_timer(150.0) == []  # a call being recalled is not recalled again


def test_calls_due_together_are_recalled_longest_waiting_first() -> None:
    lot = ParkLot(LOT)
    lot.park("a", "1001", 5.0)
    lot.park("b", "1002", 0.0)
    lot.park("c", "1003", 5.0)
    assert [r.call_key for r in lot.on_timer(100.0)] == ["b", "a", "c"]
    assert lot.next_deadline() == inf


def test_the_parker_answering_the_recall_takes_the_call_off_the_lot() -> None:
    lot = ParkLot(LOT)
    lot.park("a", "1001", 0.0)
    lot.on_timer(45.0)
    assert lot.leave("a") == "701"
    assert "a" not in lot
    assert lot.recall_failed("a", 60.0) is None  # the recall leg's own end, reported late


def test_an_unanswered_recall_reparks_then_the_lot_gives_up() -> None:
    lot = ParkLot(LOT, max_recalls=2)
    lot.park("a", "1001", 0.0)
    assert lot.on_timer(45.0) == [Recall("a", "701", "1001", 1)]
    assert lot.recall_failed("a", 70.0) == Reparked("a", "701", 115.0)
    assert lot.state_of("a") is StayState.WAITING
    assert lot.next_deadline() == 115.0
    assert lot.on_timer(115.0) == [Recall("a", "701", "1001", 2)]
    assert lot.recall_failed("a", 140.0) == GiveUp("a", "701", "1001", 2)
    assert "a" not in lot and dict(lot.occupied()) == {}
    assert lot.next_deadline() == inf


def test_a_recall_failure_for_a_waiting_or_unknown_call_changes_nothing() -> None:
    lot = ParkLot(LOT)
    lot.park("a", "1001", 0.0)
    assert lot.recall_failed("a", 10.0) is None
    assert lot.recall_failed("zz", 10.0) is None
    assert lot.next_deadline() == 45.0


def test_someone_dialling_the_slot_during_the_recall_still_gets_the_call() -> None:
    lot = ParkLot(LOT)
    lot.park("a", "1001", 0.0)
    lot.on_timer(45.0)
    assert lot.retrieve("701") == "a"
    # Call control stops the recall; that leg's failure arrives afterwards and is ignored.
    assert lot.recall_failed("a", 46.0) is None
    assert lot.park("b", "1002", 47.0) == Parked("b", "701")


def test_a_changed_lot_applies_to_new_calls_and_parked_calls_keep_slot_and_deadline() -> None:
    lot = ParkLot(LOT)
    lot.park("a", "1001", 0.0)
    lot.reconfigure(ParkLotEntry(DOMAIN, "main", "700", "702", "702", 120.0))
    assert lot.park("b", "1002", 10.0) == Parked("b", "702")
    assert lot.park("c", "1002", 10.0) == LotFull("c")
    assert lot.on_timer(45.0) == [Recall("a", "701", "1001", 1)]
    assert lot.next_deadline() == 130.0
    assert lot.retrieve("701") == "a"  # a slot the lot no longer has can still be left


def test_a_lot_must_recall_at_least_once() -> None:
    with pytest.raises(ValueError):
        ParkLot(LOT, max_recalls=0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["park", "retrieve", "leave", "timer", "fail"]),
            st.integers(min_value=0, max_value=5),  # which call or slot
            st.floats(min_value=0, max_value=30, allow_nan=False),  # time passing before the event
        ),
        max_size=60,
    )
)
def test_slots_and_calls_stay_one_to_one_whatever_happens(events: Sequence[tuple[str, int, float]]) -> None:
    lot = ParkLot(ParkLotEntry(DOMAIN, "main", "700", "701", "704", 45.0), max_recalls=2)
    now = 0.0
    for event, which, later in events:
        now += later
        call, slot = f"c{which}", f"70{which}"
        before = dict(lot.occupied())
        if event == "park" and call not in lot:
            result = lot.park(call, "1001", now)
            free = [s for s in lot.lot.slots if s not in before]
            assert result == (Parked(call, free[0]) if free else LotFull(call))
        elif event == "retrieve":
            assert lot.retrieve(slot) == before.get(slot)
        elif event == "leave":
            assert lot.leave(call) == next((s for s, c in before.items() if c == call), None)
        elif event == "timer":
            due = lot.next_deadline()
            recalls = lot.on_timer(now)
            assert (recalls != []) == (now >= due)
            assert all(before[r.slot] == r.call_key and 1 <= r.attempt <= 2 for r in recalls)
            assert lot.next_deadline() > now  # nothing due is left behind
        elif event == "fail":
            recalling = lot.state_of(call) is StayState.RECALLING
            outcome = lot.recall_failed(call, now)
            assert (outcome is not None) == recalling
            if isinstance(outcome, Reparked):
                assert (before[outcome.slot], outcome.deadline) == (call, now + 45.0)
            elif isinstance(outcome, GiveUp):
                assert before[outcome.slot] == call and call not in lot and outcome.recalls == 2
        occupied = dict(lot.occupied())
        assert len(occupied) == len(lot) == len(set(occupied.values())) <= 4
        assert all(lot.slot_of(c) == s for s, c in occupied.items())


# -- the dial plan -------------------------------------------------------------------------------

CLINIC = ClinicEntry(DOMAIN, "Clinic", ("MD5",))
OTHER = ClinicEntry("other.test", "Other", ("MD5",))
DOCTORS = GroupEntry(
    DOMAIN, "doctors", GroupKind.GROUP, "200", None, Strategy.RINGALL, 20.0, 60.0, None, False, 300.0, ()
)
DIRECTORY = Directory(
    1,
    MappingProxyType({DOMAIN: CLINIC, "other.test": OTHER}),
    MappingProxyType({}),
    MappingProxyType({(DOMAIN, "doctors"): DOCTORS}),
    MappingProxyType({}),
    MappingProxyType({(DOMAIN, "200"): DOCTORS, **{(DOMAIN, n): LOT for n in ("700", *LOT.slots)}}),
    MappingProxyType({(DOMAIN, "main"): LOT}),
)


def no_bindings(aor: tuple[str, str]) -> Sequence[BindingRow]:
    return []


def query(number: str, clinic: ClinicEntry = CLINIC) -> Query:
    return Query(clinic, number, DIRECTORY, no_bindings)


def test_the_park_number_parks_and_a_slot_retrieves() -> None:
    resolver = ParkResolver()
    assert resolver.resolve(query("700")) == Park(LOT)
    assert resolver.resolve(query("702")) == Retrieve(LOT, "702")
    assert resolver.resolve(query("704")) is None
    assert resolver.resolve(query("200")) is None
    # Another clinic's park lot is not reachable.
    assert resolver.resolve(query("700", OTHER)) is None


def test_park_numbers_reach_no_resolver_written_before_park_lots() -> None:
    assert DIRECTORY.number(DOMAIN, "700") is None and DIRECTORY.number(DOMAIN, "701") is None
    assert DIRECTORY.park_lot_at(DOMAIN, "701") is LOT and DIRECTORY.park_lot_at(DOMAIN, "200") is None
    assert DIRECTORY.park_lot("Clinic.Test", "MAIN") is LOT
    without_parking = DialPlan([FeatureCodeResolver(), NumberResolver(), RoleResolver(), ExtensionResolver()])
    assert without_parking.route(query("700")) == Reject(404, "Not Found")
    assert without_parking.route(query("200")) == RingGroup(DOCTORS, acute=False)


def test_the_default_dial_plan_has_the_park_rule_and_it_answers_for_its_numbers_only() -> None:
    plan = DialPlan()
    assert plan.route(query("700")) == Park(LOT)
    assert plan.route(query("703")) == Retrieve(LOT, "703")
    assert plan.route(query("200")) == RingGroup(DOCTORS, acute=False)
    assert plan.route(query("705")) == Reject(404, "Not Found")
