"""Click-to-call, message by message on a fake clock: the member of staff's phone rings first,
shown the number it will reach; answering it rings the number as a blind transfer would; what is
refused before any phone rings; a phone that does not answer; a number nobody takes; the record."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sentral.pbx.call import ORIGINATED_LABEL, TransferReport
from sentral.pbx.features import click_to_call
from sentral.pbx.features.click import ClickRefused, ClickToCall
from sentral.pbx.presence import PresenceHub
from sentral.web.events import EventSource
from tests.protocol.clinic import DOMAIN, PHONES
from tests.protocol.test_presence import FakePort as PresencePort
from tests.protocol.test_transfer import NO_ANSWER, RECALL, Transfers, outcomes


def clicks(c: Transfers) -> ClickToCall:
    return click_to_call(c.cc)


def test_the_staff_phone_rings_first_then_answering_rings_the_number_and_the_two_talk() -> None:
    c = Transfers()
    call = clicks(c).call(DOMAIN, "1001", "1002", 0.0)
    # 1001's phone rings, shown whom it will reach, with an offer from the relay; nobody else yet.
    [(invite, _)] = c.invites("1001")
    assert '"Bob" <sip:1002@clinic.test>' in str(invite.header("from"))  # whom it will reach
    assert invite.header("referred-by") is None and invite.body
    assert c.invites("1002") == [] and ("offer_locally", "b1", "like:a") in c.media.asked
    assert ("1001", call.id, "trying") in c.lines.seen
    assert all(extension for extension, _, _ in c.lines.seen)  # Sentral's own leg has no line
    [live] = c.cc.live()
    assert (live.caller, live.callee) == ("1001", "1002")
    c.answer("1001", 2.0)
    assert [target.port for _, target in c.port.acks] == [PHONES["1001"]]
    # Answered: the phone hears the ringing tone while 1002 rings, shown 1001 (the directory's Alice).
    assert call.a.extension == "1001" and ("ringback", "b1") in c.media.asked
    assert ("music", "b1", "on") not in c.media.asked
    [(ringing, _)] = c.invites("1002")
    assert '"Alice" <sip:1001@clinic.test>' in str(ringing.header("from"))
    assert ringing.header("referred-by") is None
    assert c.cc.busy == {(DOMAIN, "1001"): 1}
    c.answer("1002", 4.0)
    assert c.media.asked[-2:] == [("music", "b1", "off"), ("join", "b1", "b2")]
    assert c.cc.busy == {(DOMAIN, "1001"): 1, (DOMAIN, "1002"): 1}
    c.from_b("1002", "BYE", 2, 30.0)
    assert len(c.port.sent("BYE", PHONES["1001"])) == 1 and c.cc.busy == {}
    [report] = c.port.reports
    assert (report.caller, report.callee, report.answered) == ("1001", "1002", 2.0)
    assert outcomes(report) == [("b1", "answered"), ("a", "transferred"), ("b2", "answered")]
    assert report.legs[1].target == ORIGINATED_LABEL
    assert report.transfers == (TransferReport(2.0, "1001", "click-to-call", "1002", "answered"),)


def test_the_feed_tells_the_call_started_answered_when_the_staff_phone_answers_and_handed_on() -> None:
    c = Transfers()
    directory = c.cc.directory
    feed = EventSource(c.cc, PresenceHub(PresencePort(), directory, lambda aor: False), directory, wall_offset=0.0)
    feed.attach()
    clicks(c).call(DOMAIN, "1001", "1002", 0.0)
    c.answer("1001", 2.0)
    c.answer("1002", 4.0)
    events = feed.since(feed.floor) or []
    assert [(e.body["type"], e.body["caller"], e.body["callee"]) for e in events] == [
        ("call.started", "1001", "1002"),
        ("call.transferred", "1001", "1002"),
        ("call.answered", "1001", "1002"),
    ]
    assert events[1].body["kind"] == "click-to-call" and events[2].body["answered"] == 2.0


def test_only_one_of_the_staff_members_phones_takes_the_call() -> None:
    c = Transfers()
    [desk] = c.bindings[(DOMAIN, "1001")]
    soft = replace(desk, key="k4002", contact="sip:1001@127.0.0.1:4002", source_port=4002)
    c.bindings[(DOMAIN, "1001")] = [desk, soft]
    call = clicks(c).call(DOMAIN, "1001", "1003", 0.0)
    assert len(call.b_legs) == 2 and len(c.port.sent("INVITE", 4002)) == 1
    c.answer("1001", 1.0)
    assert len(c.port.cancels) == 1 and call.b_legs[1].state.value == "cancelled"
    assert len(c.invites("1003")) == 1


def test_a_staff_phone_that_does_not_answer_ends_the_call_and_nobody_else_rings() -> None:
    c = Transfers()
    call = clicks(c).call(DOMAIN, "1001", "1002", 0.0)
    c.tick(NO_ANSWER - 0.1)
    assert c.port.cancels == []
    c.tick(NO_ANSWER)
    assert len(c.port.cancels) == 1 and call.state.value == "ended"
    assert c.invites("1002") == [] and c.cc.calls == {} and c.cc.busy == {}
    [report] = c.port.reports
    assert report.answered is None and report.status == 480 and report.transfers == ()


def test_a_staff_phone_rejecting_ends_the_call() -> None:
    c = Transfers()
    call = clicks(c).call(DOMAIN, "1001", "1002", 0.0)
    c.answer("1001", 1.0, status=603)
    assert call.state.value == "ended" and c.invites("1002") == []
    [report] = c.port.reports
    assert report.status == 603


def test_a_number_nobody_takes_ends_with_the_prompt_and_no_recall() -> None:
    c = Transfers()
    call = clicks(c).call(DOMAIN, "1001", "1002", 0.0)
    c.answer("1001", 1.0)
    c.answer("1002", 2.0, status=486)
    # There is no transferring phone to ring back: 1001 hears that the number is unavailable.
    assert len(c.invites("1001")) == 1 and c.media.asked[-1] == ("play", "b1", "number_unavailable")
    c.tick(2.0 + 3.0)
    assert call.state.value == "ended" and len(c.port.sent("BYE", PHONES["1001"])) == 1
    [report] = c.port.reports
    assert [t.outcome for t in report.transfers] == ["failed"]


def test_a_number_that_rings_out_its_time_is_given_up_after_the_recall_time() -> None:
    c = Transfers()
    call = clicks(c).call(DOMAIN, "1001", "1002", 0.0)
    c.answer("1001", 1.0)
    c.tick(1.0 + RECALL)
    assert len(c.port.cancels) == 1 and c.media.asked[-1] == ("play", "b1", "number_unavailable")
    assert len(c.invites("1001")) == 1 and call.state.value == "answered"


@pytest.mark.parametrize(
    ("extension", "number", "status", "words"),
    [
        ("1009", "1002", 404, "no extension 1009"),
        ("1001", "1001", 400, "own number"),
        ("1001", "9999", 404, "cannot call 9999"),
        ("1001", "*45", 400, "feature code"),
        ("1001", " ", 400, "give the number"),
    ],
)
def test_what_cannot_be_placed_is_refused_before_any_phone_rings(
    extension: str, number: str, status: int, words: str
) -> None:
    c = Transfers()
    with pytest.raises(ClickRefused) as refused:
        clicks(c).call(DOMAIN, extension, number, 0.0)
    assert refused.value.status == status and words in refused.value.sentence
    assert c.port.sent("INVITE", PHONES["1001"]) == [] and c.cc.calls == {}


def test_a_staff_member_with_no_phone_registered_is_told_so() -> None:
    c = Transfers()
    c.bindings[(DOMAIN, "1001")] = []
    with pytest.raises(ClickRefused) as refused:
        clicks(c).call(DOMAIN, "1001", "1002", 0.0)
    assert refused.value.status == 480 and "no phone registered" in refused.value.sentence
    assert c.cc.calls == {}
