"""Session timers (RFC 4028): keep-alive of calls by periodic re-INVITE or UPDATE.

Theory of operation: a call whose BYE is lost would hold a B2BUA's state, and a relay's ports,
forever. RFC 4028 has the two ends agree on a session interval and on which of them refreshes
the session (re-INVITE or UPDATE) before it runs out; the other end tears the call down when no
refresh comes.

The B2BUA negotiates each leg on its own. On the caller's leg it is the UAS: ``negotiate_uas``
reads Session-Expires, Min-SE and Supported from the INVITE and decides either a 422 (the
interval is below our minimum) or what to put in the 2xx. On the callee's leg it is the UAC:
``TimerRequest`` gives the headers of the outgoing INVITE, turns a 422 into the retry with a
larger interval (a bounded number of times), and reads the 2xx into a ``Negotiated``.

``SessionTimer`` then runs per leg on the caller's clock: ``due(now)`` says "send a refresh"
at half the interval when we refresh, and "expire" (send BYE) when the refresh we wait for,
or the answer to ours, has not come by the interval less min(32 s, interval / 3) (§10).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import assert_never

from sentral.pbx.sip.errors import SipError
from sentral.pbx.sip.grammar import parse_params
from sentral.pbx.sip.message import Message, Request, Response

MIN_SE_FLOOR = 90  # §4, §5: no interval may be below 90 s
DEFAULT_INTERVAL = 1800  # §4: the RECOMMENDED session interval
MAX_422_RETRIES = 3


class Refresher(Enum):
    """Who refreshes: the UAC or the UAS of the transaction that set the interval (§4)."""

    UAC = "uac"
    UAS = "uas"


# Values made for every call spell out their __init__: compiled, the one @dataclass generates would
# run interpreted, and a frozen class could not assign in its own. Nothing changes one once made.
@dataclass(slots=True, init=False, unsafe_hash=True)
class SessionExpires:
    """A Session-Expires value: ``1800;refresher=uac``."""

    interval: int
    refresher: Refresher | None = None

    def __init__(self, interval: int, refresher: Refresher | None = None) -> None:
        self.interval = interval
        self.refresher = refresher

    def __str__(self) -> str:
        if self.refresher is None:
            return str(self.interval)
        return f"{self.interval};refresher={self.refresher.value}"


def _delta_seconds(text: str, name: str) -> tuple[int, str]:
    value, _, rest = text.strip().partition(";")
    value = value.strip()
    # ASCII digits only: str.isdigit() also admits "²", which int() refuses.
    if not (value.isascii() and value.isdigit()) or len(value) > 10:
        raise SipError(400, f"Bad {name} header")
    return int(value), rest


def _single(msg: Message, name: str) -> str | None:
    lines = msg.header_lines(name)
    if not lines:
        return None
    if len(lines) > 1:
        raise SipError(400, f"Multiple {name} headers")
    return lines[0]


def session_expires(msg: Message) -> SessionExpires | None:
    """The Session-Expires of ``msg`` (long or compact ``x`` form), or None; SipError 400 if bad."""
    text = _single(msg, "Session-Expires")
    if text is None:
        return None
    interval, rest = _delta_seconds(text, "Session-Expires")
    if interval == 0:
        raise SipError(400, "Bad Session-Expires header")
    refresher = None
    for name, value in parse_params(rest):
        if name == "refresher":
            try:
                refresher = Refresher((value or "").lower())
            except ValueError:
                raise SipError(400, "Bad refresher parameter") from None
    return SessionExpires(interval, refresher)


def min_se(msg: Message) -> int | None:
    """The Min-SE of ``msg``, or None; SipError 400 if malformed."""
    text = _single(msg, "Min-SE")
    if text is None:
        return None
    value, rest = _delta_seconds(text, "Min-SE")
    parse_params(rest)
    return value


def supports_timer(msg: Message) -> bool:
    """True if ``msg`` declares the ``timer`` option tag in Supported or Require."""
    return "timer" in msg.tokens("supported") or "timer" in msg.tokens("require")


# -- UAS side ------------------------------------------------------------------------------------


@dataclass(slots=True, init=False, unsafe_hash=True)
class Negotiated:
    """An agreed session interval and refresher, as the 2xx states them."""

    interval: int
    refresher: Refresher
    require_timer: bool = False

    def __init__(self, interval: int, refresher: Refresher, require_timer: bool = False) -> None:
        self.interval = interval
        self.refresher = refresher
        self.require_timer = require_timer

    def headers(self) -> list[tuple[str, str]]:
        """The headers for the 2xx (§9): Session-Expires, and Require: timer when needed."""
        out = [("Session-Expires", str(SessionExpires(self.interval, self.refresher)))]
        if self.require_timer:
            out.append(("Require", "timer"))
        return out

    def we_refresh(self, *, uas: bool) -> bool:
        """True if we refresh, being the UAS (``uas``) or the UAC of the negotiating request."""
        return self.refresher is (Refresher.UAS if uas else Refresher.UAC)


@dataclass(frozen=True, slots=True)
class IntervalTooSmall:
    """The request's interval is below our minimum: answer 422 with our Min-SE (§6, §9)."""

    min_se: int

    def error(self) -> SipError:
        """The SipError to raise for it."""
        return SipError(422, "Session Interval Too Small", headers=(("Min-SE", str(self.min_se)),))


def negotiate_uas(
    request: Request,
    *,
    min_se: int = MIN_SE_FLOOR,
    default_interval: int | None = DEFAULT_INTERVAL,
    prefer: Refresher = Refresher.UAS,
) -> Negotiated | IntervalTooSmall | None:
    """Decide the session timer for the 2xx to ``request`` (an INVITE or UPDATE), as UAS (§9).

    ``min_se`` is the smallest interval we accept; ``default_interval`` the one we want (None:
    no timer unless the UAC asks for one). A requested interval below ``min_se`` gets a 422. A
    larger one than we want is lowered, never below the request's Min-SE (§9 forbids). Without
    Session-Expires in the request we still ask for our interval. The refresher is the one the
    request named; else ``prefer`` when the UAC supports timers; else us (§9: a UAC without the
    extension cannot be asked to refresh). Returns None when no timer is wanted.
    """
    floor = max(MIN_SE_FLOOR, min_se)
    asked = session_expires(request)
    if asked is not None and asked.interval < floor:
        return IntervalTooSmall(floor)
    lowest = max(floor, min_se_of(request))
    if asked is not None:
        # §9: the UAS may shorten the interval but never lengthen it.
        interval = asked.interval
        if default_interval is not None and default_interval < interval:
            interval = max(default_interval, lowest)
    elif default_interval is None:
        return None
    else:
        interval = max(default_interval, lowest)
    supported = supports_timer(request)
    if not supported:
        refresher = Refresher.UAS
    elif asked is not None and asked.refresher is not None:
        refresher = asked.refresher
    else:
        refresher = prefer
    # §9: Require: timer is a MUST when the UAC refreshes and a SHOULD whenever it supports it.
    return Negotiated(interval, refresher, require_timer=supported)


def min_se_of(msg: Message) -> int:
    """The Min-SE of ``msg``, or the 90 s that applies when it has none (§5)."""
    value = min_se(msg)
    return MIN_SE_FLOOR if value is None else value


# -- UAC side ------------------------------------------------------------------------------------


@dataclass(slots=True, init=False, unsafe_hash=True)
class TimerRequest:
    """What our INVITE asks for (§7.1), and how it moves on a 422 (§7.3) or a 2xx (§7.2)."""

    interval: int = DEFAULT_INTERVAL
    min_se: int = MIN_SE_FLOOR
    refresher: Refresher | None = None
    attempts: int = 0

    def __init__(
        self,
        interval: int = DEFAULT_INTERVAL,
        min_se: int = MIN_SE_FLOOR,
        refresher: Refresher | None = None,
        attempts: int = 0,
    ) -> None:
        self.interval = interval
        self.min_se = min_se
        self.refresher = refresher
        self.attempts = attempts

    def headers(self) -> list[tuple[str, str]]:
        """Session-Expires, Min-SE and Supported: timer for the INVITE."""
        return [
            ("Session-Expires", str(SessionExpires(self.interval, self.refresher))),
            ("Min-SE", str(self.min_se)),
            ("Supported", "timer"),
        ]

    def after_422(
        self, response: Response, *, max_interval: int = 4 * 3600, max_attempts: int = MAX_422_RETRIES
    ) -> TimerRequest | None:
        """The request to retry with after a 422, or None to give up (§7.3).

        The retry asks for the 422's Min-SE. A 422 whose Min-SE we already met, one without
        Min-SE, one asking for more than ``max_interval``, or one too many ends the loop: each
        of these would otherwise bounce between the two ends for ever.
        """
        if response.status != 422:
            raise ValueError("not a 422 response")
        wanted = min_se(response)
        if wanted is None or wanted <= self.interval or wanted > max_interval:
            return None
        if self.attempts >= max_attempts:
            return None
        return TimerRequest(
            interval=wanted,
            min_se=max(self.min_se, wanted),
            refresher=self.refresher,
            attempts=self.attempts + 1,
        )

    def on_2xx(self, response: Response, *, insist: bool = True) -> Negotiated | None:
        """The timer the 2xx settles (§7.2).

        With Session-Expires, its refresher decides (a 2xx that names none is taken as leaving
        the refresh to us, so that somebody does it). Without it the UAS does not do timers: if
        ``insist``, we keep our own interval and refresh alone, as §7.2 allows; else no timer.
        """
        if not 200 <= response.status < 300:
            raise ValueError("not a 2xx response")
        granted = session_expires(response)
        if granted is None:
            return Negotiated(self.interval, Refresher.UAC) if insist else None
        return Negotiated(granted.interval, granted.refresher or Refresher.UAC)


# -- the running timer ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Refresh:
    """Send a session refresh now, with ``method`` (re-INVITE or UPDATE, §7.4)."""

    method: str


@dataclass(frozen=True, slots=True)
class Expire:
    """The session has run out: send BYE and end the call (§10)."""


Action = Refresh | Expire


class TimerState(Enum):
    """Where a leg's timer stands."""

    RUNNING = "running"  # waiting for the next refresh (ours or theirs)
    REFRESHING = "refreshing"  # our refresh is sent, its 2xx not yet back
    EXPIRED = "expired"


def expiry_margin(interval: float) -> float:
    """How long before the session's end the BYE goes out: min(32 s, interval / 3) (§10)."""
    return min(32.0, interval / 3)


def refresh_method(peer_allow: list[str]) -> str:
    """UPDATE when the peer allows it (no offer/answer needed, §7.4), else re-INVITE."""
    return "UPDATE" if "update" in (token.lower() for token in peer_allow) else "INVITE"


class SessionTimer:
    """One leg's session timer on a caller-supplied clock."""

    def __init__(self, interval: int, *, we_refresh: bool, now: float, method: str = "INVITE") -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.interval = interval
        self.we_refresh = we_refresh
        self.method = method
        self.state = TimerState.RUNNING
        self._last = now

    @classmethod
    def start(cls, negotiated: Negotiated, *, uas: bool, now: float, method: str = "INVITE") -> SessionTimer:
        """The timer for a leg where we were the UAS (``uas``) or UAC of the negotiation."""
        return cls(negotiated.interval, we_refresh=negotiated.we_refresh(uas=uas), now=now, method=method)

    def refresh_request(self) -> TimerRequest:
        """What our refresh asks for (§7.4): the same interval, and we stay the refresher, being
        the UAC of the refresh."""
        return TimerRequest(interval=self.interval, refresher=Refresher.UAC)

    def deadline(self) -> float:
        """When ``due`` next has something to say (``math.inf`` once expired)."""
        match self.state:
            case TimerState.RUNNING:
                if self.we_refresh:
                    return self._last + self.interval / 2
                return self._expiry()
            case TimerState.REFRESHING:
                return self._expiry()
            case TimerState.EXPIRED:
                return math.inf
            case _:
                assert_never(self.state)

    def _expiry(self) -> float:
        return self._last + self.interval - expiry_margin(self.interval)

    def refreshed(self, now: float, negotiated: Negotiated | None = None, *, uas: bool = False) -> None:
        """A refresh succeeded (the 2xx to theirs sent, or to ours received): start over.

        ``negotiated`` carries the interval and refresher the refresh agreed, which may differ
        from before; ``uas`` says whether we were the UAS of that refresh.
        """
        if self.state is TimerState.EXPIRED:
            return
        if negotiated is not None:
            self.interval = negotiated.interval
            self.we_refresh = negotiated.we_refresh(uas=uas)
        self._last = now
        self.state = TimerState.RUNNING

    def due(self, now: float) -> Action | None:
        """What to do at ``now``: a ``Refresh``, an ``Expire``, or nothing yet."""
        match self.state:
            case TimerState.RUNNING:
                if self.we_refresh and now >= self._last + self.interval / 2:
                    self.state = TimerState.REFRESHING
                    return Refresh(self.method)
                if not self.we_refresh and now >= self._expiry():
                    self.state = TimerState.EXPIRED
                    return Expire()
                return None
            case TimerState.REFRESHING:
                if now >= self._expiry():
                    self.state = TimerState.EXPIRED
                    return Expire()
                return None
            case TimerState.EXPIRED:
                return None
            case _:
                assert_never(self.state)
