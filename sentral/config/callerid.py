"""Storage of caller ID: each clinic's lookup adapters (in chain order) and its own contacts.

Adapters are kept in ``caller_adapter`` with ``position`` 1..n per clinic, renumbered on every
change so the order is always what ``adapter list`` shows. Which settings a kind needs is checked
here for the built-in kinds; whether a kind is installed at all is the caller's to check (storage
does not load plug-ins). Contacts are kept with their number in E.164; the caller reads national
forms in the clinic's country first. An import adds every contact or none.

Every change bumps the directory version, so a running server picks it up within a second.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from sentral.config.db import StoreError, writing
from sentral.config.directory import AdapterEntry, ContactEntry, read_adapters, read_contacts
from sentral.config.models import CONTACT_KINDS, CallerAdapter, Clinic, Contact, DirectoryVersion
from sentral.config.store import normalize_domain, validate_e164

_ADAPTER_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
MAX_CONTACT_NAME = 200

# What each built-in kind cannot do without: the setting and the option that gives it.
_NEEDS: dict[str, tuple[tuple[str, str], ...]] = {
    "sql": (("url", "--url URL"),),
    "csv": (("file", "--file PATH"),),
    "fhir": (("url", "--url URL"),),
    "contacts": (),
}


@dataclass(frozen=True, slots=True)
class AdapterSettings:
    """What an adapter is and where it looks; ``None`` fields are not used by its kind."""

    kind: str
    url: str | None = None
    query_number: str | None = None
    query_id: str | None = None
    file: str | None = None
    token_file: str | None = None

    @classmethod
    def of(cls, entry: AdapterEntry) -> AdapterSettings:
        """The settings of an existing adapter, to change with ``dataclasses.replace``."""
        return cls(entry.kind, entry.url, entry.query_number, entry.query_id, entry.file, entry.token_file)


def normalize_adapter_name(name: str) -> str:
    """An adapter name in lower case: a letter, then letters, digits, hyphens or underscores."""
    canonical = name.strip().lower()
    if not _ADAPTER_NAME.fullmatch(canonical):
        raise StoreError(
            f"adapter name {name!r} must start with a letter and hold only letters, digits, - and _, such as journal"
        )
    return canonical


def check_settings(name: str, settings: AdapterSettings) -> AdapterSettings:
    """The settings with blanks as None, or StoreError naming what a built-in kind is missing."""
    kind = settings.kind.strip().lower()
    if not re.fullmatch(r"[a-z][a-z0-9_-]{0,63}", kind):
        raise StoreError(f"adapter kind {settings.kind!r} is not a kind name; built in are sql, csv, fhir and contacts")

    def blank(value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    checked = AdapterSettings(
        kind,
        blank(settings.url),
        blank(settings.query_number),
        blank(settings.query_id),
        blank(settings.file),
        blank(settings.token_file),
    )
    for field_name, option in _NEEDS.get(kind, ()):
        if getattr(checked, field_name) is None:
            raise StoreError(f"the {kind} adapter {name} needs {option}")
    if kind == "sql" and checked.query_number is None and checked.query_id is None:
        raise StoreError(f"the sql adapter {name} needs --query-number SQL, --query-id SQL or both")
    return checked


def validate_contact_kind(kind: str) -> str:
    """``kind`` in lower case if it is patient, contact or staff."""
    canonical = kind.strip().lower()
    if canonical not in CONTACT_KINDS:
        raise StoreError(f"contact kind {kind!r} must be one of {', '.join(CONTACT_KINDS)}")
    return canonical


def validate_contact_name(name: str) -> str:
    """The name with its spaces tidied, 1 to 200 characters."""
    text = " ".join(name.split())
    if not text or len(text) > MAX_CONTACT_NAME:
        raise StoreError(f"give the contact a name of 1 to {MAX_CONTACT_NAME} characters, such as --name 'Apotek 1'")
    return text


def _bump_version(connection: Connection) -> None:
    connection.execute(update(DirectoryVersion).values(version=DirectoryVersion.version + 1))


class CallerIdStore:
    """Adapters and contacts: the caller-ID changes the operator makes with the CLI."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._writer = writing(engine)

    # -- adapters ----------------------------------------------------------------------------

    def adapters(self, domain: str | None = None) -> builtins.list[AdapterEntry]:
        """The adapters of a clinic (of every clinic when ``domain`` is None) in chain order."""
        with self._engine.connect() as connection:
            if domain is None:
                return read_adapters(connection)
            canonical = normalize_domain(domain)
            self._require_clinic(connection, canonical)
            return read_adapters(connection, canonical)

    def adapter(self, domain: str, name: str) -> AdapterEntry:
        """The adapter ``name`` of the clinic."""
        canonical, adapter_name = normalize_domain(domain), normalize_adapter_name(name)
        found = next((entry for entry in self.adapters(canonical) if entry.name == adapter_name), None)
        if found is None:
            raise StoreError(f"{canonical} has no adapter {adapter_name}; see `sentral adapter list`")
        return found

    def add_adapter(
        self, domain: str, name: str, settings: AdapterSettings, position: int | None = None
    ) -> AdapterEntry:
        """Add an adapter to the clinic's chain at ``position`` (1 first; None: last)."""
        canonical, adapter_name = normalize_domain(domain), normalize_adapter_name(name)
        checked = check_settings(adapter_name, settings)
        try:
            with self._writer.begin() as connection:
                _bump_version(connection)
                clinic_id = self._require_clinic(connection, canonical)
                order = self._order(connection, clinic_id)
                if adapter_name in order:
                    raise StoreError(f"{canonical} already has an adapter {adapter_name}; change it with `sentral adapter set`")
                connection.execute(
                    insert(CallerAdapter).values(
                        clinic_id=clinic_id, name=adapter_name, position=len(order) + 1, **_columns(checked)
                    )
                )
                self._place(connection, clinic_id, [*order, adapter_name], adapter_name, position)
        except IntegrityError as exc:
            raise StoreError(f"{canonical} already has an adapter {adapter_name}") from exc
        return self.adapter(canonical, adapter_name)

    def change_adapter(
        self, domain: str, name: str, settings: AdapterSettings, position: int | None = None
    ) -> AdapterEntry:
        """Replace the adapter's settings and, given ``position``, move it there in the chain."""
        canonical, adapter_name = normalize_domain(domain), normalize_adapter_name(name)
        checked = check_settings(adapter_name, settings)
        with self._writer.begin() as connection:
            _bump_version(connection)
            clinic_id = self._require_clinic(connection, canonical)
            order = self._order(connection, clinic_id)
            if adapter_name not in order:
                raise StoreError(f"{canonical} has no adapter {adapter_name}; see `sentral adapter list`")
            connection.execute(
                update(CallerAdapter)
                .where(CallerAdapter.clinic_id == clinic_id, CallerAdapter.name == adapter_name)
                .values(**_columns(checked))
            )
            self._place(connection, clinic_id, order, adapter_name, position)
        return self.adapter(canonical, adapter_name)

    def remove_adapter(self, domain: str, name: str) -> AdapterEntry:
        """Take the adapter out of the clinic's chain; returns what it was."""
        entry = self.adapter(domain, name)
        with self._writer.begin() as connection:
            _bump_version(connection)
            clinic_id = self._require_clinic(connection, entry.domain)
            connection.execute(
                delete(CallerAdapter).where(CallerAdapter.clinic_id == clinic_id, CallerAdapter.name == entry.name)
            )
            order = [found for found in self._order(connection, clinic_id) if found != entry.name]
            self._renumber(connection, clinic_id, order)
        return entry

    @staticmethod
    def _order(connection: Connection, clinic_id: int) -> builtins.list[str]:
        return list(
            connection.execute(
                select(CallerAdapter.name)
                .where(CallerAdapter.clinic_id == clinic_id)
                .order_by(CallerAdapter.position, CallerAdapter.name)
            ).scalars()
        )

    def _place(
        self, connection: Connection, clinic_id: int, order: Sequence[str], name: str, position: int | None
    ) -> None:
        names = list(order)
        if position is not None:
            if isinstance(position, bool) or position < 1:
                raise StoreError(f"--position must be 1 (first) or more, not {position}")
            names.remove(name)
            names.insert(min(position, len(names) + 1) - 1, name)
        self._renumber(connection, clinic_id, names)

    @staticmethod
    def _renumber(connection: Connection, clinic_id: int, names: Sequence[str]) -> None:
        for index, found in enumerate(names, start=1):
            connection.execute(
                update(CallerAdapter)
                .where(CallerAdapter.clinic_id == clinic_id, CallerAdapter.name == found)
                .values(position=index)
            )

    # -- contacts ----------------------------------------------------------------------------

    def contacts(self, domain: str | None = None) -> builtins.list[ContactEntry]:
        """The contacts of a clinic (of every clinic when ``domain`` is None) by name."""
        with self._engine.connect() as connection:
            if domain is None:
                return read_contacts(connection)
            canonical = normalize_domain(domain)
            self._require_clinic(connection, canonical)
            return read_contacts(connection, canonical)

    def contact(self, domain: str, name: str) -> ContactEntry:
        """The contact called ``name`` (any case) in the clinic."""
        canonical, wanted = normalize_domain(domain), " ".join(name.split()).lower()
        found = next((entry for entry in self.contacts(canonical) if entry.name.lower() == wanted), None)
        if found is None:
            raise StoreError(f"{canonical} has no contact {name!r}; see `sentral contact list`")
        return found

    def add_contacts(self, domain: str, contacts: Sequence[tuple[str, str, str]]) -> builtins.list[ContactEntry]:
        """Add every (name, E.164 number, kind) to the clinic's contacts, or none of them."""
        canonical = normalize_domain(domain)
        rows: list[dict[str, str]] = []
        seen: set[str] = set()
        for name, number, kind in contacts:
            text = validate_contact_name(name)
            validate_e164(number, f"the number of {text}:")
            if text.lower() in seen:
                raise StoreError(f"the contact {text!r} is given twice; contact names are unique per clinic")
            seen.add(text.lower())
            rows.append({"name": text, "number": number, "kind": validate_contact_kind(kind)})
        try:
            with self._writer.begin() as connection:
                _bump_version(connection)
                clinic_id = self._require_clinic(connection, canonical)
                taken = {
                    existing.lower(): existing
                    for existing in connection.execute(
                        select(Contact.name).where(Contact.clinic_id == clinic_id)
                    ).scalars()
                }
                for row in rows:
                    if row["name"].lower() in taken:
                        raise StoreError(
                            f"{canonical} already has a contact {taken[row['name'].lower()]!r}; "
                            "remove it first or give another name"
                        )
                if rows:
                    connection.execute(insert(Contact), [{"clinic_id": clinic_id, **row} for row in rows])
        except IntegrityError as exc:  # only a change racing this one gets here
            raise StoreError(f"a contact of {canonical} was added meanwhile; try again") from exc
        return [ContactEntry(canonical, row["name"], row["number"], row["kind"]) for row in rows]

    def remove_contact(self, domain: str, name: str) -> ContactEntry:
        """Remove the contact called ``name``; returns what it was."""
        entry = self.contact(domain, name)
        with self._writer.begin() as connection:
            _bump_version(connection)
            clinic_id = self._require_clinic(connection, entry.domain)
            connection.execute(delete(Contact).where(Contact.clinic_id == clinic_id, Contact.name == entry.name))
        return entry

    @staticmethod
    def _require_clinic(connection: Connection, domain: str) -> int:
        clinic_id = connection.execute(select(Clinic.id).where(Clinic.domain == domain)).scalar_one_or_none()
        if clinic_id is None:
            raise StoreError(f"there is no clinic {domain}; see `sentral clinic list`")
        return int(clinic_id)


def _columns(settings: AdapterSettings) -> dict[str, str | None]:
    return {
        "kind": settings.kind,
        "url": settings.url,
        "query_number": settings.query_number,
        "query_id": settings.query_id,
        "file": settings.file,
        "token_file": settings.token_file,
    }


__all__ = [
    "AdapterSettings",
    "CallerIdStore",
    "check_settings",
    "normalize_adapter_name",
    "validate_contact_kind",
    "validate_contact_name",
]
