"""SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966), with IPv6 references (RFC 5118).

Theory of operation: a URI is parsed once into a frozen value. Userinfo and parameters keep the
text they arrived with (%-escapes included), so that a URI serializes back to what was received;
comparison and lookups use the unescaped forms (``user_unescaped``) as RFC 3261 §19.1.4 asks.
Other absolute URIs (``mailto:``, ``http:``) are legal in From, To and Contact; they parse into a
``Uri`` whose ``opaque`` holds everything after the scheme. The request line decides whether such
a scheme gets 416 (that decision belongs to the endpoint, not to the parser).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache

from sentral.pbx.sip.errors import SipError
from sentral.pbx.sip.grammar import Params, format_params, parse_params

SIP_SCHEMES = frozenset({"sip", "sips", "tel"})
# Entries in each memo of parsed header values (URIs, name-addrs, Vias). Their hits come within a
# transaction or a call's first exchange: a challenge answered, a retransmission, the From and To
# of each message of one INVITE. Values are mostly unique per call (tags, branches), so at a
# thousand calls a second a bigger memo hits little more, and its entries live long enough to
# outlast a young collection and be traced, which a small memo's do not.
PARSE_MEMO = 512
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*\Z")
_HOST_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-_.]*[A-Za-z0-9_])?\.?\Z")
_IPV6_RE = re.compile(r"\[[0-9A-Fa-f:.]+\]\Z")
_ESCAPE_RE = re.compile(r"%([0-9A-Fa-f]{2})")
_BAD_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_NOT_IN_SIP_URI_RE = re.compile(r'[ \t\r\n<>"]')


def unescape(text: str) -> str:
    """Decode %-escapes (as UTF-8, keeping undecodable bytes escaped)."""
    if "%" not in text:
        return text
    raw = _ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16)), text)
    try:
        return raw.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return raw


@dataclass(frozen=True, slots=True)
class Uri:
    """A parsed URI. For sip/sips: user, password, host, port, params, headers. For tel: the
    number in ``user``, its parameters in ``params``. For any other scheme: ``opaque``."""

    scheme: str
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = ()
    opaque: str | None = None
    # The wire form, made on first use: the same URIs are serialized again and again (binding
    # keys, Contact values, Request-URIs). Not an init field, so ``replace`` never copies it.
    _text: str | None = field(default=None, init=False, repr=False, compare=False, hash=False)

    @classmethod
    def parse(cls, text: str) -> Uri:
        """Parse ``text``; raise SipError(400) if it is malformed."""
        return parse_uri(text)

    @property
    def is_sip(self) -> bool:
        """True for sip: and sips: URIs."""
        return self.scheme == "sip" or self.scheme == "sips"

    @property
    def user_unescaped(self) -> str | None:
        """The user part with %-escapes decoded, for lookups and comparison."""
        return None if self.user is None else unescape(self.user)

    @property
    def host_port(self) -> str:
        """``host`` or ``host:port`` as it appears in a URI."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def host_bare(self) -> str:
        """The host without IPv6 brackets, as a socket address wants it."""
        h = self.host
        return h[1:-1] if h.startswith("[") else h

    def param(self, name: str) -> str | None:
        """The value of URI parameter ``name`` (lower-case), or None; a name written with
        %-escapes (``;%6C%72`` for ``;lr``) is found too (RFC 3261 §19.1.4)."""
        for key, value in self.params:
            if key == name or ("%" in key and _param_name(key) == name):
                return value
        return None

    def has_param(self, name: str) -> bool:
        """True if URI parameter ``name`` is present (escaped or not)."""
        return any(key == name or ("%" in key and _param_name(key) == name) for key, _ in self.params)

    @property
    def transport(self) -> str | None:
        """The ``transport`` parameter in lower case, if any."""
        value = self.param("transport")
        return unescape(value).lower() if value else None

    def with_params(self, params: Params) -> Uri:
        """A copy with ``params`` replacing the parameters."""
        return replace(self, params=params)

    def without_headers(self) -> Uri:
        """A copy without ``?headers`` (what a Request-URI built from it must not carry)."""
        return replace(self, headers=()) if self.headers else self

    def aor(self) -> str:
        """The address of record key: ``scheme:user@host`` with user unescaped, host lower-case."""
        user = self.user_unescaped
        host = self.host.lower()
        return f"{self.scheme}:{user}@{host}" if user is not None else f"{self.scheme}:{host}"

    def __str__(self) -> str:
        text = self._text
        if text is None:
            text = self._format()
            object.__setattr__(self, "_text", text)
        return text

    def _format(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        if self.scheme == "tel":
            return f"tel:{self.user}{format_params(self.params)}"
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out.append(":")
                out.append(self.password)
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        if self.params:
            out.append(format_params(self.params))
        if self.headers:
            out.append("?")
            out.append("&".join(f"{k}={v}" for k, v in self.headers))
        return "".join(out)

    def equivalent(self, other: Uri) -> bool:
        """URI comparison per RFC 3261 §19.1.4 (escapes decoded, host case-insensitive, and the
        parameters that matter when present in either URI)."""
        if self.scheme != other.scheme:
            return False
        if self.opaque is not None or other.opaque is not None:
            return self.opaque == other.opaque
        if self.user_unescaped != other.user_unescaped:
            return False
        if self.password != other.password and (
            self.password is None or other.password is None or unescape(self.password) != unescape(other.password)
        ):
            return False
        if self.host.lower() != other.host.lower() or self.port != other.port:
            return False
        mine = _comparable_params(self.params)
        theirs = _comparable_params(other.params)
        for name in ("user", "ttl", "method", "maddr", "transport"):
            if (name in mine or name in theirs) and mine.get(name) != theirs.get(name):
                return False
        for name in mine.keys() & theirs.keys():
            if mine[name] != theirs[name]:
                return False
        return _comparable_headers(self.headers) == _comparable_headers(other.headers)


def _param_name(key: str) -> str:
    return unescape(key).lower()


def _comparable_params(params: Params) -> dict[str, str | None]:
    """Parameters as RFC 3261 §19.1.4 compares them: escapes decoded, case folded."""
    return {_param_name(k) if "%" in k else k: (unescape(v).lower() if v else v) for k, v in params}


def _comparable_headers(headers: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    """URI headers in any order, names case-insensitive, escapes decoded (RFC 3261 §19.1.4)."""
    return sorted((unescape(k).lower(), unescape(v)) for k, v in headers)


def _split_host_port(text: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` where host may be a bracketed IPv6 reference."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipError(400, "Bad IPv6 reference")
        host = text[: end + 1]
        if not _IPV6_RE.match(host):
            raise SipError(400, "Bad IPv6 reference")
        host = _ipv6_reference(host)
        rest = text[end + 1 :]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise SipError(400, "Bad host")
        return host, _port(rest[1:])
    host, colon, port_text = text.partition(":")
    if not host or not _HOST_RE.match(host):
        raise SipError(400, "Bad host")
    if colon:
        if ":" in port_text:
            raise SipError(400, "IPv6 address without brackets")
        return host, _port(port_text)
    return host, None


def _valid_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _ipv6_reference(ref: str) -> str:
    """Check a bracketed IPv6 reference; raise SipError(400) if it is not one.

    RFC 3261's ABNF, taken from RFC 2373, allows an extra colon before an embedded IPv4 address
    (``[2001:db8:::192.0.2.1]``); RFC 5118 §4.10 asks implementations to tolerate it. Such a
    reference comes back in the corrected form, so that it compares equal to the correct one.
    """
    inner = ref[1:-1]
    if _valid_ipv6(inner):
        return ref
    head, sep, tail = inner.partition(":::")
    if sep and "." in tail and _valid_ipv6(f"{head}::{tail}"):
        return f"[{head}::{tail}]"
    raise SipError(400, "Bad IPv6 reference")


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 5:
        raise SipError(400, "Bad port")
    port = int(text)
    if port > 65535:
        raise SipError(400, "Bad port")
    return port


def split_host_port(text: str) -> tuple[str, int | None]:
    """Split a ``host[:port]`` (a Via sent-by, say); raise SipError(400) if malformed."""
    return _split_host_port(text.strip())


@lru_cache(maxsize=PARSE_MEMO)
def parse_uri(text: str) -> Uri:
    """Parse a URI; raise SipError(400) if it is malformed.

    Memoized: a Uri is immutable and the same URIs (domains, registered contacts) recur in
    almost every message, so a hit skips the parse.
    """
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME_RE.match(scheme):
        raise SipError(400, "Bad URI")
    scheme = scheme.lower()
    if scheme == "sip" or scheme == "sips":
        return _parse_sip(scheme, rest)
    if scheme == "tel":
        return _parse_tel(rest)
    if not rest or any(c in " \t\r\n<>\"" for c in rest):
        raise SipError(400, "Bad URI")
    return Uri(scheme=scheme, opaque=rest)


_SIP_RE = re.compile(
    r"(?:(?P<user>[A-Za-z0-9\-_.!~*'()%&=+$,;?/]+)(?::(?P<pw>[A-Za-z0-9\-_.!~*'()%&=+$,]*))?@)?"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9\-_.]*[A-Za-z0-9_])?\.?)"
    r"(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<params>;[^?]*)?"
    r"(?:\?(?P<headers>.*))?\Z",
    re.DOTALL,
)


def _parse_sip(scheme: str, rest: str) -> Uri:
    m = _SIP_RE.match(rest)
    if m is None or _NOT_IN_SIP_URI_RE.search(rest) is not None:
        raise SipError(400, "Bad SIP URI")
    if "%" in rest and _BAD_ESCAPE_RE.search(rest):
        raise SipError(400, "Bad escape in URI")
    user, password, host, port_text, ptext, htext = m.group("user", "pw", "host", "port", "params", "headers")
    if host[0] == "[":
        host = _ipv6_reference(host)
    port = None
    if port_text is not None:
        port = int(port_text)
        if port > 65535:
            raise SipError(400, "Bad port")
    params: Params = ()
    if ptext:
        params = parse_params(ptext[1:])
        for _, value in params:
            if value == "":
                raise SipError(400, "Empty URI parameter value")
    headers = _parse_uri_headers(htext) if htext is not None else ()
    return Uri(scheme=scheme, user=user, password=password, host=host, port=port, params=params, headers=headers)


def _parse_uri_headers(text: str) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for item in text.split("&"):
        name, eq, value = item.partition("=")
        if not name or not eq:
            raise SipError(400, "Bad URI header")
        out.append((name, value))
    return tuple(out)


def _parse_tel(rest: str) -> Uri:
    number, _, ptext = rest.partition(";")
    if not number or any(c in " \t\r\n<>\"@" for c in rest):
        raise SipError(400, "Bad tel URI")
    allowed = "0123456789-.()*#ABCDabcdpwPW+"
    if any(c not in allowed and c != "%" for c in number):
        raise SipError(400, "Bad tel URI number")
    return Uri(scheme="tel", user=number, params=parse_params(ptext))
