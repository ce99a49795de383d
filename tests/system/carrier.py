"""The carrier at the far end of a trunk, played by SIPp on a loopback address of its own.

Sentral tells a trunk's calls from the phones' by source address, and every phone of the system
tests sits on 127.0.0.1. So the carriers sit elsewhere on the loopback network: the first on
127.0.0.2, a second one on 127.0.0.3, and a stranger (no trunk) on 127.0.0.9. Linux answers on
all of 127.0.0.0/8 without any setup.

Each carrier scenario (tests/system/scenarios/trunk_*.xml) writes what it received to a log file,
one ``kind|field|...`` line per event; `invites` and `registers` read them back. The audio a
scenario's SDP announces goes to an `RtpPeer`, which records it and talks back.
"""

from __future__ import annotations

import hashlib
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from tests.system.peers import Sipp, SippProcess, free_port
from tests.system.rtp_peer import RtpPeer

SCENARIOS = Path(__file__).parent / "scenarios"
CARRIER_IP = "127.0.0.2"
SECOND_CARRIER_IP = "127.0.0.3"
STRANGER_IP = "127.0.0.9"

ANSWER = SCENARIOS / "trunk_answer_uas.xml"
FAIL_503 = SCENARIOS / "trunk_503_uas.xml"
RING_503 = SCENARIOS / "trunk_ring_503_uas.xml"
EARLY_486 = SCENARIOS / "trunk_early_486_uas.xml"
SILENT = SCENARIOS / "trunk_silent_uas.xml"
REGISTRAR = SCENARIOS / "trunk_registrar_uas.xml"
CALLER = SCENARIOS / "trunk_caller_uac.xml"

Log = dict[str, list[list[str]]]


def read_log(path: Path) -> Log:
    """The lines a scenario logged (``kind|field|field``), by kind; header values keep their ';'."""
    lines: Log = {}
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            kind, *fields = line.split("|")
            lines.setdefault(kind, []).append(fields)
    return lines


@dataclass(frozen=True, slots=True)
class Invite:
    """One INVITE as the carrier received it."""

    user: str  # the Request-URI's user part: the number the carrier is asked to call
    from_: str
    asserted: str  # P-Asserted-Identity, "" when absent
    privacy: str  # Privacy, "" when absent
    sdp_ip: str
    sdp_port: int


def invites(path: Path) -> list[Invite]:
    """Every INVITE a carrier scenario logged, in order."""
    found = []
    for fields in read_log(path).get("invite", []):
        assert len(fields) == 6, f"an invite line of {len(fields)} fields in {path}: {fields}"
        user, from_, asserted, privacy, ip, port = fields
        found.append(Invite(user, from_, asserted, privacy, ip, int(port or 0)))
    return found


def uri_user(header: str) -> str:
    """The user part of the URI in a From / P-Asserted-Identity value ("" when there is none)."""
    found = re.search(r"(?:sips?|tel):([^@;>]*)", header)
    return found[1] if found else ""


@dataclass
class Carrier:
    """A SIPp carrier scenario running on (ip, port), logging to ``log``."""

    process: SippProcess
    log: Path
    ip: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    def invites(self) -> list[Invite]:
        return invites(self.log)

    def stop(self) -> None:
        self.process.stop()


def start_carrier(
    sipp: Sipp,
    scenario: Path,
    log: Path,
    *,
    ip: str = CARRIER_IP,
    port: int | None = None,
    rtp: RtpPeer | None = None,
    pause_ms: int = 1000,
    calls: int | None = None,
    timeout: float = 120.0,
    keys: dict[str, str] | None = None,
    answer_options: bool = True,
    transport: str = "udp",
) -> Carrier:
    """Start a carrier scenario as a UAS and wait until it listens. ``rtp``: the peer its SDP names
    (else a port nothing listens on); ``pause_ms``: SIPp's -d, how long a scenario's pause lasts;
    ``answer_options``: SIPp's -aa, 200 to OPTIONS keepalives."""
    port = port or free_port(ip)
    media = (rtp.host, rtp.port) if rtp is not None else (ip, free_port(ip))
    extra = ["-trace_logs", "-log_file", str(log), "-d", str(pause_ms)]
    for key, value in {"rtp_ip": media[0], "rtp_port": str(media[1]), **(keys or {})}.items():
        extra += ["-key", key, value]
    if answer_options:
        extra.append("-aa")
    process = sipp.start(
        None, scenario, local_ip=ip, local_port=port, calls=calls, timeout=timeout, extra=extra, transport=transport
    )
    process.wait_listening(kind=socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM)
    return Carrier(process, log, ip, port)


def caller_keys(rtp: RtpPeer | None, ip: str) -> list[str]:
    """The -key arguments of trunk_caller_uac.xml: where its SDP offers audio."""
    media = (rtp.host, rtp.port) if rtp is not None else (ip, free_port(ip))
    return ["-key", "rtp_ip", media[0], "-key", "rtp_port", str(media[1])]


def digest_params(authorization: str) -> dict[str, str]:
    """The parameters of a Digest Authorization header value, unquoted."""
    scheme, _, rest = authorization.strip().partition(" ")
    assert scheme.lower() == "digest", f"not a Digest authorization: {authorization!r}"
    return {
        name.lower(): quoted if quoted else bare
        for name, quoted, bare in re.findall(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))', rest)
    }


def digest_valid(authorization: str, method: str, password: str) -> bool:
    """Whether a Digest answer (RFC 7616: MD5 or SHA-256, qop auth or none) fits the password."""
    p = digest_params(authorization)
    algorithm = p.get("algorithm", "MD5").upper()
    hashes = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
    assert algorithm in hashes, f"unexpected digest algorithm {algorithm}"

    def h(text: str) -> str:
        return hashes[algorithm](text.encode()).hexdigest()

    ha1 = h(f"{p['username']}:{p['realm']}:{password}")
    ha2 = h(f"{method}:{p['uri']}")
    if p.get("qop"):
        expected = h(f"{ha1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:{p['qop']}:{ha2}")
    else:
        expected = h(f"{ha1}:{p['nonce']}:{ha2}")
    return expected == p.get("response")
