"""The binding writer: group commits for the registrar, off the event loop.

Theory of operation. The registrar answers a REGISTER with 200 OK only once the binding is on disk,
yet a commit costs a disk flush (SQLite) or a round trip (PostgreSQL), far too slow to do once per
REGISTER and far too blocking to do on the event loop. So one dedicated thread owns one connection.
Coroutines queue their changes and await a future; the thread takes everything queued, applies it
in a single transaction, and resolves every future of that batch with ``call_soon_threadsafe`` once
the commit returned. While a commit is in flight new requests pile up and become the next batch, so
the batch size grows with the load and the commit rate stays bounded by the disk, not by the
request rate.

Within a batch, requests are merged in arrival order (a later upsert or delete of the same binding
wins), which is exactly the state sequential application would leave. If a batch fails, each of its
requests is retried in a transaction of its own, so one bad row fails only the caller that sent it
and the others still commit; every failure reaches its awaiting caller as the original exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

from sentral.config.store import BindingRow, BindingStore

Identity = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class _Request:
    upserts: tuple[BindingRow, ...]
    deletes: tuple[Identity, ...]
    future: asyncio.Future[None]
    loop: asyncio.AbstractEventLoop


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    # The caller may have been cancelled while its batch was committing; nothing to resolve then.
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class BindingWriter:
    """Writes binding changes in group commits on a dedicated thread; see the module docstring."""

    def __init__(self, store: BindingStore, *, max_batch: int = 10_000) -> None:
        self._store = store
        self._max_batch = max_batch
        self._pending: list[_Request] = []
        self._condition = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._commits = 0

    @property
    def commits(self) -> int:
        """How many transactions the writer has committed so far."""
        return self._commits

    def start(self) -> None:
        """Start the writer thread."""
        if self._thread is not None:
            raise RuntimeError("the binding writer is already started")
        self._thread = threading.Thread(target=self._run, name="sentral-binding-writer", daemon=True)
        self._thread.start()

    def submit(self, upserts: Sequence[BindingRow], deletes: Sequence[Identity]) -> asyncio.Future[None]:
        """Queue changes; the future resolves once the transaction holding them committed.

        Call it from the event loop's thread. The future fails with the commit's error, if any.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if not upserts and not deletes:
            future.set_result(None)
            return future
        with self._condition:
            if self._thread is None or self._closing:
                raise RuntimeError("the binding writer is not running")
            self._pending.append(_Request(tuple(upserts), tuple(deletes), future, loop))
            self._condition.notify()
        return future

    async def write(self, upserts: Sequence[BindingRow], deletes: Sequence[Identity]) -> None:
        """Queue changes and return once the transaction holding them committed (or raise its error)."""
        await self.submit(upserts, deletes)

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
        try:
            while True:
                with self._condition:
                    while not self._pending and not self._closing:
                        self._condition.wait()
                    if not self._pending:
                        return
                    batch = self._pending[: self._max_batch]
                    del self._pending[: self._max_batch]
                connection = self._commit_batch(connection, batch)
        finally:
            if connection is not None:
                connection.close()

    def _commit_batch(self, connection: Connection | None, batch: list[_Request]) -> Connection | None:
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
        self, connection: Connection | None, batch: Sequence[_Request]
    ) -> tuple[Connection | None, BaseException | None]:
        changes: dict[Identity, BindingRow | None] = {}
        for request in batch:
            for identity in request.deletes:
                changes[identity] = None
            for row in request.upserts:
                changes[row.identity] = row
        upserts = [row for row in changes.values() if row is not None]
        deletes = [identity for identity, row in changes.items() if row is None]
        try:
            if connection is None:
                connection = self._store.connect()
            self._store.apply(upserts, deletes, connection=connection)
        except Exception as exc:
            # A failed connection may be broken; the next batch starts on a fresh one.
            if connection is not None:
                with contextlib.suppress(Exception):
                    connection.close()
            return None, exc
        self._commits += 1
        return connection, None

    @staticmethod
    def _resolve(batch: Sequence[_Request], error: BaseException | None) -> None:
        for request in batch:
            # The loop may already be closed if its owner gave up waiting; nobody is left to tell.
            with contextlib.suppress(RuntimeError):
                request.loop.call_soon_threadsafe(_settle, request.future, error)


__all__ = ["BindingWriter"]
