"""The ``fhir`` adapter: patients found on a FHIR R4 server over HTTP.

A number is looked up with one search, ``GET [base]/Patient?telecom=F1,F2,...&_count=1``: the
comma makes the token search an OR over the forms the number is commonly written in
(``written_forms``), since a FHIR server compares telecom values as stored: a number kept in a
grouping of its own (``912 34 501`` where ``phonenumbers`` writes ``91 23 45 01``) is not found. A national ID is
looked up with ``GET [base]/Patient?identifier=SYSTEM|ID,...&_count=1`` over the identifier
systems of the clinic's country (``ID_SYSTEMS``): in Norway the fødselsnummer and the D-number.
The first patient of the search Bundle is the answer: its official name (else the first), its kind
patient, and ``Patient/ID`` as the reference.

The bearer token is read from ``--token-file`` and read again when the file changes, so a token
can be rotated without touching Sentral. An HTTP error status or a Bundle that is not one is a
failure the chain logs and skips. Requests go through one aiohttp session per adapter, so
connections are reused.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import aiohttp

from sentral.adapters.caller import AdapterError, CallerKind, Match
from sentral.adapters.numbers import written_forms
from sentral.config.directory import AdapterEntry, Directory

# The identifier systems (OIDs) of the national ID numbers of each country, most common first.
NORWAY_BIRTH_NUMBER = "urn:oid:2.16.578.1.12.4.1.4.1"  # fødselsnummer
NORWAY_D_NUMBER = "urn:oid:2.16.578.1.12.4.1.4.2"
SWEDEN_PERSONAL_NUMBER = "urn:oid:1.2.752.129.2.1.3.1"  # personnummer
SWEDEN_COORDINATION_NUMBER = "urn:oid:1.2.752.129.2.1.3.3"  # samordningsnummer
FINLAND_PERSONAL_ID = "urn:oid:1.2.246.21"  # henkilötunnus
DENMARK_CPR = "urn:oid:1.2.208.176.1.2"  # CPR-nummer
ID_SYSTEMS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "NO": (NORWAY_BIRTH_NUMBER, NORWAY_D_NUMBER),
        "SE": (SWEDEN_PERSONAL_NUMBER, SWEDEN_COORDINATION_NUMBER),
        "FI": (FINLAND_PERSONAL_ID,),
        "DK": (DENMARK_CPR,),
    }
)

TIMEOUT = 5.0  # seconds, the HTTP client's own limit; the chain's is usually shorter


class FhirError(Exception):
    """The FHIR server did not answer a search with a Bundle."""


def patient_name(patient: Mapping[str, Any]) -> str | None:
    """What the phone shows for a Patient resource: its official name, else its first."""
    names = [name for name in patient.get("name") or () if isinstance(name, dict)]
    if not names:
        return None
    chosen = next((name for name in names if name.get("use") == "official"), names[0])
    text = chosen.get("text")
    if isinstance(text, str) and text.strip():
        return text.strip()
    parts = [*(chosen.get("given") or ()), chosen.get("family") or ""]
    written = " ".join(str(part).strip() for part in parts if str(part).strip())
    return written or None


class FhirAdapter:
    """Patients by telecom and by national ID from a FHIR R4 server."""

    def __init__(self, entry: AdapterEntry) -> None:
        if not entry.url or not entry.url.startswith(("http://", "https://")):
            raise AdapterError(f"The fhir adapter {entry.name!r} needs the server's base URL: give --url https://...")
        self.name = entry.name
        self.domain = entry.domain
        self.base = entry.url.rstrip("/")
        self.token_file = entry.token_file
        self.region = "NO"
        self._token: tuple[int, str] | None = None  # (mtime_ns, token)
        self._session: aiohttp.ClientSession | None = None

    def use_directory(self, directory: Directory) -> None:
        """Search the number forms and ID systems of the clinic's country."""
        clinic = directory.clinic(self.domain)
        self.region = clinic.country if clinic is not None else "NO"

    async def by_number(self, e164: str) -> Match | None:
        """The first patient with a telecom in any written form of ``e164``."""
        forms = dict.fromkeys(written_forms(e164, self.region).values())
        return await self._search({"telecom": ",".join(forms)})

    async def by_national_id(self, national_id: str) -> Match | None:
        """The first patient whose national ID (in the clinic's country's systems) is ``national_id``."""
        systems = ID_SYSTEMS.get(self.region.upper(), ID_SYSTEMS["NO"])
        return await self._search({"identifier": ",".join(f"{system}|{national_id}" for system in systems)})

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _bearer(self) -> str | None:
        if not self.token_file:
            return None
        stat = os.stat(self.token_file)
        if self._token is None or self._token[0] != stat.st_mtime_ns:
            with open(self.token_file, encoding="utf-8") as handle:
                self._token = (stat.st_mtime_ns, handle.read().strip())
        return self._token[1]

    async def _search(self, parameters: dict[str, str]) -> Match | None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT))
        headers = {"Accept": "application/fhir+json"}
        token = self._bearer()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with self._session.get(
            f"{self.base}/Patient", params={**parameters, "_count": "1"}, headers=headers
        ) as response:
            if response.status != 200:
                raise FhirError(f"HTTP {response.status}")
            bundle = await response.json(content_type=None)
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise FhirError("not a Bundle")
        for item in bundle.get("entry") or ():
            resource = item.get("resource") if isinstance(item, dict) else None
            if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
                continue  # an OperationOutcome or an included resource
            name = patient_name(resource)
            if name is not None:
                return Match(name, CallerKind.PATIENT, f"Patient/{resource.get('id', '')}", self.name)
        return None


def fhir_adapter(entry: AdapterEntry) -> FhirAdapter:
    """The ``fhir`` entry point."""
    return FhirAdapter(entry)


__all__ = ["ID_SYSTEMS", "FhirAdapter", "FhirError", "fhir_adapter", "patient_name"]
