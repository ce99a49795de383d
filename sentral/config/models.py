"""SQLAlchemy models: clinics, staff, roles, groups and functions, park lots, registrations, call
records, line states and the directory version.

A clinic is a SIP domain; several clinics can share one server. Staff credentials are kept only
as digest HA1 hashes (MD5 and SHA-256 of ``extension:domain:password``), never as the password.
A clinic chooses the digest algorithms its phones are challenged with; a member of staff whose
phone needs others has a choice of their own.

Bindings (the registrar's location service) are written on the registration hot path with Core
statements, not through the ORM; the model here defines the table and its key. ``expires_at`` and
``updated_at`` are epoch seconds as floats because the registrar reasons in ``time.time()`` terms.

Call records (``call_record`` with its ``call_leg`` and ``call_transfer`` rows) and the live-call
snapshot (``live_call``) are likewise written with Core statements by ``sentral.config.cdr``; their
times are epoch seconds too.

Ring groups and functions share one table, ``ring_group``, told apart by ``kind``: their names
share one namespace per clinic, and so do the numbers of staff, groups and roles. That last rule
spans three tables, so ``ConfigStore`` enforces it; the unique constraints here only catch two
groups (or two roles) with one number. A ``group_member`` row with ``via_role`` set was made because
the member holds a role linked to the function (``function_role``); the store adds and removes
those rows as roles and links change, and leaves members listed by hand alone.

A ``park_lot`` has a park number and a range of slots, ``first_slot`` to ``last_slot``, stored as
the digit strings they are dialled as (one width, so ``0701`` stays ``0701``). Its numbers join the
clinic's one name space of numbers; the store checks that too, a range at a time.

``line_state`` is the state of every busy or ringing line as the running server last published
it, for ``sentral presence`` in another process; a line without a row is idle.

Outside lines. A clinic has a country (ISO 3166 alpha-2) that national numbers are read in, a main
number (E.164) its staff call out with, a time zone for opening hours, and a list of country calling
codes opened or closed for outbound calls (``clinic_country``): its own country is open unless a
row closes it, every other country is closed unless a row opens it. A ``trunk`` to a carrier keeps
its password as given, because outbound digest needs the secret itself; the CLI never prints it.
A ``public_number`` (E.164, unique across the server) leads to a number of its clinic or an
announcement, within its opening hours; ``holiday`` rows are a clinic's extra closed days.
``trunk_state`` is what the running server last published about its trunks, as ``line_state``
is for lines.

``api_token`` holds the web API's tokens of each clinic, as SHA-256 hashes of the token.

``directory_version`` is a single-row counter. Every configuration change made through the store
bumps it in the same transaction, and the running server polls it to reload its in-memory directory.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

DEFAULT_DIGEST_ALGORITHMS = "SHA-256,MD5"
DEFAULT_COUNTRY = "NO"
DEFAULT_DIAL = "national"
GROUP_KINDS = ("group", "function")
STRATEGIES = ("ringall", "linear", "rrmemory", "leastrecent", "fewestcalls", "random")
LINE_STATES = ("idle", "ringing", "busy")
DIAL_PERMISSIONS = ("internal", "national", "international")
TRUNK_TRANSPORTS = ("udp", "tcp", "tls")
NUMBER_FORMATS = ("e164", "digits", "national", "00")
CONTACT_KINDS = ("patient", "contact", "staff")  # what sort of person a contact is, as caller ID says
TRUNK_STATES = ("registered", "registering", "failed", "up", "down", "unregistered")

# Explicit constraint names keep migrations portable between SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _now() -> datetime:
    return datetime.now(UTC)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


class Base(DeclarativeBase):
    """Declarative base carrying the shared metadata and naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Clinic(Base):
    """A clinic: one SIP domain, which is also the digest realm of its staff."""

    __tablename__ = "clinic"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    domain: Mapped[str] = mapped_column(String(253), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    digest_algorithms: Mapped[str] = mapped_column(
        String(32), default=DEFAULT_DIGEST_ALGORITHMS, server_default=DEFAULT_DIGEST_ALGORITHMS
    )
    # Where national numbers are read: ISO 3166 alpha-2, upper case.
    # Server default only: a row inserted without it (as older code does) gets it from the database.
    country: Mapped[str] = mapped_column(String(2), server_default=DEFAULT_COUNTRY)
    # E.164 with '+': the caller ID of outside calls by staff without a public number of their own.
    main_number: Mapped[str | None] = mapped_column(String(16))
    # IANA name opening hours are read in; NULL: the server's local time.
    timezone: Mapped[str | None] = mapped_column(String(64))
    # Milliseconds the caller-ID lookup may hold ringing back.
    # Server default only, as for the country: older code inserts clinics without it.
    lookup_budget_ms: Mapped[int] = mapped_column(Integer, server_default="150")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, onupdate=_now)

    staff: Mapped[list[Staff]] = relationship(back_populates="clinic", cascade="all, delete-orphan")
    roles: Mapped[list[Role]] = relationship(back_populates="clinic", cascade="all, delete-orphan")


class Staff(Base):
    """A member of staff with an extension in one clinic."""

    __tablename__ = "staff"
    __table_args__ = (UniqueConstraint("clinic_id", "extension"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id", ondelete="CASCADE"))
    extension: Mapped[str] = mapped_column(String(10))
    name: Mapped[str] = mapped_column(String(200))
    ha1_md5: Mapped[str] = mapped_column(String(32))
    ha1_sha256: Mapped[str] = mapped_column(String(64))
    # False while the member of staff has logged their phone off: no call rings it then.
    phone_on: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # True when this phone may send media straight to another phone that may too (no relay).
    direct_media: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The digest algorithms this phone is challenged with, in order ("MD5", "SHA-256,MD5"), for a
    # phone that cannot follow the clinic's choice; NULL follows the clinic.
    digest_algorithms: Mapped[str | None] = mapped_column(String(32))
    # Which outside numbers they may dial: internal, national or international. The store checks
    # the value: a CHECK constraint would make SQLite rebuild the table, cascading into its children.
    dial: Mapped[str] = mapped_column(String(16), server_default=DEFAULT_DIAL)
    # E.164: their own caller ID for outside calls; NULL: the clinic's main number.
    public_number: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, onupdate=_now)

    clinic: Mapped[Clinic] = relationship(back_populates="staff")
    roles: Mapped[list[Role]] = relationship(secondary="staff_role", back_populates="staff")


class Role(Base):
    """A role within a clinic (doctor, nurse, medical-secretary) that routing can ring."""

    __tablename__ = "role"
    # A unique index rather than a constraint: SQLite adds an index in place, while a constraint
    # would rebuild the table, and dropping the old one would cascade into ``staff_role``.
    __table_args__ = (
        UniqueConstraint("clinic_id", "name"),
        Index("ix_role_clinic_id_number", "clinic_id", "number", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    # Dialling it rings everyone holding the role.
    number: Mapped[str | None] = mapped_column(String(10))

    clinic: Mapped[Clinic] = relationship(back_populates="roles")
    staff: Mapped[list[Staff]] = relationship(secondary="staff_role", back_populates="roles")


class StaffRole(Base):
    """Which staff hold which roles."""

    __tablename__ = "staff_role"

    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"), primary_key=True)
    role_id: Mapped[int] = mapped_column(ForeignKey("role.id", ondelete="CASCADE"), primary_key=True)


FORWARD_KINDS = ("always", "busy", "noanswer")


class StaffForward(Base):
    """One forward of a member of staff: their calls go to ``target`` always, when they are busy,
    or when nobody answers within ``after`` seconds (``noanswer`` only).

    ``target`` is a number of the clinic (an extension, a group's, a function's or a role's); the
    store checks it when it is set, and routing ignores one that no longer leads anywhere.
    """

    __tablename__ = "staff_forward"
    __table_args__ = (
        CheckConstraint(_one_of("kind", FORWARD_KINDS), name="kind"),
        CheckConstraint("after IS NULL OR after > 0", name="after"),
    )

    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    target: Mapped[str] = mapped_column(String(64))
    after: Mapped[int | None] = mapped_column(Integer)


class RingGroup(Base):
    """A ring group (a team colleagues call) or a function (a duty staff log in to and out of).

    Times are whole seconds. ``overflow`` is "busy", a number of the clinic, or NULL for 480.
    """

    __tablename__ = "ring_group"
    __table_args__ = (
        UniqueConstraint("clinic_id", "name"),
        UniqueConstraint("clinic_id", "number"),
        UniqueConstraint("clinic_id", "acute_number"),
        CheckConstraint(_one_of("kind", GROUP_KINDS), name="kind"),
        CheckConstraint(_one_of("strategy", STRATEGIES), name="strategy"),
        CheckConstraint("member_timeout > 0 AND ring_timeout > 0 AND max_wait >= 0", name="times"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(8))
    number: Mapped[str | None] = mapped_column(String(10))
    acute_number: Mapped[str | None] = mapped_column(String(10))
    strategy: Mapped[str] = mapped_column(String(16), default="ringall", server_default="ringall")
    member_timeout: Mapped[int] = mapped_column(Integer, default=20, server_default="20")
    ring_timeout: Mapped[int] = mapped_column(Integer, default=60, server_default="60")
    overflow: Mapped[str | None] = mapped_column(String(16))
    ring_busy: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    max_wait: Mapped[int] = mapped_column(Integer, default=300, server_default="300")
    # Seconds between announcements of a waiting caller's place in the queue; 0: never.
    announce_every: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class GroupMember(Base):
    """A member of a group or function: ring order, whether logged in, and the role that made them one."""

    __tablename__ = "group_member"
    # Removing a member of staff deletes their memberships: the index keeps that from scanning.
    __table_args__ = (Index("ix_group_member_staff_id", "staff_id"),)

    group_id: Mapped[int] = mapped_column(ForeignKey("ring_group.id", ondelete="CASCADE"), primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    logged_in: Mapped[bool] = mapped_column(Boolean)
    via_role: Mapped[str | None] = mapped_column(String(64))


class FunctionRole(Base):
    """A role that gives a function: everyone holding the role is a member of it."""

    __tablename__ = "function_role"

    group_id: Mapped[int] = mapped_column(ForeignKey("ring_group.id", ondelete="CASCADE"), primary_key=True)
    role_id: Mapped[int] = mapped_column(ForeignKey("role.id", ondelete="CASCADE"), primary_key=True)


class ParkLot(Base):
    """A park lot: calls sent to ``number`` wait on the first free slot until someone dials it.

    ``timeout`` is whole seconds a call stays parked before it rings the parker again.
    """

    __tablename__ = "park_lot"
    __table_args__ = (
        UniqueConstraint("clinic_id", "name"),
        UniqueConstraint("clinic_id", "number"),
        CheckConstraint("timeout > 0", name="timeout"),
        CheckConstraint("length(first_slot) = length(last_slot) AND first_slot <= last_slot", name="slots"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    number: Mapped[str] = mapped_column(String(10))
    first_slot: Mapped[str] = mapped_column(String(10))
    last_slot: Mapped[str] = mapped_column(String(10))
    timeout: Mapped[int] = mapped_column(Integer, default=45, server_default="45")


class ClinicCountry(Base):
    """A country calling code opened (``open``) or closed for the clinic's outbound calls.

    The clinic's own country needs no row to be open; a row closes it. Any other code is closed
    until a row opens it.
    """

    __tablename__ = "clinic_country"
    __table_args__ = (CheckConstraint("code BETWEEN 1 AND 999", name="code"),)

    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id", ondelete="CASCADE"), primary_key=True)
    code: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    open: Mapped[bool] = mapped_column(Boolean)


class Trunk(Base):
    """A trunk to a carrier: where calls go out and come in, and how the server signs in there.

    ``password`` is kept as given: outbound digest needs the secret, not a hash of it. ``addresses``
    holds the extra inbound source addresses (IPs or CIDRs) joined by spaces.
    """

    __tablename__ = "trunk"
    __table_args__ = (
        UniqueConstraint("clinic_id", "name"),
        CheckConstraint(_one_of("transport", TRUNK_TRANSPORTS), name="transport"),
        CheckConstraint(_one_of("number_format", NUMBER_FORMATS), name="number_format"),
        CheckConstraint("port BETWEEN 1 AND 65535", name="port"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(String(253))
    port: Mapped[int] = mapped_column(Integer)
    transport: Mapped[str] = mapped_column(String(3), default="udp", server_default="udp")
    priority: Mapped[int] = mapped_column(Integer, default=10, server_default="10")
    register: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    username: Mapped[str | None] = mapped_column(String(128))
    password: Mapped[str | None] = mapped_column(String(256))
    realm: Mapped[str | None] = mapped_column(String(253))
    number_format: Mapped[str] = mapped_column(String(8), default="e164", server_default="e164")
    addresses: Mapped[str] = mapped_column(Text, default="", server_default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())


class PublicNumber(Base):
    """A public number (E.164) of a clinic: where its calls go, when it is open, and where else when not.

    ``destination`` is a number of the clinic or ``announcement:NAME``; ``hours`` the opening-hours
    spec as typed (NULL: always open); ``closed_to`` a number of the clinic or an outside number in
    E.164 (NULL: the closed message).
    """

    __tablename__ = "public_number"

    number: Mapped[str] = mapped_column(String(16), primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id", ondelete="CASCADE"), index=True)
    destination: Mapped[str] = mapped_column(String(80))
    hours: Mapped[str | None] = mapped_column(Text)
    closed_to: Mapped[str | None] = mapped_column(String(16))
    # An unknown caller is asked for their national ID number.
    ask_id: Mapped[bool] = mapped_column(Boolean, server_default=false())


class CallerAdapter(Base):
    """One caller-ID lookup adapter of a clinic, in chain order by ``position`` (then name).

    ``url`` may hold a database password: it is kept as given, since the adapter needs it, and
    shown masked. Which of the other columns matter depends on ``kind``.
    """

    __tablename__ = "caller_adapter"
    __table_args__ = (UniqueConstraint("clinic_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer)
    url: Mapped[str | None] = mapped_column(Text)
    query_number: Mapped[str | None] = mapped_column(Text)
    query_id: Mapped[str | None] = mapped_column(Text)
    file: Mapped[str | None] = mapped_column(Text)
    token_file: Mapped[str | None] = mapped_column(Text)


class Contact(Base):
    """A person or third party in a clinic's own contacts: a name for an E.164 number."""

    __tablename__ = "contact"
    __table_args__ = (
        UniqueConstraint("clinic_id", "name"),
        CheckConstraint(_one_of("kind", CONTACT_KINDS), name="kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    number: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16), default="contact", server_default="contact")


class Holiday(Base):
    """A day a clinic is closed besides its country's public holidays."""

    __tablename__ = "holiday"

    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))


class PublishedTrunk(Base):
    """A trunk's state as the running server last published it, for ``sentral trunk list``."""

    __tablename__ = "trunk_state"
    __table_args__ = (CheckConstraint(_one_of("state", TRUNK_STATES), name="state"),)

    domain: Mapped[str] = mapped_column(String(253), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    last_status: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(Text)
    calls: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    updated_at: Mapped[float] = mapped_column(Float)


class PublishedLine(Base):
    """The state of one line as the running server last published it; no row means idle."""

    __tablename__ = "line_state"
    __table_args__ = (CheckConstraint(_one_of("state", LINE_STATES), name="state"),)

    domain: Mapped[str] = mapped_column(String(253), primary_key=True)
    extension: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(8))
    acute: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    updated_at: Mapped[float] = mapped_column(Float)


class Binding(Base):
    """One registered contact of an address of record (RFC 3261 §10, RFC 5626 instance/reg-id).

    ``key`` is computed by the registrar: ``+sip.instance/reg-id`` when the contact carries them,
    else the contact URI. ``path`` holds the Path header URIs joined by newlines.
    """

    __tablename__ = "binding"
    __table_args__ = (Index("ix_binding_expires_at", "expires_at"),)

    domain: Mapped[str] = mapped_column(String(253), primary_key=True)
    extension: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    contact: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[float] = mapped_column(Float)
    call_id: Mapped[str] = mapped_column(Text)
    cseq: Mapped[int] = mapped_column(Integer)
    instance: Mapped[str | None] = mapped_column(Text)
    reg_id: Mapped[int | None] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text, default="", server_default="")
    transport: Mapped[str] = mapped_column(String(8))
    source_host: Mapped[str] = mapped_column(String(255))
    source_port: Mapped[int] = mapped_column(Integer)
    local_listen: Mapped[str] = mapped_column(Text)
    user_agent: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[float] = mapped_column(Float)


class ApiToken(Base):
    """A clinic platform's key to the web API: only the SHA-256 of the token is kept, so a stolen
    database gives no working token."""

    __tablename__ = "api_token"
    __table_args__ = (UniqueConstraint("clinic_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinic.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Float)


class DirectoryVersion(Base):
    """The single-row counter bumped by every configuration change."""

    __tablename__ = "directory_version"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ServerSecret(Base):
    """Random keys the server must keep across restarts, such as the one that signs digest nonces.

    Were the nonce key new at every start, every phone would fail its next authentication after a
    restart, and a clinic behind one NAT address could trip the abuse guard.
    """

    __tablename__ = "server_secret"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))


class StoredCall(Base):
    """One finished call: who called whom, when, how it ended (``CallRecord`` in the code that uses it).

    ``call_id`` is the server's own id for the call, not a SIP Call-ID (each leg has one of those).
    """

    __tablename__ = "call_record"
    __table_args__ = (
        Index("ix_call_record_started_at", "started_at"),
        Index("ix_call_record_ended_at", "ended_at"),
    )

    call_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    domain: Mapped[str] = mapped_column(String(253))
    caller: Mapped[str] = mapped_column(Text)
    caller_name: Mapped[str | None] = mapped_column(Text)
    callee: Mapped[str] = mapped_column(Text)
    callee_extension: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[float] = mapped_column(Float)
    ringing_at: Mapped[float | None] = mapped_column(Float)
    answered_at: Mapped[float | None] = mapped_column(Float)
    ended_at: Mapped[float] = mapped_column(Float)
    disposition: Mapped[str] = mapped_column(String(32))
    hangup_by: Mapped[str | None] = mapped_column(String(16))
    hangup_reason: Mapped[str] = mapped_column(Text)
    status_to_caller: Mapped[int] = mapped_column(Integer)
    # The forwards the call followed, in order: "1002 always 1003, 1003 noanswer 1004".
    forwarded: Mapped[str | None] = mapped_column(Text)
    # Who the caller-ID lookup found: patient, contact or staff; their record; the adapter's name.
    caller_kind: Mapped[str | None] = mapped_column(String(16))
    caller_reference: Mapped[str | None] = mapped_column(Text)
    caller_source: Mapped[str | None] = mapped_column(String(64))


class StoredLeg(Base):
    """One leg of a finished call: the caller's (leg 0) or one target that was rung."""

    __tablename__ = "call_leg"

    call_id: Mapped[str] = mapped_column(
        ForeignKey("call_record.call_id", ondelete="CASCADE"), primary_key=True
    )
    leg: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    role: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(Text)
    started_at: Mapped[float] = mapped_column(Float)
    ringing_at: Mapped[float | None] = mapped_column(Float)
    answered_at: Mapped[float | None] = mapped_column(Float)
    ended_at: Mapped[float] = mapped_column(Float)
    outcome: Mapped[str] = mapped_column(String(32))
    status: Mapped[int | None] = mapped_column(Integer)


class StoredTransfer(Base):
    """One transfer of a finished call: when, by which extension, how, to what number, how it ended.

    ``seq`` numbers a call's transfers from 0 in the order they happened.
    """

    __tablename__ = "call_transfer"

    call_id: Mapped[str] = mapped_column(
        ForeignKey("call_record.call_id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[float] = mapped_column(Float)
    by_extension: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(32))


class PublishedCall(Base):
    """A call in progress as its server last published it, for ``sentral calls`` in another process.

    ``updated_at`` is when the server last published or refreshed its snapshot; a server that died
    leaves rows behind, and readers tell them apart by their age. ``transfers`` holds the call's
    transfers so far as a JSON array, NULL for a call never transferred.
    """

    __tablename__ = "live_call"

    server_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    domain: Mapped[str] = mapped_column(String(253))
    caller: Mapped[str] = mapped_column(Text)
    callee: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[float] = mapped_column(Float)
    answered_at: Mapped[float | None] = mapped_column(Float)
    legs: Mapped[int] = mapped_column(Integer)
    transfers: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[float] = mapped_column(Float)
    # What the clinic's records say of an outside caller (NULL: nothing, or a staff caller's).
    caller_name: Mapped[str | None] = mapped_column(Text)
    caller_kind: Mapped[str | None] = mapped_column(String(16))
    caller_reference: Mapped[str | None] = mapped_column(Text)
    caller_source: Mapped[str | None] = mapped_column(String(64))


__all__ = [
    "CONTACT_KINDS",
    "DEFAULT_COUNTRY",
    "DEFAULT_DIAL",
    "DEFAULT_DIGEST_ALGORITHMS",
    "DIAL_PERMISSIONS",
    "GROUP_KINDS",
    "LINE_STATES",
    "NUMBER_FORMATS",
    "STRATEGIES",
    "TRUNK_STATES",
    "TRUNK_TRANSPORTS",
    "Base",
    "Binding",
    "CallerAdapter",
    "Clinic",
    "ClinicCountry",
    "Contact",
    "DirectoryVersion",
    "FunctionRole",
    "GroupMember",
    "Holiday",
    "ParkLot",
    "PublicNumber",
    "PublishedCall",
    "PublishedLine",
    "PublishedTrunk",
    "RingGroup",
    "Role",
    "ServerSecret",
    "Staff",
    "StaffRole",
    "StoredCall",
    "StoredLeg",
    "StoredTransfer",
    "Trunk",
]
