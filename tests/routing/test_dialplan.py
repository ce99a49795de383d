"""The dial plan: extension of the caller's clinic -> ring its contacts; 480 and 404 otherwise."""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType

import pytest

from sentral.config.directory import ClinicEntry, Directory, StaffEntry
from sentral.config.store import BindingRow
from sentral.routing.dialplan import DialPlan, Query, Reject, Ring, dialled_number

CLINIC = ClinicEntry("clinic.test", "Clinic", ("MD5",))
OTHER = ClinicEntry("other.test", "Other", ("MD5",))


def staff(domain: str, ext: str) -> StaffEntry:
    return StaffEntry(domain, ext, f"Staff {ext}", (), "x", "y")


DIRECTORY = Directory(
    1,
    MappingProxyType({"clinic.test": CLINIC, "other.test": OTHER}),
    MappingProxyType(
        {
            ("clinic.test", "1002"): staff("clinic.test", "1002"),
            ("clinic.test", "1003"): staff("clinic.test", "1003"),
            ("other.test", "2001"): staff("other.test", "2001"),
        }
    ),
)


def binding(ext: str, port: int) -> BindingRow:
    return BindingRow(
        "clinic.test", ext, f"k{port}", f"sip:{ext}@127.0.0.1:{port}", 9e9, "c", 1, "udp", "127.0.0.1", port,
        "udp:127.0.0.1:5060", 0.0,
    )  # fmt: skip


BINDINGS = {("clinic.test", "1002"): [binding("1002", 5001), binding("1002", 5002)]}


def lookup(aor: tuple[str, str]) -> Sequence[BindingRow]:
    return BINDINGS.get(aor, [])


def route(number: str, clinic: ClinicEntry = CLINIC) -> object:
    return DialPlan().route(Query(clinic, number, DIRECTORY, lookup))


def test_an_extension_with_bindings_rings_every_contact() -> None:
    decision = route("1002")
    assert isinstance(decision, Ring)
    assert decision.name == "Staff 1002"
    assert [row.source_port for row in decision.contacts] == [5001, 5002]


def test_a_known_extension_without_bindings_is_480_and_an_unknown_one_404() -> None:
    assert route("1003") == Reject(480, "Temporarily Unavailable")
    assert route("9999") == Reject(404, "Not Found")


def test_extensions_of_another_clinic_are_not_reachable() -> None:
    assert route("2001") == Reject(404, "Not Found")


def test_resolvers_are_asked_in_order_and_the_first_decision_wins() -> None:
    class Reception:
        def resolve(self, query: Query) -> Reject | None:
            return Reject(486, "Busy Here") if query.number == "100" else None

    plan = DialPlan([Reception(), *DialPlan().resolvers])
    assert plan.route(Query(CLINIC, "100", DIRECTORY, lookup)) == Reject(486, "Busy Here")
    assert isinstance(plan.route(Query(CLINIC, "1002", DIRECTORY, lookup)), Ring)


@pytest.mark.parametrize(
    ("uri", "number"),
    [
        ("sip:1002@clinic.test", "1002"),
        ("sips:1002@10.0.0.1;user=phone", "1002"),
        ("tel:10-02", "1002"),
        ("1002", "1002"),
        ("sip:(100) 2@h", "1002"),
    ],
)
def test_dialled_number(uri: str, number: str) -> None:
    assert dialled_number(uri) == number
