"""The system-test harness proven against peers that exist without Sentral.

SIPp is checked against SIPp, and softphones and the SIPp REGISTER scenarios against a stand-in
registrar written here that really verifies MD5 digests, so that when a system test fails against
the server, the server is what is wrong and not the harness.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import re
import secrets
import selectors
import socket
import struct
import threading
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.system.audio import write_tone
from tests.system.peers import LOOPBACK, Sipp, Softphone, free_port, write_users_csv
from tests.system.server import sip_options_ping

SCENARIOS = Path(__file__).parent / "scenarios"
REALM = "clinic.test"
COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact", "l": "content-length"}


@dataclass(frozen=True, slots=True)
class Seen:
    """One REGISTER as the stand-in registrar saw it, and its answer."""

    transport: str
    user: str
    authorized: bool
    expires: int
    contact: str
    status: int


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    uri: str
    headers: list[tuple[str, str]]

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]

    def one(self, name: str) -> str:
        values = self.all(name)
        return values[0] if values else ""


def parse_request(data: bytes) -> Request:
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    lines = head.split("\r\n")
    method, uri, _ = lines[0].split(" ", 2)
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        headers.append((COMPACT.get(key, key), value.strip()))
    return Request(method, uri, headers)


def digest_params(header: str) -> dict[str, str]:
    scheme, _, rest = header.partition(" ")
    if scheme.lower() != "digest":
        return {}
    return {m[0].lower(): m[1] if m[1] else m[2] for m in re.findall(r'(\w+)=(?:"([^"]*)"|([^\s,]+))', rest)}


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


class StandInRegistrar:
    """A registrar on 127.0.0.1 (UDP and TCP, one port) that challenges with MD5 digest.

    REGISTER without credentials gets 401 with a fresh nonce; with credentials it gets 200 when the
    digest response is right for the user's password and a nonce it issued, 403 otherwise. The
    200 grants at most max_expires seconds, so a test can see that the peer reports the granted
    expiry rather than the one it asked for.
    """

    def __init__(self, users: dict[str, str], max_expires: int = 120) -> None:
        self.users = users
        self.max_expires = max_expires
        self.port = free_port()
        self.address = f"{LOOPBACK}:{self.port}"
        self.seen: list[Seen] = []
        self.nonces: set[str] = set()
        self.cond = threading.Condition()
        self.sel = selectors.DefaultSelector()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((LOOPBACK, self.port))
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((LOOPBACK, self.port))
        self.tcp.listen(64)
        self.sel.register(self.udp, selectors.EVENT_READ, "udp")
        self.sel.register(self.tcp, selectors.EVENT_READ, "listen")
        self.buffers: dict[socket.socket, bytes] = {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve, name="stand-in-registrar", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self.sel.close()

    def serve(self) -> None:
        while not self.stopping.is_set():
            for key, _ in self.sel.select(0.05):
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                if key.data == "udp":
                    data, addr = sock.recvfrom(65536)
                    reply = self.answer(data, "udp")
                    if reply:
                        sock.sendto(reply, addr)
                elif key.data == "listen":
                    conn, _ = sock.accept()
                    self.buffers[conn] = b""
                    self.sel.register(conn, selectors.EVENT_READ, "tcp")
                else:
                    self.read_stream(sock)

    def read_stream(self, conn: socket.socket) -> None:
        chunk = conn.recv(65536)
        if not chunk:
            self.sel.unregister(conn)
            del self.buffers[conn]
            conn.close()
            return
        buf = (self.buffers[conn] + chunk).lstrip(b"\r\n")
        while b"\r\n\r\n" in buf:
            head, rest = buf.split(b"\r\n\r\n", 1)
            match = re.search(rb"(?im)^(?:content-length|l)\s*:\s*(\d+)", head)
            length = int(match.group(1)) if match else 0
            if len(rest) < length:
                break
            buf = rest[length:].lstrip(b"\r\n")
            reply = self.answer(head + b"\r\n\r\n", "tcp")
            if reply:
                conn.sendall(reply)
        self.buffers[conn] = buf

    def answer(self, data: bytes, transport: str) -> bytes | None:
        if data.startswith(b"SIP/2.0"):
            return None
        req = parse_request(data)
        if req.method != "REGISTER":
            return self.response(req, 501, "Not Implemented")
        contact = req.one("contact")
        match = re.search(r";\s*expires=(\d+)", contact)
        expires = int(match.group(1)) if match else int(req.one("expires") or 3600)
        user_match = re.search(r"sip:([^@;>]+)@", req.one("to"))
        user = user_match.group(1) if user_match else ""
        auth = digest_params(req.one("authorization"))
        if not auth:
            nonce = secrets.token_hex(16)
            self.nonces.add(nonce)
            challenge = f'Digest realm="{REALM}", nonce="{nonce}", algorithm=MD5, qop="auth"'
            return self.record(
                req,
                transport,
                user,
                False,
                expires,
                contact,
                401,
                "Unauthorized",
                [("WWW-Authenticate", challenge)],
            )
        ok = self.check(auth, req.method, req.uri)
        if not ok:
            return self.record(req, transport, user, True, expires, contact, 403, "Forbidden", [])
        granted = min(expires, self.max_expires)
        extra = [("Expires", str(granted))]
        if granted:
            uri = contact.split(";expires=")[0]
            extra.append(("Contact", f"{uri};expires={granted}"))
        return self.record(req, transport, user, True, granted, contact, 200, "OK", extra)

    def check(self, auth: dict[str, str], method: str, request_uri: str) -> bool:
        password = self.users.get(auth.get("username", ""))
        if password is None or auth.get("nonce") not in self.nonces or auth.get("realm") != REALM:
            return False
        if auth.get("uri") != request_uri:
            return False
        ha1 = md5(f"{auth['username']}:{REALM}:{password}")
        ha2 = md5(f"{method}:{auth.get('uri', '')}")
        if auth.get("qop"):
            expected = md5(f"{ha1}:{auth['nonce']}:{auth.get('nc')}:{auth.get('cnonce')}:{auth['qop']}:{ha2}")
        else:
            expected = md5(f"{ha1}:{auth['nonce']}:{ha2}")
        return secrets.compare_digest(expected, auth.get("response", ""))

    def record(
        self,
        req: Request,
        transport: str,
        user: str,
        authorized: bool,
        expires: int,
        contact: str,
        status: int,
        reason: str,
        extra: list[tuple[str, str]],
    ) -> bytes:
        with self.cond:
            self.seen.append(Seen(transport, user, authorized, expires, contact, status))
            self.cond.notify_all()
        return self.response(req, status, reason, extra)

    def response(self, req: Request, status: int, reason: str, extra: list[tuple[str, str]] = ()) -> bytes:  # type: ignore[assignment]
        to = req.one("to")
        if ";tag=" not in to:
            to += ";tag=" + secrets.token_hex(4)
        lines = [f"SIP/2.0 {status} {reason}"]
        lines += [f"Via: {via}" for via in req.all("via")]
        lines += [
            f"From: {req.one('from')}",
            f"To: {to}",
            f"Call-ID: {req.one('call-id')}",
            f"CSeq: {req.one('cseq')}",
        ]
        lines += [f"{name}: {value}" for name, value in extra]
        lines += ["Content-Length: 0", "", ""]
        return "\r\n".join(lines).encode()

    def wait_for(
        self, what: str, condition: Callable[[list[Seen]], bool], timeout: float = 10.0
    ) -> list[Seen]:
        """Wait until condition(seen) holds; returns a copy of everything seen."""
        with self.cond:
            if not self.cond.wait_for(lambda: condition(self.seen), timeout):
                raise AssertionError(f"stand-in registrar: no {what} within {timeout:.0f}s; saw {self.seen}")
            return list(self.seen)


@pytest.fixture
def registrar() -> Iterator[StandInRegistrar]:
    reg = StandInRegistrar(
        {"1001": "secret-1001", "1002": "secret-1002", "1003": "secret-1003", "1004": "secret-1004"}
    )
    try:
        yield reg
    finally:
        reg.close()


# -- SIPp against SIPp ----------------------------------------------------------------------------


def test_sipp_uac_calls_sipp_uas_and_every_call_is_counted(sipp: Sipp) -> None:
    uas_port = free_port()
    with sipp.running(None, "uas", local_port=uas_port, calls=200, timeout=30) as uas:
        uas.wait_listening()
        result = sipp.run(f"{LOOPBACK}:{uas_port}", "uac", calls=200, rate=200, limit=50, timeout=30)
        # The built-in uas lingers 4 s after each call's BYE; its received-call count is enough.
        uas.stop()
        uas_result = uas.wait()
    assert (result.successful, result.failed, result.returncode) == (200, 0, 0), result
    assert uas_result.counter("IncomingCall(C)") == 200, uas_result
    assert 0 <= result.retransmissions < 20, result
    assert result.elapsed < 25, result


def test_sipp_calls_nobody_answers_are_counted_as_failed(sipp: Sipp) -> None:
    result = sipp.run(
        f"{LOOPBACK}:{free_port()}", "uac", calls=3, rate=10, timeout=20, extra=["-recv_timeout", "500"]
    )
    assert (result.successful, result.failed) == (0, 3), result
    assert result.returncode != 0, result


# -- softphones -----------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_softphone_registers_with_digest_and_unregisters(
    softphone_factory: Callable[..., Softphone], registrar: StandInRegistrar, transport: str
) -> None:
    phone = softphone_factory("alice")
    phone.add_account(
        "alice", "1001", "secret-1001", REALM, registrar.address, transport=transport, reg_timeout=300
    )

    registered = phone.wait_registered("alice")
    assert registered["expires"] == 120, "the phone reports the expiry the registrar granted"
    seen = registrar.wait_for("registration", lambda s: any(r.status == 200 for r in s))
    assert [(r.authorized, r.status) for r in seen] == [(False, 401), (True, 200)]
    if transport == "udp":
        assert f"<sip:1001@127.0.0.1:{phone.udp_port}>" in seen[1].contact
    else:  # pjsip names the connection's own (ephemeral) address, as desk phones on TCP do
        assert re.search(r"<sip:1001@127\.0\.0\.1:\d+;transport=tcp>", seen[1].contact, re.IGNORECASE)
    assert {r.transport for r in seen} == {transport}

    phone.unregister("alice")
    unregistered = phone.wait_event("reg_state", account="alice")
    assert (unregistered["code"], unregistered["active"]) == (200, False), unregistered
    seen = registrar.wait_for("unregistration", lambda s: len(s) >= 3)
    assert (seen[-1].user, seen[-1].expires, seen[-1].status) == ("1001", 0, 200)


def test_softphone_reports_a_refused_password(
    softphone_factory: Callable[..., Softphone], registrar: StandInRegistrar
) -> None:
    phone = softphone_factory("mallory")
    phone.add_account("mallory", "1002", "not-the-password", REALM, registrar.address)
    event = phone.wait_event("reg_state", account="mallory")
    assert (event["code"], event["active"]) == (403, False), event


def test_softphone_refuses_unknown_commands_and_stays_up(softphone_factory: Callable[..., Softphone]) -> None:
    phone = softphone_factory("bob")
    with pytest.raises(AssertionError, match="unknown command"):
        phone.request("dance")
    with pytest.raises(AssertionError, match="no live call"):
        phone.hangup("c99")
    assert phone.request("ping")["udp_port"] == phone.udp_port


# -- SIPp REGISTER scenarios ----------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_sipp_register_scenarios_authenticate(
    sipp: Sipp, registrar: StandInRegistrar, tmp_path: Path, transport: str
) -> None:
    users = [("1001", "secret-1001", REALM), ("1002", "secret-1002", REALM), ("1003", "wrong", REALM)]
    csv = write_users_csv(tmp_path / "users.csv", users)
    port = free_port()
    common = {
        "users": csv,
        "transport": transport,
        "calls": 3,
        "rate": 50,
        "limit": 3,
        "timeout": 20,
        "local_port": port,
        "auth_uri": REALM,
    }

    result = sipp.run(registrar.address, SCENARIOS / "register_auth.xml", **common)
    assert (result.successful, result.failed) == (2, 1), result
    outcome = {(r.user, r.status, r.expires) for r in registrar.seen if r.authorized}
    assert outcome == {("1001", 200, 120), ("1002", 200, 120), ("1003", 403, 3600)}
    assert all(f"@127.0.0.1:{port}" in r.contact for r in registrar.seen)

    registrar.seen.clear()
    result = sipp.run(registrar.address, SCENARIOS / "unregister_auth.xml", **common)
    assert (result.successful, result.failed) == (2, 1), result
    outcome = {(r.user, r.status, r.expires) for r in registrar.seen if r.authorized}
    assert outcome == {("1001", 200, 0), ("1002", 200, 0), ("1003", 403, 0)}


# -- two softphones, no server --------------------------------------------------------------------


def tone_powers(path: Path, freqs: list[float]) -> dict[float, float]:
    """Goertzel power of each frequency over the loudest second of a 16-bit mono WAV."""
    with wave.open(str(path), "rb") as wav:
        rate = wav.getframerate()
        raw = wav.readframes(wav.getnframes())
    samples = struct.unpack(f"<{len(raw) // 2}h", raw)
    windows = [samples[i : i + rate] for i in range(0, max(len(samples) - rate, 0) + 1, rate // 4)]
    loudest = max(windows, key=lambda w: sum(abs(s) for s in w), default=())
    powers = {}
    for hz in freqs:
        coeff = 2 * math.cos(2 * math.pi * hz / rate)
        s1 = s2 = 0.0
        for sample in loudest:
            s1, s2 = sample + coeff * s1 - s2, s1
        powers[hz] = s1 * s1 + s2 * s2 - coeff * s1 * s2
    return powers


def test_two_softphones_call_each_other_and_hear_a_tone(
    softphone_factory: Callable[..., Softphone], tmp_path: Path
) -> None:
    alice = softphone_factory("alice")
    bob = softphone_factory("bob")
    alice.add_account("alice", "1001", None, LOOPBACK, None, register=False)
    bob.add_account("bob", "1002", None, LOOPBACK, None, register=False)

    outgoing = alice.call("alice", f"sip:1002@{LOOPBACK}:{bob.udp_port}")
    incoming = bob.wait_incoming("bob")
    assert "1001" in incoming["remote_uri"]
    ringing = alice.wait_call_state(outgoing, "EARLY")
    assert ringing["code"] == 180
    bob.answer(incoming["call"])
    alice.wait_call_state(outgoing, "CONFIRMED")
    bob.wait_call_state(incoming["call"], "CONFIRMED")
    alice.wait_event("media_state", call=outgoing, status="active")
    bob.wait_event("media_state", call=incoming["call"], status="active")

    recording = tmp_path / "bob-heard.wav"
    bob.record(incoming["call"], recording)
    alice.play(outgoing, write_tone(tmp_path / "tone.wav", 440, 1.5))
    alice.wait_event("play_done", call=outgoing)
    bob.stop_media(incoming["call"])

    alice.hangup(outgoing)
    alice.wait_call_state(outgoing, "DISCONNECTED")
    ended = bob.wait_call_state(incoming["call"], "DISCONNECTED")
    assert ended["code"] == 200, ended

    powers = tone_powers(recording, [440, 300, 700, 1000])
    assert powers[440] > 20 * max(powers[300], powers[700], powers[1000]), powers


def test_readiness_probe_sees_any_sip_answer_and_nothing_from_a_silent_port(
    registrar: StandInRegistrar,
) -> None:
    assert sip_options_ping(LOOPBACK, registrar.port) == "SIP/2.0 501 Not Implemented"
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) as silent:
        silent.bind((LOOPBACK, 0))
        assert sip_options_ping(LOOPBACK, silent.getsockname()[1], timeout=0.2) is None


def test_softphones_send_dtmf_hold_and_reject_a_call(softphone_factory: Callable[..., Softphone]) -> None:
    alice = softphone_factory("alice")
    bob = softphone_factory("bob")
    alice.add_account("alice", "1001", None, LOOPBACK, None, register=False)
    bob.add_account("bob", "1002", None, LOOPBACK, None, register=False, ring=0, auto_answer=200)

    outgoing = alice.call("alice", f"sip:1002@{LOOPBACK}:{bob.udp_port}")
    incoming = bob.wait_incoming("bob")["call"]
    alice.wait_event("media_state", call=outgoing, status="active")
    bob.wait_event("media_state", call=incoming, status="active")

    alice.dtmf(outgoing, "12#")
    heard = [bob.wait_event("dtmf", call=incoming)["digit"] for _ in range(3)]
    assert heard == ["1", "2", "#"]

    alice.hold(outgoing)
    alice.wait_event("media_state", call=outgoing, status="local_hold")
    bob.wait_event("media_state", call=incoming, status="remote_hold")
    alice.unhold(outgoing)
    alice.wait_event("media_state", call=outgoing, status="active")
    bob.wait_event("media_state", call=incoming, status="active")
    bob.hangup(incoming)
    alice.wait_call_state(outgoing, "DISCONNECTED")

    bob.add_account("desk", "1003", None, LOOPBACK, None, register=False)
    rejected = alice.call("alice", f"sip:1003@{LOOPBACK}:{bob.udp_port}")
    ringing = bob.wait_incoming("desk")
    alice.wait_call_state(rejected, "EARLY")
    bob.hangup(ringing["call"], code=486)
    ended = alice.wait_call_state(rejected, "DISCONNECTED")
    assert (ended["code"], ended["reason"]) == (486, "Busy Here"), ended
