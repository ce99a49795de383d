"""Feature codes in calls: what call control does when staff dial ``*45``, ``*46``, ``*47``,
``*48NUMBER`` or a forwarding code (``*21*NUMBER#`` and the others, ``sentral.routing.dialplan``).

Theory of operation
-------------------
The dial plan (``sentral.routing.dialplan``) reads the codes: ``*45`` logs the caller in to every
function or out of all, ``*46`` the same for groups, ``*47`` logs their phone off (it receives
nothing) or on again, and ``*48`` followed by a group's or function's number logs them in to or
out of that one; the forwarding codes set or clear the caller's forwards. It decides a
``Feature``. ``FeatureCodes`` takes such a call from the core: the record names the code, and the
port carries the change out off the event loop (``CallPort.feature``: the store is written, the
directory reloaded).

When the port has done it (``CallControl.feature_done``), Sentral answers the call itself, so
that the phone shows it worked, with an answer (or, for an INVITE without SDP, an offer) from the
media layer; the prompt that says what was done plays ("logged in", "logged out", "forwarding
on", "forwarding off", or a plain tone where none fits, ``feature_prompt``), and the call is hung
up when it has played (after
``FEATURE_HANGUP`` where nothing can be played). The record's callee name, and the cause of the
hang-up, say what was done. A change the port could not make is refused with its status
(``CallControl.feature_failed``: 403 for a member's mistake, such as ``*48`` for a group they are
not in, or a forward to themselves).
"""

from __future__ import annotations

from sentral.media.sounds import DONE_TONE
from sentral.pbx.call import Call, CallControl, FeatureDecision, Leg
from sentral.pbx.sip.message import Request
from sentral.pbx.sip.transaction import ServerTransaction
from sentral.pbx.sip.uri import Uri
from sentral.routing.dialplan import Decision, Feature


def feature_prompt(outcome: str) -> str:
    """The prompt that says a feature code's ``outcome`` ("logged in to reception", "phone logged
    off", "forwarded busy to 1003"...): logged in or out, forwarding on or off, or the plain tone
    when none fits."""
    text = outcome.lower()
    if text.startswith("forwarded"):
        return "forwarding_on"
    if text.startswith("forwarding") and text.endswith(" off"):
        return "forwarding_off"
    if "logged in" in text or "logged on" in text:
        return "logged_in"
    if "logged out" in text or "logged off" in text:
        return "logged_out"
    return DONE_TONE


class FeatureCodes:
    """The ``CallFeature`` of the feature codes."""

    def __init__(self, core: CallControl) -> None:
        self.core = core

    def dialled(self, call: Call, decision: FeatureDecision, now: float) -> bool:
        if not isinstance(decision, Feature):
            return False
        call.callee_name = decision.code.value
        self.core.port.feature(call, decision)
        return True

    def keyed(self, call: Call, leg: Leg, keys: str, now: float) -> bool:
        return False  # the codes are dialled, not keyed during a call

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
        return False

    def carried_out(self, call: Call, outcome: str, now: float) -> bool:
        # The port carries out nothing but feature codes.
        call.callee_name = outcome
        self.core.answer_and_play(call, [feature_prompt(outcome)], now)
        return True

    def replaces(self, call: Call, old: Call, leg: Leg, now: float) -> bool:
        return False


__all__ = ["FeatureCodes", "feature_prompt"]
