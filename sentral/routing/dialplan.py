"""The dial plan, first cut: who a dialled number reaches.

Theory of operation: a call enters with the caller's clinic and the Request-URI it dialled
(``sip:1002@clinic.test``, ``sip:1002@127.0.0.1``, ``tel:1002`` or a bare ``1002``). ``DialPlan``
asks an ordered list of resolvers, each a plain object with ``resolve(query) -> Decision | None``;
the first that answers decides. A resolver that does not recognise the number returns None and
the next one is asked; when none answers, the number does not exist here (404).

The default plan asks, in order:

- ``FeatureCodeResolver``: the feature codes staff dial to log in and out (``FEATURE_CODES``) and
  to forward their calls (``FORWARD_CODES``: ``*21*NUMBER#`` always, ``*67*NUMBER#`` when busy,
  ``*61*NUMBER#`` on no answer, ``*61*NUMBER*SEC#`` after SEC seconds; ``#21#``, ``#67#``, ``#61#``
  clear one and ``##002#`` all). The closing ``#`` may be left out or sent as ``%23``;
- ``ParkResolver`` (``sentral.routing.park``): a park lot's number (``Park``, refused when dialled
  with nothing to park) and its slots (``Retrieve``, the call parked there);
- ``PickupResolver`` (``sentral.routing.pickup``): ``*8`` and ``**EXT`` pick up a ringing call
  (``Pickup``);
- ``NumberResolver``: a group's or function's number or acute number (``RingGroup``, which call
  control hands to the group's hunt and queue), or a role's number;
- ``RoleResolver``: ``role-NAME`` rings everyone holding that role whose phone is on, but for the
  caller (a role, like a group, never rings the caller's own phones);
- ``ExtensionResolver``: a member of staff's extension rings every registered contact of that
  extension (``Ring``); a known extension with no registration, or whose phone is logged off, is
  temporarily unavailable (``Reject`` 480).

- ``AnnouncementResolver``: ``announcement:NAME``, where a public number may lead, answers and
  plays the prompt NAME (``Play``);
- ``OutsideResolver`` (``sentral.routing.outside``), last: a number outside the clinic goes out on a
  trunk (``Outside``) or is refused by the clinic's outbound policy (``Refused``).

Everything here is pure: the directory snapshot and a bindings lookup come in, a decision goes
out. Nothing sends, sleeps or queries a database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from sentral.config.directory import ClinicEntry, Directory, ForwardKind, GroupEntry, RoleEntry, StaffEntry
from sentral.config.store import BindingRow
from sentral.routing.outside import Outside, Refused, outbound
from sentral.routing.park import Park, ParkResolver, Retrieve
from sentral.routing.pickup import Pickup, PickupResolver

# (domain, extension) -> the live bindings of that address of record.
BindingsLookup = Callable[[tuple[str, str]], Sequence[BindingRow]]


@dataclass(slots=True, init=False, unsafe_hash=True)
class Query:
    """One routing question: who does ``number``, dialled by a phone of ``clinic``, reach?
    ``caller`` is the caller's extension: a role they hold does not ring their own phones."""

    clinic: ClinicEntry
    number: str
    directory: Directory
    bindings: BindingsLookup
    caller: str

    def __init__(
        self,
        clinic: ClinicEntry,
        number: str,
        directory: Directory,
        bindings: BindingsLookup,
        caller: str = "",
    ) -> None:
        self.clinic = clinic
        self.number = number
        self.directory = directory
        self.bindings = bindings
        self.caller = caller


@dataclass(slots=True, init=False, unsafe_hash=True)
class Ring:
    """Ring these contacts in parallel; ``extension`` and ``name`` describe who is called.

    ``direct`` is a call to one person: their reject ends the call (the clinic's rule). A role
    call rings several people, and one of them rejecting leaves the others ringing.
    """

    extension: str
    name: str
    contacts: tuple[BindingRow, ...]
    direct: bool = True

    def __init__(
        self, extension: str, name: str, contacts: tuple[BindingRow, ...], direct: bool = True
    ) -> None:
        self.extension = extension
        self.name = name
        self.contacts = contacts
        self.direct = direct


@dataclass(frozen=True, slots=True)
class RingGroup:
    """Ring a group or function by its strategy; ``acute`` when its acute number was dialled."""

    group: GroupEntry
    acute: bool


class FeatureCode(Enum):
    """What a feature code dialled from a phone does to its own member of staff."""

    TOGGLE_FUNCTIONS = "toggle functions"  # *45: log in to every function, or out of all
    TOGGLE_GROUPS = "toggle groups"  # *46: the same for groups
    TOGGLE_PHONE = "toggle phone"  # *47: log the phone off (it receives nothing) or on again
    TOGGLE_ONE = "toggle one"  # *48 + a group's or function's number: log in to or out of it
    FORWARD = "forward"  # *21*, *67*, *61* + a number: forward always, when busy, on no answer
    CLEAR_FORWARD = "clear forward"  # #21#, #67#, #61#: clear that forward; ##002#: every one


# The codes as dialled; *48 takes the group's or function's number after it.
FEATURE_CODES = {
    "*45": FeatureCode.TOGGLE_FUNCTIONS,
    "*46": FeatureCode.TOGGLE_GROUPS,
    "*47": FeatureCode.TOGGLE_PHONE,
    "*48": FeatureCode.TOGGLE_ONE,
}


# The forwarding codes (GSM's), as dialled without the closing '#'; a kind of None clears all.
FORWARD_CODES = {"*21*": ForwardKind.ALWAYS, "*67*": ForwardKind.BUSY, "*61*": ForwardKind.NO_ANSWER}
CLEAR_FORWARD_CODES: dict[str, ForwardKind | None] = {
    "#21": ForwardKind.ALWAYS,
    "#67": ForwardKind.BUSY,
    "#61": ForwardKind.NO_ANSWER,
    "##002": None,
}


@dataclass(frozen=True, slots=True)
class Feature:
    """A feature code: ``group`` is the one ``*48`` names; ``forward`` the kind of forward a
    forwarding code sets or clears (None with ``CLEAR_FORWARD``: all of them), ``number`` where it
    leads and ``after`` the seconds of ringing a no-answer forward waits, if dialled."""

    code: FeatureCode
    group: GroupEntry | None = None
    forward: ForwardKind | None = None
    number: str | None = None
    after: int | None = None


@dataclass(frozen=True, slots=True)
class Reject:
    """Refuse the call with this status (404 nobody has that number, 480 nobody is logged on)."""

    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class Play:
    """Answer the call, play these prompts, and hang up (a public number's announcement)."""

    names: tuple[str, ...]


Decision = Ring | RingGroup | Feature | Reject | Park | Retrieve | Pickup | Play | Outside | Refused


class Resolver(Protocol):
    """One rule of the dial plan: a decision for numbers it knows, None for the others."""

    def resolve(self, query: Query) -> Decision | None: ...


UNAVAILABLE = Reject(480, "Temporarily Unavailable")
NOT_FOUND = Reject(404, "Not Found")


class ExtensionResolver:
    """A staff extension of the caller's clinic rings all its registered contacts."""

    def resolve(self, query: Query) -> Decision | None:
        staff: StaffEntry | None = query.directory.staff_for(query.clinic.domain, query.number)
        if staff is None:
            return None
        if not staff.phone_on:
            return UNAVAILABLE
        contacts = tuple(query.bindings((staff.domain, staff.extension)))
        if not contacts:
            return UNAVAILABLE
        return Ring(staff.extension, staff.name, contacts)


class FeatureCodeResolver:
    """``*45``, ``*46``, ``*47`` and ``*48NUMBER`` (``FEATURE_CODES``), and the forwarding codes
    (``FORWARD_CODES``, ``CLEAR_FORWARD_CODES``)."""

    def resolve(self, query: Query) -> Decision | None:
        number = query.number
        if not number.startswith(("*", "#", "%23")):
            return None
        forwarding = _forwarding_code(query)
        if forwarding is not None:
            return forwarding
        code = FEATURE_CODES.get(number[:3])
        if code is None:
            return None
        if code is not FeatureCode.TOGGLE_ONE:
            return Feature(code) if len(number) == 3 else NOT_FOUND
        target = query.directory.number(query.clinic.domain, number[3:])
        if not isinstance(target, GroupEntry) or target.number != number[3:]:
            return NOT_FOUND
        return Feature(code, target)


def _forwarding_code(query: Query) -> Decision | None:
    """The decision for a forwarding code, or None when ``query`` dials none."""
    # Phones send the closing '#' as is, escaped, or not at all.
    number = query.number.replace("%23", "#")
    if number.endswith("#") and len(number) > 1:
        number = number[:-1]
    if number in CLEAR_FORWARD_CODES:
        return Feature(FeatureCode.CLEAR_FORWARD, forward=CLEAR_FORWARD_CODES[number])
    kind = FORWARD_CODES.get(number[:4])
    if kind is None:
        return None
    target, star, seconds = number[4:].partition("*")
    after = None
    if star:
        if kind is not ForwardKind.NO_ANSWER or not (seconds.isascii() and seconds.isdigit()):
            return NOT_FOUND
        after = int(seconds)
    domain = query.clinic.domain
    known = query.directory.staff_for(domain, target) is not None or query.directory.number(domain, target)
    if not target or not known:
        return NOT_FOUND  # no such number here (outside numbers need a trunk)
    return Feature(FeatureCode.FORWARD, forward=kind, number=target, after=after)


def _ring_role(query: Query, role: RoleEntry) -> Decision:
    contacts: list[BindingRow] = []
    for staff in query.directory.holders(role.domain, role.name):
        # The caller's own phones never ring for their own call; nobody else is unavailable.
        if staff.phone_on and staff.extension != query.caller:
            contacts.extend(query.bindings((staff.domain, staff.extension)))
    if not contacts:
        return UNAVAILABLE
    return Ring(role.number or f"role-{role.name}", role.name, tuple(contacts), direct=False)


class NumberResolver:
    """A group's or function's number or acute number, or a role's number."""

    def resolve(self, query: Query) -> Decision | None:
        target = query.directory.number(query.clinic.domain, query.number)
        if target is None:
            return None
        if isinstance(target, RoleEntry):
            return _ring_role(query, target)
        return RingGroup(target, acute=query.number == target.acute_number)


class RoleResolver:
    """``role-NAME`` rings everyone holding the role NAME whose phone is on."""

    def resolve(self, query: Query) -> Decision | None:
        prefix, dash, name = query.number.partition("-")
        if not dash or prefix.lower() != "role":
            return None
        role = query.directory.role(query.clinic.domain, name)
        return _ring_role(query, role) if role is not None else NOT_FOUND


ANNOUNCEMENT = "announcement:"


class AnnouncementResolver:
    """``announcement:NAME`` plays the prompt NAME to the caller (where a public number leads)."""

    def resolve(self, query: Query) -> Decision | None:
        if not query.number.startswith(ANNOUNCEMENT):
            return None
        name = query.number[len(ANNOUNCEMENT) :]
        return Play((name,)) if name else NOT_FOUND


class OutsideResolver:
    """A number outside the clinic: out on a trunk, or refused by the clinic's outbound policy.
    Asked last, so that a number of the clinic's own always rings inside."""

    def resolve(self, query: Query) -> Decision | None:
        staff = query.directory.staff_for(query.clinic.domain, query.caller) if query.caller else None
        return outbound(query.number, query.clinic, staff)


class DialPlan:
    """Resolvers in order; the first decision wins, and no decision means 404."""

    def __init__(self, resolvers: Sequence[Resolver] | None = None) -> None:
        self.resolvers: tuple[Resolver, ...] = (
            tuple(resolvers)
            if resolvers is not None
            else (
                FeatureCodeResolver(),
                ParkResolver(),
                PickupResolver(),
                NumberResolver(),
                RoleResolver(),
                ExtensionResolver(),
                AnnouncementResolver(),
                OutsideResolver(),
            )
        )

    def route(self, query: Query) -> Decision:
        """The decision for ``query``."""
        for resolver in self.resolvers:
            decision = resolver.resolve(query)
            if decision is not None:
                return decision
        return NOT_FOUND


def dialled_number(uri_text: str) -> str:
    """The number a Request-URI dials: its user part (``sip:1002@host``), a ``tel:`` number or a bare
    number, with visual separators (``-``, ``.``, spaces, parentheses) removed."""
    text = uri_text.strip()
    scheme, colon, rest = text.partition(":")
    if colon and scheme.lower() in ("sip", "sips", "tel"):
        text = rest
    user = text.split("@", 1)[0] if "@" in text else text
    user = user.split(";", 1)[0].split("?", 1)[0]
    if user.lower().startswith("role-"):
        return user  # a role's name keeps its dashes
    return "".join(c for c in user if c not in "-.() ")


__all__ = [
    "ANNOUNCEMENT",
    "CLEAR_FORWARD_CODES",
    "FEATURE_CODES",
    "FORWARD_CODES",
    "AnnouncementResolver",
    "BindingsLookup",
    "Decision",
    "DialPlan",
    "ExtensionResolver",
    "Feature",
    "FeatureCode",
    "FeatureCodeResolver",
    "NumberResolver",
    "OutsideResolver",
    "Play",
    "Query",
    "Reject",
    "Resolver",
    "Ring",
    "RingGroup",
    "RoleResolver",
    "dialled_number",
]
