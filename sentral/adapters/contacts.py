"""The ``contacts`` adapter: callers found in Sentral's own contacts of the clinic.

It answers from the directory snapshot it is handed (``DirectoryReader``), so a lookup is a
dictionary read. Contacts have no national ID, so ``by_national_id`` never matches.
"""

from __future__ import annotations

from types import MappingProxyType

from sentral.adapters.caller import Match, parse_kind
from sentral.config.directory import AdapterEntry, Directory


class ContactsAdapter:
    """Looks callers up in the clinic's contacts (``sentral contact add``)."""

    def __init__(self, entry: AdapterEntry) -> None:
        self.name = entry.name
        self.domain = entry.domain
        self._by_number: MappingProxyType[str, Match] = MappingProxyType({})

    def use_directory(self, directory: Directory) -> None:
        """Index the clinic's contacts of ``directory`` by number; the first by name wins a shared number."""
        found: dict[str, Match] = {}
        for contact in directory.contacts.get(self.domain, ()):
            found.setdefault(contact.number, Match(contact.name, parse_kind(contact.kind), "", self.name))
        self._by_number = MappingProxyType(found)

    async def by_number(self, e164: str) -> Match | None:
        """The contact with number ``e164``, if any."""
        return self._by_number.get(e164)

    async def by_national_id(self, national_id: str) -> Match | None:
        """Never a match: contacts carry no national ID."""
        return None

    async def close(self) -> None:
        """Nothing to release."""


def contacts_adapter(entry: AdapterEntry) -> ContactsAdapter:
    """The ``contacts`` entry point."""
    return ContactsAdapter(entry)


__all__ = ["ContactsAdapter", "contacts_adapter"]
