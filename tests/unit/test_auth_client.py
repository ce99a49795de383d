"""Digest authentication as a client: reading a carrier's challenge and answering it."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sentral.pbx.sip.auth import (
    Challenge,
    DigestAuthority,
    UnsupportedScheme,
    Verdict,
    authorization,
    choose_challenge,
    compute_ha1,
    parse_challenge,
    parse_credentials,
)
from sentral.pbx.sip.errors import SipError

SECRET = b"a test secret of thirty-two byte"
RFC_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"


def rfc_challenge(algorithm: str) -> str:
    """RFC 7616 §3.9.1's challenge, as a server writes it."""
    return (
        f'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, '
        f'nonce="{RFC_NONCE}", opaque="{RFC_OPAQUE}"'
    )


def test_parses_the_rfc7616_example_challenge() -> None:
    assert parse_challenge(rfc_challenge("SHA-256")) == Challenge(
        scheme="Digest",
        realm="http-auth@example.org",
        nonce=RFC_NONCE,
        algorithm="SHA-256",
        qop=("auth", "auth-int"),
        opaque=RFC_OPAQUE,
        stale=False,
    )


def test_challenge_defaults_escapes_and_stale() -> None:
    challenge = parse_challenge('digest REALM="a \\"quoted\\" realm", Nonce=abc, STALE=TRUE, domain="sip:x"')
    assert challenge.realm == 'a "quoted" realm'
    assert challenge.nonce == "abc"
    assert challenge.algorithm == "MD5"
    assert challenge.qop == ()
    assert challenge.opaque is None
    assert challenge.stale is True
    assert (
        parse_challenge('Digest realm="r", nonce="n", algorithm=sha-256, stale=false').algorithm == "SHA-256"
    )
    assert parse_challenge('Digest realm="r", nonce="n", stale=false').stale is False


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Digest",
        'Digest realm="r"',
        'Digest nonce="n"',
        'Digest realm="r", nonce="n", nonce="m"',
        'Digest realm="r" nonce="n"',
        'Digest realm="r, nonce="n"',
        'Digest realm="r", =x',
    ],
)
def test_malformed_challenges_are_sip_errors(value: str) -> None:
    with pytest.raises(SipError):
        parse_challenge(value)


def test_another_scheme_is_told_apart() -> None:
    with pytest.raises(UnsupportedScheme):
        parse_challenge('Basic realm="carrier"')


@given(st.text())
def test_parse_challenge_never_raises_anything_but_sip_error(value: str) -> None:
    try:
        parse_challenge(value)
    except SipError as error:
        assert error.status == 400


@given(
    st.lists(
        st.sampled_from(
            [
                "Digest",
                " ",
                ",",
                "=",
                '"',
                "\\",
                "realm",
                "nonce",
                "qop",
                "auth",
                "algorithm",
                "SHA-256",
                "stale",
                "true",
                "opaque",
                "x",
                "é",
                "\r\n ",
            ]
        ),
        max_size=40,
    ).map("".join)
)
def test_parse_of_near_miss_challenges_never_raises_anything_but_sip_error(value: str) -> None:
    try:
        parse_challenge(value)
    except SipError as error:
        assert error.status == 400


def test_choose_prefers_sha256_whatever_the_order() -> None:
    md5, sha = rfc_challenge("MD5"), rfc_challenge("SHA-256")
    assert choose_challenge([md5, sha]) == parse_challenge(sha)
    assert choose_challenge([sha, md5]) == parse_challenge(sha)
    assert choose_challenge([md5]) == parse_challenge(md5)


def test_choose_passes_over_what_it_cannot_answer() -> None:
    assert choose_challenge([]) is None
    assert choose_challenge(['Basic realm="x"', "Digest garbage", rfc_challenge("SHA-512-256")]) is None
    assert choose_challenge(['Digest realm="r", nonce="n", qop="auth-conf"']) is None
    assert choose_challenge(
        ['Basic realm="x"', rfc_challenge("MD5-sess"), rfc_challenge("MD5")]
    ) == parse_challenge(rfc_challenge("MD5"))


@pytest.mark.parametrize(
    ("algorithm", "published"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_answers_the_rfc7616_example(algorithm: str, published: str) -> None:
    value = authorization(
        parse_challenge(rfc_challenge(algorithm)),
        "GET",
        "/dir/index.html",
        "Mufasa",
        "Circle of Life",
        cnonce=RFC_CNONCE,
    )
    creds = parse_credentials(value)
    assert creds.response == published
    assert (creds.username, creds.realm, creds.uri, creds.algorithm) == (
        "Mufasa",
        "http-auth@example.org",
        "/dir/index.html",
        algorithm,
    )
    assert (creds.nonce, creds.cnonce, creds.nc, creds.qop, creds.opaque) == (
        RFC_NONCE,
        RFC_CNONCE,
        1,
        "auth",
        RFC_OPAQUE,
    )


@pytest.mark.parametrize(
    ("algorithm", "published"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_answers_from_the_stored_ha1_without_the_password(algorithm: str, published: str) -> None:
    """What a registrar stores (the HA1) is enough to answer: the browser phone answers so."""
    ha1 = compute_ha1(algorithm, "Mufasa", "http-auth@example.org", "Circle of Life")
    value = authorization(
        parse_challenge(rfc_challenge(algorithm)), "GET", "/dir/index.html", "Mufasa", "",
        cnonce=RFC_CNONCE, ha1=ha1,
    )  # fmt: skip
    assert parse_credentials(value).response == published


def test_answers_without_qop_in_the_rfc2069_way() -> None:
    challenge = parse_challenge('Digest realm="carrier", nonce="abc123"')
    creds = parse_credentials(authorization(challenge, "REGISTER", "sip:carrier", "u", "p", cnonce="c"))
    ha1 = hashlib.md5(b"u:carrier:p").hexdigest()
    ha2 = hashlib.md5(b"REGISTER:sip:carrier").hexdigest()
    assert creds.response == hashlib.md5(f"{ha1}:abc123:{ha2}".encode()).hexdigest()
    assert (creds.qop, creds.cnonce, creds.nc, creds.opaque) == (None, None, None, None)


def test_answers_auth_int_only_when_that_is_all_on_offer() -> None:
    challenge = parse_challenge('Digest realm="r", nonce="n", qop="auth-int"')
    body = b"v=0\r\n"
    creds = parse_credentials(
        authorization(challenge, "INVITE", "sip:x", "u", "p", cnonce="c", nc=2, body=body)
    )
    ha1 = hashlib.md5(b"u:r:p").hexdigest()
    ha2 = hashlib.md5(f"INVITE:sip:x:{hashlib.md5(body).hexdigest()}".encode()).hexdigest()
    assert creds.qop == "auth-int"
    assert creds.nc == 2
    assert creds.response == hashlib.md5(f"{ha1}:n:00000002:c:auth-int:{ha2}".encode()).hexdigest()


def test_refuses_to_answer_an_unsupported_algorithm() -> None:
    with pytest.raises(ValueError):
        authorization(parse_challenge(rfc_challenge("SHA-512-256")), "GET", "/", "u", "p", cnonce="c")


@pytest.mark.parametrize("algorithms", [("SHA-256", "MD5"), ("MD5",), ("SHA-256",)])
@pytest.mark.parametrize("stale", [False, True])
def test_our_server_accepts_what_our_client_computes(algorithms: tuple[str, ...], stale: bool) -> None:
    authority = DigestAuthority(SECRET)
    realm, user, password, uri = "clinic.example", "trunk-user", 'pa"ss\\word', "sip:clinic.example"
    challenge = choose_challenge(authority.challenge(realm, 1000.0, algorithms=algorithms, stale=stale))
    assert challenge is not None
    assert challenge.algorithm == algorithms[0]
    assert challenge.stale is stale
    for nc in (1, 2):
        creds = parse_credentials(
            authorization(challenge, "REGISTER", uri, user, password, cnonce="xyz", nc=nc)
        )
        ha1 = compute_ha1(creds.algorithm, user, realm, password)
        assert authority.verify("REGISTER", creds, ha1, 1001.0) is Verdict.OK
    wrong = parse_credentials(authorization(challenge, "REGISTER", uri, user, "guess", cnonce="xyz", nc=3))
    assert authority.verify(
        "REGISTER", wrong, compute_ha1(wrong.algorithm, user, realm, password), 1001.0
    ) is (Verdict.FAILED)


def test_the_password_is_not_in_the_header() -> None:
    value = authorization(parse_challenge(rfc_challenge("MD5")), "GET", "/", "u", "s3cret-pass", cnonce="c")
    assert "s3cret-pass" not in value
