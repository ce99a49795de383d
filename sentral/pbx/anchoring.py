"""Call control's media through Sentral: the ``MediaPolicy`` over the media anchor.

Theory of operation
-------------------
``AnchoredMedia`` is what ``CallControl`` talks to when media is anchored (the default of
`sentral serve`). It speaks call control's types and hands the ``MediaAnchor`` plain keys: the
call's id and the leg's id ("a", "b1", ...). Each SDP body that crosses the B2BUA is rewritten by
the anchor so that each phone sends to its own relay port; what Sentral answers itself (a
feature code's call, a caller waiting in a queue) is answered from the relay; prompts and music
are played from the relay port of the phone that is to hear them. When the relay listens on a
wildcard address, each leg's SDP names the address that leg's phone reaches Sentral at, which
call control has worked out for the leg's Via and Contact already.

Hold. A re-INVITE or UPDATE that puts the other phone on hold is passed across to it like any
other offer, not answered here: the held phone then shows that it is held (many phones light a
lamp or stop their own ringback), a holding phone that also changes codec or address still
negotiates end to end, and one path serves every offer. The anchor sees the hold in the offer
(every live stream sendonly or inactive); once the held phone has answered it, music plays to that
phone from its relay port and replaces whatever the holding phone still sends (a phone on hold
may keep its microphone open). An offer that resumes the call stops the music at once, so that
the two hear each other from the next packet, before the answer is even back.

Prompts start after a short silence (``PROMPT_LEAD``): the phone has only just received the 200
and may not be playing what arrives yet, and the first syllable must not be lost.

Direct media. A member of staff's phone may have direct media on (`sentral direct-media on`): an
SDP exchange between two such phones is passed through as ``OriginPerLeg`` does (each leg its own
o= line, the phones' addresses untouched), so they send RTP straight to each other, and any relay
ports the receiving leg held are closed. Whether a leg may be direct is decided the first time an
SDP crosses it, so turning the option on or off changes new calls only. Nothing can be played to a
direct leg (``music`` and ``play`` report that nothing plays; ``anchored`` says so beforehand), and
its dead media goes unnoticed. Every exchange with a phone that does not have the option stays
anchored, so forking to several phones decides phone by phone.

A direct leg moves to the relay, for the rest of the call, when something is to be played to it:

- Hold. An offer that holds the other phone (every live stream sendonly or inactive) is not passed
  through: both legs become anchored, the held phone gets the offer from its relay port and the
  holding phone the answer from its own, and music plays as for any anchored hold. The resume
  offer then crosses the relay like any other. Going back to direct media on resume would take
  another re-INVITE to each phone for what is only a shorter path on the clinic's network, and a
  phone held once is likely to be held again; so the call stays anchored.
- Parking and transfers. ``CallControl.to_relay`` sends the phone a re-INVITE with an offer of
  ``relay_offer`` (the leg's o= line goes on, at a higher version); the leg is anchored once the
  answer reaches ``answer_received``, and ``relay_refused`` forgets the offer when the phone does
  not take it. The other phone keeps sending straight to the moved one until it moves or leaves.

Failures. An SDP the anchor refuses raises its SipError (488; 503 when no relay port is free,
or a socket cannot be opened), which call control turns into the status the caller gets. Music or
a prompt that cannot be played (no G.711 on the leg, a missing sound) is logged and reported as
not playing; the call goes on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import TypeVar

import structlog

from sentral.media.anchor import MediaAnchor, MediaError
from sentral.media.sounds import RINGBACK
from sentral.media.wav import SoundError
from sentral.pbx.call import Call, Leg, OriginPerLeg
from sentral.pbx.sip.errors import SipError
from sentral.pbx.sip.sdp import parse_sdp

log = structlog.get_logger("sentral.media")

PROMPT_LEAD = 0.3

T = TypeVar("T")

# (clinic domain, extension) -> whether that phone may send media straight to another.
DirectMedia = Callable[[str, str], bool]


class AnchoredMedia:
    """The ``MediaPolicy`` that anchors every call's media at Sentral's relay."""

    def __init__(
        self, anchor: MediaAnchor, *, lead: float = PROMPT_LEAD, direct_media: DirectMedia | None = None
    ) -> None:
        self.anchor = anchor
        self.lead = lead
        self.direct_media = direct_media
        # Per call, the legs hearing music on hold: started and stopped as holds come and go.
        self._music: dict[str, set[str]] = {}
        # Per call, whether each leg's phone has direct media, as decided at its first exchange
        # (False, too, once the leg has moved to the relay).
        self._modes: dict[str, dict[str, bool]] = {}
        # Per call, the legs whose last exchange passed the relay by, and those offered a move to it.
        self._through: dict[str, set[str]] = {}
        self._moving: dict[str, set[str]] = {}
        self._passthrough = OriginPerLeg()

    def _is_direct(self, call: Call, leg: Leg) -> bool:
        if self.direct_media is None:
            return False
        modes = self._modes.setdefault(call.id, {})
        mode = modes.get(leg.id)
        if mode is None:
            mode = modes[leg.id] = bool(leg.extension) and self.direct_media(
                call.caller.clinic.domain, leg.extension
            )
        return mode

    def _direct(self, call: Call, leg: Leg, source: Leg) -> bool:
        """True when ``leg``'s and ``source``'s phones may send media straight to each other."""
        if not (self._is_direct(call, leg) and self._is_direct(call, source)):
            return False
        self.anchor.release_leg(call.id, leg.id)  # relay ports it held are of no use now
        self._through.setdefault(call.id, set()).update((leg.id, source.id))
        return True

    def _anchor_leg(self, call: Call, leg: Leg) -> None:
        """``leg`` is anchored for the rest of the call, its o= line going on."""
        self._modes.setdefault(call.id, {})[leg.id] = False
        self._forget(self._through, call, leg)
        origin = self._passthrough.origin(leg)
        if origin is not None:
            self.anchor.adopt_origin(call.id, leg.id, origin)

    def _anchored_exchange(self, call: Call, leg: Leg, source: Leg) -> None:
        """An SDP from ``source`` crosses the relay to ``leg``: neither passes it by any more."""
        if self._through:
            self._forget(self._through, call, leg)
            self._forget(self._through, call, source)

    @staticmethod
    def _forget(legs: dict[str, set[str]], call: Call, leg: Leg) -> bool:
        """Take ``leg`` out of ``legs`` (per call); whether it was in."""
        known = legs.get(call.id)
        if known is None or leg.id not in known:
            return False
        known.discard(leg.id)
        if not known:
            del legs[call.id]
        return True

    def _advertise(self, leg: Leg) -> str | None:
        return leg.local[0] if self.anchor.advertise is None else None

    def _sdp(self, call: Call, work: Callable[[], T]) -> T:
        try:
            return work()
        except OSError as exc:
            log.error("media_socket_failed", call_id=call.id, error=str(exc))
            raise SipError(503, "Service Unavailable", headers=(("Retry-After", "5"),)) from None

    # -- offer/answer ------------------------------------------------------------------------------

    def offer(self, call: Call, leg: Leg, sdp: bytes, source: Leg) -> bytes:
        if self._direct(call, leg, source):
            if not parse_sdp(sdp).is_hold():
                return self._passthrough.offer(call, leg, sdp, source)
            # A hold: the held phone is to hear music, so both legs move to the relay.
            self._anchor_leg(call, leg)
            self._anchor_leg(call, source)
        self._anchored_exchange(call, leg, source)
        out = self._sdp(
            call, lambda: self.anchor.offer(call.id, leg.id, sdp, source.id, advertise=self._advertise(leg))
        )
        if not self.anchor.hold_state(call.id, leg.id):
            self._hold_music(call, leg, False)  # resumed: stop the music before the answer is back
        return out

    def answer(self, call: Call, leg: Leg, sdp: bytes, source: Leg) -> bytes:
        if self._direct(call, leg, source):
            return self._passthrough.answer(call, leg, sdp, source)
        self._anchored_exchange(call, leg, source)
        out = self._sdp(
            call, lambda: self.anchor.answer(call.id, leg.id, sdp, source.id, advertise=self._advertise(leg))
        )
        # ``source``'s phone has answered an offer: if that offer held it, the hold stands now.
        self._hold_music(call, source, self.anchor.hold_state(call.id, source.id))
        return out

    def answer_locally(self, call: Call, leg: Leg, offer: bytes, like: Leg | None = None) -> bytes:
        law = self._law(call, like)
        return self._sdp(
            call,
            lambda: self.anchor.answer_locally(
                call.id, leg.id, offer, advertise=self._advertise(leg), law=law
            ),
        )

    def offer_locally(self, call: Call, leg: Leg, like: Leg | None = None) -> bytes:
        law = self._law(call, like)
        return self._sdp(
            call,
            lambda: self.anchor.offer_locally(call.id, leg.id, advertise=self._advertise(leg), law=law),
        )

    def _law(self, call: Call, like: Leg | None) -> int | None:
        """The G.711 law ``like``'s phone uses (None: any)."""
        if like is None:
            return None
        try:
            return self.anchor.law(call.id, like.id)
        except MediaError:
            return None

    def join(self, call: Call, leg: Leg, other: Leg) -> None:
        with contextlib.suppress(MediaError):  # a leg released meanwhile: nothing to relay
            self.anchor.join(call.id, leg.id, other.id)

    def move(self, call: Call, leg: Leg, into: Call, leg_id: str) -> None:
        if not self.anchored(call, leg):
            # A direct phone's media does not reach the relay (``to_relay`` brings it there first).
            raise SipError(501, "Attended Transfer Needs Media Through Sentral")
        modes = self._modes.get(call.id, {})
        try:
            self.anchor.move(call.id, leg.id, into.id, leg_id)
        except MediaError:
            return  # no media kept for the leg (it sent no SDP): nothing to move
        if leg.id in modes:
            self._modes.setdefault(into.id, {})[leg_id] = modes.pop(leg.id)
        playing = self._music.get(call.id)
        if playing is not None and leg.id in playing:
            playing.discard(leg.id)
            if not playing:
                del self._music[call.id]
            self._music.setdefault(into.id, set()).add(leg_id)

    def answer_received(self, call: Call, leg: Leg, sdp: bytes) -> None:
        if self._forget(self._moving, call, leg):
            self._anchor_leg(call, leg)  # the phone took the relay's offer: it sends there now
        # A leg whose media was released meanwhile has nowhere to send anything.
        with contextlib.suppress(MediaError):
            self.anchor.answer_received(call.id, leg.id, sdp)

    # -- direct legs moving to the relay -----------------------------------------------------------

    def anchored(self, call: Call, leg: Leg) -> bool:
        through = self._through.get(call.id)
        return through is None or leg.id not in through

    def relay_offer(self, call: Call, leg: Leg) -> bytes | None:
        origin = self._passthrough.origin(leg)
        if origin is not None:
            self.anchor.adopt_origin(call.id, leg.id, origin)
        offer = self.offer_locally(call, leg)
        self._moving.setdefault(call.id, set()).add(leg.id)
        return offer

    def relay_refused(self, call: Call, leg: Leg) -> None:
        if self._forget(self._moving, call, leg):
            self.anchor.release_leg(call.id, leg.id)  # the phone still sends elsewhere

    # -- what Sentral plays ------------------------------------------------------------------------

    def play(self, call: Call, leg: Leg, names: Sequence[str]) -> float | None:
        try:
            return self.anchor.play(call.id, leg.id, names, lead=self.lead)
        except (MediaError, SoundError) as exc:
            log.info("prompt_not_played", call_id=call.id, leg=leg.id, reason=str(exc))
            return None

    def music(self, call: Call, leg: Leg, on: bool) -> bool:
        if not on:
            playing = self._music.get(call.id)
            if playing is not None:
                # Stopped from outside (a held phone joined with another): a later hold plays again.
                playing.discard(leg.id)
                if not playing:
                    del self._music[call.id]
            with contextlib.suppress(MediaError):  # released already: nothing plays
                self.anchor.stop_music(call.id, leg.id)
            return False
        try:
            self.anchor.start_music(call.id, leg.id)
        except (MediaError, SoundError) as exc:
            log.info("music_not_played", call_id=call.id, leg=leg.id, reason=str(exc))
            return False
        return True

    def ringback(self, call: Call, leg: Leg) -> bool:
        try:
            self.anchor.start_music(call.id, leg.id, RINGBACK)
        except (MediaError, SoundError) as exc:
            log.info("ringback_not_played", call_id=call.id, leg=leg.id, reason=str(exc))
            return False
        return True

    def announce(self, call: Call, leg: Leg, names: Sequence[str]) -> bool:
        def music_again() -> None:
            self.music(call, leg, True)

        try:
            self.anchor.play(call.id, leg.id, names, on_done=music_again)
        except (MediaError, SoundError) as exc:
            log.info("prompt_not_played", call_id=call.id, leg=leg.id, reason=str(exc))
            return False
        return True

    def _hold_music(self, call: Call, leg: Leg, held: bool) -> None:
        playing = self._music.get(call.id)
        if held == (playing is not None and leg.id in playing):
            return
        if held:
            if self.music(call, leg, True):
                self._music.setdefault(call.id, set()).add(leg.id)
            return
        assert playing is not None
        playing.discard(leg.id)
        if not playing:
            del self._music[call.id]
        self.music(call, leg, False)

    # -- the call's life ---------------------------------------------------------------------------

    def last_activity(self, call: Call) -> float | None:
        try:
            return self.anchor.last_activity(call.id)
        except MediaError:
            return None

    def on_hold(self, call: Call) -> bool:
        return self.anchor.on_hold(call.id)

    def release_leg(self, call: Call, leg: Leg) -> None:
        self._passthrough.release_leg(call, leg)
        self._forget(self._through, call, leg)
        self._forget(self._moving, call, leg)
        playing = self._music.get(call.id)
        if playing is not None:
            playing.discard(leg.id)
        self.anchor.release_leg(call.id, leg.id)

    def release(self, call: Call) -> None:
        self._passthrough.release(call)
        self._modes.pop(call.id, None)
        self._through.pop(call.id, None)
        self._moving.pop(call.id, None)
        self._music.pop(call.id, None)
        self.anchor.release(call.id)


__all__ = ["PROMPT_LEAD", "AnchoredMedia"]
