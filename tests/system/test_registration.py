"""Phones register to the real server on loopback: pjsua2 softphones, SIPp, and crash recovery.

Every test here runs against SQLite and PostgreSQL (the ``db_url`` fixture), because what a
registration leaves behind must be the same on both.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.system.peers import Sipp, SippResult, Softphone, wait_until, write_users_csv
from tests.system.server import SentralServer
from tests.system.sipclient import SipClient

DOMAIN = "clinic.test"
SCENARIOS = Path(__file__).parent / "scenarios"


@pytest.fixture
def clinic(db_url: str, tmp_path: Path) -> Iterator[SentralServer]:
    """A running server on ``db_url`` with clinic.test and three members of staff."""
    workdir = tmp_path / "server"
    workdir.mkdir()
    server = SentralServer(db_url, workdir)
    server.cli_batch(
        ("init", "--domain", DOMAIN),
        *(
            ("user", "add", ext, "--name", f"Staff {ext}", "--password", f"secret-{ext}")
            for ext in ("1001", "1002", "1003")
        ),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def add_users(server: SentralServer, users: list[tuple[str, str]], path: Path) -> None:
    """Add staff in bulk with `sentral user import`, as IT staff provision a clinic."""
    lines = ["extension,name,password", *(f"{ext},Staff {ext},{password}" for ext, password in users)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    server.reconfigure("user", "import", str(path))


def bindings_of(server: SentralServer, ext: str) -> list[dict[str, object]]:
    return [r for r in server.registrations() if r["extension"] == ext]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_softphone_registers_refreshes_and_unregisters(
    clinic: SentralServer, softphone_factory: Callable[..., Softphone], transport: str
) -> None:
    phone = softphone_factory("desk")
    phone.add_account("a", "1001", "secret-1001", DOMAIN, clinic.address, transport=transport, reg_timeout=300)
    first = phone.wait_registered("a")
    assert first["expires"] == 300
    [row] = bindings_of(clinic, "1001")
    assert row["transport"] == transport
    assert 290 < int(row["expires_in"]) <= 300  # type: ignore[call-overload]

    phone.register("a")  # a refresh
    phone.wait_registered("a")
    assert len(bindings_of(clinic, "1001")) == 1

    phone.unregister("a")
    event = phone.wait_event("reg_state", account="a")
    assert event["code"] == 200 and not event["active"]
    assert bindings_of(clinic, "1001") == []


def test_sha256_is_offered_first_and_md5_only_clinics_work_too(
    clinic: SentralServer, softphone_factory: Callable[..., Softphone]
) -> None:
    clinic.extra_args = ("--sip-trace", "--log-level", "debug")
    clinic.restart()
    phone = softphone_factory("desk")
    phone.add_account("a", "1001", "secret-1001", DOMAIN, clinic.address)
    phone.wait_registered("a")
    answered = set(re.findall(r"Authorization: Digest[^\\]*?algorithm=([A-Za-z0-9-]+)", clinic.log_path.read_text()))
    assert answered == {"SHA-256"}
    clinic.cli("clinic", "set", DOMAIN, "--digest", "md5")
    clinic.wait_loaded()  # the server follows configuration changes within a second
    phone.add_account("b", "1002", "secret-1002", DOMAIN, clinic.address)
    phone.wait_registered("b")
    assert {r["extension"] for r in clinic.registrations()} == {"1001", "1002"}
    answered = set(re.findall(r"Authorization: Digest[^\\]*?algorithm=([A-Za-z0-9-]+)", clinic.log_path.read_text()))
    assert answered == {"SHA-256", "MD5"}


def test_sip_trace_shows_at_any_log_level_and_hides_digest_responses(clinic: SentralServer) -> None:
    clinic.extra_args = ("--sip-trace", "--log-level", "warning")
    clinic.restart()
    with SipClient(clinic.host, clinic.port) as client:
        assert client.register("1001", "secret-1001").startswith("SIP/2.0 200")
    log = clinic.log_tail(400)
    received = [line for line in log.splitlines() if "sip_in" in line and "REGISTER sip:clinic.test" in line]
    assert len(received) == 2  # the REGISTER, then the one answering the challenge
    assert any("sip_out" in line and "SIP/2.0 401 Unauthorized" in line for line in log.splitlines())
    assert any("sip_out" in line and "SIP/2.0 200 OK" in line for line in log.splitlines())
    assert 'response="(hidden)"' in received[1]
    assert not re.search(r"response=\\?\"[0-9a-f]{32}", log)


def test_wrong_password_is_refused_and_nothing_is_bound(
    clinic: SentralServer, softphone_factory: Callable[..., Softphone]
) -> None:
    phone = softphone_factory("desk")
    phone.add_account("a", "1001", "not-the-password", DOMAIN, clinic.address)
    event = phone.wait_event("reg_state", account="a")
    assert event["code"] in (401, 403)
    assert not event["active"]
    assert clinic.registrations() == []
    assert "auth_failed" in clinic.log_tail(200)


def test_password_change_takes_effect_without_restart(
    clinic: SentralServer, softphone_factory: Callable[..., Softphone]
) -> None:
    clinic.reconfigure("user", "passwd", "1003", "--password", "brand-new-secret")
    phone = softphone_factory("desk")
    phone.add_account("old", "1003", "secret-1003", DOMAIN, clinic.address)
    assert phone.wait_event("reg_state", account="old")["code"] in (401, 403)
    phone.add_account("new", "1003", "brand-new-secret", DOMAIN, clinic.address)
    phone.wait_registered("new")


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_sipp_registers_many_users_with_digest(
    clinic: SentralServer, sipp: Sipp, tmp_path: Path, transport: str
) -> None:
    clinic.cli("clinic", "set", DOMAIN, "--digest", "md5")  # SIPp 3.6 speaks MD5 only
    users = [(str(2000 + i), f"password-{i:04d}", DOMAIN) for i in range(150)]
    add_users(clinic, [(ext, password) for ext, password, _ in users], tmp_path / "staff.csv")
    clinic.wait_loaded()
    csv = write_users_csv(tmp_path / "users.csv", users)
    result = sipp.run(
        clinic.address,
        SCENARIOS / "register_auth.xml",
        transport=transport,
        users=csv,
        calls=len(users),
        rate=100,
        timeout=60,
        auth_uri=DOMAIN,
    )
    assert result.successful == len(users), result
    assert result.failed == 0
    registered = {r["extension"] for r in clinic.registrations()}
    assert registered == {ext for ext, _, _ in users}


def test_sipp_registers_to_an_extension_set_to_md5_while_the_clinic_offers_both(
    clinic: SentralServer, sipp: Sipp, tmp_path: Path
) -> None:
    csv = write_users_csv(tmp_path / "users.csv", [("1003", "secret-1003", DOMAIN)])

    def register() -> SippResult:
        return sipp.run(
            clinic.address, SCENARIOS / "register_auth.xml", transport="u1", users=csv, calls=1, rate=1,
            timeout=15, auth_uri=DOMAIN,
        )  # fmt: skip

    # Following the clinic, SIPp meets SHA-256 first, which it cannot answer.
    refused = register()
    assert refused.successful == 0, refused
    assert clinic.registrations() == []
    clinic.reconfigure("user", "set", "1003", "--digest", "md5")
    result = register()
    assert (result.successful, result.failed) == (1, 0), result
    assert [r["extension"] for r in clinic.registrations()] == ["1003"]
    # The clinic still offers SHA-256 first to everyone else, and to extensions nobody has.
    with SipClient(clinic.host, clinic.port) as client:
        for ext in ("1001", "1999"):
            challenge = client.request("REGISTER", ext, f"probe-{ext}", 1)
            offers = re.findall(r"^WWW-Authenticate: .*algorithm=([\w-]+)", challenge, re.MULTILINE)
            assert offers == ["SHA-256", "MD5"]


def test_sigkill_under_load_loses_no_acknowledged_registration(clinic: SentralServer, tmp_path: Path) -> None:
    clinic.cli("clinic", "set", DOMAIN, "--digest", "md5")
    users = [(str(3000 + i), f"password-{i:04d}") for i in range(600)]
    add_users(clinic, users, tmp_path / "staff.csv")
    clinic.wait_loaded()
    host, port = clinic.address.split(":")
    acknowledged: list[str] = []

    def register_all(offset: int) -> None:
        with SipClient(host, int(port), timeout=1.0) as client:
            for ext, password in users[offset::4]:
                try:
                    if client.register(ext, password).startswith("SIP/2.0 200"):
                        acknowledged.append(ext)
                except (TimeoutError, OSError):
                    return

    workers = [threading.Thread(target=register_all, args=(i,)) for i in range(4)]
    for worker in workers:
        worker.start()
    wait_until(lambda: len(acknowledged) >= 200, 30, "200 acknowledged registrations")
    clinic.kill()  # while the four clients are still registering
    for worker in workers:
        worker.join(10)
    seen_before_kill = set(acknowledged)
    assert 200 <= len(seen_before_kill) < len(users)
    clinic.start()
    assert {r["extension"] for r in clinic.registrations()} >= seen_before_kill
    # The restarted server holds the old bindings in memory: a new registration of the first
    # user, from another port, is answered with both contacts.
    assert users[0][0] in seen_before_kill
    with SipClient(host, int(port)) as client:
        answer = client.register(users[0][0], users[0][1])
    assert answer.startswith("SIP/2.0 200")
    assert len(re.findall(r"^Contact: ", answer, re.MULTILINE)) == 2
