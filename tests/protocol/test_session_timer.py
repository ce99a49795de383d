"""Session timer tests (RFC 4028): negotiation from real INVITEs and responses, then the timer
itself on a fake clock."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sentral.pbx.sip.errors import SipError
from sentral.pbx.sip.message import Request, Response, make_response, parse_message
from sentral.pbx.sip.session_timer import (
    Expire,
    IntervalTooSmall,
    Negotiated,
    Refresh,
    Refresher,
    SessionExpires,
    SessionTimer,
    TimerRequest,
    TimerState,
    expiry_margin,
    min_se,
    negotiate_uas,
    refresh_method,
    session_expires,
    supports_timer,
)


def invite(*extra: str) -> Request:
    lines = [
        "INVITE sip:2001@clinic.example SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK74bf9",
        "Max-Forwards: 70",
        "From: <sip:1001@clinic.example>;tag=9fxced76sl",
        "To: <sip:2001@clinic.example>",
        "Call-ID: st-1@192.0.2.10",
        "CSeq: 1 INVITE",
        "Contact: <sip:1001@192.0.2.10:5062>",
        *extra,
        "Content-Length: 0",
        "",
        "",
    ]
    msg = parse_message("\r\n".join(lines).encode())
    assert isinstance(msg, Request)
    return msg


def reply(status: int, *headers: tuple[str, str]) -> Response:
    wire = parse_message(make_response(invite(), status, to_tag="t", headers=headers).to_bytes())
    assert isinstance(wire, Response)
    return wire


# -- header parsing ------------------------------------------------------------------------------


def test_parse_session_expires_and_min_se() -> None:
    assert session_expires(invite("Session-Expires: 1800;refresher=uac")) == SessionExpires(
        1800, Refresher.UAC
    )
    assert session_expires(invite("x: 600 ; refresher=UAS")) == SessionExpires(600, Refresher.UAS)
    assert session_expires(invite("Session-Expires: 4000")) == SessionExpires(4000, None)
    assert session_expires(invite("Session-Expires: 1800;foo=bar")) == SessionExpires(1800, None)
    assert session_expires(invite()) is None
    assert min_se(invite("Min-SE: 120")) == 120
    assert min_se(invite("Min-SE: 120;x=1")) == 120
    assert min_se(invite()) is None
    assert str(SessionExpires(1800, Refresher.UAS)) == "1800;refresher=uas"
    assert str(SessionExpires(90)) == "90"


@pytest.mark.parametrize(
    "header",
    [
        "Session-Expires: soon",
        "Session-Expires: 0",
        "Session-Expires: -5",
        "Session-Expires: 1800;refresher=both",
        "Session-Expires: 99999999999",
        "Min-SE: ninety",
        "Session-Expires: \u00b2",
    ],
)
def test_bad_timer_headers_get_400(header: str) -> None:
    msg = invite(header)
    with pytest.raises(SipError) as err:
        session_expires(msg)
        min_se(msg)
    assert err.value.status == 400


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"), max_size=40))
def test_timer_headers_never_raise_anything_but_sip_error(text: str) -> None:
    msg = Request.build("INVITE", "sip:a@b", [("Session-Expires", text), ("Min-SE", text)])
    try:
        session_expires(msg)
        min_se(msg)
        negotiate_uas(msg)
    except SipError as err:
        assert err.status == 400


def test_two_session_expires_headers_get_400() -> None:
    with pytest.raises(SipError):
        session_expires(invite("Session-Expires: 1800", "Session-Expires: 900"))


def test_supports_timer() -> None:
    assert supports_timer(invite("Supported: replaces, Timer"))
    assert supports_timer(invite("Require: timer"))
    assert not supports_timer(invite("Supported: 100rel"))


# -- UAS negotiation -----------------------------------------------------------------------------


def test_uas_rejects_too_small_interval_with_422_and_min_se() -> None:
    decision = negotiate_uas(invite("Supported: timer", "Session-Expires: 60"), min_se=90)
    assert decision == IntervalTooSmall(90)
    assert isinstance(decision, IntervalTooSmall)
    err = decision.error()
    assert err.status == 422 and err.headers == (("Min-SE", "90"),)
    # Our minimum may be above the RFC's floor.
    assert negotiate_uas(invite("Session-Expires: 300"), min_se=600) == IntervalTooSmall(600)
    # ... but never below it.
    assert negotiate_uas(invite("Session-Expires: 60"), min_se=30) == IntervalTooSmall(90)


def test_uas_accepts_and_keeps_the_uac_refresher() -> None:
    decision = negotiate_uas(
        invite("Supported: timer", "Session-Expires: 1800;refresher=uac", "Min-SE: 90"), min_se=90
    )
    assert decision == Negotiated(1800, Refresher.UAC, require_timer=True)
    assert isinstance(decision, Negotiated)
    assert decision.headers() == [("Session-Expires", "1800;refresher=uac"), ("Require", "timer")]
    assert not decision.we_refresh(uas=True)


def test_uas_shortens_but_never_lengthens_or_goes_below_min_se() -> None:
    asked = invite("Supported: timer", "Session-Expires: 7200", "Min-SE: 1200")
    assert negotiate_uas(asked, default_interval=600) == Negotiated(1200, Refresher.UAS, True)
    assert negotiate_uas(asked, default_interval=3600) == Negotiated(3600, Refresher.UAS, True)
    short = invite("Supported: timer", "Session-Expires: 300")
    assert negotiate_uas(short, default_interval=1800) == Negotiated(300, Refresher.UAS, True)


def test_uas_refresher_choice() -> None:
    with_support = invite("Supported: timer", "Session-Expires: 1800")
    assert negotiate_uas(with_support, prefer=Refresher.UAC) == Negotiated(1800, Refresher.UAC, True)
    assert negotiate_uas(with_support) == Negotiated(1800, Refresher.UAS, True)
    # Without Supported: timer the UAC cannot refresh: we do, and Require: timer is not sent.
    no_support = invite("Session-Expires: 1800;refresher=uac")
    decision = negotiate_uas(no_support, prefer=Refresher.UAC)
    assert decision == Negotiated(1800, Refresher.UAS, require_timer=False)
    assert isinstance(decision, Negotiated)
    assert decision.headers() == [("Session-Expires", "1800;refresher=uas")]
    assert decision.we_refresh(uas=True)


def test_uas_asks_for_a_timer_the_uac_did_not_request() -> None:
    assert negotiate_uas(invite("Supported: timer")) == Negotiated(1800, Refresher.UAS, True)
    assert negotiate_uas(invite(), default_interval=900) == Negotiated(900, Refresher.UAS, False)
    assert negotiate_uas(invite("Min-SE: 2000"), default_interval=900) == Negotiated(
        2000, Refresher.UAS, False
    )
    assert negotiate_uas(invite(), default_interval=None) is None
    # A UAC asking for a timer gets one even if we would not have asked.
    assert negotiate_uas(invite("Session-Expires: 1000"), default_interval=None) == Negotiated(
        1000, Refresher.UAS, False
    )


def test_uas_negotiation_refuses_a_bad_header() -> None:
    with pytest.raises(SipError) as err:
        negotiate_uas(invite("Session-Expires: whenever"))
    assert err.value.status == 400


# -- UAC negotiation -----------------------------------------------------------------------------


def test_uac_request_headers_go_into_a_valid_invite() -> None:
    req = TimerRequest(interval=1800, min_se=90)
    assert req.headers() == [("Session-Expires", "1800"), ("Min-SE", "90"), ("Supported", "timer")]
    msg = invite(*(f"{n}: {v}" for n, v in req.headers()))
    assert session_expires(msg) == SessionExpires(1800)
    assert supports_timer(msg)
    assert TimerRequest(600, refresher=Refresher.UAC).headers()[0] == ("Session-Expires", "600;refresher=uac")


def test_uac_retries_after_422_with_the_larger_interval() -> None:
    first = TimerRequest(interval=300, min_se=90)
    retry = first.after_422(reply(422, ("Min-SE", "1200")))
    assert retry == TimerRequest(interval=1200, min_se=1200, attempts=1)
    assert retry is not None
    assert ("Session-Expires", "1200") in retry.headers()
    assert ("Min-SE", "1200") in retry.headers()


def test_422_loops_are_bounded() -> None:
    # A 422 whose minimum we already meet would loop for ever: give up.
    assert TimerRequest(interval=1800).after_422(reply(422, ("Min-SE", "900"))) is None
    assert TimerRequest(interval=1800).after_422(reply(422, ("Min-SE", "1800"))) is None
    # No Min-SE: nothing to retry with.
    assert TimerRequest(interval=300).after_422(reply(422)) is None
    # An absurd minimum.
    assert TimerRequest(interval=300).after_422(reply(422, ("Min-SE", "86400"))) is None
    # A peer that keeps raising the bar is followed a few times, then dropped.
    req: TimerRequest | None = TimerRequest(interval=100)
    tries = 0
    bar = 100
    while req is not None:
        bar += 100
        req = req.after_422(reply(422, ("Min-SE", str(bar))))
        tries += 1
        assert tries < 10
    assert tries == 4  # three retries, the fourth 422 ends it
    with pytest.raises(ValueError):
        TimerRequest().after_422(reply(200))


def test_uac_reads_the_2xx() -> None:
    req = TimerRequest(interval=1800)
    ours = req.on_2xx(reply(200, ("Session-Expires", "1800;refresher=uac"), ("Require", "timer")))
    assert ours == Negotiated(1800, Refresher.UAC)
    assert ours is not None and ours.we_refresh(uas=False)
    theirs = req.on_2xx(reply(200, ("Session-Expires", "900;refresher=uas")))
    assert theirs == Negotiated(900, Refresher.UAS)
    assert theirs is not None and not theirs.we_refresh(uas=False)
    # A UAS without timer support: we refresh alone with our interval, or not at all.
    assert req.on_2xx(reply(200)) == Negotiated(1800, Refresher.UAC)
    assert req.on_2xx(reply(200), insist=False) is None
    # A refresher left unnamed falls to us, so that somebody refreshes.
    assert req.on_2xx(reply(200, ("Session-Expires", "1800"))) == Negotiated(1800, Refresher.UAC)
    with pytest.raises(ValueError):
        req.on_2xx(reply(486))


# -- the timer -----------------------------------------------------------------------------------


def test_refresher_refreshes_at_half_the_interval() -> None:
    timer = SessionTimer(1800, we_refresh=True, now=1000.0, method="UPDATE")
    assert timer.deadline() == 1900.0
    assert timer.due(1899.9) is None
    assert timer.due(1900.0) == Refresh("UPDATE")
    assert timer.state is TimerState.REFRESHING
    assert timer.due(1901.0) is None  # only once
    # The 2xx to our refresh: start over from then.
    timer.refreshed(1902.0)
    assert timer.deadline() == 2802.0
    assert timer.due(2802.0) == Refresh("UPDATE")


def test_refresher_gives_up_when_its_refresh_is_not_answered() -> None:
    timer = SessionTimer(1800, we_refresh=True, now=0.0)
    assert timer.due(900.0) == Refresh("INVITE")
    expiry = 1800 - 32
    assert timer.deadline() == expiry
    assert timer.due(expiry - 0.1) is None
    assert timer.due(expiry) == Expire()
    assert timer.deadline() == math.inf
    assert timer.due(10_000.0) is None
    timer.refreshed(10_001.0)  # too late: the call is gone
    assert timer.state is TimerState.EXPIRED


def test_non_refresher_sends_bye_before_expiry() -> None:
    # §10: BYE at interval - min(32, interval / 3).
    timer = SessionTimer(1800, we_refresh=False, now=0.0)
    assert timer.deadline() == 1768.0
    assert timer.due(1767.9) is None
    timer.refreshed(1000.0)  # the peer refreshed
    assert timer.deadline() == 2768.0
    assert timer.due(2767.0) is None
    assert timer.due(2768.0) == Expire()
    # Short intervals: one third wins over 32 s.
    short = SessionTimer(90, we_refresh=False, now=0.0)
    assert short.deadline() == 60.0
    assert expiry_margin(90) == 30.0
    assert expiry_margin(1800) == 32.0


def test_refresh_can_change_interval_and_refresher() -> None:
    negotiated = Negotiated(1800, Refresher.UAS)
    timer = SessionTimer.start(negotiated, uas=True, now=0.0)
    assert timer.we_refresh and timer.deadline() == 900.0
    # The peer re-INVITEs with refresher=uac: now it refreshes, every 600 s.
    timer.refreshed(500.0, Negotiated(600, Refresher.UAC), uas=True)
    assert not timer.we_refresh
    assert timer.deadline() == 500.0 + 600 - 32
    assert timer.refresh_request().headers()[0] == ("Session-Expires", "600;refresher=uac")


def test_timer_driven_by_a_fake_clock_over_a_long_call() -> None:
    timer = SessionTimer(120, we_refresh=True, now=0.0)
    now = 0.0
    refreshes = 0
    while now < 3600:
        now = timer.deadline()
        action = timer.due(now)
        assert action == Refresh("INVITE")
        refreshes += 1
        timer.refreshed(now + 0.2)  # answered quickly
    assert refreshes == math.ceil(3600 / 60.2)


def test_refresh_method_follows_allow() -> None:
    assert refresh_method(["INVITE", "ACK", "BYE", "UPDATE"]) == "UPDATE"
    assert refresh_method(["INVITE", "ACK", "BYE"]) == "INVITE"


def test_timer_rejects_non_positive_interval() -> None:
    with pytest.raises(ValueError):
        SessionTimer(0, we_refresh=True, now=0.0)
