"""A clinic's call control on a fake clock, for the feature tests: phones 1001-1003 played by hand
as in test_call, a park lot 700 (slots 701-702, recall after 10 s), media by the recording fake of
test_anchoring, and the line observer's reports kept."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType

from sentral.config.directory import ClinicEntry, Directory, ParkLotEntry, StaffEntry
from sentral.config.settings import Listen
from sentral.config.store import BindingRow
from sentral.media.dtmf import Digit
from sentral.pbx.call import Call, CallControl, Caller, CallState
from sentral.pbx.features import standard as standard_features
from sentral.pbx.features.outside import Carriers
from sentral.pbx.presence import Direction as Party
from sentral.pbx.presence import Phase
from sentral.pbx.sip.dialog_info import DialogIds
from sentral.pbx.sip.message import Request, Response, make_response
from sentral.pbx.sip.transaction import (
    ClientTransaction,
    RequestReceived,
    ServerTransaction,
    TransactionLayer,
)
from sentral.pbx.transport import Origin
from sentral.routing.dialplan import DialPlan
from tests.protocol.test_anchoring import FakeMedia
from tests.protocol.test_call import CLINIC, SDP_A, SDP_B, FakePort, b_request, parse

DOMAIN = "clinic.test"
LISTEN = Listen("udp", "127.0.0.1", 5060)
LOT = ParkLotEntry(DOMAIN, "main", "700", "701", "702", 10.0)
PHONES = {"1001": 4001, "1002": 5002, "1003": 5003, "1004": 5004}
PROMPT = 2.0  # how long the fake media layer says the slot announcement lasts


def _staff(extension: str, name: str) -> StaffEntry:
    return StaffEntry(DOMAIN, extension, name, (), "", "")


DIRECTORY = Directory(
    1,
    MappingProxyType({DOMAIN: CLINIC}),
    MappingProxyType(
        {
            (DOMAIN, e): _staff(e, n)
            for e, n in (("1001", "Alice"), ("1002", "Bob"), ("1003", "Carol"), ("1004", "Dave"))
        }
    ),
    numbers=MappingProxyType({(DOMAIN, n): LOT for n in ("700", *LOT.slots)}),
    park_lots=MappingProxyType({(DOMAIN, "main"): LOT}),
)


def _binding(extension: str) -> BindingRow:
    port = PHONES[extension]
    return BindingRow(
        DOMAIN, extension, f"k{port}", f"sip:{extension}@127.0.0.1:{port}", 9e9, "reg", 1, "udp", "127.0.0.1",
        port, "udp:127.0.0.1:5060", 0.0,
    )  # fmt: skip


@dataclass
class Lines:
    """The line observer: every report, with the dialog ids of ringing ones by extension."""

    seen: list[tuple[str, str, str]] = field(default_factory=list)
    ids: dict[str, DialogIds] = field(default_factory=dict)

    def line(
        self,
        domain: str,
        extension: str,
        call_key: str,
        phase: Phase,
        direction: Party,
        acute: bool,
        now: float,
        dialog: DialogIds | None = None,
    ) -> None:
        self.seen.append((extension, call_key, phase.value))
        if dialog is not None:
            self.ids[extension] = dialog


class Clinic:
    """Call control with a park lot 700 (slots 701-702, recall after 10 s) and phones 1001-1003."""

    def __init__(self, carriers: Carriers | None = None, clinic: ClinicEntry = CLINIC) -> None:
        """``carriers``: the trunks outside calls go out on; ``clinic``: the callers' clinic."""
        self.clinic = clinic
        directory = replace(DIRECTORY, clinics=MappingProxyType({DOMAIN: clinic}))
        self.port = FakePort()
        self.layer = TransactionLayer()
        self.media = FakeMedia(prompt=PROMPT)
        self.lines = Lines()
        self.bindings = {(DOMAIN, e): [_binding(e)] for e in PHONES}
        self.cc = CallControl(
            self.port,
            DialPlan(),
            lambda: directory,
            lambda aor: self.bindings.get(aor, []),
            media=self.media,
            lines=self.lines,
            features=lambda core: standard_features(core, carriers),
        )
        self.n = 0
        self.txs: dict[str, ServerTransaction] = {}

    def dial(
        self, caller: str, number: str, now: float = 0.0, sdp: bytes = SDP_A, headers: str = ""
    ) -> ServerTransaction:
        """``caller`` dials ``number``; ``headers`` are extra header lines, each ending in CRLF."""
        self.n += 1
        port = PHONES[caller]
        request = parse(
            f"INVITE sip:{number}@{DOMAIN} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{self.n}-dial;rport\r\nMax-Forwards: 70\r\n"
            f"From: <sip:{caller}@{DOMAIN}>;tag=from{self.n}\r\nTo: <sip:{number}@{DOMAIN}>\r\n"
            f"Call-ID: call-{self.n}@{caller}\r\nCSeq: 1 INVITE\r\nContact: <sip:{caller}@127.0.0.1:{port}>\r\n"
            + headers
            + ("Content-Type: application/sdp\r\n" if sdp else ""),
            sdp,
        )
        [event, *_] = self.layer.receive(request, ("127.0.0.1", port), False, now)
        assert isinstance(event, RequestReceived)
        origin = Origin("udp", "127.0.0.1", port, LISTEN)
        self.cc.on_invite(event.tx, request, origin, Caller(self.clinic, caller, caller), now)
        self.txs[f"call-{self.n}@{caller}"] = event.tx
        return event.tx

    def invites(self, extension: str) -> list[tuple[Request, ClientTransaction]]:
        return self.port.sent("INVITE", PHONES[extension])

    def answer(
        self, extension: str, now: float, status: int = 200, index: int = -1
    ) -> tuple[Request, Response]:
        request, tx = self.invites(extension)[index]
        headers = [("Contact", f"<sip:{extension}@127.0.0.1:{PHONES[extension]}>")]
        if status == 200:
            headers.append(("Content-Type", "application/sdp"))
        response = make_response(
            request,
            status,
            to_tag=f"tag-{extension}-{index}",
            headers=headers,
            body=SDP_B if status == 200 else b"",
        )
        self.cc.on_response(tx, response, now)
        return request, response

    def ack(self, tx: ServerTransaction, now: float) -> None:
        ok = next(r for t, r in self.port.responses if t is tx and r.status == 200)
        invite = tx.request
        ack = parse(
            f"ACK sip:sentral@127.0.0.1:5060 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:4001;branch=z9hG4bK-ack-{ok.to_tag}\r\nMax-Forwards: 70\r\n"
            f"From: {invite.header('from')}\r\nTo: <sip:x@{DOMAIN}>;tag={ok.to_tag}\r\n"
            f"Call-ID: {invite.call_id}\r\nCSeq: 1 ACK\r\n"
        )
        self.cc.on_ack(ack, now)

    def talking(self) -> Call:
        """1001 calls 1002, who answers: the call."""
        tx = self.dial("1001", "1002")
        self.answer("1002", 0.5)
        self.ack(tx, 0.6)
        [call] = self.cc.calls.values()
        assert call.state is CallState.ANSWERED
        return call

    def key(self, call: Call, leg_id: str, keys: str, now: float) -> None:
        for i, key in enumerate(keys):
            self.cc.digit(call.id, leg_id, Digit(key), now + 0.2 * i)

    def tick(self, now: float) -> None:
        self.cc.on_timer(now)

    def byes(self, extension: str) -> list[Request]:
        return [r for r, _ in self.port.sent("BYE", PHONES[extension])]


def refer(c: Clinic, refer_to: str, now: float, cseq: int = 2) -> ServerTransaction:
    """1002, the callee, sends a blind transfer in its dialog with Sentral."""
    b_req, _ = c.invites("1002")[0]
    ok = make_response(b_req, 200, to_tag="tag-1002--1")
    head = b_request(b_req, ok, "REFER", cseq).to_bytes().decode().split("\r\n\r\n")[0]
    lines = [line for line in head.split("\r\n") if not line.lower().startswith("content-length")]
    refer = parse("\r\n".join(lines) + f"\r\nRefer-To: {refer_to}\r\n")
    [event, *_] = c.layer.receive(refer, ("127.0.0.1", 5002), False, now)
    assert isinstance(event, RequestReceived)
    c.cc.on_request(event.tx, refer, now)
    return event.tx


__all__ = ["DIRECTORY", "DOMAIN", "LOT", "PHONES", "PROMPT", "Clinic", "Lines", "refer"]
