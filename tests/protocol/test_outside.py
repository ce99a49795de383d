"""Calls out on trunks, on a fake clock: the hunt over a clinic's trunks (failover on 5xx, 408 and
silence, a trunk marked down skipped), what the carrier is sent (the number in the trunk's format,
From, P-Asserted-Identity, Privacy, the answer to its digest challenge), and what the outbound
policy refuses (a prompt as early media, then 403)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType

import pytest

from sentral.config.directory import (
    ClinicEntry,
    DialPermission,
    Directory,
    NumberFormat,
    StaffEntry,
    TrunkEntry,
)
from sentral.config.settings import Listen
from sentral.config.store import BindingRow
from sentral.pbx.call import CallControl, Caller, CallSettings, CallState
from sentral.pbx.features import click_to_call
from sentral.pbx.features import standard as standard_features
from sentral.pbx.features.click import ClickRefused
from sentral.pbx.features.outside import CARRIER_TIMEOUT
from sentral.pbx.sip.auth import parse_challenge
from sentral.pbx.sip.message import Request, make_response
from sentral.pbx.sip.transaction import (
    ClientTransaction,
    RequestReceived,
    ServerTransaction,
    TransactionLayer,
)
from sentral.pbx.transport import Origin, Target
from sentral.routing.dialplan import DialPlan
from tests.protocol.clinic import Clinic as TransferClinic
from tests.protocol.clinic import refer
from tests.protocol.test_anchoring import FakeMedia
from tests.protocol.test_call import SDP_A, SDP_B, FakePort, parse

DOMAIN = "clinic.test"
LISTEN = Listen("udp", "127.0.0.1", 5060)
CLINIC = ClinicEntry(
    DOMAIN, "Clinic", ("MD5",), country="NO", main_number="+4722000000", open_countries=frozenset({47})
)
PHONE = 4001


def _trunk(name: str, port: int, priority: int, **kw: object) -> TrunkEntry:
    fields: dict[str, object] = dict(
        domain=DOMAIN, name=name, host="127.0.0.1", port=port, transport="udp", priority=priority,
        register=False, username=None, password=None, realm=None,
    )  # fmt: skip
    fields.update(kw)
    return TrunkEntry(**fields)  # type: ignore[arg-type]


@dataclass
class Line:
    """A trunk's line as the hunt sees it: usable unless marked down, and what it was told."""

    entry: TrunkEntry
    down: bool = False
    calls: int = 0
    told: list[str] = field(default_factory=list)

    def usable(self, now: float) -> bool:
        return not self.down

    def call_failed(self, status: int | None, now: float) -> None:
        self.told.append(f"failed {status}")

    def call_answered(self, now: float) -> None:
        self.told.append("answered")


@dataclass
class Carriers:
    lines_: list[Line]

    def lines(self, domain: str) -> list[Line]:
        return [line for line in self.lines_ if line.entry.domain == domain]

    def target(self, line: Line) -> Target:
        return Target(line.entry.transport, line.entry.host, line.entry.port)


class Clinic:
    """Phone 1001 (national), 1002 (international) and 1003 (internal only), two trunks."""

    def __init__(
        self, clinic: ClinicEntry = CLINIC, settings: CallSettings | None = None, **trunk_b: object
    ) -> None:
        staff = {
            "1001": StaffEntry(DOMAIN, "1001", "Alice", (), "", ""),
            "1002": StaffEntry(DOMAIN, "1002", "Bob", (), "", "", dial=DialPermission.INTERNATIONAL),
            "1003": StaffEntry(DOMAIN, "1003", "Carol", (), "", "", dial=DialPermission.INTERNAL),
            "1004": StaffEntry(DOMAIN, "1004", "Dave", (), "", "", public_number="+4722000004"),
        }
        self.clinic = clinic
        self.directory = Directory(
            1,
            MappingProxyType({DOMAIN: clinic}),
            MappingProxyType({(DOMAIN, e): s for e, s in staff.items()}),
        )
        self.lines = [Line(_trunk("a", 7001, 1)), Line(_trunk("b", 7002, 2, **trunk_b))]
        self.port = FakePort()
        self.layer = TransactionLayer()
        self.media = FakeMedia(prompt=2.0)
        self.cc = CallControl(
            self.port,
            DialPlan(),
            lambda: self.directory,
            lambda aor: [],
            media=self.media,
            settings=settings,
            features=lambda core: standard_features(core, Carriers(self.lines)),
        )
        self.n = 0

    def dial(self, caller: str, number: str, now: float = 0.0) -> ServerTransaction:
        self.n += 1
        request = parse(
            f"INVITE sip:{number}@{DOMAIN} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{PHONE};branch=z9hG4bK-{self.n}-out;rport\r\nMax-Forwards: 70\r\n"
            f"From: <sip:{caller}@{DOMAIN}>;tag=from{self.n}\r\nTo: <sip:{number}@{DOMAIN}>\r\n"
            f"Call-ID: out-{self.n}\r\nCSeq: 1 INVITE\r\nContact: <sip:{caller}@127.0.0.1:{PHONE}>\r\n"
            "Content-Type: application/sdp\r\n",
            SDP_A,
        )
        [event, *_] = self.layer.receive(request, ("127.0.0.1", PHONE), False, now)
        assert isinstance(event, RequestReceived)
        staff = self.directory.staff_for(DOMAIN, caller)
        assert staff is not None
        self.cc.on_invite(event.tx, request, Origin("udp", "127.0.0.1", PHONE, LISTEN), Caller(
            self.clinic, caller, staff.name), now)  # fmt: skip
        return event.tx

    def to_carrier(self, port: int) -> list[tuple[Request, ClientTransaction]]:
        return self.port.sent("INVITE", port)

    def carrier_answers(self, port: int, status: int, now: float, index: int = -1, **kw: object) -> None:
        request, tx = self.to_carrier(port)[index]
        body = SDP_B if status in (183, 200) else b""
        headers = [("Contact", f"<sip:carrier@127.0.0.1:{port}>")]
        headers += list(kw.get("headers", ()))  # type: ignore[call-overload]
        if body:
            headers.append(("Content-Type", "application/sdp"))
        response = make_response(request, status, to_tag=f"carrier-{port}", headers=headers, body=body)
        self.cc.on_response(tx, response, now)

    def statuses(self, tx: ServerTransaction) -> list[int]:
        return self.port.statuses(tx)


def test_a_national_number_goes_out_on_the_first_trunk_in_e164_with_the_clinics_number() -> None:
    c = Clinic()
    tx = c.dial("1001", "22-33-44-55")
    [(invite, _)] = c.to_carrier(7001)
    assert invite.uri_text == "sip:+4722334455@127.0.0.1:7001"
    assert invite.to.uri.user_unescaped == "+4722334455"
    assert invite.from_.uri.user_unescaped == "+4722000000"
    assert invite.header("p-asserted-identity") == "<sip:+4722000000@127.0.0.1:7001;user=phone>"
    assert invite.header("privacy") is None
    assert not c.to_carrier(7002)
    c.carrier_answers(7001, 180, 0.5)
    c.carrier_answers(7001, 200, 1.0)
    assert c.statuses(tx)[-1] == 200
    assert c.lines[0].told == ["answered"]
    [call] = c.cc.calls.values()
    assert call.state is CallState.ANSWERED and call.callee == "+4722334455"


def test_a_staff_members_own_number_and_the_trunks_format() -> None:
    c = Clinic()
    c.lines[0] = Line(_trunk("a", 7001, 1, number_format=NumberFormat.NATIONAL))
    c.dial("1004", "+47-22-33-44-55")
    [(invite, _)] = c.to_carrier(7001)
    assert invite.uri_text == "sip:22334455@127.0.0.1:7001"
    assert invite.from_.uri.user_unescaped == "22000004"
    assert invite.header("p-asserted-identity") == "<sip:+4722000004@127.0.0.1:7001;user=phone>"


def test_the_hide_number_code_asks_the_carrier_for_privacy() -> None:
    c = Clinic()
    c.dial("1001", "*31*22334455")
    [(invite, _)] = c.to_carrier(7001)
    assert invite.uri_text == "sip:+4722334455@127.0.0.1:7001"
    assert invite.header("privacy") == "id"
    assert invite.from_.uri.user_unescaped == "anonymous"
    assert invite.header("p-asserted-identity") is not None  # the carrier needs it; Privacy hides it


def test_a_503_fails_over_to_the_next_trunk_and_is_told_to_the_first() -> None:
    c = Clinic()
    tx = c.dial("1001", "22334455")
    c.carrier_answers(7001, 503, 0.2)
    [(invite, _)] = c.to_carrier(7002)
    assert invite.uri_text == "sip:+4722334455@127.0.0.1:7002"
    assert c.lines[0].told == ["failed 503"]
    c.carrier_answers(7002, 200, 0.5)
    assert c.statuses(tx)[-1] == 200
    assert c.lines[0].calls == 0 and c.lines[1].calls == 1


def test_a_silent_carrier_fails_over_after_the_carrier_timeout() -> None:
    c = Clinic()
    tx = c.dial("1001", "22334455")
    c.cc.on_timer(CARRIER_TIMEOUT - 0.1)
    assert not c.to_carrier(7002)
    c.cc.on_timer(CARRIER_TIMEOUT + 0.01)
    assert len(c.to_carrier(7002)) == 1
    assert c.lines[0].told == ["failed None"]
    c.carrier_answers(7002, 486, 1.0)
    assert c.statuses(tx)[-1] == 486


def test_a_busy_number_is_the_called_partys_answer_not_a_reason_to_fail_over() -> None:
    c = Clinic()
    tx = c.dial("1001", "22334455")
    c.carrier_answers(7001, 486, 0.3)
    assert not c.to_carrier(7002)
    assert c.statuses(tx)[-1] == 486
    assert c.lines[0].told == ["answered"]


def test_a_trunk_marked_down_is_skipped_and_all_failing_is_503() -> None:
    c = Clinic()
    c.lines[0].down = True
    tx = c.dial("1001", "22334455")
    assert not c.to_carrier(7001)
    c.carrier_answers(7002, 500, 0.3)
    assert c.statuses(tx)[-1] == 503
    [report] = c.port.reports
    assert report.cause == "all trunks failed"


def test_early_media_from_the_carrier_reaches_the_phone() -> None:
    c = Clinic()
    tx = c.dial("1001", "22334455")
    c.carrier_answers(7001, 183, 0.3)
    [early] = [r for r in c.port.responses if r[0] is tx and r[1].status == 183]
    assert b"a=fake:answer:a<-b1" in early[1].body


def test_a_closed_country_hears_why_then_403_and_nothing_goes_out() -> None:
    c = Clinic()
    tx = c.dial("1002", "+46-8-123-456-78")
    assert not c.to_carrier(7001) and not c.to_carrier(7002)
    assert ("play", "a", "country_closed") in c.media.asked
    assert c.statuses(tx)[-1] == 183
    c.cc.on_timer(2.5)
    assert c.statuses(tx)[-1] == 403
    [report] = c.port.reports
    assert report.cause == "country closed" and report.status == 403


def test_staff_may_dial_only_as_far_as_their_permission() -> None:
    c = Clinic(clinic=replace(CLINIC, open_countries=frozenset({47, 46})))
    national = c.dial("1001", "+46812345678")
    internal = c.dial("1003", "22334455")
    abroad = c.dial("1002", "+46812345678")
    c.cc.on_timer(3.0)
    assert c.statuses(national)[-1] == 403 and c.statuses(internal)[-1] == 403
    causes = sorted(r.cause for r in c.port.reports)
    assert causes == ["internal only", "national only"]
    assert c.statuses(abroad)[-1] == 100
    [(invite, _)] = c.to_carrier(7001)
    assert invite.uri_text == "sip:+46812345678@127.0.0.1:7001"


def test_emergency_numbers_go_out_acute_with_every_country_closed() -> None:
    c = Clinic(clinic=replace(CLINIC, open_countries=frozenset()))
    c.lines[0].down = True
    c.dial("1003", "113")
    [(invite, _)] = c.to_carrier(7002)
    assert invite.uri_text == "sip:113@127.0.0.1:7002"
    assert invite.header("priority") == "emergency"
    [call] = c.cc.calls.values()
    assert call.acute


def test_an_emergency_call_tries_trunks_marked_down_when_no_trunk_is_up() -> None:
    c = Clinic()
    c.lines[0].down = c.lines[1].down = True
    c.dial("1001", "113")
    [(invite, _)] = c.to_carrier(7001)
    assert invite.uri_text == "sip:113@127.0.0.1:7001"
    normal = c.dial("1001", "22334455")
    assert c.statuses(normal)[-1] == 503 and len(c.to_carrier(7001)) == 1


def test_the_carriers_digest_challenge_is_answered_once_per_nonce() -> None:
    c = Clinic(username="clinic", password="s3cret")
    c.lines[0].down = True
    tx = c.dial("1001", "22334455")
    challenge = 'Digest realm="carrier.test", nonce="n1", algorithm=SHA-256, qop="auth"'
    c.carrier_answers(7002, 407, 0.1, headers=[("Proxy-Authenticate", challenge)])
    [first, (second, _)] = c.to_carrier(7002)
    assert second.cseq.seq == 2 and second.call_id == first[0].call_id
    authorization = second.header("proxy-authorization") or ""
    assert 'username="clinic"' in authorization and "s3cret" not in authorization
    assert 'realm="carrier.test"' in authorization and "algorithm=SHA-256" in authorization
    assert parse_challenge(challenge).nonce == "n1"
    # The same nonce again: the password is wrong; the call fails rather than loop.
    c.carrier_answers(7002, 407, 0.2, headers=[("Proxy-Authenticate", challenge)])
    assert len(c.to_carrier(7002)) == 2
    assert c.statuses(tx)[-1] == 407


def test_international_calls_are_capped_per_member_of_staff() -> None:
    c = Clinic(clinic=replace(CLINIC, open_countries=frozenset({47, 46})))
    first = c.dial("1002", "+46812345678")
    second = c.dial("1002", "+46812345679")
    third = c.dial("1002", "+46812345670")
    assert len(c.to_carrier(7001)) == 2
    assert ("play", "a", "outside_cap") in c.media.asked
    c.cc.on_timer(3.0)
    assert c.statuses(third)[-1] == 403
    # One of them ends: the next may go.
    c.carrier_answers(7001, 486, 3.1, index=0)
    assert c.statuses(first)[-1] == 486 and c.statuses(second)[-1] == 100
    c.dial("1002", "+46812345671", 3.2)
    assert len(c.to_carrier(7001)) == 3


def test_the_caps_are_the_servers_settings_and_a_clinics_cap_counts_all_its_staff() -> None:
    settings = CallSettings(international_calls=1, international_calls_per_staff=1)
    open_clinic = replace(CLINIC, open_countries=frozenset({47, 46}))
    c = Clinic(clinic=open_clinic, settings=settings)
    c.directory = replace(
        c.directory,
        staff=MappingProxyType(
            {
                **c.directory.staff,
                (DOMAIN, "1001"): replace(
                    c.directory.staff[(DOMAIN, "1001")], dial=DialPermission.INTERNATIONAL
                ),
            }
        ),
    )
    c.dial("1002", "+46812345678")
    refused = c.dial("1001", "+46812345679")
    assert len(c.to_carrier(7001)) == 1
    c.cc.on_timer(3.0)
    assert c.statuses(refused)[-1] == 403
    national = c.dial("1001", "22334455", 3.1)  # a national call is never capped
    assert len(c.to_carrier(7001)) == 2 and c.statuses(national)[-1] == 100


def test_a_blind_transfer_to_an_outside_number_goes_out_on_a_trunk_and_connects() -> None:
    lines = [Line(_trunk("a", 7001, 1))]
    c = TransferClinic(Carriers(lines), CLINIC)
    call = c.talking()  # 1001 talks to 1002
    tx = refer(c, "<sip:22334455@clinic.test>", 1.0)
    assert c.port.statuses(tx) == [202]
    [(invite, _)] = c.port.sent("INVITE", 7001)
    assert invite.uri_text == "sip:+4722334455@127.0.0.1:7001"
    assert ("music", "a", "on") in c.media.asked  # the transferee holds meanwhile
    ok = make_response(
        invite, 200, to_tag="carrier", headers=[("Contact", "<sip:c@127.0.0.1:7001>"), ("Content-Type", "application/sdp")],
        body=SDP_B,
    )  # fmt: skip
    c.cc.on_response(c.port.sent("INVITE", 7001)[0][1], ok, 5.0)
    assert call.winner is not None and call.winner.carrier is not None
    assert call.transfers[-1].outcome == "answered" and call.transfers[-1].target == "22334455"


def test_a_member_of_staff_may_not_transfer_out_beyond_their_permission() -> None:
    c = TransferClinic(Carriers([Line(_trunk("a", 7001, 1))]), CLINIC)
    c.talking()
    tx = refer(c, "<sip:+46812345678@clinic.test>", 1.0)  # 1002 may dial nationally only
    assert c.port.statuses(tx) == [202]
    assert not c.port.sent("INVITE", 7001)
    [*_, last] = [n for n, _ in c.port.sent("NOTIFY", 5002)]
    assert last.body.startswith(b"SIP/2.0 403")


def test_click_to_call_goes_out_with_the_staff_members_identity_under_their_permission() -> None:
    c = Clinic()
    desk = BindingRow(
        DOMAIN, "1004", "k1", f"sip:1004@127.0.0.1:{PHONE}", 9e9, "reg", 1, "udp", "127.0.0.1", PHONE,
        "udp:127.0.0.1:5060", 0.0,
    )  # fmt: skip
    c.cc.bindings = lambda aor: [desk] if aor == (DOMAIN, "1004") else []
    click = click_to_call(c.cc)
    with pytest.raises(ClickRefused) as refused:
        click.call(DOMAIN, "1003", "22334455", 0.0)  # 1003 may call inside the clinic only
    assert refused.value.status == 403 and c.port.requests == []
    call = click.call(DOMAIN, "1004", "22 33 44 55", 0.0)
    [(ringing, tx)] = c.port.sent("INVITE", PHONE)
    assert str(ringing.header("from")).startswith('"22 33 44 55" <sip:+4722334455@')  # as typed, and E.164
    assert not c.to_carrier(7001)
    c.cc.on_response(tx, make_response(ringing, 200, to_tag="desk", headers=[
        ("Contact", f"<sip:1004@127.0.0.1:{PHONE}>"), ("Content-Type", "application/sdp")], body=SDP_B), 1.0)  # fmt: skip
    [(invite, _)] = c.to_carrier(7001)
    assert invite.uri_text == "sip:+4722334455@127.0.0.1:7001"
    assert invite.header("p-asserted-identity") == "<sip:+4722000004@127.0.0.1:7001;user=phone>"
    assert invite.header("referred-by") is None
    c.carrier_answers(7001, 200, 3.0)
    assert call.winner is not None and call.winner.carrier is not None
    assert c.media.asked[-1] == ("join", call.a.id, call.winner.id)
