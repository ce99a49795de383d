"""Storage operations: the clinic and staff changes the CLI makes, and registration bindings.

``ConfigStore`` validates its input and raises ``StoreError`` with one sentence that says what to
fix, so any front end can show it as is. Every change it commits bumps ``directory_version`` in the
same transaction; a running server notices within its polling interval and reloads its directory.

``BindingStore`` is the registrar's location service on disk. It sits on the registration hot path,
so it uses Core statements and ``executemany``: ``apply`` writes a whole batch of upserts and
deletes in one transaction, and the batching itself is done by ``sentral.config.writer``.
"""

from __future__ import annotations

import builtins
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from sentral.config.db import StoreError, writing
from sentral.config.directory import ClinicEntry, StaffEntry, parse_stored_algorithms
from sentral.config.models import (
    DEFAULT_DIGEST_ALGORITHMS,
    Binding,
    Clinic,
    DirectoryVersion,
    Role,
    ServerSecret,
    Staff,
    StaffRole,
)
from sentral.pbx.sip.auth import compute_ha1

_DOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*")
_EXTENSION = re.compile(r"[0-9]{2,10}")
_ROLE = re.compile(r"[a-z][a-z0-9-]{0,63}")
MIN_PASSWORD_LENGTH = 8
MAX_NAME_LENGTH = 200

# Operator spellings of the digest algorithms, mapped to the names RFC 8760 puts on the wire.
_ALGORITHM_SPELLINGS = {"md5": "MD5", "sha256": "SHA-256", "sha-256": "SHA-256"}


def normalize_domain(domain: str) -> str:
    """A clinic domain in canonical lower case, or ``StoreError`` if it is not a host name."""
    canonical = domain.strip().lower().rstrip(".")
    if len(canonical) > 253 or not _DOMAIN.fullmatch(canonical):
        raise StoreError(f"{domain!r} is not a valid domain; use a host name such as clinic.example")
    return canonical


def validate_extension(extension: str) -> str:
    """The extension if it is 2 to 10 digits, else ``StoreError``."""
    if not _EXTENSION.fullmatch(extension):
        raise StoreError(f"extension {extension!r} must be 2 to 10 digits, such as 1001")
    return extension


def validate_name(name: str, extension: str) -> str:
    """The trimmed display name, which must not be empty."""
    trimmed = " ".join(name.split())
    if not trimmed:
        raise StoreError(f"give extension {extension} a name, such as --name 'Kari Nordmann'")
    if len(trimmed) > MAX_NAME_LENGTH:
        raise StoreError(f"the name of extension {extension} is longer than {MAX_NAME_LENGTH} characters")
    return trimmed


def validate_password(password: str) -> str:
    """The password if it is long enough to stand up to guessing over SIP digest."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise StoreError(f"the password must be at least {MIN_PASSWORD_LENGTH} characters long")
    return password


def normalize_role(role: str) -> str:
    """A role name in lower case: a letter, then letters, digits or hyphens."""
    canonical = role.strip().lower()
    if not _ROLE.fullmatch(canonical):
        raise StoreError(
            f"role {role!r} must start with a letter and hold only letters, digits and hyphens, "
            "such as medical-secretary"
        )
    return canonical


def parse_digest_algorithms(text: str) -> tuple[str, ...]:
    """Parse ``sha256,md5``, ``md5`` or ``sha256`` into wire names in challenge order."""
    names: list[str] = []
    for part in text.split(","):
        name = _ALGORITHM_SPELLINGS.get(part.strip().lower())
        if name is None:
            raise StoreError(f"digest algorithms {text!r}: choose sha256,md5 or md5 or sha256")
        if name in names:
            raise StoreError(f"digest algorithms {text!r}: name each algorithm once")
        names.append(name)
    return tuple(names)


def _bump_version(connection: Connection) -> None:
    connection.execute(update(DirectoryVersion).values(version=DirectoryVersion.version + 1))


@dataclass(frozen=True, slots=True)
class NewStaff:
    """A member of staff to add: extension, name, password and roles."""

    extension: str
    name: str
    password: str
    roles: tuple[str, ...] = ()


def _taken(extension: str, domain: str) -> str:
    return f"extension {extension} already exists in {domain}; choose another number or remove it first"


class ConfigStore:
    """Clinics, staff and roles: the changes the operator makes with the CLI."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._writer = writing(engine)

    # -- server secrets ----------------------------------------------------------------------

    def server_secret(self, name: str) -> bytes:
        """The 32-byte secret called ``name``, created on first use and kept from then on.

        Two servers starting at once on one database agree: the first insert wins and both read it.
        """
        with self._writer.begin() as connection:
            found = connection.execute(select(ServerSecret.value).where(ServerSecret.name == name)).scalar()
            if found is None:
                found = secrets.token_hex(32)
                connection.execute(insert(ServerSecret).values(name=name, value=found))
        return bytes.fromhex(found)

    # -- clinics -----------------------------------------------------------------------------

    def clinics(self) -> builtins.list[ClinicEntry]:
        """Every clinic, ordered by domain."""
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(Clinic.domain, Clinic.name, Clinic.digest_algorithms).order_by(Clinic.domain)
            )
            return [ClinicEntry(domain, name, parse_stored_algorithms(algs)) for domain, name, algs in rows]

    def clinic(self, domain: str) -> ClinicEntry | None:
        """The clinic serving ``domain``, or None."""
        canonical = normalize_domain(domain)
        return next((entry for entry in self.clinics() if entry.domain == canonical), None)

    def create_clinic(self, domain: str, name: str | None = None) -> ClinicEntry:
        """Create a clinic; its domain is also the digest realm of its staff."""
        canonical = normalize_domain(domain)
        display = " ".join((name or canonical).split()) or canonical
        try:
            with self._writer.begin() as connection:
                if self._clinic_id(connection, canonical) is not None:
                    raise StoreError(f"clinic {canonical} already exists")
                connection.execute(insert(Clinic).values(domain=canonical, name=display))
                _bump_version(connection)
        except IntegrityError as exc:
            raise StoreError(f"clinic {canonical} already exists") from exc
        return ClinicEntry(canonical, display, parse_stored_algorithms(DEFAULT_DIGEST_ALGORITHMS))

    def set_digest_algorithms(self, domain: str, algorithms: Sequence[str]) -> ClinicEntry:
        """Choose which digest algorithms the clinic challenges with, in order of preference."""
        if not algorithms or any(name not in ("MD5", "SHA-256") for name in algorithms):
            raise StoreError("digest algorithms: choose sha256,md5 or md5 or sha256")
        canonical = normalize_domain(domain)
        with self._writer.begin() as connection:
            clinic_id = self._require_clinic(connection, canonical)
            connection.execute(
                update(Clinic).where(Clinic.id == clinic_id).values(digest_algorithms=",".join(algorithms))
            )
            _bump_version(connection)
            name = connection.execute(select(Clinic.name).where(Clinic.id == clinic_id)).scalar_one()
        return ClinicEntry(canonical, name, tuple(algorithms))

    def resolve_domain(self, domain: str | None) -> str:
        """The clinic to act on: ``domain`` if it exists, or the only clinic when none is named."""
        known = [entry.domain for entry in self.clinics()]
        if domain is not None:
            canonical = normalize_domain(domain)
            if canonical not in known:
                raise StoreError(self._unknown_clinic(canonical, known))
            return canonical
        if len(known) == 1:
            return known[0]
        if not known:
            raise StoreError("there is no clinic yet; create one with `sentral init --domain DOMAIN`")
        raise StoreError(f"there are several clinics ({', '.join(known)}); say which one with --domain")

    # -- staff ---------------------------------------------------------------------------------

    def add_staff(
        self, domain: str, extension: str, name: str, password: str, roles: Iterable[str] = ()
    ) -> StaffEntry:
        """Add a member of staff; only the HA1 hashes of the password are stored."""
        return self.add_staff_many(domain, [NewStaff(extension, name, password, tuple(roles))])[0]

    def add_staff_many(self, domain: str, people: Sequence[NewStaff]) -> builtins.list[StaffEntry]:
        """Add several members of staff in one transaction: all of them, or (on any error) none."""
        canonical = normalize_domain(domain)
        prepared: builtins.list[tuple[StaffEntry, tuple[str, ...]]] = []
        seen: set[str] = set()
        for person in people:
            validate_extension(person.extension)
            display = validate_name(person.name, person.extension)
            validate_password(person.password)
            if person.extension in seen:
                raise StoreError(f"extension {person.extension} appears twice; each extension can be added once")
            seen.add(person.extension)
            role_names = tuple(dict.fromkeys(normalize_role(role) for role in person.roles))
            entry = StaffEntry(
                canonical,
                person.extension,
                display,
                tuple(sorted(role_names)),
                compute_ha1("MD5", person.extension, canonical, person.password),
                compute_ha1("SHA-256", person.extension, canonical, person.password),
            )
            prepared.append((entry, role_names))
        current = ""
        try:
            with self._writer.begin() as connection:
                clinic_id = self._require_clinic(connection, canonical)
                for entry, role_names in prepared:
                    current = entry.extension
                    if self._staff_id(connection, clinic_id, entry.extension) is not None:
                        raise StoreError(_taken(entry.extension, canonical))
                    staff_id = connection.execute(
                        insert(Staff)
                        .values(
                            clinic_id=clinic_id,
                            extension=entry.extension,
                            name=entry.name,
                            ha1_md5=entry.ha1_md5,
                            ha1_sha256=entry.ha1_sha256,
                        )
                        .returning(Staff.id)
                    ).scalar_one()
                    self._grant(connection, clinic_id, staff_id, role_names)
                _bump_version(connection)
        except IntegrityError as exc:
            raise StoreError(_taken(current, canonical)) from exc
        return [entry for entry, _ in prepared]

    def staff(self, domain: str | None = None) -> builtins.list[StaffEntry]:
        """Staff of one clinic, or of every clinic when ``domain`` is None, by domain and extension."""
        with self._engine.connect() as connection:
            query = (
                select(Staff.id, Clinic.domain, Staff.extension, Staff.name, Staff.ha1_md5, Staff.ha1_sha256)
                .join(Clinic, Clinic.id == Staff.clinic_id)
                .order_by(Clinic.domain, func.length(Staff.extension), Staff.extension)
            )
            if domain is not None:
                query = query.where(Clinic.domain == normalize_domain(domain))
            rows = connection.execute(query).all()
            roles: dict[int, builtins.list[str]] = {}
            for staff_id, role_name in connection.execute(
                select(StaffRole.staff_id, Role.name).join(Role, Role.id == StaffRole.role_id).order_by(Role.name)
            ):
                roles.setdefault(staff_id, []).append(role_name)
        return [
            StaffEntry(dom, ext, name, tuple(roles.get(staff_id, ())), md5, sha256)
            for staff_id, dom, ext, name, md5, sha256 in rows
        ]

    def remove_staff(self, domain: str, extension: str) -> None:
        """Remove a member of staff, their roles and their registrations."""
        canonical = normalize_domain(domain)
        validate_extension(extension)
        with self._writer.begin() as connection:
            staff_id = self._require_staff(connection, canonical, extension)
            connection.execute(delete(Staff).where(Staff.id == staff_id))
            connection.execute(
                delete(Binding).where(Binding.domain == canonical, Binding.extension == extension)
            )
            _bump_version(connection)

    def change_password(self, domain: str, extension: str, password: str) -> None:
        """Replace the stored HA1 hashes with those of a new password."""
        canonical = normalize_domain(domain)
        validate_extension(extension)
        validate_password(password)
        with self._writer.begin() as connection:
            staff_id = self._require_staff(connection, canonical, extension)
            connection.execute(
                update(Staff)
                .where(Staff.id == staff_id)
                .values(
                    ha1_md5=compute_ha1("MD5", extension, canonical, password),
                    ha1_sha256=compute_ha1("SHA-256", extension, canonical, password),
                )
            )
            _bump_version(connection)

    def add_roles(self, domain: str, extension: str, roles: Iterable[str]) -> tuple[str, ...]:
        """Give a member of staff more roles; returns all roles they now hold."""
        canonical = normalize_domain(domain)
        role_names = tuple(dict.fromkeys(normalize_role(role) for role in roles))
        with self._writer.begin() as connection:
            staff_id = self._require_staff(connection, canonical, extension)
            clinic_id = self._require_clinic(connection, canonical)
            held = set(self._roles_of(connection, staff_id))
            self._grant(connection, clinic_id, staff_id, [r for r in role_names if r not in held])
            _bump_version(connection)
            return self._roles_of(connection, staff_id)

    def remove_roles(self, domain: str, extension: str, roles: Iterable[str]) -> tuple[str, ...]:
        """Take roles away from a member of staff; returns the roles they still hold."""
        canonical = normalize_domain(domain)
        role_names = tuple(dict.fromkeys(normalize_role(role) for role in roles))
        with self._writer.begin() as connection:
            staff_id = self._require_staff(connection, canonical, extension)
            held = self._roles_of(connection, staff_id)
            missing = [role for role in role_names if role not in held]
            if missing:
                raise StoreError(
                    f"extension {extension} in {canonical} does not hold the role {missing[0]}; "
                    f"it holds {', '.join(held) or 'no roles'}"
                )
            connection.execute(
                delete(StaffRole).where(
                    StaffRole.staff_id == staff_id,
                    StaffRole.role_id.in_(
                        select(Role.id)
                        .join(Staff, Staff.clinic_id == Role.clinic_id)
                        .where(Staff.id == staff_id, Role.name.in_(role_names))
                    ),
                )
            )
            _bump_version(connection)
            return self._roles_of(connection, staff_id)

    # -- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _clinic_id(connection: Connection, domain: str) -> int | None:
        return connection.execute(select(Clinic.id).where(Clinic.domain == domain)).scalar_one_or_none()

    def _require_clinic(self, connection: Connection, domain: str) -> int:
        clinic_id = self._clinic_id(connection, domain)
        if clinic_id is None:
            known = list(connection.execute(select(Clinic.domain).order_by(Clinic.domain)).scalars())
            raise StoreError(self._unknown_clinic(domain, known))
        return clinic_id

    @staticmethod
    def _staff_id(connection: Connection, clinic_id: int, extension: str) -> int | None:
        return connection.execute(
            select(Staff.id).where(Staff.clinic_id == clinic_id, Staff.extension == extension)
        ).scalar_one_or_none()

    def _require_staff(self, connection: Connection, domain: str, extension: str) -> int:
        staff_id = self._staff_id(connection, self._require_clinic(connection, domain), extension)
        if staff_id is None:
            raise StoreError(f"there is no extension {extension} in {domain}; see `sentral user list`")
        return staff_id

    @staticmethod
    def _roles_of(connection: Connection, staff_id: int) -> tuple[str, ...]:
        return tuple(
            connection.execute(
                select(Role.name)
                .join(StaffRole, StaffRole.role_id == Role.id)
                .where(StaffRole.staff_id == staff_id)
                .order_by(Role.name)
            ).scalars()
        )

    @staticmethod
    def _grant(connection: Connection, clinic_id: int, staff_id: int, roles: Iterable[str]) -> None:
        for role in roles:
            role_id = connection.execute(
                select(Role.id).where(Role.clinic_id == clinic_id, Role.name == role)
            ).scalar_one_or_none()
            if role_id is None:
                role_id = connection.execute(
                    insert(Role).values(clinic_id=clinic_id, name=role).returning(Role.id)
                ).scalar_one()
            connection.execute(insert(StaffRole).values(staff_id=staff_id, role_id=role_id))

    @staticmethod
    def _unknown_clinic(domain: str, known: Sequence[str]) -> str:
        if not known:
            return f"there is no clinic {domain}; create it with `sentral clinic add {domain}`"
        return f"there is no clinic {domain}; known clinics: {', '.join(known)}"


@dataclass(frozen=True, slots=True)
class BindingRow:
    """One stored registration binding, field for field the ``binding`` table.

    ``path`` holds the Path header URIs in order (stored joined by newlines, which a URI cannot
    contain); times are epoch seconds.
    """

    domain: str
    extension: str
    key: str
    contact: str
    expires_at: float
    call_id: str
    cseq: int
    transport: str
    source_host: str
    source_port: int
    local_listen: str
    updated_at: float
    instance: str | None = None
    reg_id: int | None = None
    path: tuple[str, ...] = ()
    user_agent: str | None = None

    @property
    def identity(self) -> tuple[str, str, str]:
        """(domain, extension, key): what ``BindingStore.apply`` deletes by."""
        return (self.domain, self.extension, self.key)


_BINDING_COLUMNS = (
    "domain",
    "extension",
    "key",
    "contact",
    "expires_at",
    "call_id",
    "cseq",
    "instance",
    "reg_id",
    "path",
    "transport",
    "source_host",
    "source_port",
    "local_listen",
    "user_agent",
    "updated_at",
)
_KEY_COLUMNS = ("domain", "extension", "key")


def _binding_values(row: BindingRow) -> tuple[Any, ...]:
    """A binding as driver SQL parameters, in ``_BINDING_COLUMNS`` order."""
    return (
        row.domain,
        row.extension,
        row.key,
        row.contact,
        row.expires_at,
        row.call_id,
        row.cseq,
        row.instance,
        row.reg_id,
        "\n".join(row.path),
        row.transport,
        row.source_host,
        row.source_port,
        row.local_listen,
        row.user_agent,
        row.updated_at,
    )


def _binding_row(values: Sequence[Any]) -> BindingRow:
    (domain, extension, key, contact, expires_at, call_id, cseq, instance, reg_id, path, transport,
     source_host, source_port, local_listen, user_agent, updated_at) = values  # fmt: skip
    return BindingRow(
        domain=domain,
        extension=extension,
        key=key,
        contact=contact,
        expires_at=expires_at,
        call_id=call_id,
        cseq=cseq,
        transport=transport,
        source_host=source_host,
        source_port=source_port,
        local_listen=local_listen,
        updated_at=updated_at,
        instance=instance,
        reg_id=reg_id,
        path=tuple(path.split("\n")) if path else (),
        user_agent=user_agent,
    )


class BindingStore:
    """Registration bindings on disk: batched upserts and deletes, loading and expiry."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._writer = writing(engine)
        dialect = engine.dialect.name
        if dialect not in ("sqlite", "postgresql"):
            raise StoreError(f"bindings cannot be stored in {dialect}; use SQLite or PostgreSQL")
        # The upsert is driver SQL (the same statement in SQLite and PostgreSQL, in the driver's
        # placeholder style): executemany then skips SQLAlchemy's per-row parameter processing,
        # most of the cost of a small batch, which the binding writer pays holding the GIL that
        # the event loop needs.
        placeholder = "?" if dialect == "sqlite" else "%s"
        columns = ", ".join(f'"{name}"' for name in _BINDING_COLUMNS)
        updates = ", ".join(f'"{name}" = excluded."{name}"' for name in _BINDING_COLUMNS if name not in _KEY_COLUMNS)
        keys = ", ".join(f'"{name}"' for name in _KEY_COLUMNS)
        self._upsert_sql = (
            f"INSERT INTO binding ({columns}) VALUES ({', '.join([placeholder] * len(_BINDING_COLUMNS))}) "
            f"ON CONFLICT ({keys}) DO UPDATE SET {updates}"
        )
        self._delete = delete(Binding).where(
            Binding.domain == bindparam("d_domain"),
            Binding.extension == bindparam("d_extension"),
            Binding.key == bindparam("d_key"),
        )
        self._select = select(*(getattr(Binding, name) for name in _BINDING_COLUMNS))

    def connect(self) -> Connection:
        """A connection of its own for a dedicated writer; on SQLite it takes the write lock up front."""
        return self._writer.connect()

    def apply(
        self,
        upserts: Sequence[BindingRow],
        deletes: Sequence[tuple[str, str, str]],
        *,
        connection: Connection | None = None,
    ) -> None:
        """Delete then upsert, all in one transaction (on ``connection`` if given).

        When the same binding appears more than once in ``upserts`` the last one wins.
        """
        if connection is None:
            with self._writer.begin() as own:
                self._apply(own, upserts, deletes)
        else:
            with connection.begin():
                self._apply(connection, upserts, deletes)

    def _apply(
        self, connection: Connection, upserts: Sequence[BindingRow], deletes: Sequence[tuple[str, str, str]]
    ) -> None:
        if deletes:
            connection.execute(
                self._delete,
                [{"d_domain": d, "d_extension": e, "d_key": k} for d, e, k in deletes],
            )
        if upserts:
            # PostgreSQL refuses to upsert one row twice in a single statement; keep the last.
            latest = {row.identity: row for row in upserts}
            connection.exec_driver_sql(self._upsert_sql, [_binding_values(row) for row in latest.values()])

    def load_active(self, now: float) -> builtins.list[BindingRow]:
        """Every binding that has not expired at ``now``: what the registrar loads at start."""
        with self._engine.connect() as connection:
            rows = connection.execute(self._select.where(Binding.expires_at > now))
            return [_binding_row(values) for values in rows]

    def purge_expired(self, now: float) -> int:
        """Delete bindings that expired at or before ``now``; returns how many."""
        with self._writer.begin() as connection:
            result = connection.execute(delete(Binding).where(Binding.expires_at <= now))
            return int(result.rowcount)

    def list(self, now: float) -> builtins.list[BindingRow]:
        """Unexpired bindings ordered by domain, extension and key, for the operator."""
        with self._engine.connect() as connection:
            rows = connection.execute(
                self._select.where(Binding.expires_at > now).order_by(
                    Binding.domain, func.length(Binding.extension), Binding.extension, Binding.key
                )
            )
            return [_binding_row(values) for values in rows]


__all__ = [
    "BindingRow",
    "BindingStore",
    "ConfigStore",
    "StoreError",
    "normalize_domain",
    "normalize_role",
    "parse_digest_algorithms",
    "validate_extension",
    "validate_name",
    "validate_password",
]
