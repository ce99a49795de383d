"""Settings that several layers share: where and how Sentral serves."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


class MediaSpecError(ValueError):
    """A media setting (port range, address) the operator has to correct."""


def parse_port_range(spec: str) -> tuple[int, int]:
    """Parse ``FIRST-LAST`` (``10000-20000``) into the RTP port range; at least one even/odd pair."""
    first, dash, last = spec.partition("-")
    first, last = first.strip(), last.strip()
    if not dash or not first.isdigit() or not last.isdigit():
        raise MediaSpecError(f"--media-ports {spec!r}: give a range such as 10000-20000")
    low, high = int(first), int(last)
    if not 1024 <= low <= high <= 65535:
        raise MediaSpecError(f"--media-ports {spec!r}: the ports must run upwards within 1024-65535")
    if high - (low + low % 2) < 1:
        raise MediaSpecError(f"--media-ports {spec!r}: the range must hold an even port and the one above it")
    return low, high


def parse_media_address(spec: str) -> str:
    """An IP address for the RTP relay (``0.0.0.0`` or ``::``: every address of the host)."""
    try:
        return str(ipaddress.ip_address(spec.strip("[]")))
    except ValueError:
        raise MediaSpecError(f"--media-address {spec!r}: give an IP address such as 192.0.2.10") from None


def media_address(listens: tuple[Listen, ...], configured: str | None) -> str:
    """Where the RTP relay listens: the configured address, else the first SIP listen address
    that is an IP address, else every address of the host."""
    if configured:
        return configured
    for listen in listens:
        try:
            return str(ipaddress.ip_address(listen.host))
        except ValueError:
            continue  # a name: the relay cannot advertise one in SDP
    return "0.0.0.0"


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
    transfer_recall: float = 30.0
    """A blind transfer nobody answers (or its target rejects) rings the transferring phone again
    after this many seconds."""
    international_calls: int = 10
    """International calls a clinic may have in progress at once (the toll-fraud guard)."""
    international_calls_per_staff: int = 2
    """International calls one member of staff may have in progress at once."""
    direct_media: bool = False
    """Phones send RTP straight to each other; Sentral plays no music or prompts and cannot tell
    dead media. By default every call's media is anchored at Sentral's relay."""
    media_address: str | None = None
    """The address of the RTP relay; None: the first SIP listen address. On a wildcard address
    each phone is told the address it reaches Sentral at."""
    media_ports: tuple[int, int] = (10000, 20000)
    """The RTP relay's port range, both ends included (two ports per phone in a call)."""
    dead_media: float = 300.0
    """An answered call whose phones send no media for this many seconds is hung up."""
    dead_media_on_hold: float = 1800.0
    """The same while one phone holds the other (some phones send nothing on hold)."""
    sounds: str = "sounds"
    """The directory of music on hold and prompts (``python -m sentral.media.sounds build DIR``)."""
    clinic_sounds: str | None = None
    """A directory of the clinic's own recordings, looked in before ``sounds``."""
    language: str = "nb"
    """The language prompts are spoken in."""
    log_level: str = "info"
    log_target: str = "stderr"
    """Where the log goes: stderr, the systemd journal, or syslog."""
    config_file: str | None = None
    """The config file serve read, if any: SIGHUP reads it again."""
    metrics: str | None = None
    """HOST:PORT of the HTTP listener for /metrics (Prometheus) and /health; None: no listener."""
    web: str | None = None
    """HOST:PORT of the web service (sign-in, REST API); None: no web service."""
    web_cert: str | None = None
    """The web service's TLS certificate chain (PEM); without it, plain HTTP on loopback only."""
    web_key: str | None = None
    """The web service's TLS private key (PEM)."""
    spool_dir: str | None = None
    """Where call records and registrations wait while the database is down; None: the default
    (``sentral.config.spool.default_spool_dir``)."""


@dataclass(frozen=True, slots=True)
class Reread:
    """What SIGHUP found in the config file: the settings to change now (``ServeConfig`` field
    names and their new values), and the options whose new value takes a restart."""

    updates: dict[str, Any]
    restart: tuple[str, ...]


def default_sounds() -> str:
    """The sounds an installed package carries (built with its wheel), else ./sounds (``make sounds``)."""
    packaged = Path(__file__).resolve().parent.parent / "sounds"
    return str(packaged) if (packaged / ".built").exists() else "sounds"


SERVE_DEFAULTS = ServeConfig(db_url="")
"""The defaults of every serve setting, for help texts and option defaults."""
