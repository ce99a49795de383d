"""Presence and busy-lamp fields: the notifier for the ``dialog`` and ``presence`` event packages.

Theory of operation
-------------------
A desk phone's busy-lamp key subscribes (RFC 6665) to a colleague's extension with the ``dialog``
package (RFC 4235) and lights up from the dialog states it is sent: early blinks (ringing),
confirmed is steady (busy), nothing is dark (idle). A softphone's buddy list subscribes with the
``presence`` package (RFC 3856) and shows open or closed from a PIDF document (RFC 3863).

``PresenceHub`` is the notifier for both, IO-free like call control: the endpoint hands it
authenticated initial SUBSCRIBEs (``on_subscribe``), SUBSCRIBEs inside a subscription's dialog
(``on_request``: refresh, or unsubscribe with Expires 0), the responses and timeouts of the
NOTIFYs it sent, and the clock (``next_deadline``/``on_timer``: subscriptions that were not
refreshed in time end with a final NOTIFY). It acts through a ``PresencePort``.

What it reports comes from three inputs, each followed by a NOTIFY to the subscribers whose view
it changes: ``line`` (call control: one extension's part in one call moved through trying,
early, confirmed, terminated), ``registration`` (the registrar: an extension's phone came or
went) and ``directory_changed`` (an operator switched a phone off, or removed someone).
Subscriptions always get the full state. A subscriber with a NOTIFY still unanswered is not sent
another: the change marks it stale and, once the answer comes, one NOTIFY carries the latest
state, so a burst of changes costs a slow phone one message rather than a queue of them. A
NOTIFY answered with an error or never answered ends the subscription (RFC 6665 §4.2.2).

Limits keep a misbehaving phone or a flood from holding unbounded state: a number of
subscriptions per subscribing extension and in total, beyond which a SUBSCRIBE gets 503.

A ringing line's dialog carries the ids of Sentral's dialog with the ringing phone (``dialog`` in
``line``), so that a busy-lamp key can pick the call up with an INVITE with Replaces; they are
dropped once the line is answered.

A park slot can be watched like an extension: call control reports the call parked on it as
that slot's line, confirmed while it waits, so a busy-lamp key on 701 is lit exactly while a call
is parked there (its presence is always closed: a slot has no phone).

The ``presence`` document's note says where the calls of someone with an unconditional forward
go ("Available, forwarded to 1003"). The ``dialog`` package has no place for that, so a forward
shows on a busy-lamp key the way PBXs show a feature's state: a key watching the forwarding code
``FORWARD_KEY`` (``*21``) is lit (one confirmed dialog) while its own phone's extension forwards
its calls unconditionally, and dark otherwise; it follows the directory, as forwards change.

``lines`` summarises every extension in a call or watched by someone as idle, ringing or busy,
for `sentral presence`.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from itertools import count
from typing import Protocol, assert_never

from sentral.config.directory import ClinicEntry, Directory
from sentral.pbx.sip import entropy
from sentral.pbx.sip.dialog import DialogError
from sentral.pbx.sip.dialog_info import CONTENT_TYPE as DIALOG_INFO
from sentral.pbx.sip.dialog_info import (
    DialogDirection,
    DialogEntry,
    DialogIds,
    DialogInfoState,
    dialog_info,
)
from sentral.pbx.sip.errors import SipError
from sentral.pbx.sip.event import (
    EventHeader,
    ExpiresPolicy,
    NotifyOutcome,
    Reason,
    Subscription,
    SubscriptionKey,
    accepts,
    event_of,
    granted_expires,
)
from sentral.pbx.sip.message import Request, Response, local_tag, make_response
from sentral.pbx.sip.pidf import CONTENT_TYPE as PIDF
from sentral.pbx.sip.pidf import Basic, PresenceTuple, pidf
from sentral.pbx.sip.transaction import ClientTransaction, ServerTransaction, local_contact, local_via
from sentral.pbx.transport import Origin, Target

Aor = tuple[str, str]  # (domain, extension)


class Phase(Enum):
    """Where one extension's part in one call stands, as call control reports it."""

    TRYING = "trying"  # INVITE sent or received, nothing heard yet
    EARLY = "early"  # ringing
    CONFIRMED = "confirmed"  # answered: in the call
    TERMINATED = "terminated"  # over


class Direction(Enum):
    """Whether the extension placed the call or is being called."""

    INITIATOR = "initiator"
    RECIPIENT = "recipient"


class Lamp(Enum):
    """What a busy-lamp key shows for an extension."""

    IDLE = "idle"
    RINGING = "ringing"
    BUSY = "busy"


class Package(Enum):
    """The event packages served, each with the one body type it is sent in."""

    DIALOG = "dialog"
    PRESENCE = "presence"

    @property
    def content_type(self) -> str:
        match self:
            case Package.DIALOG:
                return DIALOG_INFO
            case Package.PRESENCE:
                return PIDF
            case _:
                assert_never(self)


ALLOW_EVENTS = ", ".join(package.value for package in Package)
NOTES = {Lamp.IDLE: "Available", Lamp.RINGING: "Ringing", Lamp.BUSY: "On the phone"}
LOGGED_OFF = "Logged off"
# What a busy-lamp key watches to show its own phone's unconditional forward (the code that sets it).
FORWARD_KEY = "*21"

# What a subscriber is told, in a form that compares equal when a NOTIFY would say the same.
DialogView = tuple[tuple[str, Phase, Direction, DialogIds | None], ...]
PresenceView = tuple[Basic, str]


@dataclass(frozen=True, slots=True)
class LineState:
    """One extension's lamp, for `sentral presence`; ``acute`` while any of its calls is acute."""

    domain: str
    extension: str
    state: Lamp
    acute: bool


@dataclass(frozen=True, slots=True)
class PresenceLimits:
    """Bounds on subscriptions, and the durations granted."""

    # A reception phone with side-cars watches many colleagues; more than this is a loop or abuse.
    per_subscriber: int = 100
    total: int = 10_000
    retry_after: int = 60  # seconds, in the 503 that refuses a subscription over a limit
    expires: ExpiresPolicy = field(default_factory=ExpiresPolicy)


class PresenceWatch(Protocol):
    """Told, synchronously, that what the hub shows for an extension may have changed: the web's
    event feed. It must be quick, since it runs inside the SIP engine's work."""

    def presence_changed(self, aor: Aor | None) -> None:
        """``aor``'s presence may have changed; None: anyone's may have (the directory changed)."""


class PresencePort(Protocol):
    """The IO the hub needs; the endpoint implements it, protocol tests fake it."""

    def respond(self, tx: ServerTransaction, response: Response) -> None:
        """Send ``response`` through server transaction ``tx``."""

    def send_request(self, request: Request, target: Target) -> ClientTransaction:
        """Start a client transaction for ``request`` towards ``target``."""

    def local_address(self, target: Target) -> tuple[str, int]:
        """The host and port we are reached at by ``target`` (for Via and Contact)."""


@dataclass(slots=True, init=False)
class _Line:
    phase: Phase
    direction: Direction
    acute: bool
    ids: DialogIds | None

    def __init__(self, phase: Phase, direction: Direction, acute: bool, ids: DialogIds | None) -> None:
        self.phase = phase
        self.direction = direction
        self.acute = acute
        self.ids = ids


@dataclass(eq=False, slots=True)
class Watcher:
    """One subscription and what it watches: whose state, in which package, sent where."""

    subscription: Subscription
    package: Package
    watched: Aor
    subscriber: Aor
    target: Target
    local: tuple[str, int]
    # The state last sent, to skip a NOTIFY that would say the same again.
    sent_state: DialogView | PresenceView | None = None


class PresenceHub:
    """Every subscription to dialog and presence state, and the state they watch."""

    def __init__(
        self,
        port: PresencePort,
        directory: Callable[[], Directory],
        registered: Callable[[Aor], bool] = lambda aor: False,
        *,
        limits: PresenceLimits | None = None,
    ) -> None:
        self.port = port
        self.directory = directory
        # Whether an extension has a binding, for those ``registration`` has not told us about
        # (bindings loaded from storage at start).
        self.registered = registered
        self.limits = limits or PresenceLimits()
        self._lines: dict[Aor, dict[str, _Line]] = {}
        self._registered: dict[Aor, bool] = {}
        self._watchers: dict[Aor, dict[Watcher, None]] = {}  # insertion-ordered sets
        self._by_key: dict[SubscriptionKey, Watcher] = {}
        self._per_subscriber: dict[Aor, int] = {}
        self._pending: dict[ClientTransaction, Watcher] = {}
        self._heap: list[tuple[float, int, Watcher]] = []
        self._seq = count()
        self._directory_version: int | None = None
        self.version = 0  # bumps whenever ``lines()`` may have changed
        # The event feed, while someone listens (None otherwise: the engine then pays one test).
        self.watch: PresenceWatch | None = None

    def __len__(self) -> int:
        """The number of live subscriptions."""
        return len(self._by_key)

    def owns(self, tx: ClientTransaction) -> bool:
        """True if ``tx`` is a NOTIFY of ours still waiting for its answer."""
        return tx in self._pending

    # -- subscribing -----------------------------------------------------------------------------

    def on_subscribe(
        self,
        tx: ServerTransaction,
        request: Request,
        origin: Origin,
        clinic: ClinicEntry,
        subscriber: str,
        now: float,
    ) -> None:
        """A new SUBSCRIBE (no To tag) from extension ``subscriber`` of ``clinic``, authenticated."""
        self.directory_changed(now)
        try:
            package = self._package(request)
            watched = self._resource(request, clinic)
            if watched[1] == FORWARD_KEY and package is not Package.DIALOG:
                raise SipError(404)  # a forwarding key is a busy-lamp key's alone
            expires = granted_expires(request, self.limits.expires)
            who = (clinic.domain, subscriber)
            if expires and (
                len(self._by_key) >= self.limits.total
                or self._per_subscriber.get(who, 0) >= self.limits.per_subscriber
            ):
                raise SipError(
                    503, "Too Many Subscriptions", headers=(("Retry-After", str(self.limits.retry_after)),)
                )
            target = Target(origin.transport, origin.host, origin.port, origin.local, origin.conn_id)
            local = self.port.local_address(target)
            contact = local_contact(target.transport, local)
            subscription = Subscription.accept(request, entropy.token_hex(8), contact, expires, now)
        except SipError as exc:
            self._refuse(tx, request, exc)
            return
        watcher = Watcher(subscription, package, watched, who, target, local)
        ok = make_response(
            request,
            200,
            to_tag=subscription.dialog.local_tag,
            headers=[("Contact", contact), ("Expires", str(expires))],
        )
        self.port.respond(tx, ok)
        if subscription.active:
            self._index(watcher)
        self._send(watcher, now)

    def on_request(self, tx: ServerTransaction, request: Request, origin: Origin, now: float) -> None:
        """A SUBSCRIBE inside a subscription's dialog: a refresh, or with Expires 0 the end of it."""
        self.directory_changed(now)
        try:
            package = self._package(request)
            event = event_of(request)
            watcher = self._by_key.get(_request_key(request, event))
            if watcher is None:
                raise SipError(481, "Subscription Does Not Exist")
            expires = granted_expires(request, self.limits.expires)
            watcher.subscription.refresh(request, expires, now)
        except SipError as exc:
            self._refuse(tx, request, exc)
            return
        assert watcher.package is package
        # The phone may have come back through another NAT binding or connection.
        watcher.target = Target(origin.transport, origin.host, origin.port, origin.local, origin.conn_id)
        contact = str(watcher.subscription.dialog.local_contact)
        self.port.respond(
            tx, make_response(request, 200, headers=[("Contact", contact), ("Expires", str(expires))])
        )
        subscription = watcher.subscription
        if subscription.active:
            heapq.heappush(self._heap, (subscription.expires_at, next(self._seq), watcher))
        else:
            self._unindex(watcher)
        # RFC 6665 §4.2.2: every accepted SUBSCRIBE, refreshes included, is followed by a NOTIFY.
        if subscription.changed():
            self._send(watcher, now)

    def _package(self, request: Request) -> Package:
        """The package asked for, once the request is one we can serve at all (420, 489, 406)."""
        unsupported = request.tokens("require")
        if unsupported:
            raise SipError(420, headers=(("Unsupported", ", ".join(unsupported)),))
        event = event_of(request)
        package = next((p for p in Package if p.value == event.package), None)
        if package is None:
            raise SipError(489, "Bad Event", headers=(("Allow-Events", ALLOW_EVENTS),))
        if not accepts(request, package.content_type):
            raise SipError(406, headers=(("Accept", package.content_type),))
        return package

    def _resource(self, request: Request, clinic: ClinicEntry) -> Aor:
        """The extension or park slot subscribed to: of the subscriber's own clinic (403), existing (404)."""
        directory = self.directory()
        uri = request.uri
        if uri.host and directory.clinic(uri.host) is not None and uri.host.lower() != clinic.domain:
            raise SipError(403, "Another Clinic")
        extension = uri.user_unescaped
        if not extension or not _watchable(directory, (clinic.domain, extension)):
            raise SipError(404)
        return (clinic.domain, extension)

    def _refuse(self, tx: ServerTransaction, request: Request, error: SipError) -> None:
        self.port.respond(
            tx,
            make_response(
                request, error.status, error.reason, to_tag=local_tag(request), headers=error.headers
            ),
        )

    # -- what is watched -------------------------------------------------------------------------

    def line(
        self,
        domain: str,
        extension: str,
        call_key: str,
        phase: Phase,
        direction: Direction,
        acute: bool,
        now: float,
        dialog: DialogIds | None = None,
    ) -> None:
        """``extension``'s part in call ``call_key`` is now ``phase``; ``dialog`` names the ringing
        dialog a busy-lamp key may pick up with Replaces."""
        aor = (domain.lower(), extension)
        lines = self._lines.get(aor)
        if phase is Phase.TERMINATED:
            line = lines.get(call_key) if lines is not None else None
            if lines is None or line is None:
                return
            # Subscribers are told the dialog ended, then it leaves the state for good.
            line.phase = Phase.TERMINATED
            self._changed(aor, now)
            del lines[call_key]
            if not lines:
                del self._lines[aor]
            self.version += 1
            return
        if lines is None:
            lines = self._lines[aor] = {}
        line = lines.get(call_key)
        ids = dialog if phase is Phase.EARLY else None
        if line is not None and (line.phase, line.direction, line.acute, line.ids) == (
            phase,
            direction,
            acute,
            ids,
        ):
            return
        lines[call_key] = _Line(phase, direction, acute, ids)
        self.version += 1
        self._changed(aor, now)

    def registration(self, domain: str, extension: str, registered: bool, now: float) -> None:
        """Whether ``extension`` has at least one registered phone changed (or may have)."""
        aor = (domain.lower(), extension)
        self._registered[aor] = registered
        self._changed(aor, now)

    def directory_changed(self, now: float) -> None:
        """Follow a new directory snapshot: phones switched on or off, staff removed."""
        directory = self.directory()
        if directory.version == self._directory_version:
            return
        self._directory_version = directory.version
        if self.watch is not None:
            self.watch.presence_changed(None)
        for watcher in list(self._by_key.values()):
            if directory.staff_for(*watcher.subscriber) is None:
                self._terminate(watcher, Reason.REJECTED, now)
            elif not _watchable(directory, watcher.watched):
                self._terminate(watcher, Reason.NORESOURCE, now)
            elif watcher.package is Package.PRESENCE or watcher.watched[1] == FORWARD_KEY:
                self._push(watcher, now)

    def lamp(self, domain: str, extension: str) -> Lamp:
        """What a busy-lamp key watching ``extension`` shows now."""
        return _lamp(self._lines.get((domain.lower(), extension), {}).values())

    def reachable(self, domain: str, extension: str) -> bool:
        """Whether ``extension``'s phone is on and registered: what a buddy list shows as open."""
        aor = (domain.lower(), extension)
        staff = self.directory().staff_for(*aor)
        if staff is None or not staff.phone_on:
            return False
        registered = self._registered.get(aor)
        return self.registered(aor) if registered is None else registered

    def lines(self) -> list[LineState]:
        """Every extension in a call or watched by a subscriber, by clinic and extension."""
        out = []
        for aor in sorted(self._lines.keys() | {aor for aor in self._watchers if aor[1] != FORWARD_KEY}):
            current = self._lines.get(aor, {}).values()
            acute = any(line.acute and line.phase is not Phase.TERMINATED for line in current)
            out.append(LineState(aor[0], aor[1], _lamp(current), acute))
        return out

    # -- notifying -------------------------------------------------------------------------------

    def _changed(self, aor: Aor, now: float) -> None:
        if self.watch is not None:
            self.watch.presence_changed(aor)
        watchers = self._watchers.get(aor)
        if watchers:
            for watcher in list(watchers):
                self._push(watcher, now)

    def _push(self, watcher: Watcher, now: float) -> None:
        """Notify ``watcher`` if what it would be told differs from what it was last told."""
        if self._state(watcher) == watcher.sent_state:
            return
        if watcher.subscription.changed():
            self._send(watcher, now)

    def _state(self, watcher: Watcher) -> DialogView | PresenceView:
        match watcher.package:
            case Package.DIALOG:
                if watcher.watched[1] == FORWARD_KEY:
                    return self._forward_view(watcher.subscriber)
                return self._dialog_view(watcher.watched)
            case Package.PRESENCE:
                return self._presence_view(watcher.watched)
            case _:
                assert_never(watcher.package)

    def _dialog_view(self, aor: Aor) -> DialogView:
        lines = self._lines.get(aor)
        if not lines:
            return ()
        return tuple((key, line.phase, line.direction, line.ids) for key, line in lines.items())

    def _forward_view(self, subscriber: Aor) -> DialogView:
        """A forwarding key's lamp: lit while ``subscriber`` forwards every call."""
        staff = self.directory().staff_for(*subscriber)
        if staff is None or staff.forwards.always is None:
            return ()
        return (("forward", Phase.CONFIRMED, Direction.INITIATOR, None),)

    def _presence_view(self, aor: Aor) -> PresenceView:
        staff = self.directory().staff_for(*aor)
        registered = self._registered.get(aor)
        if registered is None:
            registered = self.registered(aor)
        # A buddy list shows where the calls of someone forwarded always go, in the note.
        forwarded = f", forwarded to {staff.forwards.always}" if staff and staff.forwards.always else ""
        if staff is None or not staff.phone_on or not registered:
            return (Basic.CLOSED, LOGGED_OFF + forwarded)
        return (Basic.OPEN, NOTES[_lamp(self._lines.get(aor, {}).values())] + forwarded)

    def _document(self, watcher: Watcher, version: int) -> tuple[DialogView | PresenceView, bytes]:
        """The state to tell ``watcher`` now, and the document that tells it."""
        domain, extension = watcher.watched
        entity = f"sip:{extension}@{domain}"
        match watcher.package:
            case Package.DIALOG:
                if extension == FORWARD_KEY:
                    dialogs = self._forward_view(watcher.subscriber)
                else:
                    dialogs = self._dialog_view(watcher.watched)
                entries = [
                    DialogEntry(key, DialogInfoState(phase.value), DialogDirection(direction.value), ids)
                    for key, phase, direction, ids in dialogs
                ]
                return dialogs, dialog_info(entity, version, entries)
            case Package.PRESENCE:
                presence = self._presence_view(watcher.watched)
                basic, note = presence
                return presence, pidf(entity, [PresenceTuple("line", basic, entity, note)])
            case _:
                assert_never(watcher.package)

    def _send(self, watcher: Watcher, now: float) -> None:
        subscription = watcher.subscription
        state, body = self._document(watcher, subscription.sent)
        try:
            request = subscription.notify(
                body, watcher.package.content_type, local_via(watcher.target.transport, watcher.local), now
            )
        except (DialogError, SipError):
            self._unindex(watcher)  # the dialog is gone: nothing more can be sent in it
            return
        watcher.sent_state = state
        if not subscription.active:
            self._unindex(watcher)
        tx = self.port.send_request(request, watcher.target)
        self._pending[tx] = watcher

    def _terminate(self, watcher: Watcher, reason: Reason, now: float) -> None:
        subscription = watcher.subscription
        subscription.terminate(reason)
        self._unindex(watcher)
        if subscription.changed():
            self._send(watcher, now)

    # -- answers to our NOTIFYs ------------------------------------------------------------------

    def on_response(self, tx: ClientTransaction, response: Response, now: float) -> bool:
        """A response to a request we sent; False when it is not one of ours."""
        watcher = self._pending.get(tx)
        if watcher is None:
            return False
        outcome = watcher.subscription.answered(response.status)
        if outcome is not None:
            del self._pending[tx]
            self._after(watcher, outcome, now)
        return True

    def on_timeout(self, tx: ClientTransaction | ServerTransaction, now: float) -> bool:
        """Timer F fired, or the transport failed, for a transaction; False when not ours."""
        if isinstance(tx, ServerTransaction):
            return False
        watcher = self._pending.pop(tx, None)
        if watcher is None:
            return False
        self._after(watcher, watcher.subscription.timed_out(), now)
        return True

    def on_terminated(self, tx: ClientTransaction | ServerTransaction) -> None:
        """A transaction left the layer; a NOTIFY still unanswered by then never will be."""
        if isinstance(tx, ClientTransaction):
            watcher = self._pending.pop(tx, None)
            if watcher is not None:
                watcher.subscription.timed_out()
                self._unindex(watcher)

    def _after(self, watcher: Watcher, outcome: NotifyOutcome, now: float) -> None:
        match outcome:
            case NotifyOutcome.IDLE:
                pass
            case NotifyOutcome.AGAIN:
                self._send(watcher, now)
            case NotifyOutcome.ENDED:
                self._unindex(watcher)
            case _:
                assert_never(outcome)

    # -- bookkeeping and timers ------------------------------------------------------------------

    def _index(self, watcher: Watcher) -> None:
        subscription = watcher.subscription
        self._by_key[subscription.key] = watcher
        self._watchers.setdefault(watcher.watched, {})[watcher] = None
        self._per_subscriber[watcher.subscriber] = self._per_subscriber.get(watcher.subscriber, 0) + 1
        heapq.heappush(self._heap, (subscription.expires_at, next(self._seq), watcher))
        self.version += 1

    def _unindex(self, watcher: Watcher) -> None:
        key = watcher.subscription.key
        if self._by_key.get(key) is not watcher:
            return
        del self._by_key[key]
        watchers = self._watchers.get(watcher.watched)
        if watchers is not None:
            watchers.pop(watcher, None)
            if not watchers:
                del self._watchers[watcher.watched]
        left = self._per_subscriber.get(watcher.subscriber, 0) - 1
        if left > 0:
            self._per_subscriber[watcher.subscriber] = left
        else:
            self._per_subscriber.pop(watcher.subscriber, None)
        self.version += 1

    def _live(self, at: float, watcher: Watcher) -> bool:
        subscription = watcher.subscription
        return (
            subscription.active
            and subscription.expires_at == at
            and self._by_key.get(subscription.key) is watcher
        )

    def next_deadline(self) -> float | None:
        """When ``on_timer`` next has work (a subscription runs out), or None."""
        heap = self._heap
        while heap and not self._live(heap[0][0], heap[0][2]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def on_timer(self, now: float) -> None:
        """End the subscriptions whose time ran out, each with a final NOTIFY."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, _, watcher = heapq.heappop(heap)
            if self._live(at, watcher) and watcher.subscription.expire(now):
                self._terminate(watcher, Reason.TIMEOUT, now)


def _watchable(directory: Directory, aor: Aor) -> bool:
    """True for a member of staff's extension, for a park lot's slot (its lamp shows a parked call),
    and for the forwarding key (its lamp shows the subscriber's own forward)."""
    if aor[1] == FORWARD_KEY or directory.staff_for(*aor) is not None:
        return True
    lot = directory.park_lot_at(*aor)
    return lot is not None and lot.number != aor[1]


def _lamp(lines: Iterable[_Line]) -> Lamp:
    lamp = Lamp.IDLE
    for line in lines:
        match line.phase:
            case Phase.CONFIRMED:
                return Lamp.BUSY
            case Phase.TRYING | Phase.EARLY:
                # Placing a call keeps the phone busy; being called makes it ring.
                if line.direction is Direction.INITIATOR:
                    return Lamp.BUSY
                lamp = Lamp.RINGING
            case Phase.TERMINATED:
                pass
            case _:
                assert_never(line.phase)
    return lamp


def _request_key(request: Request, event: EventHeader) -> SubscriptionKey:
    """The key of the subscription an in-dialog SUBSCRIBE refreshes (we are the To side)."""
    return (request.call_id, request.to_tag or "", request.from_tag or "", event.package, event.id or "")





__all__ = [
    "ALLOW_EVENTS",
    "FORWARD_KEY",
    "Direction",
    "Lamp",
    "LineState",
    "Package",
    "Phase",
    "PresenceHub",
    "PresenceLimits",
    "PresencePort",
    "PresenceWatch",
    "Watcher",
]
