"""The binding writer: durable before it answers, group commits under load, errors to the caller."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import cast

import pytest
from sqlalchemy import Engine

from sentral.config.db import StoreError, make_engine, writing
from sentral.config.store import BindingRow, BindingStore
from sentral.config.writer import BindingWriter


def binding(extension: str, **changes: object) -> BindingRow:
    row = BindingRow(
        domain="fjordheim.example",
        extension=extension,
        key=f"sip:{extension}@192.0.2.10:5062",
        contact=f"<sip:{extension}@192.0.2.10:5062>",
        expires_at=time.time() + 3600,
        call_id=f"call-{extension}",
        cseq=1,
        transport="udp",
        source_host="192.0.2.10",
        source_port=5062,
        local_listen="udp:0.0.0.0:5060",
        updated_at=time.time(),
    )
    return replace(row, **changes)  # type: ignore[arg-type]


def stored(db_url: str) -> dict[str, int]:
    """Extension -> cseq, read through an engine of its own as another process would."""
    engine = make_engine(db_url)
    try:
        return {row.extension: row.cseq for row in BindingStore(engine).list(time.time())}
    finally:
        engine.dispose()


@contextmanager
def writes_blocked(engine: Engine) -> Iterator[None]:
    """Hold the binding table's write lock from another connection until the block ends."""
    with writing(engine).connect() as connection, connection.begin():
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("LOCK TABLE binding IN SHARE ROW EXCLUSIVE MODE")
        yield


def test_write_returns_after_the_row_is_committed(engine: Engine, db_url: str) -> None:
    async def scenario() -> None:
        writer = BindingWriter(BindingStore(engine))
        writer.start()
        await writer.write([binding("1001")], [])
        assert stored(db_url) == {"1001": 1}
        await writer.write([binding("1002")], [binding("1001").identity])
        assert stored(db_url) == {"1002": 1}
        await writer.close()

    asyncio.run(scenario())


def test_concurrent_writes_share_commits(engine: Engine, db_url: str) -> None:
    async def scenario() -> int:
        writer = BindingWriter(BindingStore(engine))
        writer.start()
        with writes_blocked(engine):
            first = asyncio.create_task(writer.write([binding("1000")], []))
            # Give the writer thread time to take the first request and stall on the lock.
            await asyncio.sleep(0.2)
            rest = [asyncio.create_task(writer.write([binding(str(2000 + i))], [])) for i in range(199)]
            await asyncio.sleep(0)
            assert not first.done()
        await asyncio.gather(first, *rest)
        await writer.close()
        return writer.commits

    commits = asyncio.run(scenario())
    assert commits <= 2
    assert len(stored(db_url)) == 200


def test_changes_in_one_batch_apply_in_arrival_order(engine: Engine, db_url: str) -> None:
    async def scenario() -> None:
        writer = BindingWriter(BindingStore(engine))
        writer.start()
        with writes_blocked(engine):
            tasks = [
                asyncio.create_task(writer.write([binding("1001")], [])),
                asyncio.create_task(writer.write([binding("1002")], [])),
                asyncio.create_task(writer.write([], [binding("1001").identity])),
                asyncio.create_task(writer.write([binding("1002", cseq=7)], [])),
                asyncio.create_task(writer.write([], [binding("1003").identity])),
                asyncio.create_task(writer.write([binding("1003", cseq=3)], [])),
            ]
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        await writer.close()

    asyncio.run(scenario())
    assert stored(db_url) == {"1002": 7, "1003": 3}


def test_a_failing_write_reaches_its_caller_and_spares_the_rest_of_its_batch(engine: Engine, db_url: str) -> None:
    async def scenario() -> list[BaseException | None]:
        writer = BindingWriter(BindingStore(engine))
        writer.start()
        with writes_blocked(engine):
            tasks = [
                asyncio.create_task(writer.write([binding("1001")], [])),
                asyncio.create_task(writer.write([binding("1002", contact=cast(str, None))], [])),
                asyncio.create_task(writer.write([binding("1003")], [])),
            ]
            await asyncio.sleep(0)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        with pytest.raises(StoreError, match="not stored"):
            await writer.write([binding("1004", call_id=cast(str, None))], [])
        await writer.write([binding("1005")], [])
        await writer.close()
        return [r if isinstance(r, BaseException) else None for r in results]

    first, second, third = asyncio.run(scenario())
    assert first is None
    assert isinstance(second, StoreError) and "1002" not in str(second)
    assert third is None
    assert stored(db_url) == {"1001": 1, "1003": 1, "1005": 1}


def test_close_flushes_queued_writes_and_refuses_new_ones(engine: Engine, db_url: str) -> None:
    async def scenario() -> None:
        writer = BindingWriter(BindingStore(engine))
        writer.start()
        tasks = [asyncio.create_task(writer.write([binding(str(3000 + i))], [])) for i in range(50)]
        await asyncio.sleep(0)
        await writer.close()
        await asyncio.gather(*tasks)
        with pytest.raises(RuntimeError, match="not running"):
            await writer.write([binding("1001")], [])

    asyncio.run(scenario())
    assert len(stored(db_url)) == 50


def test_submit_hands_back_a_future_for_callback_style_callers(engine: Engine, db_url: str) -> None:
    async def scenario() -> list[str]:
        writer = BindingWriter(BindingStore(engine))
        writer.start()
        outcomes: list[str] = []
        good = writer.submit([binding("1001")], [])
        good.add_done_callback(lambda f: outcomes.append(f"ok {stored(db_url)}"))
        bad = writer.submit([binding("1002", contact=cast(str, None))], [])
        bad.add_done_callback(lambda f: outcomes.append(type(f.exception()).__name__))
        nothing = writer.submit([], [])
        assert nothing.done()
        await asyncio.wait([good, bad])
        await writer.close()
        return outcomes

    outcomes = asyncio.run(scenario())
    assert sorted(outcomes) == ["StoreError", "ok {'1001': 1}"]
