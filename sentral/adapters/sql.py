"""The ``sql`` adapter: callers found by a query of the clinic's own database.

Any database SQLAlchemy reaches (``--url``), with one parameterised query per lookup kind, so that
one adapter can search several number sources at once (patient cards, numbers registered in the
app or portal, numbers used at the card terminal) with a ``UNION``. Each query returns rows of
``name[, kind[, reference]]``; the first row is the answer, kind blank or missing means patient.

What the query by number (``--query-number``) receives, as bind parameters (for ``+4791234567``
from a Norwegian clinic): ``:number`` ``+4791234567``, ``:digits`` ``4791234567``,
``:zero_zero`` ``004791234567``, ``:national`` ``91234567``, ``:national_spaced`` ``912 34 567``
and ``:international_spaced`` ``+47 912 34 567`` (see ``sentral.adapters.numbers``). A column of
numbers typed any which way matches when the query strips punctuation on its side and compares
with the digit forms, e.g.::

    SELECT name, 'patient', id FROM patients
    WHERE replace(replace(replace(replace(phone, ' ', ''), '-', ''), '(', ''), ')', '')
          IN (:number, :digits, :zero_zero, :national)

The query by national ID (``--query-id``) receives ``:national_id``, the digits only.

Queries run in a small thread pool of the adapter's own, on an engine of its own, so a slow
database holds neither the event loop nor anyone else's threads. The engine hides bind
parameters from its error messages: a national ID never reaches a log through an exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.sql.elements import TextClause

from sentral.adapters.caller import AdapterError, Match, parse_kind
from sentral.adapters.numbers import written_forms
from sentral.config.directory import AdapterEntry, Directory

THREADS = 4


def open_engine(url: str) -> Engine:
    """An engine for an adapter's database; AdapterError when the URL is not one SQLAlchemy reads."""
    try:
        return create_engine(url, hide_parameters=True, pool_pre_ping=True, pool_size=THREADS, max_overflow=0)
    except TypeError:  # SQLite's pool takes no size
        return create_engine(url, hide_parameters=True)
    except (ArgumentError, NoSuchModuleError, ValueError) as error:
        raise AdapterError(f"The database URL cannot be used ({type(error).__name__}); give a SQLAlchemy URL.") from None


class SqlAdapter:
    """Callers from the rows an SQL query returns."""

    def __init__(self, entry: AdapterEntry) -> None:
        if not entry.url:
            raise AdapterError(f"The sql adapter {entry.name!r} needs a database: give --url URL.")
        if not entry.query_number and not entry.query_id:
            raise AdapterError(
                f"The sql adapter {entry.name!r} needs a query: give --query-number SQL or --query-id SQL."
            )
        self.name = entry.name
        self.domain = entry.domain
        self.region = "NO"
        self._query_number = text(entry.query_number) if entry.query_number else None
        self._query_id = text(entry.query_id) if entry.query_id else None
        self._engine = open_engine(entry.url)
        self._pool = ThreadPoolExecutor(THREADS, thread_name_prefix=f"sql-{entry.name}")

    def use_directory(self, directory: Directory) -> None:
        """Write national forms of numbers as the clinic's country does."""
        clinic = directory.clinic(self.domain)
        self.region = clinic.country if clinic is not None else "NO"

    async def by_number(self, e164: str) -> Match | None:
        """The first row the number query returns for ``e164``, if any."""
        if self._query_number is None:
            return None
        return await self._run(self._query_number, written_forms(e164, self.region))

    async def by_national_id(self, national_id: str) -> Match | None:
        """The first row the national-ID query returns, if any."""
        if self._query_id is None:
            return None
        return await self._run(self._query_id, {"national_id": national_id})

    async def close(self) -> None:
        """Stop the threads and close the database connections."""
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)
        self._engine.dispose()

    async def _run(self, query: TextClause, parameters: Mapping[str, str]) -> Match | None:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._first, query, dict(parameters))

    def _first(self, query: TextClause, parameters: dict[str, Any]) -> Match | None:
        with self._engine.connect() as connection:
            row = connection.execute(query, parameters).first()
        if row is None or row[0] is None:
            return None
        kind = parse_kind(str(row[1]) if len(row) > 1 and row[1] is not None else None)
        reference = str(row[2]) if len(row) > 2 and row[2] is not None else ""
        return Match(str(row[0]), kind, reference, self.name)


def sql_adapter(entry: AdapterEntry) -> SqlAdapter:
    """The ``sql`` entry point."""
    return SqlAdapter(entry)


__all__ = ["SqlAdapter", "open_engine", "sql_adapter"]
