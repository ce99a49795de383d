"""The abuse guard: rate limits, authentication-failure blocking and security events per source.

Theory of operation: the transport asks ``Guard.check(host, now)`` for every message it receives,
before parsing it, and the endpoint driver reports each digest verification with
``auth_failed`` / ``auth_succeeded``. The guard answers ALLOW, THROTTLE (the driver answers 503
with Retry-After, or drops) or BLOCK (the driver drops silently, without a word to the scanner).

Each source address has a token bucket: ``rate`` tokens a second, up to ``burst``. A message
spends one token; a message that finds none is throttled. Throttled messages also fill an
*excess* counter that drains slowly (``excess_decay`` a second). A source far over its rate fills
it within a second or two; one a little over its rate for minutes fills it too; a phone that
overshot once after a reboot leaves it nearly empty. Past ``excess_limit`` the source is blocked
for ``block_seconds``. Separately, more than ``auth_failures`` failed verifications within
``auth_window`` seconds block the source: that is what password guessing (svcrack) looks like. A
success does not erase failures, or a scanner that knows one account would interleave it with its
guesses; failures simply age out of the window. Extension scanning (svwar) gets nothing to scan
for from the digest layer, which answers unknown and known users alike, and its volume meets the
rate limit.

Trusted networks (loopback by default; add the clinic's own LAN or NAT address) are never
throttled or blocked: a whole clinic behind one address must not lose its phones to one phone
with a stale password.

Memory stays bounded under a flood of spoofed sources. Blocked sources live in their own capped
table, so a flood of new addresses cannot push a blocked scanner out. Other sources are dropped
once idle, that is once their state has returned to that of a stranger (bucket full, excess
drained, no failures in the window). The table is swept a little at every new source in
"second chance" order (the oldest entry is dropped if idle, otherwise moved to the back), and
when it is full the oldest entry goes regardless.

Security events (auth_failure, throttled, blocked, unblocked) queue up for the driver to log, one
line each, in a form fail2ban can match. A source being throttled yields one event when it starts
and then one every ``event_interval`` seconds with the number of messages refused meanwhile;
blocked sources are dropped without any event. Failure and throttle events also share a global
budget, so that a spoofed flood cannot turn into a log flood; blocks and unblocks always get
through.

Like the SIP core this module is pure: it reads no clock (callers pass ``now``, in seconds from
any fixed origin) and does no IO.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from ipaddress import IPv4Network, IPv6Network, ip_network
from socket import AF_INET, AF_INET6, inet_pton

Network = IPv4Network | IPv6Network


def parse_networks(texts: Iterable[str]) -> tuple[Network, ...]:
    """Networks from CIDR texts such as ``"10.20.0.0/16"``; ValueError names the bad one."""
    networks: list[Network] = []
    for text in texts:
        try:
            networks.append(ip_network(text.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an IP network: {text!r}") from None
    return tuple(networks)


LOOPBACK: tuple[Network, ...] = parse_networks(("127.0.0.0/8", "::1/128"))


class GuardAction(Enum):
    """What the driver does with a received message."""

    ALLOW = "allow"
    # Answer 503 with Retry-After (or drop a response or ACK, which cannot be answered).
    THROTTLE = "throttle"
    # Drop silently: a scanner learns nothing from silence.
    BLOCK = "block"


class SecurityEventKind(Enum):
    """The kinds of security event; the values are what log lines carry."""

    AUTH_FAILURE = "auth_failure"
    THROTTLED = "throttled"
    BLOCKED = "blocked"
    UNBLOCKED = "unblocked"


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    """Something about a source address worth one log line."""

    kind: SecurityEventKind
    host: str
    reason: str
    at: float
    # How many occurrences this one event stands for (throttled messages since the last event).
    count: int = 1


@dataclass(frozen=True, slots=True)
class GuardPolicy:
    """Limits per source address. The defaults suit a clinic: generous for phones, not for scanners."""

    rate: float = 500.0
    """Sustained requests a second."""
    burst: float = 1000.0
    """Requests a source may send at once after being quiet."""
    excess_limit: float = 5000.0
    """Throttled requests (net of ``excess_decay``) after which the source is blocked."""
    excess_decay: float = 10.0
    """Throttled requests forgiven a second."""
    auth_failures: int = 20
    """Failed authentications tolerated within ``auth_window``; one more blocks the source."""
    auth_window: float = 60.0
    block_seconds: float = 600.0
    trusted: tuple[Network, ...] = LOOPBACK
    """Networks never throttled or blocked."""
    event_interval: float = 10.0
    """Least time between two throttled events for one source."""
    event_rate: float = 100.0
    """Auth-failure and throttled events a second, over all sources."""
    event_burst: float = 1000.0
    max_sources: int = 100_000
    max_blocked: int = 10_000
    max_events: int = 10_000
    """Events held until the driver drains them; the oldest are dropped beyond this."""

    def __post_init__(self) -> None:
        positive = {
            "rate": self.rate,
            "excess_decay": self.excess_decay,
            "auth_window": self.auth_window,
            "block_seconds": self.block_seconds,
            "event_rate": self.event_rate,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name} must be positive, not {value!r}")
        for name, value in {
            "burst": self.burst,
            "excess_limit": self.excess_limit,
            "event_burst": self.event_burst,
            "max_sources": self.max_sources,
            "max_blocked": self.max_blocked,
            "max_events": self.max_events,
        }.items():
            if not value >= 1:
                raise ValueError(f"{name} must be at least 1, not {value!r}")
        if self.auth_failures < 0:
            raise ValueError("auth_failures must not be negative")
        if self.event_interval < 0:
            raise ValueError("event_interval must not be negative")


class _Source:
    """Mutable per-address state; exists only while it differs from a stranger's."""

    def __init__(self, host: str, tokens: float, now: float) -> None:
        self.host = host
        self.tokens = tokens
        self.stamp = now
        self.excess = 0.0
        self.throttled = 0
        self.event_at = float("-inf")
        self.failures: deque[float] | None = None


_TRUST_CACHE_MAX = 4096
_IPV4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"
# Entries examined per new source; two keep the table tracking the live set while a flood of
# one-packet sources passes through, at a bounded cost per message.
_SWEEP_ON_ADMIT = 2
_SWEEP_ON_POLL = 1024


class Guard:
    """Per-source rate limiting and blocking, fed with the current time by the caller."""

    def __init__(self, policy: GuardPolicy | None = None) -> None:
        self._policy = policy if policy is not None else GuardPolicy()
        self._sources: dict[str, _Source] = {}
        # Sweep order. A source removed from the table on being blocked stays here until the
        # sweep reaches it and sees that the table no longer holds that very object.
        self._order: deque[_Source] = deque()
        self._blocked: dict[str, float] = {}
        self.auth_failures = 0  # failed authentications since the start, for metrics
        self.blocks = 0  # sources blocked since the start
        # (until, host) for every block; entries whose block already ended are skipped lazily.
        self._expiry: list[tuple[float, str]] = []
        self._events: deque[SecurityEvent] = deque()
        self._event_tokens = self._policy.event_burst
        self._event_stamp = float("-inf")
        self._suppressed = 0
        self._trusted_hosts: set[str] = set()
        self._trusted_v4: tuple[tuple[int, int], ...] = ()
        self._trusted_v6: tuple[tuple[int, int], ...] = ()
        self._trust(self._policy.trusted)
        # Addresses trusted besides the policy's networks: the trunks' carriers, whose traffic is
        # a whole clinic's calls and must never be throttled as one phone's would be.
        self.also_trusted: Callable[[str], bool] | None = None

    def _trust(self, trusted: tuple[Network, ...]) -> None:
        self._trusted_hosts = set()
        self._trusted_v4 = tuple((int(n.network_address), int(n.netmask)) for n in trusted if n.version == 4)
        self._trusted_v6 = tuple((int(n.network_address), int(n.netmask)) for n in trusted if n.version == 6)

    def reconfigure(self, policy: GuardPolicy) -> None:
        """Limits changed while serving (SIGHUP): later requests are judged by ``policy``. Sources
        now trusted are forgotten (and unblocked); the others keep their counts, and their blocks
        the time they were given."""
        self._policy = policy
        self._trust(policy.trusted)
        if policy.trusted:
            for host in [host for host in self._sources if self._is_trusted(host)]:
                del self._sources[host]
            for host in [host for host in self._blocked if self._is_trusted(host)]:
                del self._blocked[host]

    @property
    def policy(self) -> GuardPolicy:
        """The limits in force."""
        return self._policy

    @property
    def tracked_sources(self) -> int:
        """Addresses with rate or failure state (blocked ones not included)."""
        return len(self._sources)

    @property
    def blocked_sources(self) -> int:
        """Addresses currently blocked (some may be past their time until the next check or poll)."""
        return len(self._blocked)

    @property
    def events_suppressed(self) -> int:
        """Events left out by the global event budget or the queue bound, since the start."""
        return self._suppressed

    def check(self, host: str, now: float) -> GuardAction:
        """Account one received message from ``host`` and say what to do with it."""
        policy = self._policy
        source = self._sources.get(host)
        if source is None:
            # Only sources neither trusted nor blocked ever get an entry, so one lookup settles
            # the common case of a known source.
            if self._blocked:
                until = self._blocked.get(host)
                if until is not None:
                    if now < until:
                        return GuardAction.BLOCK
                    self._unblock(host, now, "block expired")
            if policy.trusted and self._is_trusted(host):
                return GuardAction.ALLOW
            also = self.also_trusted
            if also is not None and also(host):
                return GuardAction.ALLOW
            source = self._admit(host, now)
        elapsed = now - source.stamp
        tokens = source.tokens
        if elapsed > 0:
            tokens += elapsed * policy.rate
            if tokens > policy.burst:
                tokens = policy.burst
            if source.excess:
                excess = source.excess - elapsed * policy.excess_decay
                source.excess = excess if excess > 0 else 0.0
            source.stamp = now
        if tokens >= 1.0:
            source.tokens = tokens - 1.0
            return GuardAction.ALLOW
        source.tokens = tokens
        source.excess += 1.0
        if source.excess > policy.excess_limit:
            self._block(source, now, f"request rate over {policy.rate:g}/s")
            return GuardAction.BLOCK
        source.throttled += 1
        if now - source.event_at >= policy.event_interval:
            self._emit_throttled(source, now)
        return GuardAction.THROTTLE

    def auth_failed(
        self, host: str, now: float, *, reason: str = "digest authentication failed"
    ) -> GuardAction:
        """Record a failed authentication from ``host``; BLOCK if this one crossed the threshold."""
        self.auth_failures += 1
        policy = self._policy
        if policy.trusted and self._is_trusted(host):
            # Still worth a log line, but never a block: see the theory of operation.
            self._emit_budgeted(SecurityEvent(SecurityEventKind.AUTH_FAILURE, host, reason, now), now)
            return GuardAction.ALLOW
        until = self._blocked.get(host)
        if until is not None:
            if now < until:
                # Requests already in flight when the block began: nothing new to say.
                return GuardAction.BLOCK
            self._unblock(host, now, "block expired")
        source = self._sources.get(host)
        if source is None:
            source = self._admit(host, now)
        failures = source.failures
        if failures is None:
            # One more than the threshold is all that is ever needed to decide.
            failures = source.failures = deque(maxlen=policy.auth_failures + 1)
        horizon = now - policy.auth_window
        while failures and failures[0] <= horizon:
            failures.popleft()
        failures.append(now)
        self._emit_budgeted(SecurityEvent(SecurityEventKind.AUTH_FAILURE, host, reason, now), now)
        if len(failures) > policy.auth_failures:
            self._block(source, now, f"{len(failures)} authentication failures in {policy.auth_window:g} s")
            return GuardAction.BLOCK
        return GuardAction.ALLOW

    def auth_succeeded(self, host: str, now: float) -> None:
        """Record a successful authentication from ``host``.

        Deliberately forgives nothing (see the theory of operation); reporting it keeps the driver
        independent of that policy.
        """

    def events(self) -> list[SecurityEvent]:
        """Take the security events queued since the last call, oldest first."""
        events = list(self._events)
        self._events.clear()
        return events

    def next_deadline(self) -> float | None:
        """When the earliest block ends, for the driver's timer; None if nothing is blocked."""
        self._drop_ended_expiries()
        return self._expiry[0][0] if self._expiry else None

    def poll(self, now: float) -> None:
        """Lift blocks that have ended and sweep idle sources: call at ``next_deadline`` and every second or so."""
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            until, host = heapq.heappop(expiry)
            if self._blocked.get(host) == until:
                self._unblock(host, now, "block expired")
        self._sweep(now, _SWEEP_ON_POLL)

    def trusts(self, host: str) -> bool:
        """Whether ``host`` is in a trusted network (``--trust``; loopback by default)."""
        return bool(self._policy.trusted) and self._is_trusted(host)

    # -----------------------------------------------------------------------------------------

    def _is_trusted(self, host: str) -> bool:
        if host in self._trusted_hosts:
            return True
        if not self._match_trusted(host):
            # Not cached: untrusted sources get a table entry instead, and caching them would let
            # a flood of new addresses churn the cache.
            return False
        if len(self._trusted_hosts) >= _TRUST_CACHE_MAX:
            self._trusted_hosts.clear()
        self._trusted_hosts.add(host)
        return True

    def _match_trusted(self, host: str) -> bool:
        # inet_pton (a pure conversion, no IO) rather than ipaddress.ip_address: ten times faster,
        # and this runs for every new source during a spoofed flood.
        text = host[1:-1] if host[:1] == "[" and host[-1:] == "]" else host
        try:
            packed = inet_pton(AF_INET, text)
        except (OSError, ValueError):
            try:
                packed = inet_pton(AF_INET6, text.split("%", 1)[0])
            except (OSError, ValueError):
                return False
            if packed[:12] == _IPV4_MAPPED_PREFIX:
                # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
                packed = packed[12:]
            else:
                number = int.from_bytes(packed)
                return any(number & mask == base for base, mask in self._trusted_v6)
        number = int.from_bytes(packed)
        return any(number & mask == base for base, mask in self._trusted_v4)

    def _admit(self, host: str, now: float) -> _Source:
        self._sweep(now, _SWEEP_ON_ADMIT)
        sources = self._sources
        order = self._order
        while len(sources) >= self._policy.max_sources:
            oldest = order.popleft()
            if sources.get(oldest.host) is oldest:
                del sources[oldest.host]
        source = _Source(host, self._policy.burst, now)
        sources[host] = source
        order.append(source)
        return source

    def _sweep(self, now: float, steps: int) -> None:
        sources = self._sources
        order = self._order
        policy = self._policy
        for _ in range(min(steps, len(order))):
            source = order.popleft()
            if sources.get(source.host) is not source:
                continue
            elapsed = now - source.stamp
            failures = source.failures
            idle = (
                source.tokens + elapsed * policy.rate >= policy.burst
                and source.excess - elapsed * policy.excess_decay <= 0
                and (not failures or failures[-1] <= now - policy.auth_window)
            )
            if idle:
                if source.throttled:
                    self._emit_throttled(source, now)
                del sources[source.host]
            else:
                order.append(source)

    def _block(self, source: _Source, now: float, reason: str) -> None:
        host = source.host
        # The source's history has done its job; after the block it starts over as a stranger.
        del self._sources[host]
        blocked = self._blocked
        if len(blocked) >= self._policy.max_blocked:
            self._drop_ended_expiries()
            _, victim = heapq.heappop(self._expiry)
            del blocked[victim]
            self._emit(SecurityEvent(SecurityEventKind.UNBLOCKED, victim, "block table full", now))
        until = now + self._policy.block_seconds
        blocked[host] = until
        self.blocks += 1
        heapq.heappush(self._expiry, (until, host))
        self._emit(SecurityEvent(SecurityEventKind.BLOCKED, host, reason, now))

    def _unblock(self, host: str, now: float, reason: str) -> None:
        del self._blocked[host]
        self._emit(SecurityEvent(SecurityEventKind.UNBLOCKED, host, reason, now))

    def _drop_ended_expiries(self) -> None:
        """Pop heap entries whose block was already lifted, so the top is a live block."""
        expiry = self._expiry
        blocked = self._blocked
        while expiry and blocked.get(expiry[0][1]) != expiry[0][0]:
            heapq.heappop(expiry)

    def _emit_throttled(self, source: _Source, now: float) -> None:
        count = source.throttled
        source.throttled = 0
        source.event_at = now
        reason = f"{count} request{'s' if count != 1 else ''} over {self._policy.rate:g}/s"
        self._emit_budgeted(SecurityEvent(SecurityEventKind.THROTTLED, source.host, reason, now, count), now)

    def _emit_budgeted(self, event: SecurityEvent, now: float) -> None:
        policy = self._policy
        elapsed = now - self._event_stamp
        if elapsed > 0:
            self._event_tokens = min(policy.event_burst, self._event_tokens + elapsed * policy.event_rate)
            self._event_stamp = now
        if self._event_tokens < 1.0:
            self._suppressed += 1
            return
        self._event_tokens -= 1.0
        self._emit(event)

    def _emit(self, event: SecurityEvent) -> None:
        events = self._events
        if len(events) >= self._policy.max_events:
            events.popleft()
            self._suppressed += 1
        events.append(event)
