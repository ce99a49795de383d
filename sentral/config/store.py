"""Storage operations: the configuration changes the CLI makes, registration bindings and line states.

``ConfigStore`` validates its input and raises ``StoreError`` with one sentence that says what to
fix, so any front end can show it as is. Every change it commits bumps ``directory_version`` in the
same transaction; a running server notices within its polling interval and reloads its directory.

Groups and functions. Both live in one table and share one name space per clinic. A clinic's
numbers (staff extensions, group and function numbers and acute numbers, role numbers) are one
name space too; the rule spans three tables, so it is checked here, in the transaction that claims
the number. Those changes bump the directory version first rather than last: on PostgreSQL the row
lock that takes queues concurrent changes behind each other, so two operators cannot both claim a
free number (SQLite's ``BEGIN IMMEDIATE`` serialises writers already). A number another group
overflows to cannot be given up until that overflow is changed.

Park lots claim their park number and every one of their slots in that same name space; their
names are a name space of their own. A range that overlaps another lot's is refused with a
sentence about the two ranges rather than about the first number they share. A group cannot
overflow to a park number or a slot: a call that nobody answered has no parker to ring back, and a
slot holds a call rather than taking one.

Roles give functions: everyone holding a role linked to a function is a member of it, with
``via_role`` naming the role. ``_sync_role_members`` recomputes those rows after every change to
roles, holders or links, in the same transaction: it adds the missing ones at the end of the ring
order (logged out, as every new function member is), drops those no role gives any more, and
never touches a member listed by hand. A member of a group is logged in when added; a member of
a function is logged out until they log in.

``login``, ``logout``, ``set_logged_in_all``, ``toggle_logged_in`` and ``set_phone`` are also what
the running server calls when a phone dials a feature code; they bump the version only when
something changed, and the server's own reload then picks the change up.

Outside lines. Trunks have names of their own per clinic; a registering trunk needs a username
and a password, kept as given (outbound digest needs the secret) and never part of a listing's
text. Public numbers are E.164 and unique across the server; each leads to a number of its clinic
(not a park slot, which holds a call rather than taking one) or to ``announcement:NAME``, and when
closed, optionally to another number of the clinic or an outside number. A number that a public
number leads to cannot be given up, as one a group overflows to cannot. The store takes numbers in
E.164 and opening hours already checked: reading what the operator typed (national form, the
hours spec) is routing's business, which the CLI asks first. The clinic's own country is open for
outbound calls unless denied; ``clinic_country`` rows open or close calling codes.

``BindingStore`` is the registrar's location service on disk. It sits on the registration hot path,
so it uses Core statements and ``executemany``: ``apply`` writes a whole batch of upserts and
deletes in one transaction, and the batching itself is done by ``sentral.config.writer``.

``TrunkStateStore`` holds what the running server publishes about its trunks (registered, down,
calls in progress), for ``sentral trunk list`` the same way.

``LineStateStore`` holds the state of every line that is ringing or busy, which the running server
publishes for ``sentral presence`` in another process, the way ``LiveCallStore`` publishes calls:
``replace`` rewrites the whole set in one transaction and stamps it, ``touch`` refreshes the stamp
of an unchanged set, and readers that pass ``max_age`` ignore the rows of a server that stopped
publishing. A line without a row is idle.
"""

from __future__ import annotations

import builtins
import datetime
import ipaddress
import re
import secrets
import time
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from sentral.config.db import StoreError, worded, writing
from sentral.config.db import first_line as _first_line
from sentral.config.directory import (
    NO_FORWARDS,
    TRUNK_TRANSPORTS,
    ClinicEntry,
    DialPermission,
    ForwardKind,
    GroupEntry,
    GroupKind,
    HolidayEntry,
    NumberFormat,
    ParkLotEntry,
    PublicNumberEntry,
    RoleEntry,
    StaffEntry,
    Strategy,
    TrunkEntry,
    country_calling_code,
    in_slot_range,
    open_countries,
    parse_stored_algorithms,
    read_clinics,
    read_country_choices,
    read_forwards,
    read_groups,
    read_holidays,
    read_park_lots,
    read_public_numbers,
    read_trunks,
    slot_numbers,
)
from sentral.config.models import (
    DEFAULT_COUNTRY,
    DEFAULT_DIGEST_ALGORITHMS,
    TRUNK_STATES,
    Binding,
    Clinic,
    ClinicCountry,
    DirectoryVersion,
    FunctionRole,
    GroupMember,
    Holiday,
    ParkLot,
    PublicNumber,
    PublishedLine,
    PublishedTrunk,
    RingGroup,
    Role,
    ServerSecret,
    Staff,
    StaffForward,
    StaffRole,
    Trunk,
)
from sentral.pbx.sip.auth import compute_ha1

_DOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*")
_EXTENSION = re.compile(r"[0-9]{2,10}")
_ROLE = re.compile(r"[a-z][a-z0-9-]{0,63}")
_GROUP_NAME = _ROLE
_NUMBER = _EXTENSION
MIN_PASSWORD_LENGTH = 8
MAX_NAME_LENGTH = 200
OVERFLOW_BUSY = "busy"

# Limits of a group's times, in whole seconds: (smallest, largest).
MEMBER_TIMEOUT_RANGE = (1, 600)
RING_TIMEOUT_RANGE = (1, 3600)
MAX_WAIT_RANGE = (0, 86400)
# A waiting caller's position is announced at most this often (0: never); more often is nagging.
ANNOUNCE_RANGE = (10, 3600)
# A parked call rings its parker again after this many seconds. Less than ten is not time enough to
# walk to another phone and dial the slot, which is what parking is for.
PARK_TIMEOUT_RANGE = (10, 3600)
# A no-answer forward takes the call after this many seconds of ringing: (smallest, largest).
FORWARD_AFTER_RANGE = (1, 180)
DEFAULT_PARK_TIMEOUT = 45
# More slots than this is a typing mistake (701-7020), not a clinic's park lot.
MAX_PARK_SLOTS = 100
_SLOTS = re.compile(r"([0-9]+)(?:-([0-9]+))?")

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


def normalize_group_name(name: str, kind: GroupKind) -> str:
    """A group or function name in lower case: a letter, then letters, digits or hyphens."""
    canonical = name.strip().lower()
    if not _GROUP_NAME.fullmatch(canonical):
        raise StoreError(
            f"{kind.value} name {name!r} must start with a letter and hold only letters, digits and hyphens, "
            "such as reception"
        )
    return canonical


def validate_number(number: str, what: str = "number") -> str:
    """The number if it is 2 to 10 digits, else ``StoreError`` naming ``what`` it is."""
    if not _NUMBER.fullmatch(number):
        raise StoreError(f"{what} {number!r} must be 2 to 10 digits, such as 200")
    return number


def parse_strategy(text: str) -> Strategy:
    """The ring strategy called ``text`` (ringall, linear, rrmemory, leastrecent, fewestcalls, random)."""
    try:
        return Strategy(text.strip().lower())
    except ValueError:
        names = ", ".join(strategy.value for strategy in Strategy)
        raise StoreError(f"strategy {text!r} is not known; choose one of {names}") from None


def normalize_overflow(text: str) -> str:
    """``busy`` or a number, as an overflow destination is stored; whether the number exists is checked later."""
    canonical = text.strip().lower()
    if canonical == OVERFLOW_BUSY or _NUMBER.fullmatch(canonical):
        return canonical
    raise StoreError(f"overflow {text!r} must be busy or a number of the clinic, such as 200")


def normalize_park_name(name: str) -> str:
    """A park lot name in lower case: a letter, then letters, digits or hyphens."""
    canonical = name.strip().lower()
    if not _GROUP_NAME.fullmatch(canonical):
        raise StoreError(
            f"park lot name {name!r} must start with a letter and hold only letters, digits and hyphens, "
            "such as main"
        )
    return canonical


def parse_slots(text: str) -> tuple[str, str]:
    """``701-720`` (or one slot, ``701``) as its first and last slot; ``StoreError`` for a bad range."""
    found = _SLOTS.fullmatch(text.strip())
    if found is None:
        raise StoreError(f"slots {text!r} must be a range of numbers such as 701-720")
    first, last = found.group(1), found.group(2) or found.group(1)
    for end in (first, last):
        if not _NUMBER.fullmatch(end):
            raise StoreError(f"slot {end} must be 2 to 10 digits; give a range such as 701-720")
    if len(first) != len(last):
        raise StoreError(
            f"slots {first}-{last} must have as many digits at both ends, such as 701-720 or 0098-0102"
        )
    count = int(last) - int(first) + 1
    if count < 1:
        raise StoreError(
            f"slots {first}-{last} run backwards; give the lowest slot first, such as {last}-{first}"
        )
    if count > MAX_PARK_SLOTS:
        raise StoreError(f"slots {first}-{last} are {count} slots; a park lot has at most {MAX_PARK_SLOTS}")
    return first, last


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


# A phone's own digest choice, as the operator names it, and the algorithms it is challenged with;
# "clinic" (no algorithms of its own) follows the clinic. "both" offers SHA-256 first (RFC 8760).
PHONE_DIGESTS = {"clinic": (), "sha256": ("SHA-256",), "md5": ("MD5",), "both": ("SHA-256", "MD5")}


def parse_phone_digest(text: str) -> tuple[str, ...]:
    """Parse a phone's digest choice (sha256, md5, both or clinic) into the algorithms to offer it."""
    algorithms = PHONE_DIGESTS.get(text.strip().lower())
    if algorithms is None:
        raise StoreError(f"digest {text!r}: choose sha256, md5, both (sha256 then md5) or clinic (the clinic's)")
    return algorithms


def phone_digest_name(algorithms: Sequence[str]) -> str:
    """The name of a phone's digest choice, for listings: the inverse of ``parse_phone_digest``."""
    return next(name for name, offered in PHONE_DIGESTS.items() if offered == tuple(algorithms))


# E.164: '+', a country code and at most 15 digits in all.
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_TRUNK_NAME = _ROLE
_ANNOUNCEMENT = re.compile(r"announcement:([a-z0-9][a-z0-9_-]{0,63})")
ANNOUNCEMENT_PREFIX = "announcement:"
DEFAULT_TRUNK_PRIORITY = 10
TRUNK_PRIORITY_RANGE = (0, 1000)
MAX_HOLIDAY_NAME = 200


def validate_e164(number: str, what: str = "number") -> str:
    """``number`` if it is E.164 with '+' (+4722334455), else ``StoreError`` naming ``what`` it is."""
    if not _E164.fullmatch(number):
        raise StoreError(f"{what} {number!r} is not a phone number in international form, such as +4722334455")
    return number


def normalize_trunk_name(name: str) -> str:
    """A trunk name in lower case: a letter, then letters, digits or hyphens."""
    canonical = name.strip().lower()
    if not _TRUNK_NAME.fullmatch(canonical):
        raise StoreError(
            f"trunk name {name!r} must start with a letter and hold only letters, digits and hyphens, "
            "such as telenor"
        )
    return canonical


def parse_transport(text: str) -> str:
    """``udp``, ``tcp`` or ``tls``, however it is capitalised."""
    canonical = text.strip().lower()
    if canonical not in TRUNK_TRANSPORTS:
        raise StoreError(f"transport {text!r} is not known; choose udp, tcp or tls")
    return canonical


def default_port(transport: str) -> int:
    """The port a carrier listens on for ``transport`` unless it says otherwise."""
    return 5061 if transport == "tls" else 5060


def _valid_host(host: str) -> str | None:
    """``host`` as stored (an address in canonical form, a name in lower case), or None if it is neither."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    name = host.lower().rstrip(".")
    if len(name) <= 253 and _DOMAIN.fullmatch(name) and not name.replace(".", "").isdigit():
        return name
    return None


def parse_host_port(text: str) -> tuple[str, int | None]:
    """``HOST``, ``HOST:PORT``, ``[IPv6]`` or ``[IPv6]:PORT`` as the host and its port (None: the default)."""
    spec = text.strip()
    host, port_text = spec, None
    if spec.startswith("["):
        found = re.fullmatch(r"\[([^\]]+)\](?::([^:]*))?", spec)
        if found is None:
            raise StoreError(f"host {text!r} must be HOST or HOST:PORT, such as sip.carrier.example:5060")
        host, port_text = found.group(1), found.group(2)
    elif spec.count(":") == 1:
        host, port_text = spec.split(":")
    canonical = _valid_host(host)
    if canonical is None or (spec.startswith("[") and ":" not in canonical):
        raise StoreError(
            f"host {text!r} is neither a host name nor an address; give one such as sip.carrier.example:5060"
        )
    if port_text is None:
        return canonical, None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise StoreError(f"the port in {text!r} must be a number from 1 to 65535, such as 5060")
    return canonical, int(port_text)


def parse_number_format(text: str) -> NumberFormat:
    """How a carrier wants numbers: e164, digits, national or 00."""
    try:
        return NumberFormat(text.strip().lower())
    except ValueError:
        raise StoreError(f"number format {text!r} is not known; choose e164, digits, national or 00") from None


def normalize_address(text: str) -> str:
    """An inbound source address or network (192.0.2.10, 192.0.2.0/24, 2001:db8::/32) in canonical form."""
    try:
        network = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise StoreError(
            f"address {text!r} is not an IP address or network; give one such as 192.0.2.10 or 192.0.2.0/24"
        ) from None
    return str(network.network_address) if network.num_addresses == 1 else str(network)


def parse_dial(text: str) -> DialPermission:
    """Which outside numbers a member of staff may dial: internal, national or international."""
    try:
        return DialPermission(text.strip().lower())
    except ValueError:
        raise StoreError(f"dial {text!r} is not known; choose internal, national or international") from None


def normalize_country(text: str) -> str:
    """An ISO 3166 country code in upper case (NO, SE), one that has a telephone country code."""
    canonical = text.strip().upper()
    if len(canonical) != 2 or not canonical.isalpha() or not country_calling_code(canonical):
        raise StoreError(f"country {text!r} is not known; give a two-letter country code such as NO or SE")
    return canonical


def validate_timezone(text: str) -> str:
    """An IANA time zone name (Europe/Oslo)."""
    name = text.strip()
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise StoreError(f"time zone {text!r} is not known; give one such as Europe/Oslo") from None
    return name


def parse_day(text: str) -> datetime.date:
    """A date written YYYY-MM-DD."""
    try:
        return datetime.date.fromisoformat(text.strip())
    except ValueError:
        raise StoreError(f"date {text!r} is not a date; write it as YYYY-MM-DD, such as 2026-12-24") from None


@dataclass(frozen=True, slots=True)
class TrunkSettings:
    """Where a trunk's carrier is, how the server signs in there, and how it is used.

    ``port`` None means the transport's default. ``password`` is the secret itself.
    """

    host: str
    port: int | None = None
    transport: str = "udp"
    priority: int = DEFAULT_TRUNK_PRIORITY
    register: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    realm: str | None = None
    number_format: NumberFormat = NumberFormat.E164
    addresses: tuple[str, ...] = ()
    enabled: bool = True

    @classmethod
    def of(cls, trunk: TrunkEntry) -> TrunkSettings:
        """The settings of an existing trunk, to change with ``dataclasses.replace``."""
        return cls(
            trunk.host, trunk.port, trunk.transport, trunk.priority, trunk.register, trunk.username,
            trunk.password, trunk.realm, trunk.number_format, trunk.addresses, trunk.enabled,
        )  # fmt: skip

    def checked(self, name: str) -> TrunkSettings:
        """These settings in canonical form, or ``StoreError`` for the first value that is wrong."""
        host = _valid_host(self.host)
        if host is None:
            raise StoreError(f"host {self.host!r} of trunk {name} is neither a host name nor an address")
        transport = parse_transport(self.transport)
        port = default_port(transport) if self.port is None else self.port
        if isinstance(port, bool) or not 1 <= port <= 65535:
            raise StoreError(f"the port of trunk {name} must be a number from 1 to 65535, not {port}")
        low, high = TRUNK_PRIORITY_RANGE
        if isinstance(self.priority, bool) or not low <= self.priority <= high:
            raise StoreError(f"the priority of trunk {name} must be a whole number from {low} to {high}")
        username = (self.username or "").strip() or None
        password = self.password or None
        if self.register and (username is None or password is None):
            raise StoreError(
                f"trunk {name} registers with its carrier, which needs a username and a password; "
                "give --username and --password"
            )
        if username is not None and (len(username) > 128 or any(c.isspace() for c in username)):
            raise StoreError(f"the username of trunk {name} must be at most 128 characters without spaces")
        if password is not None and len(password) > 256:
            raise StoreError(f"the password of trunk {name} is longer than 256 characters")
        realm = (self.realm or "").strip() or None
        if realm is not None and (len(realm) > 253 or '"' in realm):
            raise StoreError(f"the realm of trunk {name} must be at most 253 characters without quotes")
        addresses = tuple(dict.fromkeys(normalize_address(address) for address in self.addresses))
        return TrunkSettings(
            host, port, transport, self.priority, self.register, username, password, realm, self.number_format,
            addresses, self.enabled,
        )  # fmt: skip

    def columns(self) -> dict[str, Any]:
        """The settings as ``trunk`` column values."""
        return {
            "host": self.host,
            "port": self.port,
            "transport": self.transport,
            "priority": self.priority,
            "register": self.register,
            "username": self.username,
            "password": self.password,
            "realm": self.realm,
            "number_format": self.number_format.value,
            "addresses": " ".join(self.addresses),
            "enabled": self.enabled,
        }


@dataclass(frozen=True, slots=True)
class PublicNumberSettings:
    """Where a public number's calls go, when it is open (the hours spec, checked already), and where
    its calls go when it is closed."""

    destination: str
    hours: str | None = None
    closed_to: str | None = None
    ask_id: bool = False  # an unknown caller is asked for their national ID number

    @classmethod
    def of(cls, entry: PublicNumberEntry) -> PublicNumberSettings:
        """The settings of an existing public number, to change with ``dataclasses.replace``."""
        return cls(entry.destination, entry.hours, entry.closed_to, entry.ask_id)


# Milliseconds a clinic's caller-ID lookup may hold ringing back: 0 rings at once (a late answer
# still reaches the call), 2 s is already long for a caller to hear nothing.
LOOKUP_BUDGET_MS = (0, 2000)


def _bump_version(connection: Connection) -> None:
    connection.execute(update(DirectoryVersion).values(version=DirectoryVersion.version + 1))


def _begin_change(connection: Connection) -> None:
    """Bump the version before anything else, so that concurrent changes queue on its row lock."""
    _bump_version(connection)


def _seconds(value: int, what: str, limits: tuple[int, int]) -> int:
    low, high = limits
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise StoreError(f"the {what} must be a whole number of seconds from {low} to {high}, not {value}")
    return value


@dataclass(frozen=True, slots=True)
class GroupSettings:
    """How a group or function rings: its numbers, strategy, times (whole seconds) and overflow.

    ``overflow`` is ``busy`` (the caller hears busy), a number of the clinic the call moves on to,
    or None (the caller hears 480).
    """

    number: str | None = None
    acute_number: str | None = None
    strategy: Strategy = Strategy.RINGALL
    member_timeout: int = 20
    ring_timeout: int = 60
    overflow: str | None = None
    ring_busy: bool = False
    max_wait: int = 300
    announce_every: int = 0

    @classmethod
    def of(cls, group: GroupEntry) -> GroupSettings:
        """The settings of an existing group, to change with ``dataclasses.replace``."""
        return cls(
            number=group.number,
            acute_number=group.acute_number,
            strategy=group.strategy,
            member_timeout=int(group.member_timeout),
            ring_timeout=int(group.ring_timeout),
            overflow=group.overflow,
            ring_busy=group.ring_busy,
            max_wait=int(group.max_wait),
            announce_every=int(group.announce_every),
        )

    def checked(self, kind: GroupKind, name: str) -> GroupSettings:
        """These settings in canonical form, or ``StoreError`` for the first value that is wrong."""
        if kind is GroupKind.GROUP and self.number is None:
            raise StoreError(f"give group {name} a number, such as --number 200")
        number = None if self.number is None else validate_number(self.number)
        acute = None if self.acute_number is None else validate_number(self.acute_number, "acute number")
        if acute is not None and acute == number:
            raise StoreError(f"the acute number of {kind.value} {name} must differ from its number {number}")
        overflow = None if self.overflow is None else normalize_overflow(self.overflow)
        if overflow is not None and overflow in (number, acute):
            raise StoreError(f"{kind.value} {name} cannot overflow to its own number {overflow}")
        return GroupSettings(
            number=number,
            acute_number=acute,
            strategy=self.strategy,
            member_timeout=_seconds(self.member_timeout, "member timeout", MEMBER_TIMEOUT_RANGE),
            ring_timeout=_seconds(self.ring_timeout, "ring timeout", RING_TIMEOUT_RANGE),
            overflow=overflow,
            ring_busy=self.ring_busy,
            max_wait=_seconds(self.max_wait, "longest wait", MAX_WAIT_RANGE),
            announce_every=(
                0
                if self.announce_every == 0
                else _seconds(self.announce_every, "time between position announcements", ANNOUNCE_RANGE)
            ),
        )

    def columns(self) -> dict[str, Any]:
        """The settings as ``ring_group`` column values."""
        return {
            "number": self.number,
            "acute_number": self.acute_number,
            "strategy": self.strategy.value,
            "member_timeout": self.member_timeout,
            "ring_timeout": self.ring_timeout,
            "overflow": self.overflow,
            "ring_busy": self.ring_busy,
            "max_wait": self.max_wait,
            "announce_every": self.announce_every,
        }


@dataclass(frozen=True, slots=True)
class ParkSettings:
    """A park lot's park number, slots ``first_slot``..``last_slot`` and recall timeout (whole seconds)."""

    number: str
    first_slot: str
    last_slot: str
    timeout: int = DEFAULT_PARK_TIMEOUT

    @classmethod
    def of(cls, lot: ParkLotEntry) -> ParkSettings:
        """The settings of an existing lot, to change with ``dataclasses.replace``."""
        return cls(lot.number, lot.first_slot, lot.last_slot, int(lot.timeout))

    @property
    def slot_range(self) -> str:
        """``701-720``, as the operator writes it."""
        return f"{self.first_slot}-{self.last_slot}"

    def checked(self, name: str) -> ParkSettings:
        """These settings in canonical form, or ``StoreError`` for the first value that is wrong."""
        number = validate_number(self.number, "park number")
        first, last = parse_slots(f"{self.first_slot}-{self.last_slot}")
        if in_slot_range(number, first, last):
            raise StoreError(
                f"the park number {number} of park lot {name} is one of its slots {first}-{last}; "
                "choose a number outside them"
            )
        timeout = _seconds(self.timeout, "park timeout", PARK_TIMEOUT_RANGE)
        return ParkSettings(number, first, last, timeout)

    def numbers(self) -> tuple[str, ...]:
        """The park number, then every slot in order: every number the lot takes."""
        return (self.number, *slot_numbers(self.first_slot, self.last_slot))


@dataclass(frozen=True, slots=True)
class RoleSummary:
    """A role of a clinic: its number, how many hold it, and the functions it gives."""

    domain: str
    name: str
    number: str | None
    holders: int
    functions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LoginToggle:
    """What a toggle did: whether the member is now ``logged_in``, and where that changed, by name."""

    logged_in: bool
    changed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NewStaff:
    """A member of staff to add: extension, name, password and roles."""

    extension: str
    name: str
    password: str
    roles: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ClinicContents:
    """What a clinic holds that removing it would take away with it."""

    staff: int
    groups: int
    functions: int
    park_lots: int
    role_numbers: int
    trunks: int = 0
    public_numbers: int = 0

    @property
    def items(self) -> tuple[str, ...]:
        """Each kind of thing held, counted in words ("2 functions"), leaving out those with none."""
        counted = (
            (self.staff, "member of staff", "members of staff"),
            (self.groups, "group", "groups"),
            (self.functions, "function", "functions"),
            (self.park_lots, "park lot", "park lots"),
            (self.role_numbers, "role number", "role numbers"),
            (self.trunks, "trunk", "trunks"),
            (self.public_numbers, "public number", "public numbers"),
        )
        return tuple(f"{n} {one if n == 1 else many}" for n, one, many in counted if n)

    @property
    def described(self) -> str:
        """The items as a list in a sentence: "3 members of staff, 1 group and 1 park lot"."""
        items = self.items
        if len(items) <= 1:
            return "".join(items) or "nothing"
        return f"{', '.join(items[:-1])} and {items[-1]}"


def _taken(extension: str, domain: str) -> str:
    return f"extension {extension} already exists in {domain}; choose another number or remove it first"


@dataclass(frozen=True, slots=True)
class _GroupRef:
    """A group or function found by name: its row id, canonical name and kind."""

    id: int
    name: str
    kind: GroupKind


class ConfigStore:
    """Clinics, staff, roles, groups and functions: the changes the operator makes with the CLI."""

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
            return read_clinics(connection)

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
        # Built rather than read back: a new clinic has the defaults, and so this also works on
        # the older schemas the migration tests start from.
        algorithms = parse_stored_algorithms(DEFAULT_DIGEST_ALGORITHMS)
        return ClinicEntry(canonical, display, algorithms, DEFAULT_COUNTRY, None, open_countries(DEFAULT_COUNTRY, {}))

    def _clinic_entry(self, domain: str) -> ClinicEntry:
        found = self.clinic(domain)
        if found is None:  # removed in between: say so as for any unknown clinic
            raise StoreError(self._unknown_clinic(domain, [entry.domain for entry in self.clinics()]))
        return found

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
        return self._clinic_entry(canonical)

    def set_clinic_outside(
        self,
        domain: str,
        *,
        country: str | None = None,
        main_number: str | None = None,
        timezone: str | None = None,
        lookup_budget_ms: int | None = None,
    ) -> ClinicEntry:
        """Set the clinic's country (ISO code), main number (E.164), time zone (IANA name) and
        caller-ID lookup budget (milliseconds); None keeps a value as it is."""
        canonical = normalize_domain(domain)
        values: dict[str, Any] = {}
        if lookup_budget_ms is not None:
            low, high = LOOKUP_BUDGET_MS
            if isinstance(lookup_budget_ms, bool) or not low <= lookup_budget_ms <= high:
                raise StoreError(
                    f"the lookup budget must be a whole number of milliseconds from {low} to {high}, "
                    f"not {lookup_budget_ms}"
                )
            values["lookup_budget_ms"] = lookup_budget_ms
        if country is not None:
            values["country"] = normalize_country(country)
        if main_number is not None:
            values["main_number"] = validate_e164(main_number, "main number")
        if timezone is not None:
            values["timezone"] = validate_timezone(timezone)
        with self._writer.begin() as connection:
            clinic_id = self._require_clinic(connection, canonical)
            if values:
                connection.execute(update(Clinic).where(Clinic.id == clinic_id).values(**values))
                _bump_version(connection)
        return self._clinic_entry(canonical)

    def country_choices(self, domain: str) -> dict[int, bool]:
        """The calling codes the operator opened (True) or closed (False) for the clinic."""
        canonical = normalize_domain(domain)
        with self._engine.connect() as connection:
            clinic_id = self._require_clinic(connection, canonical)
            return read_country_choices(connection, clinic_id).get(clinic_id, {})

    def set_countries_open(self, domain: str, codes: Iterable[int], is_open: bool) -> ClinicEntry:
        """Open (or close) outbound calls from the clinic to the countries with calling ``codes``."""
        canonical = normalize_domain(domain)
        wanted = list(dict.fromkeys(codes))
        for code in wanted:
            if isinstance(code, bool) or not 1 <= code <= 999:
                raise StoreError(f"country code {code} is not a country calling code, such as 46")
        with self._writer.begin() as connection:
            _begin_change(connection)
            clinic_id = self._require_clinic(connection, canonical)
            for code in wanted:
                found = connection.execute(
                    update(ClinicCountry)
                    .where(ClinicCountry.clinic_id == clinic_id, ClinicCountry.code == code)
                    .values(open=is_open)
                )
                if not found.rowcount:
                    connection.execute(insert(ClinicCountry).values(clinic_id=clinic_id, code=code, open=is_open))
        return self._clinic_entry(canonical)

    def remove_clinic(self, domain: str, *, force: bool = False) -> ClinicContents:
        """Remove a clinic and its registrations; what it still holds (staff, groups, functions,
        park lots, role numbers) is refused unless ``force``, which removes that too.

        Returns what was removed with it. Call records stay: they are the clinic's history.
        """
        canonical = normalize_domain(domain)
        with self._writer.begin() as connection:
            _begin_change(connection)
            clinic_id = self._require_clinic(connection, canonical)
            contents = self._contents(connection, clinic_id)
            if contents.items and not force:
                raise StoreError(
                    f"clinic {canonical} still has {contents.described}; remove them first, "
                    f"or give --force to remove them with the clinic"
                )
            # The foreign keys cascade from the clinic to its staff, roles, groups and park lots.
            connection.execute(delete(Clinic).where(Clinic.id == clinic_id))
            connection.execute(delete(Binding).where(Binding.domain == canonical))
        return contents

    @staticmethod
    def _contents(connection: Connection, clinic_id: int) -> ClinicContents:
        def count(model: Any, *conditions: Any) -> int:
            query = select(func.count()).select_from(model).where(model.clinic_id == clinic_id, *conditions)
            return int(connection.execute(query).scalar_one())

        return ClinicContents(
            staff=count(Staff),
            groups=count(RingGroup, RingGroup.kind == GroupKind.GROUP.value),
            functions=count(RingGroup, RingGroup.kind == GroupKind.FUNCTION.value),
            park_lots=count(ParkLot),
            role_numbers=count(Role, Role.number.is_not(None)),
            trunks=count(Trunk),
            public_numbers=count(PublicNumber),
        )

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
            raise StoreError("there is no clinic yet; add one with `sentral clinic add DOMAIN`")
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
                _begin_change(connection)
                clinic_id = self._require_clinic(connection, canonical)
                for entry, role_names in prepared:
                    current = entry.extension
                    if self._staff_id(connection, clinic_id, entry.extension) is not None:
                        raise StoreError(_taken(entry.extension, canonical))
                    owner = self._number_owner(connection, clinic_id, entry.extension)
                    if owner is not None:
                        raise StoreError(
                            f"extension {entry.extension} is already the number of {owner} in {canonical}; "
                            "choose another number"
                        )
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
                self._sync_role_members(connection, clinic_id)
        except IntegrityError as exc:
            raise StoreError(_taken(current, canonical)) from exc
        return [entry for entry, _ in prepared]

    def staff(self, domain: str | None = None) -> builtins.list[StaffEntry]:
        """Staff of one clinic, or of every clinic when ``domain`` is None, by domain and extension."""
        with self._engine.connect() as connection:
            query = (
                select(
                    Staff.id,
                    Clinic.domain,
                    Staff.extension,
                    Staff.name,
                    Staff.ha1_md5,
                    Staff.ha1_sha256,
                    Staff.phone_on,
                    Staff.direct_media,
                    Staff.digest_algorithms,
                    Staff.dial,
                    Staff.public_number,
                )
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
            forwards = read_forwards(connection)
        return [
            StaffEntry(
                dom,
                ext,
                name,
                tuple(roles.get(staff_id, ())),
                md5,
                sha256,
                bool(phone_on),
                bool(direct),
                parse_stored_algorithms(digest or ""),
                forwards.get(staff_id, NO_FORWARDS),
                DialPermission(dial),
                public_number,
            )
            for staff_id, dom, ext, name, md5, sha256, phone_on, direct, digest, dial, public_number in rows
        ]

    def remove_staff(self, domain: str, extension: str) -> None:
        """Remove a member of staff, their roles and their registrations."""
        canonical = normalize_domain(domain)
        validate_extension(extension)
        with self._writer.begin() as connection:
            _begin_change(connection)
            staff_id = self._require_staff(connection, canonical, extension)
            clinic_id = self._require_clinic(connection, canonical)
            self._refuse_if_overflow_target(connection, clinic_id, canonical, extension, f"extension {extension}")
            connection.execute(delete(Staff).where(Staff.id == staff_id))
            connection.execute(
                delete(Binding).where(Binding.domain == canonical, Binding.extension == extension)
            )

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
            self._sync_role_members(connection, clinic_id)
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
            self._sync_role_members(connection, self._require_clinic(connection, canonical))
            _bump_version(connection)
            return self._roles_of(connection, staff_id)

    def set_phone(self, domain: str, extension: str, on: bool) -> bool:
        """Log the phone of ``extension`` on or off; True if that changed anything."""
        canonical = normalize_domain(domain)
        validate_extension(extension)
        with self._writer.begin() as connection:
            staff_id = self._require_staff(connection, canonical, extension)
            result = connection.execute(
                update(Staff).where(Staff.id == staff_id, Staff.phone_on != on).values(phone_on=on)
            )
            if not result.rowcount:
                return False
            _bump_version(connection)
            return True

    def set_direct_media(self, domain: str, extension: str, direct: bool) -> bool:
        """Let the phone of ``extension`` send media straight to other such phones, or not; True if
        that changed anything."""
        canonical = normalize_domain(domain)
        validate_extension(extension)
        with self._writer.begin() as connection:
            staff_id = self._require_staff(connection, canonical, extension)
            result = connection.execute(
                update(Staff).where(Staff.id == staff_id, Staff.direct_media != direct).values(direct_media=direct)
            )
            if not result.rowcount:
                return False
            _bump_version(connection)
            return True

    def set_phone_digest(self, domain: str, extension: str, algorithms: Sequence[str]) -> StaffEntry:
        """Choose the digest algorithms the phone of ``extension`` is challenged with, in order; none
        follows the clinic's choice. Returns the member of staff as now stored."""
        canonical = normalize_domain(domain)
        validate_extension(extension)
        if tuple(algorithms) not in PHONE_DIGESTS.values():
            raise StoreError("digest: choose sha256, md5, both (sha256 then md5) or clinic (the clinic's)")
        stored = ",".join(algorithms) or None
        with self._writer.begin() as connection:
            staff_id = self._require_staff(connection, canonical, extension)
            result = connection.execute(
                update(Staff)
                .where(Staff.id == staff_id, Staff.digest_algorithms.is_distinct_from(stored))
                .values(digest_algorithms=stored)
            )
            if result.rowcount:
                _bump_version(connection)
        return self.staff_member(canonical, extension)

    def set_dial(
        self,
        domain: str,
        extension: str,
        dial: DialPermission | None = None,
        public_number: str | None = None,
        *,
        clear_number: bool = False,
    ) -> StaffEntry:
        """Set which outside numbers ``extension`` may dial and their own caller ID (E.164), or take
        that number away with ``clear_number``; None keeps a value. Returns the member as stored."""
        canonical = normalize_domain(domain)
        validate_extension(extension)
        values: dict[str, Any] = {}
        if dial is not None:
            values["dial"] = DialPermission(dial).value
        if public_number is not None:
            values["public_number"] = validate_e164(public_number, "the number of extension " + extension)
        elif clear_number:
            values["public_number"] = None
        with self._writer.begin() as connection:
            staff_id = self._require_staff(connection, canonical, extension)
            if values:
                connection.execute(update(Staff).where(Staff.id == staff_id).values(**values))
                _bump_version(connection)
        return self.staff_member(canonical, extension)

    def set_forward(
        self, domain: str, extension: str, kind: ForwardKind, target: str, after: int | None = None
    ) -> StaffEntry:
        """Forward the calls of ``extension`` to ``target`` (a number of the clinic) always, when busy
        or when unanswered after ``after`` seconds (no answer only; None keeps the current or the
        default). Returns the member of staff as now stored."""
        canonical = normalize_domain(domain)
        validate_extension(extension)
        target = target.strip()
        if after is not None:
            if kind is not ForwardKind.NO_ANSWER:
                raise StoreError("--after goes with a no-answer forward only: --forward noanswer NUMBER --after SEC")
            _seconds(after, "ringing time before forwarding (--after)", FORWARD_AFTER_RANGE)
        if target == extension:
            raise StoreError(f"extension {extension} cannot forward to itself; give another number")
        with self._writer.begin() as connection:
            _begin_change(connection)
            clinic_id = self._require_clinic(connection, canonical)
            staff_id = self._require_staff(connection, canonical, extension)
            owner = self._number_owner(connection, clinic_id, target) if _NUMBER.fullmatch(target) else None
            if owner is None or owner.startswith(("park lot", "a slot of park lot")):
                raise StoreError(
                    f"{target!r} is not an extension, group, function or role number of {canonical}; "
                    "forwarding to outside numbers needs a trunk, which Sentral does not have yet"
                )
            if kind is ForwardKind.ALWAYS:
                self._refuse_forward_loop(connection, clinic_id, extension, target)
            values: dict[str, Any] = {"target": target}
            if kind is ForwardKind.NO_ANSWER and after is not None:
                values["after"] = after
            found = connection.execute(
                update(StaffForward)
                .where(StaffForward.staff_id == staff_id, StaffForward.kind == kind.value)
                .values(**values)
            )
            if not found.rowcount:
                connection.execute(insert(StaffForward).values(staff_id=staff_id, kind=kind.value, **values))
        return self.staff_member(canonical, extension)

    def clear_forward(self, domain: str, extension: str, kind: ForwardKind | None = None) -> StaffEntry:
        """Clear the forward of ``kind`` of ``extension``, or every forward when ``kind`` is None.
        Returns the member of staff as now stored."""
        canonical = normalize_domain(domain)
        validate_extension(extension)
        with self._writer.begin() as connection:
            staff_id = self._require_staff(connection, canonical, extension)
            query = delete(StaffForward).where(StaffForward.staff_id == staff_id)
            if kind is not None:
                query = query.where(StaffForward.kind == kind.value)
            if connection.execute(query).rowcount:
                _bump_version(connection)
        return self.staff_member(canonical, extension)

    @staticmethod
    def _refuse_forward_loop(connection: Connection, clinic_id: int, extension: str, target: str) -> None:
        """Refuse an unconditional forward of ``extension`` to ``target`` when ``target``'s own
        unconditional forwards lead back to ``extension``."""
        rows = connection.execute(
            select(Staff.extension, StaffForward.target)
            .join(StaffForward, StaffForward.staff_id == Staff.id)
            .where(Staff.clinic_id == clinic_id, StaffForward.kind == ForwardKind.ALWAYS.value)
        )
        always: dict[str, str] = {extension: target for extension, target in rows}
        chain = [extension, target]
        while chain[-1] in always and len(chain) <= len(always) + 1:
            chain.append(always[chain[-1]])
            if chain[-1] == extension:
                raise StoreError(
                    f"forwarding {extension} always to {target} would make a loop ({' -> '.join(chain)}); "
                    f"clear the forward of {chain[-2]} first"
                )

    def staff_member(self, domain: str, extension: str) -> StaffEntry:
        """The member of staff at ``extension`` in clinic ``domain``."""
        canonical = normalize_domain(domain)
        validate_extension(extension)
        found = next((entry for entry in self.staff(canonical) if entry.extension == extension), None)
        if found is None:
            raise StoreError(f"there is no extension {extension} in {canonical}; see `sentral user list`")
        return found

    # -- roles -----------------------------------------------------------------------------------

    def roles(self, domain: str) -> builtins.list[RoleSummary]:
        """The roles of a clinic by name, with their numbers, holder counts and the functions they give."""
        canonical = normalize_domain(domain)
        with self._engine.connect() as connection:
            clinic_id = self._require_clinic(connection, canonical)
            counts: dict[int, int] = {
                role_id: count
                for role_id, count in connection.execute(
                    select(StaffRole.role_id, func.count())
                    .join(Role, Role.id == StaffRole.role_id)
                    .where(Role.clinic_id == clinic_id)
                    .group_by(StaffRole.role_id)
                )
            }
            functions: dict[int, builtins.list[str]] = {}
            for role_id, group_name in connection.execute(
                select(FunctionRole.role_id, RingGroup.name)
                .join(RingGroup, RingGroup.id == FunctionRole.group_id)
                .where(RingGroup.clinic_id == clinic_id)
                .order_by(RingGroup.name)
            ):
                functions.setdefault(role_id, []).append(group_name)
            rows = connection.execute(
                select(Role.id, Role.name, Role.number).where(Role.clinic_id == clinic_id).order_by(Role.name)
            )
            return [
                RoleSummary(canonical, name, number, counts.get(role_id, 0), tuple(functions.get(role_id, ())))
                for role_id, name, number in rows
            ]

    def holders(self, domain: str, role: str) -> builtins.list[StaffEntry]:
        """Everyone in the clinic holding ``role``, by extension; ``StoreError`` if there is no such role."""
        canonical = normalize_domain(domain)
        name = normalize_role(role)
        with self._engine.connect() as connection:
            self._require_role(connection, self._require_clinic(connection, canonical), canonical, name)
        return [entry for entry in self.staff(canonical) if name in entry.roles]

    def set_role_number(self, domain: str, role: str, number: str | None) -> RoleEntry:
        """Give ``role`` a number that rings everyone holding it, or take it away with None."""
        canonical = normalize_domain(domain)
        name = normalize_role(role)
        if number is not None:
            validate_number(number, f"the number of role {name}")
        with self._writer.begin() as connection:
            _begin_change(connection)
            clinic_id = self._require_clinic(connection, canonical)
            role_id = self._require_role(connection, clinic_id, canonical, name)
            old = connection.execute(select(Role.number).where(Role.id == role_id)).scalar_one()
            if old is not None and old != number:
                self._refuse_if_overflow_target(connection, clinic_id, canonical, old, f"role {name}")
            if number is not None:
                self._claim(connection, clinic_id, canonical, number, role_id=role_id)
            connection.execute(update(Role).where(Role.id == role_id).values(number=number))
        return RoleEntry(canonical, name, number)

    # -- groups and functions --------------------------------------------------------------------

    def groups(self, domain: str, kind: GroupKind | None = None) -> builtins.list[GroupEntry]:
        """The groups or functions (both when ``kind`` is None) of a clinic, by name."""
        canonical = normalize_domain(domain)
        with self._engine.connect() as connection:
            self._require_clinic(connection, canonical)
            found = read_groups(connection, canonical)
        return [group for group in found if kind is None or group.kind is kind]

    def group(self, domain: str, name: str, kind: GroupKind | None = None) -> GroupEntry:
        """The group or function called ``name``; ``StoreError`` if there is none (of that ``kind``)."""
        canonical = normalize_domain(domain)
        with self._engine.connect() as connection:
            clinic_id = self._require_clinic(connection, canonical)
            ref = self._require_group(connection, clinic_id, canonical, name, kind)
            return self._group_entry(connection, canonical, ref.name)

    def add_group(
        self,
        domain: str,
        name: str,
        kind: GroupKind,
        settings: GroupSettings | None = None,
        members: Iterable[str] = (),
        roles: Iterable[str] = (),
    ) -> GroupEntry:
        """Create a group or function with ``members`` in ring order and, for a function, ``roles`` that give it."""
        canonical = normalize_domain(domain)
        group_name = normalize_group_name(name, kind)
        checked = (settings or GroupSettings()).checked(kind, group_name)
        extensions = [validate_extension(extension) for extension in members]
        if len(set(extensions)) != len(extensions):
            duplicate = next(e for e in extensions if extensions.count(e) > 1)
            raise StoreError(f"extension {duplicate} is listed twice; name each member once")
        role_names = tuple(dict.fromkeys(normalize_role(role) for role in roles))
        if role_names and kind is not GroupKind.FUNCTION:
            raise StoreError("roles can be linked to functions only, not to groups")
        try:
            with self._writer.begin() as connection:
                _begin_change(connection)
                clinic_id = self._require_clinic(connection, canonical)
                self._refuse_taken_name(connection, clinic_id, canonical, group_name)
                self._check_numbers(connection, clinic_id, canonical, kind, group_name, checked, group_id=None)
                staff_ids = [self._require_staff(connection, canonical, extension) for extension in extensions]
                role_ids = [self._require_role(connection, clinic_id, canonical, role) for role in role_names]
                group_id = connection.execute(
                    insert(RingGroup)
                    .values(clinic_id=clinic_id, name=group_name, kind=kind.value, **checked.columns())
                    .returning(RingGroup.id)
                ).scalar_one()
                for position, staff_id in enumerate(staff_ids, start=1):
                    connection.execute(
                        insert(GroupMember).values(
                            group_id=group_id,
                            staff_id=staff_id,
                            position=position,
                            logged_in=kind is GroupKind.GROUP,
                            via_role=None,
                        )
                    )
                for role_id in role_ids:
                    connection.execute(insert(FunctionRole).values(group_id=group_id, role_id=role_id))
                self._sync_role_members(connection, clinic_id)
                return self._group_entry(connection, canonical, group_name)
        except IntegrityError as exc:
            # Only a change racing this one past the checks above gets here.
            raise StoreError(f"{kind.value} {group_name} could not be added: {_first_line(exc)}") from exc

    def change_group(self, domain: str, name: str, kind: GroupKind, settings: GroupSettings) -> GroupEntry:
        """Replace the settings of a group or function; its members and roles stay."""
        canonical = normalize_domain(domain)
        with self._writer.begin() as connection:
            _begin_change(connection)
            clinic_id = self._require_clinic(connection, canonical)
            ref = self._require_group(connection, clinic_id, canonical, name, kind)
            checked = settings.checked(kind, ref.name)
            old_number, old_acute = connection.execute(
                select(RingGroup.number, RingGroup.acute_number).where(RingGroup.id == ref.id)
            ).one()
            for old in (old_number, old_acute):
                if old is not None and old not in (checked.number, checked.acute_number):
                    what = f"{kind.value} {ref.name}"
                    self._refuse_if_overflow_target(connection, clinic_id, canonical, old, what)
            self._check_numbers(connection, clinic_id, canonical, kind, ref.name, checked, group_id=ref.id)
            connection.execute(update(RingGroup).where(RingGroup.id == ref.id).values(**checked.columns()))
            return self._group_entry(connection, canonical, ref.name)

    def remove_group(self, domain: str, name: str, kind: GroupKind) -> None:
        """Remove a group or function with its memberships and role links."""
        canonical = normalize_domain(domain)
        with self._writer.begin() as connection:
            _begin_change(connection)
            clinic_id = self._require_clinic(connection, canonical)
            ref = self._require_group(connection, clinic_id, canonical, name, kind)
            numbers = connection.execute(
                select(RingGroup.number, RingGroup.acute_number).where(RingGroup.id == ref.id)
            ).one()
            for number in numbers:
                if number is not None:
                    self._refuse_if_overflow_target(
                        connection, clinic_id, canonical, number, f"{kind.value} {ref.name}", ref.id
                    )
            connection.execute(delete(RingGroup).where(RingGroup.id == ref.id))

    def add_member(self, domain: str, name: str, extension: str, kind: GroupKind | None = None) -> GroupEntry:
        """Add ``extension`` at the end of the ring order (logged in to a group, logged out of a function).

        A member a role gave a function becomes a member listed by hand, who stays when the role goes.
        """
        canonical = normalize_domain(domain)
        validate_extension(extension)
        with self._writer.begin() as connection:
            clinic_id = self._require_clinic(connection, canonical)
            ref = self._require_group(connection, clinic_id, canonical, name, kind)
            staff_id = self._require_staff(connection, canonical, extension)
            existing = connection.execute(
                select(GroupMember.via_role).where(GroupMember.group_id == ref.id, GroupMember.staff_id == staff_id)
            ).one_or_none()
            if existing is not None and existing.via_role is None:
                raise StoreError(f"extension {extension} is already a member of {ref.kind.value} {ref.name}")
            if existing is not None:
                connection.execute(
                    update(GroupMember)
                    .where(GroupMember.group_id == ref.id, GroupMember.staff_id == staff_id)
                    .values(via_role=None)
                )
            else:
                connection.execute(
                    insert(GroupMember).values(
                        group_id=ref.id,
                        staff_id=staff_id,
                        position=self._next_position(connection, ref.id),
                        logged_in=ref.kind is GroupKind.GROUP,
                        via_role=None,
                    )
                )
            _bump_version(connection)
            return self._group_entry(connection, canonical, ref.name)

    def remove_member(self, domain: str, name: str, extension: str, kind: GroupKind | None = None) -> GroupEntry:
        """Take ``extension`` out of a group or function; the others keep their order."""
        canonical = normalize_domain(domain)
        validate_extension(extension)
        with self._writer.begin() as connection:
            clinic_id = self._require_clinic(connection, canonical)
            ref = self._require_group(connection, clinic_id, canonical, name, kind)
            staff_id = self._require_staff(connection, canonical, extension)
            self._require_membership(connection, ref.id, staff_id, canonical, extension, ref.kind, ref.name)
            giving = self._roles_giving(connection, ref.id, staff_id)
            if giving:
                raise StoreError(
                    f"extension {extension} holds the role {giving[0]}, which makes them a member of "
                    f"{ref.kind.value} {ref.name}; take the role away or unlink it first"
                )
            connection.execute(
                delete(GroupMember).where(GroupMember.group_id == ref.id, GroupMember.staff_id == staff_id)
            )
            _bump_version(connection)
            return self._group_entry(connection, canonical, ref.name)

    def link_role(self, domain: str, name: str, role: str) -> GroupEntry:
        """Make everyone holding ``role`` a member of the function ``name``, now and whenever granted it."""
        canonical = normalize_domain(domain)
        role_name = normalize_role(role)
        with self._writer.begin() as connection:
            clinic_id = self._require_clinic(connection, canonical)
            ref = self._require_group(connection, clinic_id, canonical, name, GroupKind.FUNCTION)
            role_id = self._require_role(connection, clinic_id, canonical, role_name)
            linked = connection.execute(
                select(FunctionRole.role_id).where(FunctionRole.group_id == ref.id, FunctionRole.role_id == role_id)
            ).first()
            if linked is not None:
                raise StoreError(f"role {role_name} already gives function {ref.name}")
            connection.execute(insert(FunctionRole).values(group_id=ref.id, role_id=role_id))
            self._sync_role_members(connection, clinic_id)
            _bump_version(connection)
            return self._group_entry(connection, canonical, ref.name)

    def unlink_role(self, domain: str, name: str, role: str) -> GroupEntry:
        """Stop ``role`` giving the function ``name``; members it gave leave, members listed by hand stay."""
        canonical = normalize_domain(domain)
        role_name = normalize_role(role)
        with self._writer.begin() as connection:
            clinic_id = self._require_clinic(connection, canonical)
            ref = self._require_group(connection, clinic_id, canonical, name, GroupKind.FUNCTION)
            role_id = self._require_role(connection, clinic_id, canonical, role_name)
            result = connection.execute(
                delete(FunctionRole).where(FunctionRole.group_id == ref.id, FunctionRole.role_id == role_id)
            )
            if not result.rowcount:
                raise StoreError(f"role {role_name} does not give function {ref.name}")
            self._sync_role_members(connection, clinic_id)
            _bump_version(connection)
            return self._group_entry(connection, canonical, ref.name)

    def set_function_roles(self, domain: str, name: str, roles: Iterable[str]) -> GroupEntry:
        """Make exactly ``roles`` give the function ``name`` (none: only members listed by hand remain)."""
        canonical = normalize_domain(domain)
        role_names = tuple(dict.fromkeys(normalize_role(role) for role in roles))
        with self._writer.begin() as connection:
            clinic_id = self._require_clinic(connection, canonical)
            ref = self._require_group(connection, clinic_id, canonical, name, GroupKind.FUNCTION)
            role_ids = [self._require_role(connection, clinic_id, canonical, role) for role in role_names]
            connection.execute(delete(FunctionRole).where(FunctionRole.group_id == ref.id))
            for role_id in role_ids:
                connection.execute(insert(FunctionRole).values(group_id=ref.id, role_id=role_id))
            self._sync_role_members(connection, clinic_id)
            _bump_version(connection)
            return self._group_entry(connection, canonical, ref.name)

    # -- park lots ------------------------------------------------------------------------------

    def park_lots(self, domain: str) -> builtins.list[ParkLotEntry]:
        """The park lots of a clinic, by name."""
        canonical = normalize_domain(domain)
        with self._engine.connect() as connection:
            self._require_clinic(connection, canonical)
            return read_park_lots(connection, canonical)

    def park_lot(self, domain: str, name: str) -> ParkLotEntry:
        """The park lot called ``name``; ``StoreError`` if there is none."""
        canonical = normalize_domain(domain)
        with self._engine.connect() as connection:
            clinic_id = self._require_clinic(connection, canonical)
            _, lot_name = self._require_park_lot(connection, clinic_id, canonical, name)
            return self._park_lot_entry(connection, canonical, lot_name)

    def add_park_lot(self, domain: str, name: str, settings: ParkSettings) -> ParkLotEntry:
        """Create a park lot; its park number and every slot must be free in the clinic."""
        canonical = normalize_domain(domain)
        lot_name = normalize_park_name(name)
        checked = settings.checked(lot_name)
        try:
            with self._writer.begin() as connection:
                _begin_change(connection)
                clinic_id = self._require_clinic(connection, canonical)
                taken = connection.execute(
                    select(ParkLot.id).where(ParkLot.clinic_id == clinic_id, ParkLot.name == lot_name)
                ).first()
                if taken is not None:
                    raise StoreError(
                        f"there is already a park lot called {lot_name} in {canonical}; choose another name"
                    )
                self._claim_park_numbers(connection, clinic_id, canonical, checked, park_lot_id=None)
                columns = self._park_columns(checked)
                connection.execute(insert(ParkLot).values(clinic_id=clinic_id, name=lot_name, **columns))
                return self._park_lot_entry(connection, canonical, lot_name)
        except IntegrityError as exc:
            # Only a change racing this one past the checks above gets here.
            raise StoreError(f"park lot {lot_name} could not be added: {_first_line(exc)}") from exc

    def change_park_lot(self, domain: str, name: str, settings: ParkSettings) -> ParkLotEntry:
        """Replace the park number, slots and timeout of a park lot.

        Calls parked in the running server keep their slot and their recall time.
        """
        canonical = normalize_domain(domain)
        with self._writer.begin() as connection:
            _begin_change(connection)
            clinic_id = self._require_clinic(connection, canonical)
            lot_id, lot_name = self._require_park_lot(connection, clinic_id, canonical, name)
            checked = settings.checked(lot_name)
            self._claim_park_numbers(connection, clinic_id, canonical, checked, park_lot_id=lot_id)
            columns = self._park_columns(checked)
            connection.execute(update(ParkLot).where(ParkLot.id == lot_id).values(**columns))
            return self._park_lot_entry(connection, canonical, lot_name)

    def remove_park_lot(self, domain: str, name: str) -> None:
        """Remove a park lot; its numbers are free again."""
        canonical = normalize_domain(domain)
        with self._writer.begin() as connection:
            _begin_change(connection)
            clinic_id = self._require_clinic(connection, canonical)
            lot_id, _ = self._require_park_lot(connection, clinic_id, canonical, name)
            connection.execute(delete(ParkLot).where(ParkLot.id == lot_id))

    @staticmethod
    def _park_columns(settings: ParkSettings) -> dict[str, Any]:
        return {
            "number": settings.number,
            "first_slot": settings.first_slot,
            "last_slot": settings.last_slot,
            "timeout": settings.timeout,
        }

    @staticmethod
    def _park_lot_entry(connection: Connection, domain: str, name: str) -> ParkLotEntry:
        return next(lot for lot in read_park_lots(connection, domain) if lot.name == name)

    @staticmethod
    def _require_park_lot(connection: Connection, clinic_id: int, domain: str, name: str) -> tuple[int, str]:
        canonical = name.strip().lower()
        lot_id = connection.execute(
            select(ParkLot.id).where(ParkLot.clinic_id == clinic_id, ParkLot.name == canonical)
        ).scalar_one_or_none()
        if lot_id is None:
            raise StoreError(f"there is no park lot called {canonical} in {domain}; see `sentral park list`")
        return lot_id, canonical

    def _claim_park_numbers(
        self,
        connection: Connection,
        clinic_id: int,
        domain: str,
        settings: ParkSettings,
        *,
        park_lot_id: int | None,
    ) -> None:
        """Refuse a park number or slot anything else in the clinic has; ``settings`` are checked already."""
        others = select(ParkLot.name, ParkLot.first_slot, ParkLot.last_slot).where(
            ParkLot.clinic_id == clinic_id
        )
        if park_lot_id is not None:
            others = others.where(ParkLot.id != park_lot_id)
        for other, first, last in connection.execute(others.order_by(ParkLot.name)):
            # Slots of one width overlap when neither range ends before the other begins.
            same_width = len(first) == len(settings.first_slot)
            if same_width and first <= settings.last_slot and settings.first_slot <= last:
                raise StoreError(
                    f"slots {settings.slot_range} overlap the slots {first}-{last} of park lot {other} "
                    f"in {domain}; choose another range"
                )
        number, *slots = settings.numbers()
        owner = self._number_owner(connection, clinic_id, number, park_lot_id=park_lot_id)
        if owner is not None:
            raise StoreError(f"number {number} is already taken by {owner} in {domain}; choose another")
        for slot in slots:
            owner = self._number_owner(connection, clinic_id, slot, park_lot_id=park_lot_id)
            if owner is not None:
                raise StoreError(
                    f"slot {slot} is already taken by {owner} in {domain}; choose another range than "
                    f"{settings.slot_range}"
                )

    # -- trunks ----------------------------------------------------------------------------------

    def trunks(self, domain: str | None = None) -> builtins.list[TrunkEntry]:
        """The trunks of a clinic (of every clinic when ``domain`` is None) by domain, priority and name."""
        with self._engine.connect() as connection:
            if domain is None:
                return read_trunks(connection)
            canonical = normalize_domain(domain)
            self._require_clinic(connection, canonical)
            return read_trunks(connection, canonical)

    def trunk(self, domain: str, name: str) -> TrunkEntry:
        """The trunk called ``name``; ``StoreError`` if there is none."""
        canonical = normalize_domain(domain)
        with self._engine.connect() as connection:
            clinic_id = self._require_clinic(connection, canonical)
            _, trunk_name = self._require_trunk(connection, clinic_id, canonical, name)
            return self._trunk_entry(connection, canonical, trunk_name)

    def add_trunk(self, domain: str, name: str, settings: TrunkSettings) -> TrunkEntry:
        """Add a trunk to a carrier; its name must be new in the clinic."""
        canonical = normalize_domain(domain)
        trunk_name = normalize_trunk_name(name)
        checked = settings.checked(trunk_name)
        try:
            with self._writer.begin() as connection:
                _begin_change(connection)
                clinic_id = self._require_clinic(connection, canonical)
                taken = connection.execute(
                    select(Trunk.id).where(Trunk.clinic_id == clinic_id, Trunk.name == trunk_name)
                ).first()
                if taken is not None:
                    raise StoreError(f"there is already a trunk called {trunk_name} in {canonical}; choose another name")
                connection.execute(insert(Trunk).values(clinic_id=clinic_id, name=trunk_name, **checked.columns()))
                return self._trunk_entry(connection, canonical, trunk_name)
        except IntegrityError as exc:
            raise StoreError(f"trunk {trunk_name} could not be added: {_first_line(exc)}") from exc

    def change_trunk(self, domain: str, name: str, settings: TrunkSettings) -> TrunkEntry:
        """Replace the settings of a trunk; calls in progress on it go on."""
        canonical = normalize_domain(domain)
        with self._writer.begin() as connection:
            _begin_change(connection)
            clinic_id = self._require_clinic(connection, canonical)
            trunk_id, trunk_name = self._require_trunk(connection, clinic_id, canonical, name)
            checked = settings.checked(trunk_name)
            connection.execute(update(Trunk).where(Trunk.id == trunk_id).values(**checked.columns()))
            return self._trunk_entry(connection, canonical, trunk_name)

    def remove_trunk(self, domain: str, name: str) -> str:
        """Remove a trunk; returns its name as stored."""
        canonical = normalize_domain(domain)
        with self._writer.begin() as connection:
            _begin_change(connection)
            clinic_id = self._require_clinic(connection, canonical)
            trunk_id, trunk_name = self._require_trunk(connection, clinic_id, canonical, name)
            connection.execute(delete(Trunk).where(Trunk.id == trunk_id))
        return trunk_name

    @staticmethod
    def _trunk_entry(connection: Connection, domain: str, name: str) -> TrunkEntry:
        return next(trunk for trunk in read_trunks(connection, domain) if trunk.name == name)

    @staticmethod
    def _require_trunk(connection: Connection, clinic_id: int, domain: str, name: str) -> tuple[int, str]:
        canonical = name.strip().lower()
        trunk_id = connection.execute(
            select(Trunk.id).where(Trunk.clinic_id == clinic_id, Trunk.name == canonical)
        ).scalar_one_or_none()
        if trunk_id is None:
            raise StoreError(f"there is no trunk called {canonical} in {domain}; see `sentral trunk list`")
        return trunk_id, canonical

    # -- public numbers --------------------------------------------------------------------------

    def public_numbers(self, domain: str | None = None) -> builtins.list[PublicNumberEntry]:
        """The public numbers of a clinic (of every clinic when ``domain`` is None) by domain and number."""
        with self._engine.connect() as connection:
            if domain is None:
                return read_public_numbers(connection)
            canonical = normalize_domain(domain)
            self._require_clinic(connection, canonical)
            return read_public_numbers(connection, canonical)

    def public_number(self, number: str) -> PublicNumberEntry:
        """The public number ``number`` (E.164), in whichever clinic has it."""
        validate_e164(number)
        with self._engine.connect() as connection:
            return self._public_number_entry(connection, number)

    def add_public_number(self, domain: str, number: str, settings: PublicNumberSettings) -> PublicNumberEntry:
        """Give the clinic the public number ``number`` (E.164), unused anywhere on the server."""
        canonical = normalize_domain(domain)
        validate_e164(number, "public number")
        try:
            with self._writer.begin() as connection:
                _begin_change(connection)
                clinic_id = self._require_clinic(connection, canonical)
                self._refuse_used_public_number(connection, number)
                checked = self._checked_public(connection, clinic_id, canonical, number, settings)
                connection.execute(
                    insert(PublicNumber).values(number=number, clinic_id=clinic_id, **self._public_columns(checked))
                )
                return self._public_number_entry(connection, number)
        except IntegrityError as exc:
            # Only a change racing this one past the checks above gets here.
            raise StoreError(f"public number {number} is already in use; see `sentral number list`") from exc

    def change_public_number(self, number: str, settings: PublicNumberSettings) -> PublicNumberEntry:
        """Replace where the public number ``number`` leads, its opening hours and where it leads when closed."""
        validate_e164(number, "public number")
        with self._writer.begin() as connection:
            _begin_change(connection)
            entry = self._public_number_entry(connection, number)
            clinic_id = self._require_clinic(connection, entry.domain)
            checked = self._checked_public(connection, clinic_id, entry.domain, number, settings)
            connection.execute(
                update(PublicNumber).where(PublicNumber.number == number).values(**self._public_columns(checked))
            )
            return self._public_number_entry(connection, number)

    def remove_public_number(self, number: str) -> PublicNumberEntry:
        """Remove the public number ``number``; returns what it was."""
        validate_e164(number, "public number")
        with self._writer.begin() as connection:
            _begin_change(connection)
            entry = self._public_number_entry(connection, number)
            connection.execute(delete(PublicNumber).where(PublicNumber.number == number))
        return entry

    def number_owner(self, domain: str, number: str) -> str | None:
        """What dials ``number`` in the clinic, in words ("group reception"), or None."""
        canonical = normalize_domain(domain)
        with self._engine.connect() as connection:
            clinic_id = self._require_clinic(connection, canonical)
            return self._number_owner(connection, clinic_id, number) if _NUMBER.fullmatch(number) else None

    @staticmethod
    def _public_columns(settings: PublicNumberSettings) -> dict[str, Any]:
        return {
            "destination": settings.destination,
            "hours": settings.hours,
            "closed_to": settings.closed_to,
            "ask_id": settings.ask_id,
        }

    @staticmethod
    def _public_number_entry(connection: Connection, number: str) -> PublicNumberEntry:
        row = connection.execute(
            select(Clinic.domain, PublicNumber.destination, PublicNumber.hours, PublicNumber.closed_to)
            .add_columns(PublicNumber.ask_id)
            .join(Clinic, Clinic.id == PublicNumber.clinic_id)
            .where(PublicNumber.number == number)
        ).one_or_none()
        if row is None:
            raise StoreError(f"there is no public number {number}; see `sentral number list`")
        return PublicNumberEntry(row.domain, number, row.destination, row.hours, row.closed_to, bool(row.ask_id))

    @staticmethod
    def _refuse_used_public_number(connection: Connection, number: str) -> None:
        domain = connection.execute(
            select(Clinic.domain).join(PublicNumber, PublicNumber.clinic_id == Clinic.id).where(
                PublicNumber.number == number
            )
        ).scalar_one_or_none()
        if domain is not None:
            raise StoreError(f"{number} is already a public number of {domain}; a public number leads to one place")

    def _checked_public(
        self, connection: Connection, clinic_id: int, domain: str, number: str, settings: PublicNumberSettings
    ) -> PublicNumberSettings:
        """The settings with their destinations checked against the clinic's numbers."""
        destination = settings.destination.strip().lower()
        if destination.startswith(ANNOUNCEMENT_PREFIX):
            if not _ANNOUNCEMENT.fullmatch(destination):
                raise StoreError(
                    f"destination {settings.destination!r} must name a prompt in letters, digits, - and _, "
                    "such as announcement:closed-summer"
                )
        else:
            self._require_destination(connection, clinic_id, domain, destination, f"public number {number}")
        hours = (settings.hours or "").strip() or None
        closed_to = (settings.closed_to or "").strip() or None
        if closed_to is not None:
            if closed_to.startswith("+"):
                validate_e164(closed_to, "--closed-to")
                if closed_to == number:
                    raise StoreError(f"public number {number} cannot send its calls to itself when closed")
            else:
                self._require_destination(connection, clinic_id, domain, closed_to, "--closed-to")
        return PublicNumberSettings(destination, hours, closed_to, settings.ask_id)

    def _require_destination(
        self, connection: Connection, clinic_id: int, domain: str, number: str, what: str
    ) -> None:
        """Refuse ``number`` unless an extension, group, function, acute, role or park number has it."""
        owner = self._number_owner(connection, clinic_id, number) if _NUMBER.fullmatch(number) else None
        if owner is None or owner.startswith("a slot of park lot"):
            raise StoreError(
                f"{what} cannot lead to {number!r}: give an extension, group, function, acute, role or park "
                f"number of {domain}, or announcement:NAME"
            )

    # -- extra closed days -----------------------------------------------------------------------

    def holidays(self, domain: str) -> builtins.list[HolidayEntry]:
        """The clinic's extra closed days, by day."""
        canonical = normalize_domain(domain)
        with self._engine.connect() as connection:
            self._require_clinic(connection, canonical)
            return read_holidays(connection, canonical)

    def add_holiday(self, domain: str, day: datetime.date, name: str) -> HolidayEntry:
        """Close the clinic all day on ``day``, besides its country's public holidays."""
        canonical = normalize_domain(domain)
        text = " ".join(name.split())
        if not text or len(text) > MAX_HOLIDAY_NAME:
            raise StoreError(f"give the closed day a name of 1 to {MAX_HOLIDAY_NAME} characters, such as --name 'Staff day'")
        with self._writer.begin() as connection:
            clinic_id = self._require_clinic(connection, canonical)
            taken = connection.execute(
                select(Holiday.name).where(Holiday.clinic_id == clinic_id, Holiday.day == day)
            ).scalar_one_or_none()
            if taken is not None:
                raise StoreError(f"{day.isoformat()} is already a closed day of {canonical} ({taken})")
            connection.execute(insert(Holiday).values(clinic_id=clinic_id, day=day, name=text))
            _bump_version(connection)
        return HolidayEntry(canonical, day, text)

    def remove_holiday(self, domain: str, day: datetime.date) -> None:
        """Open the clinic again on ``day`` (as far as its hours and public holidays say)."""
        canonical = normalize_domain(domain)
        with self._writer.begin() as connection:
            clinic_id = self._require_clinic(connection, canonical)
            found = connection.execute(delete(Holiday).where(Holiday.clinic_id == clinic_id, Holiday.day == day))
            if not found.rowcount:
                raise StoreError(f"{day.isoformat()} is not a closed day of {canonical}; see `sentral holiday list`")
            _bump_version(connection)

    # -- logging in and out ----------------------------------------------------------------------

    def login(self, domain: str, extension: str, name: str) -> bool:
        """Log ``extension`` in to the group or function ``name``; True if they were logged out."""
        return self._set_logged_in(domain, extension, name, True)

    def logout(self, domain: str, extension: str, name: str) -> bool:
        """Log ``extension`` out of the group or function ``name``; True if they were logged in."""
        return self._set_logged_in(domain, extension, name, False)

    def set_logged_in_all(
        self, domain: str, extension: str, kind: GroupKind, logged_in: bool
    ) -> builtins.list[str]:
        """Log ``extension`` in to (or out of) every group or function of ``kind`` they are a member of.

        Returns the names whose state changed, in name order.
        """
        canonical = normalize_domain(domain)
        validate_extension(extension)
        with self._writer.begin() as connection:
            staff_id = self._require_staff(connection, canonical, extension)
            return self._log_all(connection, staff_id, kind, logged_in)

    def toggle_logged_in(self, domain: str, extension: str, kind: GroupKind) -> LoginToggle:
        """The feature code's toggle: logged in to any of ``kind``, log out of all; else log in to all."""
        canonical = normalize_domain(domain)
        validate_extension(extension)
        with self._writer.begin() as connection:
            staff_id = self._require_staff(connection, canonical, extension)
            states = connection.execute(
                select(GroupMember.logged_in)
                .join(RingGroup, RingGroup.id == GroupMember.group_id)
                .where(GroupMember.staff_id == staff_id, RingGroup.kind == kind.value)
            ).scalars().all()
            if not states:
                raise StoreError(f"extension {extension} in {canonical} is not a member of any {kind.value}")
            target = not any(states)
            return LoginToggle(target, tuple(self._log_all(connection, staff_id, kind, target)))

    def _set_logged_in(self, domain: str, extension: str, name: str, logged_in: bool) -> bool:
        canonical = normalize_domain(domain)
        validate_extension(extension)
        with self._writer.begin() as connection:
            clinic_id = self._require_clinic(connection, canonical)
            staff_id = self._require_staff(connection, canonical, extension)
            ref = self._require_group(connection, clinic_id, canonical, name, None)
            self._require_membership(connection, ref.id, staff_id, canonical, extension, ref.kind, ref.name)
            result = connection.execute(
                update(GroupMember)
                .where(
                    GroupMember.group_id == ref.id,
                    GroupMember.staff_id == staff_id,
                    GroupMember.logged_in != logged_in,
                )
                .values(logged_in=logged_in)
            )
            if not result.rowcount:
                return False
            _bump_version(connection)
            return True

    @staticmethod
    def _log_all(connection: Connection, staff_id: int, kind: GroupKind, logged_in: bool) -> builtins.list[str]:
        changing = connection.execute(
            select(RingGroup.id, RingGroup.name)
            .join(GroupMember, GroupMember.group_id == RingGroup.id)
            .where(
                GroupMember.staff_id == staff_id,
                RingGroup.kind == kind.value,
                GroupMember.logged_in != logged_in,
            )
            .order_by(RingGroup.name)
        ).all()
        if not changing:
            return []
        connection.execute(
            update(GroupMember)
            .where(GroupMember.staff_id == staff_id, GroupMember.group_id.in_([row.id for row in changing]))
            .values(logged_in=logged_in)
        )
        _bump_version(connection)
        return [row.name for row in changing]

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
    def _require_role(connection: Connection, clinic_id: int, domain: str, role: str) -> int:
        role_id = connection.execute(
            select(Role.id).where(Role.clinic_id == clinic_id, Role.name == role)
        ).scalar_one_or_none()
        if role_id is None:
            known = connection.execute(
                select(Role.name).where(Role.clinic_id == clinic_id).order_by(Role.name)
            ).scalars().all()
            hint = (
                f"known roles: {', '.join(known)}"
                if known
                else "give it to someone with `sentral user roles EXT --add ROLE`"
            )
            raise StoreError(f"there is no role {role} in {domain}; {hint}")
        return role_id

    @staticmethod
    def _require_group(
        connection: Connection, clinic_id: int, domain: str, name: str, kind: GroupKind | None
    ) -> _GroupRef:
        canonical = name.strip().lower()
        row = connection.execute(
            select(RingGroup.id, RingGroup.kind).where(
                RingGroup.clinic_id == clinic_id, RingGroup.name == canonical
            )
        ).one_or_none()
        if row is None:
            if kind is None:
                raise StoreError(
                    f"there is no group or function called {canonical} in {domain}; "
                    "see `sentral group list` and `sentral function list`"
                )
            raise StoreError(
                f"there is no {kind.value} called {canonical} in {domain}; see `sentral {kind.value} list`"
            )
        found = GroupKind(row.kind)
        if kind is not None and found is not kind:
            raise StoreError(
                f"{canonical} in {domain} is a {found.value}, not a {kind.value}; "
                f"see `sentral {found.value} show {canonical}`"
            )
        return _GroupRef(row.id, canonical, found)

    @staticmethod
    def _group_entry(connection: Connection, domain: str, name: str) -> GroupEntry:
        return next(group for group in read_groups(connection, domain) if group.name == name)

    @staticmethod
    def _refuse_taken_name(connection: Connection, clinic_id: int, domain: str, name: str) -> None:
        kind = connection.execute(
            select(RingGroup.kind).where(RingGroup.clinic_id == clinic_id, RingGroup.name == name)
        ).scalar_one_or_none()
        if kind is not None:
            raise StoreError(f"there is already a {kind} called {name} in {domain}; choose another name")

    def _check_numbers(
        self,
        connection: Connection,
        clinic_id: int,
        domain: str,
        kind: GroupKind,
        name: str,
        settings: GroupSettings,
        *,
        group_id: int | None,
    ) -> None:
        """Claim the group's numbers and check its overflow leads somewhere; ``settings`` are checked already."""
        for number in (settings.number, settings.acute_number):
            if number is not None:
                self._claim(connection, clinic_id, domain, number, group_id=group_id)
        overflow = settings.overflow
        if overflow is None or overflow == OVERFLOW_BUSY:
            return
        # The group's own numbers were refused by ``GroupSettings.checked``; a number it gives up now
        # is another matter: pointing the overflow at it would lead nowhere.
        owner = self._number_owner(connection, clinic_id, overflow, group_id=group_id)
        if owner is not None and self._park_owner(connection, clinic_id, overflow) is not None:
            raise StoreError(
                f"{kind.value} {name} cannot overflow to {overflow}, which is {owner} in {domain}; "
                "choose an extension, group, function or role"
            )
        if owner is None:
            raise StoreError(
                f"{kind.value} {name} cannot overflow to {overflow}: no extension, group, function or role "
                f"has that number in {domain}"
            )

    def _claim(
        self,
        connection: Connection,
        clinic_id: int,
        domain: str,
        number: str,
        *,
        group_id: int | None = None,
        role_id: int | None = None,
    ) -> None:
        owner = self._number_owner(connection, clinic_id, number, group_id=group_id, role_id=role_id)
        if owner is not None:
            raise StoreError(f"number {number} is already taken by {owner} in {domain}; choose another")

    @staticmethod
    def _number_owner(
        connection: Connection,
        clinic_id: int,
        number: str,
        *,
        group_id: int | None = None,
        role_id: int | None = None,
        park_lot_id: int | None = None,
    ) -> str | None:
        """What dials ``number`` in the clinic, in words, leaving out group ``group_id``, role ``role_id``
        and park lot ``park_lot_id``."""
        staff = connection.execute(
            select(Staff.name).where(Staff.clinic_id == clinic_id, Staff.extension == number)
        ).scalar_one_or_none()
        if staff is not None:
            return f"extension {number} ({staff})"
        groups = select(RingGroup.name, RingGroup.kind, RingGroup.number).where(
            RingGroup.clinic_id == clinic_id, or_(RingGroup.number == number, RingGroup.acute_number == number)
        )
        if group_id is not None:
            groups = groups.where(RingGroup.id != group_id)
        group = connection.execute(groups).first()
        if group is not None:
            if group.number == number:
                return f"{group.kind} {group.name}"
            return f"the acute number of {group.kind} {group.name}"
        roles = select(Role.name).where(Role.clinic_id == clinic_id, Role.number == number)
        if role_id is not None:
            roles = roles.where(Role.id != role_id)
        role = connection.execute(roles).scalar()
        if role is not None:
            return f"role {role}"
        return ConfigStore._park_owner(connection, clinic_id, number, park_lot_id=park_lot_id)

    @staticmethod
    def _park_owner(
        connection: Connection, clinic_id: int, number: str, *, park_lot_id: int | None = None
    ) -> str | None:
        """The park lot whose park number or slot ``number`` is, in words, leaving out ``park_lot_id``."""
        lots = select(ParkLot.name, ParkLot.number, ParkLot.first_slot, ParkLot.last_slot).where(
            ParkLot.clinic_id == clinic_id
        )
        if park_lot_id is not None:
            lots = lots.where(ParkLot.id != park_lot_id)
        # A clinic has a handful of lots: reading them all is cheaper than teaching SQL the ranges.
        for name, park_number, first, last in connection.execute(lots.order_by(ParkLot.name)):
            if number == park_number:
                return f"park lot {name}"
            if in_slot_range(number, first, last):
                return f"a slot of park lot {name}"
        return None

    @staticmethod
    def _refuse_if_overflow_target(
        connection: Connection, clinic_id: int, domain: str, number: str, what: str, group_id: int | None = None
    ) -> None:
        """Refuse to give up ``number`` while a group (other than ``group_id``) overflows to it or a
        public number leads to it."""
        query = select(RingGroup.kind, RingGroup.name).where(
            RingGroup.clinic_id == clinic_id, RingGroup.overflow == number
        )
        if group_id is not None:
            query = query.where(RingGroup.id != group_id)
        found = connection.execute(query.order_by(RingGroup.name)).first()
        if found is not None:
            raise StoreError(
                f"{found.kind} {found.name} in {domain} overflows to {number}; change its overflow before "
                f"removing or renumbering {what}"
            )
        public = connection.execute(
            select(PublicNumber.number)
            .where(
                PublicNumber.clinic_id == clinic_id,
                or_(PublicNumber.destination == number, PublicNumber.closed_to == number),
            )
            .order_by(PublicNumber.number)
        ).scalar()
        if public is not None:
            raise StoreError(
                f"public number {public} of {domain} leads to {number}; change it with `sentral number set` "
                f"before removing or renumbering {what}"
            )

    @staticmethod
    def _require_membership(
        connection: Connection,
        group_id: int,
        staff_id: int,
        domain: str,
        extension: str,
        kind: GroupKind,
        name: str,
    ) -> None:
        member = connection.execute(
            select(GroupMember.staff_id).where(GroupMember.group_id == group_id, GroupMember.staff_id == staff_id)
        ).first()
        if member is None:
            raise StoreError(
                f"extension {extension} is not a member of {kind.value} {name} in {domain}; add them with "
                f"`sentral {kind.value} member add {name} {extension}`"
            )

    @staticmethod
    def _roles_giving(connection: Connection, group_id: int, staff_id: int) -> builtins.list[str]:
        """The roles ``staff_id`` holds that give the function ``group_id``, by name."""
        return list(
            connection.execute(
                select(Role.name)
                .join(FunctionRole, FunctionRole.role_id == Role.id)
                .join(StaffRole, StaffRole.role_id == Role.id)
                .where(FunctionRole.group_id == group_id, StaffRole.staff_id == staff_id)
                .order_by(Role.name)
            ).scalars()
        )

    @staticmethod
    def _next_position(connection: Connection, group_id: int) -> int:
        last = connection.execute(
            select(func.max(GroupMember.position)).where(GroupMember.group_id == group_id)
        ).scalar()
        return 1 if last is None else int(last) + 1

    @staticmethod
    def _sync_role_members(connection: Connection, clinic_id: int) -> None:
        """Make the role-given members of the clinic's functions match the roles held and linked now."""
        given: dict[tuple[int, int], builtins.list[str]] = {}
        for group_id, staff_id, role_name in connection.execute(
            select(FunctionRole.group_id, StaffRole.staff_id, Role.name)
            .join(Role, Role.id == FunctionRole.role_id)
            .join(StaffRole, StaffRole.role_id == Role.id)
            .where(Role.clinic_id == clinic_id)
            .order_by(Role.name)
        ):
            given.setdefault((group_id, staff_id), []).append(role_name)
        existing = {
            (row.group_id, row.staff_id): row.via_role
            for row in connection.execute(
                select(GroupMember.group_id, GroupMember.staff_id, GroupMember.via_role)
                .join(RingGroup, RingGroup.id == GroupMember.group_id)
                .where(RingGroup.clinic_id == clinic_id)
            )
        }
        member = (GroupMember.group_id == bindparam("g_id")) & (GroupMember.staff_id == bindparam("s_id"))
        dropped = [
            {"g_id": g, "s_id": s} for (g, s), via in existing.items() if via is not None and (g, s) not in given
        ]
        if dropped:
            connection.execute(delete(GroupMember).where(member), dropped)
        # A member whose role went but who holds another linked role stays, under that role's name.
        renamed = [
            {"g_id": g, "s_id": s, "new_via": given[(g, s)][0]}
            for (g, s), via in existing.items()
            if via is not None and (g, s) in given and via not in given[(g, s)]
        ]
        if renamed:
            connection.execute(update(GroupMember).where(member).values(via_role=bindparam("new_via")), renamed)
        missing = [pair for pair in given if pair not in existing]
        if not missing:
            return
        extensions: dict[int, str] = {
            staff_id: extension
            for staff_id, extension in connection.execute(
                select(Staff.id, Staff.extension).where(Staff.id.in_({s for _, s in missing}))
            )
        }
        # New members join in extension order, as people read them: 99 before 200 before 1001.
        missing.sort(key=lambda pair: (pair[0], len(extensions[pair[1]]), extensions[pair[1]]))
        positions: dict[int, int] = {}
        rows = []
        for group_id, staff_id in missing:
            if group_id not in positions:
                positions[group_id] = ConfigStore._next_position(connection, group_id)
            rows.append(
                {
                    "group_id": group_id,
                    "staff_id": staff_id,
                    "position": positions[group_id],
                    "logged_in": False,
                    "via_role": given[(group_id, staff_id)][0],
                }
            )
            positions[group_id] += 1
        connection.execute(insert(GroupMember), rows)

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
        with worded("the bindings database could not be reached"):
            return self._writer.connect()

    def apply(
        self,
        upserts: Sequence[BindingRow],
        deletes: Sequence[tuple[str, str, str]],
        *,
        connection: Connection | None = None,
    ) -> None:
        """Delete then upsert, all in one transaction (on ``connection`` if given).

        When the same binding appears more than once in ``upserts`` the last one wins. A database
        error comes out as a ``StoreError`` without the rows (they would reach the log).
        """
        with worded(f"{len(upserts) + len(deletes)} binding changes were not stored"):
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
        with worded("the bindings were not loaded"), self._engine.connect() as connection:
            rows = connection.execute(self._select.where(Binding.expires_at > now))
            return [_binding_row(values) for values in rows]

    def purge_expired(self, now: float) -> int:
        """Delete bindings that expired at or before ``now``; returns how many."""
        with worded("expired bindings were not purged"), self._writer.begin() as connection:
            result = connection.execute(delete(Binding).where(Binding.expires_at <= now))
            return int(result.rowcount)

    def registered(self, domain: str, now: float) -> set[str]:
        """The extensions of clinic ``domain`` with at least one binding unexpired at ``now``."""
        with worded("the registered extensions were not read"), self._engine.connect() as connection:
            return set(
                connection.execute(
                    select(Binding.extension)
                    .where(Binding.domain == domain, Binding.expires_at > now)
                    .distinct()
                ).scalars()
            )

    def list(self, now: float) -> builtins.list[BindingRow]:
        """Unexpired bindings ordered by domain, extension and key, for the operator."""
        with worded("the bindings were not listed"), self._engine.connect() as connection:
            rows = connection.execute(
                self._select.where(Binding.expires_at > now).order_by(
                    Binding.domain, func.length(Binding.extension), Binding.extension, Binding.key
                )
            )
            return [_binding_row(values) for values in rows]


# How old the published line states may be before readers take them for those of a stopped server.
LINE_MAX_AGE = 5.0


class LineStatus(Enum):
    """What a line is doing: nothing, ringing, or in a call."""

    IDLE = "idle"
    RINGING = "ringing"
    BUSY = "busy"


@dataclass(frozen=True, slots=True)
class LineState:
    """One line as the server publishes it; ``acute`` while the call on it came in on an acute number.

    ``updated_at`` is filled in by ``LineStateStore.list``: when the server last published or touched it.
    """

    domain: str
    extension: str
    state: LineStatus
    acute: bool = False
    updated_at: float | None = None


class LineStateStore:
    """The line states the running server publishes and ``sentral presence`` reads."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._writer = writing(engine)

    def replace(self, lines: Sequence[LineState], *, now: float | None = None) -> None:
        """Replace every published line with ``lines``, in one transaction, stamped ``now``.

        Idle lines need no row; when a line appears twice, the last one wins.
        """
        stamp = time.time() if now is None else now
        latest = {(line.domain, line.extension): line for line in lines}
        rows = [
            {
                "domain": line.domain,
                "extension": line.extension,
                "state": line.state.value,
                "acute": line.acute,
                "updated_at": stamp,
            }
            for line in latest.values()
        ]
        with worded("the line states were not published"), self._writer.begin() as connection:
            connection.execute(delete(PublishedLine))
            if rows:
                connection.execute(insert(PublishedLine), rows)

    def touch(self, *, now: float | None = None) -> None:
        """Mark the published lines as current without rewriting them: the keep-alive."""
        stamp = time.time() if now is None else now
        with worded("the line states were not refreshed"), self._writer.begin() as connection:
            connection.execute(update(PublishedLine).values(updated_at=stamp))

    def clear(self) -> None:
        """Remove every published line: what the server does when it stops."""
        with worded("the line states were not cleared"), self._writer.begin() as connection:
            connection.execute(delete(PublishedLine))

    def list(
        self, domain: str | None = None, *, max_age: float | None = None, now: float | None = None
    ) -> builtins.list[LineState]:
        """Published lines of clinic ``domain`` (every clinic if None) by domain and extension.

        With ``max_age``, only lines published or touched within that many seconds of ``now``.
        """
        query = select(
            PublishedLine.domain,
            PublishedLine.extension,
            PublishedLine.state,
            PublishedLine.acute,
            PublishedLine.updated_at,
        ).order_by(PublishedLine.domain, func.length(PublishedLine.extension), PublishedLine.extension)
        if domain is not None:
            query = query.where(PublishedLine.domain == domain)
        if max_age is not None:
            query = query.where(PublishedLine.updated_at >= (time.time() if now is None else now) - max_age)
        with self._engine.connect() as connection:
            return [
                LineState(line_domain, extension, LineStatus(state), bool(acute), updated_at)
                for line_domain, extension, state, acute, updated_at in connection.execute(query)
            ]


# How old published trunk states may be before readers take them for those of a stopped server.
TRUNK_MAX_AGE = 5.0


@dataclass(frozen=True, slots=True)
class TrunkState:
    """One trunk as the running server publishes it.

    ``state`` is registered, registering, failed, up, down or unregistered; ``last_status`` the last
    SIP status the carrier answered with, if any; ``calls`` the calls in progress on it.
    ``updated_at`` is when the server last published or touched it (filled in by ``list``).
    """

    domain: str
    name: str
    state: str
    last_status: int | None
    detail: str | None
    calls: int
    updated_at: float = 0.0


class TrunkStateStore:
    """The trunk states the running server publishes and ``sentral trunk list`` reads."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._writer = writing(engine)

    def publish(self, rows: Sequence[TrunkState], *, now: float | None = None) -> None:
        """Replace every published trunk state with ``rows``, in one transaction, stamped ``now``.

        When a trunk appears twice, the last one wins.
        """
        stamp = time.time() if now is None else now
        latest = {(row.domain, row.name): row for row in rows}
        for row in latest.values():
            if row.state not in TRUNK_STATES:
                raise ValueError(f"trunk state {row.state!r} is not one of {', '.join(TRUNK_STATES)}")
        values = [
            {
                "domain": row.domain,
                "name": row.name,
                "state": row.state,
                "last_status": row.last_status,
                "detail": row.detail,
                "calls": row.calls,
                "updated_at": stamp,
            }
            for row in latest.values()
        ]
        with worded("the trunk states were not published"), self._writer.begin() as connection:
            connection.execute(delete(PublishedTrunk))
            if values:
                connection.execute(insert(PublishedTrunk), values)

    def touch(self, *, now: float | None = None) -> None:
        """Mark the published trunk states as current without rewriting them: the keep-alive."""
        stamp = time.time() if now is None else now
        with worded("the trunk states were not refreshed"), self._writer.begin() as connection:
            connection.execute(update(PublishedTrunk).values(updated_at=stamp))

    def clear(self) -> None:
        """Remove every published trunk state: what the server does when it stops."""
        with worded("the trunk states were not cleared"), self._writer.begin() as connection:
            connection.execute(delete(PublishedTrunk))

    def list(self, max_age: float | None = None, now: float | None = None) -> builtins.list[TrunkState]:
        """Published trunk states by domain and name; with ``max_age``, only those published or
        touched within that many seconds of ``now``."""
        query = select(
            PublishedTrunk.domain,
            PublishedTrunk.name,
            PublishedTrunk.state,
            PublishedTrunk.last_status,
            PublishedTrunk.detail,
            PublishedTrunk.calls,
            PublishedTrunk.updated_at,
        ).order_by(PublishedTrunk.domain, PublishedTrunk.name)
        if max_age is not None:
            query = query.where(PublishedTrunk.updated_at >= (time.time() if now is None else now) - max_age)
        with self._engine.connect() as connection:
            return [
                TrunkState(domain, name, state, last_status, detail, int(calls), float(updated_at))
                for domain, name, state, last_status, detail, calls, updated_at in connection.execute(query)
            ]


__all__ = [
    "ANNOUNCEMENT_PREFIX",
    "DEFAULT_PARK_TIMEOUT",
    "DEFAULT_TRUNK_PRIORITY",
    "LINE_MAX_AGE",
    "MAX_PARK_SLOTS",
    "PARK_TIMEOUT_RANGE",
    "PHONE_DIGESTS",
    "TRUNK_MAX_AGE",
    "TRUNK_PRIORITY_RANGE",
    "BindingRow",
    "BindingStore",
    "ClinicContents",
    "ConfigStore",
    "GroupSettings",
    "LineState",
    "LineStateStore",
    "LineStatus",
    "LoginToggle",
    "ParkSettings",
    "PublicNumberSettings",
    "RoleSummary",
    "StoreError",
    "TrunkSettings",
    "TrunkState",
    "TrunkStateStore",
    "default_port",
    "normalize_address",
    "normalize_country",
    "normalize_domain",
    "normalize_group_name",
    "normalize_overflow",
    "normalize_park_name",
    "normalize_role",
    "normalize_trunk_name",
    "parse_day",
    "parse_dial",
    "parse_digest_algorithms",
    "parse_host_port",
    "parse_number_format",
    "parse_phone_digest",
    "parse_slots",
    "parse_strategy",
    "parse_transport",
    "phone_digest_name",
    "validate_e164",
    "validate_extension",
    "validate_name",
    "validate_number",
    "validate_password",
    "validate_timezone",
]
