"""Header field names and the structured header values a softswitch routes on.

Theory of operation: a message stores its header fields as (key, name, value) text triples, the
key being the lower-case long name (compact forms expanded, RFC 3261 §7.3.3). The classes here
parse a single value on demand: ``NameAddr`` for From, To, Contact, Route, Record-Route, Path,
Refer-To; ``Via`` with its received/rport (RFC 3581); ``CSeq``. Each has ``parse`` raising
SipError(400) and ``__str__`` giving the wire form back.

These values are NamedTuples rather than frozen dataclasses: several are built for every message
on the hot path, and a NamedTuple is immutable too but costs a third as much to construct.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

from sentral.pbx.sip.errors import SipError
from sentral.pbx.sip.grammar import (
    WS,
    Params,
    format_params,
    has_param,
    param,
    parse_params,
    quote,
)
from sentral.pbx.sip.uri import PARSE_MEMO, Uri, parse_uri, split_host_port

COMPACT: dict[str, str] = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
    "o": "event",
    "u": "allow-events",
    "r": "refer-to",
    "b": "referred-by",
    "x": "session-expires",
    "a": "accept-contact",
    "j": "reject-contact",
    "d": "request-disposition",
    "y": "identity",
    "n": "identity-info",
}

_CANONICAL_NAMES = ["Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Allow-Events", "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact", "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length", "Content-Type", "CSeq", "Date", "Error-Info", "Event", "Expires", "Flow-Timer", "From", "Identity", "Identity-Info", "In-Reply-To", "Max-Forwards", "MIME-Version", "Min-Expires", "Min-SE", "Organization", "P-Asserted-Identity", "P-Preferred-Identity", "Path", "Priority", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "RAck", "Reason", "Record-Route", "Refer-To", "Referred-By", "Reject-Contact", "Replaces", "Reply-To", "Request-Disposition", "Require", "Retry-After", "Route", "RSeq", "Server", "Session-Expires", "SIP-ETag", "SIP-If-Match", "Subject", "Subscription-State", "Supported", "Timestamp", "To", "Unsupported", "User-Agent", "Via", "Warning", "WWW-Authenticate"]
CANONICAL: dict[str, str] = {name.lower(): name for name in _CANONICAL_NAMES}

# Header fields whose grammar is a comma-separated list, so several values may share one line.
# Authorization-style fields contain commas but are single values and are never split.
LIST_HEADERS = frozenset(
    {
        "via", "contact", "route", "record-route", "path", "allow", "supported", "require",
        "proxy-require", "unsupported", "accept", "accept-encoding", "accept-language",
        "allow-events", "content-encoding", "content-language", "alert-info", "call-info",
        "error-info", "in-reply-to", "warning", "reason", "p-asserted-identity",
        "p-preferred-identity", "accept-contact", "reject-contact", "request-disposition",
    }
)


# The keys of the usual spellings (canonical, lower-case and compact names): one lookup settles
# the names the code itself asks for.
_KEYS: dict[str, str] = {
    **{name: key for key, name in CANONICAL.items()},
    **{key: key for key in CANONICAL},
    **{short: key for short, key in COMPACT.items()},
    **{short.upper(): key for short, key in COMPACT.items()},
}


def header_key(name: str) -> str:
    """The lookup key of a header field name: lower case, compact form expanded."""
    key = _KEYS.get(name)
    if key is None:
        key = name.lower()
        key = COMPACT.get(key, key)
    return key


def display_name(key: str) -> str:
    """The conventional spelling of a header field for serialization."""
    return CANONICAL.get(key) or "-".join(part.capitalize() for part in key.split("-"))


# A NamedTuple's generated __new__ runs as interpreted Python even when this module is compiled;
# the values built for every message are made by tuple's own constructor instead, every field given.
_new = tuple.__new__


class NameAddr(NamedTuple):
    """``"Display" <uri>;params`` or a bare addr-spec with header parameters."""

    uri: Uri
    display: str | None = None
    params: Params = ()
    bracketed: bool = True

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        """Parse one name-addr or addr-spec value (not a comma list)."""
        return parse_name_addr(text)

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (From and To)."""
        # ``param(self.params, "tag")`` inlined: read for nearly every message, several times.
        for key, value in self.params:
            if key == "tag":
                return value
        return None

    def param(self, name: str) -> str | None:
        """The value of header parameter ``name`` (lower-case), or None."""
        return param(self.params, name)

    def has_param(self, name: str) -> bool:
        """True if header parameter ``name`` is present."""
        return has_param(self.params, name)

    def with_tag(self, tag: str) -> NameAddr:
        """A copy carrying ``tag`` (replacing any tag it had)."""
        params = (*(p for p in self.params if p[0] != "tag"), ("tag", tag))
        return _new(NameAddr, (self.uri, self.display, params, self.bracketed))

    def __str__(self) -> str:
        uri = str(self.uri)
        head = f"{quote(self.display)} <{uri}>" if self.display is not None else f"<{uri}>"
        return head + format_params(self.params)


_NAME_ADDR_RE = re.compile(
    r'[ \t]*(?:"(?P<quoted>(?:[^"\\]|\\.)*)"[ \t]*|(?P<words>[A-Za-z0-9\-.!%*_+`\'~ \t]*?)[ \t]*)'
    r"<(?P<uri>[^<>\s]+)>[ \t]*(?P<params>;.*)?\Z",
    re.DOTALL,
)
_ADDR_SPEC_RE = re.compile(r"[ \t]*(?P<uri>[^;<>\s\"]+)[ \t]*(?P<params>;.*)?\Z", re.DOTALL)
_UNESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)


@lru_cache(maxsize=PARSE_MEMO)
def parse_name_addr(text: str) -> NameAddr:
    """Parse a name-addr (``"Bob" <sip:bob@host>;tag=1``) or addr-spec (``sip:bob@host;tag=1``).

    In the addr-spec form the URI ends at the first semicolon: what follows are header
    parameters, and a URI with ``?headers`` or a comma is refused (RFC 3261 §20.10).

    Memoized (briefly, see ``PARSE_MEMO``): a NameAddr is immutable, and a phone repeats its
    From, To and Contact values in the request that answers a challenge and in every
    retransmission.
    """
    if text.startswith("<"):
        # Fast path for the form phones send, ``<uri>`` with optional ``;params`` right after the
        # bracket: no display name, no whitespace. Anything else takes the full pattern.
        end = text.find(">")
        uri_text = text[1:end]
        if (
            end > 1
            and uri_text.isascii()
            and uri_text.isprintable()
            and " " not in uri_text
            and "<" not in uri_text
        ):
            rest = text[end + 1 :]
            if not rest:
                return _new(NameAddr, (parse_uri(uri_text), None, (), True))
            if rest[0] == ";":
                params = parse_params(rest[1:].rstrip(WS))
                return _new(NameAddr, (parse_uri(uri_text), None, params, True))
    return _parse_name_addr_full(text)


def _parse_name_addr_full(text: str) -> NameAddr:
    """``parse_name_addr`` by the full patterns."""
    m = _NAME_ADDR_RE.match(text)
    if m is not None:
        quoted, words, uri_text, ptext = m.group("quoted", "words", "uri", "params")
        display: str | None
        if quoted is not None:
            display = _UNESCAPE_RE.sub(r"\1", quoted) if "\\" in quoted else quoted
        elif words:
            display = " ".join(words.split())
        else:
            display = None
        params = parse_params(ptext[1:].rstrip(WS)) if ptext else ()
        return NameAddr(uri=parse_uri(uri_text), display=display, params=params)
    m = _ADDR_SPEC_RE.match(text)
    if m is None:
        raise SipError(400, "Bad address")
    uri_text, ptext = m.group("uri", "params")
    if "?" in uri_text or "," in uri_text:
        # A URI with headers or a comma must be enclosed in <> (RFC 3261 §20.10; RFC 4475
        # §3.1.2.13): in general the unbracketed form is ambiguous.
        raise SipError(400, "URI with headers or comma must be in <>")
    params = parse_params(ptext[1:].rstrip(WS)) if ptext else ()
    return NameAddr(uri=parse_uri(uri_text), params=params, bracketed=False)


class Via(NamedTuple):
    """One Via value: ``SIP/2.0/UDP host:port;branch=z9hG4bK...;received=...;rport=...``."""

    transport: str
    host: str
    port: int | None
    params: Params = ()
    protocol: str = "SIP/2.0"

    @classmethod
    def parse(cls, text: str) -> Via:
        """Parse one Via value (not a comma list)."""
        return parse_via(text)

    @property
    def branch(self) -> str | None:
        """The branch parameter (the transaction key when it starts with z9hG4bK)."""
        # ``param(self.params, "branch")`` inlined: read for every message.
        for key, value in self.params:
            if key == "branch":
                return value
        return None

    @property
    def received(self) -> str | None:
        """The received parameter (RFC 3261 §18.2.1)."""
        return param(self.params, "received")

    @property
    def rport(self) -> int | None:
        """The filled-in rport value (RFC 3581), or None if absent or empty."""
        value = param(self.params, "rport")
        return int(value) if value and value.isascii() and value.isdigit() else None

    @property
    def wants_rport(self) -> bool:
        """True if the sender asked for symmetric response routing (RFC 3581)."""
        return has_param(self.params, "rport")

    @property
    def sent_by(self) -> str:
        """``host[:port]`` as the sender wrote it."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def param(self, name: str) -> str | None:
        """The value of Via parameter ``name`` (lower-case), or None."""
        return param(self.params, name)

    def with_params(self, params: Params) -> Via:
        """A copy with ``params`` replacing the parameters."""
        return _new(Via, (self.transport, self.host, self.port, params, self.protocol))

    def stamped(self, host: str, port: int) -> Via | None:
        """This Via as a server stamps it on receipt from ``host``:``port``, or None if nothing
        changes: ``received`` when the sent-by host is not the source address (RFC 3261 §18.2.1),
        ``rport`` filled in when the sender asked for it (RFC 3581 §4)."""
        params = self.params
        stamp_received = self.host.strip("[]") != host
        if not stamp_received and "rport" not in [key for key, _ in params]:
            return None
        out: list[tuple[str, str | None]] = []
        for key, value in params:
            if key == "rport":
                out.append(("rport", str(port)))
            elif key != "received" or not stamp_received:
                out.append((key, value))
        if stamp_received:
            out.append(("received", host))
        return _new(Via, (self.transport, self.host, self.port, tuple(out), self.protocol))

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{format_params(self.params)}"


_VIA_RE = re.compile(
    r"(?P<name>[A-Za-z0-9\-.!%*_+`'~]+)[ \t]*/[ \t]*(?P<version>[A-Za-z0-9\-.!%*_+`'~]+)[ \t]*/[ \t]*"
    r"(?P<transport>[A-Za-z0-9\-.!%*_+`'~]+)[ \t]+"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9\-_.]*[A-Za-z0-9_])?\.?)"
    r"(?:[ \t]*:[ \t]*(?P<port>[0-9]{1,5}))?[ \t]*(?P<params>;.*)?\Z",
    re.DOTALL,
)


@lru_cache(maxsize=PARSE_MEMO)
def parse_via(text: str) -> Via:
    """Parse one Via value; whitespace around the slashes and the port colon is allowed.

    Memoized: a Via value comes back unchanged in every response to the request that carried it,
    and in the ACK of a failure response (the request's own transaction, the same branch).
    """
    m = _VIA_RE.match(text)
    if m is None:
        raise SipError(400, "Bad Via")
    name, version, transport, host, port_text, ptext = m.groups()
    if host[0] == "[":
        host, _ = split_host_port(host)
    port = None
    if port_text is not None:
        port = int(port_text)
        if port > 65535:
            raise SipError(400, "Bad Via port")
    params: Params = ()
    if ptext:
        params = parse_params(ptext[1:])
        for key, value in params:
            if key == "branch" and not value:
                raise SipError(400, "Empty Via branch")
            if key == "ttl" and (
                value is None or not (value.isascii() and value.isdigit()) or int(value) > 255
            ):
                raise SipError(400, "Bad Via ttl")
    protocol = "SIP/2.0" if name == "SIP" and version == "2.0" else f"{name.upper()}/{version}"
    return _new(Via, (transport.upper(), host, port, params, protocol))


_CSEQ_RE = re.compile(r"[ \t]*([0-9]{1,10})[ \t]+([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*\Z")


class CSeq(NamedTuple):
    """``CSeq: 4711 INVITE``."""

    seq: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        """Parse a CSeq value; the number must be below 2**31 (RFC 3261 §8.1.1.5)."""
        return parse_cseq(text)

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


@lru_cache(maxsize=1024)
def parse_cseq(text: str) -> CSeq:
    """``CSeq.parse``, memoized: "1 REGISTER", "2 REGISTER", "102 INVITE" recur across all phones."""
    m = _CSEQ_RE.match(text)
    if m is None:
        raise SipError(400, "Bad CSeq")
    seq = int(m.group(1))
    if seq >= 2**31:
        raise SipError(400, "CSeq out of range")
    return CSeq(seq, m.group(2))
