"""HTTP digest authentication for SIP (RFC 7616, RFC 8760, RFC 3261 §22).

Theory of operation: the server answers an unauthenticated request with one challenge per
algorithm it accepts (SHA-256 first, as RFC 8760 asks, then MD5 for the phones and test tools
that know nothing else). All of them carry the same nonce, so a client may answer with whichever
algorithm it supports. The client proves it knows the password by returning

    response = H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" H(method ":" uri))

where HA1 = H(username ":" realm ":" password) is what storage keeps instead of the password.

Nonces are stateless to check. Each one is the issue time, a sequence number, four random bytes
and a MAC over them and the realm, keyed with the server's secret. A nonce that was not issued
here, was altered or was issued for another realm fails the MAC; an old one is recognised from
its issue time. Nothing is stored when a challenge goes out, so a flood of unauthenticated
requests costs no memory. The MAC is keyed BLAKE2b (RFC 7693), a MAC by design. Every call
computes two (one challenge, one answer), and OpenSSL's one-shot HMAC, used before, looked its
algorithms up anew each time and let go of the GIL around a few microseconds of work, which
under load handed the event loop's GIL to other threads twice a call.

What does need memory is replay protection: RFC 7616 §3.3 has the client count the requests it
sends with one nonce (``nc``), and the server refuses a count it has already seen. The highest
count accepted per nonce is kept in a table of fixed size, allocated at the start: one slot for
each of the last ``max_nonces`` nonces issued, found from the nonce's sequence number. A slot is
written only on a *successful* verification (a forged response cannot poison anyone's entry). A
nonce whose slot a later nonce has taken is answered STALE, so it can never be replayed; at worst
a client pays one extra challenge, which is also all that a flood of challenges can cost others
(it numbers ``max_nonces`` nonces before a phone's nonce goes stale early). The table's size never
changes, so the server's memory does not grow as nonces are answered.

An unknown user is checked against a dummy HA1 with exactly the work a known user costs, and gets
the same verdict as a wrong password, so neither timing nor answers reveal which extensions exist.

Only qop=auth is offered and accepted. RFC 2069 responses (no qop, hence no cnonce and no nonce
count) cannot be protected against replay, and every SIP client in use sends qop=auth when offered.
auth-int is not offered: it would hash whole message bodies for no protection that TLS does not
give better.

The client side (``parse_challenge``, ``choose_challenge``, ``authorization``) is what Sentral
uses when it is the one challenged, registering a trunk with a carrier: it picks the strongest
challenge it supports (SHA-256 over MD5), answers with qop=auth when offered (auth-int when that
is all the carrier offers, RFC 2069 style when no qop is offered at all) and echoes the opaque.

The module is pure: callers pass the current time as ``now`` (wall-clock seconds, so that nonces
survive a restart that keeps the same secret) and the source of random bytes can be injected.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import struct
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol
from urllib.parse import unquote

from sentral.pbx.sip import entropy
from sentral.pbx.sip.errors import SipError

ALGORITHMS: dict[str, str] = {"MD5": "md5", "SHA-256": "sha256"}


def compute_ha1(algorithm: str, username: str, realm: str, password: str) -> str:
    """H(username:realm:password) in lower-case hex: what storage keeps instead of the password."""
    return hashlib.new(ALGORITHMS[algorithm], f"{username}:{realm}:{password}".encode()).hexdigest()


class _Hash(Protocol):
    def hexdigest(self) -> str: ...


# The direct constructors are several times faster than hashlib.new(name) on the hot path.
_HASHERS: dict[str, Callable[[bytes], _Hash]] = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}

# Algorithm names are case-insensitive tokens; they are normalised so that comparisons and table
# lookups elsewhere need not care. The -sess variants are recognised only to be refused by name.
_CANONICAL_ALGORITHM = {
    "md5": "MD5",
    "sha-256": "SHA-256",
    "md5-sess": "MD5-sess",
    "sha-256-sess": "SHA-256-sess",
    "sha-512-256": "SHA-512-256",
    "sha-512-256-sess": "SHA-512-256-sess",
}

# Header text may carry lone surrogates (bytes decoded with surrogateescape); hashing must not
# raise on them, only fail to match.
_ENCODING = "utf-8"
_ERRORS = "surrogatepass"


def _response(
    hasher: Callable[[bytes], _Hash],
    ha1: str,
    nonce: str,
    nc: int,
    cnonce: str,
    qop: str,
    method: str,
    uri: str,
) -> str:
    ha2 = hasher(f"{method}:{uri}".encode(_ENCODING, _ERRORS)).hexdigest()
    return hasher(f"{ha1}:{nonce}:{nc:08x}:{cnonce}:{qop}:{ha2}".encode(_ENCODING, _ERRORS)).hexdigest()


def compute_response(
    algorithm: str,
    ha1: str,
    *,
    method: str,
    uri: str,
    nonce: str,
    nc: int,
    cnonce: str,
    qop: str = "auth",
) -> str:
    """The request-digest a client sends for qop=auth (RFC 7616 §3.4.1), in lower-case hex."""
    return _response(_HASHERS[algorithm], ha1, nonce, nc, cnonce, qop, method, uri)


def hash_username(algorithm: str, username: str, realm: str) -> str:
    """H(username:realm): what a client sends as ``username`` with userhash=true (RFC 7616 §3.4.4)."""
    return _HASHERS[algorithm](f"{username}:{realm}".encode(_ENCODING, _ERRORS)).hexdigest()


# ---------------------------------------------------------------------------------------------
# Credentials: the Authorization / Proxy-Authorization header value


@dataclass(frozen=True, slots=True)
class Credentials:
    """The parameters of a Digest Authorization or Proxy-Authorization header field."""

    username: str
    realm: str
    nonce: str
    uri: str
    # Kept out of repr so that a logged Credentials never carries a password-equivalent.
    response: str = field(repr=False)
    algorithm: str = "MD5"
    cnonce: str | None = None
    nc: int | None = None
    qop: str | None = None
    opaque: str | None = None
    userhash: bool = False


_LWS = r"[ \t\r\n]*"
_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
# RFC 3261 §25.1: "Digest" LWS digest-response. The scheme must be followed by whitespace (or end,
# which then fails for want of parameters).
_SCHEME_RE = re.compile(rf"{_LWS}({_TOKEN})(?:[ \t\r\n]+|\Z)")
# One auth-param and the comma (or end) after it, or else the first character where none starts.
# Scanning with findall keeps the loop in C; the second alternative turns every place where the
# grammar breaks into a match of its own, so nothing malformed is skipped silently. Separators
# (whitespace and commas) are skipped, which also lets through the empty list elements that
# RFC 7230's list rule asks recipients to accept. The quoted-string body is the unrolled form of
# (qdtext | quoted-pair)* so that matching stays linear.
_PARAM_RE = re.compile(
    rf"[ \t\r\n,]*({_TOKEN}){_LWS}={_LWS}"
    rf'(?:"([^"\\]*(?:\\[^\r\n][^"\\]*)*)"|({_TOKEN}))'
    rf"{_LWS}(?:,|\Z)"
    r"|[^ \t\r\n,]"
)
_QUOTED_PAIR_RE = re.compile(r"\\([^\r\n])")
_HEX = frozenset("0123456789abcdefABCDEF")


class UnsupportedScheme(SipError):
    """Well-formed credentials of a scheme other than Digest. A server that does not know the
    scheme ignores them and challenges as if they were absent (RFC 4475 §3.3.7)."""

    def __init__(self, scheme: str) -> None:
        super().__init__(400, "Unsupported authentication scheme")
        self.scheme = scheme


def parse_credentials(value: str) -> Credentials:
    """Parse an Authorization / Proxy-Authorization value; ``SipError(400)`` if it is malformed,
    ``UnsupportedScheme`` (a SipError too) if it is not Digest."""
    m = _SCHEME_RE.match(value)
    if m is None:
        raise SipError(400, "Malformed credentials")
    if m.group(1).lower() != "digest":
        raise UnsupportedScheme(m.group(1))
    found = _PARAM_RE.findall(value, m.end())
    # A token value is never empty, so an empty token group means the value was quoted.
    params = {name.lower(): token or quoted for name, quoted, token in found}
    if len(params) != len(found):
        if "" in params:
            raise SipError(400, "Malformed credentials")
        raise SipError(400, "Duplicate parameter in credentials")
    if "" in params:
        raise SipError(400, "Malformed credentials")
    if "\\" in value:
        params = {
            name: _QUOTED_PAIR_RE.sub(r"\1", text) if "\\" in text else text for name, text in params.items()
        }
    return _credentials(params)


def _credentials(params: dict[str, str]) -> Credentials:
    userhash_text = params.get("userhash")
    if userhash_text is None:
        userhash = False
    else:
        lowered = userhash_text.lower()
        if lowered not in ("true", "false"):
            raise SipError(400, "Malformed userhash parameter")
        userhash = lowered == "true"

    username = params.get("username")
    extended = params.get("username*")
    if extended is not None:
        if username is not None or userhash:
            raise SipError(400, "username* with username or userhash in credentials")
        username = _decode_ext_value(extended)

    try:
        realm = params["realm"]
        nonce = params["nonce"]
        uri = params["uri"]
        response = params["response"]
    except KeyError as missing:
        raise SipError(400, f"Missing {missing.args[0]} parameter in credentials") from None
    if username is None:
        raise SipError(400, "Missing username parameter in credentials")

    algorithm = params.get("algorithm")
    algorithm = "MD5" if algorithm is None else _CANONICAL_ALGORITHM.get(algorithm.lower(), algorithm)

    nc_text = params.get("nc")
    nc: int | None = None
    if nc_text is not None:
        # int() alone would also take signs, underscores and spaces.
        if len(nc_text) != 8 or not _HEX.issuperset(nc_text):
            raise SipError(400, "Malformed nc parameter in credentials")
        nc = int(nc_text, 16)

    return Credentials(
        username=username,
        realm=realm,
        nonce=nonce,
        uri=uri,
        response=response,
        algorithm=algorithm,
        cnonce=params.get("cnonce"),
        nc=nc,
        qop=params.get("qop"),
        opaque=params.get("opaque"),
        userhash=userhash,
    )


def _decode_ext_value(text: str) -> str:
    """RFC 8187 ext-value (charset'language'percent-encoded), as RFC 7616 uses for username*."""
    parts = text.split("'", 2)
    if len(parts) != 3 or parts[0].lower() != "utf-8":
        raise SipError(400, "Malformed username* parameter")
    try:
        return unquote(parts[2], encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise SipError(400, "Malformed username* parameter") from None


def quote(text: str) -> str:
    """``text`` as an RFC 3261 quoted-string."""
    if '"' in text or "\\" in text:
        text = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def format_credentials(creds: Credentials) -> str:
    """The Authorization header value a client sends for ``creds`` (the inverse of parsing)."""
    parts = [
        f"Digest username={quote(creds.username)}",
        f"realm={quote(creds.realm)}",
        f"nonce={quote(creds.nonce)}",
        f"uri={quote(creds.uri)}",
        f"response={quote(creds.response)}",
        f"algorithm={creds.algorithm}",
    ]
    if creds.cnonce is not None:
        parts.append(f"cnonce={quote(creds.cnonce)}")
    if creds.nc is not None:
        parts.append(f"nc={creds.nc:08x}")
    if creds.qop is not None:
        parts.append(f"qop={creds.qop}")
    if creds.opaque is not None:
        parts.append(f"opaque={quote(creds.opaque)}")
    if creds.userhash:
        parts.append("userhash=true")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# The server side: challenges and verification


class Verdict(Enum):
    """The outcome of checking a digest response."""

    OK = "ok"
    # Right password on a genuine nonce that has expired: re-challenge with stale=true so the
    # client retries without asking its user for the password again.
    STALE = "stale"
    FAILED = "failed"
    REPLAY = "replay"


# Domain separation: the secret keys nonces, opaque values and the dummy HA1, and none of them
# may be mistaken for another.
_NONCE_LABEL = b"sentral digest nonce\x00"
_OPAQUE_LABEL = b"sentral digest opaque\x00"
_DUMMY_LABEL = b"sentral digest dummy\x00"
# A nonce is its issue time, its sequence number, random bytes and a MAC tag over them.
_ISSUED = struct.Struct(">d")
_SEQUENCE = struct.Struct(">Q")
_RANDOM_BYTES = 4
_BODY_BYTES = _ISSUED.size + _SEQUENCE.size + _RANDOM_BYTES
_TAG_BYTES = 16
_RAW_NONCE_BYTES = _BODY_BYTES + _TAG_BYTES
_MAX_NC = 0xFFFFFFFF  # the eight hex digits of a nonce-count
# 36 bytes are exactly 48 base64 characters: no padding and no spare bits, so each nonce has a
# single spelling.
_NONCE_RE = re.compile(rf"[A-Za-z0-9_-]{{{_RAW_NONCE_BYTES * 4 // 3}}}")
# A nonce issued up to this far in the future still counts as fresh, for a wall clock stepped back
# a little between challenge and answer; further than that it is treated as stale.
_CLOCK_SKEW = 5.0
_OPAQUE_CACHE_MAX = 1024


class DigestAuthority:
    """Issues digest challenges and verifies responses with stateless nonces that carry their own MAC."""

    def __init__(
        self,
        secret: bytes,
        *,
        nonce_lifetime: float = 300.0,
        max_nonces: int = 200_000,
        random_bytes: Callable[[int], bytes] = entropy.token_bytes,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the digest secret must be at least 16 bytes")
        if nonce_lifetime <= 0:
            raise ValueError("nonce_lifetime must be positive")
        if max_nonces < 1:
            raise ValueError("max_nonces must be at least 1")
        self._secret = secret
        # The nonces' own key, derived from the secret (BLAKE2b takes keys of up to 64 bytes).
        self._nonce_key = hashlib.blake2b(_NONCE_LABEL + secret).digest()
        self._lifetime = nonce_lifetime
        self._max_nonces = max_nonces
        self._random = random_bytes
        self._dummy = {name: hasher(_DUMMY_LABEL + secret).hexdigest() for name, hasher in _HASHERS.items()}
        self._opaque: dict[str, str] = {}
        # The replay table: a slot for each of the last ``max_nonces`` nonces issued, the nonce
        # numbered n in slot n % max_nonces, holding n + 1 once the nonce has been answered (0
        # before) and the highest nonce-count accepted with it. Allocated here once and for all:
        # a table that grew with the nonces answered (some 60,000 within the lifetime at 200
        # calls a second) grew the server for the first five minutes and scattered long-lived
        # objects among short-lived ones. A nonce whose slot a later one has taken is stale.
        self._window = max_nonces
        self._owners = array("Q", bytes(_SEQUENCE.size * max_nonces))
        self._counts = array("I", bytes(4 * max_nonces))
        # This run numbers its nonces from a random start, so that nonces from before a restart
        # (the secret is kept) fall outside the window and are stale rather than taking slots.
        self._next = int.from_bytes(random_bytes(6))

    def challenge(
        self,
        realm: str,
        now: float,
        *,
        algorithms: Sequence[str] = ("SHA-256", "MD5"),
        stale: bool = False,
    ) -> tuple[str, ...]:
        """WWW-Authenticate / Proxy-Authenticate values, one per algorithm, sharing a fresh nonce."""
        if not algorithms:
            raise ValueError("at least one digest algorithm must be offered")
        for name in algorithms:
            if name not in _HASHERS:
                raise ValueError(f"unsupported digest algorithm {name!r}")
        nonce = self._new_nonce(realm, now)
        head = f'Digest realm={quote(realm)}, nonce="{nonce}", opaque="{self._opaque_for(realm)}"'
        tail = ', qop="auth", stale=true' if stale else ', qop="auth"'
        return tuple(f"{head}, algorithm={name}{tail}" for name in algorithms)

    def verify(
        self,
        method: str,
        creds: Credentials,
        ha1: str | None,
        now: float,
        *,
        realm: str | None = None,
    ) -> Verdict:
        """Check ``creds`` for a request with ``method``.

        ``ha1`` is the stored HA1 of ``creds.username`` for ``creds.algorithm``, or None if there
        is no such user. ``realm``, when given, is the only realm accepted. Retransmissions must be
        absorbed by the transaction layer before this point: they repeat their nonce-count.
        """
        hasher = _HASHERS.get(creds.algorithm)
        if hasher is None:
            return Verdict.FAILED
        qop = creds.qop
        cnonce = creds.cnonce
        nc = creds.nc
        if qop is None or qop.lower() != "auth" or cnonce is None or nc is None or nc < 1:
            return Verdict.FAILED
        if realm is not None and creds.realm != realm:
            return Verdict.FAILED
        fields = self._nonce_fields(creds.nonce, creds.realm)
        if fields is None or nc > _MAX_NC:
            return Verdict.FAILED
        issued, number = fields
        # Only now is the realm known to be one this server challenged for, which keeps the
        # opaque cache from filling with realms made up by clients.
        if creds.opaque is not None and creds.opaque != self._opaque_for(creds.realm):
            return Verdict.FAILED

        # Same work whether or not the user exists: only the final verdict differs.
        known = ha1 is not None
        expected = _response(
            hasher,
            ha1 if ha1 is not None else self._dummy[creds.algorithm],
            creds.nonce,
            nc,
            cnonce,
            qop,
            method,
            creds.uri,
        )
        given = creds.response.lower().encode(_ENCODING, _ERRORS)
        if not (hmac.compare_digest(expected.encode(), given) and known):
            return Verdict.FAILED

        age = now - issued
        if age > self._lifetime or age < -_CLOCK_SKEW:
            return Verdict.STALE
        newest = self._next - 1
        if not newest - self._window < number <= newest:
            return Verdict.STALE  # its slot has gone to a later nonce, or it is from before a restart
        slot = number % self._window
        if self._owners[slot] != number + 1:
            self._owners[slot] = number + 1
            self._counts[slot] = nc
            return Verdict.OK
        if nc <= self._counts[slot]:
            return Verdict.REPLAY
        self._counts[slot] = nc
        return Verdict.OK

    def _new_nonce(self, realm: str, now: float) -> str:
        random = self._random(_RANDOM_BYTES)
        if len(random) != _RANDOM_BYTES:
            raise ValueError("random_bytes returned the wrong number of bytes")
        body = _ISSUED.pack(now) + _SEQUENCE.pack(self._next) + random
        self._next += 1
        return base64.urlsafe_b64encode(body + self._nonce_tag(body, realm)).decode("ascii")

    def _nonce_tag(self, body: bytes, realm: str) -> bytes:
        """The MAC of a nonce's issue time, sequence number and random bytes with the realm."""
        message = body + realm.encode(_ENCODING, _ERRORS)
        return hashlib.blake2b(message, key=self._nonce_key, digest_size=_TAG_BYTES).digest()

    def _nonce_fields(self, nonce: str, realm: str) -> tuple[float, int] | None:
        """The issue time and sequence number of ``nonce`` if this server issued it for
        ``realm``, else None."""
        # The alphabet check also keeps the spelling unique: the decoder would take "+" for "-"
        # and "/" for "_", and a second spelling of a nonce would have a replay table entry of
        # its own.
        if _NONCE_RE.fullmatch(nonce) is None:
            return None
        raw = base64.urlsafe_b64decode(nonce)
        body = raw[:_BODY_BYTES]
        if not hmac.compare_digest(self._nonce_tag(body, realm), raw[_BODY_BYTES:]):
            return None
        issued: float = _ISSUED.unpack_from(raw)[0]
        number: int = _SEQUENCE.unpack_from(raw, _ISSUED.size)[0]
        return issued, number

    def _opaque_for(self, realm: str) -> str:
        opaque = self._opaque.get(realm)
        if opaque is None:
            if len(self._opaque) >= _OPAQUE_CACHE_MAX:
                self._opaque.clear()
            digest = hmac.digest(self._secret, _OPAQUE_LABEL + realm.encode(_ENCODING, _ERRORS), "sha256")
            opaque = self._opaque[realm] = digest[:12].hex()
        return opaque


# ---------------------------------------------------------------------------------------------
# The client side: answering a carrier's challenge


@dataclass(frozen=True, slots=True)
class Challenge:
    """The parameters of one WWW-Authenticate or Proxy-Authenticate value (RFC 7616 §3.3)."""

    scheme: str
    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()  # lower case, as offered; empty: no qop (RFC 2069 responses)
    opaque: str | None = None
    stale: bool = False


def parse_challenge(value: str) -> Challenge:
    """Parse a WWW-Authenticate / Proxy-Authenticate value; ``SipError`` if it is malformed,
    ``UnsupportedScheme`` (a SipError too) if it is not Digest."""
    m = _SCHEME_RE.match(value)
    if m is None:
        raise SipError(400, "Malformed challenge")
    if m.group(1).lower() != "digest":
        raise UnsupportedScheme(m.group(1))
    found = _PARAM_RE.findall(value, m.end())
    params = {name.lower(): token or quoted for name, quoted, token in found}
    if "" in params:
        raise SipError(400, "Malformed challenge")
    if len(params) != len(found):
        raise SipError(400, "Duplicate parameter in challenge")
    if "\\" in value:
        params = {
            name: _QUOTED_PAIR_RE.sub(r"\1", text) if "\\" in text else text for name, text in params.items()
        }
    try:
        realm = params["realm"]
        nonce = params["nonce"]
    except KeyError as missing:
        raise SipError(400, f"Missing {missing.args[0]} parameter in challenge") from None
    algorithm = params.get("algorithm")
    algorithm = "MD5" if algorithm is None else _CANONICAL_ALGORITHM.get(algorithm.lower(), algorithm)
    qop_text = params.get("qop")
    qop = () if qop_text is None else tuple(t for t in (p.strip().lower() for p in qop_text.split(",")) if t)
    return Challenge(
        scheme="Digest",
        realm=realm,
        nonce=nonce,
        algorithm=algorithm,
        qop=qop,
        opaque=params.get("opaque"),
        stale=params.get("stale", "").lower() == "true",
    )


# Stronger first: the order in which a client prefers the algorithms it supports.
_PREFERENCE = ("SHA-256", "MD5")


def _answerable(challenge: Challenge) -> bool:
    return challenge.algorithm in _HASHERS and (
        not challenge.qop or "auth" in challenge.qop or "auth-int" in challenge.qop
    )


def choose_challenge(values: Sequence[str]) -> Challenge | None:
    """The strongest challenge among ``values`` that this client can answer (SHA-256 over MD5),
    the first offered of equal strength; None when none can be answered. Malformed values and
    other schemes are passed over: a carrier may offer several."""
    best: Challenge | None = None
    for value in values:
        try:
            challenge = parse_challenge(value)
        except SipError:
            continue
        if not _answerable(challenge):
            continue
        if best is None or _PREFERENCE.index(challenge.algorithm) < _PREFERENCE.index(best.algorithm):
            best = challenge
    return best


def authorization(
    challenge: Challenge,
    method: str,
    uri: str,
    username: str,
    password: str,
    *,
    cnonce: str,
    nc: int = 1,
    body: bytes = b"",
    ha1: str | None = None,
) -> str:
    """The Authorization / Proxy-Authorization value answering ``challenge`` for a request with
    ``method`` to ``uri``. ``ha1``, when given, stands for the password (the HA1 of the
    challenge's algorithm and realm, as a registrar stores it). ``ValueError`` for a challenge
    ``choose_challenge`` would not pick."""
    if not _answerable(challenge):
        raise ValueError(f"cannot answer a {challenge.algorithm} challenge with qop {challenge.qop}")
    hasher = _HASHERS[challenge.algorithm]
    if ha1 is None:
        ha1 = hasher(f"{username}:{challenge.realm}:{password}".encode(_ENCODING, _ERRORS)).hexdigest()
    qop: str | None
    if not challenge.qop:
        qop = None
        ha2 = hasher(f"{method}:{uri}".encode(_ENCODING, _ERRORS)).hexdigest()
        response = hasher(f"{ha1}:{challenge.nonce}:{ha2}".encode(_ENCODING, _ERRORS)).hexdigest()
    else:
        if "auth" in challenge.qop:
            qop = "auth"
            ha2 = hasher(f"{method}:{uri}".encode(_ENCODING, _ERRORS)).hexdigest()
        else:
            qop = "auth-int"
            entity = hasher(body).hexdigest()
            ha2 = hasher(f"{method}:{uri}:{entity}".encode(_ENCODING, _ERRORS)).hexdigest()
        response = hasher(
            f"{ha1}:{challenge.nonce}:{nc:08x}:{cnonce}:{qop}:{ha2}".encode(_ENCODING, _ERRORS)
        ).hexdigest()
    return format_credentials(
        Credentials(
            username=username,
            realm=challenge.realm,
            nonce=challenge.nonce,
            uri=uri,
            response=response,
            algorithm=challenge.algorithm,
            cnonce=cnonce if qop is not None else None,
            nc=nc if qop is not None else None,
            qop=qop,
            opaque=challenge.opaque,
        )
    )
