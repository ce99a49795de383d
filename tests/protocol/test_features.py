"""The seam between the call core and the features built on it: what the core asks its features,
and what it does when none of them takes the matter (message by message, as test_parking)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sentral.pbx.call import KEY_GAP, Call, CallControl, CallFeature, FeatureDecision, Leg
from sentral.pbx.features.park import PARK_CODE
from sentral.pbx.sip.message import Request
from sentral.pbx.sip.transaction import ServerTransaction
from sentral.pbx.sip.uri import Uri
from sentral.routing.dialplan import Decision, DialPlan
from sentral.routing.park import Park
from tests.protocol.clinic import DIRECTORY, DOMAIN, Clinic, refer


class Listener:
    """A feature that only hears what the core offers it, and owns the in-call code ``**``."""

    def __init__(self) -> None:
        self.keys: list[tuple[str, str]] = []
        self.refers: list[Decision] = []

    def dialled(self, call: Call, decision: FeatureDecision, now: float) -> bool:
        return False

    def keyed(self, call: Call, leg: Leg, keys: str, now: float) -> bool:
        self.keys.append((leg.id, keys))
        return keys.endswith("**")

    def refer(
        self,
        call: Call,
        leg: Leg,
        tx: ServerTransaction,
        request: Request,
        target: Uri,
        decision: Decision,
        now: float,
    ) -> bool:
        self.refers.append(decision)
        return False

    def carried_out(self, call: Call, outcome: str, now: float) -> bool:
        return False

    def replaces(self, call: Call, old: Call, leg: Leg, now: float) -> bool:
        return False


def clinic_with(features: Callable[[CallControl], Sequence[CallFeature]]) -> Clinic:
    """The protocol tests' clinic, its call control made with ``features`` only."""
    c = Clinic()
    c.cc = CallControl(
        c.port,
        DialPlan(),
        lambda: DIRECTORY,
        lambda aor: c.bindings.get(aor, []),
        media=c.media,
        lines=c.lines,
        features=features,
    )
    return c


def test_features_hear_the_keys_pressed_lately_and_forget_those_that_made_their_code() -> None:
    listener = Listener()
    c = clinic_with(lambda core: [listener])
    call = c.talking()
    c.key(call, "a", "1**", 1.0)  # at 1.0, 1.2 and 1.4
    c.key(call, "a", "2", 1.6)
    c.key(call, "b1", "3", 1.7)
    c.key(call, "b1", "4", 1.7 + KEY_GAP + 0.1)
    assert listener.keys == [("a", "1"), ("a", "1*"), ("a", "1**"), ("a", "2"), ("b1", "3"), ("b1", "4")]


def test_what_no_feature_takes_the_core_refuses() -> None:
    listener = Listener()
    c = clinic_with(lambda core: [listener])
    assert c.port.statuses(c.dial("1003", "702"))[-1] == 404  # a slot, with nobody to retrieve it
    call = c.talking()
    c.key(call, "b1", PARK_CODE, 1.0)
    assert not call.parked and call.winner is not None
    assert c.port.statuses(refer(c, f"<sip:700@{DOMAIN}>", 2.0)) == [501]
    [decision] = listener.refers
    assert isinstance(decision, Park) and decision.lot.number == "700"
