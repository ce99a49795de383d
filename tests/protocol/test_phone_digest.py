"""A phone's own digest choice, fed real bytes on a fixed clock: the registrar's 401 offers the
algorithms of the extension in To, the endpoint's 407 those of the extension in From, and the
credentials are accepted only in one of them. An extension nobody has is challenged exactly as
one that follows the clinic.
"""

from __future__ import annotations

import re
from dataclasses import replace
from types import MappingProxyType

import pytest

from sentral.config.directory import ClinicEntry, Directory
from sentral.pbx.endpoint import Endpoint
from sentral.pbx.location import Location
from sentral.pbx.registrar import AuthOutcome, Registrar, RegistrarPolicy
from sentral.pbx.sip.auth import DigestAuthority, compute_ha1, compute_response
from sentral.pbx.sip.message import Response
from sentral.pbx.transport import Origin
from tests.protocol.test_overload import invite
from tests.protocol.test_presence import LISTEN, FakeTransports, endpoint_for, raw_subscribe
from tests.protocol.test_registrar import DOMAIN, Phone, run, staff

BOTH = ("SHA-256", "MD5")
PHONE = Origin("udp", "192.0.2.10", 4001, LISTEN)


def directory(clinic: tuple[str, ...] = BOTH, **own: tuple[str, ...]) -> Directory:
    """clinic.test offering ``clinic``, with 1001 to 1003; ``own`` gives extensions ("x1001") their own choice."""
    people = {}
    for ext in ("1001", "1002", "1003"):
        people[(DOMAIN, ext)] = replace(staff(ext, f"secret-{ext}"), digest_algorithms=own.get(f"x{ext}", ()))
    clinics = {DOMAIN: ClinicEntry(DOMAIN, "Test clinic", clinic)}
    return Directory(1, MappingProxyType(clinics), MappingProxyType(people))


def offered(response: Response, header: str = "www-authenticate") -> list[str]:
    return [re.search(r"algorithm=([\w-]+)", value).group(1) for value in response.header_lines(header)]  # type: ignore[union-attr]


def masked(response: Response, header: str = "www-authenticate") -> tuple[int, str, list[str]]:
    """What a challenge tells the phone, with the nonce (fresh each time) left out."""
    values = [re.sub(r'nonce="[^"]+"', 'nonce="-"', value) for value in response.header_lines(header)]
    return response.status, response.reason, values


@pytest.fixture
def registrar() -> Registrar:
    return Registrar(DigestAuthority(b"k" * 32), Location(), RegistrarPolicy())


# -- REGISTER ------------------------------------------------------------------------------------


def test_a_phone_set_to_md5_is_offered_md5_alone_and_registers_while_the_clinic_offers_both(
    registrar: Registrar,
) -> None:
    dirs = directory(x1001=("MD5",))
    phone = Phone("1001", "secret-1001")
    challenge = run(registrar, phone.register(), dirs=dirs)
    assert challenge.response.status == 401
    assert offered(challenge.response) == ["MD5"]
    assert offered(run(registrar, Phone("1002", "secret-1002").register(), dirs=dirs).response) == ["SHA-256", "MD5"]
    result = run(registrar, phone.register(auth=challenge.response), dirs=dirs)
    assert (result.response.status, result.auth) == (200, AuthOutcome.OK)
    assert len(registrar.location.bindings((DOMAIN, "1001"), 1_800_000_000.0)) == 1


def test_only_the_algorithms_offered_to_the_phone_are_accepted(registrar: Registrar) -> None:
    dirs = directory(x1001=("MD5",))
    # A SHA-256 nonce is easy to come by (any extension following the clinic gets one); answered
    # for 1001 with the right password, it is still refused: 1001 is offered MD5 alone.
    sha_challenge = run(registrar, Phone("1002", "secret-1002").register(), dirs=dirs).response
    phone = Phone("1001", "secret-1001")
    result = run(registrar, phone.register(auth=sha_challenge, algorithm="SHA-256"), dirs=dirs)
    assert (result.response.status, result.auth) == (401, AuthOutcome.FAILED)
    assert offered(result.response) == ["MD5"]
    assert registrar.location.bindings((DOMAIN, "1001"), 1_800_000_000.0) == []


def test_a_phone_set_to_sha256_keeps_working_when_the_clinic_turns_to_md5(registrar: Registrar) -> None:
    dirs = directory(clinic=("MD5",), x1001=("SHA-256",))
    phone = Phone("1001", "secret-1001")
    challenge = run(registrar, phone.register(), dirs=dirs)
    assert offered(challenge.response) == ["SHA-256"]
    assert run(registrar, phone.register(auth=challenge.response), dirs=dirs).response.status == 200
    assert offered(run(registrar, Phone("1002", "secret-1002").register(), dirs=dirs).response) == ["MD5"]


def test_a_phone_set_to_both_is_offered_sha256_then_md5_whatever_the_clinic_says(registrar: Registrar) -> None:
    dirs = directory(clinic=("MD5",), x1001=BOTH)
    phone = Phone("1001", "secret-1001")
    challenge = run(registrar, phone.register(), dirs=dirs)
    assert offered(challenge.response) == ["SHA-256", "MD5"]
    assert run(registrar, phone.register(auth=challenge.response, algorithm="MD5"), dirs=dirs).response.status == 200


@pytest.mark.parametrize("clinic", [BOTH, ("MD5",), ("SHA-256",)])
def test_an_unknown_extension_is_challenged_exactly_as_one_that_follows_the_clinic(
    registrar: Registrar, clinic: tuple[str, ...]
) -> None:
    dirs = directory(clinic=clinic, x1001=("MD5",) if clinic != ("MD5",) else ("SHA-256",))
    known = run(registrar, Phone("1002", "secret-1002").register(), dirs=dirs)
    unknown = run(registrar, Phone("1999", "any-password").register(), dirs=dirs)
    assert masked(known.response) == masked(unknown.response)
    assert offered(known.response) == list(clinic)
    # So are their failed answers.
    bad_known = run(registrar, Phone("1002", "a-wrong-guess").register(auth=known.response), dirs=dirs)
    bad_unknown = run(registrar, Phone("1999", "any-password").register(auth=unknown.response), dirs=dirs)
    assert masked(bad_known.response) == masked(bad_unknown.response)
    assert bad_known.auth is bad_unknown.auth is AuthOutcome.FAILED


# -- INVITE and SUBSCRIBE through the endpoint -----------------------------------------------------


def endpoint(people: Directory) -> tuple[Endpoint, FakeTransports]:
    return endpoint_for(lambda: people)


def only_response(transports: FakeTransports) -> Response:
    [answer] = transports.take()
    assert isinstance(answer, Response)
    return answer


def proxy_authorization(challenge: Response, algorithm: str, ext: str = "1001") -> str:
    offer = next(o for o in challenge.header_lines("proxy-authenticate") if f"algorithm={algorithm}" in o)
    nonce = re.search(r'nonce="([^"]+)"', offer)
    opaque = re.search(r'opaque="([^"]+)"', offer)
    assert nonce and opaque
    ha1 = compute_ha1(algorithm, ext, DOMAIN, f"secret-{ext}")
    uri = f"sip:1002@{DOMAIN}"
    response = compute_response(
        algorithm, ha1, method="SUBSCRIBE", uri=uri, nonce=nonce.group(1), nc=1, cnonce="feed"
    )
    return (
        f'Proxy-Authorization: Digest username="{ext}", realm="{DOMAIN}", nonce="{nonce.group(1)}", '
        f'uri="{uri}", response="{response}", algorithm={algorithm}, cnonce="feed", qop=auth, nc=00000001, '
        f'opaque="{opaque.group(1)}"\r\n'
    )


def test_a_call_is_challenged_with_the_algorithms_of_the_calling_phone() -> None:
    ep, transports = endpoint(directory(x1001=("MD5",)))
    ep.on_message(invite("md5-phone@x", "i1"), PHONE)  # From 1001, To 1002 (which follows the clinic)
    challenge = only_response(transports)
    assert challenge.status == 407
    assert offered(challenge, "proxy-authenticate") == ["MD5"]
    ep, transports = endpoint(directory(x1002=("MD5",)))
    ep.on_message(invite("both-phone@x", "i2"), PHONE)
    assert offered(only_response(transports), "proxy-authenticate") == ["SHA-256", "MD5"]


def test_a_subscribe_is_challenged_and_accepted_only_in_the_algorithms_of_the_watching_phone() -> None:
    ep, transports = endpoint(directory(clinic=("MD5",), x1001=("SHA-256",)))
    ep.on_message(raw_subscribe(1), PHONE)  # From 1001, watching 1002
    challenge = only_response(transports)
    assert offered(challenge, "proxy-authenticate") == ["SHA-256"]
    # An MD5 nonce is easy to come by: 1003 follows the clinic.
    ep.on_message(raw_subscribe(2).replace(b"From: <sip:1001@", b"From: <sip:1003@"), PHONE)
    md5_challenge = only_response(transports)
    assert offered(md5_challenge, "proxy-authenticate") == ["MD5"]
    # Answered for 1001 with the right password, it is still refused: 1001 is offered SHA-256 alone.
    ep.on_message(raw_subscribe(3, proxy_authorization(md5_challenge, "MD5")), PHONE)
    refused = only_response(transports)
    assert (refused.status, offered(refused, "proxy-authenticate")) == (407, ["SHA-256"])
    assert len(ep.presence) == 0
    ep.on_message(raw_subscribe(4, proxy_authorization(challenge, "SHA-256")), PHONE)
    ok, _notify = transports.take()
    assert isinstance(ok, Response) and ok.status == 200
    assert len(ep.presence) == 1
