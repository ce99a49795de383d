"""Call records and live calls: stored with their legs, read back in order, written in group commits."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import cast

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, delete, event, func, select

from sentral.app import call_record
from sentral.config.cdr import (
    CallRecord,
    CdrStore,
    CdrWriter,
    LegRecord,
    LiveCall,
    LiveCallStore,
    TransferRecord,
)
from sentral.config.db import MIGRATIONS, StoreError, make_engine, migrate, newest_revision, writing
from sentral.config.models import Base, StoredCall, StoredLeg, StoredTransfer
from sentral.pbx.call import CallReport, LegReport, TransferReport

T0 = 1_740_816_000.0  # 2025-03-01T08:00:00Z
CALLER = "+4791234567"


def answered(call_id: str, started_at: float, *, targets: int = 2) -> CallRecord:
    """A call to 1001 whose phones rang in parallel; the first answered, the others were cancelled."""
    legs = [
        LegRecord(leg=0, role="caller", target=CALLER, started_at=started_at, ringing_at=started_at + 0.25,
                  answered_at=started_at + 4.5, ended_at=started_at + 64.5, outcome="answered", status=200),
    ]  # fmt: skip
    for n in range(1, targets + 1):
        won = n == 1
        legs.append(
            LegRecord(leg=n, role="callee", target=f"sip:1001@192.0.2.{10 + n}:5062", started_at=started_at + 0.01,
                      ringing_at=started_at + 0.25, answered_at=started_at + 4.5 if won else None,
                      ended_at=started_at + (64.5 if won else 4.5), outcome="answered" if won else "cancelled",
                      status=200 if won else 487)
        )  # fmt: skip
    return CallRecord(
        call_id=call_id, domain="fjordheim.example", caller=CALLER, caller_name="Kari Nordmann", callee="22",
        callee_extension="1001", started_at=started_at, ringing_at=started_at + 0.25, answered_at=started_at + 4.5,
        ended_at=started_at + 64.5, disposition="answered", hangup_by="callee", hangup_reason="BYE",
        status_to_caller=200, legs=tuple(legs),
    )  # fmt: skip


def busy(call_id: str, started_at: float) -> CallRecord:
    """A call refused by the only phone: no answer time, no caller name, no extension resolved."""
    return CallRecord(
        call_id=call_id, domain="fjordheim.example", caller="1002", callee="1003", started_at=started_at,
        ended_at=started_at + 1.0, disposition="busy", hangup_by="callee", hangup_reason="486 Busy Here",
        status_to_caller=486,
        legs=(
            LegRecord(leg=0, role="caller", target="1002", started_at=started_at, ended_at=started_at + 1.0,
                      outcome="busy", status=486),
            LegRecord(leg=1, role="callee", target="sip:1003@192.0.2.13", started_at=started_at + 0.01,
                      ended_at=started_at + 1.0, outcome="busy", status=486),
        ),
    )  # fmt: skip


def not_found(call_id: str, started_at: float) -> CallRecord:
    """A call to a number nobody has: no legs beyond the caller's, nothing but a status."""
    return CallRecord(
        call_id=call_id, domain="fjordheim.example", caller="1002", callee="9999", started_at=started_at,
        ended_at=started_at, disposition="not_found", hangup_reason="404 Not Found", status_to_caller=404,
    )  # fmt: skip


def transferred(call_id: str, started_at: float) -> CallRecord:
    """A call to 1002 that 1002 sent blind to 1003, who did not answer, so it came back; then attended to 1004."""
    return replace(
        answered(call_id, started_at, targets=1),
        callee="1002",
        callee_extension="1002",
        transfers=(
            TransferRecord(at=started_at + 20, by="1002", kind="blind", target="1003", outcome="returned"),
            TransferRecord(at=started_at + 50, by="1002", kind="attended", target="1004", outcome="answered"),
        ),
    )


def stored_ids(db_url: str) -> list[str]:
    """Call ids of every stored record, read through an engine of its own as another process would."""
    engine = make_engine(db_url)
    try:
        return [record.call_id for record in CdrStore(engine).list()]
    finally:
        engine.dispose()


@contextmanager
def writes_blocked(engine: Engine) -> Iterator[None]:
    """Hold the write lock on call records from another connection until the block ends."""
    with writing(engine).connect() as connection, connection.begin():
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("LOCK TABLE call_record IN SHARE ROW EXCLUSIVE MODE")
        yield


# -- CdrStore ------------------------------------------------------------------------------------


def test_records_round_trip_with_their_legs(engine: Engine) -> None:
    store = CdrStore(engine)
    written = [
        answered("c-answered", T0, targets=3),
        busy("c-busy", T0 + 10),
        not_found("c-missing", T0 + 20),
    ]
    store.write(written)
    assert store.list() == written
    first, second, third = store.list()
    assert [leg.outcome for leg in first.legs] == ["answered", "answered", "cancelled", "cancelled"]
    assert first.duration == 60.0
    assert second.duration == 0.0
    assert second.caller_name is None and second.answered_at is None and second.legs[1].status == 486
    assert third.legs == () and third.hangup_by is None


def test_transfers_round_trip_in_order_with_their_call_alone(engine: Engine) -> None:
    store = CdrStore(engine)
    written = [busy("c-busy", T0), transferred("c-moved", T0 + 10), answered("c-plain", T0 + 20)]
    store.write(written)
    assert store.list() == written
    _, moved, plain = store.list()
    assert [(t.kind, t.target, t.outcome) for t in moved.transfers] == [
        ("blind", "1003", "returned"), ("attended", "1004", "answered")
    ]  # fmt: skip
    assert moved.transfers[0].at == T0 + 30 and moved.transfers[0].by == "1002"
    assert plain.transfers == ()
    # Asked for fewer records, each still brings its own transfers and no other call's.
    store.write([transferred("c-later", T0 + 30)])
    assert store.list(limit=1) == [transferred("c-later", T0 + 30)]
    assert store.list(limit=3) == [transferred("c-moved", T0 + 10), answered("c-plain", T0 + 20),
                                   transferred("c-later", T0 + 30)]  # fmt: skip
    assert store.list(since=T0 + 5, limit=1) == [transferred("c-later", T0 + 30)]


def test_a_refused_transfer_stores_nothing_of_its_batch(engine: Engine) -> None:
    store = CdrStore(engine)
    bad = replace(
        transferred("c2", T0 + 10),
        transfers=(TransferRecord(at=T0 + 11, by=cast(str, None), kind="blind", target="1003", outcome="failed"),),
    )
    with pytest.raises(StoreError, match="call records were not stored"):
        store.write([answered("c1", T0), bad])
    assert store.list() == []
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(StoredLeg)).scalar_one() == 0


def test_list_puts_the_newest_last_and_filters_by_start_time_and_count(engine: Engine) -> None:
    store = CdrStore(engine)
    # Written in the order the calls ended, which is not the order they started in.
    store.write([busy("c3", T0 + 300), answered("c1", T0 + 100)])
    store.write([not_found("c4", T0 + 400), answered("c2", T0 + 200)])
    store.write([busy("c5", T0 + 500)])

    def ids(records: list[CallRecord]) -> list[str]:
        return [record.call_id for record in records]

    assert ids(store.list()) == ["c1", "c2", "c3", "c4", "c5"]
    assert ids(store.list(since=T0 + 200)) == ["c2", "c3", "c4", "c5"]
    assert ids(store.list(since=T0 + 200.001)) == ["c3", "c4", "c5"]
    assert ids(store.list(limit=2)) == ["c4", "c5"]
    assert ids(store.list(since=T0 + 100, limit=3)) == ["c3", "c4", "c5"]
    assert store.list(since=T0 + 1000) == []
    limited = store.list(limit=4)
    assert ids(limited) == ["c2", "c3", "c4", "c5"]
    # Each record brings its own legs, also when only some records are asked for.
    assert limited[0] == answered("c2", T0 + 200)
    assert limited[1] == busy("c3", T0 + 300)


def test_a_batch_is_one_transaction_and_its_error_shows_no_phone_numbers(engine: Engine) -> None:
    store = CdrStore(engine)
    store.write([answered("c1", T0)])
    with pytest.raises(StoreError) as failure:
        store.write([answered("c2", T0 + 10), answered("c1", T0 + 20)])
    assert "call records were not stored" in str(failure.value)
    assert CALLER not in str(failure.value)
    with pytest.raises(StoreError) as failure:
        store.write([replace(answered("c3", T0 + 30), callee=cast(str, None))])
    assert CALLER not in str(failure.value)
    assert [record.call_id for record in store.list()] == ["c1"]


def test_deleting_a_record_deletes_its_legs_and_transfers(engine: Engine) -> None:
    store = CdrStore(engine)
    store.write([transferred("c1", T0), busy("c2", T0 + 10), transferred("c3", T0 + 20)])
    with writing(engine).begin() as connection:
        connection.execute(delete(StoredCall).where(StoredCall.call_id == "c1"))
    with engine.connect() as connection:
        left = connection.execute(select(StoredLeg.call_id, func.count()).group_by(StoredLeg.call_id)).all()
        moved = connection.execute(
            select(StoredTransfer.call_id, func.count()).group_by(StoredTransfer.call_id)
        ).all()
    assert sorted(tuple(row) for row in left) == [("c2", 2), ("c3", 2)]
    assert [tuple(row) for row in moved] == [("c3", 2)]


def test_write_sustains_well_over_1000_calls_per_second(engine: Engine) -> None:
    store = CdrStore(engine)
    store.write([busy(f"warm-{i}", T0 - 1000 + i) for i in range(10)])
    # One call in ten transferred, about what a clinic's reception does.
    records = [
        transferred(f"c{i}", T0 + i) if i % 10 == 0 else answered(f"c{i}", T0 + i, targets=1) for i in range(2000)
    ]
    started = time.perf_counter()
    store.write(records)
    elapsed = time.perf_counter() - started
    stored = store.list(since=T0)
    assert len(stored) == 2000 and sum(len(record.transfers) for record in stored) == 400
    # One second is the budget for 2,000 calls with two legs each; measured figures are a fraction of it.
    assert elapsed < 1.0, f"2000 records took {elapsed:.3f}s"


def test_a_batch_takes_one_statement_per_table_until_it_is_large(engine: Engine) -> None:
    """sqlite3 hands the GIL to other threads at every step of a statement: a batch of rows in one
    statement per table is what keeps the writer thread from taking it from the event loop once
    per row. Larger batches take a statement per 55 calls (999 parameters at most, the lowest
    limit SQLite has had) or 64 legs and one for the rest, and every row arrives whatever the
    split."""
    store = CdrStore(engine)
    inserts: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.startswith("INSERT"):
            inserts.append(statement.split()[2])

    event.listen(engine, "before_cursor_execute", seen)
    try:
        small = [answered(f"s{i}", T0 + i, targets=1) for i in range(30)]  # 60 legs
        store.write(small)
        assert inserts == ["call_record", "call_leg"]
        inserts.clear()
        large = [transferred(f"l{i}", T0 + 100 + i) if i % 50 == 0 else busy(f"l{i}", T0 + 100 + i) for i in range(130)]
        store.write(large)
        # 130 calls: 55 + 55 + 20; 260 legs: 4 x 64 + 4; 3 transferred calls, 6 transfers.
        assert inserts == ["call_record"] * 3 + ["call_leg"] * 5 + ["call_transfer"]
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert store.list() == small + large


# -- CdrWriter -----------------------------------------------------------------------------------


def test_writer_resolves_after_the_commit(engine: Engine, db_url: str) -> None:
    async def scenario() -> None:
        writer = CdrWriter(CdrStore(engine))
        writer.start()
        await writer.write([answered("c1", T0)])
        assert stored_ids(db_url) == ["c1"]
        nothing = writer.submit([])
        assert nothing.done()
        await writer.close()

    asyncio.run(scenario())


def test_concurrent_submissions_share_commits(engine: Engine, db_url: str) -> None:
    async def scenario() -> int:
        writer = CdrWriter(CdrStore(engine))
        writer.start()
        with writes_blocked(engine):
            first = writer.submit([answered("c-first", T0)])
            # Give the writer thread time to take the first submission and stall on the lock.
            await asyncio.sleep(0.2)
            rest = [writer.submit([busy(f"c{i:03d}", T0 + 1 + i)]) for i in range(299)]
            await asyncio.sleep(0)
            assert not first.done()
        await asyncio.gather(first, *rest)
        await writer.close()
        return writer.commits

    commits = asyncio.run(scenario())
    assert commits <= 2
    assert len(stored_ids(db_url)) == 300


def test_records_arriving_steadily_are_committed_in_batches(engine: Engine, db_url: str) -> None:
    """A call ending every 2 ms does not cost a commit each: commits start at most every 20 ms."""

    async def scenario() -> tuple[int, float]:
        writer = CdrWriter(CdrStore(engine))
        writer.start()
        futures = []
        started = time.monotonic()
        for i in range(100):
            futures.append(writer.submit([answered(f"c{i:03d}", T0 + i)]))
            await asyncio.sleep(0.002)
        await asyncio.gather(*futures)
        elapsed = time.monotonic() - started
        await writer.close()
        return writer.commits, elapsed

    commits, elapsed = asyncio.run(scenario())
    assert len(stored_ids(db_url)) == 100
    # One commit at once, then one per 20 ms at most (2 ms apart would have been about 100).
    assert commits <= elapsed / 0.02 + 2, (commits, elapsed)
    assert commits < 40, commits


def test_a_failing_submission_reaches_its_caller_and_spares_the_rest(engine: Engine, db_url: str) -> None:
    CdrStore(engine).write([busy("taken", T0)])

    async def scenario() -> list[BaseException | None]:
        writer = CdrWriter(CdrStore(engine))
        writer.start()
        with writes_blocked(engine):
            futures = [
                writer.submit([answered("c1", T0 + 1)]),
                writer.submit([busy("c2", T0 + 2), busy("taken", T0 + 3)]),
                writer.submit([not_found("c3", T0 + 4)]),
            ]
            await asyncio.sleep(0)
        results = await asyncio.gather(*futures, return_exceptions=True)
        with pytest.raises(StoreError, match="not stored"):
            await writer.write([busy("taken", T0 + 5)])
        await writer.write([busy("c4", T0 + 6)])
        await writer.close()
        with pytest.raises(RuntimeError, match="not running"):
            writer.submit([busy("c5", T0 + 7)])
        return [r if isinstance(r, BaseException) else None for r in results]

    first, second, third = asyncio.run(scenario())
    assert first is None
    assert isinstance(second, StoreError)
    assert third is None
    assert stored_ids(db_url) == ["taken", "c1", "c3", "c4"]


def test_close_commits_everything_queued(engine: Engine, db_url: str) -> None:
    async def scenario() -> list[asyncio.Future[None]]:
        writer = CdrWriter(CdrStore(engine))
        writer.start()
        futures = [writer.submit([busy(f"c{i:02d}", T0 + i)]) for i in range(50)]
        await writer.close()
        await asyncio.gather(*futures)
        return futures

    assert all(future.done() for future in asyncio.run(scenario()))
    assert stored_ids(db_url) == [f"c{i:02d}" for i in range(50)]


WRITING_PROCESS = """
import asyncio, sys
from sentral.config.cdr import CallRecord, CdrStore, CdrWriter
from sentral.config.db import make_engine

def report(call_id, future):
    if not future.cancelled() and future.exception() is None:
        print(call_id, flush=True)

async def main():
    writer = CdrWriter(CdrStore(make_engine(sys.argv[1])))
    writer.start()
    n = 0
    while True:
        for _ in range(20):
            call_id = f"k{n:07d}"
            n += 1
            record = CallRecord(call_id=call_id, domain="fjordheim.example", caller="1002", callee="1003",
                                started_at=1e9 + n, ended_at=1e9 + n, disposition="busy",
                                hangup_reason="486 Busy Here", status_to_caller=486)
            writer.submit([record]).add_done_callback(lambda f, c=call_id: report(c, f))
        await asyncio.sleep(0.002)

asyncio.run(main())
"""


def test_no_acknowledged_record_is_lost_when_the_process_is_killed(db_url: str, engine: Engine) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", WRITING_PROCESS, db_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    acknowledged: list[str] = []
    try:
        while len(acknowledged) < 500:
            line = process.stdout.readline()
            assert line, process.stderr.read()
            acknowledged.append(line.strip())
    finally:
        process.kill()  # SIGKILL: no flushing, no clean shutdown
        process.wait(timeout=30)
    acknowledged += process.stdout.read().split()
    process.stdout.close()
    process.stderr.close()
    assert set(acknowledged) <= set(stored_ids(db_url))


# -- LiveCallStore -------------------------------------------------------------------------------


def live(call_id: str, state: str = "answered", **changes: object) -> LiveCall:
    call = LiveCall(call_id=call_id, domain="fjordheim.example", caller=CALLER, callee="1001", state=state,
                    started_at=T0, answered_at=T0 + 5 if state == "answered" else None, legs=2)  # fmt: skip
    return replace(call, **changes)  # type: ignore[arg-type]


def test_a_publication_replaces_only_that_servers_calls(engine: Engine) -> None:
    calls = LiveCallStore(engine)
    now = T0 + 60
    calls.publish("sip-a", [live("a1", "ringing", started_at=T0 + 1), live("a2")], now=now)
    calls.publish("sip-b", [live("b1", started_at=T0 + 2)], now=now)
    calls.publish("sip-a", [live("a2", "held"), live("a3", "ringing", started_at=T0 + 3)], now=now + 1)
    listed = calls.list(5.0, now=now + 2)
    assert [(c.server_id, c.call_id, c.state) for c in listed] == [
        ("sip-a", "a2", "held"), ("sip-b", "b1", "answered"), ("sip-a", "a3", "ringing")
    ]  # fmt: skip
    assert listed[0] == replace(live("a2", "held"), server_id="sip-a", updated_at=now + 1)
    calls.publish("sip-b", [], now=now + 2)
    assert [c.call_id for c in calls.list(5.0, now=now + 2)] == ["a2", "a3"]
    calls.clear("sip-a")
    assert calls.list(5.0, now=now + 2) == []


def test_a_publication_larger_than_one_statement_is_stored_whole(engine: Engine) -> None:
    calls = LiveCallStore(engine)
    published = [live(f"c{i:03}", "ringing" if i % 3 else "answered", started_at=T0 + i) for i in range(150)]
    calls.publish("sip-a", published, now=T0 + 200)
    listed = calls.list(5.0, now=T0 + 201)
    assert listed == [replace(call, server_id="sip-a", updated_at=T0 + 200) for call in published]
    calls.publish("sip-a", published[:70], now=T0 + 202)
    assert [c.call_id for c in calls.list(5.0, now=T0 + 203)] == [c.call_id for c in published[:70]]


def test_servers_that_stopped_publishing_are_not_shown(engine: Engine) -> None:
    calls = LiveCallStore(engine)
    calls.publish("sip-a", [live("a1")], now=T0)
    calls.publish("sip-b", [live("b1")], now=T0 + 4)
    assert [c.call_id for c in calls.list(5.0, now=T0 + 5)] == ["a1", "b1"]
    assert [c.call_id for c in calls.list(5.0, now=T0 + 6)] == ["b1"]
    # A quiet server keeps its calls visible by touching them rather than publishing them again.
    calls.touch("sip-a", now=T0 + 8)
    assert [c.call_id for c in calls.list(5.0, now=T0 + 10)] == ["a1"]
    assert calls.purge(60.0, now=T0 + 66) == 1
    assert [c.call_id for c in calls.list(100.0, now=T0 + 66)] == ["a1"]


def test_live_calls_can_be_published_from_another_thread(engine: Engine) -> None:
    calls = LiveCallStore(engine)

    async def scenario() -> None:
        await asyncio.to_thread(calls.publish, "sip-a", [live("a1"), live("a2", "ringing")])

    asyncio.run(scenario())
    listed = calls.list(5.0)
    assert sorted(c.call_id for c in listed) == ["a1", "a2"]
    assert all(c.updated_at is not None and abs(c.updated_at - time.time()) < 5 for c in listed)


def test_a_live_call_carries_its_transfers_so_far(engine: Engine) -> None:
    calls = LiveCallStore(engine)
    under_way = (
        TransferRecord(at=T0 + 20, by="1001", kind="blind", target="1003", outcome="returned"),
        TransferRecord(at=T0 + 40, by="1001", kind="semi-attended", target="1004", outcome=""),
    )
    calls.publish("sip-a", [live("a1"), live("a2", transfers=under_way)], now=T0 + 60)
    plain, moving = calls.list(5.0, now=T0 + 61)
    assert plain.transfers == () and moving.transfers == under_way
    # A call never transferred costs its row nothing.
    with engine.connect() as connection:
        stored = connection.exec_driver_sql("SELECT call_id, transfers FROM live_call ORDER BY call_id").all()
    assert stored[0] == ("a1", None)


def test_a_live_call_carries_who_the_records_say_the_caller_is(engine: Engine) -> None:
    calls = LiveCallStore(engine)
    known = live("a1", caller_name="Kari Nordmann", caller_kind="patient", caller_reference="p-42", caller_source="journal")
    calls.publish("sip-a", [known, live("a2")], now=T0 + 60)
    named, unknown = calls.list(5.0, now=T0 + 61)
    assert (named.caller_name, named.caller_kind, named.caller_reference, named.caller_source) == (
        "Kari Nordmann", "patient", "p-42", "journal"
    )  # fmt: skip
    assert (unknown.caller_name, unknown.caller_kind) == (None, None)


# -- from the call controller's report, and the schema ----------------------------------------------


def test_the_servers_record_of_a_report_keeps_its_transfers_on_the_wall_clock() -> None:
    legs = (
        LegReport("a", "a", "1001", "answered", 200, 100.0, None, 100.5, 160.0),
        LegReport("b1", "b", "sip:1002@192.0.2.12", "answered", 200, 100.1, 100.2, 100.5, 130.0),
        LegReport("b2", "b", "sip:1003@192.0.2.13", "answered", 200, 131.0, 131.5, 133.0, 160.0),
    )
    report = CallReport(
        call_id="c1", clinic="fjordheim.example", caller="1001", caller_name="Kari Nordmann", callee="1002",
        callee_name="Ola Nordmann", sip_call_id="abc@192.0.2.11", status=200, legs=legs, started=100.0,
        rang=100.2, answered=100.5, ended=160.0, hangup_by="caller", cause="BYE", answered_by="1002",
        transfers=(TransferReport(130.0, "1002", "blind", "1003", "answered"),),
    )  # fmt: skip
    record = call_record(report, T0)
    assert record.transfers == (
        TransferRecord(at=T0 + 130.0, by="1002", kind="blind", target="1003", outcome="answered"),
    )
    assert call_record(replace(report, transfers=()), T0).transfers == ()
    # What the clinic's records said of the caller reaches the record; nothing known, NULLs.
    known = call_record(
        replace(report, caller_kind="patient", caller_reference="p-42", caller_source="journal"), T0
    )
    assert (known.caller_name, known.caller_kind, known.caller_reference, known.caller_source) == (
        "Kari Nordmann", "patient", "p-42", "journal"
    )  # fmt: skip
    assert (record.caller_kind, record.caller_reference, record.caller_source) == (None, None, None)


def test_the_servers_record_of_a_report_says_how_each_call_and_leg_went() -> None:
    def report(status: int | None, cause: str, *legs: tuple[str, int | None]) -> CallReport:
        return CallReport(
            call_id="c2", clinic="fjordheim.example", caller="1001", caller_name="", callee="600",
            callee_name="", sip_call_id="def@192.0.2.11", status=status,
            legs=tuple(LegReport(f"b{n}", "b", f"sip:100{n}@192.0.2.1{n}", outcome, code, 10.0, 10.5, None, None)
                       for n, (outcome, code) in enumerate(legs, 2)),
            started=10.0, rang=10.5, answered=None, ended=40.0, hangup_by="nobody", cause=cause, answered_by="",
            transfers=(), forwarded=(("1002", "noanswer", "1003"),),
        )  # fmt: skip

    record = call_record(
        report(486, "486 Busy Here", ("rejected", 486), ("rejected", 603), ("rejected", 500), ("timeout", None),
               ("not reached", None)), T0
    )  # fmt: skip
    assert [leg.outcome for leg in record.legs] == ["busy", "declined", "failed", "no_answer", "not_reached"]
    assert [leg.leg for leg in record.legs] == [0, 1, 2, 3, 4]
    # A leg still open when the call ended ends with it; a time never reached stays NULL.
    assert {(leg.ended_at, leg.answered_at, leg.ringing_at) for leg in record.legs} == {(T0 + 40.0, None, T0 + 10.5)}
    assert (record.disposition, record.status_to_caller, record.hangup_by) == ("busy", 486, None)
    assert (record.answered_at, record.caller_name, record.callee_extension) == (None, None, None)
    assert record.forwarded == "1002 noanswer 1003"
    assert call_record(report(480, "no answer timeout"), T0).disposition == "no_answer"
    assert call_record(report(487, "CANCEL"), T0).disposition == "cancelled"
    # No final status at all: the record says the caller got a 500.
    unknown = call_record(report(None, "drain"), T0)
    assert (unknown.disposition, unknown.status_to_caller, unknown.legs) == ("failed", 500, ())


def _alembic(engine: Engine, action: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with writing(engine).begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, action)(config, revision)


def test_the_transfers_migration_keeps_the_records_and_goes_back(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        _alembic(engine, "upgrade", "0006")
        with writing(engine).begin() as connection:
            connection.execute(StoredCall.__table__.insert(), [_call_row("before")])
        migrate(engine)
        store = CdrStore(engine)
        [before] = store.list()
        assert before.call_id == "before" and before.transfers == ()
        store.write([transferred("after", T0 + 100)])
        LiveCallStore(engine).publish("sip-a", [live("a1", transfers=transferred("x", T0).transfers)], now=T0)
        assert store.list()[1] == transferred("after", T0 + 100)
        _alembic(engine, "downgrade", "0006")
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT count(*) FROM call_record").scalar_one() == 2
            assert connection.exec_driver_sql("SELECT count(*) FROM live_call").scalar_one() == 1
        migrate(engine)
        assert [record.transfers for record in store.list()] == [(), ()]
    finally:
        engine.dispose()


def _call_row(call_id: str) -> dict[str, object]:
    """A call record as an older server stored it, straight into the table."""
    return {
        "call_id": call_id, "domain": "fjordheim.example", "caller": "1001", "callee": "1002", "started_at": T0,
        "ended_at": T0 + 1, "disposition": "busy", "hangup_reason": "486 Busy Here", "status_to_caller": 486,
    }  # fmt: skip


def test_the_migrated_transfer_tables_are_the_models(engine: Engine) -> None:
    assert newest_revision() == "0012"
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = [
            diff
            for diff in compare_metadata(context, Base.metadata)
            if "call_transfer" in repr(diff) or "live_call" in repr(diff)
        ]
    assert differences == []
