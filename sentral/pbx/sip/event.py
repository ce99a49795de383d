"""Event notification (RFC 6665) on the notifier's side: SUBSCRIBE in, NOTIFY out.

Theory of operation
-------------------
A subscription is a dialog (formed by the SUBSCRIBE and our 200) plus an event package, an
optional ``id`` and an expiry. ``Subscription.accept`` builds both from an initial SUBSCRIBE;
``refresh`` takes a SUBSCRIBE received inside the dialog (the dialog checks its CSeq and moves
the remote target) and either pushes the expiry out or, with Expires 0, ends the subscription.
Whatever ends it (the subscriber, the clock, the notifier) leaves it TERMINATED with a
``Reason``, and one last NOTIFY saying so is owed.

Notifications are one at a time per subscription: ``notify`` builds the next NOTIFY (Event,
Subscription-State with the seconds left, the body given) and marks it in flight; a change of
state while it is in flight only marks the subscription ``stale``. ``answered`` then says what
to do: nothing, send again (with the latest state, so a burst of changes costs one NOTIFY), or
forget the subscription (its final NOTIFY went through, or the subscriber answered with an
error or never answered, which RFC 6665 §4.2.2 says ends the subscription).

Also here: the Event and Subscription-State header grammars (§8.2.1, §8.2.3), the expiry a
notifier grants (423 with Min-Expires below its minimum, capped at its maximum) and whether an
Accept header admits a body type (406 otherwise). Sans-IO: times are the caller's ``now``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from sentral.pbx.sip.dialog import Dialog, DialogState
from sentral.pbx.sip.errors import SipError
from sentral.pbx.sip.grammar import Params, format_params, is_token, param, parse_params
from sentral.pbx.sip.headers import NameAddr, parse_name_addr
from sentral.pbx.sip.message import Request


class SubState(Enum):
    """The substate a Subscription-State header carries (RFC 6665 §4.1.3)."""

    PENDING = "pending"
    ACTIVE = "active"
    TERMINATED = "terminated"


class Reason(Enum):
    """Why a subscription was terminated (RFC 6665 §4.1.3); it tells the subscriber whether to retry."""

    DEACTIVATED = "deactivated"  # retry at once
    PROBATION = "probation"  # retry later (Retry-After)
    REJECTED = "rejected"  # not allowed: do not retry
    TIMEOUT = "timeout"  # expired or unsubscribed
    GIVEUP = "giveup"  # no authorization decision came in time
    NORESOURCE = "noresource"  # the resource no longer exists
    INVARIANT = "invariant"  # the resource's state cannot change


class NotifyOutcome(Enum):
    """What a final response to our NOTIFY means for the subscription."""

    IDLE = "idle"  # answered; nothing waits
    AGAIN = "again"  # answered, but the state moved meanwhile: notify again
    ENDED = "ended"  # the subscription is over: forget it


@dataclass(frozen=True, slots=True)
class EventHeader:
    """``Event: package;id=...``: the package and the id compare byte by byte (§8.2.1)."""

    package: str
    id: str | None = None
    params: Params = ()

    @classmethod
    def parse(cls, text: str) -> EventHeader:
        """Parse one Event value; SipError 400 when it is not a token with parameters."""
        package, _, rest = text.strip().partition(";")
        package = package.strip()
        if not is_token(package):
            raise SipError(400, "Bad Event header")
        params = parse_params(rest) if rest.strip() else ()
        return cls(package, param(params, "id"), params)

    def matches(self, other: EventHeader) -> bool:
        """True when ``other`` names the same subscription (package and id; other params ignored)."""
        return self.package == other.package and self.id == other.id

    def __str__(self) -> str:
        return self.package + format_params(self.params)


def event_of(request: Request) -> EventHeader:
    """The one Event header of a SUBSCRIBE (SipError 400 when missing or repeated)."""
    lines = request.header_lines("event")
    if not lines:
        raise SipError(400, "Missing Event header")
    if len(lines) > 1 or "," in lines[0]:
        raise SipError(400, "More than one Event header")
    return EventHeader.parse(lines[0])


@dataclass(frozen=True, slots=True)
class SubscriptionStateHeader:
    """``Subscription-State: active;expires=600`` or ``terminated;reason=timeout``."""

    state: SubState
    expires: int | None = None
    reason: Reason | None = None
    retry_after: int | None = None

    @classmethod
    def parse(cls, text: str) -> SubscriptionStateHeader:
        """Parse a Subscription-State value. An unknown substate is a 400; an unknown reason is
        taken as no reason, as §4.1.3 tells subscribers to do."""
        head, _, rest = text.strip().partition(";")
        try:
            state = SubState(head.strip().lower())
        except ValueError:
            raise SipError(400, "Bad Subscription-State") from None
        params = parse_params(rest) if rest.strip() else ()
        reason_text = param(params, "reason")
        reason = None
        if reason_text is not None:
            try:
                reason = Reason(reason_text.lower())
            except ValueError:
                reason = None
        return cls(state, _seconds(param(params, "expires")), reason, _seconds(param(params, "retry-after")))

    def __str__(self) -> str:
        text = self.state.value
        if self.reason is not None:
            text += f";reason={self.reason.value}"
        if self.expires is not None:
            text += f";expires={self.expires}"
        if self.retry_after is not None:
            text += f";retry-after={self.retry_after}"
        return text


def _seconds(text: str | None) -> int | None:
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 10:
        raise SipError(400, "Bad Subscription-State")
    return int(text)


@dataclass(frozen=True, slots=True)
class ExpiresPolicy:
    """The subscription durations a notifier grants, in seconds."""

    minimum: int = 60
    maximum: int = 3600
    default: int = 3600


def granted_expires(request: Request, policy: ExpiresPolicy) -> int:
    """The duration to grant a SUBSCRIBE: its Expires capped at the maximum, the default without
    one, 0 to unsubscribe (or fetch once); below the minimum, SipError 423 with Min-Expires."""
    requested = request.expires
    if requested is None:
        return policy.default
    if requested == 0:
        return 0
    if requested < policy.minimum:
        raise SipError(423, headers=(("Min-Expires", str(policy.minimum)),))
    return min(requested, policy.maximum)


def accepts(request: Request, media_type: str) -> bool:
    """True when the request's Accept admits ``media_type`` (no Accept header admits the package's
    default type, RFC 6665 §4.1.2); ``*/*`` and ``type/*`` count, a ``q=0`` entry refuses."""
    if not request.has_header("accept"):
        return True
    values = request.header_values("accept")
    wanted_type = media_type.split("/", 1)[0]
    for value in values:
        kind, _, rest = value.partition(";")
        kind = kind.strip().lower()
        if kind not in (media_type, f"{wanted_type}/*", "*/*"):
            continue
        q = param(parse_params(rest), "q") if rest.strip() else None
        if q is not None and q.strip() in ("0", "0.", "0.0", "0.00", "0.000"):
            continue
        return True
    return False


def notifier_dialog(request: Request, local_tag: str, local_contact: NameAddr | str) -> Dialog:
    """The dialog we form as notifier by answering ``request`` (an initial SUBSCRIBE) with a 2xx
    carrying To tag ``local_tag`` and Contact ``local_contact`` (RFC 6665 §4.2.1, §4.3)."""
    if request.method != "SUBSCRIBE":
        raise ValueError("a notifier's dialog is formed by a SUBSCRIBE")
    contacts = request.contacts
    if len(contacts) != 1:
        raise SipError(400, "A SUBSCRIBE needs one Contact")
    contact = parse_name_addr(local_contact) if isinstance(local_contact, str) else local_contact
    return Dialog(
        call_id=request.call_id,
        local_tag=local_tag,
        remote_tag=request.from_tag or "",
        local_uri=request.to.with_tag(local_tag),
        remote_uri=request.from_,
        local_seq=None,
        remote_seq=request.cseq.seq,
        remote_target=contacts[0].uri,
        # As for any UAS, the route set is Record-Route in the order received (RFC 3261 §12.1.1).
        route_set=tuple(request.name_addrs("record-route")),
        secure=request.uri.scheme == "sips",
        local_contact=contact,
        state=DialogState.CONFIRMED,
        is_uac=False,
        invite_seq=None,
        initial_seq=request.cseq.seq,
    )


SubscriptionKey = tuple[str, str, str, str, str]  # Call-ID, local tag, remote tag, package, id


@dataclass(eq=False, slots=True)
class Subscription:
    """One subscription as its notifier keeps it. Mutable: it moves as requests and answers pass."""

    dialog: Dialog
    event: EventHeader
    expires_at: float
    state: SubState = SubState.ACTIVE
    reason: Reason | None = None
    # How many NOTIFYs were built so far (RFC 4235 numbers its documents with it).
    sent: int = 0
    in_flight: bool = False
    stale: bool = False
    final_sent: bool = False

    @classmethod
    def accept(
        cls, request: Request, local_tag: str, local_contact: NameAddr | str, expires: int, now: float
    ) -> Subscription:
        """A new subscription from an initial SUBSCRIBE granted ``expires`` seconds; 0 makes it a
        fetch: terminated at once, with one NOTIFY owed."""
        subscription = cls(
            notifier_dialog(request, local_tag, local_contact), event_of(request), now + expires
        )
        if expires == 0:
            subscription.terminate(Reason.TIMEOUT)
        return subscription

    @property
    def key(self) -> SubscriptionKey:
        """What a refresh is matched by: the dialog ID, the package and the id (§4.1.2.1)."""
        d = self.dialog
        return (d.call_id, d.local_tag, d.remote_tag, self.event.package, self.event.id or "")

    @property
    def active(self) -> bool:
        return self.state is not SubState.TERMINATED

    def refresh(self, request: Request, expires: int, now: float) -> None:
        """A SUBSCRIBE inside the dialog: refreshed for ``expires`` seconds, or ended with 0.

        SipError 481 when the subscription is over, 500 for a CSeq out of order (the dialog's
        checks, RFC 3261 §12.2.2).
        """
        if not self.active:
            raise SipError(481, "Subscription Does Not Exist")
        self.dialog.receive_request(request)
        if expires == 0:
            self.terminate(Reason.TIMEOUT)
        else:
            self.expires_at = now + expires

    def terminate(self, reason: Reason) -> None:
        """End the subscription; the next NOTIFY built is the final one."""
        if self.state is SubState.TERMINATED:
            return
        self.state = SubState.TERMINATED
        self.reason = reason
        if self.in_flight:
            self.stale = True

    def expire(self, now: float) -> bool:
        """End the subscription if its time ran out; True if it did just now."""
        if self.state is SubState.TERMINATED or self.expires_at > now:
            return False
        self.terminate(Reason.TIMEOUT)
        return True

    def remaining(self, now: float) -> int:
        """Whole seconds left, rounded up so that a subscriber never refreshes too late. The
        difference is taken to the microsecond first: ``(now + 600) - now`` is a hair over 600 for
        many clock values, and would round up to 601."""
        return max(0, math.ceil(round(self.expires_at - now, 6)))

    def state_header(self, now: float) -> SubscriptionStateHeader:
        if self.state is SubState.TERMINATED:
            return SubscriptionStateHeader(SubState.TERMINATED, reason=self.reason)
        return SubscriptionStateHeader(self.state, expires=self.remaining(now))

    @property
    def owed(self) -> bool:
        """True when a NOTIFY must go out as soon as none is in flight."""
        return self.stale or (not self.active and not self.final_sent)

    def changed(self) -> bool:
        """The watched state moved: True if a NOTIFY may go out now, False if one is in flight
        (the change then rides on the next one)."""
        if self.in_flight:
            self.stale = True
            return False
        return True

    def notify(self, body: bytes, content_type: str, via: str, now: float) -> Request:
        """The next NOTIFY, carrying the full state in ``body``; it is in flight from here on."""
        if self.final_sent:
            raise SipError(481, "Subscription Does Not Exist")
        headers = [("Event", str(self.event)), ("Subscription-State", str(self.state_header(now)))]
        request = self.dialog.request(
            "NOTIFY", via=via, body=body, headers=headers, content_type=content_type
        )
        self.sent += 1
        self.in_flight = True
        self.stale = False
        if not self.active:
            self.final_sent = True
        return request

    def answered(self, status: int) -> NotifyOutcome | None:
        """A response to our NOTIFY in flight; None for a provisional one (still in flight)."""
        if status < 200:
            return None
        self.in_flight = False
        if status >= 300:
            # 481: the subscriber forgot it. Any other failure (489, 408, 5xx...) we take as the
            # subscriber not wanting it either: retrying blindly would only hammer a broken phone.
            self.terminate(Reason.DEACTIVATED)
            self.final_sent = True
            self.dialog.terminate()
            return NotifyOutcome.ENDED
        if self.final_sent:
            self.dialog.terminate()
            return NotifyOutcome.ENDED
        return NotifyOutcome.AGAIN if self.owed else NotifyOutcome.IDLE

    def timed_out(self) -> NotifyOutcome:
        """Our NOTIFY got no answer (Timer F) or could not be sent: the subscription is over."""
        return self.answered(408) or NotifyOutcome.ENDED


__all__ = [
    "EventHeader",
    "ExpiresPolicy",
    "NotifyOutcome",
    "Reason",
    "SubState",
    "Subscription",
    "SubscriptionKey",
    "SubscriptionStateHeader",
    "accepts",
    "event_of",
    "granted_expires",
    "notifier_dialog",
]
