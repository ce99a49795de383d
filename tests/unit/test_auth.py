"""Digest authentication: RFC 7616 vectors, challenges, verification verdicts and header parsing."""

from __future__ import annotations

import base64
import hashlib
import re
import tracemalloc
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sentral.pbx.sip.auth import (
    ALGORITHMS,
    Credentials,
    DigestAuthority,
    UnsupportedScheme,
    Verdict,
    compute_ha1,
    compute_response,
    format_credentials,
    hash_username,
    parse_credentials,
)
from sentral.pbx.sip.errors import SipError

SECRET = b"a test secret of thirty-two byte"
REALM = "clinic.example"
USER = "1001"
PASSWORD = "correct horse"
URI = "sip:clinic.example"


def challenge_params(value: str) -> dict[str, str]:
    """The auth-params of one WWW-Authenticate value, unquoted, as a client reads them."""
    assert value.startswith("Digest ")
    found = re.findall(r'([\w-]+)=("(?:[^"\\]|\\.)*"|[^,\s]+)', value[len("Digest ") :])
    return {name: v[1:-1] if v.startswith('"') else v for name, v in found}


def answer(
    value: str,
    *,
    user: str = USER,
    password: str = PASSWORD,
    realm: str | None = None,
    method: str = "REGISTER",
    uri: str = URI,
    nc: int = 1,
    cnonce: str = "0a4f113b",
    qop: str | None = "auth",
    opaque: bool = True,
) -> Credentials:
    """What a well-behaved client sends back for the challenge ``value``."""
    params = challenge_params(value)
    algorithm = params["algorithm"]
    realm = params["realm"] if realm is None else realm
    ha1 = compute_ha1(algorithm, user, realm, password)
    response = compute_response(
        algorithm, ha1, method=method, uri=uri, nonce=params["nonce"], nc=nc, cnonce=cnonce, qop=qop or "auth"
    )
    return Credentials(
        username=user,
        realm=realm,
        nonce=params["nonce"],
        uri=uri,
        response=response,
        algorithm=algorithm,
        cnonce=cnonce,
        nc=nc,
        qop=qop,
        opaque=params["opaque"] if opaque else None,
    )


def stored_ha1(algorithm: str, user: str = USER, realm: str = REALM) -> str | None:
    """The directory: only USER exists, with an HA1 for each supported algorithm."""
    return compute_ha1(algorithm, user, realm, PASSWORD) if user == USER and algorithm in ALGORITHMS else None


def verify(authority: DigestAuthority, creds: Credentials, now: float, method: str = "REGISTER") -> Verdict:
    return authority.verify(method, creds, stored_ha1(creds.algorithm, creds.username, creds.realm), now)


@pytest.fixture
def authority() -> DigestAuthority:
    return DigestAuthority(SECRET)


# --- RFC 7616 §3.9.1 -----------------------------------------------------------------------------

RFC_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


@pytest.mark.parametrize(
    ("algorithm", "hashname", "published"),
    [
        ("MD5", "md5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "sha256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_example_vectors(algorithm: str, hashname: str, published: str) -> None:
    def h(text: str) -> str:
        return hashlib.new(hashname, text.encode()).hexdigest()

    ha1 = h("Mufasa:http-auth@example.org:Circle of Life")
    by_hand = h(f"{ha1}:{RFC_NONCE}:00000001:{RFC_CNONCE}:auth:{h('GET:/dir/index.html')}")
    assert by_hand == published
    assert compute_ha1(algorithm, "Mufasa", "http-auth@example.org", "Circle of Life") == ha1
    assert (
        compute_response(
            algorithm, ha1, method="GET", uri="/dir/index.html", nonce=RFC_NONCE, nc=1, cnonce=RFC_CNONCE
        )
        == published
    )


def test_parses_the_rfc7616_example_header() -> None:
    value = (
        'Digest username="Mufasa",\r\n     realm="http-auth@example.org",\r\n'
        '     uri="/dir/index.html",\r\n     algorithm=SHA-256,\r\n     nonce="' + RFC_NONCE + '",\r\n'
        '     nc=00000001,\r\n     cnonce="' + RFC_CNONCE + '",\r\n     qop=auth,\r\n'
        '     response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",\r\n'
        '     opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )
    creds = parse_credentials(value)
    assert creds == Credentials(
        username="Mufasa",
        realm="http-auth@example.org",
        nonce=RFC_NONCE,
        uri="/dir/index.html",
        response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        algorithm="SHA-256",
        cnonce=RFC_CNONCE,
        nc=1,
        qop="auth",
        opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
    )


def test_parses_rfc7616_extended_username() -> None:
    creds = parse_credentials(
        'Digest username*=UTF-8\'\'J%C3%A4s%C3%B8n%20Doe, realm="r", nonce="n", uri="u", response="x"'
    )
    assert creds.username == "Jäsøn Doe"


# --- challenges --------------------------------------------------------------------------------


def test_challenge_offers_sha256_then_md5_with_one_nonce(authority: DigestAuthority) -> None:
    values = authority.challenge(REALM, 1000.0)
    assert len(values) == 2
    first, second = (challenge_params(v) for v in values)
    assert (first["algorithm"], second["algorithm"]) == ("SHA-256", "MD5")
    assert first["nonce"] == second["nonce"]
    assert first["opaque"] == second["opaque"]
    for params in (first, second):
        assert params["realm"] == REALM
        assert params["qop"] == "auth"
        assert "stale" not in params
    assert 'qop="auth"' in values[0]


def test_challenge_md5_only_stale_and_fresh_nonces(authority: DigestAuthority) -> None:
    (value,) = authority.challenge(REALM, 1000.0, algorithms=("MD5",), stale=True)
    params = challenge_params(value)
    assert params["algorithm"] == "MD5"
    assert params["stale"] == "true"
    again = challenge_params(authority.challenge(REALM, 1000.0, algorithms=("MD5",))[0])
    assert again["nonce"] != params["nonce"]


def test_challenge_quotes_the_realm(authority: DigestAuthority) -> None:
    (value,) = authority.challenge('odd "realm" \\', 0.0, algorithms=("MD5",))
    assert 'realm="odd \\"realm\\" \\\\"' in value


def test_challenge_refuses_unknown_algorithms(authority: DigestAuthority) -> None:
    with pytest.raises(ValueError):
        authority.challenge(REALM, 0.0, algorithms=("SHA-512-256",))
    with pytest.raises(ValueError):
        authority.challenge(REALM, 0.0, algorithms=())


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        DigestAuthority(b"short")


# --- verification --------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_correct_password_through_the_header(authority: DigestAuthority, algorithm: str) -> None:
    (value,) = authority.challenge(REALM, 1000.0, algorithms=(algorithm,))
    creds = parse_credentials(format_credentials(answer(value)))
    assert creds.algorithm == algorithm
    assert verify(authority, creds, 1001.0) is Verdict.OK


def test_either_offered_algorithm_may_answer(authority: DigestAuthority) -> None:
    sha, md5 = authority.challenge(REALM, 1000.0)
    assert verify(authority, answer(sha), 1001.0) is Verdict.OK
    assert verify(authority, answer(md5, nc=2), 1001.0) is Verdict.OK


def test_wrong_password_and_unknown_user_get_the_same_verdict(authority: DigestAuthority) -> None:
    (value,) = authority.challenge(REALM, 1000.0, algorithms=("MD5",))
    wrong = answer(value, password="guess")
    unknown = answer(value, user="1999", password=PASSWORD)
    assert verify(authority, wrong, 1001.0) is Verdict.FAILED
    assert verify(authority, unknown, 1001.0) is Verdict.FAILED
    # Even a client that somehow answers for the right HA1 fails when the directory has no user.
    right = answer(value)
    assert authority.verify("REGISTER", right, None, 1001.0) is Verdict.FAILED


def test_response_case_and_method_matter(authority: DigestAuthority) -> None:
    (value,) = authority.challenge(REALM, 1000.0, algorithms=("MD5",))
    creds = answer(value, method="REGISTER")
    upper = replace(creds, response=creds.response.upper())
    assert verify(authority, upper, 1001.0) is Verdict.OK
    assert verify(authority, answer(value, nc=2), 1001.0, method="INVITE") is Verdict.FAILED


def test_forged_and_tampered_nonces_fail(authority: DigestAuthority) -> None:
    (value,) = authority.challenge(REALM, 1000.0, algorithms=("MD5",))
    good = challenge_params(value)["nonce"]
    flipped = good[:10] + ("A" if good[10] != "A" else "B") + good[11:]
    forged = base64.urlsafe_b64encode(bytes(range(36))).decode()
    respelled = good.replace("-", "+").replace("_", "/")
    candidates = [flipped, forged, good[:-1], good + "A", "", "nonce", "é" * 48]
    if respelled != good:
        candidates.append(respelled)
    for nonce in candidates:
        creds = answer(value.replace(good, nonce))
        assert verify(authority, creds, 1001.0) is Verdict.FAILED, nonce


def test_nonce_from_another_realm_fails(authority: DigestAuthority) -> None:
    (value,) = authority.challenge("other.example", 1000.0, algorithms=("MD5",))
    nonce = challenge_params(value)["nonce"]
    # A client answering our realm with a nonce issued for the other one.
    creds = answer(value, realm=REALM)
    assert creds.nonce == nonce
    assert verify(authority, creds, 1001.0) is Verdict.FAILED
    # And a genuine answer for the other realm is refused where only ours is accepted.
    genuine = answer(value)
    ha1 = compute_ha1("MD5", USER, "other.example", PASSWORD)
    assert authority.verify("REGISTER", genuine, ha1, 1001.0, realm=REALM) is Verdict.FAILED
    assert authority.verify("REGISTER", genuine, ha1, 1001.0) is Verdict.OK


def test_stale_nonce(authority: DigestAuthority) -> None:
    (value,) = authority.challenge(REALM, 1000.0, algorithms=("SHA-256",))
    late = 1000.0 + 300.0 + 1.0
    assert verify(authority, answer(value), late) is Verdict.STALE
    assert verify(authority, answer(value, password="guess"), late) is Verdict.FAILED
    assert verify(authority, answer(value, user="1999"), late) is Verdict.FAILED
    # A nonce from the future means the clock was stepped back: re-challenge as well.
    assert verify(authority, answer(value), 900.0) is Verdict.STALE
    # Just inside the lifetime it is still good.
    assert verify(authority, answer(value), 1300.0) is Verdict.OK


def test_nonce_lifetime_is_configurable() -> None:
    authority = DigestAuthority(SECRET, nonce_lifetime=10.0)
    (value,) = authority.challenge(REALM, 0.0, algorithms=("MD5",))
    assert verify(authority, answer(value), 10.5) is Verdict.STALE


def test_nonce_count_replay_and_increase(authority: DigestAuthority) -> None:
    (value,) = authority.challenge(REALM, 1000.0, algorithms=("MD5",))
    assert verify(authority, answer(value, nc=1), 1001.0) is Verdict.OK
    assert verify(authority, answer(value, nc=1), 1001.0) is Verdict.REPLAY
    assert verify(authority, answer(value, nc=2, cnonce="other"), 1002.0) is Verdict.OK
    assert verify(authority, answer(value, nc=2), 1002.0) is Verdict.REPLAY
    assert verify(authority, answer(value, nc=1), 1002.0) is Verdict.REPLAY
    # Gaps are fine (requests may be lost); only going back is refused.
    assert verify(authority, answer(value, nc=7), 1003.0) is Verdict.OK
    # A wrong password does not advance the count, so it cannot lock the real client out.
    assert verify(authority, answer(value, nc=100, password="guess"), 1003.0) is Verdict.FAILED
    assert verify(authority, answer(value, nc=8), 1003.0) is Verdict.OK


def test_nonce_counts_are_per_nonce(authority: DigestAuthority) -> None:
    (first,) = authority.challenge(REALM, 1000.0, algorithms=("MD5",))
    (second,) = authority.challenge(REALM, 1000.0, algorithms=("MD5",))
    assert verify(authority, answer(first, nc=5), 1001.0) is Verdict.OK
    assert verify(authority, answer(second, nc=1), 1001.0) is Verdict.OK


@pytest.mark.parametrize(
    "changes",
    [
        {"qop": None},
        {"qop": "auth-int"},
        {"cnonce": None},
        {"nc": None},
        {"nc": 0},
        {"algorithm": "MD5-sess"},
        {"algorithm": "SHA-512-256"},
        {"opaque": "not-ours"},
    ],
)
def test_incomplete_or_unsupported_answers_fail(authority: DigestAuthority, changes: dict[str, Any]) -> None:
    (value,) = authority.challenge(REALM, 1000.0, algorithms=("MD5",))
    assert verify(authority, replace(answer(value), **changes), 1001.0) is Verdict.FAILED


def test_missing_opaque_is_tolerated(authority: DigestAuthority) -> None:
    (value,) = authority.challenge(REALM, 1000.0, algorithms=("MD5",))
    assert verify(authority, answer(value, opaque=False), 1001.0) is Verdict.OK


def test_algorithm_and_qop_are_case_insensitive(authority: DigestAuthority) -> None:
    (value,) = authority.challenge(REALM, 1000.0, algorithms=("SHA-256",))
    creds = answer(value, qop="AUTH")
    header = format_credentials(creds).replace("algorithm=SHA-256", "algorithm=sha-256")
    assert verify(authority, parse_credentials(header), 1001.0) is Verdict.OK


def test_an_expired_nonce_is_stale_whatever_its_count() -> None:
    authority = DigestAuthority(SECRET, nonce_lifetime=10.0)
    (value,) = authority.challenge(REALM, 0.0, algorithms=("MD5",))
    assert verify(authority, answer(value, nc=1), 1.0) is Verdict.OK
    assert verify(authority, answer(value, nc=1), 20.0) is Verdict.STALE
    assert verify(authority, answer(value, nc=2), 20.0) is Verdict.STALE


def test_the_replay_table_does_not_grow_with_the_nonces_answered() -> None:
    """Every nonce answered within its lifetime needs its count remembered (some 60,000 at 200
    calls a second): the table is allocated once, so the server does not grow as it fills."""
    authority = DigestAuthority(SECRET)
    values = [authority.challenge(REALM, 1000.0 + i / 100, algorithms=("MD5",))[0] for i in range(5000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for value in values:
            assert verify(authority, answer(value), 1060.0) is Verdict.OK
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 5000  # bytes in all; a table of entries made as nonces come holds 85-130 each
    for value in values:
        assert verify(authority, answer(value), 1060.0) is Verdict.REPLAY


def test_a_nonce_whose_slot_a_later_nonce_took_is_stale_never_replayed() -> None:
    authority = DigestAuthority(SECRET, max_nonces=10)
    values = [authority.challenge(REALM, 1000.0 + i, algorithms=("MD5",))[0] for i in range(50)]
    # Only the last ten issued still have their slots.
    for value in values[:40]:
        assert verify(authority, answer(value, nc=1), 1060.0) is Verdict.STALE
        assert verify(authority, answer(value, nc=2), 1060.0) is Verdict.STALE
    for value in values[40:]:
        assert verify(authority, answer(value, nc=1), 1060.0) is Verdict.OK
        assert verify(authority, answer(value, nc=1), 1060.0) is Verdict.REPLAY
        assert verify(authority, answer(value, nc=2), 1060.0) is Verdict.OK
    # A later nonce takes the slot of the oldest of them, which goes stale.
    (fresh,) = authority.challenge(REALM, 1100.0, algorithms=("MD5",))
    assert verify(authority, answer(fresh), 1101.0) is Verdict.OK
    assert verify(authority, answer(values[40], nc=3), 1101.0) is Verdict.STALE
    assert verify(authority, answer(values[41], nc=3), 1101.0) is Verdict.OK


def test_nonces_from_before_a_restart_are_stale_not_replayable() -> None:
    """The secret outlives a restart, but the counts seen before it do not: such a nonce is stale."""
    before = DigestAuthority(SECRET)
    (value,) = before.challenge(REALM, 1000.0, algorithms=("MD5",))
    assert verify(before, answer(value), 1001.0) is Verdict.OK
    after = DigestAuthority(SECRET)
    assert verify(after, answer(value), 1002.0) is Verdict.STALE
    (fresh,) = after.challenge(REALM, 1003.0, algorithms=("MD5",))
    assert verify(after, answer(fresh), 1004.0) is Verdict.OK


def test_injected_randomness_makes_nonces_reproducible() -> None:
    one = DigestAuthority(SECRET, random_bytes=lambda n: b"\x01" * n)
    two = DigestAuthority(SECRET, random_bytes=lambda n: b"\x01" * n)
    assert one.challenge(REALM, 5.0) == two.challenge(REALM, 5.0)
    assert one.challenge(REALM, 5.0) != DigestAuthority(SECRET + b"!").challenge(REALM, 5.0)


def test_userhash_and_hash_username() -> None:
    hashed = hash_username("SHA-256", USER, REALM)
    assert hashed == hashlib.sha256(f"{USER}:{REALM}".encode()).hexdigest()
    creds = parse_credentials(
        f'Digest username="{hashed}", userhash=TRUE, realm="{REALM}", nonce="n", uri="u", response="r"'
    )
    assert creds.userhash is True
    assert creds.username == hashed


def test_response_is_kept_out_of_repr(authority: DigestAuthority) -> None:
    (value,) = authority.challenge(REALM, 1000.0, algorithms=("MD5",))
    creds = answer(value)
    assert creds.response not in repr(creds)


# --- header parsing --------------------------------------------------------------------------------

MINIMAL = 'username="u", realm="r", nonce="n", uri="sip:a", response="0f"'


def test_parses_escapes_and_whitespace() -> None:
    creds = parse_credentials(
        'digest\t username = "a \\"quoted\\" \\\\name" ,realm\t=\t"r\\x",\r\n nonce="n",uri="sip:a" ,'
        ' response = "0f" , nc = 0000000a , cnonce = "c" , qop = "auth" , algorithm = "MD5"'
    )
    assert creds.username == 'a "quoted" \\name'
    assert creds.realm == "rx"
    assert creds.nc == 10
    assert creds.qop == "auth"
    assert creds.algorithm == "MD5"


def test_defaults_and_unknown_parameters() -> None:
    creds = parse_credentials(f'Digest {MINIMAL}, future-param="x, y", other=tok, Ext=1')
    assert creds.algorithm == "MD5"
    assert (creds.cnonce, creds.nc, creds.qop, creds.opaque, creds.userhash) == (
        None,
        None,
        None,
        None,
        False,
    )


def test_tolerates_empty_list_elements_and_trailing_comma() -> None:
    creds = parse_credentials(f"Digest ,{MINIMAL.replace(', ', ',, ')}, ")
    assert creds.username == "u"


def test_parameter_names_and_scheme_are_case_insensitive() -> None:
    creds = parse_credentials('DIGEST UserName="u", REALM="r", Nonce="n", URI="sip:a", Response="0f"')
    assert (creds.username, creds.realm, creds.uri) == ("u", "r", "sip:a")


def test_commas_and_equals_inside_quotes() -> None:
    creds = parse_credentials('Digest username="a,b=c", realm="r", nonce="n", uri="sip:a;x=y", response="0f"')
    assert creds.username == "a,b=c"
    assert creds.uri == "sip:a;x=y"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "Digest",
        "Digest ",
        f"Basic {MINIMAL}",
        "Basic dXNlcjpwYXNz",
        f"Digest{MINIMAL}",
        f'Digest {MINIMAL}, realm="again"',
        f'Digest {MINIMAL}, Realm="again"',
        f"Digest {MINIMAL}, nc=00000001, nc=00000002",
        f"Digest {MINIMAL}, x=1, x=2",
        'Digest realm="r", nonce="n", uri="sip:a", response="0f"',
        'Digest username="u", nonce="n", uri="sip:a", response="0f"',
        'Digest username="u", realm="r", uri="sip:a", response="0f"',
        'Digest username="u", realm="r", nonce="n", response="0f"',
        'Digest username="u", realm="r", nonce="n", uri="sip:a"',
        f"Digest {MINIMAL}, nc=0000001",
        f"Digest {MINIMAL}, nc=000000001",
        f"Digest {MINIMAL}, nc=+0000001",
        f"Digest {MINIMAL}, nc=0000_001",
        f"Digest {MINIMAL}, nc=0000000g",
        f'Digest {MINIMAL}, nc=" 0000001"',
        f"Digest {MINIMAL}, userhash=maybe",
        f"Digest {MINIMAL}, username*=UTF-8''x",
        'Digest username*=latin1\'\'x, realm="r", nonce="n", uri="u", response="x"',
        'Digest username*=UTF-8\'\'%FF, realm="r", nonce="n", uri="u", response="x"',
        'Digest username="u" realm="r", nonce="n", uri="sip:a", response="0f"',
        'Digest username="u, realm="r", nonce="n", uri="sip:a", response="0f"',
        'Digest username=, realm="r", nonce="n", uri="sip:a", response="0f"',
        'Digest username=a b, realm="r", nonce="n", uri="sip:a", response="0f"',
        'Digest =x, username="u", realm="r", nonce="n", uri="sip:a", response="0f"',
        f'Digest {MINIMAL}, "x"="y"',
        f"Digest {MINIMAL}, novalue",
        'Digest username="u\\',
    ],
)
def test_malformed_credentials_are_bad_requests(value: str) -> None:
    with pytest.raises(SipError) as raised:
        parse_credentials(value)
    assert raised.value.status == 400


_TOKENS = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~", min_size=1
)
_QUOTABLE = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"))


@given(st.text())
def test_parse_never_raises_anything_but_sip_error(value: str) -> None:
    try:
        parse_credentials(value)
    except SipError as error:
        assert error.status == 400


@given(
    st.lists(
        st.sampled_from(
            [
                "Digest",
                " ",
                "\t",
                "\r\n ",
                ",",
                "=",
                '"',
                "\\",
                "username",
                "realm",
                "nonce",
                "uri",
                "response",
                "nc",
                "00000001",
                "qop",
                "auth",
                "username*",
                "UTF-8''",
                "%C3",
                "userhash",
                "true",
                "algorithm",
                "MD5",
                "x",
                "é",
            ]
        ),
        max_size=40,
    ).map("".join)
)
def test_parse_of_near_miss_headers_never_raises_anything_but_sip_error(value: str) -> None:
    try:
        parse_credentials(value)
    except SipError as error:
        assert error.status == 400


@given(
    username=_QUOTABLE,
    realm=_QUOTABLE,
    nonce=_QUOTABLE,
    uri=_QUOTABLE,
    response=_QUOTABLE,
    algorithm=st.sampled_from(["MD5", "SHA-256", "MD5-sess"]) | _TOKENS,
    cnonce=st.none() | _QUOTABLE,
    nc=st.none() | st.integers(min_value=0, max_value=0xFFFFFFFF),
    qop=st.none() | _TOKENS,
    opaque=st.none() | _QUOTABLE,
    userhash=st.booleans(),
)
def test_format_then_parse_round_trips(
    username: str,
    realm: str,
    nonce: str,
    uri: str,
    response: str,
    algorithm: str,
    cnonce: str | None,
    nc: int | None,
    qop: str | None,
    opaque: str | None,
    userhash: bool,
) -> None:
    creds = Credentials(username, realm, nonce, uri, response, algorithm, cnonce, nc, qop, opaque, userhash)
    parsed = parse_credentials(format_credentials(creds))
    # Algorithm names are case-insensitive; known ones come back in their canonical spelling.
    assert parsed.algorithm.lower() == algorithm.lower()
    assert replace(parsed, algorithm=algorithm) == creds


def test_credentials_of_another_scheme_are_told_apart_from_malformed_ones() -> None:
    # A registrar challenges such a request as if it carried no credentials (RFC 4475 §3.3.7).
    with pytest.raises(UnsupportedScheme) as raised:
        parse_credentials("NoOneKnowsThisScheme opaque-data=here")
    assert (raised.value.status, raised.value.scheme) == (400, "NoOneKnowsThisScheme")
    with pytest.raises(SipError) as malformed:
        parse_credentials("Digest username=")
    assert not isinstance(malformed.value, UnsupportedScheme)
