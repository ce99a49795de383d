"""RFC 6665 notifier mechanics and the two document formats, fed real SUBSCRIBE bytes.

Header grammars (Event, Subscription-State), the expiry a notifier grants, Accept, the dialog a
SUBSCRIBE forms, one subscription's life (NOTIFYs one at a time, refresh, unsubscribe, expiry,
failure), and the dialog-info (RFC 4235) and PIDF (RFC 3863) documents read back with an XML
parser.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sentral.pbx.sip.dialog_info import (
    DialogDirection,
    DialogEntry,
    DialogInfoState,
    dialog_info,
)
from sentral.pbx.sip.errors import SipError
from sentral.pbx.sip.event import (
    EventHeader,
    ExpiresPolicy,
    NotifyOutcome,
    Reason,
    Subscription,
    SubscriptionStateHeader,
    SubState,
    accepts,
    event_of,
    granted_expires,
    notifier_dialog,
)
from sentral.pbx.sip.message import Request, parse_message
from sentral.pbx.sip.pidf import Basic, PresenceTuple, pidf

DI = "{urn:ietf:params:xml:ns:dialog-info}"
PIDF = "{urn:ietf:params:xml:ns:pidf}"
VIA = "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKnotify1;rport"


def subscribe(
    *,
    event: str | None = "dialog",
    expires: int | None = 3600,
    accept: str | None = None,
    cseq: int = 1,
    to_tag: str | None = None,
    contact: str | None = "<sip:1001@192.0.2.10:40000>",
    extra: str = "",
) -> Request:
    lines = [
        "SUBSCRIBE sip:1002@clinic.test SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.10:40000;branch=z9hG4bK-sub-{cseq};rport",
        "Max-Forwards: 70",
        "From: <sip:1001@clinic.test>;tag=watcher",
        "To: <sip:1002@clinic.test>" + (f";tag={to_tag}" if to_tag else ""),
        "Call-ID: blf-1@phone",
        f"CSeq: {cseq} SUBSCRIBE",
        "Record-Route: <sip:edge.clinic.test;lr>",
    ]
    if contact:
        lines.append(f"Contact: {contact}")
    if event is not None:
        lines.append(f"Event: {event}")
    if expires is not None:
        lines.append(f"Expires: {expires}")
    if accept is not None:
        lines.append(f"Accept: {accept}")
    if extra:
        lines.append(extra)
    message = parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(message, Request)
    message.validate()
    return message


# -- header grammars ---------------------------------------------------------------------------


def test_event_header_keeps_package_and_id_and_matches_on_them_only() -> None:
    event = EventHeader.parse("dialog ;id=42;call-id=abc")
    assert (event.package, event.id) == ("dialog", "42")
    assert event.matches(EventHeader.parse("dialog;id=42"))
    assert not event.matches(EventHeader.parse("dialog"))
    assert not EventHeader.parse("Dialog;id=42").matches(event)  # byte by byte (RFC 6665 §8.2.1)
    assert str(EventHeader.parse("presence")) == "presence"
    assert str(event) == "dialog;id=42;call-id=abc"


@pytest.mark.parametrize("text", ["", ";id=1", "dia log", "dialog;=x", "<dialog>"])
def test_a_broken_event_header_is_a_400(text: str) -> None:
    with pytest.raises(SipError) as caught:
        EventHeader.parse(text)
    assert caught.value.status == 400


def test_a_subscribe_needs_exactly_one_event_header() -> None:
    assert event_of(subscribe(event="o-is-the-compact-form")).package == "o-is-the-compact-form"
    for request in (
        subscribe(event=None),
        subscribe(extra="Event: presence"),
        subscribe(event="dialog, presence"),
    ):
        with pytest.raises(SipError) as caught:
            event_of(request)
        assert caught.value.status == 400


@given(st.text(max_size=40))
def test_event_header_parsing_raises_nothing_but_sip_errors(text: str) -> None:
    try:
        event = EventHeader.parse(text)
    except SipError as exc:
        assert exc.status == 400
    else:
        assert EventHeader.parse(str(event)) == event


def test_subscription_state_round_trips_and_ignores_unknown_reasons() -> None:
    active = SubscriptionStateHeader.parse("active;expires=600")
    assert active == SubscriptionStateHeader(SubState.ACTIVE, expires=600)
    assert str(active) == "active;expires=600"
    ended = SubscriptionStateHeader.parse("Terminated ; reason=noresource")
    assert (ended.state, ended.reason) == (SubState.TERMINATED, Reason.NORESOURCE)
    assert (
        str(SubscriptionStateHeader(SubState.TERMINATED, reason=Reason.TIMEOUT))
        == "terminated;reason=timeout"
    )
    assert SubscriptionStateHeader.parse("terminated;reason=bored").reason is None
    assert SubscriptionStateHeader.parse("terminated;reason=probation;retry-after=30").retry_after == 30
    for bad in ("sleeping", "active;expires=soon"):
        with pytest.raises(SipError):
            SubscriptionStateHeader.parse(bad)


# -- what a notifier grants --------------------------------------------------------------------


def test_expires_is_capped_defaulted_and_refused_below_the_minimum() -> None:
    policy = ExpiresPolicy(minimum=60, maximum=3600, default=1800)
    assert granted_expires(subscribe(expires=600), policy) == 600
    assert granted_expires(subscribe(expires=86400), policy) == 3600
    assert granted_expires(subscribe(expires=None), policy) == 1800
    assert granted_expires(subscribe(expires=0), policy) == 0
    assert granted_expires(subscribe(expires=60), policy) == 60
    with pytest.raises(SipError) as caught:
        granted_expires(subscribe(expires=59), policy)
    assert caught.value.status == 423
    assert caught.value.headers == (("Min-Expires", "60"),)


@pytest.mark.parametrize(
    ("accept", "admitted"),
    [
        (None, True),
        ("application/dialog-info+xml", True),
        ("application/sdp, application/dialog-info+xml;q=0.5", True),
        ("application/*", True),
        ("*/*", True),
        ("application/sdp", False),
        ("application/dialog-info+xml;q=0", False),
        ("text/*", False),
    ],
)
def test_accept_admits_the_body_type_or_not(accept: str | None, admitted: bool) -> None:
    assert accepts(subscribe(accept=accept), "application/dialog-info+xml") is admitted


def test_the_subscribe_forms_the_notifiers_dialog() -> None:
    dialog = notifier_dialog(subscribe(), "ours", "<sip:sentral@127.0.0.1:5060>")
    assert dialog.key == ("blf-1@phone", "ours", "watcher")
    assert str(dialog.remote_target) == "sip:1001@192.0.2.10:40000"
    assert [str(r.uri) for r in dialog.route_set] == ["sip:edge.clinic.test;lr"]
    notify = dialog.request("NOTIFY", via=VIA)
    assert notify.cseq.seq == 1
    assert str(notify.uri) == "sip:1001@192.0.2.10:40000"
    assert notify.header("route") == "<sip:edge.clinic.test;lr>"
    assert notify.from_.tag == "ours" and str(notify.from_.uri) == "sip:1002@clinic.test"
    assert notify.to.tag == "watcher"
    with pytest.raises(SipError) as caught:
        notifier_dialog(subscribe(contact=None), "ours", "<sip:sentral@127.0.0.1:5060>")
    assert caught.value.status == 400


# -- one subscription's life -------------------------------------------------------------------


def accepted(expires: int = 3600, now: float = 0.0) -> Subscription:
    return Subscription.accept(
        subscribe(expires=expires), "ours", "<sip:sentral@127.0.0.1:5060>", expires, now
    )


def test_notifies_one_at_a_time_and_a_change_in_flight_is_sent_after_the_answer() -> None:
    sub = accepted()
    first = sub.notify(b"<a/>", "application/dialog-info+xml", VIA, 0.0)
    assert first.header("event") == "dialog"
    assert first.header("subscription-state") == "active;expires=3600"
    assert first.content_type == "application/dialog-info+xml" and first.body == b"<a/>"
    assert sub.changed() is False  # one in flight: the change waits
    assert sub.changed() is False
    assert sub.answered(100) is None  # a provisional answer leaves it in flight
    assert sub.answered(200) is NotifyOutcome.AGAIN  # the two changes: one NOTIFY
    second = sub.notify(b"<b/>", "application/dialog-info+xml", VIA, 10.4)
    assert second.cseq.seq == first.cseq.seq + 1
    assert second.header("subscription-state") == "active;expires=3590"  # rounded up
    assert sub.answered(200) is NotifyOutcome.IDLE
    assert sub.changed() is True
    assert sub.sent == 2


@pytest.mark.parametrize("now", [1000.2597, 1000.2968, 4521.0731, 0.0])
def test_a_fresh_subscription_states_the_seconds_granted_whatever_the_clock(now: float) -> None:
    # (now + 600) - now is 600.0000000000001 at the first two clock values.
    sub = accepted(expires=600, now=now)
    assert sub.remaining(now) == 600
    assert sub.remaining(now + 0.5) == 600  # part of a second left counts as a second
    notify = sub.notify(b"<a/>", "application/dialog-info+xml", VIA, now)
    assert notify.header("subscription-state") == "active;expires=600"


def test_refresh_moves_expiry_and_unsubscribe_owes_a_final_notify() -> None:
    sub = accepted()
    sub.refresh(subscribe(to_tag="ours", cseq=2, expires=600), 600, 100.0)
    assert sub.expires_at == 700.0
    assert not sub.expire(699.0)
    with pytest.raises(SipError) as caught:  # an old CSeq
        sub.refresh(subscribe(to_tag="ours", cseq=2, expires=600), 600, 120.0)
    assert caught.value.status == 500
    sub.refresh(subscribe(to_tag="ours", cseq=3, expires=0), 0, 200.0)
    assert sub.state is SubState.TERMINATED and sub.owed
    final = sub.notify(b"", "application/dialog-info+xml", VIA, 200.0)
    assert final.header("subscription-state") == "terminated;reason=timeout"
    assert sub.answered(200) is NotifyOutcome.ENDED
    with pytest.raises(SipError) as caught:
        sub.refresh(subscribe(to_tag="ours", cseq=4), 3600, 300.0)
    assert caught.value.status == 481


def test_expiry_terminates_and_a_termination_in_flight_goes_out_after_the_answer() -> None:
    sub = accepted(expires=60, now=0.0)
    sub.notify(b"", "t/x", VIA, 0.0)
    assert sub.expire(60.0)
    assert sub.answered(200) is NotifyOutcome.AGAIN
    final = sub.notify(b"", "t/x", VIA, 61.0)
    assert final.header("subscription-state") == "terminated;reason=timeout"
    assert sub.answered(200) is NotifyOutcome.ENDED


@pytest.mark.parametrize("status", [481, 489, 408, 500, 603])
def test_an_error_answer_to_a_notify_ends_the_subscription(status: int) -> None:
    sub = accepted()
    sub.notify(b"", "t/x", VIA, 0.0)
    assert sub.answered(status) is NotifyOutcome.ENDED
    assert not sub.active and not sub.owed
    with pytest.raises(SipError):
        sub.notify(b"", "t/x", VIA, 1.0)


def test_a_notify_never_answered_ends_the_subscription() -> None:
    sub = accepted()
    sub.notify(b"", "t/x", VIA, 0.0)
    assert sub.timed_out() is NotifyOutcome.ENDED
    assert not sub.active


def test_expires_zero_on_a_new_subscribe_is_a_fetch() -> None:
    sub = accepted(expires=0)
    assert not sub.active and sub.owed
    notify = sub.notify(b"<x/>", "t/x", VIA, 0.0)
    assert notify.header("subscription-state") == "terminated;reason=timeout"
    assert notify.body == b"<x/>"


# -- documents ---------------------------------------------------------------------------------


def test_dialog_info_document_has_the_rfc_4235_structure() -> None:
    body = dialog_info(
        "sip:1002@clinic.test",
        7,
        [
            DialogEntry("c1", DialogInfoState.EARLY, DialogDirection.RECIPIENT),
            DialogEntry('a"<&>', DialogInfoState.CONFIRMED, DialogDirection.INITIATOR),
        ],
    )
    root = ET.fromstring(body)
    assert root.tag == f"{DI}dialog-info"
    assert root.attrib == {"version": "7", "state": "full", "entity": "sip:1002@clinic.test"}
    dialogs = root.findall(f"{DI}dialog")
    assert [d.attrib for d in dialogs] == [
        {"id": "c1", "direction": "recipient"},
        {"id": 'a"<&>', "direction": "initiator"},
    ]
    assert [d.findtext(f"{DI}state") for d in dialogs] == ["early", "confirmed"]


def test_an_idle_entity_has_an_empty_dialog_info() -> None:
    root = ET.fromstring(dialog_info("sip:1002@clinic.test", 0, []))
    assert root.tag == f"{DI}dialog-info" and list(root) == []
    with pytest.raises(ValueError):
        dialog_info("sip:1002@clinic.test", -1, [])


def test_pidf_document_has_the_rfc_3863_structure() -> None:
    body = pidf(
        "sip:1002@clinic.test",
        [PresenceTuple("line", Basic.OPEN, "sip:1002@clinic.test", "On the phone & busy")],
    )
    root = ET.fromstring(body)
    assert root.tag == f"{PIDF}presence" and root.get("entity") == "sip:1002@clinic.test"
    [item] = root.findall(f"{PIDF}tuple")
    assert item.get("id") == "line"
    assert [child.tag for child in item] == [f"{PIDF}status", f"{PIDF}contact", f"{PIDF}note"]
    assert item.findtext(f"{PIDF}status/{PIDF}basic") == "open"
    assert item.findtext(f"{PIDF}note") == "On the phone & busy"
    with pytest.raises(ValueError):
        pidf("sip:1002@clinic.test", [PresenceTuple("1", Basic.CLOSED)])
