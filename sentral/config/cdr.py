"""Call records (CDRs) and the live-call snapshot: what happened to every call, and what is ringing now.

Theory of operation. When a call ends the call controller produces one ``CallRecord`` holding one
``LegRecord`` per leg: leg 0 is the caller's (A) leg, legs 1.. are the targets tried (B legs), in the
order they were tried; and one ``TransferRecord`` per transfer of the call, in the order they
happened. ``CdrStore.write`` stores a batch of them in one transaction with Core ``executemany``
inserts, one for the calls, one for all their legs and one for all their transfers; the records are
keyed by the server's own call id, so legs and transfers need no generated key from the database
and no round trip per call. ``CdrWriter`` puts that behind the group-commit thread of ``sentral.config.writer``: a call
that ends queues its record and the future resolves only after the commit, so a record whose future
resolved survives the process being killed (SQLite runs in WAL mode, where a commit is in the log
before it returns).

``CdrStore.list`` reads records back with their legs and transfers in three queries whatever their
number: the calls, then the legs and the transfers of every call in the same time range, matched up
in memory.

The live calls belong to the running server, but ``sentral calls`` runs in another process. So the
server publishes a snapshot: ``LiveCallStore.publish`` replaces all rows of one server in one
transaction and stamps them with the time. A live call's transfers so far ride in its row as one
JSON text column (NULL for the many calls never transferred): they are read only whole, with the
call, so a table of their own would cost a second statement per publication for nothing. A server that dies leaves its rows behind; readers pass
a ``max_age`` and see only servers that published (or refreshed with ``touch``) within it. Because
a server publishes only when something changed, a quiet server must ``touch`` its rows more often
than readers' ``max_age`` (``sentral calls`` uses ``LIVE_MAX_AGE``), or its long calls would look
stale.

Phone numbers in these records are personal data: nothing here logs them, and database errors are
re-raised as ``StoreError`` sentences that carry neither the statement's parameters nor the row,
since PostgreSQL puts the failing row into its error details.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from sqlalchemy import Connection, Engine, delete, select, update

from sentral.config.db import worded, writing
from sentral.config.models import PublishedCall, StoredCall, StoredLeg, StoredTransfer
from sentral.config.spool import SpoolFile
from sentral.config.writer import GroupCommitWriter, SpoolListener, resolved_future

LegRole = Literal["caller", "callee"]
HangupBy = Literal["caller", "callee", "system"]
TransferKind = Literal["blind", "attended", "semi-attended"]

# How recently a server must have published for `sentral calls` to believe its snapshot.
LIVE_MAX_AGE = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class LegRecord:
    """One leg of a finished call.

    ``leg`` numbers the legs of a call: 0 is the caller's leg, 1.. the targets in the order they
    were tried. ``outcome`` is answered, cancelled, busy, declined, no_answer, failed and the like;
    ``status`` is the final SIP status the leg got, if it got one.
    """

    leg: int
    role: LegRole
    target: str
    started_at: float
    ended_at: float
    outcome: str
    answered_at: float | None = None
    ringing_at: float | None = None
    status: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferRecord:
    """One transfer of a call; ``at`` is epoch seconds.

    ``by`` is the extension that transferred the call, ``kind`` blind, attended or semi-attended,
    ``target`` the number it was transferred to. ``outcome`` is answered (by the target), returned
    (to the transferer, the target having failed) or failed, and "" for a transfer still under way
    when a live call is shown.
    """

    at: float
    by: str
    kind: TransferKind
    target: str
    outcome: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRecord:
    """The record of one finished call; times are epoch seconds.

    ``disposition`` says how the call went for the caller: answered, busy, declined, no_answer,
    cancelled, failed, not_found, unavailable, rejected and the like. ``hangup_reason`` says what
    ended it ("BYE", "CANCEL", "486 Busy Here", "session timer expired", "no answer timeout",
    "drain"); ``status_to_caller`` is the final SIP status the caller got (200 when answered).
    ``transfers`` are the call's transfers in the order they happened.
    """

    call_id: str
    domain: str
    caller: str
    callee: str
    started_at: float
    ended_at: float
    disposition: str
    hangup_reason: str
    status_to_caller: int
    caller_name: str | None = None
    callee_extension: str | None = None
    ringing_at: float | None = None
    answered_at: float | None = None
    hangup_by: HangupBy | None = None
    legs: tuple[LegRecord, ...] = ()
    transfers: tuple[TransferRecord, ...] = ()
    # The forwards the call followed, in order, as ``forwarded_text`` writes them; None: none.
    forwarded: str | None = None
    # Who the caller-ID lookup found ("patient", "contact", "staff"), their record for the clinic
    # platform, and the adapter that matched; None when nobody was found.
    caller_kind: str | None = None
    caller_reference: str | None = None
    caller_source: str | None = None

    @property
    def forwards(self) -> tuple[tuple[str, str, str], ...]:
        """The forwards the call followed: (extension, kind, number it went to), in order."""
        return forwards_of(self.forwarded)

    @property
    def duration(self) -> float:
        """Seconds from answer to end; 0 for a call that was never answered."""
        if self.answered_at is None:
            return 0.0
        return max(0.0, self.ended_at - self.answered_at)


def forwarded_text(hops: Sequence[tuple[str, str, str]]) -> str | None:
    """The stored form of the forwards a call followed: "1002 always 1003, 1003 noanswer 1004"."""
    return ", ".join(" ".join(hop) for hop in hops) or None


def forwards_of(text: str | None) -> tuple[tuple[str, str, str], ...]:
    """The forwards in a stored ``forwarded`` text, as (extension, kind, number)."""
    hops: list[tuple[str, str, str]] = []
    for part in (text or "").split(","):
        words = part.split()
        if len(words) == 3:
            hops.append((words[0], words[1], words[2]))
    return tuple(hops)


# How a parked call's state is published: "parked:701".
PARKED = "parked:"


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveCall:
    """A call in progress as the server publishes it.

    ``state`` is ringing, answered, held or ending, and ``parked:SLOT`` for a call waiting on a
    park slot (``PARKED`` and ``parked_slot``); ``legs`` counts the legs the call has now;
    ``transfers`` are the call's transfers so far (the last one's outcome "" while it is under way).
    ``server_id`` and ``updated_at`` are filled in by ``LiveCallStore.list`` (which server published
    the call, and when); ``publish`` takes the server from its argument and the time from the clock.
    """

    call_id: str
    domain: str
    caller: str
    callee: str
    state: str
    started_at: float
    answered_at: float | None = None
    legs: int = 1
    transfers: tuple[TransferRecord, ...] = ()
    server_id: str | None = None
    updated_at: float | None = None
    # The caller's name, and for an outside caller the records knew, what they are, their record
    # and the adapter that knew them.
    caller_name: str | None = None
    caller_kind: str | None = None
    caller_reference: str | None = None
    caller_source: str | None = None

    @property
    def parked_slot(self) -> str | None:
        """The park slot the call waits on, if it does."""
        return self.state.removeprefix(PARKED) if self.state.startswith(PARKED) else None

    def duration(self, now: float) -> float:
        """Seconds talked so far; 0 while the call has not been answered."""
        if self.answered_at is None:
            return 0.0
        return max(0.0, now - self.answered_at)


_CALL_COLUMNS = (
    "call_id", "domain", "caller", "caller_name", "callee", "callee_extension", "started_at", "ringing_at",
    "answered_at", "ended_at", "disposition", "hangup_by", "hangup_reason", "status_to_caller", "forwarded",
    "caller_kind", "caller_reference", "caller_source",
)  # fmt: skip
_LEG_COLUMNS = (
    "call_id", "leg", "role", "target", "started_at", "ringing_at", "answered_at", "ended_at", "outcome", "status",
)  # fmt: skip
_TRANSFER_COLUMNS = ("call_id", "seq", "at", "by_extension", "kind", "target", "outcome")
_LIVE_COLUMNS = (
    "server_id", "call_id", "domain", "caller", "callee", "state", "started_at", "answered_at", "legs",
    "transfers", "updated_at", "caller_name", "caller_kind", "caller_reference", "caller_source",
)  # fmt: skip


def _call_params(record: CallRecord) -> tuple[Any, ...]:
    """The record's values in ``_CALL_COLUMNS`` order."""
    return (
        record.call_id, record.domain, record.caller, record.caller_name, record.callee,
        record.callee_extension, record.started_at, record.ringing_at, record.answered_at,
        record.ended_at, record.disposition, record.hangup_by, record.hangup_reason,
        record.status_to_caller, record.forwarded, record.caller_kind, record.caller_reference,
        record.caller_source,
    )  # fmt: skip


def _leg_params(call_id: str, leg: LegRecord) -> tuple[Any, ...]:
    """The leg's values in ``_LEG_COLUMNS`` order."""
    return (
        call_id, leg.leg, leg.role, leg.target, leg.started_at, leg.ringing_at, leg.answered_at,
        leg.ended_at, leg.outcome, leg.status,
    )  # fmt: skip


def _transfer_params(call_id: str, seq: int, transfer: TransferRecord) -> tuple[Any, ...]:
    """The transfer's values in ``_TRANSFER_COLUMNS`` order; ``seq`` numbers a call's transfers from 0."""
    return (call_id, seq, transfer.at, transfer.by, transfer.kind, transfer.target, transfer.outcome)


# Rows in one multi-row INSERT at most (see ``_MultiRowInsert``), and its parameters at most: 999 is
# the lowest limit SQLite has had (before 3.32; 32,766 since, PostgreSQL 65,535), so a call record's
# 18 columns take 55 rows a statement.
_MAX_ROWS_PER_INSERT = 64
_MAX_PARAMETERS = 999


class _MultiRowInsert:
    """An INSERT of many rows in one statement (``VALUES (...), (...), ...``), in the driver's own
    placeholder style (``?`` for sqlite3, ``%s`` for psycopg).

    sqlite3 releases the GIL around every step and reset of a statement, and executemany steps
    and resets once per row: each row of a batch handed the GIL from the writer thread to the
    event loop and back, and each handover costs the loop a wake-up of the other thread. At 650
    calls a second the record writer's thread blocked some 5,500 times a second that way, and
    1,700 with a statement per table. A batch is written in statements of ``max_rows`` rows and
    one of the rest, so a commit under load takes one statement per table; a statement's text is
    built once per row count and the driver keeps it prepared.
    """

    def __init__(self, table: str, columns: Sequence[str], paramstyle: str) -> None:
        mark = "?" if paramstyle == "qmark" else "%s"
        self._head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
        self._row = f"({', '.join([mark] * len(columns))})"
        self._statements: dict[int, str] = {}
        self.max_rows = min(_MAX_ROWS_PER_INSERT, _MAX_PARAMETERS // len(columns))

    def statement(self, rows: int) -> str:
        """The INSERT of ``rows`` rows."""
        text = self._statements.get(rows)
        if text is None:
            text = self._statements[rows] = self._head + ", ".join([self._row] * rows)
        return text

    def run(self, connection: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert ``rows`` (each in the columns' order); no rows, no statement."""
        step = self.max_rows
        for start in range(0, len(rows), step):
            chunk = rows[start : start + step]
            connection.exec_driver_sql(self.statement(len(chunk)), tuple(value for row in chunk for value in row))


class CdrStore:
    """Call records on disk: batched inserts on the hot path, listing for the operator."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._writer = writing(engine)
        # The hot path hands rows straight to the driver, many to a statement: SQLAlchemy's per-row
        # parameter processing cost more than the insert itself, on the writer thread that shares
        # the GIL with the event loop. The columns are plain numbers and text; nothing to convert.
        paramstyle = engine.dialect.paramstyle
        self._insert_calls = _MultiRowInsert(StoredCall.__tablename__, _CALL_COLUMNS, paramstyle)
        self._insert_legs = _MultiRowInsert(StoredLeg.__tablename__, _LEG_COLUMNS, paramstyle)
        self._insert_transfers = _MultiRowInsert(StoredTransfer.__tablename__, _TRANSFER_COLUMNS, paramstyle)
        self._calls = select(*(getattr(StoredCall, name) for name in _CALL_COLUMNS))
        self._legs = select(*(getattr(StoredLeg, name) for name in _LEG_COLUMNS))
        self._transfers = select(*(getattr(StoredTransfer, name) for name in _TRANSFER_COLUMNS))

    def connect(self) -> Connection:
        """A connection of its own for a dedicated writer; on SQLite it takes the write lock up front."""
        return self._writer.connect()

    def write(
        self, records: Sequence[CallRecord], *, connection: Connection | None = None, skip_stored: bool = False
    ) -> None:
        """Store the records, their legs and transfers in one transaction (on ``connection`` if given).

        Raises ``StoreError`` (for instance when a call id is already stored); then nothing is stored.
        With ``skip_stored``, records whose call id is stored already are passed over instead: what
        replaying a spool needs, since it may have been replayed once before.
        """
        if not records:
            return
        if skip_stored:
            with worded(f"{len(records)} spooled call records were not stored"):
                if connection is None:
                    with self._writer.begin() as own:
                        self._write_new(own, records)
                else:
                    with connection.begin():
                        self._write_new(connection, records)
            return
        with worded(f"{len(records)} call records were not stored"):
            if connection is None:
                with self._writer.begin() as own:
                    self._write(own, records)
            else:
                with connection.begin():
                    self._write(connection, records)

    def _write_new(self, connection: Connection, records: Sequence[CallRecord]) -> None:
        ids = [record.call_id for record in records]
        stored: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            stored.update(connection.scalars(select(StoredCall.call_id).where(StoredCall.call_id.in_(chunk))))
        fresh: dict[str, CallRecord] = {}
        for record in records:
            if record.call_id not in stored:
                fresh.setdefault(record.call_id, record)
        if fresh:
            self._write(connection, builtins.list(fresh.values()))

    def _write(self, connection: Connection, records: Sequence[CallRecord]) -> None:
        self._insert_calls.run(connection, [_call_params(record) for record in records])
        self._insert_legs.run(connection, [_leg_params(record.call_id, leg) for record in records for leg in record.legs])
        # Few calls are transferred: most batches have no row for this statement, and so no statement.
        transfers = [
            _transfer_params(record.call_id, seq, transfer)
            for record in records
            if record.transfers
            for seq, transfer in enumerate(record.transfers)
        ]
        self._insert_transfers.run(connection, transfers)

    def list(
        self,
        since: float | None = None,
        limit: int | None = None,
        *,
        domain: str | None = None,
        before: float | None = None,
    ) -> builtins.list[CallRecord]:
        """Records of calls that started at or after ``since``, oldest first, with their legs and transfers.

        With ``limit``, only the newest ``limit`` of them (still oldest first); with ``domain``, only
        that clinic's; with ``before``, only calls that started before it (the web API's paging).
        """
        newest_first = (StoredCall.started_at.desc(), StoredCall.call_id.desc())
        calls = self._calls.order_by(*newest_first)
        if since is not None:
            calls = calls.where(StoredCall.started_at >= since)
        if domain is not None:
            calls = calls.where(StoredCall.domain == domain)
        if before is not None:
            calls = calls.where(StoredCall.started_at < before)
        if limit is not None:
            calls = calls.limit(limit)
        with self._engine.connect() as connection:
            rows = connection.execute(calls).all()[::-1]
            if not rows:
                return []
            legs: dict[str, builtins.list[LegRecord]] = {row.call_id: [] for row in rows}
            # Every wanted call started at or after the oldest one found, so this range holds all
            # their legs and the time index finds them (a join ordered by call id makes SQLite scan
            # every leg instead). Calls written since the first query may come back too; they are
            # not in ``legs`` and are skipped, which keeps the answer consistent when PostgreSQL
            # reads each statement at a new snapshot.
            in_range = select(StoredCall.call_id).where(StoredCall.started_at >= rows[0].started_at)
            for values in connection.execute(
                self._legs.where(StoredLeg.call_id.in_(in_range)).order_by(StoredLeg.call_id, StoredLeg.leg)
            ):
                found = legs.get(values.call_id)
                if found is not None:
                    found.append(_leg_record(values))
            transfers: dict[str, builtins.list[TransferRecord]] = {}
            for values in connection.execute(
                self._transfers.where(StoredTransfer.call_id.in_(in_range)).order_by(
                    StoredTransfer.call_id, StoredTransfer.seq
                )
            ):
                if values.call_id in legs:
                    transfers.setdefault(values.call_id, []).append(_transfer_record(values))
        return [
            _call_record(values, tuple(legs[values.call_id]), tuple(transfers.get(values.call_id, ())))
            for values in rows
        ]


def _leg_record(values: Any) -> LegRecord:
    return LegRecord(
        leg=values.leg,
        role=cast(LegRole, values.role),
        target=values.target,
        started_at=values.started_at,
        ringing_at=values.ringing_at,
        answered_at=values.answered_at,
        ended_at=values.ended_at,
        outcome=values.outcome,
        status=values.status,
    )


def _transfer_record(values: Any) -> TransferRecord:
    return TransferRecord(
        at=values.at,
        by=values.by_extension,
        kind=cast(TransferKind, values.kind),
        target=values.target,
        outcome=values.outcome,
    )


def _call_record(values: Any, legs: tuple[LegRecord, ...], transfers: tuple[TransferRecord, ...]) -> CallRecord:
    return CallRecord(
        call_id=values.call_id,
        domain=values.domain,
        caller=values.caller,
        caller_name=values.caller_name,
        callee=values.callee,
        callee_extension=values.callee_extension,
        started_at=values.started_at,
        ringing_at=values.ringing_at,
        answered_at=values.answered_at,
        ended_at=values.ended_at,
        disposition=values.disposition,
        hangup_by=cast(HangupBy | None, values.hangup_by),
        hangup_reason=values.hangup_reason,
        status_to_caller=values.status_to_caller,
        legs=legs,
        forwarded=values.forwarded,
        transfers=transfers,
        caller_kind=values.caller_kind,
        caller_reference=values.caller_reference,
        caller_source=values.caller_source,
    )


class CdrWriter(GroupCommitWriter[tuple[CallRecord, ...]]):
    """Writes call records in group commits on a dedicated thread (see ``sentral.config.writer``).

    If a batch fails, each submission in it is retried on its own, so one bad record fails only the
    caller that submitted it.

    Under load, commits begin at most every ``min_interval`` (20 ms, against the binding writer's
    2 ms). Each commit costs the writer thread a fixed few hundred microseconds holding the GIL the
    event loop needs; at hundreds of calls a second, 2 ms apart meant a commit per record and that
    fixed cost on every call. The record's commit delays only the 200 to the BYE that ended the
    call, and 20 ms there is nothing to a phone whose retransmission timer starts at 500 ms.
    """

    def __init__(
        self,
        store: CdrStore,
        *,
        max_batch: int = 10_000,
        min_interval: float = 0.02,
        spool: Path | None = None,
        on_spool: SpoolListener | None = None,
        retry_interval: float = 1.0,
    ) -> None:
        self._store = store
        super().__init__(
            "cdr writer",
            store.connect,
            self._write_batch,
            max_batch=max_batch,
            min_interval=min_interval,
            spool=SpoolFile(spool, _encode_records, _decode_records) if spool is not None else None,
            replay=self._replay_batch,
            on_spool=on_spool,
            retry_interval=retry_interval,
        )

    def submit(self, records: Sequence[CallRecord]) -> asyncio.Future[None]:
        """Queue records; the future resolves once the transaction holding them committed.

        Call it from the event loop's thread. The future fails with the commit's ``StoreError``.
        """
        if not records:
            return resolved_future()
        return self._enqueue(tuple(records))

    async def write(self, records: Sequence[CallRecord]) -> None:
        """Queue records and return once they are committed (or raise the commit's error)."""
        await self.submit(records)

    def _write_batch(self, connection: Connection, batch: Sequence[tuple[CallRecord, ...]]) -> None:
        self._store.write([record for records in batch for record in records], connection=connection)

    def _replay_batch(self, connection: Connection, batch: Sequence[tuple[CallRecord, ...]]) -> None:
        records = [record for records in batch for record in records]
        self._store.write(records, connection=connection, skip_stored=True)


def _encode_records(records: tuple[CallRecord, ...]) -> list[dict[str, Any]]:
    return [dataclasses.asdict(record) for record in records]


def _decode_records(values: list[dict[str, Any]]) -> tuple[CallRecord, ...]:
    records = []
    for fields in values:
        fields["legs"] = tuple(LegRecord(**leg) for leg in fields["legs"])
        # Spools written before calls recorded their transfers have no such field.
        fields["transfers"] = tuple(TransferRecord(**transfer) for transfer in fields.get("transfers", ()))
        records.append(CallRecord(**fields))
    return tuple(records)


def _transfers_json(transfers: tuple[TransferRecord, ...]) -> str | None:
    """A live call's transfers as the text its row holds; None for a call never transferred."""
    if not transfers:
        return None
    return json.dumps([dataclasses.asdict(transfer) for transfer in transfers], separators=(",", ":"))


def _transfers_from_json(text: str | None) -> tuple[TransferRecord, ...]:
    if not text:
        return ()
    return tuple(TransferRecord(**transfer) for transfer in json.loads(text))


class LiveCallStore:
    """The live-call snapshots that running servers publish and `sentral calls` reads."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._writer = writing(engine)
        self._select = select(*(getattr(PublishedCall, name) for name in _LIVE_COLUMNS))
        # A busy server publishes hundreds of calls a second, from a worker thread that shares the
        # GIL with the event loop: the rows go to the driver as they are (see ``_MultiRowInsert``).
        self._insert = _MultiRowInsert(PublishedCall.__tablename__, _LIVE_COLUMNS, engine.dialect.paramstyle)

    def publish(self, server_id: str, calls: Sequence[LiveCall], *, now: float | None = None) -> None:
        """Replace every row of ``server_id`` with ``calls``, in one transaction, stamped ``now``."""
        stamp = time.time() if now is None else now
        rows = [
            (
                server_id, call.call_id, call.domain, call.caller, call.callee, call.state, call.started_at,
                call.answered_at, call.legs, _transfers_json(call.transfers), stamp, call.caller_name,
                call.caller_kind, call.caller_reference, call.caller_source,
            )  # in _LIVE_COLUMNS order
            for call in calls
        ]  # fmt: skip
        with worded("the live calls were not published"), self._writer.begin() as connection:
            connection.execute(delete(PublishedCall).where(PublishedCall.server_id == server_id))
            self._insert.run(connection, rows)

    def touch(self, server_id: str, *, now: float | None = None) -> None:
        """Mark the snapshot of ``server_id`` as current without rewriting it: the keep-alive."""
        stamp = time.time() if now is None else now
        with worded("the live calls were not refreshed"), self._writer.begin() as connection:
            connection.execute(
                update(PublishedCall).where(PublishedCall.server_id == server_id).values(updated_at=stamp)
            )

    def clear(self, server_id: str) -> None:
        """Remove every row of ``server_id``: what a server does when it stops."""
        with worded("the live calls were not cleared"), self._writer.begin() as connection:
            connection.execute(delete(PublishedCall).where(PublishedCall.server_id == server_id))

    def purge(self, older_than: float, *, now: float | None = None) -> int:
        """Delete rows not refreshed for ``older_than`` seconds, left by servers that died; returns how many."""
        limit = (time.time() if now is None else now) - older_than
        with worded("stale live calls were not purged"), self._writer.begin() as connection:
            result = connection.execute(delete(PublishedCall).where(PublishedCall.updated_at < limit))
            return int(result.rowcount)

    def list(self, max_age: float, *, now: float | None = None) -> builtins.list[LiveCall]:
        """Calls of every server that published within ``max_age`` seconds, oldest call first."""
        limit = (time.time() if now is None else now) - max_age
        with self._engine.connect() as connection:
            rows = connection.execute(
                self._select.where(PublishedCall.updated_at >= limit).order_by(
                    PublishedCall.started_at, PublishedCall.server_id, PublishedCall.call_id
                )
            )
            return [
                LiveCall(
                    server_id=values.server_id,
                    call_id=values.call_id,
                    domain=values.domain,
                    caller=values.caller,
                    callee=values.callee,
                    state=values.state,
                    started_at=values.started_at,
                    answered_at=values.answered_at,
                    legs=values.legs,
                    transfers=_transfers_from_json(values.transfers),
                    updated_at=values.updated_at,
                    caller_name=values.caller_name,
                    caller_kind=values.caller_kind,
                    caller_reference=values.caller_reference,
                    caller_source=values.caller_source,
                )
                for values in rows
            ]


__all__ = [
    "LIVE_MAX_AGE",
    "PARKED",
    "CallRecord",
    "CdrStore",
    "CdrWriter",
    "HangupBy",
    "LegRecord",
    "LegRole",
    "LiveCall",
    "LiveCallStore",
    "TransferKind",
    "TransferRecord",
    "forwarded_text",
    "forwards_of",
]
