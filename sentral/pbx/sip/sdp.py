"""SDP (RFC 8866) bodies and the offer/answer rules around them (RFC 3264, RFC 6337).

Theory of operation: a B2BUA passes SDP from one leg to the other and changes little of it: the
origin line, the connection address and ports when a media relay sits in the path, and the
direction when it puts a call on hold. Everything else (codecs, ICE, crypto, attributes nobody
here knows) must cross unchanged and in order. So a ``SessionDescription`` keeps every line as a
``(type, value)`` pair, session-level lines first and then one ``MediaSection`` per m= line; only
the m= line is held as fields. The other lines are parsed when asked for (``origin``,
``connection``, ``direction``) and rewritten by the ``with_*`` methods, which return new values.

``parse_sdp`` raises SipError 400 for text that is not SDP, and 488 for SDP that parses but
cannot be used (no connection address for a live stream, a network type other than IN). It
never raises anything else.

``OriginRewriter`` gives each leg its own o= line, so that one phone never sees the other's
session identifiers, and bumps the version exactly when the SDP sent on that leg changes
(RFC 3264 §8). ``OfferAnswer`` tracks, per leg, whether an offer is outstanding and in which
direction, tells whether a body is an offer or an answer, and refuses a second offer with the
response RFC 3261 §14 and RFC 3311 §5.2 prescribe (``Refusal``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import assert_never

from sentral.pbx.sip.errors import SipError
from sentral.pbx.sip.message import Message, Request, Response

Line = tuple[str, str]  # (type letter, value) of one "x=value" line

_TOKEN_RE = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+\Z")
_DIGITS_RE = re.compile(r"[0-9]+\Z")
_PORT_RE = re.compile(r"([0-9]{1,5})(?:/([0-9]{1,5}))?\Z")
_MAX_SDP = 65_535


class Direction(Enum):
    """The media direction attributes of RFC 3264 §5.1 (RFC 8866 §6.7)."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    def reversed(self) -> Direction:
        """The direction an answer gives to an offer of this one (RFC 3264 §6.1)."""
        match self:
            case Direction.SENDONLY:
                return Direction.RECVONLY
            case Direction.RECVONLY:
                return Direction.SENDONLY
            case Direction.SENDRECV | Direction.INACTIVE:
                return self
            case _:
                assert_never(self)


_DIRECTIONS = frozenset(d.value for d in Direction)


# Values made for every call spell out their __init__: compiled, the one @dataclass generates would
# run interpreted, and a frozen class could not assign in its own. Nothing changes one once made.
@dataclass(slots=True, init=False, unsafe_hash=True)
class Origin:
    """The o= line: ``username sess-id sess-version nettype addrtype unicast-address``."""

    username: str
    session_id: str
    version: int
    nettype: str
    addrtype: str
    address: str

    def __init__(
        self, username: str, session_id: str, version: int, nettype: str, addrtype: str, address: str
    ) -> None:
        self.username = username
        self.session_id = session_id
        self.version = version
        self.nettype = nettype
        self.addrtype = addrtype
        self.address = address

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.version} {self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(slots=True, init=False, unsafe_hash=True)
class Connection:
    """A c= line: ``nettype addrtype address[/ttl][/count]`` (the suffix kept as written)."""

    nettype: str
    addrtype: str
    address: str
    suffix: str = ""

    def __init__(self, nettype: str, addrtype: str, address: str, suffix: str = "") -> None:
        self.nettype = nettype
        self.addrtype = addrtype
        self.address = address
        self.suffix = suffix

    @property
    def is_null(self) -> bool:
        """True for the RFC 2543 hold address 0.0.0.0 (RFC 3264 §8.4 still honours it)."""
        return self.address == "0.0.0.0"

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}{self.suffix}"


def _parse_origin(value: str) -> Origin:
    parts = value.split(" ")
    if len(parts) != 6 or not all(parts):
        raise SipError(400, "Bad SDP origin")
    username, session_id, version, nettype, addrtype, address = parts
    # ASCII digits only: str.isdigit() also admits "²", which int() refuses. The session id is
    # not checked further: it is only ever replaced, and some phones write it oddly.
    if _DIGITS_RE.match(version) is None or len(version) > 20:
        raise SipError(400, "Bad SDP origin")
    return Origin(username, session_id, int(version), nettype, addrtype, address)


def _parse_connection(value: str) -> Connection:
    parts = value.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SipError(400, "Bad SDP connection")
    nettype, addrtype, rest = parts
    address, slash, suffix = rest.partition("/")
    if not address:
        raise SipError(400, "Bad SDP connection")
    return Connection(nettype, addrtype, address, slash + suffix)


def _attribute(value: str) -> tuple[str, str | None]:
    name, colon, rest = value.partition(":")
    return name, (rest if colon else None)


def _direction_of(lines: Iterable[Line]) -> Direction | None:
    found = None
    for kind, value in lines:
        if kind == "a" and value in _DIRECTIONS:
            found = Direction(value)
    return found


def _addrtype(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


@dataclass(slots=True, init=False, unsafe_hash=True)
class MediaSection:
    """One m= section: the m= fields and the lines that follow it, in order."""

    media: str
    port: int
    port_count: int | None
    proto: str
    formats: tuple[str, ...]
    lines: tuple[Line, ...] = ()

    def __init__(
        self,
        media: str,
        port: int,
        port_count: int | None,
        proto: str,
        formats: tuple[str, ...],
        lines: tuple[Line, ...] = (),
    ) -> None:
        self.media = media
        self.port = port
        self.port_count = port_count
        self.proto = proto
        self.formats = formats
        self.lines = lines

    @property
    def m_line(self) -> str:
        """The m= value as it goes on the wire."""
        port = f"{self.port}/{self.port_count}" if self.port_count is not None else str(self.port)
        return " ".join((self.media, port, self.proto, *self.formats))

    @property
    def rejected(self) -> bool:
        """Port 0: a stream refused or disabled (RFC 3264 §6, §8.2)."""
        return self.port == 0

    @property
    def connection(self) -> Connection | None:
        """This section's own c=, if it has one."""
        for kind, value in self.lines:
            if kind == "c":
                return _parse_connection(value)
        return None

    @property
    def direction(self) -> Direction | None:
        """This section's own direction attribute, if it has one."""
        return _direction_of(self.lines)

    def attributes(self, name: str) -> list[str | None]:
        """The values of every a=``name`` line (None for a flag attribute)."""
        out: list[str | None] = []
        for kind, value in self.lines:
            if kind == "a":
                key, val = _attribute(value)
                if key == name:
                    out.append(val)
        return out

    def attribute(self, name: str) -> str | None:
        """The value of the first a=``name`` line (None if absent or a flag)."""
        values = self.attributes(name)
        return values[0] if values else None

    def has_attribute(self, name: str) -> bool:
        """True if an a=``name`` line is present."""
        return bool(self.attributes(name))

    def with_direction(self, direction: Direction) -> MediaSection:
        """A copy with ``direction`` as its only direction attribute, where the old one was."""
        return replace(self, lines=_set_direction(self.lines, direction, append=True))


def _set_direction(lines: tuple[Line, ...], direction: Direction | None, *, append: bool) -> tuple[Line, ...]:
    out: list[Line] = []
    placed = direction is None
    for kind, value in lines:
        if kind == "a" and value in _DIRECTIONS:
            if not placed:
                assert direction is not None
                out.append(("a", direction.value))
                placed = True
            continue
        out.append((kind, value))
    if not placed and append:
        assert direction is not None
        out.append(("a", direction.value))
    return tuple(out)


@dataclass(slots=True, init=False, unsafe_hash=True)
class SessionDescription:
    """A parsed SDP body: the session-level lines (v= first) and the media sections."""

    lines: tuple[Line, ...]
    media: tuple[MediaSection, ...] = ()

    def __init__(self, lines: tuple[Line, ...], media: tuple[MediaSection, ...] = ()) -> None:
        self.lines = lines
        self.media = media

    @classmethod
    def parse(cls, data: bytes) -> SessionDescription:
        """Parse an SDP body (see ``parse_sdp``)."""
        return parse_sdp(data)

    # -- reading -----------------------------------------------------------------------------

    @property
    def origin(self) -> Origin:
        """The o= line."""
        for kind, value in self.lines:
            if kind == "o":
                return _parse_origin(value)
        raise SipError(400, "SDP without origin")

    @property
    def connection(self) -> Connection | None:
        """The session-level c=, if any."""
        for kind, value in self.lines:
            if kind == "c":
                return _parse_connection(value)
        return None

    @property
    def direction(self) -> Direction:
        """The session-level direction: the default for media without their own (sendrecv)."""
        return _direction_of(self.lines) or Direction.SENDRECV

    def media_direction(self, media: MediaSection) -> Direction:
        """The direction in force for ``media``: its own, else the session's."""
        return media.direction or self.direction

    def media_connection(self, media: MediaSection) -> Connection | None:
        """The connection in force for ``media``: its own c=, else the session's."""
        return media.connection or self.connection

    def media_on_hold(self, media: MediaSection) -> bool:
        """True if ``media`` is held: sendonly or inactive, or the RFC 2543 c=0.0.0.0.

        With ICE the c= address means nothing (browsers write 0.0.0.0 and let the candidates
        speak, RFC 8839 §4.2.1), so 0.0.0.0 is a hold only when there is no ICE.
        """
        if self.media_direction(media) in (Direction.SENDONLY, Direction.INACTIVE):
            return True
        connection = self.media_connection(media)
        if connection is None or not connection.is_null:
            return False
        return not (media.has_attribute("ice-ufrag") or self.has_attribute("ice-ufrag"))

    def has_attribute(self, name: str) -> bool:
        """True if a session-level a=``name`` line is present."""
        return any(kind == "a" and _attribute(value)[0] == name for kind, value in self.lines)

    def is_hold(self) -> bool:
        """True if every live stream is held (RFC 3264 §8.4). A rejected stream does not count;
        one inactive video beside sendrecv audio is not a hold."""
        live = [m for m in self.media if not m.rejected]
        return bool(live) and all(self.media_on_hold(m) for m in live)

    # -- rewriting ---------------------------------------------------------------------------

    def with_origin(self, origin: Origin) -> SessionDescription:
        """A copy with ``origin`` as the o= line."""
        lines = tuple(("o", str(origin)) if kind == "o" else (kind, value) for kind, value in self.lines)
        # Built directly: dataclasses.replace is interpreted and this runs for every SDP relayed.
        return SessionDescription(lines, self.media)

    def with_direction(self, direction: Direction, *, index: int | None = None) -> SessionDescription:
        """A copy where every live stream (or only stream ``index``) has ``direction``.

        When all streams are set, a session-level direction is removed: it would only be a
        default that no stream uses any more.
        """
        if index is not None:
            media = list(self.media)
            media[index] = media[index].with_direction(direction)
            return replace(self, media=tuple(media))
        return SessionDescription(
            _set_direction(self.lines, None, append=False),
            tuple(m if m.rejected else m.with_direction(direction) for m in self.media),
        )

    def with_connection(self, address: str, port_for_media: Sequence[int]) -> SessionDescription:
        """A copy whose media flow through ``address``: what a media relay puts in the SDP.

        Every c= line gets ``address``; stream *i* gets port ``port_for_media[i]`` (a rejected
        stream keeps port 0). An a=rtcp line (RFC 3605) is pointed at the relay too: the RTP
        port itself under rtcp-mux (RFC 5761), else one above it as RFC 3550 §11 pairs them.
        """
        if len(port_for_media) != len(self.media):
            raise ValueError("one port per media section")
        conn = f"IN {_addrtype(address)} {address}"
        lines = tuple(("c", conn) if kind == "c" else (kind, value) for kind, value in self.lines)
        media: list[MediaSection] = []
        for section, port in zip(self.media, port_for_media, strict=True):
            if section.rejected:
                media.append(section)
                continue
            rtcp = port if section.has_attribute("rtcp-mux") else port + 1
            mlines: list[Line] = []
            for kind, value in section.lines:
                if kind == "c":
                    mlines.append(("c", conn))
                elif kind == "a" and value.startswith("rtcp:"):
                    mlines.append(("a", f"rtcp:{rtcp} {conn}"))
                else:
                    mlines.append((kind, value))
            # Built directly: dataclasses.replace is interpreted, and this runs for every stream relayed.
            media.append(
                MediaSection(
                    section.media, port, section.port_count, section.proto, section.formats, tuple(mlines)
                )
            )
        return SessionDescription(lines, tuple(media))

    # -- serialization -----------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The wire form: CRLF after every line (RFC 8866 §5)."""
        out = [f"{kind}={value}" for kind, value in self.lines]
        for section in self.media:
            out.append(f"m={section.m_line}")
            out.extend(f"{kind}={value}" for kind, value in section.lines)
        return ("\r\n".join(out) + "\r\n").encode("utf-8", "surrogateescape")

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    def without_origin(self) -> tuple[tuple[Line, ...], tuple[MediaSection, ...]]:
        """Everything but the o= line: what decides whether a session description changed."""
        return tuple(line for line in self.lines if line[0] != "o"), self.media


def _parse_media(value: str) -> tuple[str, int, int | None, str, tuple[str, ...]]:
    """The fields of an m= value: media, port, port count, proto, formats."""
    parts = value.split(" ")
    if len(parts) < 3 or not all(parts):
        raise SipError(400, "Bad SDP media line")
    media, port_text, proto, *formats = parts
    m = _PORT_RE.match(port_text)
    if m is None or not _TOKEN_RE.match(media):
        raise SipError(400, "Bad SDP media line")
    port = int(m.group(1))
    count = int(m.group(2)) if m.group(2) is not None else None
    if port > 65535 or (count is not None and count == 0):
        raise SipError(400, "Bad SDP media port")
    return media, port, count, proto, tuple(formats)


# The body parsed last and its result. A B2BUA parses a body when it arrives (to refuse what it
# cannot use) and again when it passes it on; the result is immutable, so the second is free.
_last_parsed: tuple[bytes, SessionDescription] | None = None


def parse_sdp(data: bytes) -> SessionDescription:
    """Parse an SDP body, keeping every line and its order.

    Lines may end in CRLF or a bare LF (RFC 8866 §5 asks parsers to accept both); blank lines
    are skipped. SipError 400 for what is not SDP, 488 for SDP that cannot carry a call here.
    """
    global _last_parsed
    last = _last_parsed
    if last is not None and last[0] == data:
        return last[1]
    sdp = _parse_sdp(data)
    _last_parsed = (data, sdp)
    return sdp


def _parse_sdp(data: bytes) -> SessionDescription:
    if len(data) > _MAX_SDP:
        raise SipError(400, "SDP too large")
    text = data.decode("utf-8", "surrogateescape")
    session: list[Line] = []
    media: list[MediaSection] = []
    # The m= fields of the section being read and its lines; built into a MediaSection at its end.
    fields: tuple[str, int, int | None, str, tuple[str, ...]] | None = None
    current: list[Line] = []
    for raw in text.split("\n"):
        line = raw[:-1] if raw.endswith("\r") else raw
        if not line:
            continue
        if len(line) < 2 or line[1] != "=" or not ("a" <= line[0] <= "z"):
            raise SipError(400, "Bad SDP line")
        kind, value = line[0], line[2:]
        if "\r" in value or "\0" in value:
            raise SipError(400, "Bad SDP line")
        if not session and (kind != "v" or value != "0"):
            raise SipError(400, "SDP must start with v=0")
        if kind == "m":
            if fields is not None:
                media.append(MediaSection(*fields, lines=tuple(current)))
                current = []
            fields = _parse_media(value)
        elif fields is not None:
            current.append((kind, value))
        else:
            session.append((kind, value))
    if fields is not None:
        media.append(MediaSection(*fields, lines=tuple(current)))
    if not session:
        raise SipError(400, "Empty SDP")
    sdp = SessionDescription(tuple(session), tuple(media))
    _check(sdp)
    return sdp


def _check(sdp: SessionDescription) -> None:
    """Syntax of the lines a B2BUA reads (400), then whether the media can be reached (488)."""
    origins = [value for kind, value in sdp.lines if kind == "o"]
    if len(origins) != 1:
        raise SipError(400, "SDP needs exactly one origin")
    _parse_origin(origins[0])
    connections = [_parse_connection(v) for k, v in sdp.lines if k == "c"]
    if len(connections) > 1:
        raise SipError(400, "More than one session-level c= line")
    session_conn = connections[0] if connections else None
    for conn in connections:
        _usable(conn)
    for section in sdp.media:
        own = [_parse_connection(v) for k, v in section.lines if k == "c"]
        for conn in own:
            _usable(conn)
        if not section.rejected and not own and session_conn is None:
            raise SipError(488, "No connection address for a media stream")


def _usable(conn: Connection) -> None:
    if conn.nettype != "IN" or conn.addrtype not in ("IP4", "IP6"):
        raise SipError(488, "Unsupported SDP network or address type")


# -- origin per leg ------------------------------------------------------------------------------


class OriginRewriter:
    """Gives one leg its own o= line (RFC 3264 §8, RFC 8866 §5.2).

    The session id and address are this leg's; the username is "sentral". The version starts at
    ``version`` and goes up by one each time the SDP sent on this leg differs from the last one
    sent, o= aside: a re-offer of the same session keeps its version, as §8 requires, even when
    the other leg's phone bumped its own. What was sent last is kept as a 64-bit hash of its
    content, not the content: a leg lives as long as its call, and two different SDPs sharing a
    hash (one chance in 2**64) would only keep a version one short.
    """

    def __init__(self, session_id: int, address: str, *, username: str = "sentral", version: int = 0) -> None:
        self.session_id = session_id
        self.address = address
        self.username = username
        self._version = version
        self._last: int | None = None

    @property
    def version(self) -> int:
        """The version of the o= line last sent (or to be sent first)."""
        return self._version

    def rewrite(self, sdp: SessionDescription) -> SessionDescription:
        """``sdp`` with this leg's o= line, its version bumped if the content changed."""
        content = hash(sdp.without_origin())
        if self._last is not None and content != self._last:
            self._version += 1
        self._last = content
        origin = Origin(
            self.username, str(self.session_id), self._version, "IN", _addrtype(self.address), self.address
        )
        return sdp.with_origin(origin)


# -- offer/answer --------------------------------------------------------------------------------


class OfferState(Enum):
    """Where a leg's offer/answer exchange stands (RFC 3264 §4, RFC 6337 §2)."""

    STABLE = "no offer pending"
    LOCAL_OFFER = "local offer pending"
    REMOTE_OFFER = "remote offer pending"


class BodyRole(Enum):
    """What the SDP in a message is to the offer/answer model."""

    NONE = "none"  # no SDP, or SDP that is neither (a failure response's body, a repeated answer)
    OFFER = "offer"
    ANSWER = "answer"
    EARLY_ANSWER = "early answer"  # the answer shown early in an unreliable 1xx; the 2xx repeats it


@dataclass(frozen=True, slots=True)
class Refusal:
    """How to answer a request that would start a second offer/answer or INVITE exchange."""

    status: int
    reason: str
    retry_after: tuple[int, int] | None  # the range to pick Retry-After from, when one is required
    rule: str

    def error(self, retry_after: int | None = None) -> SipError:
        """The SipError to raise: with Retry-After when the rule asks for it."""
        headers: tuple[tuple[str, str], ...] = ()
        if self.retry_after is not None:
            low, high = self.retry_after
            value = retry_after if retry_after is not None else high
            headers = (("Retry-After", str(min(max(value, low), high))),)
        return SipError(self.status, self.reason, headers=headers)


# The peer sent an offer while ours is outstanding: glare. Both sides answer 491 and retry later.
REQUEST_PENDING = Refusal(
    491, "Request Pending", None, "RFC 3261 §14.2, RFC 3311 §5.2: our own offer or INVITE is in progress"
)
# The peer sent a second INVITE (or offer) while we still owe it an answer to its first.
OVERLAPPING_REQUEST = Refusal(
    500,
    "Server Internal Error",
    (0, 10),
    "RFC 3261 §14.2, RFC 3311 §5.2: we have not yet answered the peer's earlier INVITE or offer",
)


def glare_retry_window(*, owns_call_id: bool) -> tuple[float, float]:
    """After a 491, when to retry (RFC 3261 §14.1): the side that chose the Call-ID waits 2.1 to
    4 s, the other 0 to 2 s, so that the two do not collide again."""
    return (2.1, 4.0) if owns_call_id else (0.0, 2.0)


class OfferStateError(Exception):
    """We were about to send an offer or answer the model forbids (a caller's mistake)."""


def _has_sdp(msg: Message) -> bool:
    return bool(msg.body) and msg.content_type == "application/sdp"


def _reliable(response: Response) -> bool:
    """A reliable provisional response (RFC 3262): it carries RSeq and Require: 100rel."""
    return response.has_header("rseq") and "100rel" in response.tokens("require")


class OfferAnswer:
    """One leg's offer/answer state: what a body is, and whether a new offer may start.

    ``receive`` and ``send`` take every INVITE, UPDATE, PRACK, ACK and their responses on the
    leg, in the order they pass. Both return the ``BodyRole`` of the message's SDP. ``receive``
    raises the SipError the request deserves when it would collide (491, or 500 with
    Retry-After); ``refusal`` tells the same without changing anything.
    """

    def __init__(self) -> None:
        self.state = OfferState.STABLE
        # CSeq number and method of the transaction that carries the outstanding offer.
        self._offer_cseq: tuple[int, str] | None = None
        self._offer_in_response = False
        # An INVITE sent or received without SDP: its 2xx (or reliable 1xx) brings the offer.
        self._silent_invite: int | None = None
        # CSeq numbers of the INVITEs in progress each way, so that the final response to one
        # (and not a 491 refusing another) is what ends it.
        self._local_invite: int | None = None
        self._remote_invite: int | None = None

    @property
    def local_invite(self) -> bool:
        """True while an INVITE we sent on this leg has no final response."""
        return self._local_invite is not None

    @property
    def remote_invite(self) -> bool:
        """True while an INVITE we received on this leg has no final response from us."""
        return self._remote_invite is not None

    # -- collisions --------------------------------------------------------------------------

    def refusal(self, request: Request) -> Refusal | None:
        """The refusal an incoming ``request`` gets, or None if it may proceed."""
        method = request.method
        if method == "INVITE":
            if self.remote_invite or self.state is OfferState.REMOTE_OFFER:
                return OVERLAPPING_REQUEST
            if self.local_invite or self.state is OfferState.LOCAL_OFFER:
                return REQUEST_PENDING
            return None
        if method == "UPDATE" and _has_sdp(request):
            if self.state is OfferState.LOCAL_OFFER:
                return REQUEST_PENDING
            if self.state is OfferState.REMOTE_OFFER:
                return OVERLAPPING_REQUEST
        return None

    @property
    def can_offer(self) -> bool:
        """True if we may send an offer now."""
        return self.state is OfferState.STABLE

    # -- messages ----------------------------------------------------------------------------

    def receive(self, message: Request | Response, *, retry_after: int | None = None) -> BodyRole:
        """Account for a message received on this leg.

        ``retry_after`` is the Retry-After to send if the request gets a 500; RFC 3261 §14.2
        wants it chosen at random in 0..10 s, which the caller does (this module has no random
        source). Without it the top of the range is used.
        """
        if isinstance(message, Request):
            refusal = self.refusal(message)
            if refusal is not None:
                raise refusal.error(retry_after)
        return self._process(message, local=False)

    def send(self, message: Request | Response) -> BodyRole:
        """Account for a message we send on this leg (OfferStateError if it breaks the model)."""
        if isinstance(message, Request):
            if message.method == "INVITE" and (self.local_invite or self.remote_invite):
                raise OfferStateError("an INVITE is already in progress on this leg")
            if message.method in ("INVITE", "UPDATE") and _has_sdp(message) and not self.can_offer:
                raise OfferStateError(f"cannot offer while {self.state.value}")
        return self._process(message, local=True)

    def _start_offer(self, cseq: tuple[int, str], *, local: bool, in_response: bool) -> BodyRole:
        self.state = OfferState.LOCAL_OFFER if local else OfferState.REMOTE_OFFER
        self._offer_cseq = cseq
        self._offer_in_response = in_response
        return BodyRole.OFFER

    def _settle(self) -> BodyRole:
        self.state = OfferState.STABLE
        self._offer_cseq = None
        self._offer_in_response = False
        return BodyRole.ANSWER

    def _rollback(self) -> None:
        self.state = OfferState.STABLE
        self._offer_cseq = None
        self._offer_in_response = False

    def _answering_state(self, local: bool) -> OfferState:
        """The state in which the sender of a message (us when ``local``) owes the answer."""
        return OfferState.REMOTE_OFFER if local else OfferState.LOCAL_OFFER

    def _process(self, message: Request | Response, *, local: bool) -> BodyRole:
        sdp = _has_sdp(message)
        cseq = message.cseq
        if isinstance(message, Request):
            method = message.method
            if method == "INVITE":
                if local:
                    self._local_invite = cseq.seq
                else:
                    self._remote_invite = cseq.seq
                if sdp:
                    self._silent_invite = None
                    return self._start_offer((cseq.seq, method), local=local, in_response=False)
                self._silent_invite = cseq.seq
                return BodyRole.NONE
            if method == "UPDATE":
                if sdp:
                    return self._start_offer((cseq.seq, method), local=local, in_response=False)
                return BodyRole.NONE
            if method in ("ACK", "PRACK"):
                # The answer to an offer that came in a 2xx (ACK) or a reliable 1xx (PRACK).
                if sdp and self._offer_in_response and self.state is self._answering_state(local):
                    return self._settle()
                return BodyRole.NONE
            return BodyRole.NONE

        status = message.status
        method = cseq.method
        if method not in ("INVITE", "UPDATE", "PRACK"):
            return BodyRole.NONE
        if method == "INVITE" and status >= 200:
            # A final response ends the INVITE transaction on the side that sent the INVITE.
            if local and self._remote_invite == cseq.seq:
                self._remote_invite = None
            elif not local and self._local_invite == cseq.seq:
                self._local_invite = None
        reliable = status >= 200 or _reliable(message)
        # The responder answers an offer carried by the request (the requester's offer).
        requester_offered = self.state is self._answering_state(local) and not self._offer_in_response
        if requester_offered and self._offer_cseq == (cseq.seq, method):
            if status >= 300:
                self._rollback()  # RFC 6337 §3.3: a rejected offer leaves the old session
                return BodyRole.NONE
            if not sdp:
                if status >= 200:
                    self._rollback()  # a 2xx without the answer: nothing was agreed
                return BodyRole.NONE
            return self._settle() if reliable else BodyRole.EARLY_ANSWER
        if method == "INVITE" and self._silent_invite == cseq.seq:
            if status >= 300:
                self._silent_invite = None
                if self._offer_in_response:
                    self._rollback()
                return BodyRole.NONE
            if sdp and reliable and self.state is OfferState.STABLE:
                # The first reliable SDP in answer to an INVITE without SDP is the offer.
                self._silent_invite = None
                return self._start_offer((cseq.seq, method), local=local, in_response=True)
        return BodyRole.NONE
