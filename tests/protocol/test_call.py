"""CallControl on a fake clock through a fake port: the B2BUA's behaviour message by message.

The port records what the controller sends; tests play the phones by building their requests and
responses and assert on the messages that come out, never on the controller's internals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import pytest

from sentral.config.directory import ClinicEntry, Directory, StaffEntry
from sentral.config.settings import Listen
from sentral.config.store import BindingRow
from sentral.pbx.call import Call, CallControl, Caller, CallReport, CallSettings
from sentral.pbx.features import standard as standard_features
from sentral.pbx.sip.message import Request, Response, make_response, parse_message
from sentral.pbx.sip.sdp import Direction, parse_sdp
from sentral.pbx.sip.transaction import (
    CancelReceived,
    ClientTransaction,
    RequestReceived,
    ServerTransaction,
    TransactionLayer,
    new_branch,
)
from sentral.pbx.transport import Origin, Target
from sentral.routing.dialplan import DialPlan, Feature

CLINIC = ClinicEntry("clinic.test", "Clinic", ("MD5",))
LISTEN = Listen("udp", "127.0.0.1", 5060)
ALICE = Origin("udp", "127.0.0.1", 4001, LISTEN)
CALLER = Caller(CLINIC, "1001", "Alice Nurse")
DIRECTORY = Directory(
    1,
    MappingProxyType({"clinic.test": CLINIC}),
    MappingProxyType(
        {
            ("clinic.test", "1001"): StaffEntry("clinic.test", "1001", "Alice Nurse", (), "", ""),
            ("clinic.test", "1002"): StaffEntry("clinic.test", "1002", "Bob Doctor", (), "", ""),
            ("clinic.test", "1003"): StaffEntry("clinic.test", "1003", "Carol", (), "", ""),
        }
    ),
)
SDP_A = (
    b"v=0\r\no=alice 111 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0\r\na=sendrecv\r\n"
)
SDP_B = (
    b"v=0\r\no=bob 222 7 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 42000 RTP/AVP 0\r\na=sendrecv\r\n"
)


def binding(port: int) -> BindingRow:
    return BindingRow(
        "clinic.test", "1002", f"k{port}", f"sip:1002@127.0.0.1:{port}", 9e9, "reg", 1, "udp", "127.0.0.1",
        port, "udp:127.0.0.1:5060", 0.0,
    )  # fmt: skip


@dataclass
class FakePort:
    """Records what call control sends; client transactions are real ones of a private layer."""

    layer: TransactionLayer = field(default_factory=TransactionLayer)
    responses: list[tuple[ServerTransaction, Response]] = field(default_factory=list)
    requests: list[tuple[Request, Target, ClientTransaction]] = field(default_factory=list)
    acks: list[tuple[Request, Target]] = field(default_factory=list)
    cancels: list[ClientTransaction] = field(default_factory=list)
    cancel_reasons: list[str] = field(default_factory=list)  # each CANCEL's Reason header, "" if none
    reports: list[CallReport] = field(default_factory=list)
    features: list[tuple[Call, Feature]] = field(default_factory=list)

    def respond(self, tx: ServerTransaction, response: Response) -> None:
        self.responses.append((tx, response))

    def send_request(self, request: Request, target: Target) -> ClientTransaction:
        tx, _ = self.layer.send_request(request, (target.host, target.port), False, 0.0)
        self.requests.append((request, target, tx))
        return tx

    def send_ack(self, request: Request, target: Target) -> None:
        self.acks.append((request, target))

    def cancel(self, tx: ClientTransaction, reason: str = "") -> None:
        self.cancels.append(tx)
        self.cancel_reasons.append(reason)

    def local_address(self, target: Target) -> tuple[str, int]:
        return ("127.0.0.1", 5060)

    def record(self, report: CallReport, reply: tuple[ServerTransaction, Response] | None = None) -> None:
        self.reports.append(report)
        if reply is not None:
            self.respond(*reply)

    def feature(self, call: Call, feature: Feature) -> None:
        self.features.append((call, feature))

    def statuses(self, tx: ServerTransaction | None = None) -> list[int]:
        return [r.status for t, r in self.responses if tx is None or t is tx]

    def sent(self, method: str, port: int | None = None) -> list[tuple[Request, ClientTransaction]]:
        return [
            (r, tx) for r, t, tx in self.requests if r.method == method and (port is None or t.port == port)
        ]


class World:
    """A controller, its fake port, a layer for the server transactions, and the phones' side."""

    def __init__(self, ports: Sequence[int] = (5001,), **settings: float) -> None:
        self.port = FakePort()
        self.layer = TransactionLayer()
        self.bindings = {("clinic.test", "1002"): [binding(p) for p in ports]}
        self.cc = CallControl(
            self.port,
            DialPlan(),
            lambda: DIRECTORY,
            lambda aor: self.bindings.get(aor, []),
            settings=CallSettings(**settings),  # type: ignore[arg-type]
            features=standard_features,
        )
        self.seq = 0

    def server_tx(self, request: Request) -> ServerTransaction:
        [event, *_] = self.layer.receive(request, (ALICE.host, ALICE.port), False, 0.0)
        assert isinstance(event, RequestReceived | CancelReceived)
        return event.tx

    def invite(
        self, to: str = "1002", *, sdp: bytes = SDP_A, headers: str = "", now: float = 0.0
    ) -> ServerTransaction:
        self.a_invite = request = parse(
            f"INVITE sip:{to}@clinic.test SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:4001;branch={new_branch()};rport\r\n"
            "Max-Forwards: 70\r\n"
            'From: "Alice" <sip:1001@clinic.test>;tag=atag\r\n'
            + f"To: <sip:{to}@clinic.test>\r\nCall-ID: a-call@phone\r\nCSeq: 1 INVITE\r\n"
            "Contact: <sip:1001@127.0.0.1:4001>\r\nUser-Agent: AlicePhone\r\n"
            "Record-Route: <sip:secret-proxy.a.test;lr>\r\n"
            f"{headers}" + ("Content-Type: application/sdp\r\n" if sdp else ""),
            sdp,
        )
        self.a_tx = tx = self.server_tx(request)
        self.cc.on_invite(tx, request, ALICE, CALLER, now)
        return tx

    def answer(
        self, invite: Request, status: int, *, tag: str, sdp: bytes = b"", port: int = 5001
    ) -> Response:
        headers = [("Contact", f"<sip:1002@127.0.0.1:{port}>")]
        if sdp:
            headers.append(("Content-Type", "application/sdp"))
        return make_response(invite, status, to_tag=tag, headers=headers, body=sdp)

    def b_invite(self, port: int = 5001) -> tuple[Request, ClientTransaction]:
        return self.port.sent("INVITE", port)[0]

    def connect(self, now: float = 0.0) -> tuple[Request, ClientTransaction, Response]:
        self.invite(now=now)
        b_req, b_tx = self.b_invite()
        ok = self.answer(b_req, 200, tag="btag", sdp=SDP_B)
        self.cc.on_response(b_tx, ok, now)
        return b_req, b_tx, ok

    def a_request(
        self, method: str, *, sdp: bytes = b"", extra: str = "", body: bytes = b""
    ) -> tuple[ServerTransaction, Request]:
        self.seq += 1
        a_tag = next(r.to_tag for t, r in self.port.responses if t is self.a_tx and r.status > 100)
        request = parse(
            f"{method} sip:sentral@127.0.0.1:5060 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:4001;branch={new_branch()};rport\r\nMax-Forwards: 70\r\n"
            f"From: <sip:1001@clinic.test>;tag=atag\r\nTo: <sip:1002@clinic.test>;tag={a_tag}\r\n"
            f"Call-ID: a-call@phone\r\nCSeq: {1 + self.seq} {method}\r\nContact: <sip:1001@127.0.0.1:4001>\r\n"
            + extra
            + ("Content-Type: application/sdp\r\n" if sdp else ""),
            sdp or body,
        )
        tx = self.server_tx(request)
        self.cc.on_request(tx, request, 0.0)
        return tx, request

    def a_response(self, status: int) -> Response:
        return next(r for t, r in self.port.responses if t is self.a_tx and r.status == status)


def head_of(request: Request, method: str | None = None) -> str:
    """The request's start line and headers (no body, no Content-Length), method optionally changed."""
    lines = request.to_bytes().decode().split("\r\n\r\n")[0].split("\r\n")
    kept = [line for line in lines if not line.lower().startswith(("content-length", "content-type"))]
    text = "\r\n".join(kept) + "\r\n"
    return (
        text.replace(request.method, method, 1).replace(
            f"{request.cseq.seq} {request.method}", f"{request.cseq.seq} {method}"
        )
        if method
        else text
    )


def parse(head: str, body: bytes = b"") -> Request:
    message = parse_message(head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    assert isinstance(message, Request)
    return message


def b_request(b_req: Request, ok: Response, method: str, cseq: int, *, sdp: bytes = b"") -> Request:
    """A request phone B sends in its dialog with us."""
    return parse(
        f"{method} sip:sentral@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5001;branch={new_branch()}\r\nMax-Forwards: 70\r\n"
        f"From: <sip:1002@clinic.test>;tag={ok.to_tag}\r\nTo: {b_req.header('from')}\r\n"
        f"Call-ID: {b_req.call_id}\r\nCSeq: {cseq} {method}\r\nContact: <sip:1002@127.0.0.1:5001>\r\n"
        + ("Content-Type: application/sdp\r\n" if sdp else ""),
        sdp,
    )


# -- forking, answer, topology ------------------------------------------------------------------


def test_trying_at_once_and_every_contact_rings_in_parallel_with_nothing_of_a_leaking() -> None:
    w = World(ports=(5001, 5002))
    w.invite()
    assert w.port.statuses(w.a_tx) == [100]
    invites = w.port.sent("INVITE")
    assert [t.port for _, t, _ in w.port.requests] == [5001, 5002]
    call_ids = {r.call_id for r, _ in invites}
    assert len(call_ids) == 2 and "a-call@phone" not in call_ids
    for request, _ in invites:
        text = request.to_bytes().decode()
        assert request.uri_text.startswith("sip:1002@127.0.0.1:500")
        assert request.from_.display == '"Alice Nurse"' or "Alice Nurse" in str(request.from_)
        assert request.from_.uri.user == "1001"
        assert request.max_forwards == 69
        for leaked in ("atag", "4001", "secret-proxy", "AlicePhone", 'Alice" <'):
            assert leaked not in text
        sdp = parse_sdp(request.body)
        assert sdp.origin.username == "sentral" and sdp.origin.session_id != "111"
        assert "timer" in request.tokens("supported")


def test_first_answer_wins_ringing_is_relayed_and_the_others_are_cancelled() -> None:
    w = World(ports=(5001, 5002))
    w.invite()
    (b1, tx1), (b2, tx2) = w.port.sent("INVITE")
    w.cc.on_response(tx1, w.answer(b1, 180, tag="r1"), 1.0)
    assert w.port.statuses(w.a_tx) == [100, 180]
    ringing = w.a_response(180)
    assert ringing.to_tag and ringing.to_tag != "r1"
    w.cc.on_response(tx2, w.answer(b2, 200, tag="w2", sdp=SDP_B, port=5002), 2.0)
    ok = w.a_response(200)
    assert ok.to_tag == ringing.to_tag
    assert parse_sdp(ok.body).origin.username == "sentral"
    assert b"42000" in ok.body  # the media address of B reaches A unchanged
    assert "sip:sentral@127.0.0.1:5060" in ok.header("contact")  # type: ignore[operator]
    [(ack, target)] = w.port.acks
    assert ack.call_id == b2.call_id and ack.to_tag == "w2" and target.port == 5002
    assert w.port.cancels == [tx1]


def test_a_second_2xx_racing_in_is_acked_and_byed() -> None:
    w = World(ports=(5001, 5002))
    w.invite()
    (b1, tx1), (b2, tx2) = w.port.sent("INVITE")
    w.cc.on_response(tx2, w.answer(b2, 200, tag="w2", sdp=SDP_B, port=5002), 1.0)
    w.cc.on_response(tx1, w.answer(b1, 200, tag="late", sdp=SDP_B), 1.1)
    assert sorted(a.to_tag or "" for a, _ in w.port.acks) == ["late", "w2"]
    [(bye, _)] = w.port.sent("BYE")
    assert bye.call_id == b1.call_id and bye.to_tag == "late"
    assert w.port.statuses(w.a_tx).count(200) == 1


def test_cancel_before_answer() -> None:
    w = World(ports=(5001, 5002))
    w.invite()
    (b1, tx1), _ = w.port.sent("INVITE")
    w.cc.on_response(tx1, w.answer(b1, 180, tag="r1"), 0.5)
    cancel = parse(head_of(w.a_invite, "CANCEL"))
    cancel_tx = w.server_tx(cancel)
    w.cc.on_cancel(cancel_tx, cancel, w.a_tx, 1.0)
    assert w.port.statuses(cancel_tx) == [200]
    assert w.port.statuses(w.a_tx)[-1] == 487
    assert len(w.port.cancels) == 2
    [report] = w.port.reports
    assert report.hangup_by == "caller" and report.cause == "CANCEL" and report.status == 487
    assert [leg.outcome for leg in report.legs] == ["cancelled", "cancelled", "cancelled"]


@pytest.mark.parametrize(
    ("finals", "expected"),
    [
        ([486], 486), ([603], 603), ([600], 600), ([404], 404), ([480], 480), ([408], 480),
        ([404, 500], 404), ([480, 404], 480), ([500, 404], 404), ([408, 404], 480), ([408, 480], 480),
    ],
)  # fmt: skip
def test_the_caller_gets_the_most_telling_failure(finals: list[int], expected: int) -> None:
    w = World(ports=tuple(5001 + i for i in range(len(finals))))
    w.invite()
    for (request, tx), status in zip(w.port.sent("INVITE"), finals, strict=True):
        assert w.port.statuses(w.a_tx)[-1] == 100  # nothing final before the last leg fails
        if status == 408:
            w.cc.on_timeout(tx, 32.0)
        else:
            w.cc.on_response(tx, w.answer(request, status, tag="x"), 1.0)
    assert w.port.statuses(w.a_tx)[-1] == expected
    [report] = w.port.reports
    assert report.status == expected and report.answered is None
    assert sorted(leg.status or 0 for leg in report.legs[1:]) == sorted(finals)


@pytest.mark.parametrize(("first", "then"), [(486, 603), (603, 486), (600, 480), (404, 486), (408, 603)])
def test_a_reject_from_the_callee_ends_a_direct_call_at_once(first: int, then: int) -> None:
    """The clinic's rule: rejecting a call made directly to you hangs up on the caller, even while
    another of your phones still rings."""
    w = World(ports=(5001, 5002, 5003))
    w.invite()
    (r1, tx1), (r2, tx2), _ = w.port.sent("INVITE")
    for (request, tx), status in (((r1, tx1), first), ((r2, tx2), then)):
        if status == 408:
            w.cc.on_timeout(tx, 32.0)
        else:
            w.cc.on_response(tx, w.answer(request, status, tag="x"), 1.0)
    reject = first if first in (486, 600, 603) else then
    assert w.port.statuses(w.a_tx)[-1] == reject
    assert len(w.port.cancels) == (2 if first in (486, 600, 603) else 1)
    [report] = w.port.reports
    assert report.status == reject and report.hangup_by == "callee"


def test_no_answer_timeout_cancels_the_legs_and_gives_480_with_a_reason() -> None:
    w = World(ports=(5001, 5002), no_answer=20.0)
    w.invite(now=100.0)
    assert w.cc.next_deadline() == 120.0
    w.cc.on_timer(119.9)
    assert w.port.statuses(w.a_tx) == [100]
    w.cc.on_timer(120.0)
    assert w.port.statuses(w.a_tx) == [100, 480]
    assert "cause=480" in (w.a_response(480).header("reason") or "")
    assert len(w.port.cancels) == 2
    [report] = w.port.reports
    assert report.cause == "no answer timeout" and report.hangup_by == "system"


def test_unknown_extension_404_and_unregistered_480_are_recorded() -> None:
    w = World()
    w.invite(to="4444")
    w.invite(to="1003")
    assert [r.status for r in w.port.reports] == [404, 480]
    assert w.port.requests == []


# -- refusals --------------------------------------------------------------------------------------


def test_max_forwards_zero_is_483() -> None:
    w = World()
    tx = w.invite(headers="")
    w2 = World()
    request = parse(head_of(w.a_invite).replace("Max-Forwards: 70", "Max-Forwards: 0"))
    tx = w2.server_tx(request)
    w2.cc.on_invite(tx, request, ALICE, CALLER, 0.0)
    assert w2.port.statuses(tx) == [483]
    assert w2.port.requests == []


def test_require_100rel_is_refused_with_420_and_unsupported() -> None:
    w = World()
    tx = w.invite(headers="Require: 100rel\r\nSupported: timer\r\n")
    assert w.port.statuses(tx) == [100, 420]
    assert w.a_response(420).header("unsupported") == "100rel"
    assert w.port.requests == []


def test_require_timer_is_accepted() -> None:
    w = World()
    w.invite(headers="Require: timer\r\nSupported: timer\r\nSession-Expires: 1800\r\n")
    assert len(w.port.sent("INVITE")) == 1


def test_session_interval_below_our_minimum_is_422() -> None:
    w = World()
    tx = w.invite(headers="Supported: timer\r\nSession-Expires: 30\r\n")
    assert w.port.statuses(tx) == [100, 422]
    assert w.a_response(422).header("min-se") == "90"


def test_bye_for_an_unknown_dialog_and_on_an_early_dialog_is_481() -> None:
    w = World()
    w.invite()
    b_req, b_tx = w.b_invite()
    w.cc.on_response(b_tx, w.answer(b_req, 180, tag="r"), 0.1)
    tx, _ = w.a_request("BYE")  # the A dialog is still early
    assert w.port.statuses(tx) == [481]
    stray = parse(
        "BYE sip:sentral@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:4001;branch=z9hG4bKzz\r\n"
        "From: <sip:x@y>;tag=1\r\nTo: <sip:z@y>;tag=nope\r\nCall-ID: nothing\r\nCSeq: 1 BYE\r\n"
    )
    stray_tx = w.server_tx(stray)
    w.cc.on_request(stray_tx, stray, 0.2)
    assert w.port.statuses(stray_tx) == [481]


# -- answered calls --------------------------------------------------------------------------------


def test_bye_from_either_side_byes_the_other_and_the_record_says_who() -> None:
    w = World()
    b_req, _, ok = w.connect()
    w.cc.on_ack(parse_ack(w), 0.1)
    bye = b_request(b_req, ok, "BYE", 1)
    tx = w.server_tx(bye)
    w.cc.on_request(tx, bye, 5.0)
    assert w.port.statuses(tx) == [200]
    [(a_bye, target, _)] = [r for r in w.port.requests if r[0].method == "BYE"]
    assert a_bye.call_id == "a-call@phone" and a_bye.to_tag == "atag" and target.port == 4001
    [report] = w.port.reports
    assert report.hangup_by == "callee" and report.cause == "BYE" and report.status == 200
    assert report.answered == 0.0 and report.ended == 5.0
    assert [leg.outcome for leg in report.legs] == ["answered", "answered"]
    assert report.caller == "1001" and report.callee == "1002" and report.callee_name == "Bob Doctor"
    assert report.legs[1].target == "sip:1002@127.0.0.1:5001"


def parse_ack(w: World) -> Request:
    ok = w.a_response(200)
    return parse(
        "ACK sip:sentral@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:4001;branch={new_branch()}\r\nMax-Forwards: 70\r\n"
        f"From: <sip:1001@clinic.test>;tag=atag\r\nTo: <sip:1002@clinic.test>;tag={ok.to_tag}\r\n"
        f"Call-ID: a-call@phone\r\nCSeq: {ok.cseq.seq} ACK\r\n"
    )


def test_2xx_is_retransmitted_t1_doubling_to_t2_until_the_ack() -> None:
    w = World()
    w.connect(now=10.0)
    times: list[float] = []
    now = 10.0
    while len(times) < 6:
        deadline = w.cc.next_deadline()
        assert deadline is not None
        now = deadline
        before = w.port.statuses(w.a_tx).count(200)
        w.cc.on_timer(now)
        if w.port.statuses(w.a_tx).count(200) > before:
            times.append(round(now - 10.0, 3))
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5]
    w.cc.on_ack(parse_ack(w), now)
    w.cc.on_timer(now + 10)
    assert w.port.statuses(w.a_tx).count(200) == 7


def test_without_an_ack_the_call_is_torn_down_after_64_t1() -> None:
    w = World()
    w.connect(now=0.0)
    w.cc.on_timer(31.9)
    assert w.port.sent("BYE") == []
    w.cc.on_timer(32.0)
    assert {r.call_id for r, _ in w.port.sent("BYE")} == {"a-call@phone", w.b_invite()[0].call_id}
    assert w.port.reports[0].cause == "no ACK"


def test_reinvite_hold_passes_across_with_each_legs_own_origin() -> None:
    w = World()
    b_req, _, _ = w.connect()
    w.cc.on_ack(parse_ack(w), 0.1)
    first_to_b = parse_sdp(b_req.body).origin
    hold = SDP_A.replace(b"o=alice 111 1", b"o=alice 111 2").replace(b"sendrecv", b"sendonly")
    tx, _ = w.a_request("INVITE", sdp=hold)
    [(reinvite, b_tx)] = [(r, t) for r, t in w.port.sent("INVITE") if r.to_tag == "btag"]
    assert reinvite.call_id == b_req.call_id
    offered = parse_sdp(reinvite.body)
    assert offered.direction is Direction.SENDONLY or b"sendonly" in reinvite.body
    assert (
        offered.origin.session_id == first_to_b.session_id
        and offered.origin.version == first_to_b.version + 1
    )
    answer = SDP_B.replace(b"o=bob 222 7", b"o=bob 222 8").replace(b"sendrecv", b"recvonly")
    w.cc.on_response(b_tx, w.answer(reinvite, 200, tag="btag", sdp=answer), 0.3)
    assert [a.cseq.method for a, _ in w.port.acks][-1] == "ACK"
    assert w.port.acks[-1][0].cseq.seq == reinvite.cseq.seq
    reply = [r for t, r in w.port.responses if t is tx][-1]
    assert reply.status == 200 and b"recvonly" in reply.body
    assert parse_sdp(reply.body).origin.username == "sentral"


def test_a_held_call_is_listed_as_held_until_resumed_and_only_once_the_hold_is_accepted() -> None:
    w = World()
    w.connect()
    w.cc.on_ack(parse_ack(w), 0.1)
    [live] = w.cc.live()
    assert live.state == "answered"

    def reinvite(direction: bytes, version: bytes, now: float, status: int = 200) -> None:
        sdp = SDP_A.replace(b"o=alice 111 1", b"o=alice 111 " + version).replace(b"sendrecv", direction)
        _, request = w.a_request("INVITE", sdp=sdp)
        relayed, b_tx = [(r, t) for r, t in w.port.sent("INVITE") if r.to_tag == "btag"][-1]
        answer = SDP_B.replace(b"o=bob 222 7", b"o=bob 222 " + version) if status == 200 else b""
        w.cc.on_response(b_tx, w.answer(relayed, status, tag="btag", sdp=answer), now)
        if status == 200:
            w.cc.on_ack(parse(head_of(request, "ACK")), now)

    published = w.cc.version
    reinvite(b"sendonly", b"2", 0.3, status=488)  # refused: the old session stands
    assert [c.state for c in w.cc.live()] == ["answered"]
    reinvite(b"sendonly", b"2", 0.5)
    assert [c.state for c in w.cc.live()] == ["held"]
    assert w.cc.version > published  # the snapshot is published again
    reinvite(b"sendrecv", b"3", 0.7)
    assert [c.state for c in w.cc.live()] == ["answered"]


def test_glare_a_reinvite_on_a_leg_with_our_own_outstanding_gets_491() -> None:
    w = World()
    b_req, _, ok = w.connect()
    w.cc.on_ack(parse_ack(w), 0.1)
    w.a_request("INVITE", sdp=SDP_A.replace(b"sendrecv", b"sendonly"))  # relayed to B, unanswered
    theirs = b_request(b_req, ok, "INVITE", 1, sdp=SDP_B)
    tx = w.server_tx(theirs)
    w.cc.on_request(tx, theirs, 0.2)
    assert w.port.statuses(tx) == [491]


def test_info_passes_across_with_its_body() -> None:
    w = World()
    b_req, _, _ = w.connect()
    w.cc.on_ack(parse_ack(w), 0.1)
    body = b"Signal=5\r\nDuration=160\r\n"
    tx, _ = w.a_request("INFO", extra="Content-Type: application/dtmf-relay\r\n", body=body)
    [(info, b_tx)] = w.port.sent("INFO")
    assert info.call_id == b_req.call_id and info.body == body
    assert info.content_type == "application/dtmf-relay"
    w.cc.on_response(b_tx, make_response(info, 200), 0.2)
    assert w.port.statuses(tx) == [200]


def test_session_timer_expiry_byes_both_sides() -> None:
    w = World()
    w.invite(headers="Supported: timer\r\nSession-Expires: 120;refresher=uac\r\n")
    b_req, b_tx = w.b_invite()
    ok = w.answer(b_req, 200, tag="btag", sdp=SDP_B)
    w.cc.on_response(b_tx, ok, 0.0)
    w.cc.on_ack(parse_ack(w), 0.1)
    assert "120;refresher=uac" in (w.a_response(200).header("session-expires") or "")
    w.cc.on_timer(87.9)
    assert w.port.sent("BYE") == []
    w.cc.on_timer(88.0)  # 120 - min(32, 120/3): the refresh A was to send never came
    byes = w.port.sent("BYE")
    assert {r.call_id for r, _ in byes} == {"a-call@phone", b_req.call_id}
    [report] = w.port.reports
    assert report.cause == "session timer expired" and report.hangup_by == "system"
