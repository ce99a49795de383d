"""Calls between phones: the back-to-back user agent (RFC 3261, 3264, 3311, 4028, 6026).

Theory of operation
-------------------
A ``Call`` has legs. The A leg is the caller's dialog, in which Sentral is the UAS; each B leg is
one INVITE Sentral sends, as UAC, to one registered contact of the callee (forking: all of them
ring at once). Every leg has its own Call-ID, tags, CSeq space, Via and Contact, so nothing of one
phone's topology reaches the other: requests and responses are rebuilt, never copied, and the
only things that cross are the SDP bodies (through the media seam), INFO bodies, and the caller's
identity as the directory states it.

``CallControl`` is the transaction user for INVITE, ACK, CANCEL, BYE, UPDATE, INFO and PRACK. It
is sans-IO in the manner of the SIP core: the endpoint feeds it transaction events with ``now``
and it acts through a ``CallPort`` (respond, send a request, send an end-to-end ACK, cancel,
hand over a finished call's record). Its own timers (no-answer, 2xx retransmission, session
timers) are reported by ``next_deadline`` and run by ``on_timer``; one heap of (deadline, call)
entries with lazy deletion keeps that cheap with many calls.

The call-control vocabulary is explicit: a ``RingStrategy`` turns what happens to the B legs
(``LegRinging``, ``LegAnswered``, ``LegFailed``, and ``Timer`` when its own ``next_deadline``
comes) into commands (``Try`` these targets, ``RingCaller`` with a leg's ringing or ``Ringback``
of our own, ``Connect`` a leg, ``Cancel`` a leg, ``Fail`` the call, ``Route`` it to another
number, ``HangUp``) which the controller carries out; ``ReOffer`` passes a new offer from one leg
to the other. ``RingAll`` is the forking of RFC 3261 §16.7: everybody rings, the first 2xx wins,
the others are cancelled (a second 2xx racing in is ACKed and then BYEd), and when all have
failed the caller gets the most telling failure (``best_failure``). A call made directly to one
person ends when that person rejects it (486, 600, 603), the clinic's rule. Ring groups and
functions, with their hunting strategies and queues, are strategies speaking the same vocabulary,
made by a ``GroupCalls`` (``sentral.pbx.hunting``); a transfer's recall rings with ``RingAll``.

Who is on the phone. The controller counts, per extension, the answered calls it is in (``busy``)
and tells a ``LineObserver`` (presence, busy-lamp fields) each extension's phase in each call:
trying, early (ringing), confirmed (talking), terminated; a ringing extension's with the ids of
Sentral's early dialog with its phone (``DialogIds``), which a busy-lamp key's pickup replaces.
When an extension's last call ends, ``GroupCalls.freed`` may start a call waiting in a queue.

Offer/answer. Each leg keeps an ``OfferAnswer``, which tells whether a body is an offer or an
answer and refuses a colliding request (491 for glare, 500 with Retry-After for an overlap). A
re-INVITE or UPDATE received on one leg is refused with 491 too when the other leg is busy with an
exchange of its own, since the offer could not be passed on. An INVITE without SDP (the offer
comes in the 2xx) holds the far side's ACK until the near side's ACK brings the answer.

Media seam. Every SDP body that crosses goes through ``MediaPolicy.offer`` or ``.answer`` with the
leg it is sent on and the leg it came from: with forking, several B legs send early SDP and
answers, and the media layer must know whose phone each came from. A B leg that ends without
being the call's (a fork that lost, a cancelled or failed leg) is released from the media layer
at once; the whole call is released when it ends, on every path. ``OriginPerLeg`` is the
pass-through policy (each leg gets its own o= line, the phones send RTP to each other);
``sentral.pbx.anchoring`` anchors every call's media at Sentral's relay. An SDP the media layer
cannot take gets its status (488, or 503 when no relay port is free): the caller's INVITE is
refused with it, a re-INVITE or UPDATE is answered with it. A phone whose media passes the relay by
(direct media) is brought to it with ``to_relay``, a re-INVITE of our own, before a feature plays
anything to it (``MediaPolicy.anchored`` tells whether it is there).

What Sentral plays. A call Sentral answers itself (``answer_and_play``: a feature code's) gets an
answer (or, for an INVITE without SDP, an offer) from the media layer; the prompts play, and the
call is hung up when they have played (after ``FEATURE_HANGUP`` where nothing can be played). A
caller waiting in a queue (``Ringback`` with ``music``) gets a 183 whose SDP answers its offer
from the relay, and music; when a member's phone is rung, the same caller leg is offered to it,
the music plays on while it rings and stops when it answers (or sends early media of its own). An
INVITE without SDP cannot get early media without reliable provisional responses, which Sentral
does not do, so such a caller hears ringback instead.

Features. What is built on this core lives in ``sentral.pbx.features``, one module each (parking,
blind and attended transfer, the feature codes, pickup), and speaks the core's vocabulary: ``ring``
a contact for a call, ``fail`` or ``hang_up`` a call, ``hang_up_leg_at`` a time, ``connect_held``
and ``take_over`` (bridge a leg to a phone that waits alone) with ``joining_media`` (the relay's
SDP for the caller who joins), ``adopt`` (move a leg, dialog, relay ports and all, into another
call: an attended transfer), ``resume`` (offer a phone left on hold the relay again), ``leg_of`` (find a dialog), ``answer_and_play``, ``accept_refer`` and
``notify_refer`` (a transfer's progress), ``arm`` a call's timer, ``changed`` and ``tell_line``
(publish a state), and the media layer. The core asks its ``CallFeature`` objects, in turn, at five
hooks: a new call to a number the dial plan gives a feature (``Feature``, ``Park``, ``Retrieve``,
``Pickup``), keys pressed during a call (the last ``KEYS_KEPT``, each within ``KEY_GAP`` of the one
before), a REFER (after the dial plan has decided its target), what the port carried out for a
feature (``feature_done``), and a new INVITE with Replaces (RFC 3891) naming a dialog of a live
call of the same clinic (``replaces``; one naming no such dialog is 481 before any feature is
asked, a malformed one 400). A REFER no feature takes is refused with 501. A feature that holds an
answered call with its A leg alone (a parked call, a transferred call ringing its target) is the
call's ``holder`` (``CallHolder``): the strategy's commands for that call, and its timer
(``recall_at``), go to the feature, which is told when the call ends; the INVITEs that ring someone
for it carry ``Referred-By`` when the call's ``referred_by`` is set (RFC 3892). A phone done with a
call that goes on (a parker, a transferring phone) hears its prompt and gets a BYE at ``leave_at``,
unless it hangs up first. Call forwarding (``Forwarding``) is asked whenever a call is routed to a
number: it may send the call on at once, and it may wrap the ``RingAll`` that rings one person's
phones.

Dead media. ``check_media`` hangs up answered calls whose phones have sent no media for a while
(longer while a phone is on hold), with the cause "no media"; the driver calls it every few
seconds. DTMF, as RFC 4733 events seen by the media layer or as SIP INFO, reaches ``digit`` and
from there ``on_dtmf``, never a log line.

Reliability. A 2xx we send to an INVITE is retransmitted by us (RFC 3261 §13.3.1.4, RFC 6026 §8.1):
T1 doubling to T2 until the ACK arrives, and after 64*T1 without one the call is torn down with
BYE. 100rel is not implemented: ``Require: 100rel`` gets 420 and we never require it ourselves.

What an answered call keeps. Tens of thousands of calls may be up at once, so an answered call
lets go of what it needs no more: the caller's INVITE transaction once our 2xx is acknowledged (a
CANCEL for it then gets 200 and changes nothing, RFC 3261 §9.2), a callee leg's INVITE transaction
at its final response, and the fork state (the B legs' INVITEs, other forks' dialogs, the last
ACK) 64*T1 after the answer, when no retransmitted or late 2xx can arrive any more. A call that
ends before then lets go of itself at once: each callee leg's INVITE transaction keeps only its
fork state (``Settling``) for as long as it lingers, and the timer queue holds calls by id.

Session timers (RFC 4028) are negotiated on each leg on its own (``session_timer``): the A leg as
UAS from the INVITE, each B leg as UAC from its 2xx (a 422 retries with the larger interval). A leg
whose refresh does not come is torn down on both sides; when we are a leg's refresher we send a
re-INVITE with the SDP last sent on it (or an UPDATE, when the phone allows it), and the phone's
answer goes to the media layer (``answer_received``), which follows it as it would any answer.

Every call that passed authentication ends in exactly one ``CallReport``: caller, callee, every
leg with its target and outcome, start, ring, answer and end times (the caller's ``now`` clock),
who hung up and why.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from itertools import count
from math import inf
from typing import Protocol, assert_never

from sentral.config.directory import ClinicEntry, Directory, GroupEntry
from sentral.config.settings import Listen, parse_listen
from sentral.config.store import BindingRow
from sentral.media.dtmf import DTMF, DTMF_RELAY, Digit, parse_info
from sentral.pbx.presence import Direction as Party
from sentral.pbx.presence import Phase
from sentral.pbx.sip import entropy
from sentral.pbx.sip.auth import authorization, choose_challenge
from sentral.pbx.sip.dialog import Dialog, DialogError, DialogState, ForkedDialogs
from sentral.pbx.sip.dialog_info import DialogIds
from sentral.pbx.sip.errors import SipError, reason_phrase
from sentral.pbx.sip.headers import parse_name_addr
from sentral.pbx.sip.message import Request, Response, make_response
from sentral.pbx.sip.replaces import Replaces, parse_replaces
from sentral.pbx.sip.sdp import (
    BodyRole,
    Direction,
    OfferAnswer,
    OfferState,
    OfferStateError,
    OriginRewriter,
    parse_sdp,
)
from sentral.pbx.sip.session_timer import (
    MIN_SE_FLOOR,
    Expire,
    IntervalTooSmall,
    Negotiated,
    Refresh,
    Refresher,
    SessionTimer,
    TimerRequest,
    negotiate_uas,
    refresh_method,
)
from sentral.pbx.sip.transaction import (
    ClientTransaction,
    ServerTransaction,
    Timings,
    local_contact,
    local_via,
)
from sentral.pbx.sip.uri import Uri
from sentral.pbx.transport import Origin, Target
from sentral.routing.dialplan import (
    BindingsLookup,
    Decision,
    DialPlan,
    Feature,
    Play,
    Query,
    Reject,
    Ring,
    RingGroup,
    dialled_number,
)
from sentral.routing.groups import REJECT_STATUSES as REJECTS
from sentral.routing.outside import Outside, Refused
from sentral.routing.park import Park, ParkLots, Retrieve
from sentral.routing.pickup import Pickup

# Option tags we implement: a request requiring anything else gets 420 (RFC 3261 §8.2.2.3).
SUPPORTED = ("timer", "replaces")
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, REFER, REGISTER"
SERVER = "Sentral"
SDP = "application/sdp"


# An overflow may lead on to another group's overflow; this many hops is surely a loop.
MAX_ROUTES = 5
# What tells a phone to ring differently for an acute call (RFC 7462 alert URN).
ACUTE_ALERT = "<urn:alert:priority:high>"
# A call Sentral answers to say something (a feature code's) is hung up this much later when no
# prompt can be played into it, so the phone still shows success.
FEATURE_HANGUP = 1.0
# After a prompt has been sent, the time its last packets take to come out of the phone's jitter
# buffer before the BYE.
PROMPT_TAIL = 0.4
# The keys of an in-call code come within this many seconds of each other; this many of the last
# are kept (longer than any in-call code).
KEY_GAP = 3.0
KEYS_KEPT = 8
# A phone that transferred its call away hangs up itself; after this long, Sentral does it.
TRANSFER_HANGUP = 5.0


# What the record shows as the target of the A leg of a call Sentral placed itself (``originate``).
ORIGINATED_LABEL = "sentral (click-to-call)"


def after_prompt(lasts: float | None) -> float:
    """How long after a prompt lasting ``lasts`` seconds (None: nothing could be played) its
    hearer may be hung up."""
    return FEATURE_HANGUP if lasts is None else lasts + PROMPT_TAIL


# -- the port: what the controller asks its driver to do ----------------------------------------


class CallPort(Protocol):
    """The IO the controller needs; the endpoint implements it, protocol tests fake it."""

    def respond(self, tx: ServerTransaction, response: Response) -> None:
        """Send ``response`` through server transaction ``tx``."""

    def send_request(self, request: Request, target: Target) -> ClientTransaction:
        """Start a client transaction for ``request`` towards ``target``."""

    def send_ack(self, request: Request, target: Target) -> None:
        """Send the end-to-end ACK of a 2xx (no transaction)."""

    def cancel(self, tx: ClientTransaction, reason: str = "") -> None:
        """CANCEL the INVITE of ``tx`` (held by the transaction layer until a 1xx came), with
        ``reason`` as its Reason header (RFC 3326) when given."""

    def local_address(self, target: Target) -> tuple[str, int]:
        """The host and port we are reached at by ``target`` (for Via and Contact)."""

    def record(self, report: CallReport, reply: tuple[ServerTransaction, Response] | None = None) -> None:
        """A call ended: store its record; then, if given, send ``reply`` (the 200 to the BYE that
        ended it), so that whoever saw the call end finds it in the records even after a crash."""

    def feature(self, call: Call, feature: Feature) -> None:
        """The caller dialled a feature code: carry it out, then call ``CallControl.feature_done``."""


# -- the media seam -----------------------------------------------------------------------------


class MediaPolicy(Protocol):
    """Every SDP body that crosses the B2BUA passes here, with the leg it is about to be sent on
    and the leg whose phone sent it; and what Sentral itself plays into calls.

    The SDP methods raise the SipError the body deserves (488, or 503 when the media cannot be
    set up now).
    """

    def offer(self, call: Call, leg: Leg, sdp: bytes, source: Leg) -> bytes:
        """An offer from ``source``'s phone, to be sent on ``leg``."""

    def answer(self, call: Call, leg: Leg, sdp: bytes, source: Leg) -> bytes:
        """An answer from ``source``'s phone, to be sent on ``leg``."""

    def answer_locally(self, call: Call, leg: Leg, offer: bytes, like: Leg | None = None) -> bytes:
        """Sentral answers ``leg``'s phone's ``offer`` itself (a feature code, a queue); with
        ``like``, in the codec ``like``'s phone uses, so that the two can be joined (488 when the
        offer lacks it)."""

    def offer_locally(self, call: Call, leg: Leg, like: Leg | None = None) -> bytes:
        """An offer of Sentral's own (for a phone that sent none, or a phone Sentral calls); with
        ``like``, of the codec ``like``'s phone uses only."""

    def join(self, call: Call, leg: Leg, other: Leg) -> None:
        """Relay ``leg``'s phone and ``other``'s to each other (a parked call retrieved)."""

    def move(self, call: Call, leg: Leg, into: Call, leg_id: str) -> None:
        """``leg``'s media leaves ``call`` for ``into``, where the leg is ``leg_id`` from now on,
        without the phone noticing (an attended transfer); SipError when it cannot be moved (media
        that does not pass through Sentral), and then nothing changed."""

    def answer_received(self, call: Call, leg: Leg, sdp: bytes) -> None:
        """``leg``'s phone answered (in its ACK) an offer of ``offer_locally`` or ``relay_offer``."""

    def anchored(self, call: Call, leg: Leg) -> bool:
        """True when ``leg``'s phone sends its media to the relay, where music and prompts reach it
        (False for a phone with direct media, and everywhere without a relay)."""

    def relay_offer(self, call: Call, leg: Leg) -> bytes | None:
        """An offer from the relay for ``leg``'s phone, whose media goes elsewhere (direct media);
        the leg is anchored, for the rest of the call, once the phone's answer reaches
        ``answer_received``. None when there is no relay to offer from."""

    def relay_refused(self, call: Call, leg: Leg) -> None:
        """``leg``'s phone did not take the offer of ``relay_offer``: its media stays where it was."""

    def play(self, call: Call, leg: Leg, names: Sequence[str]) -> float | None:
        """Play the prompts ``names`` to ``leg``'s phone: how many seconds they last, or None
        when nothing can be played."""

    def music(self, call: Call, leg: Leg, on: bool) -> bool:
        """Start (or stop) music to ``leg``'s phone; whether music now plays."""

    def ringback(self, call: Call, leg: Leg) -> bool:
        """Play the ringing tone to ``leg``'s phone, looping, until ``music(..., False)``; whether
        it plays."""

    def announce(self, call: Call, leg: Leg, names: Sequence[str]) -> bool:
        """Play the prompts ``names`` to ``leg``'s phone, which hears music, and the music again
        after them; whether they play."""

    def last_activity(self, call: Call) -> float | None:
        """When (``now``'s clock) a phone of the call last sent media; None when not known."""

    def on_hold(self, call: Call) -> bool:
        """True while a phone of the call is on hold."""

    def release_leg(self, call: Call, leg: Leg) -> None:
        """``leg`` is out of the call (a fork that lost, a leg cancelled or failed)."""

    def release(self, call: Call) -> None:
        """The call is over: forget whatever was kept for it."""


class OriginPerLeg:
    """SDP passes through; each leg gets its own o= line (``OriginRewriter``), nothing else changes.

    Sentral plays nothing in this mode: calls it answers itself get inactive media.
    """

    def __init__(self, address: str = "0.0.0.0") -> None:
        self.address = address
        self._rewriters: dict[Leg, OriginRewriter] = {}

    def _rewrite(self, leg: Leg, sdp: bytes) -> bytes:
        rewriter = self._rewriters.get(leg)
        if rewriter is None:
            rewriter = self._rewriters[leg] = OriginRewriter(entropy.randbits(48), self._address(leg))
        return rewriter.rewrite(parse_sdp(sdp)).to_bytes()

    def _address(self, leg: Leg) -> str:
        return leg.local[0] if leg.local[0] else self.address

    def offer(self, call: Call, leg: Leg, sdp: bytes, source: Leg) -> bytes:
        return self._rewrite(leg, sdp)

    def answer(self, call: Call, leg: Leg, sdp: bytes, source: Leg) -> bytes:
        return self._rewrite(leg, sdp)

    def answer_locally(self, call: Call, leg: Leg, offer: bytes, like: Leg | None = None) -> bytes:
        return self._rewrite(leg, _inactive_sdp(offer, self._address(leg)))

    def offer_locally(self, call: Call, leg: Leg, like: Leg | None = None) -> bytes:
        return self._rewrite(leg, _inactive_sdp(b"", self._address(leg)))

    def join(self, call: Call, leg: Leg, other: Leg) -> None:
        pass

    def move(self, call: Call, leg: Leg, into: Call, leg_id: str) -> None:
        # The phones send media to each other: joining one with a phone of another call would take
        # an SDP exchange with each, which this policy does not do.
        raise SipError(501, "Attended Transfer Needs Media Through Sentral")

    def answer_received(self, call: Call, leg: Leg, sdp: bytes) -> None:
        pass

    def anchored(self, call: Call, leg: Leg) -> bool:
        return False

    def relay_offer(self, call: Call, leg: Leg) -> bytes | None:
        return None

    def relay_refused(self, call: Call, leg: Leg) -> None:
        pass

    def origin(self, leg: Leg) -> OriginRewriter | None:
        """The o= line ``leg`` has been given so far (None before its first SDP): whoever takes
        the leg over goes on with it, as RFC 3264 §8 wants of a re-offer."""
        return self._rewriters.get(leg)

    def play(self, call: Call, leg: Leg, names: Sequence[str]) -> float | None:
        return None

    def music(self, call: Call, leg: Leg, on: bool) -> bool:
        return False

    def ringback(self, call: Call, leg: Leg) -> bool:
        return False

    def announce(self, call: Call, leg: Leg, names: Sequence[str]) -> bool:
        return False

    def last_activity(self, call: Call) -> float | None:
        return None

    def on_hold(self, call: Call) -> bool:
        return False

    def release_leg(self, call: Call, leg: Leg) -> None:
        self._rewriters.pop(leg, None)

    def release(self, call: Call) -> None:
        for leg in call.legs:
            self._rewriters.pop(leg, None)


RelayDone = Callable[[bool, float], None]
"""Told whether a phone's media is at the relay now (``CallControl.to_relay``), and ``now``."""

DtmfHandler = Callable[[str, str, Digit, float], None]
"""Told every key pressed on a phone of a call: the call's id, the leg's id ("a", "b1"...), the key
and ``now`` (what a ``sentral.media.collect.DigitCollector`` takes)."""


# -- the call-control vocabulary ---------------------------------------------------------------


@dataclass(slots=True, init=False, unsafe_hash=True)
class LegRinging:
    """A B leg sent 180/183 (``response``)."""

    leg: Leg
    response: Response

    def __init__(self, leg: Leg, response: Response) -> None:
        self.leg = leg
        self.response = response


@dataclass(slots=True, init=False, unsafe_hash=True)
class LegAnswered:
    """A B leg answered with a 2xx."""

    leg: Leg
    response: Response

    def __init__(self, leg: Leg, response: Response) -> None:
        self.leg = leg
        self.response = response


@dataclass(frozen=True, slots=True)
class LegFailed:
    """A B leg ended without answering: ``status`` is its final response (408 for a timeout)."""

    leg: Leg
    status: int


@dataclass(frozen=True, slots=True)
class Timer:
    """The strategy's own deadline (``next_deadline``) has come."""


CallEvent = LegRinging | LegAnswered | LegFailed | Timer


@dataclass(slots=True, init=False, unsafe_hash=True)
class Try:
    """Ring these targets (one new B leg each)."""

    targets: tuple[BindingRow, ...]

    def __init__(self, targets: tuple[BindingRow, ...]) -> None:
        self.targets = targets


@dataclass(slots=True, init=False, unsafe_hash=True)
class RingCaller:
    """Tell the caller the call is ringing (or progressing): relay ``response`` from ``leg``."""

    leg: Leg
    response: Response

    def __init__(self, leg: Leg, response: Response) -> None:
        self.leg = leg
        self.response = response


@dataclass(frozen=True, slots=True)
class Ringback:
    """Tell the caller the call is ringing though no phone rings yet (waiting in a queue); with
    ``music``, the caller hears music as early media instead, where the media layer can play it."""

    music: bool = False


@dataclass(slots=True, init=False, unsafe_hash=True)
class Connect:
    """Answer the caller with ``leg``'s 2xx: the two are in a call."""

    leg: Leg
    response: Response

    def __init__(self, leg: Leg, response: Response) -> None:
        self.leg = leg
        self.response = response


@dataclass(frozen=True, slots=True)
class Cancel:
    """Stop ringing ``leg`` (CANCEL, or ACK then BYE for a leg that answered too late)."""

    leg: Leg
    reason: str


@dataclass(frozen=True, slots=True)
class Fail:
    """Refuse the call to the caller with ``status``; ``reason`` goes in a Reason header."""

    status: int
    reason: str = ""
    cause: str = ""  # for the record; by default the status and its phrase ("486 Busy Here")
    headers: tuple[tuple[str, str], ...] = ()  # e.g. Retry-After with a 503


@dataclass(frozen=True, slots=True)
class Route:
    """Send the call on to ``number`` of the caller's clinic (a group's overflow), through the
    dial plan, as if the caller had dialled it; what rang so far is stopped first."""

    number: str
    cause: str = ""


@dataclass(frozen=True, slots=True)
class Announce:
    """Tell a caller waiting with music something (``names``: prompts in order), then music again."""

    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HangUp:
    """End the call on every leg; ``cause`` is what the record says."""

    cause: str


@dataclass(frozen=True, slots=True)
class ReOffer:
    """Pass a new offer (re-INVITE or UPDATE received on ``source``) to the other leg."""

    source: Leg
    tx: ServerTransaction
    request: Request


Command = Try | RingCaller | Ringback | Announce | Connect | Cancel | Fail | Route | HangUp | ReOffer


class RingStrategy(Protocol):
    """Decides who rings and what the caller hears; a routing policy, free of SIP."""

    def on_event(self, call: Call, event: CallEvent, now: float) -> list[Command]:
        """The commands that follow ``event``."""

    def next_deadline(self) -> float:
        """When the strategy wants a ``Timer`` event (``inf``: never)."""

    def ended(self, call: Call, now: float) -> None:
        """The call is over (answered and hung up, failed, or the caller gave up)."""


def failure_rank(status: int) -> int:
    """How telling a final failure is to the caller, lower first (RFC 3261 §16.7 in spirit).

    A 6xx is a definitive answer from a person (decline, busy everywhere) and wins; then 486 (busy
    here); then 480 and 408 (nobody there right now); then 404; then anything else by class.
    487 is our own CANCEL and tells nothing.
    """
    if 600 <= status < 700:
        return 0
    if status == 486:
        return 1
    if status in (480, 408):
        return 2
    if status == 404:
        return 3
    if status == 487:
        return 9
    return 4 if status < 500 else 5


def best_failure(statuses: Iterable[int]) -> tuple[int, str]:
    """The status the caller gets when every leg failed, and a reason text for it.

    A timeout (408) or our own cancel (487) becomes 480: the phones were there but nobody answered.
    """
    ranked = sorted(statuses, key=lambda s: (failure_rank(s), s))
    if not ranked:
        return 480, "No contact answered"
    best = ranked[0]
    if best in (408, 487):
        return 480, "No answer"
    return best, ""


class RingAll:
    """Forking: every target rings, the first to answer gets the call, the rest are cancelled.

    ``deadline`` is the no-answer timeout. With ``direct`` (a call to one person) a reject from
    any of their phones ends the call with that status; otherwise (a role call) the others ring on.
    """

    def __init__(self, deadline: float = inf, *, direct: bool = True, first: int = 0) -> None:
        self.deadline = deadline
        self.direct = direct
        # The B legs before this index are none of its business (a held call's legs from before
        # it rings someone: a transferring phone's, still up until it hangs up).
        self.first = first

    def _legs(self, call: Call) -> list[Leg]:
        return call.b_legs[self.first :] if self.first else call.b_legs

    def next_deadline(self) -> float:
        return self.deadline

    def ended(self, call: Call, now: float) -> None:
        pass

    def on_event(self, call: Call, event: CallEvent, now: float) -> list[Command]:
        match event:
            case LegRinging(leg=leg, response=response):
                return [RingCaller(leg, response)]
            case LegAnswered(leg=leg, response=response):
                legs = self._legs(call)
                others = [Cancel(other, "answered elsewhere") for other in legs if other is not leg]
                return [Connect(leg, response), *others]
            case LegFailed(status=status):
                legs = self._legs(call)
                if self.direct and status in REJECTS:
                    cancels = [Cancel(leg, "rejected") for leg in legs if not leg.done]
                    return [*cancels, Fail(status, "", f"{status} {_reason_text(status)}")]
                if any(not leg.done for leg in legs):
                    return []
                status, reason = best_failure(leg.status or 480 for leg in legs)
                return [Fail(status, reason)]
            case Timer():
                self.deadline = inf
                cancels = [Cancel(leg, "no answer") for leg in self._legs(call) if not leg.done]
                return [*cancels, Fail(480, "No answer", "no answer timeout")]
            case _:
                assert_never(event)


class GroupCalls(Protocol):
    """Ring groups and functions: their hunts, queues and memory (``sentral.pbx.hunting``)."""

    def ring(self, call: Call, group: GroupEntry, acute: bool, now: float) -> RingStrategy:
        """The strategy that rings ``group`` for ``call``; its first commands come from a ``Timer``
        event the controller sends at once."""

    def freed(self, now: float) -> list[Call]:
        """Calls waiting in a queue that may ring now (an extension became free or logged in);
        the controller sends each a ``Timer`` event."""


class LineObserver(Protocol):
    """Told each extension's phase in each call: presence and busy-lamp fields."""

    def line(
        self,
        domain: str,
        extension: str,
        call_key: str,
        phase: Phase,
        direction: Party,
        acute: bool,
        now: float,
        dialog: DialogIds | None = None,
    ) -> None:
        """``extension``'s part in call ``call_key`` is now ``phase``; while it rings, ``dialog``
        names Sentral's dialog with its phone (what a busy-lamp key's pickup replaces)."""


class CallWatch(Protocol):
    """Told, synchronously, that a call may have changed (its state, its legs, a feature's hold on
    it): the web's event feed. It must be quick, since it runs inside the SIP engine's work."""

    def call_changed(self, call: Call, now: float) -> None:
        """``call`` may have changed; ``call.lines`` holds each extension's phase as just told."""


# -- features: what is built on the core ---------------------------------------------------------

# What the dial plan decides for a number a feature owns (a feature code, a park number or slot,
# a pickup code).
FeatureDecision = Feature | Park | Retrieve | Pickup | Outside | Refused


class CallFeature(Protocol):
    """A feature built on call control (``sentral.pbx.features``), asked at the core's hooks in
    turn; each answers whether the matter was its own, and the first that says so has it."""

    def dialled(self, call: Call, decision: FeatureDecision, now: float) -> bool:
        """``call`` is new, to a number the dial plan gives a feature: whether this one took it."""

    def keyed(self, call: Call, leg: Leg, keys: str, now: float) -> bool:
        """``leg``'s phone, talking in ``call``, pressed ``keys`` lately (newest last, each within
        ``KEY_GAP`` of the one before): whether they end in a code of this feature's."""

    def refer(
        self,
        call: Call,
        leg: Leg,
        tx: ServerTransaction,
        request: Request,
        target: Uri,
        decision: Decision,
        now: float,
    ) -> bool:
        """``leg``'s phone sent a REFER whose one Refer-To names ``target`` (read once, by the core),
        which the dial plan decides ``decision`` for: whether this feature answered it."""

    def carried_out(self, call: Call, outcome: str, now: float) -> bool:
        """The port carried out, for ``call``, what a feature asked of it (``CallPort.feature``);
        ``outcome`` says what was done: whether it was this feature that asked."""

    def replaces(self, call: Call, old: Call, leg: Leg, now: float) -> bool:
        """``call`` is new, an INVITE with Replaces (RFC 3891) naming ``leg``'s dialog in ``old``, a
        call of the same clinic: whether this feature took it (an attended transfer completing,
        a busy-lamp pickup)."""


class Forwarding(Protocol):
    """Call forwarding (``sentral.pbx.features.forward``), asked whenever a call is routed to a
    number: where a call to someone's extension goes instead, and how their phones ring."""

    def forward(self, call: Call, number: str, decision: Decision, now: float) -> str | None:
        """The number ``call``, routed to ``number`` (which the dial plan decides ``decision`` for),
        goes on to at once instead (an unconditional or busy forward), or None to go ahead."""

    def ringing(self, call: Call, number: str, strategy: RingAll, now: float) -> RingStrategy:
        """The strategy that rings ``number``'s phones for ``call``: ``strategy``, or one that goes
        on to a forward when they are busy or nobody answers."""


class CallHolder(Protocol):
    """A feature that holds an answered call with its A leg alone (a parked call): it gets the
    call's commands and its timer, and is told when the call ends."""

    def command(self, call: Call, command: Command, now: float) -> None:
        """Carry out what ``call``'s strategy (ringing someone back) commands."""

    def on_timer(self, call: Call, now: float) -> None:
        """``call``'s ``recall_at``, or its strategy's deadline, may have come."""

    def ring_as(self, call: Call, leg: Leg) -> tuple[str, str]:
        """The display name and user ``leg``'s phone, rung for ``call``, is shown as the caller."""

    def ended(self, call: Call, now: float) -> None:
        """``call`` ended while held."""


# -- calls and legs ------------------------------------------------------------------------------


class Side(Enum):
    """A: the caller's leg (we are UAS). B: a callee's leg (we are UAC)."""

    A = "a"
    B = "b"


class LegState(Enum):
    """Where one leg stands."""

    CALLING = "calling"  # INVITE under way, nothing heard yet (A: nothing sent but 100)
    EARLY = "early"  # ringing
    ANSWERED = "answered"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ENDED = "ended"


class CallState(Enum):
    """Where a call stands."""

    TRYING = "trying"
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"


@dataclass(eq=False, slots=True)
class Carrier:
    """How a leg to a carrier is addressed: the trunk it goes out on, the Request-URI and To, the
    From and the identity headers (``P-Asserted-Identity``, ``Privacy``), and the credentials that
    answer the carrier's digest challenge (``password`` never printed)."""

    trunk: str
    uri: str
    to: str
    from_: str
    headers: tuple[tuple[str, str], ...] = ()
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    # Digest: the Authorization header answering the last challenge, and its nonces so far.
    authorization: tuple[str, str] | None = None
    nonces: tuple[str, ...] = ()


@dataclass(eq=False, slots=True)
class Leg:
    """One side of a call: its own dialog, transaction state, offer/answer and session timer."""

    id: str
    side: Side
    target: Target
    label: str  # what the record shows as the leg's target
    extension: str  # whose phone: the caller's (A) or the rung member's (B)
    call_id: str
    local_tag: str
    local: tuple[str, int]
    contact: str
    started: float
    state: LegState = LegState.CALLING
    dialog: Dialog | None = None
    forks: ForkedDialogs | None = None
    invite_tx: ClientTransaction | None = None  # until its final response: what a CANCEL needs
    invite_client: ClientTransaction | None = None  # for as long as the transaction lives
    offer: OfferAnswer = field(default_factory=OfferAnswer)
    timer: SessionTimer | None = None
    timer_request: TimerRequest | None = None
    status: int | None = None
    ringing: float | None = None
    answered: float | None = None
    ended: float | None = None
    last_sdp: bytes = b""
    peer_allow: tuple[str, ...] = ()
    # Our 2xx to an INVITE received on this leg, retransmitted until its ACK (RFC 3261 §13.3.1.4).
    rtx: Response | None = None
    rtx_seq: int = 0  # its CSeq number: the response itself is kept as text once sent
    rtx_tx: ServerTransaction | None = None
    rtx_at: float = inf
    rtx_interval: float = 0.0
    rtx_give_up: float = inf
    # The ACK owed on this leg for a 2xx whose answer has to come from the other leg's ACK.
    held_ack: Response | None = None
    # The last ACK we sent on this leg for the initial 2xx, re-sent on its retransmissions.
    last_ack: Request | None = None
    refresh_pending: bool = False
    outcome: str = ""  # what the record says of a leg that left in a way of its own ("parked")
    # This leg's phone put the call on hold: the last offer it made that was accepted said so.
    holding: bool = False
    # ``to_relay`` waits to try again (after a 491, or an exchange under way): when, and whom to tell.
    relay_retry_at: float = inf
    relay_then: RelayDone | None = None
    # A leg to a carrier (a trunk): how its INVITE is addressed and answers the carrier's challenge.
    carrier: Carrier | None = None

    @property
    def done(self) -> bool:
        """True once the leg has failed, been cancelled or ended."""
        return self.state in (LegState.FAILED, LegState.CANCELLED, LegState.ENDED)

    @property
    def transport(self) -> str:
        return self.target.transport


@dataclass(slots=True, init=False, unsafe_hash=True)
class Caller:
    """The authenticated caller: clinic, extension and the name the directory gives. A caller from
    outside (a call in on a trunk) is ``outside``: its "extension" is its number (E.164), which has
    no line, no presence and no busy state here, and ``trunk`` names the trunk it came in on. Once
    the clinic's records know an outside caller (``CallControl.identify``), ``name`` is theirs and
    ``kind``, ``reference`` and ``source`` say what they are, their record and who knew them."""

    clinic: ClinicEntry
    extension: str
    name: str
    outside: bool
    trunk: str
    kind: str
    reference: str
    source: str

    def __init__(
        self,
        clinic: ClinicEntry,
        extension: str,
        name: str,
        outside: bool = False,
        trunk: str = "",
        kind: str = "",
        reference: str = "",
        source: str = "",
    ) -> None:
        self.clinic = clinic
        self.extension = extension
        self.name = name
        self.outside = outside
        self.trunk = trunk
        self.kind = kind
        self.reference = reference
        self.source = source


@dataclass(frozen=True, slots=True)
class CallerIdentity:
    """Who an outside caller is, as the clinic's records say: the name the phones show, the kind
    ("patient", "contact", "staff"), the record's reference for the clinic platform and the
    adapter that knew them."""

    name: str
    kind: str
    reference: str
    source: str


class RoutingHold(Protocol):
    """A feature that asks a new call's caller something before the call is routed (the
    national-ID prompt): told the keys the caller presses and the time while it holds the call."""

    def digit(self, call: Call, digit: Digit, now: float) -> None:
        """The caller pressed a key."""

    def on_timer(self, call: Call, now: float) -> None:
        """``next_deadline`` came."""

    def next_deadline(self, call: Call) -> float:
        """When ``on_timer`` is next due for ``call`` (``math.inf``: never)."""

    def ended(self, call: Call, now: float) -> None:
        """The call ended (or was routed on) while held."""


@dataclass(eq=False, slots=True)
class Call:
    """One call: the A leg, the B legs tried, and what happened when."""

    id: str
    caller: Caller
    callee: str
    callee_name: str
    a: Leg
    invite: Request
    # The caller's INVITE transaction: kept until the ACK for our 2xx to it has come, then dropped
    # with what it holds (an answered call lives for minutes; that state is no longer needed).
    invite_tx: ServerTransaction | None
    started: float
    strategy: RingStrategy
    timer_uas: Negotiated | None
    acute: bool = False  # an emergency or acute call: offered first, phones told
    group: str = ""  # the group or function that rang, for the record
    b_legs: list[Leg] = field(default_factory=list)
    state: CallState = CallState.TRYING
    winner: Leg | None = None
    rang: float | None = None
    answered: float | None = None
    ended: float | None = None
    hangup_by: str = ""
    cause: str = ""
    status: int | None = None
    heap_at: float = inf
    a_sdp: bytes = b""
    # The 200 to the BYE that ends the call: sent only once the call's record is stored.
    bye_reply: tuple[ServerTransaction, Response] | None = None
    # Each extension's phase as last told to the line observer.
    lines: dict[str, Phase] = field(default_factory=dict)
    routes: int = 0  # how often the call was sent on (overflow, forwards): bounds loops
    # The forwards the call followed, in order: (extension, kind, number it went on to).
    forwarded: tuple[tuple[str, str, str], ...] = ()
    hangup_at: float = inf  # a call Sentral answered itself ends then
    early_media: bool = False  # the caller has an early answer of Sentral's own (queue music)
    music: bool = False  # music plays to the caller
    # The extensions this call keeps busy: its two talking phones.
    occupying: tuple[str, ...] = ()
    # A call a feature holds with its A leg alone (parked): the feature, which takes its commands
    # and its timer (due at recall_at); the slot it waits on, which `sentral calls` shows.
    holder: CallHolder | None = None
    parked: str = ""
    recall_at: float = inf
    leaving: Leg | None = None  # a leg done with the call (a parker hearing the slot): BYE at leave_at
    leave_at: float = inf
    # When the B legs' fork state (their INVITE, the dialogs of other forks, the last ACK) may go:
    # 64*T1 after the answer, when no retransmitted or late 2xx can come any more.
    settle_at: float = inf
    # Each transfer of the call, for its record (the transfer features add them).
    transfers: list[TransferReport] = field(default_factory=list)
    # While a transfer rings someone for the call: the transferring phone's URI, which the
    # INVITEs carry as Referred-By (RFC 3892).
    referred_by: str = ""
    # Who `sentral calls` shows talking (caller, callee) once a feature gave the call to others
    # than its caller and callee (a transfer); empty: the call's own.
    listed: tuple[str, ...] = ()
    # A new call whose routing is held (``CallControl.hold``): the number it goes to once
    # released, and when it is released at the latest; a feature asking the caller something.
    routing: str | None = None
    route_at: float = inf
    asking: RoutingHold | None = None

    @property
    def legs(self) -> list[Leg]:
        return [self.a, *self.b_legs]

    @property
    def over(self) -> bool:
        """True once the call has ended."""
        return self.state is CallState.ENDED

    def peer(self, leg: Leg) -> Leg | None:
        """The leg ``leg`` talks to, once the call is answered."""
        if leg is self.a:
            return self.winner
        return self.a if leg is self.winner else None


@dataclass(slots=True, init=False, unsafe_hash=True)
class LegReport:
    """One leg in a call's record."""

    leg: str
    side: str
    target: str
    outcome: str
    status: int | None
    started: float
    ringing: float | None
    answered: float | None
    ended: float | None

    def __init__(
        self,
        leg: str,
        side: str,
        target: str,
        outcome: str,
        status: int | None,
        started: float,
        ringing: float | None,
        answered: float | None,
        ended: float | None,
    ) -> None:
        self.leg = leg
        self.side = side
        self.target = target
        self.outcome = outcome
        self.status = status
        self.started = started
        self.ringing = ringing
        self.answered = answered
        self.ended = ended


@dataclass(frozen=True, slots=True)
class TransferReport:
    """One transfer of a call, for its record: when, by whom (the transferring extension), how
    (``kind``: "blind", "attended" or "semi-attended"), to what number, and how it ended
    (``outcome``: "answered" by the target, "returned" to the transferer, "failed", or "" while
    under way)."""

    at: float
    by: str
    kind: str
    target: str
    outcome: str = ""


@dataclass(slots=True, init=False, unsafe_hash=True)
class CallReport:
    """The record of one finished call; times are on the controller's ``now`` clock."""

    call_id: str
    clinic: str
    caller: str
    caller_name: str
    callee: str
    callee_name: str
    sip_call_id: str
    status: int | None
    legs: tuple[LegReport, ...]
    started: float
    rang: float | None
    answered: float | None
    ended: float
    hangup_by: str  # "caller", "callee" or "system"
    cause: str
    # The extension whose phone answered (the first to, when a transfer or retrieve brought
    # another); "" when nobody did. A group's number is dialled; a member answers.
    answered_by: str
    transfers: tuple[TransferReport, ...]  # in the order they happened
    # The forwards the call followed, in order: (extension, kind, number it went on to).
    forwarded: tuple[tuple[str, str, str], ...]
    # What the clinic's records say of an outside caller ("" when they know nothing).
    caller_kind: str
    caller_reference: str
    caller_source: str

    def __init__(
        self,
        call_id: str,
        clinic: str,
        caller: str,
        caller_name: str,
        callee: str,
        callee_name: str,
        sip_call_id: str,
        status: int | None,
        legs: tuple[LegReport, ...],
        started: float,
        rang: float | None,
        answered: float | None,
        ended: float,
        hangup_by: str,
        cause: str,
        answered_by: str = "",
        transfers: tuple[TransferReport, ...] = (),
        forwarded: tuple[tuple[str, str, str], ...] = (),
        caller_kind: str = "",
        caller_reference: str = "",
        caller_source: str = "",
    ) -> None:
        self.call_id = call_id
        self.clinic = clinic
        self.caller = caller
        self.caller_name = caller_name
        self.callee = callee
        self.callee_name = callee_name
        self.sip_call_id = sip_call_id
        self.status = status
        self.legs = legs
        self.started = started
        self.rang = rang
        self.answered = answered
        self.ended = ended
        self.hangup_by = hangup_by
        self.cause = cause
        self.answered_by = answered_by
        self.transfers = transfers
        self.forwarded = forwarded
        self.caller_kind = caller_kind
        self.caller_reference = caller_reference
        self.caller_source = caller_source


# A live call's state while a phone holds it (the others are ``CallState`` values).
HELD = "held"


@dataclass(frozen=True, slots=True)
class LiveCall:
    """A call in progress, for `sentral calls`."""

    call_id: str
    clinic: str
    caller: str
    callee: str
    state: str
    started: float
    answered: float | None
    legs: int
    parked: str = ""  # the slot it waits on
    # What the clinic's records say of the caller (an outside caller's name, once known).
    caller_name: str = ""
    caller_kind: str = ""
    caller_reference: str = ""
    caller_source: str = ""


@dataclass(frozen=True, slots=True)
class CallSettings:
    """Timers of call control, in seconds, and the language its callers are spoken to in."""

    no_answer: float = 60.0
    session_interval: int = 1800
    min_se: int = MIN_SE_FLOOR
    # A blind transfer nobody answers this long rings the transferring phone again.
    transfer_recall: float = 30.0
    language: str = "nb"
    # The toll-fraud guard: international calls in progress at once, per clinic and per member of staff.
    international_calls: int = 10
    international_calls_per_staff: int = 2


class Purpose(Enum):
    """Why we sent a client request: how its responses are handled."""

    INVITE = "invite"  # the initial INVITE of a B leg
    RELAY = "relay"  # a request passed across from the other leg
    REFRESH = "refresh"  # our own session refresh
    TO_RELAY = "to relay"  # our own re-INVITE bringing a phone's media to the relay (``to_relay``)


@dataclass(eq=False, slots=True, init=False)
class Pending:
    """A client transaction of ours and what to do with its responses."""

    call: Call
    leg: Leg
    purpose: Purpose
    source: Leg | None = None
    source_tx: ServerTransaction | None = None
    source_request: Request | None = None
    timer: Negotiated | None = None
    then: RelayDone | None = None  # TO_RELAY: told whether the phone moved
    retried: bool = False  # TO_RELAY: this is the retry after a 491

    def __init__(
        self,
        call: Call,
        leg: Leg,
        purpose: Purpose,
        source: Leg | None = None,
        source_tx: ServerTransaction | None = None,
        source_request: Request | None = None,
        timer: Negotiated | None = None,
        then: RelayDone | None = None,
        retried: bool = False,
    ) -> None:
        self.call = call
        self.leg = leg
        self.purpose = purpose
        self.source = source
        self.source_tx = source_tx
        self.source_request = source_request
        self.timer = timer
        self.then = then
        self.retried = retried


@dataclass(eq=False, slots=True, init=False)
class Settling:
    """What a callee leg of an ended call keeps while its INVITE transaction lingers (64*T1
    after a 2xx): enough to ACK a retransmitted 2xx again, and to ACK and BYE a late one from
    another fork. The call itself, and the rest of the leg, can go.

    Thousands of these linger under load, so each keeps as little as the garbage collector would
    have to visit: the answering fork's To tag rather than its dialog, the INVITE and the ACK as
    text, and the dialogs of forks that had not answered are formed again if they answer late.
    """

    forks: ForkedDialogs
    answered: str | None
    last_ack: Request | None
    target: Target
    local: tuple[str, int]

    def __init__(
        self,
        forks: ForkedDialogs,
        answered: str | None,
        last_ack: Request | None,
        target: Target,
        local: tuple[str, int],
    ) -> None:
        self.forks = forks
        self.answered = answered
        self.last_ack = last_ack
        self.target = target
        self.local = local

    @classmethod
    def of(cls, leg: Leg, invite: Request) -> Settling:
        """What ``leg``, whose INVITE was ``invite``, leaves behind."""
        invite.forget_parsed()
        if leg.last_ack is not None:
            leg.last_ack.forget_parsed()
        answered = leg.dialog.remote_tag if leg.dialog is not None else None
        return cls(ForkedDialogs(invite), answered, leg.last_ack, leg.target, leg.local)


# -- the controller ------------------------------------------------------------------------------


def _token() -> str:
    return entropy.token_hex(8)





def sdp_of(message: Request | Response) -> bytes:
    """A message's SDP body, or b"" when it carries none."""
    return message.body if message.body and message.content_type == SDP else b""


def _inactive_sdp(offer: bytes, address: str) -> bytes:
    """An answer to ``offer`` with every stream inactive (or, with no offer, such an offer), for
    calls Sentral answers itself before the media layer plays anything into them."""
    if not offer:
        net = f"IN {'IP6' if ':' in address else 'IP4'} {address}"
        return (
            f"v=0\r\no=sentral 0 0 {net}\r\ns=-\r\nc={net}\r\nt=0 0\r\nm=audio 9 RTP/AVP 0 8\r\na=inactive\r\n"
        ).encode()
    sdp = parse_sdp(offer).with_direction(Direction.INACTIVE)
    ports = [0 if media.rejected else 9 for media in sdp.media]
    return sdp.with_connection(address, ports).to_bytes()


def _info_digit(request: Request) -> Digit | None:
    """The key an INFO carries as application/dtmf-relay or application/dtmf, if it does."""
    content_type = request.header("content-type") or ""
    if content_type.split(";", 1)[0].strip().lower() not in (DTMF_RELAY, DTMF):
        return None
    try:
        return parse_info(content_type, request.body)
    except SipError:
        return None  # not a key we can read: still passed on, as any INFO


def _replaces_of(request: Request) -> Replaces | None:
    """The dialog an INVITE asks to replace (its Replaces header), if any; SipError(400) for a
    malformed one or two of them."""
    values = request.header_values("replaces")
    if not values:
        return None
    if len(values) > 1:
        raise SipError(400, "An INVITE replaces one dialog")
    return parse_replaces(values[0])


def _invite_tx(call: Call) -> ServerTransaction:
    """The caller's INVITE transaction, which a call has until its 2xx is acknowledged."""
    tx = call.invite_tx
    if tx is None:
        raise RuntimeError(f"call {call.id} is answered and acknowledged: its INVITE transaction is gone")
    return tx


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@functools.lru_cache(maxsize=64)
def _listen(text: str) -> Listen:
    """A binding's listener, parsed once: every call to a phone needs it, and there are few."""
    return parse_listen(text)


def binding_target(row: BindingRow) -> Target:
    """Where requests for a binding go: back the way its REGISTER came (transport, source
    address, and the listener or connection it arrived on)."""
    listen_text, _, conn = row.local_listen.partition("#")
    try:
        listen = _listen(listen_text)
    except ValueError:
        return Target(row.transport, row.source_host, row.source_port)
    return Target(row.transport, row.source_host, row.source_port, listen, int(conn) if conn.isdigit() else 0)


class CallControl:
    """The B2BUA: every call, their legs, and the timers they run on."""

    def __init__(
        self,
        port: CallPort,
        dialplan: DialPlan,
        directory: Callable[[], Directory],
        bindings: BindingsLookup,
        *,
        settings: CallSettings | None = None,
        media: MediaPolicy | None = None,
        timings: Timings | None = None,
        groups: GroupCalls | None = None,
        lines: LineObserver | None = None,
        features: Callable[[CallControl], Sequence[CallFeature]] | None = None,
    ) -> None:
        self.port = port
        self.dialplan = dialplan
        self.directory = directory
        self.bindings = bindings
        self.settings = settings or CallSettings()
        self.media: MediaPolicy = media or OriginPerLeg()
        self.timings = timings or Timings()
        self.groups = groups
        self.lines = lines
        # The event feed, while someone listens (None otherwise: the engine then pays one test).
        self.watch: CallWatch | None = None
        # (domain, extension) -> how many answered calls that extension is in.
        self.busy: dict[tuple[str, str], int] = {}
        self._serving = False  # inside members_changed: calls it wakes must not wake it again
        self.calls: dict[str, Call] = {}
        # Told every DTMF key pressed in a call (the IVR and national-ID prompts will listen here).
        self.on_dtmf: DtmfHandler | None = None
        self._invites: dict[ServerTransaction, Call] = {}
        self._legs: dict[tuple[str, str], tuple[Call, Leg]] = {}
        self._pending: dict[ClientTransaction, Pending] = {}
        self._settling: dict[ClientTransaction, Settling] = {}
        # (deadline, sequence, call id): by id, so that an entry left over from an ended call
        # does not keep the call alive until it comes up.
        self._heap: list[tuple[float, int, str]] = []
        self._seq = count()
        # The park lots that the dial plan's park numbers and slots lead to; the directory's
        # changes reach them here, and the parking feature keeps calls on them.
        self.lots = ParkLots()
        # (call id, leg id) -> the keys that leg pressed lately and when the last came.
        self._keys: dict[tuple[str, str], tuple[str, float]] = {}
        self.version = 0  # bumps whenever the set of calls or a call's state changes
        # Asked in this order at the hooks. The wiring gives the clinic's features
        # (``sentral.pbx.features.standard``); the core alone has none.
        # Where calls to someone's extension go instead; the wiring's features set it.
        self.forwarding: Forwarding | None = None
        self.features: tuple[CallFeature, ...] = tuple(features(self)) if features is not None else ()

    def __len__(self) -> int:
        return len(self.calls)

    # -- new calls -------------------------------------------------------------------------------

    def on_invite(
        self,
        tx: ServerTransaction,
        request: Request,
        origin: Origin,
        caller: Caller,
        now: float,
        *,
        acute: bool = False,
        dialled: str | None = None,
        hold_until: float | None = None,
    ) -> Call | None:
        """A new INVITE (no To tag) from an authenticated phone, or from a carrier on a trunk;
        ``acute`` when it came with ``Priority: emergency`` from a trusted source; ``dialled``, the
        number to route to when it is not the Request-URI's (a public number's destination);
        ``hold_until``: route it only when ``release`` says so, or at that time (``hold``). The
        call, or None when the INVITE was refused at once."""
        tx.auto_trying = False
        try:
            max_forwards = request.max_forwards
            if max_forwards is not None and max_forwards <= 0:
                raise SipError(483, "Too Many Hops")
            self.port.respond(tx, make_response(request, 100))
            unsupported = [t for t in request.tokens("require") if t not in SUPPORTED]
            if unsupported:
                raise SipError(420, "Bad Extension", headers=(("Unsupported", ", ".join(unsupported)),))
            if request.body and request.content_type != SDP:
                raise SipError(415, "Unsupported Media Type", headers=(("Accept", SDP),))
            if len(request.contacts) != 1:
                raise SipError(400, "An INVITE needs one Contact")
            sdp = sdp_of(request)
            if sdp:
                parse_sdp(sdp)
            negotiated = negotiate_uas(
                request,
                min_se=self.settings.min_se,
                default_interval=self.settings.session_interval,
                prefer=Refresher.UAC,
            )
            if isinstance(negotiated, IntervalTooSmall):
                raise negotiated.error()
            replaces = _replaces_of(request)
        except SipError as exc:
            self._refuse(tx, request, exc.status, exc.reason, exc.headers)
            return None
        number = dialled or request.uri.user_unescaped or dialled_number(request.uri_text)
        target = Target(origin.transport, origin.host, origin.port, origin.local, origin.conn_id)
        local = self.port.local_address(target)
        a = Leg(
            id="a",
            side=Side.A,
            target=target,
            label=f"{caller.extension}@{origin.host}:{origin.port}",
            extension=caller.extension,
            call_id=request.call_id,
            local_tag=_token(),
            local=local,
            contact=local_contact(origin.transport, local),
            started=now,
            peer_allow=tuple(request.tokens("allow")),
        )
        a.offer.receive(request)
        call = Call(
            id=_token(),
            caller=caller,
            callee=number,
            callee_name="",
            a=a,
            invite=request,
            invite_tx=tx,
            started=now,
            strategy=RingAll(),
            timer_uas=negotiated,
            a_sdp=sdp,
            acute=acute,
        )
        self.calls[call.id] = call
        self._invites[tx] = call
        self._legs[(a.call_id, a.local_tag)] = (call, a)
        self.version += 1
        if replaces is not None:
            self._replacing(call, replaces, now)
        elif hold_until is not None:
            self.hold(call, number, hold_until)
        else:
            self._route(call, number, now)
        self._tell_lines(call, now)
        return call

    def originate(self, caller: Caller, number: str, holder: CallHolder, now: float) -> Call:
        """A call Sentral places itself on ``caller``'s behalf to ``number`` (click-to-call): no
        INVITE came in, so its A leg is Sentral's own, ended from the start, and ``holder`` holds
        the call from the first moment, ringing the caller's phones first (``ring``). The call is
        answered in the core's sense (a held call with its A leg alone) but ``answered`` stays
        unset until ``holder`` says someone answered."""
        domain = caller.clinic.domain
        a = Leg(
            id="a",
            side=Side.A,
            target=Target("udp", "", 0),
            label=ORIGINATED_LABEL,
            extension="",  # nobody's line: the caller's phones are rung as B legs
            call_id=_token(),
            local_tag=_token(),
            local=("", 0),
            contact="",
            started=now,
            state=LegState.ENDED,
            ended=now,
        )
        invite = Request.build(
            "INVITE",
            f"sip:{number}@{domain}",
            [
                ("Max-Forwards", "70"),
                ("From", f"<sip:{caller.extension}@{domain}>;tag={a.local_tag}"),
                ("To", f"<sip:{number}@{domain}>"),
                ("Call-ID", a.call_id),
                ("CSeq", "1 INVITE"),
            ],
        )
        call = Call(
            id=_token(),
            caller=caller,
            callee=number,
            callee_name="",
            a=a,
            invite=invite,
            invite_tx=None,
            started=now,
            strategy=RingAll(),
            timer_uas=None,
            state=CallState.ANSWERED,
            holder=holder,
        )
        self.calls[call.id] = call
        self.version += 1
        return call

    def _route(self, call: Call, number: str, now: float) -> None:
        caller = call.caller
        decision = self.dialplan.route(
            Query(caller.clinic, number, self.directory(), self.bindings, caller.extension)
        )
        self._ring(call, decision, now, number)

    # -- holding a new call's routing --------------------------------------------------------------
    #
    # Some calls cannot be routed the moment they arrive: who calls is still being looked up in
    # the clinic's records (with a time budget), or a feature asks the caller something first
    # (the national-ID prompt). Such a call waits, with its caller hearing nothing or what the
    # feature plays, until ``release`` or its ``route_at``; it is then routed as any other call.

    def hold(self, call: Call, number: str, until: float) -> None:
        """Hold ``call``'s routing to ``number`` until ``release``, or ``until`` at the latest."""
        call.routing = number
        call.route_at = until
        self._arm(call)

    def held(self, call_id: str) -> Call | None:
        """The call ``call_id`` if its routing is held."""
        call = self.calls.get(call_id)
        return call if call is not None and call.routing is not None and not call.over else None

    def ask(self, call: Call, asking: RoutingHold, until: float = inf) -> None:
        """Let ``asking`` hold ``call`` (its routing already held) and hear its keys, until it
        releases the call or ``until``."""
        call.asking = asking
        call.route_at = until
        self._arm(call)

    def release(self, call_id: str, now: float) -> None:
        """Route the held call ``call_id`` now (nothing when it is not held any more)."""
        call = self.held(call_id)
        if call is not None:
            self._release(call, now)

    def _release(self, call: Call, now: float) -> None:
        number = call.routing
        assert number is not None
        asking = call.asking
        call.routing = None
        call.route_at = inf
        call.asking = None
        if asking is not None:
            asking.ended(call, now)
        self._route(call, number, now)
        self._tell_lines(call, now)
        self._arm(call)

    def identify(self, call_id: str, identity: CallerIdentity, now: float) -> None:
        """The clinic's records know the caller of ``call_id``: the phones rung from now on show
        the name, and the live call and its record carry it (an answer that came late, after the
        phones began ringing, still reaches those two)."""
        call = self.calls.get(call_id)
        if call is None or call.over:
            return
        old = call.caller
        call.caller = Caller(
            old.clinic,
            old.extension,
            identity.name,
            old.outside,
            old.trunk,
            identity.kind,
            identity.reference,
            identity.source,
        )
        self.version += 1
        watch = self.watch
        if watch is not None:
            watch.call_changed(call, now)

    def _replacing(self, call: Call, replaces: Replaces, now: float) -> None:
        """``call``'s INVITE names a dialog to replace (RFC 3891 §3): the features are offered the
        leg of that dialog. A dialog Sentral does not have (or has for another clinic) is 481, a
        confirmed one asked for ``early-only`` 486, and one no feature can replace 481 too."""
        entry = self._legs.get((replaces.call_id, replaces.to_tag))
        if entry is not None:
            old, leg = entry
            remote = leg.dialog.remote_tag if leg.dialog is not None else None
            # A ringing phone's dialog is one of the early dialogs its INVITE made.
            early = leg.forks.early if leg.dialog is None and leg.forks is not None else []
            if (
                old is call
                or old.over
                or old.caller.clinic.domain != call.caller.clinic.domain
                or (remote is not None and remote != replaces.from_tag)
                or (early and all(dialog.remote_tag != replaces.from_tag for dialog in early))
            ):
                entry = None
        if entry is None:
            self._execute(call, Fail(481, "No Such Dialog To Replace"), now)
            return
        old, leg = entry
        if replaces.early_only and leg.state is LegState.ANSWERED:
            self._execute(call, Fail(486, "Dialog Confirmed"), now)
            return
        for feature in self.features:
            if feature.replaces(call, old, leg, now):
                return
        self._execute(call, Fail(481, "Dialog Cannot Be Replaced"), now)

    def _ring(self, call: Call, decision: Decision, now: float, number: str = "") -> None:
        """Carry out the dial plan's ``decision`` for ``call`` routed to ``number``."""
        forwarding = self.forwarding
        if forwarding is not None and number:
            onward = forwarding.forward(call, number, decision, now)
            if onward is not None:
                self._reroute(call, onward, now)
                return
        match decision:
            case Reject(status=status, reason=reason):
                self._execute(call, Fail(status, reason), now)
            case Ring(contacts=contacts, name=name, direct=direct):
                call.callee_name = name
                ring = RingAll(now + self.settings.no_answer, direct=direct)
                call.strategy = forwarding.ringing(call, number, ring, now) if forwarding and number else ring
                self._execute(call, Try(contacts), now)
                self._arm(call)
            case RingGroup(group=group, acute=acute):
                if self.groups is None:
                    self._execute(call, Fail(404, "Not Found"), now)
                    return
                call.callee_name = group.name
                call.group = group.name
                call.acute = call.acute or acute
                call.strategy = self.groups.ring(call, group, call.acute, now)
                self._event(call, Timer(), now)
                self._arm(call)
            case Play(names=names):
                call.callee_name = call.callee_name or "announcement"
                self.answer_and_play(call, names, now)
            case Feature() | Park() | Retrieve() | Pickup() | Outside() | Refused():
                self._dialled(call, decision, now)
            case _:
                assert_never(decision)

    def _refuse(
        self,
        tx: ServerTransaction,
        request: Request,
        status: int,
        reason: str,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.port.respond(tx, make_response(request, status, reason, to_tag=_token(), headers=headers))

    # -- carrying out commands -----------------------------------------------------------------

    def _execute(self, call: Call, command: Command, now: float) -> None:
        holder = call.holder
        if holder is not None:
            holder.command(call, command, now)
            return
        match command:
            case Try(targets=targets):
                if call.state is CallState.ENDED:
                    return
                for row in targets:
                    try:
                        self._start_b_leg(call, row, now)
                    except SipError as exc:
                        # The caller's media cannot be set up towards a phone (no relay port, an
                        # SDP the media layer refuses): nobody else could be rung either.
                        self._execute(call, Fail(exc.status, exc.reason, headers=exc.headers), now)
                        return
                if not call.b_legs:
                    self._execute(call, Fail(480, "No contact"), now)
            case RingCaller(leg=leg, response=response):
                self._ring_caller(call, leg, response, now)
            case Ringback(music=music):
                waiting = call.state in (CallState.TRYING, CallState.RINGING)
                if music and waiting and not call.music:
                    if call.early_media:
                        # Back in the queue after a member's phone rang: the music again.
                        call.music = self.media.music(call, call.a, True)
                    elif self._early_music(call, now):
                        pass
                    elif call.state is CallState.TRYING:
                        self._ring_caller(call, None, None, now)
                elif call.state is CallState.TRYING:
                    self._ring_caller(call, None, None, now)
            case Announce(names=names):
                if call.music and call.state in (CallState.TRYING, CallState.RINGING):
                    self.media.announce(call, call.a, names)
            case Connect(leg=leg, response=response):
                self._connect(call, leg, response, now)
            case Cancel(leg=leg):
                self._cancel_leg(call, leg, now)
            case Fail(status=status, reason=reason, cause=cause, headers=headers):
                self._fail(call, status, reason, cause, now, headers)
            case Route(number=number):
                self._reroute(call, number, now)
            case HangUp(cause=cause):
                self._hang_up(call, "system", cause, now)
            case ReOffer(source=source, tx=tx, request=request):
                self._relay(call, source, tx, request, now)
            case _:
                assert_never(command)

    def _event(self, call: Call, event: CallEvent, now: float) -> None:
        if call.state is CallState.ENDED:
            return
        strategy = call.strategy
        for command in strategy.on_event(call, event, now):
            if call.strategy is not strategy or call.over:
                break  # routed on, or ended: the rest of the old strategy's commands is moot
            self._execute(call, command, now)
        self._tell_lines(call, now)
        if self.groups is not None:
            self.members_changed(now)  # a group call answered or given up may let a queue move

    def _reroute(self, call: Call, number: str, now: float) -> None:
        """Send a call that has not been answered on to ``number`` (a group's overflow, a forward)."""
        if call.state not in (CallState.TRYING, CallState.RINGING):
            return
        call.routes += 1
        if call.routes > MAX_ROUTES:
            self._execute(call, Fail(480, "Overflow loop", "overflow loop"), now)
            return
        for leg in call.b_legs:
            self._cancel_leg(call, leg, now)
        call.strategy.ended(call, now)
        call.strategy = RingAll()
        caller = call.caller
        decision = self.dialplan.route(
            Query(caller.clinic, number, self.directory(), self.bindings, caller.extension)
        )
        self._ring(call, decision, now, number)

    def _tell_lines(self, call: Call, now: float) -> None:
        """Tell the line observer every extension whose phase in ``call`` changed."""
        lines = self.lines
        if lines is None:
            if self.watch is not None:
                self.watch.call_changed(call, now)
            return
        phases: dict[str, Phase] = {}
        ringing: dict[str, Leg] = {}  # each ringing extension's first ringing leg
        a = call.a
        if a.extension and (not call.caller.outside or a.id != "a"):
            phases[a.extension] = _CALL_PHASE[call.state]
        ended = call.state is CallState.ENDED
        for leg in call.b_legs:
            if leg.carrier is not None or not leg.extension:
                continue  # a number outside the clinic, or Sentral's own leg: no line here
            if ended or leg.done or (leg.state is LegState.ANSWERED and leg is not call.winner):
                phase = Phase.TERMINATED
            else:
                phase = _LEG_PHASE[leg.state]
                if phase is Phase.EARLY:
                    ringing.setdefault(leg.extension, leg)
            known = phases.get(leg.extension)
            if known is None or _PHASE_RANK[phase] > _PHASE_RANK[known]:
                phases[leg.extension] = phase
        told = call.lines
        domain = call.caller.clinic.domain
        for extension, phase in phases.items():
            before = told.get(extension)
            if before is not phase and (before is not None or phase is not Phase.TERMINATED):
                told[extension] = phase
                party = Party.INITIATOR if extension == a.extension else Party.RECIPIENT
                rung = ringing.get(extension) if phase is Phase.EARLY else None
                ids = _early_ids(rung) if rung is not None else None
                lines.line(domain, extension, call.id, phase, party, call.acute, now, dialog=ids)
        watch = self.watch
        if watch is not None:
            watch.call_changed(call, now)

    def _start_b_leg(self, call: Call, row: BindingRow, now: float) -> None:
        self._new_b_leg(call, binding_target(row), row.contact, row.extension, row.contact, row.path, now)

    def ring_carrier(self, call: Call, target: Target, carrier: Carrier, number: str, now: float) -> Leg:
        """Ring ``number`` (E.164) for ``call`` through a carrier at ``target``, addressed as
        ``carrier`` says: a B leg like a phone's, whose media is always anchored at the relay.
        Raises SipError when the caller's media cannot be set up towards it."""
        leg = self._new_b_leg(
            call, target, f"{carrier.trunk}:{number}", number, carrier.uri, (), now, carrier=carrier
        )
        return leg

    def _new_b_leg(
        self,
        call: Call,
        target: Target,
        label: str,
        extension: str,
        uri: str,
        path: Sequence[str],
        now: float,
        *,
        carrier: Carrier | None = None,
    ) -> Leg:
        local = self.port.local_address(target)
        leg = Leg(
            id=f"b{len(call.b_legs) + 1}",
            side=Side.B,
            target=target,
            label=label,
            extension=extension,
            call_id=_token(),
            local_tag=_token(),
            local=local,
            contact=local_contact(target.transport, local),
            started=now,
            timer_request=TimerRequest(interval=self.settings.session_interval, min_se=self.settings.min_se),
            carrier=carrier,
        )
        call.b_legs.append(leg)
        self._legs[(leg.call_id, leg.local_tag)] = (call, leg)
        try:
            self._send_b_invite(call, leg, uri, path, 1, now)
            return leg
        except SipError as exc:
            leg.state = LegState.FAILED
            leg.status = exc.status
            leg.ended = now
            self.media.release_leg(call, leg)
            raise

    def _send_b_invite(
        self, call: Call, leg: Leg, uri: str, path: Sequence[str], seq: int, now: float
    ) -> None:
        caller = call.caller
        domain = caller.clinic.domain
        max_forwards = call.invite.max_forwards
        headers: list[tuple[str, str]] = [
            ("Via", local_via(leg.transport, leg.local)),
            ("Max-Forwards", str(max_forwards - 1 if max_forwards is not None else 70)),
        ]
        headers.extend(("Route", value) for value in path)
        name = f"{_quote(caller.name)} " if caller.name else ""
        user, callee = caller.extension, call.callee
        holder = call.holder
        if holder is not None:
            # A held call rings someone back (a parked call its parker): addressed to them, from
            # whom the feature says.
            display, user = holder.ring_as(call, leg)
            name, callee = f"{_quote(display)} ", leg.extension
        carrier = leg.carrier
        if carrier is not None:
            # To a carrier: addressed and identified as the trunk's outbound policy made it.
            headers += [("From", f"{carrier.from_};tag={leg.local_tag}"), ("To", carrier.to)]
            headers.extend(carrier.headers)
            if carrier.authorization is not None:
                headers.append(carrier.authorization)
        else:
            headers += [
                ("From", f"{name}<sip:{user}@{domain}>;tag={leg.local_tag}"),
                ("To", f"<sip:{callee}@{domain}>"),
            ]
            if caller.outside and caller.name and holder is None:
                # An outside caller the clinic's records know: the phone shows the name, from
                # either header (RFC 3325, within the clinic's own trust domain).
                headers.append(("P-Asserted-Identity", f"{name}<sip:{user}@{domain}>"))
        headers += [
            ("Call-ID", leg.call_id),
            ("CSeq", f"{seq} INVITE"),
            ("Contact", leg.contact),
            ("Allow", ALLOW),
        ]
        if leg.timer_request is not None:
            headers.extend(leg.timer_request.headers())
        if call.acute:
            headers.append(("Priority", "emergency"))
            if carrier is None:
                headers.append(("Alert-Info", ACUTE_ALERT))  # the phone's red ring, not the network's
        if holder is not None and call.referred_by:
            headers.append(("Referred-By", f"<{call.referred_by}>"))
        body = b""
        if holder is not None:
            body = self.media.offer_locally(call, leg, like=call.a)
        elif call.a_sdp:
            body = self.media.offer(call, leg, call.a_sdp, call.a)
        if body:
            headers.append(("Content-Type", SDP))
            leg.last_sdp = body
        request = Request.build("INVITE", uri, headers, body)
        leg.offer = OfferAnswer()
        leg.offer.send(request)
        leg.forks = ForkedDialogs(request)
        tx = self.port.send_request(request, leg.target)
        leg.invite_tx = leg.invite_client = tx
        self._pending[tx] = Pending(call, leg, Purpose.INVITE)

    def _ring_caller(self, call: Call, source: Leg | None, response: Response | None, now: float) -> None:
        """Send the caller a 180 (or the 183 of ``response``), with ``source``'s early SDP."""
        if call.state not in (CallState.TRYING, CallState.RINGING):
            return
        a = call.a
        sdp = sdp_of(response) if response is not None else b""
        body = b""
        if sdp and source is not None and a.offer.state is OfferState.REMOTE_OFFER:
            try:
                body = self.media.answer(call, a, sdp, source)
            except SipError:
                body = b""
            if body and call.music:
                # The phone being rung has early media of its own: the caller hears that instead.
                call.music = self.media.music(call, a, False)
        status = response.status if response is not None and response.status in (180, 183) else 180
        self._provisional(call, status, body, now)

    def _early_music(self, call: Call, now: float) -> bool:
        """Answer the caller's offer from the relay in a 183 and play music: False when that
        cannot be done (no offer in the INVITE, no media layer that plays)."""
        played = self._early(call, lambda a: 0.0 if self.media.music(call, a, True) else None, now)
        if played is None:
            return False  # an answer not sent: what it set up serves the members' legs later
        call.music = True
        return True

    def early_prompt(self, call: Call, names: Sequence[str], now: float) -> float | None:
        """Play the prompts ``names`` to ``call``'s caller as early media (a 183 answered from the
        relay), before a refusal: how long they last, or None when they cannot be played (no offer
        in the INVITE, no media layer that plays)."""
        return self._early(call, lambda a: self.media.play(call, a, names), now)

    def _early(self, call: Call, play: Callable[[Leg], float | None], now: float) -> float | None:
        """Answer the caller's offer from the relay and, if ``play`` starts something on the A leg
        (saying how long it lasts), send that answer in a 183; None when nothing could start."""
        a = call.a
        if not call.a_sdp or a.offer.state is not OfferState.REMOTE_OFFER:
            return None
        try:
            body = self.media.answer_locally(call, a, call.a_sdp)
        except SipError:
            return None
        lasts = play(a)
        if lasts is None:
            return None
        call.early_media = True
        self._provisional(call, 183, body, now)
        return lasts

    def _provisional(self, call: Call, status: int, body: bytes, now: float) -> None:
        """Send the caller a 180 or 183, with ``body`` as early SDP if there is one."""
        a = call.a
        headers = [("Contact", a.contact), ("Allow", ALLOW)]
        if body:
            headers.append(("Content-Type", SDP))
        ringing = make_response(call.invite, status, to_tag=a.local_tag, headers=headers, body=body)
        if a.dialog is None:
            a.dialog = Dialog.as_uas(call.invite, ringing, a.contact)
        a.offer.send(ringing)
        a.state = LegState.EARLY
        if call.state is CallState.TRYING:
            call.state = CallState.RINGING
            call.rang = a.ringing = now
            self.version += 1
        self.port.respond(_invite_tx(call), ringing)

    def _connect(self, call: Call, leg: Leg, response: Response, now: float) -> None:
        a = call.a
        sdp = sdp_of(response)
        late_offer = not call.a_sdp
        body = b""
        if sdp:
            try:
                body = (
                    self.media.offer(call, a, sdp, leg)
                    if late_offer
                    else self.media.answer(call, a, sdp, leg)
                )
            except SipError as exc:
                # The callee's SDP cannot be relayed: it has answered, so ACK and BYE it, and
                # the caller is refused with the media layer's status.
                self._ack(leg, response)
                self._bye(call, leg, now)
                self._fail(
                    call, exc.status, exc.reason, f"{exc.status} media: {exc.reason}", now, exc.headers
                )
                return
        if call.music:
            call.music = self.media.music(call, a, False)
        call.winner = leg
        call.state = CallState.ANSWERED
        call.answered = a.answered = now
        call.settle_at = now + self.timings.timeout
        self.version += 1
        self._occupy(call, a.extension)
        self._occupy(call, leg.extension)
        if late_offer:
            leg.held_ack = response  # the answer comes with the caller's ACK
        else:
            self._ack(leg, response)
        self._answer_a(call, self._timed_headers(call, now), body, now)
        self._arm(call)

    def _timed_headers(self, call: Call, now: float) -> list[tuple[str, str]]:
        """The headers of the 200 that answers the caller, with the session timer negotiated from
        its INVITE (RFC 4028), which starts on the A leg now."""
        a = call.a
        headers = [("Contact", a.contact), ("Allow", ALLOW), ("Supported", ", ".join(SUPPORTED))]
        if call.timer_uas is not None:
            headers.extend(call.timer_uas.headers())
            a.timer = SessionTimer.start(
                call.timer_uas, uas=True, now=now, method=refresh_method(list(a.peer_allow))
            )
        return headers

    def _answer_a(self, call: Call, headers: list[tuple[str, str]], body: bytes, now: float) -> None:
        """Send the caller its 200 with ``headers`` and ``body`` (SDP, if any): the A leg's dialog is
        confirmed, and the 2xx goes out again until its ACK comes."""
        a = call.a
        if body:
            headers = [*headers, ("Content-Type", SDP)]
            a.last_sdp = body
        ok = make_response(call.invite, 200, to_tag=a.local_tag, headers=headers, body=body)
        if a.dialog is None:
            a.dialog = Dialog.as_uas(call.invite, ok, a.contact)
        else:
            a.dialog.response_sent(ok)
        a.offer.send(ok)
        a.state = LegState.ANSWERED
        self._send_2xx(a, _invite_tx(call), ok, now)

    def _send_2xx(self, leg: Leg, tx: ServerTransaction, response: Response, now: float) -> None:
        leg.rtx = response
        leg.rtx_seq = response.cseq.seq
        leg.rtx_tx = tx
        leg.rtx_interval = self.timings.t1
        # Over a reliable transport the 2xx is not retransmitted, but the ACK is still awaited.
        leg.rtx_at = inf if tx.reliable else now + self.timings.t1
        leg.rtx_give_up = now + self.timings.timeout
        self.port.respond(tx, response)

    def _ack(self, leg: Leg, response: Response, body: bytes = b"") -> None:
        """ACK a 2xx received on ``leg`` (its initial INVITE or a re-INVITE)."""
        dialog = leg.dialog
        if dialog is None:
            return
        try:
            ack = dialog.ack_for(
                response, local_via(leg.transport, leg.local), body=body, content_type=SDP if body else None
            )
        except ValueError:
            return
        if body:
            leg.offer.send(ack)
        if response.cseq.seq == dialog.initial_seq:
            leg.last_ack = ack
        self.port.send_ack(ack, leg.target)

    def _cancel_leg(self, call: Call, leg: Leg, now: float, reason: str = "") -> None:
        match leg.state:
            case LegState.CALLING | LegState.EARLY:
                leg.state = LegState.CANCELLED
                leg.status = 487
                leg.ended = now
                if leg.invite_tx is not None:
                    self.port.cancel(leg.invite_tx, reason)
                self.media.release_leg(call, leg)
            case LegState.ANSWERED:
                if call.winner is not leg:
                    self._bye(call, leg, now)
                    self.media.release_leg(call, leg)
            case LegState.FAILED | LegState.CANCELLED | LegState.ENDED:
                pass
            case _:
                assert_never(leg.state)

    def _fail(
        self,
        call: Call,
        status: int,
        reason: str,
        cause: str,
        now: float,
        extra: Sequence[tuple[str, str]] = (),
    ) -> None:
        a = call.a
        headers = list(extra)
        if reason:
            headers.append(("Reason", f'SIP;cause={status};text="{reason}"'))
        if call.state in (CallState.TRYING, CallState.RINGING):
            response = make_response(call.invite, status, to_tag=a.local_tag, headers=headers)
            a.offer.send(response)
            self.port.respond(_invite_tx(call), response)
        a.state = LegState.FAILED
        a.status = status
        call.status = status
        for leg in call.b_legs:
            self._cancel_leg(call, leg, now)
        # A refusal the callee's phones gave is theirs; no answer, no contact, no such number is ours.
        by = (
            "callee"
            if any(leg.state is LegState.FAILED and leg.status != 408 for leg in call.b_legs)
            else "system"
        )
        self._finish(call, by, cause or f"{status} {_reason_text(status)}", now)

    def _bye(self, call: Call, leg: Leg, now: float, reason: str = "") -> None:
        dialog = leg.dialog
        if dialog is None or dialog.state is DialogState.TERMINATED:
            return
        headers = [("Reason", reason)] if reason else []
        try:
            bye = dialog.request("BYE", via=local_via(leg.transport, leg.local), headers=headers)
        except DialogError:
            return
        leg.state = LegState.ENDED
        leg.ended = now
        self.port.send_request(bye, leg.target)  # its answer changes nothing

    def _hang_up(self, call: Call, by: str, cause: str, now: float, *, spare: Leg | None = None) -> None:
        """End the call on every leg but ``spare`` (the one whose BYE we are answering)."""
        if call.state is CallState.ENDED:
            return
        reason = f'SIP;cause=200;text="{cause}"' if by == "system" else ""
        a = call.a
        if call.state is CallState.ANSWERED:
            for leg in call.legs:
                if leg is spare or leg.done:
                    continue
                if leg.state is LegState.ANSWERED:
                    self._bye(call, leg, now, reason)
                else:
                    self._cancel_leg(call, leg, now)
        else:
            for leg in call.b_legs:
                self._cancel_leg(call, leg, now)
            if a.state in (LegState.CALLING, LegState.EARLY):
                response = make_response(call.invite, 487 if by == "caller" else 480, to_tag=a.local_tag)
                self.port.respond(_invite_tx(call), response)
                a.status = response.status
                call.status = response.status
        for leg in call.legs:
            if not leg.done:
                leg.state = LegState.ENDED
                leg.ended = now
        self._finish(call, by, cause, now)

    def _finish(self, call: Call, by: str, cause: str, now: float) -> None:
        if call.state is CallState.ENDED:
            return
        call.state = CallState.ENDED
        call.ended = now
        call.hangup_by = by
        call.cause = cause
        if call.status is None:
            call.status = 200 if call.answered is not None else None
        if call.holder is not None:
            call.holder.ended(call, now)
        if call.asking is not None:
            call.asking.ended(call, now)
            call.asking = None
        call.routing = None
        for leg in call.legs:
            if leg.ended is None:
                leg.ended = now
            leg.rtx = None
            leg.rtx_at = inf
            self._legs.pop((leg.call_id, leg.local_tag), None)
            self._keys.pop((call.id, leg.id), None)
            tx = leg.invite_client
            if tx is not None and self._pending.pop(tx, None) is not None and leg.forks is not None:
                self._settling[tx] = Settling.of(leg, leg.forks.invite)
        if call.invite_tx is not None:
            self._invites.pop(call.invite_tx, None)
        self.calls.pop(call.id, None)
        self.media.release(call)
        self.version += 1
        call.strategy.ended(call, now)
        self._relay_given_up(call, now)
        self._tell_lines(call, now)
        self.port.record(self._report(call), call.bye_reply)
        if call.occupying:
            for extension in call.occupying:
                self._vacate(call.caller.clinic.domain, extension)
            call.occupying = ()
            self.members_changed(now)

    def feature_done(self, call_id: str, outcome: str, now: float) -> None:
        """The port carried out what a feature asked of it (``CallPort.feature``): ``outcome`` says
        what was done, and the feature answers the call (a feature code: the prompt that says so)."""
        call = self.calls.get(call_id)
        if call is None or call.state not in (CallState.TRYING, CallState.RINGING):
            return
        for feature in self.features:
            if feature.carried_out(call, outcome, now):
                return

    def feature_failed(self, call_id: str, status: int, reason: str, now: float) -> None:
        """A feature code could not be carried out: refuse the call with ``status``."""
        call = self.calls.get(call_id)
        if call is not None and call.state in (CallState.TRYING, CallState.RINGING):
            self._execute(call, Fail(status, reason), now)

    def _answer_locally(self, call: Call, now: float) -> None:
        """Answer the caller ourselves, with no phone behind: the SDP comes from the media layer
        (inactive media when it cannot give any, so the answer still goes out)."""
        a = call.a
        call.state = CallState.ANSWERED
        call.answered = a.answered = now
        self.version += 1
        try:
            body = (
                self.media.answer_locally(call, a, call.a_sdp)
                if call.a_sdp
                else self.media.offer_locally(call, a)
            )
        except SipError:
            body = _inactive_sdp(call.a_sdp, a.local[0] or "0.0.0.0")
        self._answer_a(call, [("Contact", a.contact), ("Allow", ALLOW)], body, now)
        self._tell_lines(call, now)

    def members_changed(self, now: float) -> None:
        """Someone became free, logged in or registered: calls waiting in a queue may ring now."""
        if self.groups is None:
            return
        for call in self.groups.freed(now):
            if call.state is not CallState.ENDED:
                self._event(call, Timer(), now)
                self._arm(call)

    def _report(self, call: Call) -> CallReport:
        legs = tuple(
            LegReport(
                leg=leg.id,
                # A phone that joined the call (a picker, a retriever: an INVITE we answered, its leg
                # renamed) is on the callee's side of the record; the caller's leg keeps "a".
                side=Side.B.value if leg.side is Side.A and leg.id != "a" else leg.side.value,
                target=leg.label,
                outcome=_outcome(call, leg),
                status=leg.status,
                started=leg.started,
                ringing=leg.ringing,
                answered=leg.answered,
                ended=leg.ended,
            )
            for leg in call.legs
        )
        assert call.ended is not None
        answered = [leg for leg in call.legs if leg is not call.a and leg.answered is not None]
        first = min(answered, key=lambda leg: leg.answered or 0.0) if answered else None
        return CallReport(
            call_id=call.id,
            clinic=call.caller.clinic.domain,
            caller=call.caller.extension,
            caller_name=call.caller.name,
            callee=call.callee,
            callee_name=call.callee_name,
            sip_call_id=call.a.call_id,
            status=call.status,
            legs=legs,
            started=call.started,
            rang=call.rang,
            answered=call.answered,
            ended=call.ended,
            hangup_by=call.hangup_by,
            cause=call.cause,
            answered_by=first.extension if first is not None else "",
            transfers=tuple(call.transfers),
            forwarded=call.forwarded,
            caller_kind=call.caller.kind,
            caller_reference=call.caller.reference,
            caller_source=call.caller.source,
        )

    # -- responses to our requests -------------------------------------------------------------

    def on_response(self, tx: ClientTransaction, response: Response, now: float) -> None:
        """A response to a request we sent (retransmitted 2xx responses included)."""
        pending = self._pending.get(tx)
        if pending is None:
            settling = self._settling.get(tx)
            if settling is not None:
                self._settling_response(settling, response)
            return
        match pending.purpose:
            case Purpose.INVITE:
                self._b_invite_response(pending.call, pending.leg, response, now)
            case Purpose.RELAY:
                self._relay_response(pending, response, now)
            case Purpose.REFRESH:
                self._refresh_response(pending, response, now)
            case Purpose.TO_RELAY:
                self._to_relay_response(pending, tx.request, response, now)
            case _:
                assert_never(pending.purpose)

    def _settling_response(self, settling: Settling, response: Response) -> None:
        """A response to the INVITE of a callee leg whose call has ended."""
        if not 200 <= response.status < 300:
            return  # a provisional one changes nothing now; a failure the layer has ACKed
        try:
            answered = response.to_tag is not None and response.to_tag == settling.answered
            dialog = None if answered else settling.forks.receive(response)
        except (SipError, ValueError):
            return
        if answered:
            if settling.last_ack is not None:
                self.port.send_ack(settling.last_ack, settling.target)  # a retransmitted 2xx
            return
        if dialog is None:
            return
        # A late answer from another fork (or after our CANCEL): ACK it, then BYE it.
        bye = self._ack_late(dialog, response, settling.target, settling.local)
        if bye is not None:
            self.port.send_request(bye, settling.target)

    def on_stray_response(self, response: Response, now: float) -> None:
        """A response matching no transaction: re-ACK a retransmitted 2xx of a leg we know."""
        if not 200 <= response.status < 300 or response.cseq.method != "INVITE":
            return
        entry = self._legs.get((response.call_id, response.from_tag or ""))
        if entry is None:
            return
        _, leg = entry
        if leg.last_ack is not None and leg.dialog is not None and response.to_tag == leg.dialog.remote_tag:
            self.port.send_ack(leg.last_ack, leg.target)

    def on_timeout(self, tx: ClientTransaction | ServerTransaction, now: float) -> None:
        """Timer B/F fired or the transport failed for a transaction of ours."""
        if isinstance(tx, ServerTransaction):
            return
        pending = self._finished(tx)
        if pending is None:
            return
        call, leg = pending.call, pending.leg
        match pending.purpose:
            case Purpose.INVITE:
                if leg.state in (LegState.CALLING, LegState.EARLY):
                    leg.state = LegState.FAILED
                    leg.status = 408
                    leg.ended = now
                    self.media.release_leg(call, leg)
                    self._event(call, LegFailed(leg, 408), now)
            case Purpose.RELAY | Purpose.REFRESH:
                if pending.source_tx is not None and pending.source_request is not None:
                    self.port.respond(pending.source_tx, make_response(pending.source_request, 408))
                self._hang_up(call, "system", "request timeout", now)
            case Purpose.TO_RELAY:
                self._moved(pending, False, now)  # the phone did not answer: its media stays where it was
            case _:
                assert_never(pending.purpose)

    def on_terminated(self, tx: ClientTransaction | ServerTransaction) -> None:
        """A transaction left the layer."""
        if not isinstance(tx, ClientTransaction):
            return
        pending = self._finished(tx)
        if pending is not None and pending.leg.invite_client is tx:
            pending.leg.invite_client = None  # an answered call may last for hours: let it go

    def _finished(self, tx: ClientTransaction) -> Pending | None:
        """A client transaction of ours is over: what was pending on it, if anything; an ended
        call's fork state kept for it goes."""
        pending = self._pending.pop(tx, None)
        if pending is None:
            self._settling.pop(tx, None)
        return pending

    def _b_invite_response(self, call: Call, leg: Leg, response: Response, now: float) -> None:
        status = response.status
        if status == 100 or leg.forks is None:
            return
        if status >= 200:
            leg.invite_tx = None  # nothing left to CANCEL: the transaction layer finishes it alone
        try:
            dialog = leg.forks.receive(response)
        except (SipError, ValueError):
            dialog = None
            if 200 <= status < 300:
                return  # a 2xx we cannot build a dialog from: let Timer B end the leg
        if status < 200:
            if leg.state is not LegState.CALLING and leg.state is not LegState.EARLY:
                return
            leg.offer.receive(response)
            if status in (180, 183):
                if leg.ringing is None:
                    leg.ringing = now
                leg.state = LegState.EARLY
                self._event(call, LegRinging(leg, response), now)
            return
        if status < 300:
            if dialog is None:
                return
            if leg.dialog is dialog and leg.state in (LegState.ANSWERED, LegState.ENDED):
                if leg.last_ack is not None:
                    self.port.send_ack(leg.last_ack, leg.target)  # a retransmitted 2xx
                return
            first = leg.dialog is None
            leg.dialog = dialog if first else leg.dialog
            if not first or call.winner is not None or call.state is CallState.ENDED or leg.done:
                # Too late (another fork or contact won, or we cancelled): ACK, then BYE.
                self._late_answer(call, leg, dialog, response, now)
                return
            leg.offer.receive(response)
            leg.state = LegState.ANSWERED
            leg.status = status
            leg.answered = now
            leg.peer_allow = tuple(response.tokens("allow"))
            if leg.timer_request is not None:
                negotiated = leg.timer_request.on_2xx(response)
                if negotiated is not None:
                    leg.timer = SessionTimer.start(
                        negotiated, uas=False, now=now, method=refresh_method(list(leg.peer_allow))
                    )
            self._event(call, LegAnswered(leg, response), now)
            return
        # A final failure: the transaction layer has ACKed it.
        leg.offer.receive(response)
        if (
            status in (401, 407)
            and leg.carrier is not None
            and leg.state in (LegState.CALLING, LegState.EARLY)
            and leg.forks is not None
            and self._answer_challenge(leg.carrier, response, leg.forks.invite)
        ):
            self._pending = {k: v for k, v in self._pending.items() if v.leg is not leg}
            seq = leg.forks.invite.cseq.seq + 1
            try:
                self._send_b_invite(call, leg, leg.forks.invite.uri_text, (), seq, now)
                return
            except SipError as exc:
                status = exc.status
        if (
            status == 422
            and leg.timer_request is not None
            and leg.state in (LegState.CALLING, LegState.EARLY)
        ):
            retry = leg.timer_request.after_422(response)
            if retry is not None and leg.forks is not None:
                leg.timer_request = retry
                self._pending = {k: v for k, v in self._pending.items() if v.leg is not leg}
                seq = leg.forks.invite.cseq.seq + 1
                try:
                    self._send_b_invite(call, leg, leg.forks.invite.uri_text, (), seq, now)
                    return
                except SipError as exc:
                    status = exc.status
        if leg.state is LegState.CANCELLED:
            return
        if leg.state in (LegState.CALLING, LegState.EARLY):
            leg.state = LegState.FAILED
            leg.status = status
            leg.ended = now
            self.media.release_leg(call, leg)
            self._event(call, LegFailed(leg, status), now)

    @staticmethod
    def _answer_challenge(carrier: Carrier, response: Response, invite: Request) -> bool:
        """Fill in ``carrier``'s Authorization for the challenge in ``response`` (a 401 or 407 to
        ``invite``): False when there is nothing to answer with (no credentials, no challenge we
        support, a nonce already answered: the password is wrong)."""
        if carrier.username is None or carrier.password is None:
            return False
        proxy = response.status == 407
        values = response.header_values("proxy-authenticate" if proxy else "www-authenticate")
        try:
            challenge = choose_challenge(values)
        except SipError:
            return False
        if challenge is None or (challenge.nonce in carrier.nonces and not challenge.stale):
            return False
        value = authorization(
            challenge, "INVITE", invite.uri_text, carrier.username, carrier.password, cnonce=_token()
        )
        carrier.authorization = ("Proxy-Authorization" if proxy else "Authorization", value)
        carrier.nonces = (*carrier.nonces[-3:], challenge.nonce)
        return True

    def _ack_late(
        self, dialog: Dialog, response: Response, target: Target, local: tuple[str, int]
    ) -> Request | None:
        """ACK a 2xx that came too late to be taken; return the BYE that ends its dialog (None if
        the response could not be ACKed)."""
        try:
            self.port.send_ack(dialog.ack_for(response, local_via(target.transport, local)), target)
            return dialog.request("BYE", via=local_via(target.transport, local))
        except (ValueError, DialogError):
            return None

    def _late_answer(self, call: Call, leg: Leg, dialog: Dialog, response: Response, now: float) -> None:
        bye = self._ack_late(dialog, response, leg.target, leg.local)
        if bye is None:
            return
        if leg.state in (LegState.CALLING, LegState.EARLY, LegState.CANCELLED):
            leg.state = LegState.ENDED if leg.state is not LegState.CANCELLED else leg.state
            leg.ended = leg.ended or now
        if leg is not call.winner:
            self.media.release_leg(call, leg)
        self.port.send_request(bye, leg.target)

    # -- requests inside calls -----------------------------------------------------------------

    def on_cancel(
        self, tx: ServerTransaction, request: Request, invite_tx: ServerTransaction | None, now: float
    ) -> None:
        """A CANCEL from a caller."""
        call = self._invites.get(invite_tx) if invite_tx is not None else None
        if invite_tx is None:
            self.port.respond(tx, make_response(request, 481, to_tag=_token()))
            return
        if call is None:
            # The INVITE was answered and its 2xx acknowledged (RFC 3261 §9.2: 200, no effect),
            # with the To tag of that answer.
            answered = invite_tx.last_response
            tag = answered.to_tag if answered is not None and answered.to_tag else _token()
            self.port.respond(tx, make_response(request, 200, to_tag=tag))
            return
        self.port.respond(tx, make_response(request, 200, to_tag=call.a.local_tag))
        if call.state in (CallState.TRYING, CallState.RINGING):
            self._hang_up(call, "caller", "CANCEL", now)

    def on_ack(self, request: Request, now: float) -> None:
        """An ACK for a 2xx we sent."""
        entry = self._legs.get((request.call_id, request.to_tag or ""))
        if entry is None:
            return
        call, leg = entry
        if leg.rtx is not None and request.cseq.seq == leg.rtx_seq:
            leg.rtx = None
            leg.rtx_at = inf
            leg.rtx_give_up = inf
            if leg.rtx_tx is not None and leg.rtx_tx is call.invite_tx:
                # The caller's INVITE transaction is over for both sides: a retransmitted INVITE
                # is the transaction layer's to absorb, and nothing else needs it.
                self._invites.pop(leg.rtx_tx, None)
                call.invite_tx = None
            leg.rtx_tx = None
            self._arm(call)
        else:
            return  # a retransmitted ACK, or one for a 2xx we no longer know
        sdp = sdp_of(request)
        if sdp:
            with contextlib.suppress(SipError):
                leg.offer.receive(request)
        other = call.peer(leg)
        if sdp and (other is None or other.held_ack is None):
            # The answer to an offer of Sentral's own (a call it answered itself, a retrieved call).
            with contextlib.suppress(SipError):
                self.media.answer_received(call, leg, sdp)
        if other is not None and other.held_ack is not None:
            held = other.held_ack
            other.held_ack = None
            body = b""
            if sdp:
                try:
                    body = self.media.answer(call, other, sdp, leg)
                except SipError:
                    body = b""
            self._ack(other, held, body)

    def on_request(self, tx: ServerTransaction, request: Request, now: float) -> None:
        """A request other than a new INVITE, CANCEL or ACK: BYE, re-INVITE, UPDATE, INFO, PRACK."""
        method = request.method
        entry = self._legs.get((request.call_id, request.to_tag or "")) if request.to_tag else None
        if entry is None:
            self.port.respond(tx, make_response(request, 481))
            return
        call, leg = entry
        dialog = leg.dialog
        # A caller asked something before the call is routed (the national-ID prompt hears it in
        # early media) may key in with INFO in the early dialog (RFC 6086 §4.2).
        early_keys = method == "INFO" and call.asking is not None and leg is call.a
        if (
            dialog is None
            or (dialog.state is not DialogState.CONFIRMED and not early_keys)
            or dialog.remote_tag != (request.from_tag or "")
        ):
            self.port.respond(tx, make_response(request, 481))
            return
        if method == "INVITE" or method == "UPDATE":
            refusal = leg.offer.refusal(request)
            if refusal is None and method == "INVITE" and (leg.rtx is not None or leg.held_ack is not None):
                refusal_status: tuple[int, str] | None = (491, "Request Pending")
            else:
                refusal_status = None
            if refusal is not None:
                error = refusal.error(secrets.randbelow(11))
                self.port.respond(
                    tx, make_response(request, error.status, error.reason, headers=error.headers)
                )
                return
            if refusal_status is not None:
                self.port.respond(tx, make_response(request, *refusal_status))
                return
        try:
            dialog.receive_request(request)
        except SipError as exc:
            self.port.respond(tx, make_response(request, exc.status, exc.reason, headers=exc.headers))
            return
        match method:
            case "BYE":
                ok = make_response(request, 200)
                if call.state is CallState.ENDED:
                    self.port.respond(tx, ok)
                    return
                if call.state is CallState.ANSWERED and leg is not call.a and leg is not call.winner:
                    # A phone no longer in the conversation (a parker hearing the slot) leaves alone.
                    self.port.respond(tx, ok)
                    self._leave(call, leg, now)
                    return
                call.bye_reply = (tx, ok)
                leg.state = LegState.ENDED
                leg.ended = now
                # A phone that joined a call as its A side's other party (a picker, a retriever) is
                # on the callee's side of the record, though its leg is one we answered.
                by = "caller" if leg.side is Side.A and leg is not call.winner else "callee"
                self._hang_up(call, by, "BYE", now, spare=leg)
            case "INVITE" | "UPDATE":
                self._execute(call, ReOffer(leg, tx, request), now)
            case "INFO":
                digit = _info_digit(request)
                if digit is not None:
                    self.digit(call.id, leg.id, digit, now)
                if (digit is not None and call.peer(leg) is None) or early_keys:
                    # Nobody to pass it to (Sentral answered the call, or asks the caller
                    # something before it is routed): the key was heard.
                    self.port.respond(tx, make_response(request, 200))
                    return
                self._relay(call, leg, tx, request, now)
            case "OPTIONS":
                self.port.respond(
                    tx, make_response(request, 200, headers=[("Allow", ALLOW), ("Accept", SDP)])
                )
            case "REFER":
                self._refer(call, leg, tx, request, now)
            case "PRACK":
                self.port.respond(tx, make_response(request, 481, "No Reliable Provisional Pending"))
            case _:
                self.port.respond(tx, make_response(request, 501, headers=[("Allow", ALLOW)]))

    def _relay(self, call: Call, source: Leg, tx: ServerTransaction, request: Request, now: float) -> None:
        """Pass a re-INVITE, UPDATE or INFO received on ``source`` to the other leg."""
        method = request.method
        offers = method in ("INVITE", "UPDATE")
        other = call.peer(source)
        # Nobody on the other side of an answered call (it is parked, or Sentral answered it):
        # Sentral answers an offer or a session refresh itself.
        alone = other is None and offers and source is call.a and call.state is CallState.ANSWERED
        if not alone and (
            other is None or other.dialog is None or other.dialog.state is not DialogState.CONFIRMED
        ):
            self.port.respond(tx, make_response(request, 481))
            return
        if offers and other is not None:
            busy = other.offer.local_invite or other.offer.remote_invite or not other.offer.can_offer
            # A 2xx of ours still waiting for its ACK on the other leg does not block: that INVITE
            # transaction is over for its sender, who may well have ACKed already.
            busy = busy or other.held_ack is not None or other.refresh_pending
            if busy and (method == "INVITE" or sdp_of(request)):
                # The other leg is in an exchange of its own: the offer cannot go on now (glare).
                self.port.respond(tx, make_response(request, 491))
                return
        timer: Negotiated | None = None
        if method == "INVITE" or (method == "UPDATE" and request.has_header("session-expires")):
            try:
                decided = negotiate_uas(
                    request, min_se=self.settings.min_se, default_interval=None, prefer=Refresher.UAC
                )
            except SipError as exc:
                self.port.respond(tx, make_response(request, exc.status, exc.reason, headers=exc.headers))
                return
            if isinstance(decided, IntervalTooSmall):
                error = decided.error()
                self.port.respond(
                    tx, make_response(request, error.status, error.reason, headers=error.headers)
                )
                return
            timer = decided
        try:
            if offers and sdp_of(request):
                parse_sdp(request.body)  # refuse unusable SDP before the offer state moves
            role = source.offer.receive(request) if offers else BodyRole.NONE
        except SipError as exc:
            self.port.respond(tx, make_response(request, exc.status, exc.reason, headers=exc.headers))
            return
        if other is None:
            self._answer_alone(call, source, tx, request, role, timer, now)
            return
        dialog = other.dialog
        assert dialog is not None  # a confirmed dialog, checked above
        headers: list[tuple[str, str]] = []
        body = request.body
        content_type = request.header("content-type")
        if role is BodyRole.OFFER:
            try:
                body = self.media.offer(call, other, body, source)
            except SipError as exc:
                refused = make_response(request, exc.status, exc.reason, headers=exc.headers)
                with contextlib.suppress(OfferStateError):
                    source.offer.send(refused)  # the offer is withdrawn: the old session stands
                self.port.respond(tx, refused)
                return
            other.last_sdp = body
        if method == "INVITE":
            headers.append(("Allow", ALLOW))
            if other.timer is not None:
                headers.extend(other.timer.refresh_request().headers())
        elif method == "INFO":
            for name in ("Info-Package", "Recv-Info"):
                value = request.header(name)
                if value is not None:
                    headers.append((name, value))
        try:
            outgoing = dialog.request(
                method,
                via=local_via(other.transport, other.local),
                body=body,
                headers=headers,
                content_type=content_type if body else None,
            )
            if offers:
                other.offer.send(outgoing)
        except (DialogError, OfferStateError):
            self.port.respond(tx, make_response(request, 500, headers=[("Retry-After", "1")]))
            return
        if method == "INVITE":
            tx.auto_trying = False
            self.port.respond(tx, make_response(request, 100))
        client = self.port.send_request(outgoing, other.target)
        self._pending[client] = Pending(
            call, other, Purpose.RELAY, source=source, source_tx=tx, source_request=request, timer=timer
        )

    def _relay_response(self, pending: Pending, response: Response, now: float) -> None:
        call, leg, source = pending.call, pending.leg, pending.source
        request, tx = pending.source_request, pending.source_tx
        assert source is not None and request is not None and tx is not None
        status = response.status
        method = response.cseq.method
        if status < 200:
            return
        if leg.dialog is not None:
            with contextlib.suppress(SipError, ValueError):
                leg.dialog.receive_response(response)
        try:
            role = leg.offer.receive(response)
        except SipError:
            role = BodyRole.NONE
        if method == "INVITE" and 200 <= status < 300:
            leg_timer = leg.timer
            if leg_timer is not None:
                leg_timer.refreshed(
                    now, TimerRequest(interval=leg_timer.interval).on_2xx(response), uas=False
                )
            if role is BodyRole.OFFER:
                leg.held_ack = response  # the answer comes with the source leg's ACK
            else:
                self._ack(leg, response)
        headers: list[tuple[str, str]] = []
        body = b""
        sdp = sdp_of(response)
        if sdp and role in (BodyRole.ANSWER, BodyRole.OFFER):
            try:
                body = (
                    self.media.answer(call, source, sdp, leg)
                    if role is BodyRole.ANSWER
                    else self.media.offer(call, source, sdp, leg)
                )
            except SipError:
                body = b""
        if 200 <= status < 300 and method in ("INVITE", "UPDATE"):
            headers += [("Contact", source.contact), ("Allow", ALLOW), ("Supported", ", ".join(SUPPORTED))]
            if pending.timer is not None:
                headers.extend(pending.timer.headers())
                if source.timer is not None:
                    source.timer.refreshed(now, pending.timer, uas=True)
                else:
                    source.timer = SessionTimer.start(pending.timer, uas=True, now=now)
        elif status == 491 or status == 500:
            retry = response.header("retry-after")
            if retry is not None:
                headers.append(("Retry-After", retry))
        if body:
            headers.append(("Content-Type", SDP))
            source.last_sdp = body
        elif response.body and method == "INFO":
            body = response.body
            content_type = response.header("content-type")
            if content_type:
                headers.append(("Content-Type", content_type))
        reply = make_response(request, status, response.reason, headers=headers, body=body)
        if method in ("INVITE", "UPDATE"):
            with contextlib.suppress(OfferStateError):
                source.offer.send(reply)
        if method == "INVITE" and 200 <= status < 300:
            self._send_2xx(source, tx, reply, now)
            self._arm(call)
        else:
            self.port.respond(tx, reply)
        if 200 <= status < 300 and method in ("INVITE", "UPDATE"):
            self._held(call, source, request)
        if status in (408, 481):
            self._hang_up(call, "system", f"{status} on re-{method.lower()}", now)

    def _held(self, call: Call, source: Leg, request: Request) -> None:
        """``source``'s offer in ``request`` was accepted: note whether it holds the call (RFC 3264
        §8.4), which `sentral calls` shows. Its own offers only: what Sentral offers to play
        music is no phone's hold."""
        sdp = sdp_of(request)
        if not sdp:
            return
        try:
            holding = parse_sdp(sdp).is_hold()
        except SipError:
            return
        if holding != source.holding:
            source.holding = holding
            self.version += 1

    def _refresh_response(self, pending: Pending, response: Response, now: float) -> None:
        call, leg = pending.call, pending.leg
        status = response.status
        if status < 200:
            return
        leg.refresh_pending = False
        if leg.dialog is not None:
            with contextlib.suppress(SipError, ValueError):
                leg.dialog.receive_response(response)
        with contextlib.suppress(SipError):
            leg.offer.receive(response)
        if 200 <= status < 300:
            if response.cseq.method == "INVITE":
                self._ack(leg, response)
                sdp = sdp_of(response)
                if sdp:
                    # The phone's answer to the SDP we re-sent: the media layer follows it.
                    with contextlib.suppress(SipError):
                        self.media.answer_received(call, leg, sdp)
            if leg.timer is not None:
                negotiated = TimerRequest(interval=leg.timer.interval, refresher=Refresher.UAC).on_2xx(
                    response
                )
                leg.timer.refreshed(now, negotiated, uas=False)
                self._arm(call)
        elif status in (408, 481):
            self._hang_up(call, "system", "session refresh failed", now)

    # -- timers -----------------------------------------------------------------------------------

    def _deadline(self, call: Call) -> float:
        if call.routing is not None:
            at = call.route_at
            if call.asking is not None:
                at = min(at, call.asking.next_deadline(call))
            return at
        at = call.strategy.next_deadline() if call.state is not CallState.ANSWERED else call.hangup_at
        if call.holder is not None:
            at = min(at, call.recall_at, call.strategy.next_deadline())
        if call.leave_at < at:
            at = call.leave_at
        if call.settle_at < at:
            at = call.settle_at
        for leg in call.legs:
            if leg.rtx_at < at:
                at = leg.rtx_at
            if leg.rtx is not None and leg.rtx_give_up < at:
                at = leg.rtx_give_up
            if leg.relay_retry_at < at:
                at = leg.relay_retry_at
            if leg.timer is not None:
                due = leg.timer.deadline()
                if due < at:
                    at = due
        return at

    def _arm(self, call: Call) -> None:
        if call.state is CallState.ENDED:
            call.heap_at = inf
            return
        at = self._deadline(call)
        if at != call.heap_at:
            call.heap_at = at
            if at != inf:
                heapq.heappush(self._heap, (at, next(self._seq), call.id))

    def next_deadline(self) -> float | None:
        """When ``on_timer`` next has work, or None (may be early: a stale entry)."""
        heap = self._heap
        calls = self.calls
        while heap:
            at, _, call_id = heap[0]
            call = calls.get(call_id)
            if call is not None and call.heap_at == at and call.state is not CallState.ENDED:
                return at
            heapq.heappop(heap)
        return None

    def on_timer(self, now: float) -> None:
        """Run every call timer due at ``now``."""
        heap = self._heap
        calls = self.calls
        while heap and heap[0][0] <= now:
            at, _, call_id = heapq.heappop(heap)
            call = calls.get(call_id)
            if call is None or at != call.heap_at or call.state is CallState.ENDED:
                continue
            call.heap_at = inf
            self._tick(call, now)
            self._arm(call)

    def _tick(self, call: Call, now: float) -> None:
        if call.routing is not None:
            if call.route_at <= now:
                self._release(call, now)
            elif call.asking is not None:
                call.asking.on_timer(call, now)
            return
        if call.state in (CallState.TRYING, CallState.RINGING) and call.strategy.next_deadline() <= now:
            self._event(call, Timer(), now)
            return
        if call.hangup_at <= now:
            self._hang_up(call, "system", call.callee_name or "answered by Sentral", now)
            return
        if call.leave_at <= now:
            self._let_go(call, now)
        if call.settle_at <= now:
            call.settle_at = inf
            for leg in call.b_legs:
                leg.forks = None
                leg.last_ack = None
                leg.invite_client = None
        if call.holder is not None:
            call.holder.on_timer(call, now)
        for leg in call.legs:
            if call.state is CallState.ENDED:
                return
            if leg.rtx is not None:
                if leg.rtx_give_up <= now:
                    leg.rtx = None
                    leg.rtx_at = inf
                    self._hang_up(call, "system", "no ACK", now)
                    return
                if leg.rtx_at <= now and leg.rtx_tx is not None:
                    self.port.respond(leg.rtx_tx, leg.rtx)
                    leg.rtx_interval = min(2 * leg.rtx_interval, self.timings.t2)
                    leg.rtx_at = now + leg.rtx_interval
            if leg.relay_retry_at <= now:
                self._relay_retry(call, leg, now)
            if leg.timer is not None:
                action = leg.timer.due(now)
                match action:
                    case None:
                        pass
                    case Refresh(method=method):
                        self._refresh(call, leg, method, now)
                    case Expire():
                        self._hang_up(call, "system", "session timer expired", now)
                        return
                    case _:
                        assert_never(action)

    def _refresh(self, call: Call, leg: Leg, method: str, now: float) -> None:
        dialog = leg.dialog
        timer = leg.timer
        if dialog is None or timer is None or call.state is not CallState.ANSWERED:
            return
        if (
            not leg.offer.can_offer
            or leg.offer.local_invite
            or leg.offer.remote_invite
            or leg.held_ack is not None
        ):
            timer.refreshed(now)  # an exchange is under way; it refreshes the session too
            return
        headers = timer.refresh_request().headers()
        body = leg.last_sdp if method == "INVITE" else b""
        if method == "INVITE":
            headers.append(("Allow", ALLOW))
        try:
            request = dialog.request(
                method,
                via=local_via(leg.transport, leg.local),
                body=body,
                headers=headers,
                content_type=SDP if body else None,
            )
            leg.offer.send(request)
        except (DialogError, OfferStateError):
            return
        leg.refresh_pending = True
        tx = self.port.send_request(request, leg.target)
        self._pending[tx] = Pending(call, leg, Purpose.REFRESH)

    def _answer_alone(
        self,
        call: Call,
        leg: Leg,
        tx: ServerTransaction,
        request: Request,
        role: BodyRole,
        timer: Negotiated | None,
        now: float,
    ) -> None:
        """Answer a re-INVITE or UPDATE from a phone with nobody on the other side: an offer from
        the relay in the codec it uses already, an INVITE without one with our last SDP as the
        offer (its answer comes in the ACK), and the session timer refreshed."""
        body = b""
        try:
            if role is BodyRole.OFFER:
                body = self.media.answer_locally(call, leg, request.body, like=leg)
            elif request.method == "INVITE":
                body = leg.last_sdp
        except SipError as exc:
            refused = make_response(request, exc.status, exc.reason, headers=exc.headers)
            with contextlib.suppress(OfferStateError):
                leg.offer.send(refused)
            self.port.respond(tx, refused)
            return
        headers = [("Contact", leg.contact), ("Allow", ALLOW), ("Supported", ", ".join(SUPPORTED))]
        if timer is not None:
            headers.extend(timer.headers())
            if leg.timer is not None:
                leg.timer.refreshed(now, timer, uas=True)
            else:
                leg.timer = SessionTimer.start(timer, uas=True, now=now)
        if body:
            headers.append(("Content-Type", SDP))
            leg.last_sdp = body
        reply = make_response(request, 200, headers=headers, body=body)
        with contextlib.suppress(OfferStateError):
            leg.offer.send(reply)
        if request.method == "INVITE":
            tx.auto_trying = False
            self._send_2xx(leg, tx, reply, now)
        else:
            self.port.respond(tx, reply)
        self._arm(call)

    # -- busy lines ----------------------------------------------------------------------------

    def _occupy(self, call: Call, extension: str) -> None:
        """``extension`` talks in ``call`` now: one more answered call it is in."""
        if extension.startswith("+") or (call.caller.outside and extension == call.caller.extension):
            return  # an outside party's number: no phone of the clinic's is busy
        key = (call.caller.clinic.domain, extension)
        self.busy[key] = self.busy.get(key, 0) + 1
        call.occupying = (*call.occupying, extension)

    def _vacate(self, domain: str, extension: str) -> None:
        key = (domain, extension)
        left = self.busy.get(key, 1) - 1
        if left > 0:
            self.busy[key] = left
        else:
            self.busy.pop(key, None)

    def _step_out(self, call: Call, extension: str) -> None:
        """``extension`` left ``call`` while the call goes on (it parked the call)."""
        held = list(call.occupying)
        if extension in held:
            held.remove(extension)
            call.occupying = tuple(held)
            self._vacate(call.caller.clinic.domain, extension)

    # -- the vocabulary of features (``sentral.pbx.features``) -----------------------------------

    def ring(self, call: Call, row: BindingRow, now: float) -> None:
        """Ring ``row`` (a registered contact) for ``call``: one new B leg. Raises the SipError of
        media that cannot be set up towards it."""
        self._start_b_leg(call, row, now)

    def fail(
        self, call: Call, status: int, reason: str, now: float, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        """Refuse ``call``, not answered yet, with ``status``."""
        self._execute(call, Fail(status, reason, headers=tuple(headers)), now)

    def execute(self, call: Call, command: Command, now: float) -> None:
        """Carry out ``command`` for ``call`` as if its ring strategy had given it."""
        self._execute(call, command, now)

    def event(self, call: Call, event: CallEvent, now: float) -> None:
        """Hand ``event`` to ``call``'s strategy and carry out its commands."""
        self._event(call, event, now)

    def cancel_leg(self, call: Call, leg: Leg, now: float, reason: str = "") -> None:
        """Stop ringing ``leg`` (or BYE it, when it answered and is not the call's); ``reason`` is the
        CANCEL's Reason header (RFC 3326), if any."""
        self._cancel_leg(call, leg, now, reason)

    def hang_up(self, call: Call, cause: str, now: float) -> None:
        """End ``call`` on every leg, Sentral hanging up; ``cause`` is what the record says."""
        self._hang_up(call, "system", cause, now)

    def hang_up_leg_at(self, call: Call, leg: Leg, at: float) -> None:
        """BYE ``leg``, a phone done with ``call`` while the call goes on (it heard a prompt), at
        ``at`` unless it hangs up first; the call's next ``arm`` sets the timer."""
        call.leaving = leg
        call.leave_at = at

    def ack(self, leg: Leg, response: Response) -> None:
        """ACK a 2xx received on ``leg``."""
        self._ack(leg, response)

    def relay(self, call: Call, source: Leg, tx: ServerTransaction, request: Request, now: float) -> None:
        """Pass a re-INVITE, UPDATE or INFO received on ``source`` to the other leg (or answer it
        from the relay when there is nobody there)."""
        self._relay(call, source, tx, request, now)

    def answer_and_play(self, call: Call, names: Sequence[str], now: float) -> None:
        """Answer ``call``'s caller ourselves, play the prompts ``names``, and hang up when they have
        played (the record's cause is then the call's ``callee_name``)."""
        self._answer_locally(call, now)
        call.hangup_at = now + after_prompt(self.media.play(call, call.a, names))
        self._arm(call)

    def answer_caller(self, call: Call, body: bytes, now: float) -> None:
        """Answer ``call``'s caller, still waiting, with ``body`` (an answer or offer the media layer
        made for its A leg): the call is answered with its A leg alone until a feature bridges a
        leg to it (``take_over``). Whatever still rings for the call is the feature's to stop."""
        a = call.a
        if call.music:
            call.music = self.media.music(call, a, False)
        call.state = CallState.ANSWERED
        call.answered = a.answered = now
        call.settle_at = now + self.timings.timeout
        self.version += 1
        self._occupy(call, a.extension)
        self._answer_a(call, self._timed_headers(call, now), body, now)
        self._arm(call)

    def take_answer(self, call: Call, leg: Leg, response: Response) -> None:
        """``leg``'s phone answered, with ``response``, what a feature rang it with for ``call`` (an
        offer of the relay's): ACK it, and hand its SDP to the media layer."""
        self._ack(leg, response)
        sdp = sdp_of(response)
        if sdp:
            with contextlib.suppress(SipError):
                self.media.answer_received(call, leg, sdp)

    def connect_held(self, call: Call, leg: Leg, now: float) -> None:
        """``leg`` answered ``call``, which a feature held with its A leg alone: the two talk."""
        call.settle_at = now + self.timings.timeout
        self._bridge(call, call.a, leg)
        self._occupy(call, leg.extension)
        self._arm(call)

    def joining_media(self, call: Call, into: Call, like: Leg, leg_id: str, now: float) -> bytes | None:
        """The SDP with which ``call``'s caller, about to join ``into`` (``take_over``), is answered:
        an answer to its offer (or an offer, for an INVITE without one) from the relay in
        ``like``'s codec, its media kept under ``into`` as leg ``leg_id``. None when the media layer
        cannot give one: the caller has been refused with its status, and ``into`` is as it was."""
        leg = call.a
        leg.id = leg_id
        try:
            if call.a_sdp:
                return self.media.answer_locally(into, leg, call.a_sdp, like=like)
            return self.media.offer_locally(into, leg, like=like)
        except SipError as exc:
            self.media.release_leg(into, leg)
            leg.id = "a"
            self.fail(call, exc.status, exc.reason, now, exc.headers)
            return None

    def take_over(self, call: Call, into: Call, body: bytes, now: float) -> None:
        """``call``'s caller joins ``into`` (answered, its A leg alone): answered with ``body`` (an
        answer or offer of the media layer's, made for a leg of ``into``) and talking to ``into``'s
        A leg. ``call`` dissolves: ``into`` keeps the record, with the caller's leg as a B leg."""
        leg = call.a
        call.state = CallState.ENDED
        self.calls.pop(call.id, None)
        if call.invite_tx is not None:
            self._invites.pop(call.invite_tx, None)
        self._legs[(leg.call_id, leg.local_tag)] = (into, leg)
        into.b_legs.append(leg)
        self._bridge(into, into.a, leg)
        headers = [("Contact", leg.contact), ("Allow", ALLOW), ("Supported", ", ".join(SUPPORTED))]
        if call.timer_uas is not None:
            headers.extend(call.timer_uas.headers())
            leg.timer = SessionTimer.start(
                call.timer_uas, uas=True, now=now, method=refresh_method(list(leg.peer_allow))
            )
        headers.append(("Content-Type", SDP))
        ok = make_response(call.invite, 200, to_tag=leg.local_tag, headers=headers, body=body)
        leg.dialog = Dialog.as_uas(call.invite, ok, leg.contact)
        leg.offer.send(ok)
        leg.last_sdp = body
        leg.state = LegState.ANSWERED
        leg.answered = now
        self._occupy(into, leg.extension)
        self._send_2xx(leg, _invite_tx(call), ok, now)
        self._tell_lines(into, now)
        self._arm(into)

    def _bridge(self, call: Call, held: Leg, leg: Leg) -> None:
        """``leg`` is the one ``held`` (which hears music) talks to from now on."""
        call.winner = leg
        self.media.music(call, held, False)
        self.media.join(call, held, leg)

    def step_out(self, call: Call, extension: str) -> None:
        """``extension`` left ``call`` while the call goes on (it parked the call)."""
        self._step_out(call, extension)

    def occupy(self, call: Call, extension: str) -> None:
        """``extension`` talks in ``call`` now (the phone that answered a call Sentral placed)."""
        self._occupy(call, extension)

    def accept_refer(self, leg: Leg, tx: ServerTransaction, request: Request) -> None:
        """Answer a REFER received on ``leg`` with 202 and tell the phone at once that the transfer
        succeeded (a NOTIFY with "200 OK", RFC 3515), which ends its subscription."""
        self.port.respond(tx, make_response(request, 202))
        self.notify_refer(leg, 200)

    def notify_refer(self, leg: Leg, status: int, reason: str = "") -> None:
        """Tell ``leg``'s phone how the transfer it asked for (REFER, RFC 3515 §2.4.5) goes: a NOTIFY
        whose message/sipfrag body is the status line of ``status``; a final status (200 and
        above) ends the REFER's subscription, 100 keeps it active."""
        dialog = leg.dialog
        if dialog is None:
            return
        state = "active;expires=60" if status < 200 else "terminated;reason=noresource"
        line = f"SIP/2.0 {status} {reason or _reason_text(status)}\r\n"
        try:
            notify = dialog.request(
                "NOTIFY",
                via=local_via(leg.transport, leg.local),
                headers=[("Event", "refer"), ("Subscription-State", state)],
                body=line.encode(),
                content_type="message/sipfrag;version=2.0",
            )
        except DialogError:
            return
        self.port.send_request(notify, leg.target)

    def adopt(self, into: Call, leg: Leg, from_call: Call, now: float) -> None:
        """``leg`` leaves ``from_call`` for ``into`` (an attended transfer), as a B leg: its dialog,
        transactions, session timer and media (the phone keeps its ports) go with it, and it no
        longer keeps its extension busy in ``from_call``. ``from_call`` keeps a copy for its
        record, with the outcome "transferred". Raises the media layer's SipError when the media
        cannot follow, and then nothing has changed. The feature bridges the leg
        (``connect_held``) when it is time."""
        taken = {other.id for other in into.legs}
        number = len(into.legs)
        while f"t{number}" in taken:
            number += 1
        new_id = f"t{number}"
        self.media.move(from_call, leg, into, new_id)
        # What the old call's record shows of the leg; it owns no dialog (built field by field:
        # the compiled Leg cannot be copied).
        left = Leg(
            id=leg.id,
            side=leg.side,
            target=leg.target,
            label=leg.label,
            extension=leg.extension,
            call_id="",
            local_tag="",
            local=leg.local,
            contact=leg.contact,
            started=leg.started,
            state=leg.state if leg.done else LegState.ENDED,
            status=leg.status,
            ringing=leg.ringing,
            answered=leg.answered,
            ended=now,
            outcome="transferred",
        )
        if from_call.a is leg:
            from_call.a = left
        else:
            from_call.b_legs[from_call.b_legs.index(leg)] = left
        if from_call.winner is leg:
            from_call.winner = None
        self._keys.pop((from_call.id, leg.id), None)
        if leg.state is LegState.ANSWERED:
            self._step_out(from_call, leg.extension)  # ``connect_held`` counts it in ``into``
        leg.id = new_id
        into.b_legs.append(leg)
        self._legs[(leg.call_id, leg.local_tag)] = (into, leg)
        for pending in self._pending.values():
            if pending.leg is leg:
                pending.call = into
        into.settle_at = min(into.settle_at, from_call.settle_at)
        self.version += 1
        self._arm(into)

    def leg_of(self, call_id: str, local_tag: str) -> tuple[Call, Leg] | None:
        """The live call and leg of the dialog with Call-ID ``call_id`` and Sentral's tag
        ``local_tag`` in it, if Sentral has one."""
        return self._legs.get((call_id, local_tag))

    def resume(self, call: Call, leg: Leg, now: float) -> None:
        """Offer ``leg``'s phone a session with the relay in the codec it uses (a re-INVITE): a
        phone left on hold by one that has gone (a transferrer) hears and speaks again."""
        dialog = leg.dialog
        if (
            dialog is None
            or not leg.offer.can_offer
            or leg.offer.local_invite
            or leg.offer.remote_invite
            or leg.held_ack is not None
            or leg.rtx is not None
        ):
            return  # an exchange is under way, which settles the session itself
        try:
            body = self.media.offer_locally(call, leg, like=leg)
        except SipError:
            return
        headers: list[tuple[str, str]] = [("Allow", ALLOW)]
        if leg.timer is not None:
            headers.extend(leg.timer.refresh_request().headers())
        try:
            request = dialog.request(
                "INVITE", via=local_via(leg.transport, leg.local), body=body, headers=headers, content_type=SDP
            )
            leg.offer.send(request)
        except (DialogError, OfferStateError):
            return
        leg.last_sdp = body
        leg.refresh_pending = True
        tx = self.port.send_request(request, leg.target)
        # Its answer is taken as a session refresh's: ACKed and handed to the media layer.
        self._pending[tx] = Pending(call, leg, Purpose.REFRESH)

    def arm(self, call: Call) -> None:
        """Set ``call``'s timer after a feature changed one of its deadlines."""
        self._arm(call)

    def touched(self) -> None:
        """A feature changed a call: `sentral calls` follows."""
        self.version += 1

    def changed(self, call: Call, now: float) -> None:
        """A feature changed ``call``: `sentral calls` and the line observer follow."""
        self.version += 1
        self._tell_lines(call, now)

    def tell_lines(self, call: Call, now: float) -> None:
        """Tell the line observer every extension whose phase in ``call`` changed."""
        self._tell_lines(call, now)

    def tell_line(self, call: Call, line: str, phase: Phase, now: float) -> None:
        """Tell the line observer the phase of a line that is no phone's in ``call`` (a park slot's
        busy-lamp key)."""
        if self.lines is not None:
            domain = call.caller.clinic.domain
            self.lines.line(domain, line, call.id, phase, Party.RECIPIENT, call.acute, now)
        if self.watch is not None:
            self.watch.call_changed(call, now)

    def _dialled(self, call: Call, decision: FeatureDecision, now: float) -> None:
        """A number the dial plan gives a feature: the feature that owns it takes the call."""
        for feature in self.features:
            if feature.dialled(call, decision, now):
                return
        self._execute(call, Fail(404, "Not Found"), now)

    def _refer(self, call: Call, leg: Leg, tx: ServerTransaction, request: Request, now: float) -> None:
        """A transfer (REFER, RFC 3515) from ``leg``'s phone: the features are offered what the dial
        plan makes of its target. A transfer no feature takes (an attended one, while no feature
        serves those) is refused with 501."""
        values = request.header_values("refer-to")
        if len(values) != 1:
            self.port.respond(tx, make_response(request, 400, "A REFER needs one Refer-To"))
            return
        try:
            uri = parse_name_addr(values[0]).uri
        except SipError as exc:
            self.port.respond(tx, make_response(request, exc.status, exc.reason))
            return
        number = uri.user_unescaped or dialled_number(str(uri))
        # Asked as the transferring phone: its own outbound permission holds, a role skips it.
        decision = self.dialplan.route(
            Query(call.caller.clinic, number, self.directory(), self.bindings, leg.extension)
        )
        for feature in self.features:
            if feature.refer(call, leg, tx, request, uri, decision, now):
                return
        self.port.respond(
            tx, make_response(request, 501, "Transfer Not Supported", headers=[("Allow", ALLOW)])
        )

    def _keyed(self, call: Call, leg: Leg, digit: Digit, now: float) -> None:
        """A key pressed on ``leg``'s phone while it talks in ``call``: the features are offered the
        keys it pressed lately, and those that make a feature's code are forgotten."""
        key = (call.id, leg.id)
        before, at = self._keys.get(key, ("", 0.0))
        keys = ((before if now - at <= KEY_GAP else "") + digit.key)[-KEYS_KEPT:]
        self._keys[key] = (keys, now)
        for feature in self.features:
            if feature.keyed(call, leg, keys, now):
                self._keys.pop(key, None)
                return

    def _let_go(self, call: Call, now: float) -> None:
        """The leg ``hang_up_leg_at`` named may go now: BYE."""
        leg, call.leaving, call.leave_at = call.leaving, None, inf
        if leg is not None and not leg.done:
            self._bye(call, leg, now)
            self.media.release_leg(call, leg)

    def _leave(self, call: Call, leg: Leg, now: float) -> None:
        """``leg``'s phone hung up while the call goes on without it."""
        leg.state = LegState.ENDED
        leg.ended = now
        if call.leaving is leg:
            call.leaving, call.leave_at = None, inf
        self.media.release_leg(call, leg)
        self._tell_lines(call, now)

    # -- a phone's media to the relay (direct media) ---------------------------------------------

    def to_relay(self, call: Call, leg: Leg, now: float, then: RelayDone) -> None:
        """Bring ``leg``'s phone's media to the relay, where music and prompts reach it (a phone
        with direct media about to be parked, or to wait while its call is transferred), then call
        ``then`` with whether it is there and the time it was learnt.

        An anchored leg is there already: ``then(True, now)`` at once. Otherwise the phone gets a
        re-INVITE whose offer comes from the relay (``MediaPolicy.relay_offer``); its answer goes
        to the media layer, and ``then`` is told True right after the ACK of its 2xx. The leg stays
        anchored for the rest of the call. Only this phone moves: the other keeps sending straight
        to it until it moves too or leaves. False: there is no relay (``OriginPerLeg``), the leg is
        not talking, or the phone refused the offer or did not answer (any final failure, 408 and
        481 included, or no response); the call goes on as it was, or has ended meanwhile
        (``call.over``), and the feature decides what follows. A 491, or an exchange already under
        way on the leg, is tried again once after the random wait of RFC 3261 §14.1.
        """
        if self.media.anchored(call, leg):
            then(True, now)
            return
        self._send_to_relay(call, leg, now, then, retried=False)

    def _send_to_relay(self, call: Call, leg: Leg, now: float, then: RelayDone, *, retried: bool) -> None:
        dialog = leg.dialog
        if (
            call.over
            or leg.state is not LegState.ANSWERED
            or dialog is None
            or dialog.state is not DialogState.CONFIRMED
        ):
            then(False, now)
            return
        offer = leg.offer
        if (
            not offer.can_offer
            or offer.local_invite
            or offer.remote_invite
            or leg.held_ack is not None
            or leg.refresh_pending
            or leg.rtx is not None
        ):
            self._relay_later(call, leg, now, then, retried=retried)  # wait for that exchange to end
            return
        try:
            body = self.media.relay_offer(call, leg)
        except SipError:
            body = None  # no relay port free now: the phone stays where it is
        if body is None:
            then(False, now)
            return
        headers = [("Allow", ALLOW), ("Supported", ", ".join(SUPPORTED))]
        if leg.timer is not None:
            headers.extend(leg.timer.refresh_request().headers())
        try:
            request = dialog.request(
                "INVITE", via=local_via(leg.transport, leg.local), body=body, headers=headers, content_type=SDP
            )
            offer.send(request)
        except (DialogError, OfferStateError):
            self.media.relay_refused(call, leg)
            then(False, now)
            return
        tx = self.port.send_request(request, leg.target)
        self._pending[tx] = Pending(call, leg, Purpose.TO_RELAY, then=then, retried=retried)

    def _relay_later(self, call: Call, leg: Leg, now: float, then: RelayDone, *, retried: bool) -> None:
        """Try ``to_relay`` again after RFC 3261 §14.1's wait (2.1 to 4 s when we chose the
        dialog's Call-ID, a B leg's; up to 2 s otherwise), unless this was the second try."""
        if retried or leg.relay_then is not None:
            then(False, now)
            return
        wait = (210 + secrets.randbelow(191)) / 100 if leg.side is Side.B else secrets.randbelow(201) / 100
        leg.relay_retry_at = now + wait
        leg.relay_then = then
        self._arm(call)

    def _relay_retry(self, call: Call, leg: Leg, now: float) -> None:
        then = leg.relay_then
        leg.relay_retry_at, leg.relay_then = inf, None
        if then is None:
            return
        if self.media.anchored(call, leg):
            then(True, now)  # moved meanwhile (a hold offer brought it to the relay)
            return
        self._send_to_relay(call, leg, now, then, retried=True)

    def _to_relay_response(self, pending: Pending, request: Request, response: Response, now: float) -> None:
        call, leg = pending.call, pending.leg
        status = response.status
        if status < 200:
            return
        if leg.dialog is not None:
            with contextlib.suppress(SipError, ValueError):
                leg.dialog.receive_response(response)
        with contextlib.suppress(SipError):
            leg.offer.receive(response)
        if status >= 300:
            if status == 491 and not call.over:
                self.media.relay_refused(call, leg)
                then, pending.then = pending.then, None
                if then is not None:
                    self._relay_later(call, leg, now, then, retried=pending.retried)
                return
            # Even a 408 or 481 leaves the call to the feature that asked: a parker that hung up
            # meanwhile answers 481, and the parked phone must not go with it.
            self._moved(pending, False, now)
            return
        self._ack(leg, response)
        sdp = sdp_of(response)
        if call.over or not sdp:
            self._moved(pending, False, now)
            return
        try:
            self.media.answer_received(call, leg, sdp)
        except SipError:
            self._moved(pending, False, now)
            return
        leg.last_sdp = request.body  # what a session refresh offers again from now on
        leg_timer = leg.timer
        if leg_timer is not None:
            leg_timer.refreshed(now, TimerRequest(interval=leg_timer.interval).on_2xx(response), uas=False)
            self._arm(call)
        self._moved(pending, True, now)

    def _relay_given_up(self, call: Call, now: float) -> None:
        """``call`` ended while ``to_relay`` waited to try again: the answer is no."""
        for leg in call.legs:
            then = leg.relay_then
            leg.relay_retry_at, leg.relay_then = inf, None
            if then is not None:
                then(False, now)

    def _moved(self, pending: Pending, moved: bool, now: float) -> None:
        """Tell the feature that asked ``to_relay`` whether the phone moved (once)."""
        then, pending.then = pending.then, None
        if not moved and not pending.call.over:
            self.media.relay_refused(pending.call, pending.leg)
        if then is not None:
            then(moved, now)

    # -- media ------------------------------------------------------------------------------------

    def digit(self, call_id: str, leg_id: str, digit: Digit, now: float) -> None:
        """A key pressed on the phone of leg ``leg_id`` (RFC 4733 or SIP INFO): handed to
        ``on_dtmf``. Never logged: the keys may spell a national identity number."""
        call = self.calls.get(call_id)
        if call is None:
            return
        asking = call.asking
        if asking is not None and leg_id == "a":
            asking.digit(call, digit, now)
            self._arm(call)
        elif call.state is CallState.ANSWERED and call.holder is None:
            leg = next((leg for leg in call.legs if leg.id == leg_id), None)
            if leg is not None and call.peer(leg) is not None:
                self._keyed(call, leg, digit, now)
        if self.on_dtmf is not None:
            self.on_dtmf(call.id, leg_id, digit, now)

    def check_media(self, now: float, idle: float, idle_on_hold: float) -> int:
        """Hang up every answered call whose phones have sent no media for ``idle`` seconds
        (``idle_on_hold`` while one of them is on hold); the record says "no media". How many."""
        dead = []
        for call in self.calls.values():
            if call.state is not CallState.ANSWERED or call.answered is None:
                continue
            heard = self.media.last_activity(call)
            if heard is None:
                continue
            limit = idle_on_hold if self.media.on_hold(call) else idle
            if now - max(heard, call.answered) >= limit:
                dead.append(call)
        for call in dead:
            self._hang_up(call, "system", "no media", now)
        return len(dead)

    # -- the server as a whole --------------------------------------------------------------------

    def hang_up_all(self, now: float, cause: str = "drain") -> None:
        """End every call (BYE answered ones, CANCEL and refuse ringing ones)."""
        for call in list(self.calls.values()):
            self._hang_up(call, "system", cause, now)

    def live(self) -> list[LiveCall]:
        """The calls in progress."""
        return [
            LiveCall(
                call_id=call.id,
                clinic=call.caller.clinic.domain,
                caller=call.listed[0] if call.listed else call.caller.extension,
                callee=call.listed[1] if call.listed else call.callee,
                state=HELD if call.state is CallState.ANSWERED and _on_hold(call) else call.state.value,
                started=call.started,
                answered=call.answered,
                legs=len(call.legs),
                parked=call.parked,
                caller_name=call.caller.name,
                caller_kind=call.caller.kind,
                caller_reference=call.caller.reference,
                caller_source=call.caller.source,
            )
            for call in self.calls.values()
        ]


_CALL_PHASE = {
    CallState.TRYING: Phase.TRYING,
    CallState.RINGING: Phase.EARLY,
    CallState.ANSWERED: Phase.CONFIRMED,
    CallState.ENDED: Phase.TERMINATED,
}
_LEG_PHASE = {
    LegState.CALLING: Phase.TRYING,
    LegState.EARLY: Phase.EARLY,
    LegState.ANSWERED: Phase.CONFIRMED,
    LegState.FAILED: Phase.TERMINATED,
    LegState.CANCELLED: Phase.TERMINATED,
    LegState.ENDED: Phase.TERMINATED,
}
# When one extension has several legs in a call (two phones), the most advanced phase shows.
_PHASE_RANK = {Phase.TERMINATED: 0, Phase.TRYING: 1, Phase.EARLY: 2, Phase.CONFIRMED: 3}


def _early_ids(leg: Leg) -> DialogIds | None:
    """The ids of the early dialog of a ringing B leg, as its phone holds it (the phone's tag
    local, ours remote); None when its phone sent no tag."""
    early = leg.forks.early if leg.forks is not None else []
    if not early:
        return None
    return DialogIds(leg.call_id, early[0].remote_tag, leg.local_tag)


def _on_hold(call: Call) -> bool:
    """True while one of the two talking phones holds the call."""
    peer = call.peer(call.a)
    return call.a.holding or (peer is not None and peer.holding)


def _outcome(call: Call, leg: Leg) -> str:
    if leg.outcome:
        return leg.outcome
    if leg is call.a and leg.answered is not None:
        return "answered"  # the caller's, or the parked phone's once the caller parked it
    if leg.side is Side.A:
        if call.answered is not None:
            return "answered"
        if leg.status == 487:
            return "cancelled"
        return "timeout" if call.cause == "no answer timeout" else "rejected"
    if leg is call.winner:
        return "answered"
    match leg.state:
        case LegState.CANCELLED:
            return "cancelled"
        case LegState.FAILED:
            return "timeout" if leg.status == 408 else "rejected"
        case LegState.ENDED:
            return "answered elsewhere" if leg.answered is None and leg.dialog is not None else "ended"
        case LegState.CALLING | LegState.EARLY | LegState.ANSWERED:
            return str(leg.state.value)
        case _:
            assert_never(leg.state)


def _reason_text(status: int) -> str:
    return str(reason_phrase(status))


__all__ = [
    "ALLOW",
    "HELD",
    "SUPPORTED",
    "Announce",
    "Call",
    "CallControl",
    "CallEvent",
    "CallFeature",
    "CallHolder",
    "CallPort",
    "CallReport",
    "CallSettings",
    "CallState",
    "CallWatch",
    "Caller",
    "CallerIdentity",
    "Cancel",
    "Command",
    "Connect",
    "DtmfHandler",
    "Fail",
    "FeatureDecision",
    "HangUp",
    "Leg",
    "LegAnswered",
    "LegFailed",
    "LegReport",
    "LegRinging",
    "LegState",
    "LiveCall",
    "MediaPolicy",
    "OriginPerLeg",
    "ReOffer",
    "RelayDone",
    "RingAll",
    "RingCaller",
    "RingStrategy",
    "Ringback",
    "RoutingHold",
    "Side",
    "Timer",
    "TransferReport",
    "Try",
    "after_prompt",
    "best_failure",
    "binding_target",
    "failure_rank",
    "sdp_of",
]
