"""The directory: an immutable in-memory snapshot of clinics, staff, groups, functions, roles, park
lots, trunks, public numbers and extra closed days.

The call path never reads the database. The server loads a ``Directory`` at start, then polls
``directory_version`` (one cheap query) and loads a fresh snapshot when the number moved; lookups
in between are dictionary reads on frozen objects, safe to share between tasks and threads.

The version is read before the rows. A change committed after that read bumps the counter past the
version recorded in the snapshot, so the next poll sees it and reloads even if part of the change
was already visible. On PostgreSQL the snapshot is additionally read in one REPEATABLE READ
transaction so it is self-consistent; SQLite transactions are snapshots already.

Groups and functions are read with their members in ring order, whether each is logged in, and
the role that made them a member, if any. ``numbers`` indexes every group number, acute number,
role number, park number and park slot of a clinic, which the store keeps apart from each other
and from staff extensions, so the dial plan asks one dictionary what a dialled number is.
``number`` answers for groups, functions and roles only and ``park_lot_at`` for park lots, so that
a resolver written before park lots existed never meets one. ``read_groups``, ``read_roles`` and
``read_park_lots`` are the same readers, for the store's listings.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any, assert_never

import phonenumbers
from sqlalchemy import Connection, Engine, select

from sentral.config.models import (
    CONTACT_KINDS,
    CallerAdapter,
    Clinic,
    ClinicCountry,
    Contact,
    DirectoryVersion,
    FunctionRole,
    GroupMember,
    Holiday,
    ParkLot,
    PublicNumber,
    RingGroup,
    Role,
    Staff,
    StaffForward,
    StaffRole,
    Trunk,
)


class DialPermission(Enum):
    """Which outside numbers a member of staff may dial: none, their own country's, or any open one."""

    INTERNAL = "internal"
    NATIONAL = "national"
    INTERNATIONAL = "international"


@dataclass(frozen=True, slots=True)
class ClinicEntry:
    """A clinic as the call path sees it; ``digest_algorithms`` in challenge order."""

    domain: str
    name: str
    digest_algorithms: tuple[str, ...]
    country: str = "NO"  # ISO 3166 alpha-2, upper case: where national numbers are read
    main_number: str | None = None  # E.164 with '+', e.g. "+4722334455": the outbound caller ID
    # Country calling codes open for outbound calls (the clinic's own code is in it unless denied).
    open_countries: frozenset[int] = frozenset()
    timezone: str | None = None  # IANA name opening hours are read in; None: the server's
    # Seconds the caller-ID lookup may hold ringing back; past it the phones show the number.
    lookup_budget: float = 0.150


class ForwardKind(Enum):
    """When a member of staff's calls go elsewhere: always, while they are busy, or unanswered."""

    ALWAYS = "always"
    BUSY = "busy"
    NO_ANSWER = "noanswer"


# How long a call rings before a no-answer forward takes it, unless the member of staff says.
FORWARD_AFTER = 20.0


@dataclass(frozen=True, slots=True)
class Forwards:
    """Where a member of staff's calls go instead: each forward is a number of the clinic, or None.

    ``after`` is how many seconds the phones ring before ``no_answer`` applies.
    """

    always: str | None = None
    busy: str | None = None
    no_answer: str | None = None
    after: float = FORWARD_AFTER

    def target(self, kind: ForwardKind) -> str | None:
        """The number the forward of ``kind`` leads to, if it is set."""
        match kind:
            case ForwardKind.ALWAYS:
                return self.always
            case ForwardKind.BUSY:
                return self.busy
            case ForwardKind.NO_ANSWER:
                return self.no_answer
            case _:
                assert_never(kind)

    def __bool__(self) -> bool:
        return any((self.always, self.busy, self.no_answer))


NO_FORWARDS = Forwards()


@dataclass(frozen=True, slots=True)
class StaffEntry:
    """A member of staff as the call path sees it, with the HA1 hashes digest auth checks against."""

    domain: str
    extension: str
    name: str
    roles: tuple[str, ...]
    ha1_md5: str
    ha1_sha256: str
    # False while the member of staff has logged their phone off: it then receives no calls.
    phone_on: bool = True
    # True when media may go straight between this phone and another with direct media on.
    direct_media: bool = False
    # The digest algorithms this phone is challenged with, in order; empty: the clinic's.
    digest_algorithms: tuple[str, ...] = ()
    # Where their calls go instead (always, when busy, when unanswered); none by default.
    forwards: Forwards = NO_FORWARDS
    # Which outside numbers they may dial.
    dial: DialPermission = DialPermission.NATIONAL
    # E.164: their own outbound caller ID; None: the clinic's main number.
    public_number: str | None = None

    def ha1(self, algorithm: str) -> str:
        """The HA1 for ``algorithm`` ("MD5" or "SHA-256")."""
        if algorithm == "MD5":
            return self.ha1_md5
        if algorithm == "SHA-256":
            return self.ha1_sha256
        raise KeyError(algorithm)


class NumberFormat(Enum):
    """How a carrier wants the numbers it is sent written."""

    E164 = "e164"  # +4722334455 (default)
    DIGITS = "digits"  # 4722334455
    NATIONAL = "national"  # 22334455 for the clinic's own country, 00+... for others
    INTERNATIONAL_00 = "00"  # 004722334455


TRUNK_TRANSPORTS = ("udp", "tcp", "tls")


@dataclass(frozen=True, slots=True)
class TrunkEntry:
    """A trunk to a carrier as the call path sees it.

    A trunk either registers with the carrier (``register``) or is trusted by address: inbound
    calls may come from the resolved ``host`` and from ``addresses`` (IPs or CIDRs). ``password``
    is the secret itself, which outbound digest needs; it is never printed or logged.
    """

    domain: str  # the clinic's domain
    name: str  # unique per clinic
    host: str  # host name or address
    port: int  # 5060 by default (5061 for tls)
    transport: str  # "udp" | "tcp" | "tls"
    priority: int  # lower first; ties by name
    register: bool  # registers with the carrier (else: trusted by address)
    username: str | None
    password: str | None = field(repr=False)
    realm: str | None  # None: whatever the carrier challenges with
    number_format: NumberFormat = NumberFormat.E164
    addresses: tuple[str, ...] = ()  # extra inbound source addresses (IPs or CIDRs)
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class PublicNumberEntry:
    """A public number of a clinic: where its calls go, when it is open, and where else when not."""

    domain: str
    number: str  # E.164 with '+'
    # A number of the clinic (extension, group, function, role number, acute number, park lot), or
    # "announcement:NAME" (a prompt in the sound library).
    destination: str
    hours: str | None  # opening-hours spec as typed, validated on input; None: always open
    # Where calls go when closed: a number of the clinic or an outside number (E.164); None: the
    # closed message is played and the call ends.
    closed_to: str | None
    # A caller whose number matched nothing is asked to key their national ID number.
    ask_id: bool = False


ADAPTER_KINDS = ("sql", "csv", "fhir", "contacts")


@dataclass(frozen=True, slots=True)
class AdapterEntry:
    """One caller-ID lookup adapter of a clinic, as configured; which fields matter depends on ``kind``.

    ``kind`` names a factory in the ``sentral.adapters`` entry-point group: the built-in ones are
    in ``ADAPTER_KINDS``, a clinic platform may ship more. ``position`` orders a clinic's chain.
    """

    domain: str
    name: str  # unique per clinic
    kind: str
    position: int
    url: str | None = None  # sql: a SQLAlchemy URL; fhir: the FHIR base URL
    query_number: str | None = None  # sql: the query by phone number (``:number`` ...)
    query_id: str | None = None  # sql: the query by national ID (``:national_id``)
    file: str | None = None  # csv: the file
    token_file: str | None = None  # fhir: a file holding the bearer token


@dataclass(frozen=True, slots=True)
class ContactEntry:
    """A person or third party in Sentral's own contacts: a name for a number."""

    domain: str
    name: str
    number: str  # E.164 with '+'
    kind: str = "contact"  # one of CONTACT_KINDS


@dataclass(frozen=True, slots=True)
class HolidayEntry:
    """A day a clinic is closed besides its country's public holidays."""

    domain: str
    day: datetime.date
    name: str


class GroupKind(Enum):
    """A group is a team colleagues call; a function is a duty staff log in to and out of."""

    GROUP = "group"
    FUNCTION = "function"


class Strategy(Enum):
    """How a group's members are rung (the names Asterisk's queues use)."""

    RINGALL = "ringall"  # everybody at once
    LINEAR = "linear"  # one at a time, in member order
    RRMEMORY = "rrmemory"  # one at a time, starting after whoever was rung last
    LEASTRECENT = "leastrecent"  # one at a time, whoever answered longest ago first
    FEWESTCALLS = "fewestcalls"  # one at a time, whoever answered fewest calls first
    RANDOM = "random"  # one at a time, in random order


@dataclass(frozen=True, slots=True)
class MemberEntry:
    """One member of a group or function, in ring order; ``logged_in`` to this group or function."""

    extension: str
    logged_in: bool
    via_role: str | None = None  # the role that made them a member of a function, if not listed by hand


@dataclass(frozen=True, slots=True)
class GroupEntry:
    """A ring group or a function as the call path sees it. Times in seconds."""

    domain: str
    name: str
    kind: GroupKind
    number: str | None
    acute_number: str | None
    strategy: Strategy
    member_timeout: float  # how long one member rings in the hunting strategies
    ring_timeout: float  # how long the group rings before the overflow applies
    overflow: str | None  # "busy", a number of this clinic (extension or group), or None: 480
    ring_busy: bool  # ring members already in a call
    max_wait: float  # how long a caller may wait in the queue before the overflow
    members: tuple[MemberEntry, ...]
    roles: tuple[str, ...] = ()  # for a function: roles that give it by default
    announce_every: float = 0.0  # seconds between a waiting caller's position announcements; 0: never


@dataclass(frozen=True, slots=True)
class RoleEntry:
    """A role of a clinic, and the number that rings everyone holding it, if it has one."""

    domain: str
    name: str
    number: str | None


@dataclass(frozen=True, slots=True)
class ParkLotEntry:
    """A park lot: its park number, its slots ``first_slot``..``last_slot`` and the recall timeout.

    Slots are numbers of one width (``701``..``720``, or ``0701``..``0720``), so that a slot is the
    same string however it is counted; the store keeps that and the order of the two ends.
    """

    domain: str
    name: str
    number: str
    first_slot: str
    last_slot: str
    timeout: float = 45.0  # seconds a call stays parked before it rings the parker again

    @property
    def slots(self) -> tuple[str, ...]:
        """Every slot in order; parking takes the first free one."""
        return slot_numbers(self.first_slot, self.last_slot)

    def has_slot(self, number: str) -> bool:
        """True when ``number`` dials one of this lot's slots."""
        return in_slot_range(number, self.first_slot, self.last_slot)


def slot_numbers(first_slot: str, last_slot: str) -> tuple[str, ...]:
    """The slots ``first_slot``..``last_slot`` as they are dialled, each as wide as ``first_slot``."""
    width = len(first_slot)
    return tuple(str(n).zfill(width) for n in range(int(first_slot), int(last_slot) + 1))


def in_slot_range(number: str, first_slot: str, last_slot: str) -> bool:
    """True when ``number`` is one of the slots ``first_slot``..``last_slot`` (digit strings of one width)."""
    # Digit strings of one width order as their numbers do, so no conversion is needed.
    return (
        len(number) == len(first_slot)
        and number.isascii()
        and number.isdigit()
        and first_slot <= number <= last_slot
    )


@dataclass(frozen=True, slots=True)
class Directory:
    """Clinics by domain and staff by (domain, extension), as of ``version``; groups, functions and
    roles and park lots of every clinic with the indexes the dial plan needs."""

    version: int
    clinics: Mapping[str, ClinicEntry]
    staff: Mapping[tuple[str, str], StaffEntry]
    # (domain, name) -> group or function; names are unique per clinic across both kinds.
    groups: Mapping[tuple[str, str], GroupEntry] = field(default_factory=lambda: MappingProxyType({}))
    roles: Mapping[tuple[str, str], RoleEntry] = field(default_factory=lambda: MappingProxyType({}))
    # (domain, number) -> what that number dials: a group's number or acute number, a role number,
    # or a park lot's park number or one of its slots.
    numbers: Mapping[tuple[str, str], GroupEntry | RoleEntry | ParkLotEntry] = field(
        default_factory=lambda: MappingProxyType({})
    )
    park_lots: Mapping[tuple[str, str], ParkLotEntry] = field(default_factory=lambda: MappingProxyType({}))
    # Clinic domain -> its trunks in (priority, name) order.
    trunks: Mapping[str, tuple[TrunkEntry, ...]] = field(default_factory=lambda: MappingProxyType({}))
    # E.164 number -> the public number (unique across the server).
    public_numbers: Mapping[str, PublicNumberEntry] = field(default_factory=lambda: MappingProxyType({}))
    # Clinic domain -> its extra closed days.
    holidays: Mapping[str, frozenset[datetime.date]] = field(default_factory=lambda: MappingProxyType({}))
    # Clinic domain -> its caller-ID adapters in chain order (position, then name).
    adapters: Mapping[str, tuple[AdapterEntry, ...]] = field(default_factory=lambda: MappingProxyType({}))
    # Clinic domain -> its contacts by name.
    contacts: Mapping[str, tuple[ContactEntry, ...]] = field(default_factory=lambda: MappingProxyType({}))

    def staff_for(self, domain: str, extension: str) -> StaffEntry | None:
        """The staff member at ``extension`` in clinic ``domain``, if any."""
        return self.staff.get((domain.lower(), extension))

    def clinic(self, domain: str) -> ClinicEntry | None:
        """The clinic serving ``domain``, if any."""
        return self.clinics.get(domain.lower())

    def digest_algorithms(self, clinic: ClinicEntry, extension: str) -> tuple[str, ...]:
        """The digest algorithms to challenge ``extension`` of ``clinic`` with, in order.

        The phone's own choice if it has one, else the clinic's. An extension nobody has gets the
        clinic's too: exactly what a phone that follows the clinic gets, so that the challenge does
        not tell who exists.
        """
        staff = self.staff.get((clinic.domain, extension))
        if staff is not None and staff.digest_algorithms:
            return staff.digest_algorithms
        return clinic.digest_algorithms

    def group(self, domain: str, name: str) -> GroupEntry | None:
        """The group or function called ``name`` in clinic ``domain``, if any."""
        return self.groups.get((domain.lower(), name.lower()))

    def number(self, domain: str, number: str) -> GroupEntry | RoleEntry | None:
        """The group, function or role that ``number`` dials in clinic ``domain``, if any.

        Park numbers and slots are left out: ``park_lot_at`` answers for them.
        """
        found = self.numbers.get((domain.lower(), number))
        return None if isinstance(found, ParkLotEntry) else found

    def park_lot_at(self, domain: str, number: str) -> ParkLotEntry | None:
        """The park lot whose park number or slot ``number`` is in clinic ``domain``, if any."""
        found = self.numbers.get((domain.lower(), number))
        return found if isinstance(found, ParkLotEntry) else None

    def park_lot(self, domain: str, name: str) -> ParkLotEntry | None:
        """The park lot called ``name`` in clinic ``domain``, if any."""
        return self.park_lots.get((domain.lower(), name.lower()))

    def role(self, domain: str, name: str) -> RoleEntry | None:
        """The role called ``name`` in clinic ``domain``, if any."""
        return self.roles.get((domain.lower(), name.lower()))

    def holders(self, domain: str, role: str) -> tuple[StaffEntry, ...]:
        """Everyone in clinic ``domain`` holding ``role``, by extension."""
        domain, role = domain.lower(), role.lower()
        found = [entry for (d, _), entry in self.staff.items() if d == domain and role in entry.roles]
        return tuple(sorted(found, key=lambda entry: entry.extension))

    def memberships(self, domain: str, extension: str) -> tuple[GroupEntry, ...]:
        """The groups and functions ``extension`` is a member of, logged in or not, by name."""
        domain = domain.lower()
        return tuple(
            group
            for (d, _), group in sorted(self.groups.items())
            if d == domain and any(member.extension == extension for member in group.members)
        )


def directory_version(engine: Engine) -> int:
    """The current configuration version; changes whenever the directory does."""
    with engine.connect() as connection:
        return int(connection.execute(select(DirectoryVersion.version)).scalar_one())


def load_directory(engine: Engine) -> Directory:
    """Read clinics, staff, groups, functions, roles and park lots into a frozen ``Directory``."""
    connection = engine.connect()
    if engine.dialect.name == "postgresql":
        connection = connection.execution_options(isolation_level="REPEATABLE READ")
    with connection, connection.begin():
        version = int(connection.execute(select(DirectoryVersion.version)).scalar_one())
        domains = {
            clinic_id: domain for clinic_id, domain in connection.execute(select(Clinic.id, Clinic.domain))
        }
        clinics = {entry.domain: entry for entry in read_clinics(connection)}
        roles: dict[int, list[str]] = {}
        role_rows = connection.execute(
            select(StaffRole.staff_id, Role.name).join(Role, Role.id == StaffRole.role_id).order_by(Role.name)
        )
        for staff_id, role_name in role_rows:
            roles.setdefault(staff_id, []).append(role_name)
        forwards = read_forwards(connection)
        staff: dict[tuple[str, str], StaffEntry] = {}
        columns = (Staff.id, Staff.clinic_id, Staff.extension, Staff.name, Staff.ha1_md5, Staff.ha1_sha256)
        staff_rows = connection.execute(
            select(*columns, Staff.phone_on, Staff.direct_media, Staff.digest_algorithms, Staff.dial, Staff.public_number)
        )
        for (staff_id, clinic_id, extension, name, ha1_md5, ha1_sha256, phone_on, direct, digest, dial,
             public_number) in staff_rows:
            domain = domains[clinic_id]
            staff[(domain, extension)] = StaffEntry(
                domain, extension, name, tuple(roles.get(staff_id, ())), ha1_md5, ha1_sha256, bool(phone_on),
                bool(direct), parse_stored_algorithms(digest or ""), forwards.get(staff_id, NO_FORWARDS),
                DialPermission(dial), public_number,
            )  # fmt: skip
        groups = {(group.domain, group.name): group for group in read_groups(connection)}
        role_entries = {(role.domain, role.name): role for role in read_roles(connection)}
        lots = {(lot.domain, lot.name): lot for lot in read_park_lots(connection)}
        trunks: dict[str, list[TrunkEntry]] = {}
        for trunk in read_trunks(connection):
            trunks.setdefault(trunk.domain, []).append(trunk)
        public_numbers = {entry.number: entry for entry in read_public_numbers(connection)}
        holidays: dict[str, set[datetime.date]] = {}
        for holiday in read_holidays(connection):
            holidays.setdefault(holiday.domain, set()).add(holiday.day)
        adapters: dict[str, list[AdapterEntry]] = {}
        for adapter in read_adapters(connection):
            adapters.setdefault(adapter.domain, []).append(adapter)
        contacts: dict[str, list[ContactEntry]] = {}
        for contact in read_contacts(connection):
            contacts.setdefault(contact.domain, []).append(contact)
    numbers: dict[tuple[str, str], GroupEntry | RoleEntry | ParkLotEntry] = {}
    for group in groups.values():
        for number in (group.number, group.acute_number):
            if number is not None:
                numbers[(group.domain, number)] = group
    for role in role_entries.values():
        if role.number is not None:
            numbers[(role.domain, role.number)] = role
    for lot in lots.values():
        for number in (lot.number, *lot.slots):
            numbers[(lot.domain, number)] = lot
    return Directory(
        version,
        MappingProxyType(clinics),
        MappingProxyType(staff),
        MappingProxyType(groups),
        MappingProxyType(role_entries),
        MappingProxyType(numbers),
        MappingProxyType(lots),
        MappingProxyType({domain: tuple(found) for domain, found in trunks.items()}),
        MappingProxyType(public_numbers),
        MappingProxyType({domain: frozenset(days) for domain, days in holidays.items()}),
        MappingProxyType({domain: tuple(found) for domain, found in adapters.items()}),
        MappingProxyType({domain: tuple(found) for domain, found in contacts.items()}),
    )


def country_calling_code(region: str) -> int:
    """The country calling code of ISO region ``region`` ("NO" -> 47); 0 for a region there is none for."""
    return int(phonenumbers.country_code_for_region(region.upper()))


def open_countries(region: str, choices: Mapping[int, bool]) -> frozenset[int]:
    """The calling codes open for a clinic in ``region``: its own unless closed, and every one opened."""
    own = country_calling_code(region)
    opened = {code for code, is_open in choices.items() if is_open}
    if own and choices.get(own, True):
        opened.add(own)
    return frozenset(opened)


def read_country_choices(connection: Connection, clinic_id: int | None = None) -> dict[int, dict[int, bool]]:
    """Clinic id -> the calling codes opened (True) or closed (False) for it by the operator."""
    query = select(ClinicCountry.clinic_id, ClinicCountry.code, ClinicCountry.open)
    if clinic_id is not None:
        query = query.where(ClinicCountry.clinic_id == clinic_id)
    found: dict[int, dict[int, bool]] = {}
    for row_clinic, code, is_open in connection.execute(query):
        found.setdefault(row_clinic, {})[int(code)] = bool(is_open)
    return found


def read_clinics(connection: Connection) -> list[ClinicEntry]:
    """Every clinic by domain, with its country, main number, time zone and open countries."""
    choices = read_country_choices(connection)
    rows = connection.execute(
        select(Clinic.id, Clinic.domain, Clinic.name, Clinic.digest_algorithms)
        .add_columns(Clinic.country, Clinic.main_number, Clinic.timezone, Clinic.lookup_budget_ms)
        .order_by(Clinic.domain)
    )
    clinics = []
    for clinic_id, domain, name, algorithms, country, main_number, timezone, budget_ms in rows:
        opened = open_countries(country, choices.get(clinic_id, {}))
        algorithm_names = parse_stored_algorithms(algorithms)
        clinics.append(
            ClinicEntry(domain, name, algorithm_names, country, main_number, opened, timezone, budget_ms / 1000)
        )
    return clinics


def read_trunks(connection: Connection, domain: str | None = None) -> list[TrunkEntry]:
    """Trunks of clinic ``domain`` (every clinic if None) by domain, priority and name."""
    query = (
        select(Clinic.domain, Trunk.name, Trunk.host, Trunk.port, Trunk.transport, Trunk.priority)
        .add_columns(Trunk.register, Trunk.username, Trunk.password, Trunk.realm, Trunk.number_format)
        .add_columns(Trunk.addresses, Trunk.enabled)
        .join(Clinic, Clinic.id == Trunk.clinic_id)
        .order_by(Clinic.domain, Trunk.priority, Trunk.name)
    )
    if domain is not None:
        query = query.where(Clinic.domain == domain)
    return [
        TrunkEntry(
            domain=row.domain,
            name=row.name,
            host=row.host,
            port=int(row.port),
            transport=row.transport,
            priority=int(row.priority),
            register=bool(row.register),
            username=row.username,
            password=row.password,
            realm=row.realm,
            number_format=NumberFormat(row.number_format),
            addresses=tuple(row.addresses.split()),
            enabled=bool(row.enabled),
        )
        for row in connection.execute(query)
    ]


def read_public_numbers(connection: Connection, domain: str | None = None) -> list[PublicNumberEntry]:
    """Public numbers of clinic ``domain`` (every clinic if None) by domain and number."""
    query = (
        select(Clinic.domain, PublicNumber.number, PublicNumber.destination, PublicNumber.hours)
        .add_columns(PublicNumber.closed_to, PublicNumber.ask_id)
        .join(Clinic, Clinic.id == PublicNumber.clinic_id)
        .order_by(Clinic.domain, PublicNumber.number)
    )
    if domain is not None:
        query = query.where(Clinic.domain == domain)
    return [
        PublicNumberEntry(row.domain, row.number, row.destination, row.hours, row.closed_to, bool(row.ask_id))
        for row in connection.execute(query)
    ]


def read_adapters(connection: Connection, domain: str | None = None) -> list[AdapterEntry]:
    """Caller-ID adapters of clinic ``domain`` (every clinic if None) in chain order."""
    query = (
        select(Clinic.domain, CallerAdapter.name, CallerAdapter.kind, CallerAdapter.position, CallerAdapter.url)
        .add_columns(CallerAdapter.query_number, CallerAdapter.query_id, CallerAdapter.file, CallerAdapter.token_file)
        .join(Clinic, Clinic.id == CallerAdapter.clinic_id)
        .order_by(Clinic.domain, CallerAdapter.position, CallerAdapter.name)
    )
    if domain is not None:
        query = query.where(Clinic.domain == domain)
    return [AdapterEntry(*row) for row in connection.execute(query)]


def read_contacts(connection: Connection, domain: str | None = None) -> list[ContactEntry]:
    """Contacts of clinic ``domain`` (every clinic if None) by domain and name."""
    query = (
        select(Clinic.domain, Contact.name, Contact.number, Contact.kind)
        .join(Clinic, Clinic.id == Contact.clinic_id)
        .order_by(Clinic.domain, Contact.name)
    )
    if domain is not None:
        query = query.where(Clinic.domain == domain)
    return [ContactEntry(*row) for row in connection.execute(query)]


def read_holidays(connection: Connection, domain: str | None = None) -> list[HolidayEntry]:
    """Extra closed days of clinic ``domain`` (every clinic if None) by domain and day."""
    query = (
        select(Clinic.domain, Holiday.day, Holiday.name)
        .join(Clinic, Clinic.id == Holiday.clinic_id)
        .order_by(Clinic.domain, Holiday.day)
    )
    if domain is not None:
        query = query.where(Clinic.domain == domain)
    return [HolidayEntry(*row) for row in connection.execute(query)]


def read_groups(connection: Connection, domain: str | None = None) -> list[GroupEntry]:
    """Groups and functions of clinic ``domain`` (every clinic if None) by domain and name.

    Members come in ring order; a function's ``roles`` are the roles linked to it, by name.
    """
    group_query = (
        select(
            RingGroup.id,
            Clinic.domain,
            RingGroup.name,
            RingGroup.kind,
            RingGroup.number,
            RingGroup.acute_number,
            RingGroup.strategy,
            RingGroup.member_timeout,
            RingGroup.ring_timeout,
            RingGroup.overflow,
            RingGroup.ring_busy,
            RingGroup.max_wait,
            RingGroup.announce_every,
        )
        .join(Clinic, Clinic.id == RingGroup.clinic_id)
        .order_by(Clinic.domain, RingGroup.name)
    )
    member_query = (
        select(GroupMember.group_id, Staff.extension, GroupMember.logged_in, GroupMember.via_role)
        .join(Staff, Staff.id == GroupMember.staff_id)
        .join(RingGroup, RingGroup.id == GroupMember.group_id)
        .join(Clinic, Clinic.id == RingGroup.clinic_id)
        # The extension breaks ties should two rows ever share a position.
        .order_by(GroupMember.group_id, GroupMember.position, Staff.extension)
    )
    link_query = (
        select(FunctionRole.group_id, Role.name)
        .join(Role, Role.id == FunctionRole.role_id)
        .join(Clinic, Clinic.id == Role.clinic_id)
        .order_by(Role.name)
    )
    if domain is not None:
        group_query = group_query.where(Clinic.domain == domain)
        member_query = member_query.where(Clinic.domain == domain)
        link_query = link_query.where(Clinic.domain == domain)
    members: dict[int, list[MemberEntry]] = {}
    for group_id, extension, logged_in, via_role in connection.execute(member_query):
        members.setdefault(group_id, []).append(MemberEntry(extension, bool(logged_in), via_role))
    links: dict[int, list[str]] = {}
    for group_id, role_name in connection.execute(link_query):
        links.setdefault(group_id, []).append(role_name)
    return [
        GroupEntry(
            domain=group_domain,
            name=name,
            kind=GroupKind(kind),
            number=number,
            acute_number=acute_number,
            strategy=Strategy(strategy),
            member_timeout=float(member_timeout),
            ring_timeout=float(ring_timeout),
            overflow=overflow,
            ring_busy=bool(ring_busy),
            max_wait=float(max_wait),
            members=tuple(members.get(group_id, ())),
            roles=tuple(links.get(group_id, ())),
            announce_every=float(announce_every),
        )
        for (group_id, group_domain, name, kind, number, acute_number, strategy, member_timeout, ring_timeout,
             overflow, ring_busy, max_wait, announce_every) in connection.execute(group_query)
    ]  # fmt: skip


def read_forwards(connection: Connection) -> dict[int, Forwards]:
    """Staff id -> their forwards, for everyone who has one."""
    found: dict[int, dict[str, Any]] = {}
    rows = connection.execute(select(StaffForward.staff_id, StaffForward.kind, StaffForward.target, StaffForward.after))
    for staff_id, kind, target, after in rows:
        fields = found.setdefault(staff_id, {})
        fields[ForwardKind(kind).name.lower()] = target
        if ForwardKind(kind) is ForwardKind.NO_ANSWER and after is not None:
            fields["after"] = float(after)
    return {staff_id: Forwards(**fields) for staff_id, fields in found.items()}


def read_roles(connection: Connection, domain: str | None = None) -> list[RoleEntry]:
    """Roles of clinic ``domain`` (every clinic if None) by domain and name, held by anyone or not."""
    query = (
        select(Clinic.domain, Role.name, Role.number)
        .join(Clinic, Clinic.id == Role.clinic_id)
        .order_by(Clinic.domain, Role.name)
    )
    if domain is not None:
        query = query.where(Clinic.domain == domain)
    return [RoleEntry(role_domain, name, number) for role_domain, name, number in connection.execute(query)]


def read_park_lots(connection: Connection, domain: str | None = None) -> list[ParkLotEntry]:
    """Park lots of clinic ``domain`` (every clinic if None) by domain and name."""
    query = (
        select(Clinic.domain, ParkLot.name, ParkLot.number)
        .add_columns(ParkLot.first_slot, ParkLot.last_slot, ParkLot.timeout)
        .join(Clinic, Clinic.id == ParkLot.clinic_id)
        .order_by(Clinic.domain, ParkLot.name)
    )
    if domain is not None:
        query = query.where(Clinic.domain == domain)
    return [
        ParkLotEntry(lot_domain, name, number, first, last, float(timeout))
        for lot_domain, name, number, first, last, timeout in connection.execute(query)
    ]


def parse_stored_algorithms(text: str) -> tuple[str, ...]:
    """Split the stored comma-separated algorithm list ("SHA-256,MD5") into a tuple."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


__all__ = [
    "ADAPTER_KINDS",
    "CONTACT_KINDS",
    "FORWARD_AFTER",
    "NO_FORWARDS",
    "TRUNK_TRANSPORTS",
    "AdapterEntry",
    "ClinicEntry",
    "ContactEntry",
    "DialPermission",
    "Directory",
    "ForwardKind",
    "Forwards",
    "GroupEntry",
    "GroupKind",
    "HolidayEntry",
    "MemberEntry",
    "NumberFormat",
    "ParkLotEntry",
    "PublicNumberEntry",
    "RoleEntry",
    "StaffEntry",
    "Strategy",
    "TrunkEntry",
    "country_calling_code",
    "directory_version",
    "in_slot_range",
    "load_directory",
    "open_countries",
    "parse_stored_algorithms",
    "read_adapters",
    "read_clinics",
    "read_contacts",
    "read_country_choices",
    "read_forwards",
    "read_groups",
    "read_holidays",
    "read_park_lots",
    "read_public_numbers",
    "read_roles",
    "read_trunks",
    "slot_numbers",
]
