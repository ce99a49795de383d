"""Caller-ID lookup latency, p50 and p99 per adapter, in one process.

Builds the adapters on data made up for the run: an SQLite patient database of ``--patients``
(100,000) patients whose numbers are written in six ways, a CSV file of as many rows, a FHIR R4
server on loopback (aiohttp, answering searchset Bundles from an index of the same patients) and
Sentral's contacts. Each adapter is asked ``--lookups`` times by number, half of them for numbers
it holds and half for numbers it does not, after a warm-up (connections open, the file read),
with the chain's cache off; then the same through a chain with its cache on (every number asked
before), which is what a caller who rings back meets. With ``--pg URL`` (or $SENTRAL_TEST_PG) the
SQL figures are taken on PostgreSQL too, in a schema of their own that is dropped afterwards.

Two SQL queries are measured: ``forms`` compares an indexed column with the written forms the
query is given (``phone IN (:number, :digits, :zero_zero, :national, :national_spaced,
:international_spaced)``), ``stripped`` strips punctuation from every row first
(``replace(...) IN (...)``), which matches any typing but reads the whole table, and ``stripped,
indexed`` is that query on a table with an index on the stripped expression.

    python bench/bench_lookup.py [--patients N] [--lookups N] [--pg URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import shlex
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import MappingProxyType

from aiohttp import web
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from sentral.adapters import Adapter, LookupChain, Match
from sentral.adapters.contacts import ContactsAdapter
from sentral.adapters.csv_file import CsvAdapter
from sentral.adapters.fhir import NORWAY_BIRTH_NUMBER, FhirAdapter
from sentral.adapters.numbers import written_forms
from sentral.adapters.sql import SqlAdapter
from sentral.config.directory import AdapterEntry, ClinicEntry, ContactEntry, Directory
from sentral.logs import configure

DOMAIN = "clinic.bench"
FORMS_QUERY = (
    "SELECT name, 'patient', id FROM patients WHERE phone IN "
    "(:number, :digits, :zero_zero, :national, :national_spaced, :international_spaced)"
)
STRIPPED = "replace(replace(replace(replace(phone, ' ', ''), '-', ''), '(', ''), ')', '')"
STRIPPED_QUERY = (
    f"SELECT name, 'patient', id FROM patients WHERE {STRIPPED} IN (:number, :digits, :zero_zero, :national)"
)
# The same on a copy of the table with an index on the stripped expression, which SQLite and
# PostgreSQL both use for it.
INDEXED_QUERY = STRIPPED_QUERY.replace("FROM patients", "FROM patients_x")


def e164_of(index: int) -> str:
    return f"+479{index:07d}"


def written(index: int) -> str:
    """Patient ``index``'s number as somebody typed it: six ways in turn."""
    forms = written_forms(e164_of(index), "NO")
    return (
        forms["number"], forms["digits"], forms["zero_zero"], forms["national"], forms["national_spaced"],
        forms["international_spaced"],
    )[index % 6]  # fmt: skip


def fill_sql(url: str, patients: int) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE patients (id TEXT PRIMARY KEY, name TEXT, phone TEXT)"))
        connection.execute(
            text("INSERT INTO patients VALUES (:id, :name, :phone)"),
            [{"id": f"P{i}", "name": f"Patient {i}", "phone": written(i)} for i in range(patients)],
        )
        connection.execute(text("CREATE INDEX ix_patients_phone ON patients (phone)"))
        connection.execute(text("CREATE TABLE patients_x AS SELECT * FROM patients"))
        connection.execute(text(f"CREATE INDEX ix_patients_x_stripped ON patients_x (({STRIPPED}))"))
        connection.execute(text("ANALYZE"))
    engine.dispose()


def fill_csv(path: Path, patients: int) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.write("name,number,kind,reference\n")
        for i in range(patients):
            handle.write(f"Patient {i},{written(i)},patient,P{i}\n")


def fhir_app(patients: int) -> web.Application:
    by_phone = {}
    for i in range(patients):
        by_phone[written(i)] = {
            "resourceType": "Patient", "id": f"P{i}",
            "identifier": [{"system": NORWAY_BIRTH_NUMBER, "value": f"{i:011d}"}],
            "name": [{"use": "official", "family": "Patient", "given": [str(i)]}],
            "telecom": [{"system": "phone", "value": written(i)}],
        }  # fmt: skip

    async def search(request: web.Request) -> web.Response:
        found = [by_phone[value] for value in request.query.get("telecom", "").split(",") if value in by_phone]
        return web.json_response(
            {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": p} for p in found[:1]]}
        )

    app = web.Application()
    app.router.add_get("/fhir/Patient", search)
    return app


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


async def measure(ask: Callable[[str], Awaitable[Match | None]], numbers: list[str], expect: int) -> tuple[float, float]:
    for number in numbers[:50]:  # warm-up: connections, the file read, code paths
        await ask(number)
    samples = []
    found = 0
    for number in numbers:
        started = time.perf_counter()
        match = await ask(number)
        samples.append((time.perf_counter() - started) * 1000)
        found += match is not None
    assert found == expect, f"found {found} of {expect} known numbers"
    return percentiles(samples)


async def run(args: argparse.Namespace, workdir: Path) -> list[tuple[str, float, float]]:
    rng = random.Random(14)
    known = [e164_of(rng.randrange(args.patients)) for _ in range(args.lookups // 2)]
    unknown = [f"+4741{rng.randrange(10**6):06d}" for _ in range(args.lookups - len(known))]
    numbers = known + unknown
    rng.shuffle(numbers)
    clinic = ClinicEntry(DOMAIN, "Bench", ("SHA-256",))
    contacts = tuple(ContactEntry(DOMAIN, f"Patient {i}", e164_of(i), "patient") for i in range(args.patients))
    directory = Directory(
        1, MappingProxyType({DOMAIN: clinic}), MappingProxyType({}), contacts=MappingProxyType({DOMAIN: contacts})
    )
    adapters: list[tuple[str, Adapter]] = []

    sqlite_url = f"sqlite:///{workdir / 'patients.db'}"
    fill_sql(sqlite_url, args.patients)
    adapters.append(("sql sqlite forms", SqlAdapter(AdapterEntry(DOMAIN, "sqlite", "sql", 1, sqlite_url, FORMS_QUERY))))
    adapters.append(
        ("sql sqlite stripped", SqlAdapter(AdapterEntry(DOMAIN, "sqlite-s", "sql", 1, sqlite_url, STRIPPED_QUERY)))
    )
    adapters.append(
        ("sql sqlite stripped, indexed", SqlAdapter(AdapterEntry(DOMAIN, "sqlite-x", "sql", 1, sqlite_url, INDEXED_QUERY)))
    )
    schema = None
    pg = args.pg
    if pg:
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        admin = create_engine(pg)
        with admin.begin() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        admin.dispose()
        pg_url = make_url(pg).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
        fill_sql(pg_url, args.patients)
        adapters.append(("sql postgresql forms", SqlAdapter(AdapterEntry(DOMAIN, "pg", "sql", 1, pg_url, FORMS_QUERY))))
        adapters.append(
            ("sql postgresql stripped", SqlAdapter(AdapterEntry(DOMAIN, "pg-s", "sql", 1, pg_url, STRIPPED_QUERY)))
        )
        adapters.append(
            ("sql postgresql stripped, indexed", SqlAdapter(AdapterEntry(DOMAIN, "pg-x", "sql", 1, pg_url, INDEXED_QUERY)))
        )
    csv_path = workdir / "patients.csv"
    fill_csv(csv_path, args.patients)
    adapters.append(("csv", CsvAdapter(AdapterEntry(DOMAIN, "csv", "csv", 1, file=str(csv_path)))))
    contacts_adapter = ContactsAdapter(AdapterEntry(DOMAIN, "own", "contacts", 1))
    contacts_adapter.use_directory(directory)
    adapters.append(("contacts", contacts_adapter))

    runner = web.AppRunner(fhir_app(args.patients))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    adapters.append(("fhir loopback", FhirAdapter(AdapterEntry(DOMAIN, "fhir", "fhir", 1, f"http://127.0.0.1:{port}/fhir"))))

    results = []
    try:
        for label, adapter in adapters:
            # A full scan per lookup: fewer of them, or the run takes minutes.
            sample = numbers[:200] if label.endswith("stripped") else numbers
            expect = sum(number in set(known) for number in sample)
            p50, p99 = await measure(adapter.by_number, sample, expect)
            results.append((label, p50, p99))
            chain = LookupChain([adapter], ttl=3600)
            for number in numbers:
                await chain.by_number(number)
            p50, p99 = await measure(chain.by_number, numbers, len(known))
            results.append((f"{label}, chain cache warm", p50, p99))
    finally:
        for _, adapter in adapters:
            await adapter.close()
        await runner.cleanup()
        if schema is not None:
            admin = create_engine(pg)
            with admin.begin() as connection:
                connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            admin.dispose()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100_000, help="patients in each data source")
    parser.add_argument("--lookups", type=int, default=2_000, help="lookups per adapter (half of known numbers)")
    parser.add_argument("--pg", default=os.environ.get("SENTRAL_TEST_PG"), help="a PostgreSQL URL for the SQL figures")
    args = parser.parse_args(argv)
    configure("console", "warning")  # numbers are logged at debug: not what is measured
    with tempfile.TemporaryDirectory() as tmp:
        results = asyncio.run(run(args, Path(tmp)))
    shown = [make_url(arg).render_as_string(hide_password=True) if "://" in arg else arg for arg in sys.argv]
    print(f"$ {shlex.join([Path(sys.executable).name, *shown])}")
    print(f"# {platform.python_implementation()} {platform.python_version()}, {args.patients} patients, "
          f"{args.lookups} lookups per adapter (half known), cache off unless said")  # fmt: skip
    width = max(len(label) for label, _, _ in results)
    print(f"{'adapter':<{width}}  {'p50 ms':>8}  {'p99 ms':>8}")
    for label, p50, p99 in results:
        print(f"{label:<{width}}  {p50:>8.3f}  {p99:>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
