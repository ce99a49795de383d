"""The Replaces header (RFC 3891): parsing it, and what call control answers an INVITE that names a
dialog it cannot replace, before any feature is asked."""

from __future__ import annotations

import pytest

from sentral.pbx.call import Call, CallState, Leg, LegState
from sentral.pbx.sip.errors import SipError
from sentral.pbx.sip.replaces import Replaces, parse_replaces, replaces_of_uri
from sentral.pbx.sip.uri import parse_uri
from tests.protocol.clinic import DOMAIN, Clinic
from tests.protocol.test_features import Listener, clinic_with


def test_a_replaces_value_is_read_with_its_tags_and_early_only() -> None:
    assert parse_replaces("abc@host;to-tag=t1;from-tag=f1") == Replaces("abc@host", "t1", "f1")
    assert parse_replaces(" abc ; from-tag=f ; to-tag=t ; early-only") == Replaces("abc", "t", "f", True)
    assert str(Replaces("abc", "t", "f", True)) == "abc;to-tag=t;from-tag=f;early-only"


@pytest.mark.parametrize(
    "text", ["", "abc", "abc;to-tag=t", "abc;from-tag=f", ";to-tag=t;from-tag=f", "a b;to-tag=t;from-tag=f"]
)
def test_a_replaces_value_without_a_call_id_or_a_tag_is_400(text: str) -> None:
    with pytest.raises(SipError) as raised:
        parse_replaces(text)
    assert raised.value.status == 400


def test_a_refer_to_uri_carries_replaces_escaped_in_its_headers() -> None:
    uri = parse_uri(f"sip:1003@{DOMAIN}?Replaces=c1%40h%3Bto-tag%3Dt9%3Bfrom-tag%3Df9")
    assert replaces_of_uri(uri) == Replaces("c1@h", "t9", "f9")
    assert replaces_of_uri(parse_uri(f"sip:1003@{DOMAIN}")) is None
    with pytest.raises(SipError):
        replaces_of_uri(parse_uri(f"sip:1003@{DOMAIN}?Replaces=a%3Bto-tag%3Dt%3Bfrom-tag%3Df&replaces=b"))


def _b_leg_replaces(call: Call, *, early_only: bool = False) -> str:
    """The Replaces a phone would send for Sentral's dialog with the callee (1002)."""
    leg = call.b_legs[0]
    assert leg.dialog is not None
    early = ";early-only" if early_only else ""
    return f"Replaces: {leg.call_id};to-tag={leg.local_tag};from-tag={leg.dialog.remote_tag}{early}\r\n"


def test_an_invite_replacing_no_dialog_of_ours_is_481_and_a_malformed_one_400() -> None:
    c = Clinic()
    call = c.talking()
    gone = c.dial("1003", "1002", 1.0, headers="Replaces: nosuch@x;to-tag=a;from-tag=b\r\n")
    assert c.port.statuses(gone)[-1] == 481
    leg = call.b_legs[0]
    wrong_tag = c.dial(
        "1003", "1002", 1.1, headers=f"Replaces: {leg.call_id};to-tag={leg.local_tag};from-tag=x\r\n"
    )
    assert c.port.statuses(wrong_tag)[-1] == 481
    bad = c.dial("1003", "1002", 1.2, headers="Replaces: nosuch@x;to-tag=a\r\n")
    assert c.port.statuses(bad)[-1] == 400
    assert call.state is CallState.ANSWERED and call.b_legs[0].state is LegState.ANSWERED


def test_early_only_does_not_replace_a_confirmed_dialog() -> None:
    c = Clinic()
    call = c.talking()
    tx = c.dial("1003", "1002", 1.0, headers=_b_leg_replaces(call, early_only=True))
    assert c.port.statuses(tx)[-1] == 486
    assert call.state is CallState.ANSWERED


class Taker(Listener):
    """A feature that takes every INVITE with Replaces, noting what it was offered."""

    def __init__(self) -> None:
        super().__init__()
        self.offered: list[tuple[Call, Call, Leg]] = []

    def replaces(self, call: Call, old: Call, leg: Leg, now: float) -> bool:
        self.offered.append((call, old, leg))
        return True


def test_a_dialog_of_a_live_call_is_offered_to_the_features_with_its_call_and_leg() -> None:
    taker = Taker()
    c = clinic_with(lambda core: [taker])
    call = c.talking()
    c.dial("1003", "1002", 1.0, headers=_b_leg_replaces(call))
    [(new, old, leg)] = taker.offered
    assert old is call and leg is call.b_legs[0] and new.caller.extension == "1003"
    # The A leg's dialog is named by the tag Sentral gave it and the caller's tag.
    a = call.a
    assert a.dialog is not None
    c.dial(
        "1003",
        "1001",
        1.1,
        headers=f"Replaces: {a.call_id};to-tag={a.local_tag};from-tag={a.dialog.remote_tag}\r\n",
    )
    assert taker.offered[-1][2] is a


def test_a_dialog_no_feature_can_replace_is_481_and_the_call_goes_on() -> None:
    c = clinic_with(lambda core: ())
    call = c.talking()
    tx = c.dial("1003", "1002", 1.0, headers=_b_leg_replaces(call))
    assert c.port.statuses(tx)[-1] == 481
    assert call.state is CallState.ANSWERED and call.winner is call.b_legs[0]
    assert len(c.cc.calls) == 1  # the refused INVITE's call is over and gone
