"""The fhir adapter against a small FHIR R4 server on loopback answering real search Bundles."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import MappingProxyType
from typing import Any

from aiohttp import web
from structlog.testing import capture_logs

from sentral.adapters import CallerKind, LookupChain, Match
from sentral.adapters.fhir import NORWAY_BIRTH_NUMBER, NORWAY_D_NUMBER, SWEDEN_PERSONAL_NUMBER, FhirAdapter
from sentral.config.directory import AdapterEntry, ClinicEntry, Directory

TOKEN = "s3cret-token"
PATIENTS: list[dict[str, Any]] = [
    {
        "resourceType": "Patient",
        "id": "ola",
        "identifier": [{"system": NORWAY_BIRTH_NUMBER, "value": "15076500565"}],
        "name": [{"use": "nickname", "given": ["Olemann"]}, {"use": "official", "family": "Nordmann", "given": ["Ola"]}],
        "telecom": [{"system": "phone", "value": "+47 91 23 45 01", "use": "mobile"}],
    },
    {
        "resourceType": "Patient",
        "id": "kari",
        "identifier": [{"system": NORWAY_D_NUMBER, "value": "55076500565"}],
        "name": [{"text": "Kari Nordmann"}],
        "telecom": [{"system": "phone", "value": "91234502"}],
    },
    {
        "resourceType": "Patient",
        "id": "sven",
        "identifier": [{"system": SWEDEN_PERSONAL_NUMBER, "value": "198112189876"}],
        "name": [{"family": "Svensson", "given": ["Sven"]}],
        "telecom": [{"system": "phone", "value": "070-123 45 67"}],
    },
]


def search(request: web.Request) -> list[dict[str, Any]]:
    """Token search the way a FHIR server does it: a comma is OR, ``system|value`` or a bare value."""
    found = []
    for patient in PATIENTS:
        if "telecom" in request.query:
            wanted = request.query["telecom"].split(",")
            if any(t["value"] in wanted for t in patient["telecom"]):
                found.append(patient)
        if "identifier" in request.query:
            wanted = request.query["identifier"].split(",")
            if any(f"{i['system']}|{i['value']}" in wanted for i in patient["identifier"]):
                found.append(patient)
    return found


@asynccontextmanager
async def fhir_server(status: int = 200) -> AsyncIterator[tuple[str, list[web.Request]]]:
    seen: list[web.Request] = []

    async def patients(request: web.Request) -> web.Response:
        seen.append(request)
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"resourceType": "OperationOutcome"}, status=401)
        if status != 200:
            return web.json_response({"resourceType": "OperationOutcome"}, status=status)
        found = search(request)[: int(request.query.get("_count", "100"))]
        bundle = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(found),
            "entry": [
                {"fullUrl": f"http://fhir.test/Patient/{p['id']}", "resource": p, "search": {"mode": "match"}}
                for p in found
            ],
        }
        return web.json_response(bundle, content_type="application/fhir+json")

    app = web.Application()
    app.router.add_get("/fhir/Patient", patients)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/fhir/", seen
    finally:
        await runner.cleanup()


def adapter(url: str, token_file: Path, country: str = "NO") -> FhirAdapter:
    fhir = FhirAdapter(AdapterEntry("clinic.test", "journal", "fhir", 1, url, token_file=str(token_file)))
    clinic = ClinicEntry("clinic.test", "Clinic", ("SHA-256",), country=country)
    fhir.use_directory(Directory(1, MappingProxyType({clinic.domain: clinic}), MappingProxyType({})))
    return fhir


def run(body: Callable[[str, list[web.Request]], Awaitable[Any]], status: int = 200) -> Any:
    async def main() -> Any:
        async with fhir_server(status) as (url, seen):
            return await body(url, seen)

    return asyncio.run(main())


def test_patients_are_found_by_number_in_any_written_form_and_by_national_id(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")

    async def body(url: str, seen: list[web.Request]) -> list[Match | None]:
        fhir = adapter(url, token)
        try:
            return [
                await fhir.by_number("+4791234501"),
                await fhir.by_number("+4791234502"),
                await fhir.by_number("+4791234599"),
                await fhir.by_national_id("15076500565"),
                await fhir.by_national_id("55076500565"),
            ]
        finally:
            await fhir.close()

    assert run(body) == [
        Match("Ola Nordmann", CallerKind.PATIENT, "Patient/ola", "journal"),
        Match("Kari Nordmann", CallerKind.PATIENT, "Patient/kari", "journal"),
        None,
        Match("Ola Nordmann", CallerKind.PATIENT, "Patient/ola", "journal"),
        Match("Kari Nordmann", CallerKind.PATIENT, "Patient/kari", "journal"),
    ]


def test_swedish_clinics_search_swedish_systems(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)

    async def body(url: str, seen: list[web.Request]) -> tuple[Match | None, Match | None, str]:
        fhir = adapter(url, token, "SE")
        try:
            found = await fhir.by_national_id("198112189876"), await fhir.by_number("+46701234567")
            return (*found, seen[0].query["identifier"])
        finally:
            await fhir.close()

    by_id, by_number, systems = run(body)
    assert by_id is not None and by_id.name == "Sven Svensson"
    assert by_number is not None and by_number.reference == "Patient/sven"
    assert NORWAY_BIRTH_NUMBER not in systems


def test_a_rotated_token_is_read_again_and_a_refusal_is_a_logged_miss(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("stale")

    async def body(url: str, seen: list[web.Request]) -> list[Match | None]:
        chain = LookupChain([adapter(url, token)])
        try:
            refused = await chain.by_national_id("15076500565")
            token.write_text(TOKEN)
            os.utime(token, ns=(2_000_000_000_000_000_000, 2_000_000_000_000_000_000))
            return [refused, await chain.by_national_id("15076500565")]
        finally:
            await chain.close()

    with capture_logs() as logs:
        found = run(body)
    assert found[0] is None and found[1] is not None
    assert [entry["event"] for entry in logs] == ["lookup_failed"]
    assert "15076500565" not in repr(logs)
