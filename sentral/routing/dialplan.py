"""The dial plan, first cut: who a dialled number reaches.

Theory of operation: a call enters with the caller's clinic and the Request-URI it dialled
(``sip:1002@clinic.test``, ``sip:1002@127.0.0.1``, ``tel:1002`` or a bare ``1002``). ``DialPlan``
asks an ordered list of resolvers, each a plain object with ``resolve(query) -> Decision | None``;
the first that answers decides. A resolver that does not recognise the number returns None and
the next one is asked; when none answers, the number does not exist here (404).

This first cut has one resolver, ``ExtensionResolver``: a member of staff's extension in the
caller's clinic rings every registered contact of that extension (``Ring``); a known extension
with no registration is temporarily unavailable (``Reject`` 480). Groups, functions, roles,
parking lots and trunks are further resolvers placed in front of it (a group number, a function
name, ``*8xx`` for a park lot) or behind it (anything with a country code goes to a trunk): none
of them changes this module's shape, only the list handed to ``DialPlan``.

Everything here is pure: the directory snapshot and a bindings lookup come in, a decision goes
out. Nothing sends, sleeps or queries a database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sentral.config.directory import ClinicEntry, Directory, StaffEntry
from sentral.config.store import BindingRow

# (domain, extension) -> the live bindings of that address of record.
BindingsLookup = Callable[[tuple[str, str]], Sequence[BindingRow]]


@dataclass(frozen=True, slots=True)
class Query:
    """One routing question: who does ``number``, dialled by a phone of ``clinic``, reach?"""

    clinic: ClinicEntry
    number: str
    directory: Directory
    bindings: BindingsLookup


@dataclass(frozen=True, slots=True)
class Ring:
    """Ring these contacts in parallel; ``extension`` and ``name`` describe who is called."""

    extension: str
    name: str
    contacts: tuple[BindingRow, ...]


@dataclass(frozen=True, slots=True)
class Reject:
    """Refuse the call with this status (404 nobody has that number, 480 nobody is logged on)."""

    status: int
    reason: str


Decision = Ring | Reject


class Resolver(Protocol):
    """One rule of the dial plan: a decision for numbers it knows, None for the others."""

    def resolve(self, query: Query) -> Decision | None: ...


class ExtensionResolver:
    """A staff extension of the caller's clinic rings all its registered contacts."""

    __slots__ = ()

    def resolve(self, query: Query) -> Decision | None:
        staff: StaffEntry | None = query.directory.staff_for(query.clinic.domain, query.number)
        if staff is None:
            return None
        contacts = tuple(query.bindings((staff.domain, staff.extension)))
        if not contacts:
            return Reject(480, "Temporarily Unavailable")
        return Ring(staff.extension, staff.name, contacts)


NOT_FOUND = Reject(404, "Not Found")


class DialPlan:
    """Resolvers in order; the first decision wins, and no decision means 404."""

    __slots__ = ("resolvers",)

    def __init__(self, resolvers: Sequence[Resolver] | None = None) -> None:
        self.resolvers: tuple[Resolver, ...] = (
            tuple(resolvers) if resolvers is not None else (ExtensionResolver(),)
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
    return "".join(c for c in user if c not in "-.() ")


__all__ = [
    "BindingsLookup",
    "Decision",
    "DialPlan",
    "ExtensionResolver",
    "Query",
    "Reject",
    "Resolver",
    "Ring",
    "dialled_number",
]
