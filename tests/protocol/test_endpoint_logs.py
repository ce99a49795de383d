"""What the endpoint logs for an operator to troubleshoot by: registrations, failed challenges,
finished calls. The endpoint runs on fake transports; structlog's ``capture_logs`` collects the
events with their level, as the configured renderer would print them."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import pytest
from structlog.testing import capture_logs

from sentral.config.directory import ClinicEntry, Directory, RoleEntry, StaffEntry
from sentral.config.settings import Listen
from sentral.pbx.call import CallReport
from sentral.pbx.endpoint import Endpoint
from sentral.pbx.sip.auth import compute_ha1, compute_response
from sentral.pbx.sip.message import Response
from sentral.pbx.transport import Origin
from tests.protocol.test_presence import FakeTransports, endpoint_for

DOMAIN = "clinic.test"
LISTEN = Listen("udp", "127.0.0.1", 5060)
DESK = Origin("udp", "192.0.2.10", 5062, LISTEN)


def directory() -> Directory:
    people = {
        (DOMAIN, ext): StaffEntry(
            DOMAIN, ext, f"Staff {ext}", (), compute_ha1("MD5", ext, DOMAIN, f"secret-{ext}"), ""
        )
        for ext in ("1001", "1002")
    }
    return Directory(
        1,
        MappingProxyType({DOMAIN: ClinicEntry(DOMAIN, "Clinic", ("MD5",))}),
        MappingProxyType(people),
        roles=MappingProxyType({(DOMAIN, "doctor"): RoleEntry(DOMAIN, "doctor", "30")}),
        numbers=MappingProxyType({(DOMAIN, "30"): RoleEntry(DOMAIN, "doctor", "30")}),
    )


@pytest.fixture
def world() -> Iterator[tuple[Endpoint, FakeTransports]]:
    people = directory()
    yield endpoint_for(lambda: people)


class Phone:
    """Builds a phone's REGISTERs and INVITEs as bytes and answers challenges."""

    def __init__(self, ext: str = "1001") -> None:
        self.ext = ext
        self.cseq = 0

    def authorization(
        self,
        challenge: Response,
        method: str,
        uri: str,
        *,
        password: str | None = None,
        realm: str = DOMAIN,
        algorithm: str = "MD5",
        header: str = "Authorization",
    ) -> str:
        offer = challenge.header("www-authenticate") or challenge.header("proxy-authenticate") or ""
        nonce = re.search(r'nonce="([^"]+)"', offer)
        opaque = re.search(r'opaque="([^"]+)"', offer)
        assert nonce and opaque
        ha1 = compute_ha1(algorithm, self.ext, realm, password or f"secret-{self.ext}")
        response = compute_response(algorithm, ha1, method=method, uri=uri, nonce=nonce.group(1), nc=1, cnonce="c0ffee")
        return (
            f'{header}: Digest username="{self.ext}", realm="{realm}", nonce="{nonce.group(1)}", uri="{uri}", '
            f'response="{response}", algorithm={algorithm}, cnonce="c0ffee", qop=auth, nc=00000001, '
            f'opaque="{opaque.group(1)}"\r\n'
        )

    def register(self, origin: Origin = DESK, *, expires: int = 600, auth: str = "") -> bytes:
        self.cseq += 1
        return (
            f"REGISTER sip:{DOMAIN} SIP/2.0\r\n"
            f"Via: SIP/2.0/{origin.transport.upper()} {origin.host}:{origin.port};branch=z9hG4bK-r{self.cseq};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:{self.ext}@{DOMAIN}>;tag=r{self.ext}\r\nTo: <sip:{self.ext}@{DOMAIN}>\r\n"
            f"Call-ID: reg-{self.ext}@desk\r\nCSeq: {self.cseq} REGISTER\r\n"
            f"Contact: <sip:{self.ext}@192.0.2.10:5062>;+sip.instance=\"<urn:uuid:0f1e2d3c-0000-1000-8000-00a0c91e6bf6>\"\r\n"
            f"Expires: {expires}\r\nUser-Agent: Yealink SIP-T46U 108.86\r\n"
            f"{auth}Content-Length: 0\r\n\r\n"
        ).encode()

    def invite(self, target: str = "1002", auth: str = "") -> bytes:
        self.cseq += 1
        return (
            f"INVITE sip:{target}@{DOMAIN} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {DESK.host}:{DESK.port};branch=z9hG4bK-i{self.cseq};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:{self.ext}@{DOMAIN}>;tag=i{self.ext}\r\nTo: <sip:{target}@{DOMAIN}>\r\n"
            f"Call-ID: call-{self.ext}@desk\r\nCSeq: {self.cseq} INVITE\r\n"
            f"Contact: <sip:{self.ext}@192.0.2.10:5062>\r\n"
            f"{auth}Content-Length: 0\r\n\r\n"
        ).encode()


def registered(ep: Endpoint, transports: FakeTransports, phone: Phone, origin: Origin = DESK, **kw: Any) -> None:
    ep.on_message(phone.register(origin, **kw), origin)
    challenge = transports.last()
    assert challenge.status == 401
    ep.on_message(phone.register(origin, auth=phone.authorization(challenge, "REGISTER", f"sip:{DOMAIN}"), **kw), origin)
    assert transports.last().status == 200


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


def test_a_new_binding_a_moved_one_and_a_removal_are_logged_at_info_a_refresh_at_debug(
    world: tuple[Endpoint, FakeTransports],
) -> None:
    ep, transports = world
    phone = Phone()
    with capture_logs() as logs:
        registered(ep, transports, phone)
    [new] = events(logs, "registered")
    assert new["log_level"] == "info"
    assert {k: new[k] for k in ("extension", "domain", "transport", "source", "expires", "user_agent")} == {
        "extension": "1001",
        "domain": DOMAIN,
        "transport": "udp",
        "source": "192.0.2.10:5062",
        "expires": 600,
        "user_agent": "Yealink SIP-T46U 108.86",
    }
    assert new["contact"] == "sip:1001@192.0.2.10:5062"

    with capture_logs() as logs:
        registered(ep, transports, phone)
    assert [(e["event"], e["log_level"]) for e in logs if e["event"].startswith(("regist", "unreg"))] == [
        ("registration_refreshed", "debug")
    ]

    # The same phone (its +sip.instance) comes back over TCP from another address: it moved.
    moved_to = Origin("tcp", "198.51.100.7", 40110, LISTEN, conn_id=3)
    with capture_logs() as logs:
        registered(ep, transports, phone, moved_to)
    [moved] = events(logs, "registration_moved")
    assert moved["log_level"] == "info"
    assert (moved["transport"], moved["source"]) == ("tcp", "198.51.100.7:40110")
    assert (moved["previous_transport"], moved["previous_source"]) == ("udp", "192.0.2.10:5062")

    with capture_logs() as logs:
        registered(ep, transports, phone, moved_to, expires=0)
    [gone] = events(logs, "unregistered")
    assert gone["log_level"] == "info"
    assert (gone["extension"], gone["source"], gone["user_agent"]) == ("1001", "198.51.100.7:40110", "Yealink SIP-T46U 108.86")


def test_an_expired_binding_is_logged_at_info_with_where_the_phone_was(world: tuple[Endpoint, FakeTransports]) -> None:
    ep, transports = world
    registered(ep, transports, Phone(), expires=60)
    gone = ep.location.expire(time.time() + 61)
    assert len(gone) == 1
    with capture_logs() as logs:
        ep.bindings_expired(gone)
    [expired] = events(logs, "registration_expired")
    assert expired["log_level"] == "info"
    assert (expired["extension"], expired["domain"], expired["transport"], expired["source"]) == (
        "1001", DOMAIN, "udp", "192.0.2.10:5062",
    )  # fmt: skip
    assert expired["user_agent"] == "Yealink SIP-T46U 108.86"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"password": "guess"}, "wrong password"),
        ({"realm": "other.test"}, "wrong realm"),
        ({"algorithm": "SHA-256"}, "unsupported algorithm"),
    ],
)
def test_a_failed_register_challenge_is_a_warning_with_the_extension_source_method_and_reason(
    world: tuple[Endpoint, FakeTransports], changes: dict[str, str], reason: str
) -> None:
    ep, transports = world
    phone = Phone()
    ep.on_message(phone.register(), DESK)
    challenge = transports.last()
    with capture_logs() as logs:
        ep.on_message(phone.register(auth=phone.authorization(challenge, "REGISTER", f"sip:{DOMAIN}", **changes)), DESK)
    assert transports.last().status == 401
    [failed] = events(logs, "auth_failed")
    assert failed["log_level"] == "warning"
    assert (failed["user"], failed["remote"], failed["port"], failed["method"], failed["reason"]) == (
        "1001", "192.0.2.10", 5062, "REGISTER", reason,
    )  # fmt: skip
    assert "response" not in failed and "guess" not in repr(failed)


def test_an_unknown_extension_is_named_as_such_in_the_log_but_not_on_the_wire(
    world: tuple[Endpoint, FakeTransports],
) -> None:
    ep, transports = world
    stranger = Phone("1009")
    ep.on_message(stranger.register(), DESK)
    challenge = transports.last()
    with capture_logs() as logs:
        ep.on_message(stranger.register(auth=stranger.authorization(challenge, "REGISTER", f"sip:{DOMAIN}")), DESK)
    assert transports.last().status == 401
    [failed] = events(logs, "auth_failed")
    assert (failed["user"], failed["reason"]) == ("1009", "unknown extension")


def test_a_failed_invite_challenge_is_logged_with_method_invite(world: tuple[Endpoint, FakeTransports]) -> None:
    ep, transports = world
    phone = Phone()
    ep.on_message(phone.invite(), DESK)
    challenge = transports.last()
    assert challenge.status == 407
    auth = phone.authorization(challenge, "INVITE", f"sip:1002@{DOMAIN}", password="guess", header="Proxy-Authorization")
    with capture_logs() as logs:
        ep.on_message(phone.invite(auth=auth), DESK)
    assert transports.last().status == 407
    [failed] = events(logs, "auth_failed")
    assert failed["log_level"] == "warning"
    assert (failed["user"], failed["remote"], failed["method"], failed["reason"]) == (
        "1001", "192.0.2.10", "INVITE", "wrong password",
    )  # fmt: skip


def report(caller: str, callee: str, answered_by: str = "", *, answered: float | None = 10.0) -> CallReport:
    return CallReport(
        call_id="k7", clinic=DOMAIN, caller=caller, caller_name="", callee=callee, callee_name="",
        sip_call_id="x@desk", status=200 if answered is not None else 480, legs=(), started=5.0, rang=6.0,
        answered=answered, ended=72.5, hangup_by="caller", cause="BYE", answered_by=answered_by,
    )  # fmt: skip


def test_call_ended_shows_staff_extensions_and_clinic_numbers_at_info_with_duration_and_cause(
    world: tuple[Endpoint, FakeTransports],
) -> None:
    ep, _ = world
    with capture_logs() as logs:
        ep.record(report("1001", "30", "1002"))
    [ended] = events(logs, "call_ended")
    assert ended["log_level"] == "info"
    assert (ended["caller"], ended["callee"], ended["answered_by"]) == ("1001", "30", "1002")
    assert (ended["duration"], ended["cause"], ended["hangup_by"], ended["status"]) == (62.5, "BYE", "caller", 200)


def test_call_ended_masks_a_number_from_outside_at_info_and_shows_it_only_at_debug(
    world: tuple[Endpoint, FakeTransports],
) -> None:
    ep, _ = world
    with capture_logs() as logs:
        ep.record(report("+4791234567", "1002", "1002"))
        ep.record(report("1001", "004722334455", answered=None))
    first, second = events(logs, "call_ended")
    assert (first["caller"], first["callee"]) == ("xxxxxxxxx67", "1002")
    assert (second["caller"], second["callee"], second["duration"], second["answered_by"]) == (
        "1001", "xxxxxxxxxx55", 0.0, None,
    )  # fmt: skip
    info = [e for e in logs if e["log_level"] != "debug"]
    assert "4791234567" not in repr(info) and "22334455" not in repr(info)
    parties = events(logs, "call_ended_parties")
    assert all(e["log_level"] == "debug" for e in parties)
    assert [(e["caller"], e["callee"]) for e in parties] == [("+4791234567", "1002"), ("1001", "004722334455")]
