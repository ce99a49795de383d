"""Dialog tests (RFC 3261 §12): real message bytes in, built requests and state out."""

from __future__ import annotations

import pytest

from sentral.pbx.sip.dialog import (
    MAX_CSEQ,
    Dialog,
    DialogError,
    DialogKey,
    DialogState,
    ForkedDialogs,
    dialog_key,
)
from sentral.pbx.sip.errors import SipError
from sentral.pbx.sip.message import Request, Response, make_response, parse_message

VIA = "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKb2b1"
ACK_VIA = "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKack1"


def state(d: Dialog) -> DialogState:
    """The dialog's state, read through a call so that each assertion reads it afresh."""
    return d.state


def req(data: str) -> Request:
    msg = parse_message(data.replace("\n", "\r\n").encode())
    assert isinstance(msg, Request)
    return msg


def resp(data: str) -> Response:
    msg = parse_message(data.replace("\n", "\r\n").encode())
    assert isinstance(msg, Response)
    return msg


# The caller's INVITE as the B2BUA receives it, through two record-routing proxies.
CALLER_INVITE = """\
INVITE sip:2001@clinic.example SIP/2.0
Via: SIP/2.0/UDP p2.example;branch=z9hG4bKp2
Via: SIP/2.0/UDP p1.example;branch=z9hG4bKp1
Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK74bf9;rport
Max-Forwards: 68
Record-Route: <sip:p2.example;lr>
Record-Route: <sip:p1.example;lr>
From: "Reception" <sip:1001@clinic.example>;tag=9fxced76sl
To: <sip:2001@clinic.example>
Call-ID: 3848276298220188511@192.0.2.10
CSeq: 314159 INVITE
Contact: <sip:1001@192.0.2.10:5062;transport=udp>
Content-Length: 0

"""


def uas_dialog(status: int = 200) -> tuple[Request, Dialog]:
    invite = req(CALLER_INVITE)
    response = make_response(
        invite, status, to_tag="b2bua-tag-1", headers=[("Contact", "<sip:sentral@10.0.0.1:5060>")]
    )
    return invite, Dialog.as_uas(invite, response, "<sip:sentral@10.0.0.1:5060>")


# The INVITE the B2BUA sends to the callee.
OUT_INVITE = """\
INVITE sip:2001@192.0.2.20:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKout1
Max-Forwards: 70
From: <sip:1001@clinic.example>;tag=leg-b-tag
To: <sip:2001@clinic.example>
Call-ID: b-leg-77@10.0.0.1
CSeq: 1 INVITE
Contact: <sip:sentral@10.0.0.1:5060>
Content-Length: 0

"""


def callee_response(
    status: int,
    *,
    tag: str = "callee-1",
    contact: str | None = "<sip:2001@192.0.2.20:5060>",
    rr: tuple[str, ...] = (),
    cseq: str = "1 INVITE",
) -> Response:
    lines = [
        f"SIP/2.0 {status} Whatever",
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKout1",
        *(f"Record-Route: {r}" for r in rr),
        "From: <sip:1001@clinic.example>;tag=leg-b-tag",
        f"To: <sip:2001@clinic.example>;tag={tag}" if tag else "To: <sip:2001@clinic.example>",
        "Call-ID: b-leg-77@10.0.0.1",
        f"CSeq: {cseq}",
    ]
    if contact:
        lines.append(f"Contact: {contact}")
    lines += ["Content-Length: 0", "", ""]
    return resp("\n".join(lines))


def uac_dialog(
    status: int = 200, *, contact: str = "<sip:2001@192.0.2.20:5060>", rr: tuple[str, ...] = ()
) -> tuple[Request, Dialog]:
    invite = req(OUT_INVITE)
    return invite, Dialog.as_uac(invite, callee_response(status, contact=contact, rr=rr))


# -- UAS side ------------------------------------------------------------------------------------


def test_as_uas_takes_state_from_invite_and_response() -> None:
    _, d = uas_dialog()
    assert state(d) is DialogState.CONFIRMED
    assert d.call_id == "3848276298220188511@192.0.2.10"
    assert d.local_tag == "b2bua-tag-1"
    assert d.remote_tag == "9fxced76sl"
    assert d.remote_seq == 314159
    assert d.local_seq is None
    assert str(d.remote_target) == "sip:1001@192.0.2.10:5062;transport=udp"
    # UAS keeps Record-Route in the order received.
    assert [str(r.uri) for r in d.route_set] == ["sip:p2.example;lr", "sip:p1.example;lr"]
    assert not d.secure
    assert d.key == DialogKey("3848276298220188511@192.0.2.10", "b2bua-tag-1", "9fxced76sl")


def test_uas_request_goes_back_through_the_routes_in_order() -> None:
    _, d = uas_dialog()
    bye = d.request("BYE", via=VIA)
    wire = parse_message(bye.to_bytes())
    assert isinstance(wire, Request)
    assert wire.method == "BYE"
    assert wire.uri_text == "sip:1001@192.0.2.10:5062;transport=udp"
    assert wire.header_values("route") == ["<sip:p2.example;lr>", "<sip:p1.example;lr>"]
    # From/To swap: our URI is the INVITE's To, with our tag.
    assert wire.from_.uri.user == "2001" and wire.from_tag == "b2bua-tag-1"
    assert wire.to.uri.user == "1001" and wire.to_tag == "9fxced76sl"
    assert wire.to.display == "Reception"
    assert wire.cseq.seq == 1 and wire.cseq.method == "BYE"
    assert wire.max_forwards == 70
    assert wire.header("via") == VIA
    assert not wire.has_header("contact")
    wire.validate()
    assert state(d) is DialogState.TERMINATED
    assert d.next_hop.host == "p2.example"


def test_uas_early_dialog_confirms_when_2xx_is_sent() -> None:
    invite, d = uas_dialog(180)
    assert state(d) is DialogState.EARLY
    with pytest.raises(DialogError):
        d.request("BYE", via=VIA)  # §15: the callee may not BYE an early dialog
    d.response_sent(make_response(invite, 200, to_tag="b2bua-tag-1"))
    assert state(d) is DialogState.CONFIRMED


def test_uas_early_dialog_ends_on_error_response_sent() -> None:
    invite, d = uas_dialog(183)
    d.response_sent(make_response(invite, 486, to_tag="b2bua-tag-1"))
    assert state(d) is DialogState.TERMINATED


def test_as_uas_refuses_invite_without_contact() -> None:
    invite = req(CALLER_INVITE.replace("Contact: <sip:1001@192.0.2.10:5062;transport=udp>\n", ""))
    response = make_response(invite, 200, to_tag="t")
    with pytest.raises(SipError) as err:
        Dialog.as_uas(invite, response, "<sip:sentral@10.0.0.1>")
    assert err.value.status == 400


def test_as_uas_needs_a_to_tag_and_a_dialog_forming_status() -> None:
    invite = req(CALLER_INVITE)
    with pytest.raises(ValueError):
        Dialog.as_uas(invite, make_response(invite, 180), "<sip:sentral@10.0.0.1>")
    with pytest.raises(ValueError):
        Dialog.as_uas(invite, make_response(invite, 100, to_tag="x"), "<sip:sentral@10.0.0.1>")
    with pytest.raises(ValueError):
        Dialog.as_uas(invite, make_response(invite, 404, to_tag="x"), "<sip:sentral@10.0.0.1>")


def test_sips_request_uri_makes_the_dialog_secure() -> None:
    invite = req(CALLER_INVITE.replace("INVITE sip:2001", "INVITE sips:2001"))
    d = Dialog.as_uas(invite, make_response(invite, 200, to_tag="t"), "<sips:sentral@10.0.0.1>")
    assert d.secure


def in_dialog(method: str, seq: int, *, contact: str | None = None, from_tag: str = "9fxced76sl") -> Request:
    lines = [
        f"{method} sip:sentral@10.0.0.1:5060 SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK" + f"{method.lower()}{seq}",
        "Max-Forwards: 70",
        f"From: <sip:1001@clinic.example>;tag={from_tag}",
        "To: <sip:2001@clinic.example>;tag=b2bua-tag-1",
        "Call-ID: 3848276298220188511@192.0.2.10",
        f"CSeq: {seq} {method}",
    ]
    if contact:
        lines.append(f"Contact: {contact}")
    lines += ["Content-Length: 0", "", ""]
    return req("\n".join(lines))


def test_receive_request_enforces_increasing_cseq() -> None:
    _, d = uas_dialog()
    d.receive_request(in_dialog("INFO", 314160))
    assert d.remote_seq == 314160
    for seq in (314160, 314159, 5):
        with pytest.raises(SipError) as err:
            d.receive_request(in_dialog("INFO", seq))
        assert err.value.status == 500
    assert d.remote_seq == 314160
    # Gaps are allowed: requests may be lost or sent by a UA that skips numbers.
    d.receive_request(in_dialog("OPTIONS", 314200))
    assert d.remote_seq == 314200


def test_ack_and_cancel_are_exempt_from_the_cseq_check() -> None:
    _, d = uas_dialog()
    d.receive_request(in_dialog("ACK", 314159))
    d.receive_request(in_dialog("CANCEL", 314159))
    assert d.remote_seq == 314159


def test_reinvite_refreshes_remote_target() -> None:
    _, d = uas_dialog()
    d.receive_request(in_dialog("INVITE", 314160, contact="<sip:1001@198.51.100.9:5070>"))
    assert str(d.remote_target) == "sip:1001@198.51.100.9:5070"
    d.receive_request(in_dialog("UPDATE", 314161, contact="<sip:1001@198.51.100.9:5080>"))
    assert d.remote_target.port == 5080
    # INFO is not a target refresh: its Contact (if any) is ignored.
    d.receive_request(in_dialog("INFO", 314162, contact="<sip:evil@203.0.113.1>"))
    assert d.remote_target.port == 5080
    # A target refresh without Contact keeps the old target.
    d.receive_request(in_dialog("UPDATE", 314163))
    assert d.remote_target.port == 5080
    assert d.request("BYE", via=VIA).uri_text == "sip:1001@198.51.100.9:5080"


def test_target_refresh_with_two_contacts_is_refused() -> None:
    _, d = uas_dialog()
    with pytest.raises(SipError) as err:
        d.receive_request(in_dialog("INVITE", 314160, contact="<sip:a@192.0.2.1>, <sip:b@192.0.2.2>"))
    assert err.value.status == 400


def test_request_from_another_dialog_or_after_bye_gets_481() -> None:
    _, d = uas_dialog()
    with pytest.raises(SipError) as err:
        d.receive_request(in_dialog("INFO", 314160, from_tag="other"))
    assert err.value.status == 481
    d.receive_request(in_dialog("BYE", 314161))
    assert state(d) is DialogState.TERMINATED
    with pytest.raises(SipError) as err:
        d.receive_request(in_dialog("INFO", 314162))
    assert err.value.status == 481
    with pytest.raises(DialogError):
        d.request("INFO", via=VIA)


def test_dialog_key_from_both_sides() -> None:
    invite, d = uas_dialog()
    assert dialog_key(in_dialog("INFO", 314160), uas=True) == d.key
    bye = d.request("BYE", via=VIA)
    assert dialog_key(bye, uas=False) == d.key
    # A response to our request, as the peer returns it.
    assert dialog_key(make_response(bye, 200), uas=False) == d.key
    # An initial INVITE has no To tag yet: the local tag is empty.
    assert dialog_key(invite, uas=True) == DialogKey(d.call_id, "", "9fxced76sl")


def test_uas_local_cseq_counts_and_target_refresh_carries_contact() -> None:
    _, d = uas_dialog()
    reinvite = d.request(
        "INVITE", via=VIA, body=b"v=0\r\n", content_type="application/sdp", headers=[("Supported", "timer")]
    )
    assert reinvite.cseq.seq == 1
    assert reinvite.header("contact") == "<sip:sentral@10.0.0.1:5060>"
    assert reinvite.header("content-type") == "application/sdp"
    assert reinvite.header("supported") == "timer"
    assert reinvite.body == b"v=0\r\n"
    assert d.invite_seq == 1
    info = d.request("INFO", via=VIA)
    assert info.cseq.seq == 2
    # ACK for the re-INVITE's 2xx reuses the INVITE's number; so does a CANCEL.
    assert d.request("ACK", via=ACK_VIA).cseq == (1, "ACK")
    assert d.request("CANCEL", via=VIA).cseq == (1, "CANCEL")
    assert d.local_seq == 2


def test_ack_or_cancel_without_invite_is_refused() -> None:
    _, d = uas_dialog()
    with pytest.raises(DialogError):
        d.request("ACK", via=VIA)


# -- UAC side ------------------------------------------------------------------------------------


def test_as_uac_reverses_record_route() -> None:
    _, d = uac_dialog(200, rr=("<sip:p1.example;lr>", "<sip:p2.example;lr>, <sip:p3.example;lr>"))
    assert state(d) is DialogState.CONFIRMED
    assert d.local_tag == "leg-b-tag" and d.remote_tag == "callee-1"
    assert d.local_seq == 1 and d.remote_seq is None
    assert [r.uri.host for r in d.route_set] == ["p3.example", "p2.example", "p1.example"]
    bye = d.request("BYE", via=VIA)
    assert bye.header_values("route") == [
        "<sip:p3.example;lr>",
        "<sip:p2.example;lr>",
        "<sip:p1.example;lr>",
    ]
    assert bye.uri_text == "sip:2001@192.0.2.20:5060"
    assert bye.cseq.seq == 2
    assert bye.from_tag == "leg-b-tag" and bye.to_tag == "callee-1"


def test_uac_side_checks_the_callees_requests() -> None:
    _, d = uac_dialog()
    assert d.remote_seq is None  # §12.1.2: empty until the callee sends something
    data = (
        "INFO sip:sentral@10.0.0.1:5060 SIP/2.0\n"
        "Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bKc1\n"
        "From: <sip:2001@clinic.example>;tag=callee-1\n"
        "To: <sip:1001@clinic.example>;tag=leg-b-tag\n"
        "Call-ID: b-leg-77@10.0.0.1\n"
        "CSeq: 8000 INFO\n"
        "Content-Length: 0\n\n"
    )
    d.receive_request(req(data))
    assert d.remote_seq == 8000
    with pytest.raises(SipError) as err:
        d.receive_request(req(data.replace("8000 INFO", "7999 INFO")))
    assert err.value.status == 500
    d.receive_request(req(data.replace("8000 INFO", "8001 BYE").replace("INFO sip", "BYE sip")))
    assert state(d) is DialogState.TERMINATED
    # The callee's own requests numbered from its own space: ours is untouched.
    assert d.local_seq == 1


def test_uac_2xx_without_contact_is_an_error() -> None:
    invite = req(OUT_INVITE)
    with pytest.raises(SipError) as err:
        Dialog.as_uac(invite, callee_response(200, contact=None))
    assert err.value.status == 400


def test_uac_early_dialog_confirms_with_2xx_and_recomputes_route_set() -> None:
    invite = req(OUT_INVITE)
    ringing = callee_response(180, contact=None, rr=("<sip:p1.example;lr>",))
    d = Dialog.as_uac(invite, ringing)
    assert state(d) is DialogState.EARLY
    # A bare 180 leaves the Request-URI as target until the 2xx says otherwise.
    assert str(d.remote_target) == "sip:2001@192.0.2.20:5060"
    ok = callee_response(
        200, contact="<sip:2001@192.0.2.21:5062>", rr=("<sip:p1.example;lr>", "<sip:p0.example;lr>")
    )
    d.receive_response(ok)
    assert state(d) is DialogState.CONFIRMED
    assert str(d.remote_target) == "sip:2001@192.0.2.21:5062"
    assert [r.uri.host for r in d.route_set] == ["p0.example", "p1.example"]
    ack = d.ack_for(ok, ACK_VIA)
    assert ack.method == "ACK"
    assert ack.cseq == (1, "ACK")
    assert ack.header("via") == ACK_VIA
    assert ack.header_values("route") == ["<sip:p0.example;lr>", "<sip:p1.example;lr>"]
    assert not ack.has_header("contact")
    assert d.local_seq == 1  # ACK took no new number


def test_uac_early_dialog_ends_on_final_error_and_2xx_must_carry_contact() -> None:
    invite = req(OUT_INVITE)
    d = Dialog.as_uac(invite, callee_response(183))
    with pytest.raises(SipError):
        d.receive_response(callee_response(200, contact=None))
    d.receive_response(callee_response(486))
    assert state(d) is DialogState.TERMINATED


def test_ack_for_refuses_non_2xx_and_foreign_responses() -> None:
    _, d = uac_dialog()
    with pytest.raises(ValueError):
        d.ack_for(callee_response(486), ACK_VIA)
    with pytest.raises(ValueError):
        d.ack_for(callee_response(200, tag="someone-else"), ACK_VIA)
    with pytest.raises(ValueError):
        d.ack_for(callee_response(200, cseq="2 UPDATE"), ACK_VIA)


def test_reinvite_2xx_refreshes_remote_target_and_ack_uses_its_cseq() -> None:
    _, d = uac_dialog()
    reinvite = d.request("INVITE", via=VIA)
    assert reinvite.cseq == (2, "INVITE")
    ok = callee_response(200, contact="<sip:2001@192.0.2.99:5060>", cseq="2 INVITE")
    d.receive_response(ok)
    assert d.remote_target.host == "192.0.2.99"
    assert d.ack_for(ok, ACK_VIA).cseq == (2, "ACK")


def test_481_or_408_to_in_dialog_request_ends_dialog() -> None:
    for status in (481, 408):
        _, d = uac_dialog()
        d.request("INFO", via=VIA)
        d.receive_response(callee_response(status, cseq="2 INFO"))
        assert state(d) is DialogState.TERMINATED
    _, d = uac_dialog()
    d.request("INFO", via=VIA)
    d.receive_response(callee_response(415, cseq="2 INFO"))
    assert state(d) is DialogState.CONFIRMED


def test_caller_may_bye_an_early_dialog() -> None:
    invite = req(OUT_INVITE)
    d = Dialog.as_uac(invite, callee_response(180))
    bye = d.request("BYE", via=VIA)
    assert bye.cseq == (2, "BYE")
    assert state(d) is DialogState.TERMINATED


def test_strict_router_goes_into_the_request_uri() -> None:
    # Record-Route from the callee side: nearest proxy last, so reversed it comes first.
    _, d = uac_dialog(200, rr=("<sip:p2.example;lr>", "<sip:strict.example;maddr=192.0.2.50>"))
    bye = d.request("BYE", via=VIA)
    assert bye.uri_text == "sip:strict.example;maddr=192.0.2.50"
    assert bye.header_values("route") == ["<sip:p2.example;lr>", "<sip:2001@192.0.2.20:5060>"]
    assert d.next_hop.host == "strict.example"


def test_strict_router_alone_puts_the_target_in_route() -> None:
    _, d = uac_dialog(200, rr=("<sip:strict.example>",))
    bye = d.request("BYE", via=VIA)
    assert bye.uri_text == "sip:strict.example"
    assert bye.header_values("route") == ["<sip:2001@192.0.2.20:5060>"]


def test_remote_target_headers_do_not_reach_the_request_uri() -> None:
    _, d = uac_dialog(200, contact="<sip:2001@192.0.2.20:5060?Subject=hi>")
    assert d.request("INFO", via=VIA).uri_text == "sip:2001@192.0.2.20:5060"


def test_cseq_stops_below_2_to_the_31() -> None:
    invite = req(OUT_INVITE.replace("CSeq: 1 INVITE", f"CSeq: {MAX_CSEQ - 1} INVITE"))
    response = callee_response(200, cseq=f"{MAX_CSEQ - 1} INVITE")
    d = Dialog.as_uac(invite, response)
    last = d.request("INFO", via=VIA)
    assert last.cseq.seq == MAX_CSEQ == 2**31 - 1
    parse_message(last.to_bytes())  # still a legal CSeq on the wire
    with pytest.raises(DialogError):
        d.request("INFO", via=VIA)
    assert d.local_seq == MAX_CSEQ


def test_incoming_cseq_at_the_top_of_the_range() -> None:
    _, d = uas_dialog()
    d.receive_request(in_dialog("INFO", MAX_CSEQ))
    with pytest.raises(SipError) as err:
        d.receive_request(in_dialog("INFO", MAX_CSEQ))
    assert err.value.status == 500


# -- forking -------------------------------------------------------------------------------------


def test_forked_invite_forms_one_early_dialog_per_to_tag() -> None:
    forks = ForkedDialogs(req(OUT_INVITE))
    assert forks.receive(callee_response(100, tag="")) is None
    a = forks.receive(callee_response(180, tag="desk", contact="<sip:2001@192.0.2.20>"))
    b = forks.receive(callee_response(180, tag="softphone", contact="<sip:2001@192.0.2.30>"))
    assert a is not None and b is not None and a is not b
    assert forks.receive(callee_response(183, tag="desk")) is a
    assert {d.remote_tag for d in forks.early} == {"desk", "softphone"}
    ok = callee_response(200, tag="softphone", contact="<sip:2001@192.0.2.30:5099>")
    assert forks.receive(ok) is b
    assert state(b) is DialogState.CONFIRMED
    assert b.remote_target.port == 5099
    assert forks.confirmed == [b]
    assert forks.get("desk") is a and state(a) is DialogState.EARLY
    assert forks.settle() == [a]
    assert state(a) is DialogState.TERMINATED
    assert [d.remote_tag for d in forks.dialogs] == ["desk", "softphone"]
    # The two dialogs have distinct keys and build requests to their own endpoints.
    assert a.key != b.key
    assert b.request("BYE", via=VIA).uri_text == "sip:2001@192.0.2.30:5099"


def test_2xx_from_a_new_fork_forms_a_confirmed_dialog() -> None:
    forks = ForkedDialogs(req(OUT_INVITE))
    forks.receive(callee_response(180, tag="desk"))
    late = forks.receive(callee_response(200, tag="mobile", contact="<sip:2001@192.0.2.40>"))
    assert late is not None and state(late) is DialogState.CONFIRMED
    assert len(forks.dialogs) == 2


def test_final_error_ends_every_early_fork() -> None:
    forks = ForkedDialogs(req(OUT_INVITE))
    forks.receive(callee_response(180, tag="desk"))
    forks.receive(callee_response(180, tag="softphone"))
    assert forks.receive(callee_response(480, tag="desk")) is None
    assert all(state(d) is DialogState.TERMINATED for d in forks.dialogs)


def test_forked_dialogs_refuse_responses_to_other_requests() -> None:
    forks = ForkedDialogs(req(OUT_INVITE))
    with pytest.raises(ValueError):
        forks.receive(callee_response(200, cseq="2 INVITE"))
