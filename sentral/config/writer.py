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

Binding changes within a batch are merged in arrival order (a later upsert or delete of the same
binding wins), which is exactly the state sequential application would leave. If a batch fails, each
of its requests is retried in a transaction of its own, so one bad row fails only the caller that
sent it and the others still commit; every failure reaches its awaiting caller as the original
exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from math import inf
from typing import Generic, TypeVar

from sqlalchemy import Connection

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
    ) -> None:
        self._what = what
        self._connect = connect
        self._apply = apply
        self._max_batch = max_batch
        self._min_interval = min_interval
        self._pending: list[_Request[Item]] = []
        self._condition = threading.Condition()
        self._closing = False
        # True while the thread waits for work: only then does a new item need to wake it.
        self._idle = False
        self._thread: threading.Thread | None = None
        self._commits = 0

    @property
    def commits(self) -> int:
        """How many transactions the writer has committed so far."""
        return self._commits

    def start(self) -> None:
        """Start the writer thread."""
        if self._thread is not None:
            raise RuntimeError(f"the {self._what} is already started")
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
                        self._condition.wait()
                    self._idle = False
                    # Under load, commits begin at most every ``min_interval``: a batch gathers
                    # what arrives meanwhile, so a burst costs a few large commits rather than
                    # many one-row ones. A lone request after a quiet spell goes at once.
                    gather = started + self._min_interval - time.monotonic()
                    if gather > 0 and not self._closing and len(self._pending) < self._max_batch:
                        self._condition.wait(gather)
                    if not self._pending:
                        return
                    batch = self._pending[: self._max_batch]
                    del self._pending[: self._max_batch]
                started = time.monotonic()
                connection = self._commit_batch(connection, batch)
        finally:
            if connection is not None:
                connection.close()

    def _commit_batch(self, connection: Connection | None, batch: list[_Request[Item]]) -> Connection | None:
        connection, error = self._commit(connection, batch)
        if error is None:
            self._resolve(batch, None)
        elif len(batch) == 1:
            self._resolve(batch, error)
        else:
            for request in batch:
                connection, single_error = self._commit(connection, [request])
                self._resolve([request], single_error)
        return connection

    def _commit(
        self, connection: Connection | None, batch: Sequence[_Request[Item]]
    ) -> tuple[Connection | None, BaseException | None]:
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

    def __init__(self, store: BindingStore, *, max_batch: int = 10_000) -> None:
        self._store = store
        super().__init__("binding writer", store.connect, self._apply_changes, max_batch=max_batch)

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

    def _apply_changes(self, connection: Connection, batch: Sequence[_BindingChange]) -> None:
        changes: dict[Identity, BindingRow | None] = {}
        for change in batch:
            for identity in change.deletes:
                changes[identity] = None
            for row in change.upserts:
                changes[row.identity] = row
        upserts = [row for row in changes.values() if row is not None]
        deletes = [identity for identity, row in changes.items() if row is None]
        self._store.apply(upserts, deletes, connection=connection)


__all__ = ["BindingWriter", "GroupCommitWriter", "resolved_future"]
