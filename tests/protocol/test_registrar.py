"""The registrar fed real REGISTER bytes on a fixed clock: challenges, bindings, expiry rules."""

from __future__ import annotations

import re

import pytest

from sentral.config.directory import ClinicEntry, Directory, StaffEntry
from sentral.config.settings import Listen
from sentral.pbx.location import Location
from sentral.pbx.registrar import AuthOutcome, RegisterResult, Registrar, RegistrarPolicy
from sentral.pbx.sip.auth import DigestAuthority, compute_ha1, compute_response
from sentral.pbx.sip.errors import SipError
from sentral.pbx.sip.message import Request, Response, parse_message
from sentral.pbx.transport import Origin

DOMAIN = "clinic.test"
NOW = 1_800_000_000.0
ORIGIN = Origin("udp", "192.0.2.10", 40000, Listen("udp", "127.0.0.1", 5060))


def staff(ext: str, password: str, domain: str = DOMAIN) -> StaffEntry:
    return StaffEntry(
        domain=domain,
        extension=ext,
        name=f"Staff {ext}",
        roles=(),
        ha1_md5=compute_ha1("MD5", ext, domain, password),
        ha1_sha256=compute_ha1("SHA-256", ext, domain, password),
    )


def directory(*, algorithms: tuple[str, ...] = ("SHA-256", "MD5"), extra_clinic: bool = False) -> Directory:
    clinics = {DOMAIN: ClinicEntry(DOMAIN, "Test clinic", algorithms)}
    people = {(DOMAIN, "1001"): staff("1001", "secret-1001"), (DOMAIN, "1002"): staff("1002", "secret-1002")}
    if extra_clinic:
        clinics["other.test"] = ClinicEntry("other.test", "Other", algorithms)
        people[("other.test", "1001")] = staff("1001", "other-secret", "other.test")
    return Directory(version=1, clinics=clinics, staff=people)


class Phone:
    """A scripted phone: builds REGISTERs, answers challenges like a real one."""

    def __init__(self, ext: str, password: str, *, contact: str | None = None, call_id: str = "reg-1@phone") -> None:
        self.ext = ext
        self.password = password
        self.contact = contact or f"<sip:{ext}@192.0.2.10:40000>"
        self.call_id = call_id
        self.cseq = 0
        self.nc = 0

    def register(
        self,
        *,
        expires: int | None = 3600,
        contact: str | None = None,
        auth: Response | None = None,
        algorithm: str | None = None,
        password: str | None = None,
        username: str | None = None,
        extra: str = "",
        to_user: str | None = None,
    ) -> Request:
        self.cseq += 1
        lines = [
            f"REGISTER sip:{DOMAIN} SIP/2.0",
            f"Via: SIP/2.0/UDP 192.0.2.10:40000;branch=z9hG4bK-{self.cseq}-{self.call_id};rport",
            "Max-Forwards: 70",
            f"From: <sip:{self.ext}@{DOMAIN}>;tag=ph{self.ext}",
            f"To: <sip:{to_user or self.ext}@{DOMAIN}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} REGISTER",
        ]
        if contact != "":
            lines.append(f"Contact: {contact or self.contact}")
        if expires is not None:
            lines.append(f"Expires: {expires}")
        if auth is not None:
            lines.append(self.authorization(auth, algorithm, password, username))
        if extra:
            lines.append(extra)
        data = ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()
        message = parse_message(data)
        assert isinstance(message, Request)
        message.validate()
        return message

    def authorization(self, challenge: Response, algorithm: str | None, password: str | None, username: str | None) -> str:
        offers = challenge.header_lines("www-authenticate")
        chosen = offers[0]
        if algorithm is not None:
            chosen = next(o for o in offers if f"algorithm={algorithm}" in o)
        nonce = re.search(r'nonce="([^"]+)"', chosen)
        opaque = re.search(r'opaque="([^"]+)"', chosen)
        alg = re.search(r"algorithm=([A-Za-z0-9-]+)", chosen)
        assert nonce and opaque and alg
        self.nc += 1
        user = username or self.ext
        ha1 = compute_ha1(alg.group(1), user, DOMAIN, password or self.password)
        response = compute_response(
            alg.group(1), ha1, method="REGISTER", uri=f"sip:{DOMAIN}", nonce=nonce.group(1), nc=self.nc, cnonce="c0ffee"
        )
        return (
            f'Authorization: Digest username="{user}", realm="{DOMAIN}", nonce="{nonce.group(1)}", '
            f'uri="sip:{DOMAIN}", response="{response}", algorithm={alg.group(1)}, cnonce="c0ffee", '
            f'qop=auth, nc={self.nc:08x}, opaque="{opaque.group(1)}"'
        )


@pytest.fixture
def registrar() -> Registrar:
    return Registrar(DigestAuthority(b"k" * 32), Location(), RegistrarPolicy(max_contacts=3))


def run(registrar: Registrar, request: Request, now: float = NOW, dirs: Directory | None = None) -> RegisterResult:
    result = registrar.register(request, ORIGIN, dirs or directory(), now)
    # What the endpoint does once the change is durable.
    registrar.location.apply(result.upserts, result.deletes)
    return result


def registered(registrar: Registrar, phone: Phone, now: float = NOW, **kwargs: object) -> RegisterResult:
    challenge = run(registrar, phone.register(**kwargs), now)  # type: ignore[arg-type]
    assert challenge.response.status == 401
    return run(registrar, phone.register(auth=challenge.response, **kwargs), now)  # type: ignore[arg-type]


def test_unauthenticated_register_is_challenged_sha256_first_then_md5(registrar: Registrar) -> None:
    result = run(registrar, Phone("1001", "secret-1001").register())
    offers = result.response.header_lines("www-authenticate")
    assert result.response.status == 401
    assert [re.search(r"algorithm=([\w-]+)", o).group(1) for o in offers] == ["SHA-256", "MD5"]  # type: ignore[union-attr]
    assert all('qop="auth"' in o and f'realm="{DOMAIN}"' in o for o in offers)
    assert result.upserts == [] and result.auth is AuthOutcome.NONE


def test_md5_only_clinic_offers_md5_alone(registrar: Registrar) -> None:
    request = Phone("1001", "secret-1001").register()
    result = registrar.register(request, ORIGIN, directory(algorithms=("MD5",)), NOW)
    offers = result.response.header_lines("www-authenticate")
    assert len(offers) == 1 and "algorithm=MD5" in offers[0]


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_authenticated_register_binds_and_lists_the_contact(registrar: Registrar, algorithm: str) -> None:
    phone = Phone("1001", "secret-1001")
    challenge = run(registrar, phone.register())
    result = run(registrar, phone.register(auth=challenge.response, algorithm=algorithm))
    assert result.response.status == 200
    assert result.auth is AuthOutcome.OK
    assert result.response.header_values("contact") == ["<sip:1001@192.0.2.10:40000>;expires=3600"]
    assert result.response.has_header("date")
    [row] = registrar.location.bindings((DOMAIN, "1001"), NOW)
    assert (row.source_host, row.source_port, row.transport) == ("192.0.2.10", 40000, "udp")
    assert row.expires_at == NOW + 3600


def test_wrong_password_and_unknown_user_get_the_same_answer(registrar: Registrar) -> None:
    wrong = Phone("1001", "not-the-password")
    challenge = run(registrar, wrong.register())
    bad = run(registrar, wrong.register(auth=challenge.response))
    ghost = Phone("1999", "whatever-password")
    challenge2 = run(registrar, ghost.register())
    unknown = run(registrar, ghost.register(auth=challenge2.response))
    assert bad.response.status == unknown.response.status == 401
    assert bad.auth is unknown.auth is AuthOutcome.FAILED
    assert bad.response.reason == unknown.response.reason
    assert len(bad.response.header_lines("www-authenticate")) == len(unknown.response.header_lines("www-authenticate"))
    assert len(registrar.location) == 0


def test_authenticating_as_someone_else_is_forbidden(registrar: Registrar) -> None:
    phone = Phone("1002", "secret-1002")
    challenge = run(registrar, phone.register(to_user="1001"))
    result = run(registrar, phone.register(auth=challenge.response, to_user="1001"))
    assert result.response.status == 403
    assert registrar.location.bindings((DOMAIN, "1001"), NOW) == []


def test_expired_nonce_with_right_password_is_stale(registrar: Registrar) -> None:
    phone = Phone("1001", "secret-1001")
    challenge = run(registrar, phone.register())
    result = run(registrar, phone.register(auth=challenge.response), now=NOW + 3600)
    assert result.response.status == 401
    assert result.auth is AuthOutcome.STALE
    assert all("stale=true" in v for v in result.response.header_lines("www-authenticate"))


def test_interval_too_brief_names_the_minimum(registrar: Registrar) -> None:
    result = registered(registrar, Phone("1001", "secret-1001"), expires=30)
    assert result.response.status == 423
    assert result.response.header("min-expires") == "60"
    assert len(registrar.location) == 0


def test_expiry_above_maximum_is_capped(registrar: Registrar) -> None:
    result = registered(registrar, Phone("1001", "secret-1001"), expires=86400)
    assert result.response.header_values("contact") == ["<sip:1001@192.0.2.10:40000>;expires=3600"]


def test_contact_expires_parameter_wins_over_expires_header(registrar: Registrar) -> None:
    result = registered(
        registrar, Phone("1001", "secret-1001"), expires=3600, contact="<sip:1001@192.0.2.10:40000>;expires=120"
    )
    assert result.response.header_values("contact") == ["<sip:1001@192.0.2.10:40000>;expires=120"]


def test_unregister_with_expires_zero_and_with_star(registrar: Registrar) -> None:
    phone = Phone("1001", "secret-1001")
    registered(registrar, phone)
    registered(registrar, phone, contact="<sip:1001@192.0.2.10:40002>")
    assert len(registrar.location.bindings((DOMAIN, "1001"), NOW)) == 2
    one = registered(registrar, phone, contact="<sip:1001@192.0.2.10:40002>", expires=0)
    assert one.response.header_values("contact") == ["<sip:1001@192.0.2.10:40000>;expires=3600"]
    everything = registered(registrar, phone, contact="*", expires=0)
    assert everything.response.status == 200
    assert not everything.response.has_header("contact")
    assert registrar.location.bindings((DOMAIN, "1001"), NOW) == []


def test_star_without_expires_zero_is_a_bad_request(registrar: Registrar) -> None:
    phone = Phone("1001", "secret-1001")
    challenge = run(registrar, phone.register(contact="*", expires=3600))
    with pytest.raises(SipError) as err:
        run(registrar, phone.register(auth=challenge.response, contact="*", expires=3600))
    assert err.value.status == 400


def test_query_without_contact_lists_bindings_and_changes_nothing(registrar: Registrar) -> None:
    phone = Phone("1001", "secret-1001")
    registered(registrar, phone)
    result = registered(registrar, phone, contact="", expires=None)
    assert result.response.status == 200
    assert result.upserts == [] and result.deletes == []
    assert result.response.header_values("contact") == ["<sip:1001@192.0.2.10:40000>;expires=3600"]


def test_refresh_from_a_reused_call_id_needs_a_higher_cseq(registrar: Registrar) -> None:
    phone = Phone("1001", "secret-1001")
    registered(registrar, phone)
    phone.cseq -= 3  # a delayed, older REGISTER of the same registration
    result = registered(registrar, phone)
    assert result.response.status == 500


def test_contact_limit_replaces_the_binding_closest_to_expiry(registrar: Registrar) -> None:
    phone = Phone("1001", "secret-1001")
    for port, expires in ((40001, 600), (40002, 1200), (40003, 1800)):
        registered(registrar, phone, contact=f"<sip:1001@192.0.2.10:{port}>", expires=expires)
    result = registered(registrar, phone, contact="<sip:1001@192.0.2.10:40004>", expires=3600)
    assert result.response.status == 200
    contacts = sorted(row.contact for row in registrar.location.bindings((DOMAIN, "1001"), NOW))
    assert contacts == ["sip:1001@192.0.2.10:40002", "sip:1001@192.0.2.10:40003", "sip:1001@192.0.2.10:40004"]


def test_outbound_instance_and_reg_id_key_the_binding(registrar: Registrar) -> None:
    phone = Phone("1001", "secret-1001")
    instance = '"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"'
    for port in (40001, 40009):  # the phone rebooted and came back from another port
        result = registered(
            registrar,
            phone,
            contact=f"<sip:1001@192.0.2.10:{port};ob>;+sip.instance={instance};reg-id=1",
            extra="Supported: path, outbound",
        )
        assert result.response.status == 200
    [row] = registrar.location.bindings((DOMAIN, "1001"), NOW)
    assert row.contact == "sip:1001@192.0.2.10:40009;ob"
    assert row.instance == "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>" and row.reg_id == 1
    assert "outbound" in result.response.tokens("require")
    assert "reg-id=1" in result.response.header("contact")  # type: ignore[operator]


def test_path_is_stored_and_echoed(registrar: Registrar) -> None:
    phone = Phone("1001", "secret-1001")
    result = registered(
        registrar, phone, extra="Path: <sip:edge.clinic.test;lr>\r\nSupported: path"
    )
    assert result.response.header_values("path") == ["<sip:edge.clinic.test;lr>"]
    [row] = registrar.location.bindings((DOMAIN, "1001"), NOW)
    assert row.path == ("<sip:edge.clinic.test;lr>",)


def test_expired_bindings_leave_the_location(registrar: Registrar) -> None:
    registered(registrar, Phone("1001", "secret-1001"), expires=60)
    assert registrar.location.expire(NOW + 59) == []
    [gone] = registrar.location.expire(NOW + 61)
    assert gone.extension == "1001"
    assert len(registrar.location) == 0


def test_unknown_domain_with_several_clinics_is_not_found(registrar: Registrar) -> None:
    request = parse_message(
        b"REGISTER sip:elsewhere.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1\r\n"
        b"From: <sip:1001@elsewhere.test>;tag=a\r\nTo: <sip:1001@elsewhere.test>\r\nCall-ID: x\r\n"
        b"CSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
    )
    assert isinstance(request, Request)
    result = registrar.register(request, ORIGIN, directory(extra_clinic=True), NOW)
    assert result.response.status == 404
