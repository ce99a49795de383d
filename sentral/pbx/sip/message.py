"""SIP requests and responses: parsing, validation, construction and serialization (RFC 3261 §7, §20).

Theory of operation: parsing is lazy. ``parse_message`` does the work every message needs in one
pass: it frames the message (Content-Length, datagram or stream), splits the start line, unfolds
continuation lines, checks every header line and indexes the values by header key. Nothing else
is parsed until asked for: ``msg.top_via`` parses only the first Via value, ``msg.cseq`` only the
CSeq line, and each result is cached on the message; even the list of (key, name, value) fields
is made from the header text only when someone asks for ``fields``, since header lookups go
through the index. ``validate`` parses what every request must carry so that a broken one is
answered 400 before it reaches a transaction.

The work per message is what bounds calls per second, and the objects a message leaves behind
are what the garbage collector visits while transactions linger, so both are kept few: one dict
of strings per message rather than a list per header, no tuples for fields nobody reads, and
memoized parsers (``parse_via``, ``parse_name_addr``, ``parse_uri``) for the values that recur.

Errors are ``SipError``s carrying their response: 400 for a malformed message, 505 for a wrong
SIP version, 513 over the size limits, and ``drop`` for what RFC 3261 says to discard silently
(a response whose status code is outside 100..699). When a request line is broken the error is
a ``ParseError`` that still carries the header fields, so the driver can address a 400 to the
sender.

The parser never raises anything but ``SipError`` for any input bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sentral.pbx.sip.errors import SipError, reason_phrase
from sentral.pbx.sip.grammar import TOKEN_CHARS, split_commas
from sentral.pbx.sip.headers import (
    CANONICAL,
    COMPACT,
    LIST_HEADERS,
    CSeq,
    NameAddr,
    Via,
    display_name,
    header_key,
    parse_cseq,
    parse_name_addr,
    parse_via,
)
from sentral.pbx.sip.uri import Uri, parse_uri

MAX_MESSAGE_SIZE = 65_535
MAX_HEADER_FIELDS = 128
BRANCH_MAGIC = "z9hG4bK"

Field = tuple[str, str, str]  # (key, name as written, value)

_KNOWN_KEYS = frozenset(CANONICAL) | frozenset(COMPACT.values())
# The usual spellings of header names (canonical, lower-case, compact) and their keys: one lookup
# settles almost every header line; anything else takes the checked path.
_NAME_KEYS: dict[str, str] = {
    **{name: key for key, name in CANONICAL.items()},
    **{key: key for key in _KNOWN_KEYS},
    **{short: key for short, key in COMPACT.items()},
    **{short.upper(): key for short, key in COMPACT.items()},
}
_VERSION_RE = re.compile(r"SIP/[0-9]+\.[0-9]+\Z", re.IGNORECASE)
_FOLD_RE = re.compile(r"\r\n[ \t]+")
_CL_RE = re.compile(rb"\r\n(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)
# Marks a cached value not looked up yet. Should a header ever produce this very text, the value
# is merely looked up again each time, still correctly.
_UNSET = "\x00unset"
# The placeholder a parsed message is built with; its fields are made from its head on demand.
_NO_FIELDS: list[Field] = []
_SINGLE_HEADERS = ("call-id", "cseq", "from", "to", "max-forwards", "content-length", "expires")


class ParseError(SipError):
    """A message whose start line is broken; ``fields`` are its header fields, if they parsed."""

    def __init__(self, status: int, reason: str, fields: list[Field] | None, *, is_request: bool) -> None:
        super().__init__(status, reason)
        self.fields = fields
        self.is_request = is_request


class Message:
    """What requests and responses share: header fields, body, and cached parsed values.

    Not frozen: parsed header values are cached on first use. Treat a received message as
    read-only; build new messages for what you send.

    The lookup index maps each header key to its first value; ``_more`` holds every value of the
    few keys that occur on several lines (Via, Record-Route, Route in proxied traffic). Most
    messages have no repeated header, so a message keeps one dict of strings instead of a list
    per header, which is both quicker to build and fewer objects for the collector to visit.
    """

    def __init__(self, fields: list[Field], body: bytes = b"") -> None:
        self._fields: list[Field] | None = fields
        # A parsed message keeps its header block as text and makes ``fields`` from it only when
        # asked: the lookup index serves every header access, so most received messages never
        # need the list, nor a tuple per header line for the collector to visit.
        self._head: str | None = None
        # The first Via line as rewritten by ``replace_top_via`` (for fields made after it).
        self._via_line: str | None = None
        self.body = body
        self._index: dict[str, str] | None = None
        self._more: dict[str, list[str]] | None = None
        self._top_via: Via | None = None
        self._cseq: CSeq | None = None
        self._from: NameAddr | None = None
        self._to: NameAddr | None = None
        self._call_id: str | None = None
        self._values: dict[str, list[str]] | None = None
        self._contacts: list[NameAddr] | None = None
        self._content_type: str | None = _UNSET

    def forget_parsed(self) -> None:
        """Drop every parsed value; they are derived again from the header text if asked for.

        For messages kept long after they were handled (a completed transaction keeps its request
        and response for 32 s). What is left is the message and strings: nothing but the message
        for the garbage collector to visit. A parsed message keeps its header text and lookup
        index (a dict of strings, which the collector does not track). A built message's fields
        are written into header text as if it had been parsed, unless there are more of them than
        a parsed message may have.
        """
        fields = self._fields
        if fields is not None:
            if self._head is not None:
                # Fields made from the text: the index has every rewrite of the top Via.
                index = self._idx()
                self._via_line = index.get("via")
                self._fields = None
            elif len(fields) <= MAX_HEADER_FIELDS:
                lines = [self.start_line()]
                lines += [f"{name}: {value}" for _, name, value in fields]
                self._head = "\r\n".join(lines)
                self._fields = None
                self._index = None
                self._more = None
        self._values = None
        self._contacts = None
        self._top_via = None
        self._cseq = None
        self._from = None
        self._to = None
        self._content_type = _UNSET

    @property
    def fields(self) -> list[Field]:
        """The header fields in order, as (key, name as written, value) triples."""
        fields = self._fields
        if fields is None:
            assert self._head is not None
            fields = _split_fields(self._head, True)[0]
            line = self._via_line
            if line is not None:
                for i, (key, name, _) in enumerate(fields):
                    if key == "via":
                        fields[i] = (key, name, line)
                        break
            self._fields = fields
        return fields

    def replace_top_via(self, via: Via) -> None:
        """Rewrite the first Via value in place (received/rport stamping, RFC 3261 §18.2.1),
        keeping the fields, the lookup index and every cached value in step."""
        index = self._idx()
        value = index.get("via")
        if value is None:
            raise SipError(400, "Missing Via header")
        new_value = str(via)
        if "," in value:
            parts = split_commas(value)
            if len(parts) > 1:
                new_value += ", " + ", ".join(parts[1:])
        index["via"] = new_value
        more = self._more
        if more is not None and "via" in more:
            more["via"][0] = new_value
        fields = self._fields
        if fields is None:
            self._via_line = new_value
        else:
            for i, (key, name, _) in enumerate(fields):
                if key == "via":
                    fields[i] = (key, name, new_value)
                    break
        if self._values is not None:
            self._values.pop("via", None)
        self._top_via = via

    # -- raw header access -------------------------------------------------------------------

    def _idx(self) -> dict[str, str]:
        index = self._index
        if index is None:
            index = {}
            more: dict[str, list[str]] | None = None
            for key, _, value in self.fields:
                if key not in index:
                    index[key] = value
                elif more is None:
                    more = {key: [index[key], value]}
                elif key in more:
                    more[key].append(value)
                else:
                    more[key] = [index[key], value]
            self._index = index
            self._more = more
        return index

    def _lines(self, key: str) -> list[str]:
        """Every line's value of header ``key``: a new list the caller may keep."""
        index = self._index
        if index is None:
            index = self._idx()
        value = index.get(key)
        if value is None:
            return []
        more = self._more
        if more is not None:
            lines = more.get(key)
            if lines is not None:
                return list(lines)
        return [value]

    def header(self, name: str) -> str | None:
        """The first field value of header ``name`` (any spelling, compact forms too), or None."""
        index = self._index
        if index is None:
            index = self._idx()
        return index.get(_NAME_KEYS.get(name) or header_key(name))

    def header_lines(self, name: str) -> list[str]:
        """Every field value of header ``name``, one per header line, unsplit."""
        return self._lines(header_key(name))

    def header_values(self, name: str) -> list[str]:
        """Every value of header ``name``: list headers are split at top-level commas."""
        return list(self._split_values(header_key(name)))

    def _split_values(self, key: str) -> list[str]:
        """The values of header ``key``, split at commas once and cached; do not modify the list.

        Via is never cached: the driver rewrites the top Via in place (received, rport).
        """
        values = self._values
        if values is not None:
            cached = values.get(key)
            if cached is not None:
                return cached
        lines = self._lines(key)
        if not lines:
            return lines
        if key not in LIST_HEADERS:
            return lines
        if len(lines) == 1:
            out = split_commas(lines[0])
        else:
            out = []
            for line in lines:
                out.extend(split_commas(line))
        if key != "via":
            if values is None:
                values = self._values = {}
            values[key] = out
        return out

    def has_header(self, name: str) -> bool:
        """True if header ``name`` is present."""
        return header_key(name) in self._idx()

    def tokens(self, name: str) -> list[str]:
        """Option tags and similar token lists (Require, Supported, Allow), lower-cased."""
        key = header_key(name)
        if key not in self._idx():
            return []
        return [v.lower() for v in self._split_values(key)]

    # -- parsed header values ----------------------------------------------------------------

    def _single(self, key: str) -> str:
        index = self._index
        if index is None:
            index = self._idx()
        value = index.get(key)
        if value is None:
            raise SipError(400, f"Missing {display_name(key)} header")
        more = self._more
        if more is not None and key in more:
            raise SipError(400, f"Multiple {display_name(key)} headers")
        return value

    @property
    def call_id(self) -> str:
        """The Call-ID (SipError 400 when missing, repeated or empty)."""
        value = self._call_id
        if value is None:
            value = self._single("call-id")
            if not value or " " in value or "\t" in value:
                raise SipError(400, "Bad Call-ID")
            self._call_id = value
        return value

    @property
    def cseq(self) -> CSeq:
        """The parsed CSeq."""
        value = self._cseq
        if value is None:
            value = self._cseq = parse_cseq(self._single("cseq"))
        return value

    @property
    def from_(self) -> NameAddr:
        """The parsed From."""
        value = self._from
        if value is None:
            value = self._from = parse_name_addr(self._single("from"))
        return value

    @property
    def to(self) -> NameAddr:
        """The parsed To."""
        value = self._to
        if value is None:
            value = self._to = parse_name_addr(self._single("to"))
        return value

    @property
    def from_tag(self) -> str | None:
        """The From tag."""
        return self.from_.tag

    @property
    def to_tag(self) -> str | None:
        """The To tag."""
        return self.to.tag

    @property
    def top_via(self) -> Via:
        """The first Via value (parsed alone: the others stay text)."""
        value = self._top_via
        if value is None:
            index = self._index
            if index is None:
                index = self._idx()
            first = index.get("via")
            if first is None:
                raise SipError(400, "Missing Via header")
            if "," in first:
                parts = split_commas(first)
                if not parts:
                    raise SipError(400, "Empty Via header")
                first = parts[0]
            value = self._top_via = parse_via(first)
        return value

    @property
    def vias(self) -> list[Via]:
        """Every Via value, parsed."""
        return [parse_via(v) for v in self.header_values("via")]

    def name_addrs(self, name: str) -> list[NameAddr]:
        """Every value of a name-addr list header (Contact, Route, Record-Route, Path)."""
        key = header_key(name)
        if key not in self._idx():
            return []
        return [parse_name_addr(v) for v in self._split_values(key)]

    @property
    def contact_star(self) -> bool:
        """True for ``Contact: *`` (the unregister-all form of RFC 3261 §10.2.2)."""
        values = self._split_values("contact")
        return len(values) == 1 and values[0] == "*"

    @property
    def contacts(self) -> list[NameAddr]:
        """The Contact values, parsed (a ``*`` is refused here; check ``contact_star`` first)."""
        parsed = self._contacts
        if parsed is None:
            values = self._split_values("contact")
            if "*" in values:
                raise SipError(400, "Contact * mixed with other contacts")
            parsed = self._contacts = [parse_name_addr(v) for v in values]
        return list(parsed)

    def int_header(self, name: str, *, limit: int = 2**32 - 1) -> int | None:
        """A header holding one non-negative integer (Expires, Max-Forwards, Min-Expires)."""
        return self._int(header_key(name), limit)

    def _int(self, key: str, limit: int) -> int | None:
        index = self._index
        if index is None:
            index = self._idx()
        text = index.get(key)
        if text is None:
            return None
        more = self._more
        if more is not None and key in more:
            raise SipError(400, f"Multiple {display_name(key)} headers")
        text = text.strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 10:
            raise SipError(400, f"Bad {display_name(key)} header")
        value = int(text)
        if value > limit:
            raise SipError(400, f"{display_name(key)} out of range")
        return value

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards (0..255), or None when absent."""
        return self._int("max-forwards", 255)

    @property
    def expires(self) -> int | None:
        """The Expires header as seconds, or None when absent."""
        return self._int("expires", 2**32 - 1)

    @property
    def content_type(self) -> str | None:
        """The media type of the body, lower-case, without parameters."""
        value = self._content_type
        if value is _UNSET:
            text = self._idx().get("content-type")
            value = self._content_type = text.split(";", 1)[0].strip().lower() if text else None
        return value

    # -- serialization -----------------------------------------------------------------------

    def start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """The wire form: CRLF line ends, Content-Length computed from the body."""
        body = self.body
        lines = [self.start_line()]
        lines += [
            f"{display_name(key) if len(name) == 1 else name}: {value}"
            for key, name, value in self.fields
            if key != "content-length"
        ]
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + body

    def __bytes__(self) -> bytes:
        return self.to_bytes()


class Request(Message):
    """A SIP request."""

    def __init__(self, method: str, uri: Uri | str, fields: list[Field], body: bytes = b"") -> None:
        super().__init__(fields, body)
        self.method = method
        if isinstance(uri, Uri):
            self._uri: Uri | None = uri
            self.uri_text = str(uri)
        else:
            self._uri = None
            self.uri_text = uri

    @classmethod
    def build(
        cls, method: str, uri: Uri | str, headers: Iterable[tuple[str, str]], body: bytes = b""
    ) -> Request:
        """A request from (name, value) header pairs, in order."""
        return cls(method, uri, [(_NAME_KEYS.get(n) or header_key(n), n, v) for n, v in headers], body)

    @property
    def uri(self) -> Uri:
        """The Request-URI, parsed (SipError 400 when malformed)."""
        value = self._uri
        if value is None:
            value = self._uri = parse_uri(self.uri_text)
        return value

    def forget_parsed(self) -> None:
        super().forget_parsed()
        self._uri = None

    @property
    def branch(self) -> str | None:
        """The top Via branch."""
        return self.top_via.branch

    def start_line(self) -> str:
        return f"{self.method} {self.uri_text} SIP/2.0"

    def validate(self) -> None:
        """Parse what routing needs from every request; raise SipError(400) if anything is off.

        Checks the Request-URI (which must not carry ``?headers``), top Via, From, To, Call-ID, CSeq (its method must match the
        request's), Max-Forwards, singleton headers that appear twice, and Contact values.
        """
        index = self._idx()
        more = self._more
        if more is not None:
            for key in _SINGLE_HEADERS:
                if key in more:
                    raise SipError(400, f"Multiple {display_name(key)} headers")
        if self.uri.headers:
            # Headers are "not allowed" in a Request-URI (RFC 3261 §19.1.1); RFC 4475 §3.1.2.11
            # lets a server refuse them rather than forward a request it would have to rewrite.
            raise SipError(400, "Headers in Request-URI")
        _ = self.top_via
        _ = self.from_
        _ = self.to
        _ = self.call_id
        if self.cseq.method != self.method:
            raise SipError(400, "CSeq method does not match the request method")
        if "max-forwards" in index:
            self._int("max-forwards", 255)
        if "expires" in index:
            self._int("expires", 2**32 - 1)
        if "contact" in index and not self.contact_star:
            _ = self.contacts
        first = index["via"]
        if (more is not None and "via" in more) or "," in first or '"' in first or "<" in first:
            for value in self._split_values("via")[1:]:
                parse_via(value)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri_text}>"


class Response(Message):
    """A SIP response."""

    def __init__(self, status: int, reason: str, fields: list[Field], body: bytes = b"") -> None:
        super().__init__(fields, body)
        self.status = status
        self.reason = reason

    @classmethod
    def build(
        cls, status: int, reason: str | None, headers: Iterable[tuple[str, str]], body: bytes = b""
    ) -> Response:
        """A response from (name, value) header pairs, in order."""
        fields = [(_NAME_KEYS.get(n) or header_key(n), n, v) for n, v in headers]
        return cls(status, reason or reason_phrase(status), fields, body)

    def start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"

    def validate(self) -> None:
        """Parse what transaction matching needs from a response.

        A response is never answered, so every error raised here carries ``drop``: a malformed
        response is discarded (RFC 4475 §3.1.2.5, RFC 3261 §18.1.2).
        """
        try:
            _ = self.top_via
            _ = self.call_id
            _ = self.cseq
            _ = self.from_
            _ = self.to
        except SipError as exc:
            if exc.drop:
                raise
            raise SipError(exc.status, exc.reason, drop=True) from exc

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


# -- parsing -------------------------------------------------------------------------------------


def _split_fields(
    text: str, want_fields: bool
) -> tuple[list[Field], dict[str, str], dict[str, list[str]] | None]:
    """The header fields of a message head (only if ``want_fields``; else an empty list), the
    first value of each key, and every value of the keys that occur more than once (None when no
    key does)."""
    if "\r\n " in text or "\r\n\t" in text:
        text = _FOLD_RE.sub(" ", text)
    lines = text.split("\r\n")
    if len(lines) > MAX_HEADER_FIELDS + 1:
        raise SipError(400, "Too many header fields")
    fields: list[Field] = []
    index: dict[str, str] = {}
    more: dict[str, list[str]] | None = None
    append = fields.append
    known = _KNOWN_KEYS
    compact = COMPACT
    name_keys = _NAME_KEYS
    del lines[0]
    for line in lines:
        name, colon, value = line.partition(":")
        key = name_keys.get(name)
        if key is None or not colon:
            if not colon:
                if not line:
                    continue
                raise SipError(400, "Header line without a colon")
            name = name.rstrip(" \t")
            key = name.lower()
            if key not in known:
                key = compact.get(key, key)
                if key not in known and (not key or not TOKEN_CHARS.issuperset(key)):
                    raise SipError(400, "Bad header name")
        value = value.strip(" \t")
        if want_fields:
            append((key, name, value))
        if key not in index:
            index[key] = value
        elif more is None:
            more = {key: [index[key], value]}
        elif key in more:
            more[key].append(value)
        else:
            more[key] = [index[key], value]
    return fields, index, more


def _content_length(index: dict[str, str], more: dict[str, list[str]] | None) -> int | None:
    value = index.get("content-length")
    if value is None:
        return None
    if more is not None and "content-length" in more:
        raise SipError(400, "Multiple Content-Length headers")
    if not (value.isascii() and value.isdigit()) or len(value) > 9:
        raise SipError(400, "Bad Content-Length")
    return int(value)


def parse_message(data: bytes, *, datagram: bool = True) -> Request | Response:
    """Parse one whole message.

    For a datagram the body is what Content-Length says (bytes past it are ignored, RFC 3261
    §18.3; fewer bytes than it says is a 400) or, without Content-Length, the rest of the
    datagram. For a stream, ``data`` is one message as ``StreamFramer`` cut it out.
    """
    if len(data) > MAX_MESSAGE_SIZE:
        raise SipError(513, "Message Too Large")
    sep = data.find(b"\r\n\r\n")
    if sep < 0:
        head_bytes = data[:-2] if data.endswith(b"\r\n") else data
        body_start = len(data)
    else:
        head_bytes = data[:sep]
        body_start = sep + 4
    head = head_bytes.decode("utf-8", "surrogateescape")
    first_end = head.find("\r\n")
    first = head if first_end < 0 else head[:first_end]
    _, index, more = _split_fields(head, False)
    length = _content_length(index, more)
    available = len(data) - body_start
    if length is None:
        length = available if datagram else 0
    elif length > available:
        if first.startswith("SIP/") or first[:4].upper() == "SIP/":
            raise SipError(400, "Body shorter than Content-Length")
        # A datagram cut short of its Content-Length: its header fields say where the 400 goes
        # (RFC 4475 §3.1.2.2, "clerr").
        raise ParseError(400, "Body shorter than Content-Length", _fields_of(head), is_request=True)
    body = data[body_start : body_start + length]

    message: Request | Response
    if first.startswith("SIP/") or first[:4].upper() == "SIP/":
        message = _parse_response(first, head, body)
    else:
        message = _parse_request(first, head, body)
    message._fields = None
    message._head = head
    message._index = index
    message._more = more
    return message


def _parse_response(first: str, head: str, body: bytes) -> Response:
    parts = first.split(" ", 2)
    if len(parts) < 2:
        raise SipError(400, "Bad status line", drop=True)
    version, code = parts[0], parts[1]
    reason = parts[2] if len(parts) == 3 else ""
    if version.upper() != "SIP/2.0":
        raise SipError(505, "Version Not Supported", drop=True)
    if len(code) != 3 or not (code.isascii() and code.isdigit()):
        raise SipError(400, "Bad status code", drop=True)
    status = int(code)
    if status < 100 or status > 699:
        raise SipError(400, "Status code out of range", drop=True)
    return Response(status, reason, _NO_FIELDS, body)


def _parse_request(first: str, head: str, body: bytes) -> Request:
    parts = first.split(" ")
    if len(parts) != 3:
        raise ParseError(400, "Bad request line", _fields_of(head), is_request=True)
    method, uri_text, version = parts
    if not method or not TOKEN_CHARS.issuperset(method):
        raise ParseError(400, "Bad method", _fields_of(head), is_request=True)
    if version.upper() != "SIP/2.0":
        if _VERSION_RE.match(version):
            raise ParseError(505, "Version Not Supported", _fields_of(head), is_request=True)
        raise ParseError(400, "Bad SIP version", _fields_of(head), is_request=True)
    if not uri_text or ":" not in uri_text:
        raise ParseError(400, "Bad Request-URI", _fields_of(head), is_request=True)
    return Request(method, uri_text, _NO_FIELDS, body)


def _fields_of(head: str) -> list[Field]:
    """The header fields of a head that ``_split_fields`` has already accepted."""
    return _split_fields(head, True)[0]


class StreamFramer:
    """Cuts a TCP/TLS byte stream into messages by Content-Length (RFC 3261 §18.3).

    ``feed`` returns the complete messages (as bytes) now available. CRLFs between messages are
    keep-alives (RFC 5626 §4.4.1): every double CRLF adds one to ``pings`` (each asks for a
    single CRLF pong), even when its halves arrive in different reads, and is skipped. Broken
    framing (a missing or bad Content-Length, which a stream transport must carry per RFC 3261
    §20.14; a message over the size limit) raises SipError; the connection must then be closed,
    since the stream can no longer be trusted to be in step.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._crlfs = 0  # a lone CRLF seen at a message boundary, waiting for its pair
        self.pings = 0

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        out: list[bytes] = []
        while buf:
            start = 0
            while buf[start : start + 2] == b"\r\n":
                start += 2
            if start:
                crlfs = self._crlfs + start // 2
                self.pings += crlfs // 2
                self._crlfs = crlfs % 2
                del buf[:start]
                continue
            if len(buf) == 1 and buf[0:1] == b"\r":
                break
            self._crlfs = 0
            sep = buf.find(b"\r\n\r\n")
            if sep < 0:
                if len(buf) > MAX_MESSAGE_SIZE:
                    raise SipError(513, "Message Too Large")
                break
            head = bytes(buf[: sep + 2])
            lengths = _CL_RE.findall(b"\r\n" + head)
            if len(lengths) > 1:
                raise SipError(400, "Multiple Content-Length headers")
            if not lengths:
                raise SipError(400, "Missing Content-Length")
            text = lengths[0].strip()
            if not text.isdigit() or len(text) > 9:
                raise SipError(400, "Bad Content-Length")
            length = int(text)
            total = sep + 4 + length
            if total > MAX_MESSAGE_SIZE:
                raise SipError(513, "Message Too Large")
            if len(buf) < total:
                break
            out.append(bytes(buf[:total]))
            del buf[:total]
        return out

    @property
    def pending(self) -> int:
        """Bytes held of a message not yet complete."""
        return len(self._buf)


# -- building responses --------------------------------------------------------------------------


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """A response to ``request`` (RFC 3261 §8.2.6): Via, From, Call-ID and CSeq copied, To copied
    with ``to_tag`` added when the request's To has none (never on 100 Trying)."""
    index = request._idx()
    tag_to = bool(to_tag) and status != 100 and "to" in index and request.to.tag is None
    fields: list[Field]
    if request._more is None:
        # Every header on one line (the usual case): one lookup per copied header.
        fields = []
        append = fields.append
        value = index.get("via")
        if value is not None:
            append(("via", "Via", value))
        value = index.get("from")
        if value is not None:
            append(("from", "From", value))
        value = index.get("to")
        if value is not None:
            append(("to", "To", f"{value};tag={to_tag}" if tag_to else value))
        value = index.get("call-id")
        if value is not None:
            append(("call-id", "Call-ID", value))
        value = index.get("cseq")
        if value is not None:
            append(("cseq", "CSeq", value))
        if status == 100:
            value = index.get("timestamp")
            if value is not None:
                append(("timestamp", "Timestamp", value))
    else:
        lines = request._lines
        fields = [("via", "Via", value) for value in lines("via")]
        append = fields.append
        for value in lines("from"):
            append(("from", "From", value))
        for value in lines("to"):
            append(("to", "To", f"{value};tag={to_tag}" if tag_to else value))
        for value in lines("call-id"):
            append(("call-id", "Call-ID", value))
        for value in lines("cseq"):
            append(("cseq", "CSeq", value))
        if status == 100:
            for value in lines("timestamp"):
                append(("timestamp", "Timestamp", value))
    for name, value in headers:
        append((_NAME_KEYS.get(name) or header_key(name), name, value))
    return Response(status, reason or reason_phrase(status), fields, body)


def local_tag(request: Request) -> str:
    """A To tag for a response to a request outside any dialog, the same for its retransmissions."""
    return format(abs(hash((request.call_id, request.from_tag, request.cseq.seq))) & 0xFFFFFFFF, "08x")


def error_response_fields(fields: list[Field]) -> list[Field]:
    """The fields a stateless error response copies from a request that did not fully parse."""
    keep = ("via", "from", "to", "call-id", "cseq")
    return [(k, display_name(k), v) for k, _, v in fields if k in keep]
