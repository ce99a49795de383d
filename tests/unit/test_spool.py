"""The spool: writes the database cannot take wait on local disk, in order, and land exactly once."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import stat
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from sentral.config.cdr import CallRecord, CdrStore, CdrWriter, LegRecord, TransferRecord
from sentral.config.db import StoreError
from sentral.config.spool import BINDING_SPOOL, CDR_SPOOL, SpoolFile, default_spool_dir, spool_depth
from sentral.config.store import BindingRow, BindingStore
from sentral.config.writer import BindingWriter, unreachable
from tests.unit.test_writer import binding, stored


def down_error() -> OperationalError:
    return OperationalError("connect", {}, ConnectionRefusedError("connection refused"))


class Outage:
    """A switch that makes every connection and statement of a store fail as a stopped server would."""

    def __init__(self) -> None:
        self.down = False

    def check(self) -> None:
        if self.down:
            raise down_error()


class FlakyBindings(BindingStore):
    def __init__(self, engine: Engine, outage: Outage) -> None:
        super().__init__(engine)
        self.outage = outage

    def connect(self) -> Connection:
        self.outage.check()
        return super().connect()

    def apply(
        self,
        upserts: Sequence[BindingRow],
        deletes: Sequence[tuple[str, str, str]],
        *,
        connection: Connection | None = None,
    ) -> None:
        self.outage.check()
        super().apply(upserts, deletes, connection=connection)


class FlakyRecords(CdrStore):
    def __init__(self, engine: Engine, outage: Outage) -> None:
        super().__init__(engine)
        self.outage = outage

    def connect(self) -> Connection:
        self.outage.check()
        return super().connect()

    def write(
        self, records: Sequence[CallRecord], *, connection: Connection | None = None, skip_stored: bool = False
    ) -> None:
        self.outage.check()
        super().write(records, connection=connection, skip_stored=skip_stored)


def record(call_id: str, caller: str = "1001") -> CallRecord:
    now = time.time()
    return CallRecord(
        call_id=call_id,
        domain="fjordheim.example",
        caller=caller,
        callee="1002",
        started_at=now - 10,
        ended_at=now,
        answered_at=now - 8,
        disposition="answered",
        hangup_reason="BYE",
        hangup_by="caller",
        status_to_caller=200,
        legs=(
            LegRecord(leg=0, role="caller", target="1001", started_at=now - 10, ended_at=now, outcome="answered"),
            LegRecord(
                leg=1, role="callee", target="1002", started_at=now - 10, ended_at=now, outcome="answered", status=200
            ),
        ),
    )


def test_a_spool_survives_reopening_and_cuts_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "spool" / "items.spool"
    spool: SpoolFile[list[int]] = SpoolFile(path, list, list)
    spool.append([[1], [2, 3]])
    spool.close()
    # A crash in the middle of an append leaves half a line that was never acknowledged.
    with path.open("ab") as file:
        file.write(b"[4,")
    again: SpoolFile[list[int]] = SpoolFile(path, list, list)
    again.open()
    assert len(again) == 2
    assert again.items() == [[1], [2, 3]]
    again.append([[5]])
    assert again.items() == [[1], [2, 3], [5]]
    assert SpoolFile.peek(path) == 3
    again.clear()
    assert len(again) == 0 and again.items() == [] and SpoolFile.peek(path) == 0
    again.close()
    # Spooled records hold phone numbers: for the server's user alone.
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_a_spool_that_cannot_be_created_is_a_sentence(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    spool: SpoolFile[int] = SpoolFile(blocker / "items.spool", int, int)
    with pytest.raises(StoreError, match=r"the spool .* cannot be opened"):
        spool.open()


def test_the_default_spool_lies_beside_an_sqlite_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENTRAL_SPOOL", raising=False)
    assert default_spool_dir(f"sqlite+pysqlite:///{tmp_path}/clinic.db") == Path(f"{tmp_path}/clinic.db-spool")
    monkeypatch.chdir(tmp_path)
    assert default_spool_dir("postgresql+psycopg://u:p@db/sentral") == tmp_path / "sentral-spool"
    monkeypatch.setenv("SENTRAL_SPOOL", str(tmp_path / "elsewhere"))
    assert default_spool_dir("postgresql+psycopg://u:p@db/sentral") == tmp_path / "elsewhere"


def test_only_errors_of_reach_count_as_the_database_being_down() -> None:
    assert unreachable(down_error())
    assert not unreachable(IntegrityError("insert", {}, Exception("duplicate key")))
    assert not unreachable(StoreError("a sentence"))
    # Stores reword driver errors `from None`; the original still tells.
    try:
        try:
            raise down_error()
        except OperationalError:
            raise StoreError("3 call records were not stored: connection refused") from None
    except StoreError as worded:
        assert unreachable(worded)


def test_registrations_while_the_database_is_down_are_spooled_and_land_in_order(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    outage = Outage()
    events: list[tuple[str, int]] = []

    async def scenario() -> None:
        writer = BindingWriter(
            FlakyBindings(engine, outage),
            spool=tmp_path / BINDING_SPOOL,
            on_spool=lambda event, count, _error: events.append((event, count)),
            retry_interval=0.1,
        )
        writer.start()
        await writer.write([binding("1001")], [])
        outage.down = True
        # Each write returns as if committed: the change is on local disk.
        await writer.write([binding("1002")], [])
        await writer.write([binding("1001", cseq=2)], [])
        await writer.write([binding("1003")], [])
        await writer.write([], [binding("1003").identity])
        assert writer.spooled == 4
        assert stored(db_url) == {"1001": 1}
        assert spool_depth(tmp_path).binding_changes == 4
        outage.down = False
        deadline = time.monotonic() + 5
        while writer.spooled and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert writer.spooled == 0
        assert stored(db_url) == {"1001": 2, "1002": 1}
        # Back to committing directly.
        await writer.write([binding("1004")], [])
        assert stored(db_url) == {"1001": 2, "1002": 1, "1004": 1}
        await writer.close()

    asyncio.run(scenario())
    assert events == [("spooling", 1), ("drained", 4)]


def test_a_server_starting_with_a_spool_sees_the_changes_the_database_has_not(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    outage = Outage()

    async def down_then_stopped() -> None:
        writer = BindingWriter(FlakyBindings(engine, outage), spool=tmp_path / BINDING_SPOOL, retry_interval=60)
        writer.start()
        await writer.write([binding("1001")], [])
        outage.down = True
        await writer.write([binding("1002")], [binding("1001").identity])
        await writer.close()

    asyncio.run(down_then_stopped())
    assert stored(db_url) == {"1001": 1}
    outage.down = False

    async def restarted() -> tuple[list[BindingRow], list[tuple[str, str, str]]]:
        writer = BindingWriter(BindingStore(engine), spool=tmp_path / BINDING_SPOOL, retry_interval=0.05)
        changes = writer.spooled_changes()
        writer.start()
        deadline = time.monotonic() + 5
        while writer.spooled and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await writer.close()
        return changes

    upserts, deletes = asyncio.run(restarted())
    assert [row.extension for row in upserts] == ["1002"]
    assert deletes == [binding("1001").identity]
    assert stored(db_url) == {"1002": 1}


def test_call_records_while_the_database_is_down_land_exactly_once(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    outage = Outage()

    async def scenario() -> None:
        writer = CdrWriter(FlakyRecords(engine, outage), spool=tmp_path / CDR_SPOOL, retry_interval=0.1)
        writer.start()
        await writer.write([record("before")])
        outage.down = True
        for i in range(20):
            await writer.write([record(f"during-{i}")])
        assert writer.spooled == 20
        outage.down = False
        deadline = time.monotonic() + 5
        while writer.spooled and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await writer.write([record("after")])
        await writer.close()

    asyncio.run(scenario())
    records = CdrStore(engine).list()
    assert sorted(r.call_id for r in records) == sorted(["before", "after", *(f"during-{i}" for i in range(20))])
    assert all(len(r.legs) == 2 for r in records)
    assert not os.path.getsize(tmp_path / CDR_SPOOL)


def test_a_spool_replayed_twice_stores_each_record_once(engine: Engine, tmp_path: Path) -> None:
    outage = Outage()

    async def spooled_then_stopped() -> None:
        writer = CdrWriter(FlakyRecords(engine, outage), spool=tmp_path / CDR_SPOOL, retry_interval=60)
        writer.start()
        outage.down = True
        await writer.write([record("a")])
        await writer.write([record("b"), record("c")])
        await writer.close()

    asyncio.run(spooled_then_stopped())
    # A crash after a replay committed part of this but before the spool was emptied.
    CdrStore(engine).write([record("a"), record("b")])

    async def restarted() -> None:
        writer = CdrWriter(CdrStore(engine), spool=tmp_path / CDR_SPOOL, retry_interval=0.05)
        writer.start()
        deadline = time.monotonic() + 5
        while writer.spooled and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await writer.close()

    asyncio.run(restarted())
    assert sorted(r.call_id for r in CdrStore(engine).list()) == ["a", "b", "c"]
    assert spool_depth(tmp_path).call_records == 0


def test_a_spooled_record_the_database_refuses_is_dropped_alone(engine: Engine, tmp_path: Path) -> None:
    outage = Outage()
    events: list[str] = []

    async def scenario() -> None:
        writer = CdrWriter(
            FlakyRecords(engine, outage),
            spool=tmp_path / CDR_SPOOL,
            retry_interval=0.1,
            on_spool=lambda event, _count, _error: events.append(event),
        )
        writer.start()
        outage.down = True
        await writer.write([record("good-1")])
        # No caller: the table refuses it, as it would have refused it with the database up.
        await writer.write([record("bad", caller=None)])  # type: ignore[arg-type]
        await writer.write([record("good-2")])
        outage.down = False
        deadline = time.monotonic() + 5
        while writer.spooled and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await writer.close()

    asyncio.run(scenario())
    assert sorted(r.call_id for r in CdrStore(engine).list()) == ["good-1", "good-2"]
    assert events == ["spooling", "dropped", "drained"]


def test_a_spool_that_cannot_be_written_fails_the_write_and_is_forgotten_once_the_database_is_back(
    engine: Engine, tmp_path: Path
) -> None:
    outage = Outage()
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")

    async def scenario() -> None:
        writer = CdrWriter(FlakyRecords(engine, outage), spool=blocker / CDR_SPOOL, retry_interval=0.05)
        writer.start()
        outage.down = True
        with pytest.raises(StoreError, match="spool"):
            await writer.write([record("lost")])
        assert writer.spool_failing and writer.spooled == 0
        outage.down = False
        await writer.write([record("stored")])
        assert not writer.spool_failing
        await writer.close()

    asyncio.run(scenario())
    assert [r.call_id for r in CdrStore(engine).list()] == ["stored"]


def transferred(call_id: str) -> CallRecord:
    """A call 1002 sent blind to 1003, who answered."""
    plain = record(call_id)
    at = plain.started_at + 5
    return dataclasses.replace(
        plain, transfers=(TransferRecord(at=at, by="1002", kind="blind", target="1003", outcome="answered"),)
    )


async def drained(writer: CdrWriter) -> None:
    deadline = time.monotonic() + 5
    while writer.spooled and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


def test_spooled_records_keep_their_transfers_through_a_restart(engine: Engine, tmp_path: Path) -> None:
    outage = Outage()
    moved, plain = transferred("moved"), record("plain")

    async def spooled_then_stopped() -> None:
        writer = CdrWriter(FlakyRecords(engine, outage), spool=tmp_path / CDR_SPOOL, retry_interval=60)
        writer.start()
        outage.down = True
        await writer.write([moved, plain])
        assert writer.spooled == 1  # one submission of two records
        await writer.close()

    asyncio.run(spooled_then_stopped())

    async def restarted() -> None:
        writer = CdrWriter(CdrStore(engine), spool=tmp_path / CDR_SPOOL, retry_interval=0.05)
        # What the server reads back from its spool before it starts (for `sentral calls` and the like).
        assert writer.spooled_items() == [(moved, plain)]
        writer.start()
        await drained(writer)
        await writer.close()

    asyncio.run(restarted())
    assert sorted(CdrStore(engine).list(), key=lambda r: r.call_id) == [moved, plain]


def test_a_spool_written_before_transfers_were_recorded_still_replays(engine: Engine, tmp_path: Path) -> None:
    old = record("old")
    fields = dataclasses.asdict(old)
    del fields["transfers"]
    spool = tmp_path / CDR_SPOOL
    spool.write_text(json.dumps([fields]) + "\n")
    spool.chmod(0o600)

    async def restarted() -> None:
        writer = CdrWriter(CdrStore(engine), spool=spool, retry_interval=0.05)
        writer.start()
        await drained(writer)
        await writer.close()

    asyncio.run(restarted())
    assert CdrStore(engine).list() == [old]
    assert spool_depth(tmp_path).call_records == 0
