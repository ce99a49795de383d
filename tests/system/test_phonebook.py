"""The desk phones' remote phone book on a running server: the clinic's staff and contacts as XML,
behind the phone's own extension and SIP password, following contacts added while it runs."""

from __future__ import annotations

import asyncio
import base64
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import aiohttp
import pytest

from tests.system.peers import wait_until
from tests.system.test_calls import DOMAIN
from tests.system.test_web import OTHER, Web, start_web

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    started = start_web(tmp_path_factory.mktemp("phonebook"))
    try:
        yield started
    finally:
        started.server.stop()


def basic(user: str, password: str) -> dict[str, str]:
    """The Authorization header a desk phone sends with the credentials in its phone book URL."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def fetch(web: Web, headers: dict[str, str] | None) -> tuple[int, dict[str, str], str]:
    async def get() -> tuple[int, dict[str, str], str]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(web.url + "/phonebook.xml", headers=headers or {}) as response,
        ):
            return response.status, dict(response.headers), await response.text()

    return asyncio.run(get())


def entries(document: str) -> list[tuple[str, str]]:
    root = ET.fromstring(document)
    assert root.tag == "YealinkIPPhoneDirectory"
    return [(e.findtext("Name", ""), e.findtext("Telephone", "")) for e in root.findall("DirectoryEntry")]


def test_a_phone_gets_its_clinics_staff_and_contacts_by_name(web: Web) -> None:
    web.server.cli("contact", "add", "--name", "Apotek 1 & Co", "--number", "22334455", "--clinic", DOMAIN)
    # Waits until the server has loaded both: each add is a change of its own it reloads.
    web.server.reconfigure("contact", "add", "--name", "NAV Nord", "--number", "55556666", "--clinic", OTHER)
    phone = basic(f"1001@{DOMAIN}", "secret-1001")

    def listed() -> bool:
        status, _, body = fetch(web, phone)
        return status == 200 and "Apotek" in body

    wait_until(listed, 5, "the new contact in the phone book")
    status, headers, body = fetch(web, phone)
    assert status == 200 and headers["Content-Type"].startswith("application/xml")
    assert entries(body) == [("Apotek 1 & Co", "+4722334455"), ("Staff 1001", "1001"), ("Staff 1002", "1002")]
    other = fetch(web, basic("2001@" + OTHER, "secret-2001"))[2]
    assert entries(other) == [("Elsewhere", "2001"), ("NAV Nord", "+4755556666")]


def test_without_credentials_the_phone_is_asked_for_them_and_wrong_ones_are_refused(web: Web) -> None:
    status, headers, _ = fetch(web, None)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic ")
    status, _, body = fetch(web, basic(f"1002@{DOMAIN}", "not-the-password"))
    assert status == 401 and "Apotek" not in body
    wait_until(lambda: "user=1002" in web.server.log_tail(200), 5, "auth_failed for the phone book")
    assert "not-the-password" not in web.server.log_tail(400)


def test_a_platform_token_reads_its_clinics_phone_book_too(web: Web) -> None:
    async def get() -> tuple[int, str]:
        headers = {"Authorization": f"Bearer {web.tokens[OTHER]}"}
        async with aiohttp.ClientSession() as session, session.get(web.url + "/phonebook.xml", headers=headers) as response:
            return response.status, await response.text()

    status, body = asyncio.run(get())
    assert status == 200 and ("Elsewhere", "2001") in entries(body)
