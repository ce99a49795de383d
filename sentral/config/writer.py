"""Group-commit writers: durable writes for the hot path, off the event loop.

Theory of operation. The registrar answers a REGISTER with 200 OK only once the binding is on disk,
and a call's record must be on disk before the call controller forgets it; yet a commit costs a disk
flush (SQLite) or a round trip (PostgreSQL), far too slow to do once per request and far too
blocking to do on the event loop. So one dedicated thread owns one connection. Coroutines queue
their changes and await a future; the thread takes everything queued, applies it in a single
transaction, and once the commit returned resolves every future of that batch with one
``call_soon_threadsafe`` per event loop. While a commit is in flight new requests pile up and become the next batch, so the batch
size grows with the load and the commit rate stays bounded by the disk, not by the request rate.
Under load a new commit also waits until ``min_interval`` (2 ms) has passed since the previous one
began: each commit has a fixed cost in the writer thread, paid holding the GIL the event loop
needs, and one-row commits back to back would spend it on every request.

``GroupCommitWriter`` is that machinery, parameterised by how to open the connection and how to
apply a batch of items in one transaction. ``BindingWriter`` builds on it here; the call-record
writer lives with the call records in ``sentral.config.cdr``.

When the database cannot be reached (``unreachable``), a writer that has a spool
(``sentral.config.spool``) appends the batch there instead, fsyncs, and resolves its futures as
if committed: a database outage delays the writes but loses none of them. Every later batch goes
behind it in the spool, and the writer thread replays the spool (in one transaction, with the
writer's idempotent ``replay``) as soon as the database answers again: at the next batch, or every
``retry_interval`` while nothing arrives. ``on_spool`` hears of it (``spooling`` when the writer
starts to spool, ``drained`` when the spool was replayed, ``dropped`` for a spooled item the
database refused for itself), from the writer thread.

Binding changes within a batch are merged in arrival order (a later upsert or delete of the same
binding wins), which is exactly the state sequential application would leave. If a batch fails, each
of its requests is retried in a transaction of its own, so one bad row fails only the caller that
sent it and the others still commit; every failure reaches its awaiting caller as the original
exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from math import inf
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection
from sqlalchemy import exc as sa_exc

from sentral.config.db import StoreError
from sentral.config.spool import SpoolFile
from sentral.config.store import BindingRow, BindingStore

Identity = tuple[str, str, str]
Item = TypeVar("Item")


@dataclass(frozen=True, slots=True)
class _Request(Generic[Item]):
    item: Item
    future: asyncio.Future[None]
    loop: asyncio.AbstractEventLoop


def _settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        # The caller may have been cancelled while its batch was committing; nothing to resolve then.
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


# Errors that say the database could not be reached or lost the connection, not that it refused
# the change itself: what a spool is for.
_UNREACHABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError, sa_exc.TimeoutError)

SpoolListener = Callable[[str, int, "BaseException | None"], None]


def unreachable(error: BaseException) -> bool:
    """True when ``error`` (or one it was raised from or during) says the database is out of reach.

    Store methods reword driver errors into ``StoreError`` sentences with ``from None``; the
    original still hangs on ``__context__``.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _UNREACHABLE):
            return True
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        current = current.__cause__ or current.__context__
    return False


def resolved_future() -> asyncio.Future[None]:
    """A future of the running loop that is already done: the answer when there is nothing to write."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


class GroupCommitWriter(Generic[Item]):
    """Applies queued items in group commits on a dedicated thread; see the module docstring.

    ``connect`` opens the thread's connection (again after a failure); ``apply`` writes a batch of
    items in one transaction on it and commits. ``what`` names the writer in errors and the thread.
    """

    def __init__(
        self,
        what: str,
        connect: Callable[[], Connection],
        apply: Callable[[Connection, Sequence[Item]], None],
        *,
        max_batch: int = 10_000,
        min_interval: float = 0.002,
        spool: SpoolFile[Item] | None = None,
        replay: Callable[[Connection, Sequence[Item]], None] | None = None,
        on_spool: SpoolListener | None = None,
        retry_interval: float = 1.0,
    ) -> None:
        self._what = what
        self._connect = connect
        self._apply = apply
        self._spool = spool
        self._replay = replay or apply
        self._on_spool = on_spool
        self._retry_interval = retry_interval
        self._next_retry = -inf
        self._max_batch = max_batch
        self._min_interval = min_interval
        self._pending: list[_Request[Item]] = []
        self._condition = threading.Condition()
        self._closing = False
        # True while the thread waits for work: only then does a new item need to wake it.
        self._idle = False
        self._thread: threading.Thread | None = None
        self._commits = 0
        self.commit_seconds = 0.0  # spent in committed transactions, for metrics
        self.spool_failing = False  # the last append to the spool failed: writes are being lost

    @property
    def commits(self) -> int:
        """How many transactions the writer has committed so far."""
        return self._commits

    @property
    def running(self) -> bool:
        """The writer thread is alive and takes work."""
        return self._thread is not None and self._thread.is_alive() and not self._closing

    @property
    def spooled(self) -> int:
        """How many items wait in the spool for the database."""
        return len(self._spool) if self._spool is not None else 0

    def spooled_items(self) -> list[Item]:
        """What the spool holds, oldest first: changes the database has not seen yet.

        Call it before ``start``; it opens the spool (``StoreError`` if it cannot).
        """
        if self._spool is None or not self._spool.path.exists():
            return []
        if self._thread is not None:
            raise RuntimeError(f"the {self._what} is already started")
        self._spool.open()
        return self._spool.items() if len(self._spool) else []

    def start(self) -> None:
        """Start the writer thread, opening a spool left from before (``StoreError`` if it cannot).

        A spool that does not exist is made when it is first needed.
        """
        if self._thread is not None:
            raise RuntimeError(f"the {self._what} is already started")
        if self._spool is not None and self._spool.path.exists():
            self._spool.open()
        name = "sentral-" + self._what.replace(" ", "-")
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _enqueue(self, item: Item) -> asyncio.Future[None]:
        """Queue one item; the future resolves once the transaction holding it committed.

        Call it from the event loop's thread. The future fails with the commit's error, if any.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._condition:
            if self._thread is None or self._closing:
                raise RuntimeError(f"the {self._what} is not running")
            self._pending.append(_Request(item, future, loop))
            if self._idle:
                self._condition.notify()
        return future

    async def close(self) -> None:
        """Commit everything already queued, then stop the thread."""
        with self._condition:
            self._closing = True
            self._condition.notify()
        thread = self._thread
        if thread is not None:
            await asyncio.to_thread(thread.join)

    def _run(self) -> None:
        connection: Connection | None = None
        started = -inf
        try:
            while True:
                with self._condition:
                    self._idle = True
                    while not self._pending and not self._closing:
                        # A spool waiting for the database is retried on time, work or none.
                        retry = self._next_retry - time.monotonic() if self.spooled else None
                        if retry is not None and retry <= 0:
                            break
                        self._condition.wait(retry)
                    self._idle = False
                    # Under load, commits begin at most every ``min_interval``: a batch gathers
                    # what arrives meanwhile, so a burst costs a few large commits rather than
                    # many one-row ones. A lone request after a quiet spell goes at once.
                    gather = started + self._min_interval - time.monotonic()
                    if gather > 0 and not self._closing and len(self._pending) < self._max_batch:
                        self._condition.wait(gather)
                    batch = self._pending[: self._max_batch]
                    del self._pending[: self._max_batch]
                    closing = self._closing
                if not batch:
                    if self.spooled:
                        connection = self._drain(connection)
                    if closing:
                        return
                    continue
                started = time.monotonic()
                connection = self._commit_batch(connection, batch)
        finally:
            if connection is not None:
                connection.close()
            if self._spool is not None:
                self._spool.close()

    def _commit_batch(self, connection: Connection | None, batch: list[_Request[Item]]) -> Connection | None:
        if self.spooled:
            # Behind what is spooled already, so that the database sees the changes in order.
            self._spool_requests(batch)
            if time.monotonic() >= self._next_retry:
                connection = self._drain(connection)
            return connection
        connection, error = self._commit(connection, batch)
        if error is None:
            self.spool_failing = False  # whatever the spool did, writes are stored again
            self._resolve(batch, None)
        elif self._spool is not None and unreachable(error):
            self._spool_requests(batch, error)
        elif len(batch) == 1:
            self._resolve(batch, error)
        else:
            for request in batch:
                if self.spooled:
                    self._spool_requests([request])
                    continue
                connection, single_error = self._commit(connection, [request])
                if single_error is not None and self._spool is not None and unreachable(single_error):
                    self._spool_requests([request], single_error)
                else:
                    self._resolve([request], single_error)
        return connection

    def _spool_requests(self, batch: Sequence[_Request[Item]], cause: BaseException | None = None) -> None:
        """Append the batch to the spool and resolve it as stored (or with the spool's error)."""
        assert self._spool is not None
        first = not self.spooled
        try:
            self._spool.append([request.item for request in batch])
        except StoreError as error:
            self.spool_failing = True
            self._resolve(batch, error)
            return
        self.spool_failing = False
        if first:
            self._next_retry = time.monotonic() + self._retry_interval
            self._tell("spooling", len(batch), cause)
        self._resolve(batch, None)

    def _drain(self, connection: Connection | None) -> Connection | None:
        """Replay the spool into the database and empty it; on failure try again later."""
        assert self._spool is not None
        self._next_retry = time.monotonic() + self._retry_interval
        items = self._spool.items()
        try:
            if connection is None:
                connection = self._connect()
            self._replay(connection, items)
        except Exception as error:
            with contextlib.suppress(Exception):
                if connection is not None:
                    connection.close()
            if unreachable(error):
                return None
            # The database is back but refuses something spooled: store the rest one by one.
            connection = None
            if not self._drain_singly(items):
                return None
        self._spool.clear()
        self._tell("drained", len(items), None)
        return connection

    def _drain_singly(self, items: Sequence[Item]) -> bool:
        """Replay ``items`` in a transaction each, dropping those the database refuses for
        themselves; False (and the spool kept) if the database goes out of reach meanwhile."""
        connection: Connection | None = None
        try:
            for item in items:
                try:
                    if connection is None:
                        connection = self._connect()
                    self._replay(connection, [item])
                except Exception as error:
                    with contextlib.suppress(Exception):
                        if connection is not None:
                            connection.close()
                    connection = None
                    if unreachable(error):
                        return False
                    self._tell("dropped", 1, error)
        finally:
            if connection is not None:
                connection.close()
        return True

    def _tell(self, event: str, count: int, error: BaseException | None) -> None:
        if self._on_spool is not None:
            with contextlib.suppress(Exception):
                self._on_spool(event, count, error)

    def _commit(
        self, connection: Connection | None, batch: Sequence[_Request[Item]]
    ) -> tuple[Connection | None, BaseException | None]:
        began = time.monotonic()
        try:
            if connection is None:
                connection = self._connect()
            self._apply(connection, [request.item for request in batch])
        except Exception as exc:
            # A failed connection may be broken; the next batch starts on a fresh one.
            if connection is not None:
                with contextlib.suppress(Exception):
                    connection.close()
            return None, exc
        self._commits += 1
        self.commit_seconds += time.monotonic() - began
        return connection, None

    @staticmethod
    def _resolve(batch: Sequence[_Request[Item]], error: BaseException | None) -> None:
        # One wake-up of each event loop per batch, not one per request: every
        # call_soon_threadsafe writes to the loop's self-pipe and costs it a turn.
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for request in batch:
            futures = by_loop.get(request.loop)
            if futures is None:
                by_loop[request.loop] = [request.future]
            else:
                futures.append(request.future)
        for loop, futures in by_loop.items():
            # The loop may already be closed if its owner gave up waiting; nobody is left to tell.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, futures, error)


@dataclass(frozen=True, slots=True)
class _BindingChange:
    upserts: tuple[BindingRow, ...]
    deletes: tuple[Identity, ...]


class BindingWriter(GroupCommitWriter[_BindingChange]):
    """Writes binding changes in group commits on a dedicated thread; see the module docstring."""

    def __init__(
        self,
        store: BindingStore,
        *,
        max_batch: int = 10_000,
        spool: Path | None = None,
        on_spool: SpoolListener | None = None,
        retry_interval: float = 1.0,
    ) -> None:
        self._store = store
        super().__init__(
            "binding writer",
            store.connect,
            self._apply_changes,
            max_batch=max_batch,
            spool=SpoolFile(spool, _encode_change, _decode_change) if spool is not None else None,
            on_spool=on_spool,
            retry_interval=retry_interval,
        )

    def spooled_changes(self) -> tuple[list[BindingRow], list[Identity]]:
        """The binding changes waiting in the spool, merged in order: (upserts, deletes).

        What the location must overlay on the bindings loaded from the database at start.
        """
        changes = self._merged(self.spooled_items())
        return [row for row in changes.values() if row is not None], [
            identity for identity, row in changes.items() if row is None
        ]

    def submit(self, upserts: Sequence[BindingRow], deletes: Sequence[Identity]) -> asyncio.Future[None]:
        """Queue changes; the future resolves once the transaction holding them committed.

        Call it from the event loop's thread. The future fails with the commit's error, if any.
        """
        if not upserts and not deletes:
            return resolved_future()
        return self._enqueue(_BindingChange(tuple(upserts), tuple(deletes)))

    async def write(self, upserts: Sequence[BindingRow], deletes: Sequence[Identity]) -> None:
        """Queue changes and return once the transaction holding them committed (or raise its error)."""
        await self.submit(upserts, deletes)

    @staticmethod
    def _merged(batch: Sequence[_BindingChange]) -> dict[Identity, BindingRow | None]:
        changes: dict[Identity, BindingRow | None] = {}
        for change in batch:
            for identity in change.deletes:
                changes[identity] = None
            for row in change.upserts:
                changes[row.identity] = row
        return changes

    def _apply_changes(self, connection: Connection, batch: Sequence[_BindingChange]) -> None:
        changes = self._merged(batch)
        upserts = [row for row in changes.values() if row is not None]
        deletes = [identity for identity, row in changes.items() if row is None]
        self._store.apply(upserts, deletes, connection=connection)


def _encode_change(change: _BindingChange) -> dict[str, Any]:
    return {
        "upserts": [dataclasses.asdict(row) for row in change.upserts],
        "deletes": [list(identity) for identity in change.deletes],
    }


def _decode_change(value: dict[str, Any]) -> _BindingChange:
    upserts = []
    for fields in value["upserts"]:
        fields["path"] = tuple(fields["path"])
        upserts.append(BindingRow(**fields))
    deletes = [(str(d), str(e), str(k)) for d, e, k in value["deletes"]]
    return _BindingChange(tuple(upserts), tuple(deletes))


__all__ = ["BindingWriter", "GroupCommitWriter", "SpoolListener", "resolved_future", "unreachable"]
