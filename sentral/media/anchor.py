"""The media anchor: what call control calls so that every call's media flows through Sentral.

Theory of operation. Call control hands every SDP body that crosses the B2BUA to ``offer`` or
``answer``, with the leg it is about to be sent on and the leg it came from, all as plain
strings (this module does not know call control's types). Each leg owns one relay ``Endpoint``
per live m= line: the port that leg's phone is told to send to, and from which it hears the
other side. So for an SDP from leg S about to be sent on leg L, stream by stream:

- S's endpoint learns S's phone's media address from the SDP (c=, m= port, a=rtcp) and the
  telephone-event payload types it uses, and re-opens latching (a new SDP, RFC 3264 §8);
- L's endpoint gets a port if it has none, and the two endpoints are paired;
- the SDP is rewritten so that L's phone sends to L's endpoint: c= and m= ports (a=rtcp along
  with them), ICE attributes dropped (their candidates would lead around the relay), a=ssrc
  lines dropped (the relay sends music and prompts from sources of its own, which a phone that
  trusts the declared sources would refuse), and an o= line of L's own whose version goes up only
  when the content sent on L changes.

The address put in the SDP is ``advertise``, or, when the relay listens on a wildcard address and
no ``advertise`` is given, the address each exchange names: the one the phone on that leg
reaches Sentral at (call control knows it per leg).

Codecs. Sentral does not transcode, and plays music and prompts in G.711 only, so an offer it
passes on lists the G.711 formats first (the phones' other codecs stay, after them): the answerer
then picks PCMU or PCMA wherever it can, and a call put on hold hears the music rather than
packets its codec cannot decode. Music and prompts go out in the G.711 law of the leg's last
answer (the codecs both ends of that leg agreed on), else of the phone's own SDP.

Sentral may also be the other end itself: ``answer_locally`` answers a phone's offer with one
G.711 audio stream ending at the relay (a queue's music, a feature code's prompt), and
``offer_locally`` makes an offer for a phone that sent none, whose answer ``answer_received``
takes. Such a leg is paired with a phone's leg later, by the ordinary ``offer``/``answer``, with
the same port: the phone hears no gap.

Offer/answer stays intact (RFC 3264 §6, §8): the same m= lines in the same order; a stream
with port 0 stays 0 and has no relay port (any it had is closed); a stream that is not RTP (no
"RTP/" in its protocol) cannot be relayed and goes out with port 0, so it is declined cleanly.
An old-style hold (c=0.0.0.0, RFC 3264 §8.4) becomes a=sendonly (or a=inactive) once the
address is ours, so that the other phone still sees the hold.

Hold state is derived from offers: when every live stream of an offer from S is sendonly or
inactive, the leg it is sent to is held, until an offer that is not a hold. Music on hold and
prompts are played to a leg's phone from that leg's endpoint, in the G.711 law the phone listed
first in its own SDP, replacing the other side's audio in that one direction.

Digits that either phone sends as RFC 4733 events are reported to ``on_dtmf`` with the call and
the leg whose phone sent them. ``last_activity`` gives, on the monotonic clock, the last RTP
packet from any phone of a call (or when its media was set up): the owner decides what dead media
is. RTCP does not count: a phone keeps sending reports over a line nobody speaks on.

Running out of relay ports is a SipError 503 (the call cannot be anchored now); an SDP that
cannot be parsed raises the SipError its parser gives (400 or 488).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from sentral.media import g711
from sentral.media.dtmf import Digit
from sentral.media.latch import DEFAULT_POLICY, Address, LatchPolicy, PortPool, PortsExhausted
from sentral.media.player import Player
from sentral.media.relay import Endpoint, EndpointStats, Relay
from sentral.media.sounds import MUSIC, SoundLibrary
from sentral.media.wav import RATE
from sentral.pbx.sip import entropy
from sentral.pbx.sip.errors import SipError
from sentral.pbx.sip.sdp import (
    Direction,
    MediaSection,
    OriginRewriter,
    SessionDescription,
    parse_sdp,
)

log = structlog.get_logger("sentral.media")

DtmfCallback = Callable[[str, str, Digit], None]  # call key, leg key of the phone that sent it, digit

_G711_FORMATS = frozenset(("0", "8"))
_ADVERTISABLE_MEMO = 64
_EVENT_TYPE = 101  # the telephone-event payload type of Sentral's own offers, the usual one
# Lines that describe how to reach a phone directly (RFC 8839); once the relay is in the path
# they would only send the other phone's ICE agent around it.
# a=ssrc and a=ssrc-group (RFC 5576) declare the phone's own sources; the relay adds others.
_ICE_ATTRIBUTES = frozenset(
    (
        "candidate", "ice-ufrag", "ice-pwd", "ice-options", "ice-lite", "remote-candidates",
        "end-of-candidates", "ssrc", "ssrc-group",
    )
)  # fmt: skip


class MediaError(Exception):
    """A media request that cannot be carried out (unknown call or leg, no codec, no sound)."""


# Made for every call: their __init__ is spelled out so that, compiled, it is compiled too.
@dataclass(eq=False, slots=True, init=False)
class _Leg:
    key: str
    origin: OriginRewriter | None  # made with the first SDP sent on the leg
    streams: list[Endpoint | None]
    phone_sdp: SessionDescription | None  # the last SDP this leg's phone sent
    answer_sdp: SessionDescription | None  # the last answer on this leg, either way
    held: bool

    def __init__(
        self,
        key: str,
        origin: OriginRewriter | None = None,
        streams: list[Endpoint | None] | None = None,
        phone_sdp: SessionDescription | None = None,
        answer_sdp: SessionDescription | None = None,
        held: bool = False,
    ) -> None:
        self.key = key
        self.origin = origin
        self.streams = [] if streams is None else streams
        self.phone_sdp = phone_sdp
        self.answer_sdp = answer_sdp
        self.held = held


@dataclass(eq=False, slots=True, init=False)
class _Call:
    key: str
    created: float
    legs: dict[str, _Leg]

    def __init__(self, key: str, created: float, legs: dict[str, _Leg] | None = None) -> None:
        self.key = key
        self.created = created
        self.legs = {} if legs is None else legs


class MediaAnchor:
    """Anchors the media of every call at Sentral's relay ports; keyed by call and leg strings."""

    def __init__(
        self,
        address: str,
        pool: PortPool,
        *,
        advertise: str | None = None,
        relay: Relay | None = None,
        sounds: SoundLibrary | None = None,
        language: str = "nb",
        on_dtmf: DtmfCallback | None = None,
        policy: LatchPolicy = DEFAULT_POLICY,
    ) -> None:
        advertised = advertise or address
        try:
            unspecified = ipaddress.ip_address(advertised).is_unspecified
        except ValueError:
            raise ValueError(f"media address {advertised!r} is not an IP address") from None
        if unspecified and advertise is not None:
            # 0.0.0.0 in SDP means hold (RFC 3264 §8.4): phones must be told a real address.
            raise ValueError(f"media address {advertised} cannot be advertised in SDP; give a real address")
        self.address = address
        # None: a wildcard relay, whose address each exchange names for its own leg.
        self.advertise: str | None = None if unspecified else advertised
        self.relay = relay or Relay(address, pool, policy=policy)
        # Phones' addresses are checked against the relay's family for every stream: worked out once.
        self._family = _family(self.relay.address)
        self.sounds = sounds
        self.language = language
        self.on_dtmf = on_dtmf
        self._calls: dict[str, _Call] = {}
        self._encoded: dict[tuple[str, str | None, int], bytes] = {}
        self._advertisable: set[str] = set()  # addresses named by exchanges, found fit for SDP

    def __len__(self) -> int:
        return len(self._calls)

    # -- offer/answer ----------------------------------------------------------------------------

    def offer(
        self, call_key: str, leg_key: str, sdp: bytes, source_key: str, *, advertise: str | None = None
    ) -> bytes:
        """An offer from ``source_key``'s phone, about to be sent on ``leg_key``: the SDP to send.

        ``advertise`` is the address ``leg_key``'s phone reaches us at; needed, and used, only
        when the relay listens on a wildcard address.
        """
        return self._exchange(call_key, leg_key, sdp, source_key, advertise, is_offer=True)

    def answer(
        self, call_key: str, leg_key: str, sdp: bytes, source_key: str, *, advertise: str | None = None
    ) -> bytes:
        """An answer from ``source_key``'s phone, about to be sent on ``leg_key``: the SDP to send."""
        return self._exchange(call_key, leg_key, sdp, source_key, advertise, is_offer=False)

    def _exchange(
        self,
        call_key: str,
        leg_key: str,
        sdp: bytes,
        source_key: str,
        advertise: str | None,
        *,
        is_offer: bool,
    ) -> bytes:
        if leg_key == source_key:
            raise ValueError("an SDP is sent on a different leg than the one it came from")
        address = self._advertised(advertise)
        parsed = parse_sdp(sdp)
        call = self._call(call_key)
        source = self._leg(call, source_key)
        target = self._leg(call, leg_key)
        source.phone_sdp = parsed
        for leg in (source, target):
            if len(leg.streams) < len(parsed.media):
                leg.streams.extend([None] * (len(parsed.media) - len(leg.streams)))
        ports: list[int] = []
        media: list[MediaSection] = []
        try:
            for index, section in enumerate(parsed.media):
                if section.rejected or "RTP/" not in section.proto:
                    self._close_stream(source, index)
                    self._close_stream(target, index)
                    ports.append(0)
                    media.append(section)
                    continue
                src = self._endpoint(call, source, index)
                dst = self._endpoint(call, target, index)
                self.relay.pair(src, dst)
                src.set_remote(*self._remote(parsed, section))
                self._update_dtmf(source, target, index)
                ports.append(dst.port)
                media.append(self._outgoing(parsed, section, is_offer=is_offer))
        except PortsExhausted as exc:
            raise _no_ports(call_key, exc) from None
        if is_offer:
            target.held = parsed.is_hold()
        # A stream that is not relayed goes out with port 0 from the list above: declined.
        outgoing = SessionDescription(_without_ice(parsed.lines), tuple(media))
        outgoing = self._origin(target, address).rewrite(outgoing.with_connection(address, ports))
        if not is_offer:
            source.answer_sdp = parsed
            target.answer_sdp = outgoing
        return outgoing.to_bytes()

    def _advertised(self, advertise: str | None) -> str:
        if self.advertise is not None:
            return self.advertise
        if not advertise:
            raise ValueError("the relay listens on a wildcard address: name the address to advertise")
        if advertise in self._advertisable:
            return advertise
        if ipaddress.ip_address(advertise).is_unspecified:
            raise ValueError(f"media address {advertise} cannot be advertised in SDP; give a real address")
        # The addresses phones reach Sentral at are few: each is checked once, not per exchange.
        if len(self._advertisable) >= _ADVERTISABLE_MEMO:
            self._advertisable.clear()
        self._advertisable.add(advertise)
        return advertise

    def _call(self, key: str) -> _Call:
        call = self._calls.get(key)
        if call is None:
            call = self._calls[key] = _Call(key, time.monotonic())
        return call

    def _leg(self, call: _Call, key: str) -> _Leg:
        leg = call.legs.get(key)
        if leg is None:
            leg = call.legs[key] = _Leg(key)
        return leg

    def _origin(self, leg: _Leg, address: str) -> OriginRewriter:
        if leg.origin is None:
            leg.origin = OriginRewriter(entropy.randbits(48), address)
        return leg.origin

    # -- Sentral as the other end ----------------------------------------------------------------

    def answer_locally(
        self,
        call_key: str,
        leg_key: str,
        offer: bytes,
        *,
        advertise: str | None = None,
        law: int | None = None,
    ) -> bytes:
        """Sentral answers ``leg_key``'s phone's ``offer`` itself: its first audio stream with a
        G.711 codec (``law`` only, when given: the phone is to be joined with one using it) ends
        at the relay (nothing on the other side yet), every other stream is declined. SipError
        488 when no stream can carry it, 503 when no port is free."""
        address = self._advertised(advertise)
        parsed = parse_sdp(offer)
        call = self._call(call_key)
        leg = self._leg(call, leg_key)
        if len(leg.streams) < len(parsed.media):
            leg.streams.extend([None] * (len(parsed.media) - len(leg.streams)))
        chosen: int | None = None
        ports: list[int] = []
        media: list[MediaSection] = []
        try:
            for index, section in enumerate(parsed.media):
                usable = section.media == "audio" and "RTP/" in section.proto and not section.rejected
                choice = _g711_choice(section) if usable else None
                if law is not None and choice is not None:
                    choice = law if str(law) in section.formats else None
                if chosen is not None or choice is None:
                    self._close_stream(leg, index)
                    ports.append(0)
                    media.append(
                        MediaSection(section.media, 0, section.port_count, section.proto, section.formats)
                    )
                    continue
                chosen = index
                endpoint = self._endpoint(call, leg, index)
                endpoint.set_remote(*self._remote(parsed, section))
                events = _telephone_events(parsed, index)
                endpoint.dtmf_payload_types = events
                ports.append(endpoint.port)
                media.append(_local_section(section, choice, _narrowband_event(section), parsed))
        except PortsExhausted as exc:
            raise _no_ports(call_key, exc) from None
        if chosen is None:
            raise SipError(488, "Not Acceptable Here")
        leg.phone_sdp = parsed
        net = f"IN {'IP6' if ':' in address else 'IP4'} {address}"
        lines = (("v", "0"), ("o", f"sentral 0 0 {net}"), ("s", "-"), ("c", net), ("t", "0 0"))
        answer = SessionDescription(lines, tuple(media)).with_connection(address, ports)
        answer = self._origin(leg, address).rewrite(answer)
        leg.answer_sdp = answer
        return answer.to_bytes()

    def offer_locally(
        self, call_key: str, leg_key: str, *, advertise: str | None = None, law: int | None = None
    ) -> bytes:
        """An offer of Sentral's own for ``leg_key``'s phone: one audio stream, PCMU and PCMA (or
        ``law`` only), ending at the relay. The phone's answer goes to ``answer_received``."""
        address = self._advertised(advertise)
        call = self._call(call_key)
        leg = self._leg(call, leg_key)
        leg.held = False  # an offer of Sentral's own is sendrecv: whatever hold there was is over
        if not leg.streams:
            leg.streams.append(None)
        try:
            endpoint = self._endpoint(call, leg, 0)
        except PortsExhausted as exc:
            raise _no_ports(call_key, exc) from None
        net = f"IN {'IP6' if ':' in address else 'IP4'} {address}"
        laws = (g711.PCMU, g711.PCMA) if law is None else (law,)
        formats = " ".join(str(pt) for pt in laws)
        rtpmaps = "".join(f"a=rtpmap:{pt} {'PCMU' if pt == g711.PCMU else 'PCMA'}/8000\r\n" for pt in laws)
        text = (
            f"v=0\r\no=sentral 0 0 {net}\r\ns=-\r\nc={net}\r\nt=0 0\r\n"
            f"m=audio {endpoint.port} RTP/AVP {formats} {_EVENT_TYPE}\r\n"
            f"{rtpmaps}"
            f"a=rtpmap:{_EVENT_TYPE} telephone-event/8000\r\na=fmtp:{_EVENT_TYPE} 0-15\r\n"
            "a=ptime:20\r\na=sendrecv\r\n"
        )
        return self._origin(leg, address).rewrite(parse_sdp(text.encode())).to_bytes()

    def answer_received(self, call_key: str, leg_key: str, sdp: bytes) -> None:
        """``leg_key``'s phone answered an offer of ``offer_locally``: send its media there."""
        parsed = parse_sdp(sdp)
        leg = self._find(call_key, leg_key)
        leg.phone_sdp = leg.answer_sdp = parsed
        for index, endpoint in enumerate(leg.streams):
            if endpoint is None:
                continue
            section = parsed.media[index] if index < len(parsed.media) else None
            if section is None or section.rejected:
                self._close_stream(leg, index)
                continue
            endpoint.set_remote(*self._remote(parsed, section))
            endpoint.dtmf_payload_types = _telephone_events(parsed, index)

    def _endpoint(self, call: _Call, leg: _Leg, index: int) -> Endpoint:
        endpoint = leg.streams[index]
        if endpoint is None:
            endpoint = leg.streams[index] = self.relay.open()
            endpoint.on_dtmf = self._dtmf_handler(call.key, leg.key)
        return endpoint

    def _close_stream(self, leg: _Leg, index: int) -> None:
        endpoint = leg.streams[index]
        if endpoint is not None:
            endpoint.close()
            leg.streams[index] = None

    def _dtmf_handler(self, call_key: str, leg_key: str) -> Callable[[Endpoint, Digit], None]:
        def handle(endpoint: Endpoint, digit: Digit) -> None:
            # Not logged, not even at DEBUG: the digits may spell a national identity number.
            if self.on_dtmf is not None:
                self.on_dtmf(call_key, leg_key, digit)

        return handle

    def _remote(
        self, sdp: SessionDescription, section: MediaSection
    ) -> tuple[Address | None, Address | None]:
        """Where the phone that wrote ``sdp`` receives this stream's RTP and RTCP."""
        connection = sdp.media_connection(section)
        host = connection.address if connection is not None else ""
        if connection is None or connection.is_null or not _is_ip(host, self._family):
            # A held stream, a name that would need DNS on every send, or another IP family:
            # nothing to send to until latching learns where the phone is.
            return None, None
        rtp = (host, section.port)
        if section.has_attribute("rtcp-mux"):
            return rtp, rtp
        rtcp = (host, section.port + 1)
        value = section.attribute("rtcp")
        if value:
            parts = value.split()
            if parts and parts[0].isdigit() and 0 < int(parts[0]) < 65536:
                rtcp_host = parts[3] if len(parts) >= 4 and _is_ip(parts[3], self._family) else host
                rtcp = (rtcp_host, int(parts[0]))
        return rtp, rtcp

    def _outgoing(self, sdp: SessionDescription, section: MediaSection, *, is_offer: bool) -> MediaSection:
        """``section`` as it leaves for the other phone: no ICE lines; an old hold made explicit;
        in an offer, the G.711 formats first."""
        formats = section.formats
        if is_offer and section.media == "audio":
            formats = _g711_first(formats)
        # Built directly: dataclasses.replace is interpreted and this runs for every stream relayed.
        out = MediaSection(
            section.media,
            section.port,
            section.port_count,
            section.proto,
            formats,
            _without_ice(section.lines),
        )
        connection = sdp.media_connection(section)
        if connection is not None and connection.is_null and sdp.media_on_hold(section):
            # Our address replaces 0.0.0.0, so the hold must be said with a direction instead.
            current = sdp.media_direction(section)
            held = (
                Direction.INACTIVE
                if current in (Direction.RECVONLY, Direction.INACTIVE)
                else Direction.SENDONLY
            )
            out = out.with_direction(held)
        return out

    def _update_dtmf(self, source: _Leg, target: _Leg, index: int) -> None:
        types = _telephone_events(source.phone_sdp, index) | _telephone_events(target.phone_sdp, index)
        for leg in (source, target):
            endpoint = leg.streams[index]
            if endpoint is not None:
                endpoint.dtmf_payload_types = types

    def join(self, call_key: str, leg_key: str, other_key: str) -> None:
        """Relay ``leg_key``'s phone and ``other_key``'s to each other, stream by stream (a phone
        Sentral answered or called itself, joined with one already in the call)."""
        call = self._calls.get(call_key)
        if call is None:
            raise MediaError(f"no media for call {call_key!r}")
        leg, other = self._find(call_key, leg_key), self._find(call_key, other_key)
        for index in range(min(len(leg.streams), len(other.streams))):
            mine, theirs = leg.streams[index], other.streams[index]
            if mine is not None and theirs is not None:
                self.relay.pair(mine, theirs)
                self._update_dtmf(leg, other, index)

    def move(self, call_key: str, leg_key: str, to_call: str, to_leg: str) -> None:
        """``leg_key``'s endpoints leave ``call_key`` for ``to_call``, as leg ``to_leg`` (an attended
        transfer joins a phone of one call with a phone of another). The ports stay, so the phone
        notices nothing; until it is joined in its new call it is paired with what it was."""
        call = self._calls.get(call_key)
        leg = call.legs.get(leg_key) if call is not None else None
        if call is None or leg is None:
            raise MediaError(f"no media for leg {leg_key!r} of call {call_key!r}")
        into = self._call(to_call)
        if to_leg in into.legs:
            raise ValueError(f"call {to_call!r} has a leg {to_leg!r} already")
        del call.legs[leg_key]
        leg.key = to_leg
        into.legs[to_leg] = leg
        for endpoint in leg.streams:
            if endpoint is not None:
                endpoint.on_dtmf = self._dtmf_handler(to_call, to_leg)

    def adopt_origin(self, call_key: str, leg_key: str, origin: OriginRewriter) -> None:
        """Go on with ``origin``, the o= line ``leg_key`` had while its SDP passed Sentral by
        (direct media), so that its phone sees the same session at a higher version (RFC 3264 §8)."""
        self._leg(self._call(call_key), leg_key).origin = origin

    def law(self, call_key: str, leg_key: str) -> int:
        """The G.711 payload type ``leg_key``'s phone uses, as music and prompts are played to it."""
        return self._audio(call_key, leg_key)[1]

    # -- calls and legs --------------------------------------------------------------------------

    def release(self, call_key: str) -> None:
        """The call is over: close its endpoints and free their ports (unknown calls are ignored)."""
        call = self._calls.pop(call_key, None)
        if call is None:
            return
        for leg in call.legs.values():
            for index in range(len(leg.streams)):
                self._close_stream(leg, index)

    def release_leg(self, call_key: str, leg_key: str) -> None:
        """One leg is gone (a fork that lost, a transfer's old leg): close its endpoints."""
        call = self._calls.get(call_key)
        leg = call.legs.pop(leg_key, None) if call is not None else None
        if leg is not None:
            for index in range(len(leg.streams)):
                self._close_stream(leg, index)

    def hold_state(self, call_key: str, leg_key: str) -> bool:
        """True if the last offer sent on ``leg_key`` put its phone on hold."""
        return self._find(call_key, leg_key).held

    def on_hold(self, call_key: str) -> bool:
        """True if any phone of the call is on hold (unknown calls are not)."""
        call = self._calls.get(call_key)
        return call is not None and any(leg.held for leg in call.legs.values())

    def last_activity(self, call_key: str) -> float:
        """``time.monotonic()`` of the last RTP packet from any phone of the call, or of its setup."""
        call = self._calls.get(call_key)
        if call is None:
            raise MediaError(f"no media for call {call_key!r}")
        latest = call.created
        for leg in call.legs.values():
            for endpoint in leg.streams:
                if endpoint is not None:
                    latest = max(latest, endpoint.rtp.last_rx)
        return latest

    def stats(self, call_key: str) -> dict[str, list[EndpointStats]]:
        """Per leg, the counters of each live stream."""
        call = self._calls.get(call_key)
        if call is None:
            raise MediaError(f"no media for call {call_key!r}")
        return {key: [e.stats() for e in leg.streams if e is not None] for key, leg in call.legs.items()}

    def ports(self, call_key: str, leg_key: str) -> list[int]:
        """The relay RTP port of each m= line on the leg (0 for a stream without one)."""
        return [e.port if e is not None else 0 for e in self._find(call_key, leg_key).streams]

    # -- music and prompts -----------------------------------------------------------------------

    def start_music(self, call_key: str, leg_key: str, sound: str = MUSIC) -> None:
        """Play music on hold (or another language-neutral ``sound``, the ringing tone) to
        ``leg_key``'s phone, looping, until ``stop_music``."""
        endpoint, payload_type = self._audio(call_key, leg_key)
        audio = self._encode(sound, None, payload_type)
        endpoint.play(Player(audio, payload_type, loop=True))

    def stop_music(self, call_key: str, leg_key: str) -> None:
        """Stop music or a prompt to ``leg_key``'s phone; the other side is heard again."""
        endpoint, _ = self._audio(call_key, leg_key)
        endpoint.stop_playing()

    def play(
        self,
        call_key: str,
        leg_key: str,
        names: Sequence[str],
        *,
        language: str | None = None,
        on_done: Callable[[], object] | None = None,
        lead: float = 0.0,
    ) -> float:
        """Play prompts ``names`` one after another to ``leg_key``'s phone, then relay again;
        ``lead`` seconds of silence first (a phone that has just answered may not hear the very
        start). How many seconds it all lasts."""
        endpoint, payload_type = self._audio(call_key, leg_key)
        language = language or self.language
        silence = g711.encode(bytes(2 * 800), payload_type)  # 0.1 s between pieces
        audio = silence.join(self._encode(name, language, payload_type) for name in names)
        if lead > 0:
            audio = g711.encode(bytes(2 * round(lead * RATE)), payload_type) + audio
        endpoint.play(Player(audio, payload_type), on_done=on_done)
        return len(audio) / RATE

    def playing(self, call_key: str, leg_key: str) -> bool:
        """True while music or a prompt plays to ``leg_key``'s phone."""
        return any(e is not None and e.playing for e in self._find(call_key, leg_key).streams)

    def _find(self, call_key: str, leg_key: str) -> _Leg:
        call = self._calls.get(call_key)
        leg = call.legs.get(leg_key) if call is not None else None
        if leg is None:
            raise MediaError(f"no media for leg {leg_key!r} of call {call_key!r}")
        return leg

    def _audio(self, call_key: str, leg_key: str) -> tuple[Endpoint, int]:
        """The leg's first live audio endpoint and the G.711 payload type agreed on it: the law its
        last answer lists first (both ends accepted it), else the one its phone's SDP does."""
        leg = self._find(call_key, leg_key)
        sdp = leg.answer_sdp or leg.phone_sdp
        for index, endpoint in enumerate(leg.streams):
            if endpoint is None:
                continue
            section = sdp.media[index] if sdp is not None and index < len(sdp.media) else None
            if section is not None and section.media != "audio":
                continue
            payload_type = _g711_choice(section) if section is not None else g711.PCMU
            if payload_type is None:
                raise MediaError(
                    f"leg {leg_key!r} of call {call_key!r} offers no G.711 codec to play audio in"
                )
            return endpoint, payload_type
        raise MediaError(f"leg {leg_key!r} of call {call_key!r} has no live audio stream")

    def _encode(self, name: str, language: str | None, payload_type: int) -> bytes:
        if self.sounds is None:
            raise MediaError("no sound library is configured for music and prompts")
        key = (name, language, payload_type)
        audio = self._encoded.get(key)
        if audio is None:
            audio = self._encoded[key] = g711.encode(self.sounds.pcm(name, language), payload_type)
        return audio


def _family(address: str) -> int:
    """The socket family of an IP literal (ValueError for anything else)."""
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def _is_ip(host: str, family: int) -> bool:
    """True if ``host`` is an IP literal of ``family`` (the relay's)."""
    # inet_pton, not the ipaddress module: this runs for every stream of every SDP relayed.
    try:
        socket.inet_pton(family, host)
    except (OSError, ValueError):
        # An IPv6 literal with a zone ("fe80::1%eth0") is one too; inet_pton refuses the zone.
        return "%" in host and family == socket.AF_INET6 and _is_ipv6_with_zone(host)
    return True


def _is_ipv6_with_zone(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False


def _without_ice(lines: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for line in lines:
        if line[0] == "a" and line[1].partition(":")[0] in _ICE_ATTRIBUTES:
            continue
        out.append(line)
    return lines if len(out) == len(lines) else tuple(out)


def _g711_first(formats: tuple[str, ...]) -> tuple[str, ...]:
    """``formats`` with PCMU and PCMA moved to the front, each group in its own order."""
    first = [fmt for fmt in formats if fmt in _G711_FORMATS]
    if not first or len(first) == len(formats) or formats[: len(first)] == tuple(first):
        return formats
    return (*first, *(fmt for fmt in formats if fmt not in _G711_FORMATS))


def _rtpmap(section: MediaSection) -> dict[str, str]:
    """Payload type to encoding name (upper case) from the section's a=rtpmap lines."""
    names: dict[str, str] = {}
    for value in section.attributes("rtpmap"):
        if value:
            pt, _, encoding = value.partition(" ")
            names[pt] = encoding.split("/", 1)[0].upper()
    return names


def _telephone_events(sdp: SessionDescription | None, index: int) -> frozenset[int]:
    if sdp is None or index >= len(sdp.media):
        return frozenset()
    return frozenset(
        int(pt)
        for pt, name in _rtpmap(sdp.media[index]).items()
        if name == "TELEPHONE-EVENT" and pt.isdigit()
    )


def _no_ports(call_key: str, exc: PortsExhausted) -> SipError:
    log.warning("media_ports_exhausted", call_id=call_key, reason=str(exc))
    return SipError(503, "Service Unavailable", headers=(("Retry-After", "5"),))


def _local_section(
    offered: MediaSection, law: int, event: int | None, sdp: SessionDescription
) -> MediaSection:
    """The answer to ``offered`` when Sentral is the other end: ``law``, the phone's
    telephone-event type if it has one, and the direction that mirrors the offer's."""
    formats = [str(law)]
    lines: list[tuple[str, str]] = [("a", f"rtpmap:{law} {'PCMU' if law == g711.PCMU else 'PCMA'}/8000")]
    if event is not None:
        formats.append(str(event))
        fmtp = next(
            (v for v in offered.attributes("fmtp") if v and v.split(" ", 1)[0] == str(event)),
            f"{event} 0-15",
        )
        lines += [("a", f"rtpmap:{event} telephone-event/8000"), ("a", f"fmtp:{fmtp}")]
    lines.append(("a", "ptime:20"))
    if offered.has_attribute("rtcp-mux"):
        lines.append(("a", "rtcp-mux"))
    lines.append(("a", sdp.media_direction(offered).reversed().value))
    return MediaSection(offered.media, offered.port, None, offered.proto, tuple(formats), tuple(lines))


def _narrowband_event(section: MediaSection) -> int | None:
    """The telephone-event payload type the phone offers at 8000 Hz, the clock G.711 runs on."""
    for pt, value in ((v.split(" ", 1)[0], v) for v in section.attributes("rtpmap") if v):
        if pt.isdigit() and value.split(" ", 1)[-1].strip().lower() == "telephone-event/8000":
            return int(pt)
    return None


def _g711_choice(section: MediaSection) -> int | None:
    """PCMU (0) or PCMA (8), whichever comes first in the phone's own order of preference."""
    for fmt in section.formats:
        if fmt in ("0", "8"):
            return int(fmt)
    return None
