"""What changes in the engine, as numbered events: the source of the web's event feed.

Theory of operation
-------------------
Call control and the presence hub each take one *watch* (``CallControl.watch``,
``PresenceHub.watch``) which they tell, synchronously, that a call or an extension may have
changed. ``EventSource`` is that watch. While nobody listens it is detached and the engine pays one
``is None`` test per change; while attached its work inside the engine is small and bounded:

- ``call_changed`` compares what the feed shows of the call (its state, its park slot, how many
  transfers it has had, the queue it waits in) with what it last saw, and appends an event for
  each difference to the history, a bounded deque. Calls are told as they happen, so a call that
  rings and is answered in one breath still gives both events, in order.
- ``presence_changed`` only notes the extension. Presence is a state, not a story: ``flush``,
  run by the feed's own task, works out each noted extension's status and tells the ones that
  differ from what was told, so a burst of changes to one phone costs one event.

Every event gets the next sequence number, one counter for the whole server. Numbers start from
the server's start time in microseconds, so they keep rising across restarts: a client that
resumes with a number from before a restart, or from before the source was last attached (it
missed what happened while nobody listened), is told to reload instead. The history keeps the
last ``history`` events; a client that asks for older ones is told to reload too.

Events carry their clinic's domain, which the feed uses to give each client its own clinic's
events only; the domain is not part of what a client is sent. Times (``at``, ``started``,
``since``) are seconds since the epoch.

Event types: ``call.started``, ``call.ringing``, ``call.answered``, ``call.transferred``,
``call.identified`` (the clinic's records named the caller after the call was first told),
``call.ended``; ``queue.entered``, ``queue.left``; ``park.parked``, ``park.retrieved``;
``presence``; ``groups`` (who is logged in to each group and function, after a change).
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sentral.config.directory import Directory, GroupEntry
from sentral.pbx.call import Call, CallControl, CallState
from sentral.pbx.hunting import GroupRing
from sentral.pbx.presence import Lamp, PresenceHub

# How many events are kept for clients that resume.
HISTORY = 4096

# The colours of the switchboard: green, yellow (ringing and in a call), red.
AVAILABLE = "available"
RINGING = "ringing"
IN_CALL = "in-call"
OFF = "off"

_LAMP_STATUS = {Lamp.RINGING: RINGING, Lamp.BUSY: IN_CALL}


@dataclass(slots=True)
class Event:
    """One numbered event of one clinic; ``text`` is its JSON, made once for every client."""

    seq: int
    domain: str
    body: dict[str, Any]
    _text: str | None = None

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = json.dumps({"seq": self.seq, **self.body}, separators=(",", ":"))
        return self._text


@dataclass(slots=True)
class _Seen:
    """What the feed last told of one call."""

    state: CallState
    parked: str
    transfers: int
    queue: str
    named: tuple[str, str, str] = ("", "", "")  # the caller's name, kind and record reference
    answered: bool = False


def _named(call: Call) -> tuple[str, str, str]:
    caller = call.caller
    return (caller.name, caller.kind, caller.reference)


def presence_status(hub: PresenceHub, domain: str, extension: str) -> str:
    """The switchboard's status of one member of staff: in a call or ringing, else available when
    their phone is on and registered, else off."""
    status = _LAMP_STATUS.get(hub.lamp(domain, extension))
    if status is not None:
        return status
    return AVAILABLE if hub.reachable(domain, extension) else OFF


def groups_view(directory: Directory, domain: str) -> list[dict[str, Any]]:
    """The groups and functions of clinic ``domain`` with who is logged in to each."""
    groups = sorted((g for (d, _), g in directory.groups.items() if d == domain), key=lambda g: g.name)
    return [_group(group) for group in groups]


def _group(group: GroupEntry) -> dict[str, Any]:
    return {
        "name": group.name,
        "kind": group.kind.value,
        "number": group.number,
        "members": [{"extension": m.extension, "logged_in": m.logged_in} for m in group.members],
    }


def _left(call: Call) -> str:
    """Why a call left its queue: a member's phone rings for it, it was answered, it ended, or
    it went on elsewhere (the overflow)."""
    if call.over:
        return "ended"
    if call.answered is not None:
        return "answered"
    strategy = call.strategy
    if type(strategy) is GroupRing and strategy.hunt is not None:
        return "ringing"
    return "moved"


class EventSource:
    """The engine's changes as numbered events in a bounded history (the engine's watch)."""

    def __init__(
        self,
        calls: CallControl,
        presence: PresenceHub,
        directory: Callable[[], Directory],
        *,
        wall_offset: float | None = None,
        history: int = HISTORY,
        on_event: Callable[[], None] | None = None,
    ) -> None:
        self.calls = calls
        self.presence = presence
        self.directory = directory
        # Engine times (monotonic) become epoch seconds with this offset.
        self.wall_offset = time.time() - time.monotonic() if wall_offset is None else wall_offset
        self.history: deque[Event] = deque(maxlen=history)
        # Told (synchronously, cheaply) whenever there is something new: the feed's task wakes.
        self.on_event = on_event
        self.seq = time.time_ns() // 1000
        # Events numbered up to ``floor`` are not known here: resuming from before it means reload.
        self.floor = self.seq
        self.attached = False
        self._calls: dict[str, _Seen] = {}
        self._dirty: set[tuple[str, str]] = set()
        self._everyone = False
        self._status: dict[tuple[str, str], str] = {}
        self._groups: dict[str, list[dict[str, Any]]] = {}

    # -- attaching ---------------------------------------------------------------------------------

    def attach(self) -> None:
        """Start watching the engine; what is there now is taken as known (clients read it from
        the REST API), and what happened before cannot be resumed from."""
        if self.attached:
            return
        self.attached = True
        self.history.clear()
        self.seq += 1
        self.floor = self.seq
        self._calls = {call.id: self._seen(call) for call in self.calls.calls.values()}
        self._dirty.clear()
        self._everyone = False
        directory = self.directory()
        self._status = {aor: presence_status(self.presence, *aor) for aor in directory.staff}
        self._groups = {domain: groups_view(directory, domain) for domain in directory.clinics}
        self.calls.watch = self
        self.presence.watch = self

    def detach(self) -> None:
        """Stop watching: the engine pays nothing for the feed until it is attached again."""
        if not self.attached:
            return
        self.attached = False
        self.calls.watch = None
        self.presence.watch = None
        self._calls.clear()
        self._status.clear()
        self._dirty.clear()
        self._groups.clear()

    # -- the engine's watch ------------------------------------------------------------------------

    def call_changed(self, call: Call, now: float) -> None:
        """Call control's hook: append an event for whatever the feed shows of ``call`` that changed."""
        seen = self._calls.get(call.id)
        state = call.state
        strategy = call.strategy
        queue = (
            strategy.group.name if type(strategy) is GroupRing and strategy.queued and not call.over else ""
        )
        if (
            seen is not None
            and seen.state is state
            and seen.parked == call.parked
            and seen.transfers == len(call.transfers)
            and seen.queue == queue
            and seen.named == _named(call)
            and seen.answered == (call.answered is not None)
        ):
            return
        domain = call.caller.clinic.domain
        at = round(now + self.wall_offset, 3)
        if seen is None:
            seen = self._calls[call.id] = _Seen(CallState.TRYING, "", 0, "", _named(call))
            self._call(domain, "call.started", call, at)
        named = _named(call)
        if seen.named != named:
            # The clinic's records named the caller after the call was first told (a lookup
            # slower than the start, or the national ID the caller keyed).
            seen.named = named
            self._call(domain, "call.identified", call, at)
        if seen.queue != queue:
            if seen.queue:
                left = _left(call)
                self._add(
                    domain,
                    {"type": "queue.left", "call": call.id, "group": seen.queue, "outcome": left, "at": at},
                )
            if queue:
                self._add(domain, self._queued(call, queue, at))
            seen.queue = queue
        if seen.parked != call.parked:
            if seen.parked:
                self._add(
                    domain,
                    {
                        "type": "park.retrieved",
                        "call": call.id,
                        "slot": seen.parked,
                        "ended": call.over,
                        "at": at,
                    },
                )
            if call.parked:
                self._add(domain, self._parked(call, at))
            seen.parked = call.parked
        transfers = len(call.transfers)
        if seen.transfers != transfers:
            for transfer in call.transfers[seen.transfers :]:
                body = self._call_body("call.transferred", call, at)
                body.update(by=transfer.by, kind=transfer.kind, target=transfer.target)
                self._add(domain, body)
            seen.transfers = transfers
        # A state may be skipped between two looks (rung and answered at once): told anyway. A call
        # Sentral placed (click-to-call) is answered when its member of staff answers, though the
        # core holds it as answered from its start.
        if seen.state is not state and seen.state is CallState.TRYING and call.rang is not None:
            self._call(domain, "call.ringing", call, at)
        if not seen.answered and call.answered is not None:
            seen.answered = True
            self._call(domain, "call.answered", call, at)
        if seen.state is not state:
            if state is CallState.ENDED:
                body = self._call_body("call.ended", call, at)
                body.update(status=call.status, hangup_by=call.hangup_by)
                self._add(domain, body)
                del self._calls[call.id]
                return
            seen.state = state

    def presence_changed(self, aor: tuple[str, str] | None) -> None:
        """The presence hub's hook: note whose status ``flush`` should look at (None: everyone's)."""
        if aor is None:
            self._everyone = True
        else:
            self._dirty.add(aor)
        if self.on_event is not None:
            self.on_event()

    # -- the feed's side ---------------------------------------------------------------------------

    def flush(self) -> None:
        """Tell the presence (and, after a directory change, the groups) that changed since the
        last flush. Run by the feed's task, outside the engine's work."""
        if not self.attached or not (self._dirty or self._everyone):
            return
        directory = self.directory()
        hub = self.presence
        at = round(time.time(), 3)
        dirty = self._dirty
        if self._everyone:
            dirty = set(directory.staff) | set(self._status)
            for domain in directory.clinics:
                groups = groups_view(directory, domain)
                if groups != self._groups.get(domain):
                    self._groups[domain] = groups
                    self._add(domain, {"type": "groups", "groups": groups, "at": at})
        for aor in sorted(dirty):  # sorted: the same changes give the same order of events
            staff = directory.staff_for(*aor)
            if staff is None:
                if self._status.pop(aor, None) is not None:
                    # Removed from the directory: gone from the list.
                    self._add(
                        aor[0],
                        {"type": "presence", "extension": aor[1], "status": OFF, "removed": True, "at": at},
                    )
                continue
            status = presence_status(hub, staff.domain, staff.extension)
            if self._status.get(aor) != status:
                self._status[aor] = status
                self._add(
                    staff.domain,
                    {
                        "type": "presence",
                        "extension": staff.extension,
                        "name": staff.name,
                        "status": status,
                        "at": at,
                    },
                )
        self._dirty.clear()
        self._everyone = False

    def since(self, seq: int) -> list[Event] | None:
        """The events after ``seq``, or None when they are not all known here (reload)."""
        if seq > self.seq or seq < self.floor:
            return None
        history = self.history
        if not history:
            return [] if seq >= self.floor else None
        first = history[0].seq
        if seq < first - 1:
            return None
        return [event for event in history if event.seq > seq]

    # -- making events -----------------------------------------------------------------------------

    def _add(self, domain: str, body: dict[str, Any]) -> None:
        self.seq += 1
        self.history.append(Event(self.seq, domain, body))
        if self.on_event is not None:
            self.on_event()

    def _call(self, domain: str, kind: str, call: Call, at: float) -> None:
        self._add(domain, self._call_body(kind, call, at))

    def _call_body(self, kind: str, call: Call, at: float) -> dict[str, Any]:
        listed = call.listed
        offset = self.wall_offset
        return {
            "type": kind,
            "call": call.id,
            "caller": listed[0] if listed else call.caller.extension,
            "caller_name": "" if listed else call.caller.name,
            # The caller's record for the clinic platform, once the lookup found one.
            "caller_kind": "" if listed else call.caller.kind,
            "caller_reference": "" if listed else call.caller.reference,
            "callee": listed[1] if listed else call.callee,
            "callee_name": call.callee_name,
            "outside": call.caller.outside,
            "acute": call.acute,
            "group": call.group,
            "lines": {extension: phase.value for extension, phase in call.lines.items()},
            "started": round(call.started + offset, 3),
            "answered": None if call.answered is None else round(call.answered + offset, 3),
            "at": at,
        }

    def _queued(self, call: Call, group: str, at: float) -> dict[str, Any]:
        strategy = call.strategy
        acute = call.acute
        since = call.started
        if type(strategy) is GroupRing:
            acute = acute or strategy.acute
            since = strategy.joined
        return {
            "type": "queue.entered",
            "call": call.id,
            "group": group,
            "caller": call.caller.extension,
            "caller_name": call.caller.name,
            "caller_kind": call.caller.kind,
            "caller_reference": call.caller.reference,
            "acute": acute,
            "since": round(since + self.wall_offset, 3),
            "at": at,
        }

    def _parked(self, call: Call, at: float) -> dict[str, Any]:
        return {
            "type": "park.parked",
            "call": call.id,
            "slot": call.parked,
            "caller": call.a.extension,
            "caller_name": call.caller.name if call.a.extension == call.caller.extension else "",
            "acute": call.acute,
            "since": at,
            "at": at,
        }

    @staticmethod
    def _seen(call: Call) -> _Seen:
        strategy = call.strategy
        queue = strategy.group.name if type(strategy) is GroupRing and strategy.queued else ""
        return _Seen(
            call.state, call.parked, len(call.transfers), queue, _named(call), call.answered is not None
        )


__all__ = [
    "AVAILABLE",
    "HISTORY",
    "IN_CALL",
    "OFF",
    "RINGING",
    "Event",
    "EventSource",
    "groups_view",
    "presence_status",
]
