"""Settings that several layers share: where and how Sentral serves."""

from __future__ import annotations

from dataclasses import dataclass

TRANSPORTS = ("udp", "tcp", "tls")
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}


@dataclass(frozen=True, slots=True)
class Listen:
    """One listening socket: transport, host (IPv4, IPv6 without brackets, or a name) and port."""

    transport: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


class ListenSpecError(ValueError):
    """A --listen value the operator has to correct."""


def parse_listen(spec: str) -> Listen:
    """Parse ``udp:HOST:PORT``, ``tcp:[::1]:5060`` or ``tls:HOST`` (default port) into a Listen."""
    transport, sep, rest = spec.partition(":")
    transport = transport.lower()
    if not sep or transport not in TRANSPORTS:
        raise ListenSpecError(
            f"--listen {spec!r}: start with udp:, tcp: or tls:, e.g. udp:0.0.0.0:5060 or tcp:[::1]:5060"
        )
    port_text = ""
    if rest.startswith("["):
        host, bracket, tail = rest[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise ListenSpecError(f"--listen {spec!r}: an IPv6 address goes in brackets, e.g. udp:[::1]:5060")
        port_text = tail[1:]
    elif rest.count(":") > 1:
        raise ListenSpecError(f"--listen {spec!r}: put an IPv6 address in brackets, e.g. udp:[::1]:5060")
    else:
        host, _, port_text = rest.partition(":")
    if not host:
        raise ListenSpecError(f"--listen {spec!r}: give a host, e.g. {transport}:0.0.0.0:5060")
    if not port_text:
        return Listen(transport, host, DEFAULT_PORTS[transport])
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ListenSpecError(f"--listen {spec!r}: the port must be a number from 1 to 65535")
    return Listen(transport, host, int(port_text))


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """Everything `sentral serve` needs to start."""

    db_url: str
    listens: tuple[Listen, ...] = (Listen("udp", "0.0.0.0", 5060), Listen("tcp", "0.0.0.0", 5060))
    cert: str | None = None
    key: str | None = None
    sip_trace: bool = False
    log_format: str = "console"
    flood_rate: float = 500.0
    """Sustained requests a second one source address may send before it is throttled."""
    auth_failures: int = 20
    """Failed authentications a source may make in a minute before it is blocked."""
    block_seconds: float = 600.0
    trusted: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    """Networks never throttled or blocked (a clinic's own NAT address belongs here)."""
    drain_timeout: float = 30.0
    """On SIGTERM, how long calls in progress may go on before they are hung up (new calls get 503)."""
    no_answer_timeout: float = 60.0
    """How long a call rings before the caller gets 480 (no answer)."""
    session_interval: int = 1800
    """The session timer interval asked for on each leg (RFC 4028), seconds; at least 90."""


SERVE_DEFAULTS = ServeConfig(db_url="")
"""The defaults of every serve setting, for help texts and option defaults."""
