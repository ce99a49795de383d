"""Busy-lamp fields and presence through the real server on loopback.

SIPp subscribes the way a desk phone's busy-lamp key does (digest, the first NOTIFY, unsubscribe).
A small raw watcher in this file subscribes too and reads every NOTIFY's document, while SIP
clients register and pjsua2 softphones call, so a test can assert what a lamp would show.
"""

from __future__ import annotations

import hashlib
import re
import socket
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.system.peers import LOOPBACK, Sipp, Softphone, write_users_csv
from tests.system.server import SentralServer
from tests.system.sipclient import SipClient

DOMAIN = "clinic.test"
SCENARIOS = Path(__file__).parent / "scenarios"
STAFF = ("1001", "1002", "1003")
DI = "{urn:ietf:params:xml:ns:dialog-info}"
PIDF = "{urn:ietf:params:xml:ns:pidf}"


@pytest.fixture
def clinic(tmp_path: Path) -> Iterator[SentralServer]:
    """A running server with clinic.test (MD5 digest, for SIPp) and staff 1001..1003."""
    workdir = tmp_path / "server"
    workdir.mkdir()
    server = SentralServer(f"sqlite:///{workdir / 'sentral.db'}", workdir)
    server.cli_batch(
        ("init", "--domain", DOMAIN),
        ("clinic", "set", DOMAIN, "--digest", "md5"),
        *(("user", "add", ext, "--name", f"Staff {ext}", "--password", f"secret-{ext}") for ext in STAFF),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Notification:
    """One NOTIFY as the watcher received it."""

    def __init__(self, text: str, body: bytes) -> None:
        self.text = text
        self.body = body

    def header(self, name: str) -> str:
        found = re.search(rf"^{name}:[ \t]*(.*?)\r?$", self.text, re.MULTILINE | re.IGNORECASE)
        assert found, f"no {name} in\n{self.text}"
        return found.group(1).strip()

    def lamp(self) -> list[str]:
        """The dialog states of a dialog-info document, in order (empty: idle)."""
        root = ET.fromstring(self.body)
        assert root.tag == f"{DI}dialog-info" and root.get("state") == "full"
        return [d.findtext(f"{DI}state") or "" for d in root.findall(f"{DI}dialog")]

    def presence(self) -> tuple[str, str]:
        root = ET.fromstring(self.body)
        assert root.tag == f"{PIDF}presence"
        return (
            root.findtext(f"{PIDF}tuple/{PIDF}status/{PIDF}basic") or "",
            root.findtext(f"{PIDF}tuple/{PIDF}note") or "",
        )


class Watcher:
    """A phone's subscription over UDP: SUBSCRIBE with MD5 digest, NOTIFYs answered 200."""

    def __init__(self, server: SentralServer, ext: str, password: str) -> None:
        self.server = (server.host, server.port)
        self.ext = ext
        self.password = password
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.port = self.sock.getsockname()[1]
        self.call_id = uuid.uuid4().hex
        self.tag = uuid.uuid4().hex[:8]
        self.cseq = 0
        self.answered: set[str] = set()  # CSeq values of the NOTIFYs received

    def close(self) -> None:
        self.sock.close()

    def _subscribe(self, target: str, event: str, expires: int, auth: str = "") -> None:
        self.cseq += 1
        message = (
            f"SUBSCRIBE sip:{target}@{DOMAIN} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{self.port};branch=z9hG4bK{uuid.uuid4().hex};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:{self.ext}@{DOMAIN}>;tag={self.tag}\r\nTo: <sip:{target}@{DOMAIN}>\r\n"
            f"Call-ID: {self.call_id}\r\nCSeq: {self.cseq} SUBSCRIBE\r\n"
            f"Contact: <sip:{self.ext}@{LOOPBACK}:{self.port}>\r\nEvent: {event}\r\nExpires: {expires}\r\n"
            f"{auth}Content-Length: 0\r\n\r\n"
        )
        self.sock.sendto(message.encode(), self.server)

    def subscribe(self, target: str, event: str = "dialog", expires: int = 600) -> Notification:
        """Subscribe (answering the 407), expect 200, and return the first NOTIFY."""
        self._subscribe(target, event, expires)
        challenge = self._response(1)
        assert challenge.startswith("SIP/2.0 407"), challenge
        nonce = re.search(r'nonce="([^"]+)"', challenge)
        assert nonce
        uri = f"sip:{target}@{DOMAIN}"
        ha1 = hashlib.md5(f"{self.ext}:{DOMAIN}:{self.password}".encode()).hexdigest()
        ha2 = hashlib.md5(f"SUBSCRIBE:{uri}".encode()).hexdigest()
        digest = hashlib.md5(f"{ha1}:{nonce.group(1)}:00000001:cafe:auth:{ha2}".encode()).hexdigest()
        auth = (
            f'Proxy-Authorization: Digest username="{self.ext}", realm="{DOMAIN}", nonce="{nonce.group(1)}", '
            f'uri="{uri}", response="{digest}", algorithm=MD5, cnonce="cafe", qop=auth, nc=00000001\r\n'
        )
        self._subscribe(target, event, expires, auth)
        ok = self._response(2)
        assert ok.startswith("SIP/2.0 200"), ok
        return self.notified()

    def _response(self, cseq: int, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data, _ = self.sock.recvfrom(65535)
            text = data.decode()
            if text.startswith("SIP/2.0 1"):
                continue
            if text.startswith("SIP/2.0") and f"CSeq: {cseq} SUBSCRIBE" in text:
                return text
            if text.startswith("NOTIFY"):
                raise AssertionError(f"a NOTIFY before the answer to SUBSCRIBE {cseq}:\n{text}")

    def notified(self, timeout: float = 5.0) -> Notification:
        """The next NOTIFY; a retransmission of one already answered is answered again and skipped."""
        deadline = time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data, source = self.sock.recvfrom(65535)
            head, _, body = data.partition(b"\r\n\r\n")
            text = head.decode()
            assert text.startswith("NOTIFY "), text
            keep = [
                line
                for line in text.split("\r\n")[1:]
                if line.split(":")[0].lower() in ("via", "from", "to", "call-id", "cseq")
            ]
            ok = "SIP/2.0 200 OK\r\n" + "\r\n".join(keep) + "\r\nContent-Length: 0\r\n\r\n"
            self.sock.sendto(ok.encode(), source)
            notification = Notification(text, body)
            cseq = notification.header("CSeq")
            if cseq not in self.answered:
                self.answered.add(cseq)
                return notification

    def lamps(self, until: Callable[[list[str]], bool], timeout: float = 10.0) -> list[list[str]]:
        """The lamp of every NOTIFY received until ``until`` holds for one."""
        deadline = time.monotonic() + timeout
        seen: list[list[str]] = []
        while True:
            lamp = self.notified(max(0.1, deadline - time.monotonic())).lamp()
            seen.append(lamp)
            if until(lamp):
                return seen


@pytest.fixture
def watcher_factory(clinic: SentralServer) -> Iterator[Callable[[str], Watcher]]:
    watchers: list[Watcher] = []

    def make(ext: str) -> Watcher:
        watcher = Watcher(clinic, ext, f"secret-{ext}")
        watchers.append(watcher)
        return watcher

    yield make
    for watcher in watchers:
        watcher.close()


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_sipp_busy_lamp_keys_subscribe_with_digest_and_see_idle_lines(
    clinic: SentralServer, sipp: Sipp, tmp_path: Path, transport: str
) -> None:
    pairs = (("1001", "1002"), ("1002", "1003"), ("1003", "1001"))
    users = [(ext, f"secret-{ext}", DOMAIN, target) for ext, target in pairs]
    csv = write_users_csv(tmp_path / "users.csv", users)
    result = sipp.run(
        clinic.address,
        SCENARIOS / "subscribe_dialog_uac.xml",
        transport=transport,
        users=csv,
        calls=len(users) * 4,
        rate=20,
        timeout=30,
        auth_uri=DOMAIN,
    )
    assert result.successful == len(users) * 4, result
    assert result.failed == 0


def test_presence_follows_a_phone_registering(
    clinic: SentralServer, watcher_factory: Callable[[str], Watcher]
) -> None:
    watcher = watcher_factory("1001")
    first = watcher.subscribe("1002", event="presence")
    assert first.header("Subscription-State").startswith("active;expires=")
    assert first.header("Content-Type") == "application/pidf+xml"
    assert first.presence() == ("closed", "Logged off")
    with SipClient(clinic.host, clinic.port) as desk:
        assert desk.register("1002", "secret-1002").startswith("SIP/2.0 200")
    assert watcher.notified().presence() == ("open", "Available")


def test_the_lamp_of_a_colleague_rings_lights_and_goes_dark_with_a_real_call(
    clinic: SentralServer,
    softphone_factory: Callable[..., Softphone],
    watcher_factory: Callable[[str], Watcher],
) -> None:
    alice = softphone_factory("alice")
    alice.add_account("1001", "1001", "secret-1001", DOMAIN, clinic.address)
    alice.wait_registered("1001")
    bob = softphone_factory("bob")
    bob.add_account("1002", "1002", "secret-1002", DOMAIN, clinic.address)
    bob.wait_registered("1002")
    reception = watcher_factory("1003")
    assert reception.subscribe("1002").lamp() == []

    out = alice.call("1001", f"sip:1002@{DOMAIN}")
    incoming = bob.wait_incoming("1002")
    ringing = reception.lamps(lambda lamp: lamp == ["early"])
    # The lamp may show the INVITE on its way (trying) before the phone rings (early, blinking).
    assert all(lamp == ["trying"] for lamp in ringing[:-1]), ringing
    bob.answer(incoming["call"])
    alice.wait_call_state(out, "CONFIRMED")
    assert reception.lamps(lambda lamp: lamp == ["confirmed"])[-1] == ["confirmed"]
    alice.hangup(out)
    bob.wait_call_state(incoming["call"], "DISCONNECTED")
    ended = reception.lamps(lambda lamp: lamp in ([], ["terminated"]))
    assert ended[:-1] in ([], [["confirmed"]]), ended
    # The call is gone from the state: a key subscribing now sees the line idle.
    assert watcher_factory("1001").subscribe("1002").lamp() == []


def test_a_busy_lamp_key_on_the_forwarding_code_lights_while_its_phone_forwards_every_call(
    clinic: SentralServer, watcher_factory: Callable[[str], Watcher]
) -> None:
    key = watcher_factory("1001")  # 1001's desk phone, a key set to *21
    assert key.subscribe("*21").lamp() == []
    clinic.reconfigure("user", "set", "1001", "--forward", "always", "1002")
    assert key.lamps(lambda lamp: lamp == ["confirmed"])[-1] == ["confirmed"]
    clinic.reconfigure("user", "set", "1001", "--no-forward")
    assert key.lamps(lambda lamp: lamp == [])[-1] == []
    # A colleague's forward is not this key's.
    clinic.reconfigure("user", "set", "1002", "--forward", "always", "1003")
    assert watcher_factory("1001").subscribe("*21").lamp() == []
