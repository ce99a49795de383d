"""What an answered call lets go of, and that letting go changes nothing the phones can see: the
caller's INVITE transaction once its 2xx is acknowledged, the callee leg's INVITE transaction once
answered, and the fork state 64*T1 after the answer (the figure is bench_dialogs.py's)."""

from __future__ import annotations

import gc
from collections.abc import Callable

from sentral.pbx.call import Call, CallState, Leg
from tests.protocol.test_call import SDP_B, World, head_of, parse, parse_ack


def test_a_cancel_after_the_acknowledged_answer_gets_200_and_changes_nothing() -> None:
    w = World()
    w.connect()
    w.cc.on_ack(parse_ack(w), 0.1)
    cancel = parse(head_of(w.a_invite, "CANCEL"))
    cancel_tx = w.server_tx(cancel)
    w.cc.on_cancel(cancel_tx, cancel, w.a_tx, 0.5)
    assert w.port.statuses(cancel_tx) == [200]
    [call] = w.cc.calls.values()
    assert call.state is CallState.ANSWERED and w.port.sent("BYE") == [] and w.port.cancels == []


def test_a_retransmitted_2xx_is_acked_again_until_64_t1_after_the_answer() -> None:
    w = World()
    _, _, ok = w.connect()
    w.cc.on_ack(parse_ack(w), 0.1)
    acks = len(w.port.acks)
    w.cc.on_stray_response(ok, 5.0)  # the callee did not get our ACK: its 2xx comes again
    assert len(w.port.acks) == acks + 1 and w.port.acks[-1][0].to_tag == "btag"
    w.cc.on_timer(w.cc.timings.timeout + 0.1)
    w.cc.on_stray_response(ok, w.cc.timings.timeout + 0.2)  # too late for any retransmission
    assert len(w.port.acks) == acks + 1
    [call] = w.cc.calls.values()
    assert call.state is CallState.ANSWERED


def answered_by_the_first_of_two(w: World) -> Callable[[float], None]:
    """Ring two phones, let the first answer (tag "first"); returns how to make the second answer
    late (tag "late") at a given time."""
    w.invite()
    (b1, tx1), (b2, tx2) = w.port.sent("INVITE")
    w.cc.on_response(tx1, w.answer(b1, 200, tag="first", sdp=SDP_B), 1.0)
    w.cc.on_ack(parse_ack(w), 1.1)
    return lambda now: w.cc.on_response(tx2, w.answer(b2, 200, tag="late", sdp=SDP_B, port=5002), now)


def test_a_late_fork_answer_within_64_t1_is_still_acked_and_byed() -> None:
    w = World(ports=(5001, 5002))
    answer_late = answered_by_the_first_of_two(w)
    answer_late(11.0)  # the other phone's 2xx crosses our CANCEL, ten seconds later
    assert "late" in [a.to_tag for a, _ in w.port.acks]
    assert [bye.to_tag for bye, _ in w.port.sent("BYE")] == ["late"]


def _live_calls() -> list[Call]:
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, Call)]


def test_an_ended_call_lets_go_of_itself_while_its_callee_invite_still_lingers() -> None:
    w = World()
    _, b_tx, ok = w.connect()
    w.cc.on_ack(parse_ack(w), 0.1)
    bye_tx, _ = w.a_request("BYE")
    assert w.port.statuses(bye_tx) == [200] and not w.cc.calls
    # The callee's INVITE transaction waits 64*T1 for retransmitted 2xx responses; the call,
    # its caller leg and its media state need not wait with it.
    assert _live_calls() == []
    # Our ACK was lost: the callee's 2xx comes again, and is ACKed again.
    acks = len(w.port.acks)
    w.cc.on_response(b_tx, ok, 5.0)
    assert len(w.port.acks) == acks + 1 and w.port.acks[-1][0].to_tag == "btag"
    assert [bye.to_tag for bye, _ in w.port.sent("BYE")] == ["btag"]  # no second BYE for it
    w.cc.on_terminated(b_tx)
    w.cc.on_response(b_tx, ok, 40.0)  # the transaction is over: nothing more to do
    assert len(w.port.acks) == acks + 1


def test_a_late_fork_answer_after_the_call_ended_is_acked_and_byed() -> None:
    w = World(ports=(5001, 5002))
    answer_late = answered_by_the_first_of_two(w)
    w.a_request("BYE")
    assert not w.cc.calls
    answer_late(3.0)
    assert "late" in [a.to_tag for a, _ in w.port.acks]
    assert sorted(bye.to_tag for bye, _ in w.port.sent("BYE")) == ["first", "late"]


def test_an_answered_call_lets_go_of_the_callee_invite_transaction_once_it_ends() -> None:
    w = World()
    _, b_tx, _ = w.connect()
    w.cc.on_ack(parse_ack(w), 0.1)
    w.cc.on_terminated(b_tx)  # Timer M: the transaction layer is done with it
    [call] = w.cc.calls.values()
    assert call.state is CallState.ANSWERED
    assert not [r for r in gc.get_referrers(b_tx) if isinstance(r, Leg)]


def _reachable(root: object) -> list[object]:
    """Every object the garbage collector would visit from ``root``, classes left out."""
    seen: dict[int, object] = {}
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or not gc.is_tracked(obj) or isinstance(obj, type):
            continue
        seen[id(obj)] = obj
        stack.extend(gc.get_referents(obj))
    return list(seen.values())


def test_what_an_ended_call_leaves_holds_no_parsed_headers_nor_dialogs() -> None:
    """Thousands of ended calls linger 64*T1 under load; each is visited by every collection."""
    w = World(ports=(5001, 5002))
    answered_by_the_first_of_two(w)
    w.a_request("BYE")
    settlings = list(w.cc._settling.values())
    assert len(settlings) == 2  # one per callee leg, the answered one and the cancelled one
    held = {type(o).__name__ for settling in settlings for o in _reachable(settling)}
    assert held.isdisjoint({"Dialog", "NameAddr", "Uri", "Via", "CSeq", "list", "Leg", "Call"}), held


def test_a_late_fork_answer_that_comes_again_is_acked_again_and_byed_once() -> None:
    w = World(ports=(5001, 5002))
    answer_late = answered_by_the_first_of_two(w)
    w.a_request("BYE")
    answer_late(3.0)
    answer_late(3.5)  # our ACK was lost
    assert [a.to_tag for a, _ in w.port.acks].count("late") == 2
    assert sorted(bye.to_tag for bye, _ in w.port.sent("BYE")) == ["first", "late"]
