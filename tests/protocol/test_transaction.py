"""Transaction layer tests: bytes in, actions out, on a fake clock (RFC 3261 §17, RFC 6026)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentral.pbx.sip.message import Request, Response, make_response, parse_message
from sentral.pbx.sip.transaction import (
    AckReceived,
    Action,
    CancelReceived,
    ClientTransaction,
    RequestReceived,
    ResponseReceived,
    Send,
    ServerTransaction,
    State,
    StrayResponse,
    Timer,
    Timings,
    TransactionLayer,
    TransactionStateError,
    TransactionTerminated,
    TransactionTimeout,
    TransportError,
    build_ack,
    build_cancel,
    new_branch,
    response_destination,
)

PHONE = ("192.0.2.10", 5062)
TRUNK = ("198.51.100.7", 5060)
EPS = 1e-9


# -- message builders ----------------------------------------------------------------------------


def request(
    method: str = "INVITE",
    *,
    branch: str | None = "z9hG4bK74bf9",
    sent_by: str = "192.0.2.10:5062",
    transport: str = "UDP",
    cseq: int = 1,
    cseq_method: str | None = None,
    call_id: str = "3848276298220188511@192.0.2.10",
    to_tag: str | None = None,
    from_tag: str = "9fxced76sl",
    uri: str = "sip:2001@clinic.example",
    via_extra: str = "",
    routes: tuple[str, ...] = (),
) -> Request:
    via_params = f";branch={branch}" if branch else ""
    to = "<sip:2001@clinic.example>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/{transport} {sent_by}{via_params}{via_extra}",
        "Max-Forwards: 70",
        *(f"Route: {r}" for r in routes),
        f"From: Resepsjon <sip:1001@clinic.example>;tag={from_tag}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
        "Contact: <sip:1001@192.0.2.10:5062>",
        "Content-Length: 0",
    ]
    msg = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(msg, Request)
    return msg


def reply(req: Request, status: int, *, to_tag: str | None = "8321234356") -> Response:
    """The bytes a peer would send back, parsed as the layer would see them."""
    data = make_response(req, status, to_tag=to_tag).to_bytes()
    msg = parse_message(data)
    assert isinstance(msg, Response)
    return msg


def outgoing(
    method: str = "INVITE",
    *,
    transport: str = "UDP",
    call_id: str = "a84b4c76e66710@203.0.113.1",
    routes: tuple[str, ...] = (),
    via_extra: str = "",
) -> Request:
    """A request the softswitch sends, with a fresh branch."""
    return request(
        method,
        branch=new_branch(),
        sent_by="203.0.113.1:5060",
        transport=transport,
        call_id=call_id,
        routes=routes,
        via_extra=via_extra,
        cseq_method="ACK" if method == "ACK" else None,
    )


def legacy(
    method: str = "INVITE",
    *,
    branch: str | None = None,
    to_tag: str | None = None,
    from_tag: str = "9fxced76sl",
    call_id: str = "3848276298220188511@192.0.2.20",
    cseq: int = 1,
) -> Request:
    """A request from an RFC 2543 element: no magic cookie in its branch, if it has one."""
    return request(
        method,
        branch=branch,
        sent_by="192.0.2.20",
        to_tag=to_tag,
        from_tag=from_tag,
        call_id=call_id,
        cseq=cseq,
    )


def sends(actions: list[Action]) -> list[Send]:
    return [a for a in actions if isinstance(a, Send)]


def events(actions: list[Action]) -> list[Action]:
    return [a for a in actions if not isinstance(a, Send)]


def sent_message(action: Send) -> Request | Response:
    return parse_message(action.data)


def sent_request(action: Action) -> Request:
    assert isinstance(action, Send)
    msg = parse_message(action.data)
    assert isinstance(msg, Request)
    return msg


def sent_status(action: Action) -> int:
    assert isinstance(action, Send)
    msg = parse_message(action.data)
    assert isinstance(msg, Response)
    return msg.status


def run(layer: TransactionLayer, until: float) -> list[tuple[float, Action]]:
    """Advance the fake clock to ``until``, firing timers exactly at their deadlines."""
    timeline: list[tuple[float, Action]] = []
    while (deadline := layer.next_deadline()) is not None and deadline <= until:
        timeline.extend((deadline, action) for action in layer.on_timer(deadline))
    return timeline


def send_times(timeline: list[tuple[float, Action]]) -> list[float]:
    return [t for t, a in timeline if isinstance(a, Send)]


def new_server(
    layer: TransactionLayer, req: Request, *, reliable: bool = False, now: float = 0.0
) -> ServerTransaction:
    actions = layer.receive(req, PHONE, reliable, now)
    assert len(actions) == 1
    event = actions[0]
    assert isinstance(event, RequestReceived)
    assert event.request is req
    return event.tx


# -- client INVITE -------------------------------------------------------------------------------


def test_client_invite_timer_a_doubles_without_cap_and_timer_b_times_out() -> None:
    layer = TransactionLayer()
    req = outgoing()
    tx, actions = layer.send_request(req, TRUNK, False, 0.0)
    assert tx.state is State.CALLING
    [first] = actions
    assert isinstance(first, Send) and first.destination == TRUNK and first.data == req.to_bytes()
    assert tx.timers == {Timer.A: 0.5, Timer.B: 32.0}

    timeline = run(layer, 40.0)
    assert send_times(timeline) == pytest.approx([0.5, 1.5, 3.5, 7.5, 15.5, 31.5])
    assert all(a.data == req.to_bytes() for _, a in timeline if isinstance(a, Send))
    rest = [(t, a) for t, a in timeline if not isinstance(a, Send)]
    assert [t for t, _ in rest] == pytest.approx([32.0, 32.0])
    timeout, terminated = rest[0][1], rest[1][1]
    assert isinstance(timeout, TransactionTimeout) and timeout.tx is tx and timeout.timer is Timer.B
    assert timeout.response is not None and timeout.response.status == 408
    assert timeout.response.call_id == req.call_id
    assert terminated == TransactionTerminated(tx)
    assert tx.state is State.TERMINATED and len(layer) == 0
    assert layer.next_deadline() is None


def test_client_invite_reliable_never_retransmits() -> None:
    layer = TransactionLayer()
    tx, actions = layer.send_request(outgoing(transport="TCP"), TRUNK, True, 0.0)
    assert len(sends(actions)) == 1 and tx.timers == {Timer.B: 32.0}
    timeline = run(layer, 100.0)
    assert send_times(timeline) == []
    assert [type(a) for _, a in timeline] == [TransactionTimeout, TransactionTerminated]
    assert timeline[0][0] == pytest.approx(32.0)


def test_client_invite_provisional_stops_a_and_b() -> None:
    layer = TransactionLayer()
    req = outgoing()
    tx, _ = layer.send_request(req, TRUNK, False, 0.0)
    run(layer, 0.6)
    trying = reply(req, 100, to_tag=None)
    assert layer.receive(trying, TRUNK, False, 0.7) == [ResponseReceived(tx, trying)]
    assert tx.state is State.PROCEEDING and tx.timers == {}
    ringing = reply(req, 180)
    assert layer.receive(ringing, TRUNK, False, 2.0) == [ResponseReceived(tx, ringing)]
    assert layer.receive(ringing, TRUNK, False, 2.1) == [ResponseReceived(tx, ringing)]
    assert run(layer, 500.0) == []
    assert tx.state is State.PROCEEDING and len(layer) == 1


@pytest.mark.parametrize("state_before", ["calling", "proceeding"])
def test_client_invite_non_2xx_builds_ack_and_absorbs_retransmissions(state_before: str) -> None:
    layer = TransactionLayer()
    req = outgoing(routes=("<sip:proxy1.example;lr>", "<sip:proxy2.example;lr>"))
    tx, _ = layer.send_request(req, TRUNK, False, 0.0)
    if state_before == "proceeding":
        layer.receive(reply(req, 180), TRUNK, False, 0.1)
    busy = reply(req, 486, to_tag="busytag")
    actions = layer.receive(busy, TRUNK, False, 1.0)
    assert events(actions) == [ResponseReceived(tx, busy)]
    [ack_send] = sends(actions)
    assert ack_send.destination == TRUNK
    ack = sent_message(ack_send)
    assert isinstance(ack, Request)
    assert ack.method == "ACK" and ack.uri_text == req.uri_text
    assert ack.branch == req.branch and len(ack.vias) == 1
    assert ack.cseq.seq == req.cseq.seq and ack.cseq.method == "ACK"
    assert ack.to_tag == "busytag" and ack.from_tag == req.from_tag and ack.call_id == req.call_id
    assert ack.header_values("route") == ["<sip:proxy1.example;lr>", "<sip:proxy2.example;lr>"]
    assert ack.body == b""
    assert tx.state is State.COMPLETED and tx.timers == {Timer.D: 33.0}

    again = layer.receive(busy, TRUNK, False, 2.0)
    assert events(again) == [] and [s.data for s in sends(again)] == [ack_send.data]
    assert layer.receive(reply(req, 180), TRUNK, False, 2.5) == []

    timeline = run(layer, 100.0)
    assert timeline == [(33.0, TransactionTerminated(tx))]
    assert isinstance(layer.receive(busy, TRUNK, False, 34.0)[0], StrayResponse)


def test_client_invite_non_2xx_over_reliable_transport_terminates_at_once() -> None:
    layer = TransactionLayer()
    req = outgoing(transport="TCP")
    tx, _ = layer.send_request(req, TRUNK, True, 0.0)
    busy = reply(req, 603)
    actions = layer.receive(busy, TRUNK, True, 1.0)
    assert [type(a) for a in actions] == [ResponseReceived, Send, TransactionTerminated]
    assert tx.state is State.TERMINATED and len(layer) == 0


def test_client_invite_2xx_enters_accepted_and_passes_retransmissions_up() -> None:
    layer = TransactionLayer()
    req = outgoing()
    tx, _ = layer.send_request(req, TRUNK, False, 0.0)
    ok = reply(req, 200, to_tag="a")
    assert layer.receive(ok, TRUNK, False, 2.0) == [ResponseReceived(tx, ok)]
    assert tx.state is State.ACCEPTED and tx.timers == {Timer.M: 34.0}
    # The layer never ACKs a 2xx: the dialog layer does, once per 2xx it is handed.
    assert layer.receive(ok, TRUNK, False, 2.5) == [ResponseReceived(tx, ok)]
    forked = reply(req, 200, to_tag="b")
    assert layer.receive(forked, TRUNK, False, 3.0) == [ResponseReceived(tx, forked)]
    assert layer.receive(reply(req, 180), TRUNK, False, 3.1) == []
    assert layer.receive(reply(req, 500), TRUNK, False, 3.2) == []
    assert run(layer, 33.9) == []
    assert run(layer, 34.0) == [(34.0, TransactionTerminated(tx))]
    stray = layer.receive(ok, TRUNK, False, 35.0)
    assert stray == [StrayResponse(ok, TRUNK, False)]


def test_client_invite_2xx_over_reliable_transport_still_lingers_in_accepted() -> None:
    layer = TransactionLayer()
    req = outgoing(transport="TCP")
    tx, _ = layer.send_request(req, TRUNK, True, 0.0)
    layer.receive(reply(req, 200), TRUNK, True, 1.0)
    assert tx.state is State.ACCEPTED and tx.timers == {Timer.M: 33.0}


# -- client non-INVITE ---------------------------------------------------------------------------


def test_client_non_invite_timer_e_caps_at_t2_and_timer_f_times_out() -> None:
    layer = TransactionLayer()
    req = outgoing("OPTIONS")
    tx, _ = layer.send_request(req, TRUNK, False, 0.0)
    assert tx.state is State.TRYING and tx.timers == {Timer.E: 0.5, Timer.F: 32.0}
    timeline = run(layer, 40.0)
    assert send_times(timeline) == pytest.approx([0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5])
    rest = [a for _, a in timeline if not isinstance(a, Send)]
    assert isinstance(rest[0], TransactionTimeout) and rest[0].timer is Timer.F
    assert rest[0].response is not None and rest[0].response.status == 408
    assert rest[1] == TransactionTerminated(tx)


def test_client_non_invite_proceeding_retransmits_every_t2_until_f() -> None:
    layer = TransactionLayer()
    req = outgoing("REGISTER")
    tx, _ = layer.send_request(req, TRUNK, False, 0.0)
    run(layer, 0.5)
    trying = reply(req, 100, to_tag=None)
    assert layer.receive(trying, TRUNK, False, 0.7) == [ResponseReceived(tx, trying)]
    assert tx.state is State.PROCEEDING
    timeline = run(layer, 40.0)
    assert send_times(timeline) == pytest.approx([1.5, 5.5, 9.5, 13.5, 17.5, 21.5, 25.5, 29.5])
    assert isinstance(timeline[-2][1], TransactionTimeout) and timeline[-2][0] == pytest.approx(32.0)


def test_client_non_invite_final_response_then_timer_k() -> None:
    layer = TransactionLayer()
    req = outgoing("OPTIONS")
    tx, _ = layer.send_request(req, TRUNK, False, 0.0)
    ok = reply(req, 200)
    assert layer.receive(ok, TRUNK, False, 1.0) == [ResponseReceived(tx, ok)]
    assert tx.state is State.COMPLETED and tx.timers == {Timer.K: 6.0}
    assert layer.receive(ok, TRUNK, False, 2.0) == []
    assert run(layer, 10.0) == [(6.0, TransactionTerminated(tx))]


def test_only_client_transactions_without_a_final_response_count_as_awaiting_one() -> None:
    layer = TransactionLayer()
    bye, invite = outgoing("BYE"), outgoing("INVITE", call_id="second@203.0.113.1")
    layer.send_request(bye, TRUNK, False, 0.0)
    layer.send_request(invite, TRUNK, False, 0.0)
    assert layer.clients_awaiting_final == 2
    layer.receive(reply(invite, 180), TRUNK, False, 0.1)
    assert layer.clients_awaiting_final == 2
    layer.receive(reply(bye, 200), TRUNK, False, 0.2)
    layer.receive(reply(invite, 486), TRUNK, False, 0.3)
    # Both linger (Timer K, Timer D) to absorb retransmissions, but have their answers.
    assert layer.client_count == 2 and layer.clients_awaiting_final == 0


def test_a_keepalive_waiting_for_its_answer_is_not_awaited() -> None:
    layer = TransactionLayer()
    layer.send_request(outgoing("OPTIONS"), TRUNK, False, 0.0)
    assert layer.client_count == 1 and layer.clients_awaiting_final == 0


def test_client_non_invite_reliable_final_response_terminates_at_once() -> None:
    layer = TransactionLayer()
    req = outgoing("OPTIONS", transport="TLS")
    tx, _ = layer.send_request(req, TRUNK, True, 0.0)
    assert tx.timers == {Timer.F: 32.0}
    ok = reply(req, 200)
    assert layer.receive(ok, TRUNK, True, 1.0) == [ResponseReceived(tx, ok), TransactionTerminated(tx)]


def test_client_timings_are_configurable() -> None:
    layer = TransactionLayer(Timings(t1=0.1, t2=0.4, t4=1.0))
    tx, _ = layer.send_request(outgoing("OPTIONS"), TRUNK, False, 0.0)
    timeline = run(layer, 10.0)
    assert send_times(timeline)[:5] == pytest.approx([0.1, 0.3, 0.7, 1.1, 1.5])
    assert [t for t, a in timeline if isinstance(a, TransactionTimeout)] == pytest.approx([6.4])
    assert tx.state is State.TERMINATED


def test_send_request_refuses_ack_legacy_branch_and_duplicates() -> None:
    layer = TransactionLayer()
    with pytest.raises(ValueError):
        layer.send_request(outgoing("ACK"), TRUNK, False, 0.0)
    with pytest.raises(ValueError):
        layer.send_request(request(branch="1234"), TRUNK, False, 0.0)
    req = outgoing()
    layer.send_request(req, TRUNK, False, 0.0)
    with pytest.raises(ValueError):
        layer.send_request(req, TRUNK, False, 0.0)


def test_new_branch_is_unique_and_carries_the_cookie() -> None:
    branches = {new_branch() for _ in range(1000)}
    assert len(branches) == 1000 and all(b.startswith("z9hG4bK") for b in branches)


# -- server INVITE -------------------------------------------------------------------------------


def test_server_invite_sends_100_trying_after_200_ms_and_absorbs_retransmissions() -> None:
    layer = TransactionLayer()
    req = request()
    tx = new_server(layer, req)
    assert tx.state is State.PROCEEDING and tx.timers == {Timer.TRYING: 0.2}
    # A retransmission before anything was sent is absorbed silently.
    assert layer.receive(request(), PHONE, False, 0.1) == []
    timeline = run(layer, 0.3)
    [(at, trying_send)] = timeline
    assert at == pytest.approx(0.2)
    assert isinstance(trying_send, Send) and trying_send.destination == ("192.0.2.10", 5062)
    trying = sent_message(trying_send)
    assert isinstance(trying, Response) and trying.status == 100 and trying.to_tag is None
    assert tx.last_response is not None and tx.last_response.status == 100
    # Request retransmissions in Proceeding get the latest provisional response again.
    assert [s.data for s in sends(layer.receive(request(), PHONE, False, 0.5))] == [trying_send.data]
    ringing = make_response(req, 180, to_tag="t1")
    assert [s.data for s in sends(layer.respond(tx, ringing, 1.0))] == [ringing.to_bytes()]
    assert [s.data for s in sends(layer.receive(request(), PHONE, False, 1.5))] == [ringing.to_bytes()]
    assert tx.state is State.PROCEEDING


def test_server_invite_no_100_trying_when_answered_within_200_ms() -> None:
    layer = TransactionLayer()
    req = request()
    tx = new_server(layer, req)
    layer.respond(tx, make_response(req, 180, to_tag="t"), 0.15)
    assert run(layer, 1.0) == []


def test_server_invite_automatic_100_trying_can_be_switched_off() -> None:
    layer = TransactionLayer()
    tx = new_server(layer, request())
    tx.auto_trying = False
    assert run(layer, 1.0) == []
    quiet = TransactionLayer(auto_trying=False)
    tx = new_server(quiet, request())
    assert tx.timers == {} and quiet.next_deadline() is None


def test_server_invite_non_2xx_timer_g_h_and_completed_retransmissions() -> None:
    layer = TransactionLayer()
    req = request()
    tx = new_server(layer, req)
    busy = make_response(req, 486, to_tag="t")
    assert [s.data for s in sends(layer.respond(tx, busy, 0.1))] == [busy.to_bytes()]
    assert tx.state is State.COMPLETED and tx.timers == {Timer.G: 0.6, Timer.H: 32.1}
    assert [s.data for s in sends(layer.receive(request(), PHONE, False, 0.3))] == [busy.to_bytes()]
    timeline = run(layer, 40.0)
    assert send_times(timeline) == pytest.approx([0.6, 1.6, 3.6, 7.6, 11.6, 15.6, 19.6, 23.6, 27.6, 31.6])
    tail = [(t, a) for t, a in timeline if not isinstance(a, Send)]
    assert [t for t, _ in tail] == pytest.approx([32.1, 32.1])
    assert tail[0][1] == TransactionTimeout(tx, Timer.H, None)
    assert tail[1][1] == TransactionTerminated(tx)
    # The transaction is gone: a late retransmission is a new request again.
    assert isinstance(layer.receive(request(), PHONE, False, 33.0)[0], RequestReceived)


def test_server_invite_ack_confirms_then_timer_i() -> None:
    layer = TransactionLayer()
    req = request()
    tx = new_server(layer, req)
    layer.respond(tx, make_response(req, 404, to_tag="t"), 0.0)
    ack = request("ACK", to_tag="t")
    assert layer.receive(ack, PHONE, False, 0.7) == []
    assert tx.state is State.CONFIRMED and tx.timers == {Timer.I: 5.7}
    # Confirmed absorbs both INVITE and ACK retransmissions, and Timer G no longer runs.
    assert layer.receive(request(), PHONE, False, 1.0) == []
    assert layer.receive(ack, PHONE, False, 1.1) == []
    assert run(layer, 10.0) == [(5.7, TransactionTerminated(tx))]


def test_server_invite_reliable_no_timer_g_and_zero_timer_i() -> None:
    layer = TransactionLayer()
    req = request(transport="TCP")
    tx = new_server(layer, req, reliable=True)
    layer.respond(tx, make_response(req, 486, to_tag="t"), 0.0)
    assert tx.timers == {Timer.H: 32.0}
    assert layer.receive(request("ACK", transport="TCP", to_tag="t"), PHONE, True, 0.1) == [
        TransactionTerminated(tx)
    ]
    assert len(layer) == 0


def test_server_invite_reliable_timer_h_without_ack() -> None:
    layer = TransactionLayer()
    req = request(transport="TCP")
    tx = new_server(layer, req, reliable=True)
    layer.respond(tx, make_response(req, 486, to_tag="t"), 0.0)
    timeline = run(layer, 40.0)
    assert timeline == [(32.0, TransactionTimeout(tx, Timer.H, None)), (32.0, TransactionTerminated(tx))]


def test_server_invite_2xx_accepted_absorbs_invites_passes_acks_and_timer_l() -> None:
    layer = TransactionLayer()
    req = request()
    tx = new_server(layer, req)
    ok = make_response(req, 200, to_tag="t")
    layer.respond(tx, ok, 1.0)
    assert tx.state is State.ACCEPTED and tx.timers == {Timer.L: 33.0}
    # RFC 6026 §7.1: INVITE retransmissions are absorbed; the TU retransmits its 2xx itself.
    assert layer.receive(request(), PHONE, False, 1.5) == []
    assert [s.data for s in sends(layer.respond(tx, ok, 1.5))] == [ok.to_bytes()]
    with pytest.raises(TransactionStateError):
        layer.respond(tx, make_response(req, 500, to_tag="t"), 1.6)
    # An ACK reaching the transaction (same branch) goes to the TU, naming the transaction.
    same_branch_ack = request("ACK", to_tag="t")
    assert layer.receive(same_branch_ack, PHONE, False, 2.0) == [
        AckReceived(same_branch_ack, PHONE, False, tx)
    ]
    # The usual ACK for a 2xx is a new transaction's branch: no transaction, straight up.
    ack = request("ACK", to_tag="t", branch="z9hG4bKnewack")
    assert layer.receive(ack, PHONE, False, 2.0) == [AckReceived(ack, PHONE, False, None)]
    assert run(layer, 40.0) == [(33.0, TransactionTerminated(tx))]
    with pytest.raises(TransactionStateError):
        layer.respond(tx, ok, 41.0)


def test_server_invite_second_final_response_is_refused() -> None:
    layer = TransactionLayer()
    req = request()
    tx = new_server(layer, req)
    layer.respond(tx, make_response(req, 487, to_tag="t"), 0.0)
    with pytest.raises(TransactionStateError):
        layer.respond(tx, make_response(req, 200, to_tag="t"), 0.1)


# -- server non-INVITE ---------------------------------------------------------------------------


def test_server_non_invite_states_and_timer_j() -> None:
    layer = TransactionLayer()
    req = request("REGISTER", uri="sip:clinic.example")
    tx = new_server(layer, req)
    assert tx.state is State.TRYING and tx.timers == {}
    retransmission = request("REGISTER", uri="sip:clinic.example")
    assert layer.receive(retransmission, PHONE, False, 0.5) == []
    trying = make_response(req, 100)
    layer.respond(tx, trying, 0.6)
    assert tx.state is State.PROCEEDING
    assert [s.data for s in sends(layer.receive(retransmission, PHONE, False, 1.0))] == [trying.to_bytes()]
    ok = make_response(req, 200, to_tag="t")
    layer.respond(tx, ok, 1.5)
    assert tx.state is State.COMPLETED and tx.timers == {Timer.J: 33.5}
    assert [s.data for s in sends(layer.receive(retransmission, PHONE, False, 2.0))] == [ok.to_bytes()]
    with pytest.raises(TransactionStateError):
        layer.respond(tx, make_response(req, 500), 2.5)
    assert run(layer, 40.0) == [(33.5, TransactionTerminated(tx))]


def test_server_non_invite_final_from_trying_over_reliable_transport_terminates() -> None:
    layer = TransactionLayer()
    req = request("OPTIONS", transport="TCP")
    tx = new_server(layer, req, reliable=True)
    ok = make_response(req, 200, to_tag="t")
    actions = layer.respond(tx, ok, 0.0)
    assert [type(a) for a in actions] == [Send, TransactionTerminated]
    assert actions[0] == Send(ok.to_bytes(), PHONE, True, tx)
    assert tx.state is State.TERMINATED and len(layer) == 0


def test_server_non_invite_gets_no_100_trying() -> None:
    layer = TransactionLayer()
    new_server(layer, request("OPTIONS"))
    assert layer.next_deadline() is None


def test_response_destination_follows_via() -> None:
    source = ("192.0.2.99", 40000)
    via = request(sent_by="phone.clinic.example:5070").top_via
    assert response_destination(via, source, False) == ("192.0.2.99", 5070)
    assert response_destination(via, source, True) == source
    via = request(sent_by="phone.clinic.example", via_extra=";rport").top_via
    assert response_destination(via, source, False) == source
    via = request(sent_by="phone.clinic.example").top_via
    assert response_destination(via, source, False) == ("192.0.2.99", 5060)
    via = request(via_extra=";maddr=239.255.255.1").top_via
    assert response_destination(via, source, False) == ("239.255.255.1", 5062)


def test_requests_differing_in_method_or_sent_by_are_different_transactions() -> None:
    layer = TransactionLayer()
    first = new_server(layer, request())
    second = new_server(layer, request("OPTIONS"))
    third = new_server(layer, request(sent_by="192.0.2.11:5060"))
    assert len({id(first), id(second), id(third)}) == 3
    assert layer.server_count == 3


# -- CANCEL --------------------------------------------------------------------------------------


def test_received_cancel_is_its_own_transaction_and_finds_its_invite() -> None:
    layer = TransactionLayer()
    invite = request()
    invite_tx = new_server(layer, invite)
    cancel = request("CANCEL")
    [event] = layer.receive(cancel, PHONE, False, 1.0)
    assert isinstance(event, CancelReceived)
    assert event.invite_tx is invite_tx and event.tx is not invite_tx and event.request is cancel
    assert layer.find_invite(cancel) is invite_tx
    ok = make_response(cancel, 200, to_tag="t")
    assert sends(layer.respond(event.tx, ok, 1.0))[0].data == ok.to_bytes()
    assert invite_tx.state is State.PROCEEDING
    terminated = make_response(invite, 487, to_tag="t")
    layer.respond(invite_tx, terminated, 1.0)
    assert invite_tx.state is State.COMPLETED
    # A CANCEL retransmission is absorbed by the CANCEL transaction with its 200.
    assert sends(layer.receive(request("CANCEL"), PHONE, False, 1.2))[0].data == ok.to_bytes()


def test_received_cancel_without_invite() -> None:
    layer = TransactionLayer()
    [event] = layer.receive(request("CANCEL"), PHONE, False, 0.0)
    assert isinstance(event, CancelReceived) and event.invite_tx is None


def test_build_cancel_follows_section_9_1() -> None:
    invite = outgoing(routes=("<sip:edge.example;lr>",), via_extra=";rport")
    cancel = parse_message(build_cancel(invite).to_bytes())
    assert isinstance(cancel, Request)
    assert cancel.method == "CANCEL" and cancel.uri_text == invite.uri_text
    assert cancel.vias == [invite.top_via]
    assert cancel.cseq == (invite.cseq.seq, "CANCEL")
    assert cancel.header("to") == invite.header("to") and cancel.header("from") == invite.header("from")
    assert cancel.call_id == invite.call_id
    assert cancel.header_values("route") == ["<sip:edge.example;lr>"]
    assert cancel.header("reason") is None


def test_a_cancel_says_why_in_a_reason_header_when_given_one() -> None:
    layer = TransactionLayer()
    invite_tx, _ = layer.send_request(outgoing(), TRUNK, False, 0.0)
    why = 'SIP;cause=200;text="Call completed elsewhere"'
    cancel_tx, _ = layer.cancel(invite_tx, 0.2, why)
    assert cancel_tx is not None
    cancel = parse_message(cancel_tx.request.to_bytes())
    assert isinstance(cancel, Request) and cancel.header("reason") == why


def test_cancel_is_held_until_a_provisional_response_arrives() -> None:
    layer = TransactionLayer()
    invite = outgoing()
    invite_tx, _ = layer.send_request(invite, TRUNK, False, 0.0)
    cancel_tx, actions = layer.cancel(invite_tx, 0.2)
    assert cancel_tx is not None and actions == [] and invite_tx.cancel_tx is cancel_tx
    assert layer.cancel(invite_tx, 0.3) == (cancel_tx, [])
    # Timer A keeps retransmitting the INVITE; nothing of the CANCEL goes out.
    timeline = run(layer, 1.0)
    assert [sent_request(a).method for _, a in timeline] == ["INVITE"]
    ringing = reply(invite, 180)
    actions = layer.receive(ringing, TRUNK, False, 1.2)
    assert actions[0] == ResponseReceived(invite_tx, ringing)
    [cancel_send] = sends(actions)
    assert cancel_send.destination == TRUNK and cancel_send.tx is cancel_tx
    sent = sent_message(cancel_send)
    assert isinstance(sent, Request) and sent.method == "CANCEL" and sent.branch == invite.branch
    assert cancel_tx.state is State.TRYING and cancel_tx.timers == {Timer.E: 1.7, Timer.F: 33.2}
    # Responses are told apart by CSeq method although they share the branch.
    cancel_ok = reply(cancel_tx.request, 200)
    assert layer.receive(cancel_ok, TRUNK, False, 1.3) == [ResponseReceived(cancel_tx, cancel_ok)]
    terminated = reply(invite, 487)
    actions = layer.receive(terminated, TRUNK, False, 1.4)
    assert events(actions) == [ResponseReceived(invite_tx, terminated)]
    assert sent_request(sends(actions)[0]).method == "ACK"


def test_cancel_in_proceeding_goes_out_at_once() -> None:
    layer = TransactionLayer()
    invite = outgoing()
    invite_tx, _ = layer.send_request(invite, TRUNK, False, 0.0)
    layer.receive(reply(invite, 100, to_tag=None), TRUNK, False, 0.1)
    cancel_tx, actions = layer.cancel(invite_tx, 0.5)
    assert cancel_tx is not None and [a.tx for a in sends(actions)] == [cancel_tx]


def test_cancelled_invite_without_final_response_times_out_64_t1_after_the_cancel() -> None:
    layer = TransactionLayer()
    invite = outgoing(transport="TCP")
    invite_tx, _ = layer.send_request(invite, TRUNK, True, 0.0)
    layer.receive(reply(invite, 180), TRUNK, True, 1.0)
    assert invite_tx.timers == {}
    cancel_tx, _ = layer.cancel(invite_tx, 100.0)
    assert cancel_tx is not None
    layer.receive(reply(cancel_tx.request, 200), TRUNK, True, 100.1)
    assert invite_tx.timers == {Timer.B: 132.0}
    # A late provisional response does not stop the clock the CANCEL started.
    layer.receive(reply(invite, 183), TRUNK, True, 110.0)
    assert invite_tx.timers == {Timer.B: 132.0}
    timeline = run(layer, 200.0)
    timeout = timeline[0][1]
    assert timeline[0][0] == 132.0 and isinstance(timeout, TransactionTimeout)
    assert timeout.tx is invite_tx and timeout.response is not None and timeout.response.status == 408


def test_held_cancel_is_dropped_when_a_final_response_comes_first() -> None:
    layer = TransactionLayer()
    invite = outgoing()
    invite_tx, _ = layer.send_request(invite, TRUNK, False, 0.0)
    cancel_tx, _ = layer.cancel(invite_tx, 0.1)
    assert cancel_tx is not None
    ok = reply(invite, 200)
    assert layer.receive(ok, TRUNK, False, 0.3) == [
        ResponseReceived(invite_tx, ok),
        TransactionTerminated(cancel_tx),
    ]
    assert cancel_tx.state is State.TERMINATED
    assert layer.cancel(invite_tx, 0.4) == (cancel_tx, [])
    other_tx, _ = layer.send_request(outgoing(), TRUNK, False, 1.0)
    layer.receive(reply(other_tx.request, 486), TRUNK, False, 1.1)
    assert layer.cancel(other_tx, 1.2) == (None, [])


def test_held_cancel_is_dropped_when_timer_b_fires() -> None:
    layer = TransactionLayer()
    invite_tx, _ = layer.send_request(outgoing(transport="TCP"), TRUNK, True, 0.0)
    cancel_tx, _ = layer.cancel(invite_tx, 1.0)
    assert cancel_tx is not None
    timeline = run(layer, 40.0)
    assert [a for _, a in timeline if isinstance(a, TransactionTerminated)] == [
        TransactionTerminated(cancel_tx),
        TransactionTerminated(invite_tx),
    ]
    assert len(layer) == 0


# -- RFC 2543 matching ---------------------------------------------------------------------------


def test_rfc2543_request_without_cookie_matches_by_dialog_fields() -> None:
    layer = TransactionLayer()
    req = legacy()
    tx = new_server(layer, req)
    assert tx.legacy
    layer.respond(tx, make_response(req, 180, to_tag="abc"), 0.1)
    assert [sent_status(s) for s in layer.receive(legacy(), PHONE, False, 0.5)] == [180]
    # Another Call-ID, From tag or CSeq is another transaction.
    for other in (legacy(call_id="other@x"), legacy(from_tag="zz"), legacy(cseq=2)):
        assert isinstance(layer.receive(other, PHONE, False, 0.6)[0], RequestReceived)

    layer.respond(tx, make_response(req, 486, to_tag="abc"), 1.0)
    # An ACK with another To tag acknowledges some other response: not this transaction.
    stranger = legacy("ACK", to_tag="nope")
    assert layer.receive(stranger, PHONE, False, 1.1) == [AckReceived(stranger, PHONE, False, None)]
    assert tx.state is State.COMPLETED
    # The ACK carrying the response's To tag matches the INVITE transaction.
    assert layer.receive(legacy("ACK", to_tag="abc"), PHONE, False, 1.2) == []
    assert tx.state.value == "Confirmed"
    run(layer, 10.0)
    assert tx.state.value == "Terminated"
    assert layer.server_count == 3


def test_rfc2543_branch_without_cookie_and_cancel() -> None:
    layer = TransactionLayer()
    invite_tx = new_server(layer, legacy(branch="7a83e1"))
    [event] = layer.receive(legacy("CANCEL", branch="7a83e1"), PHONE, False, 0.5)
    assert isinstance(event, CancelReceived) and event.invite_tx is invite_tx and event.tx.legacy


# -- strays, transport errors --------------------------------------------------------------------


def test_stray_responses_are_passed_up() -> None:
    layer = TransactionLayer()
    ok = reply(outgoing(), 200)
    assert layer.receive(ok, TRUNK, False, 0.0) == [StrayResponse(ok, TRUNK, False)]
    invite = outgoing()
    layer.send_request(invite, TRUNK, False, 0.0)
    # Right branch, wrong CSeq method: still stray.
    wrong = reply(request("INVITE", branch=invite.branch, cseq_method="OPTIONS"), 200)
    assert layer.receive(wrong, TRUNK, False, 0.1) == [StrayResponse(wrong, TRUNK, False)]


def test_transport_error_terminates_and_informs() -> None:
    layer = TransactionLayer()
    tx, _ = layer.send_request(outgoing(), TRUNK, False, 0.0)
    assert layer.transport_error(tx, 0.1) == [TransportError(tx), TransactionTerminated(tx)]
    assert layer.transport_error(tx, 0.2) == []
    stx = new_server(layer, request())
    assert layer.transport_error(stx, 0.3) == [TransportError(stx), TransactionTerminated(stx)]
    assert len(layer) == 0 and run(layer, 100.0) == []


def test_build_ack_uses_only_the_top_via() -> None:
    invite = outgoing(via_extra=", SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKlower")
    assert len(invite.vias) == 2
    ack = parse_message(build_ack(invite, reply(invite, 404)).to_bytes())
    assert isinstance(ack, Request) and ack.vias == [invite.top_via]


# -- many transactions through the heap ----------------------------------------------------------


def test_thousands_of_client_transactions_time_out_on_schedule() -> None:
    layer = TransactionLayer()
    started: dict[int, float] = {}
    txs: list[ClientTransaction] = []
    for i in range(5000):
        now = i * 0.003
        tx, _ = layer.send_request(outgoing("OPTIONS", call_id=f"c{i}"), TRUNK, False, now)
        started[id(tx)] = now
        txs.append(tx)
    # Answer every other one at once: their timers go stale in the heap.
    for tx in txs[::2]:
        layer.receive(reply(tx.request, 200), TRUNK, False, started[id(tx)] + 0.01)
    timeline = run(layer, 100.0)
    timeouts = [(t, a) for t, a in timeline if isinstance(a, TransactionTimeout)]
    assert len(timeouts) == 2500
    for t, a in timeouts:
        assert abs(t - (started[id(a.tx)] + 32.0)) < EPS
    retransmissions = [a for _, a in timeline if isinstance(a, Send)]
    assert len(retransmissions) == 2500 * 10
    terminated = [a.tx for _, a in timeline if isinstance(a, TransactionTerminated)]
    assert len(terminated) == 5000 and len(set(map(id, terminated))) == 5000
    assert len(layer) == 0 and layer.next_deadline() is None


def test_thousands_of_server_transactions_complete_and_expire() -> None:
    layer = TransactionLayer()
    n = 3000
    for i in range(n):
        req = request("OPTIONS", branch=f"z9hG4bK{i}", call_id=f"s{i}")
        tx = new_server(layer, req, now=i * 0.01)
        layer.respond(tx, make_response(req, 200, to_tag="t"), i * 0.01)
    assert layer.server_count == n
    timeline = run(layer, 61.985)
    assert len(timeline) == n - 1 and layer.server_count == 1
    assert [t for t, _ in timeline] == pytest.approx([i * 0.01 + 32.0 for i in range(n - 1)])
    assert len(run(layer, 70.0)) == 1 and layer.server_count == 0 and layer.next_deadline() is None


def test_stale_timer_entries_are_compacted_away() -> None:
    layer = TransactionLayer()
    # Over TCP a final response ends a client non-INVITE transaction at once, leaving its
    # Timer F entry behind on the timer wheel.
    for i in range(3000):
        req = outgoing("OPTIONS", transport="TCP", call_id=f"x{i}")
        layer.send_request(req, TRUNK, True, 0.0)
        layer.receive(reply(req, 200), TRUNK, True, 0.0)
    live, _ = layer.send_request(outgoing("OPTIONS"), TRUNK, False, 0.0)
    assert len(layer) == 1
    assert run(layer, 0.5) == [(0.5, Send(live.request.to_bytes(), TRUNK, False, live))]
    # Only the live transaction's deadlines are left: 1.5 next, not a stale 32.
    assert layer.next_deadline() == 1.5
    # Nine more retransmissions, the Timer F timeout, the end.
    assert len(run(layer, 100.0)) == 11 and len(layer) == 0


@settings(max_examples=200, deadline=None)
@given(
    invite=st.booleans(),
    reliable=st.booleans(),
    steps=st.lists(
        st.tuples(
            st.sampled_from(["100", "180", "200", "486", "cancel", "error", "tick"]),
            st.floats(min_value=0.0, max_value=20.0),
        ),
        max_size=12,
    ),
)
def test_client_transactions_always_end_and_leave_nothing_behind(
    invite: bool, reliable: bool, steps: list[tuple[str, float]]
) -> None:
    layer = TransactionLayer()
    req = outgoing("INVITE" if invite else "OPTIONS", transport="TCP" if reliable else "UDP")
    tx, _ = layer.send_request(req, TRUNK, reliable, 0.0)
    now = 0.0
    seen: list[Action] = []
    for what, delta in steps:
        now += delta
        seen += [a for _, a in run(layer, now)]
        if what == "tick":
            continue
        if what == "error":
            seen += layer.transport_error(tx, now)
        elif what == "cancel":
            if invite:
                _, actions = layer.cancel(tx, now)
                seen += actions
        else:
            seen += layer.receive(reply(req, int(what)), TRUNK, reliable, now)
    if tx.state is State.PROCEEDING and invite:
        # A ringing INVITE has no timeout of its own: the transaction user ends it with a CANCEL.
        seen += [a for _, a in run(layer, now + 1000.0)]
        _, actions = layer.cancel(tx, now + 1000.0)
        seen += actions
        now += 1000.0
    seen += [a for _, a in run(layer, now + 1000.0)]
    assert len(layer) == 0 and layer.next_deadline() is None
    assert tx.state is State.TERMINATED
    ended = [a.tx for a in seen if isinstance(a, TransactionTerminated)]
    assert ended.count(tx) == 1 and len(ended) == len(set(map(id, ended)))
    finals = [a for a in seen if isinstance(a, ResponseReceived) and a.tx is tx and a.response.status >= 200]
    timeouts = [a for a in seen if isinstance(a, TransactionTimeout) and a.tx is tx]
    failures = [a for a in seen if isinstance(a, TransportError) and a.tx is tx]
    # Some way out; a timeout excludes a final response, and a transport error can follow a
    # final response only (sending the ACK failed, say).
    distinct_finals = len({a.response.status for a in finals})
    assert distinct_finals <= 1 and len(timeouts) <= 1 and len(failures) <= 1
    assert distinct_finals + len(timeouts) + len(failures) >= 1
    assert not (timeouts and (finals or failures))


@settings(max_examples=200, deadline=None)
@given(
    method=st.sampled_from(["INVITE", "BYE"]),
    reliable=st.booleans(),
    steps=st.lists(
        st.tuples(
            st.sampled_from(["retransmit", "ack", "100", "180", "200", "486", "error", "tick"]),
            st.floats(min_value=0.0, max_value=20.0),
        ),
        max_size=12,
    ),
)
def test_server_transactions_answer_retransmissions_and_always_end(
    method: str, reliable: bool, steps: list[tuple[str, float]]
) -> None:
    layer = TransactionLayer()
    transport = "TCP" if reliable else "UDP"
    tx = new_server(layer, request(method, transport=transport), reliable=reliable)
    now = 0.0
    for what, delta in steps:
        now += delta
        run(layer, now)
        if what == "tick" or tx.state is State.TERMINATED:
            # Once the transaction is gone a retransmission would start a new one.
            continue
        if what == "error":
            layer.transport_error(tx, now)
        elif what == "retransmit":
            actions = layer.receive(request(method, transport=transport), PHONE, reliable, now)
            if tx.state in (State.PROCEEDING, State.COMPLETED) and tx.last_response is not None:
                assert [s.data for s in sends(actions)] == [tx.last_response.to_bytes()]
            else:
                assert actions == []
        elif what == "ack":
            if method == "INVITE":
                layer.receive(request("ACK", transport=transport, to_tag="t"), PHONE, reliable, now)
        else:
            status = int(what)
            allowed = tx.state in (State.TRYING, State.PROCEEDING) or (
                tx.state is State.ACCEPTED and status == 200
            )
            if allowed:
                layer.respond(tx, make_response(tx.request, status, to_tag="t"), now)
            else:
                with pytest.raises(TransactionStateError):
                    layer.respond(tx, make_response(tx.request, status, to_tag="t"), now)
    if tx.state in (State.TRYING, State.PROCEEDING):
        # Nothing ends a transaction the transaction user never answers: it must answer.
        layer.respond(tx, make_response(tx.request, 500, to_tag="t"), now)
    run(layer, now + 1000.0)
    assert tx.state is State.TERMINATED and len(layer) == 0 and layer.next_deadline() is None
