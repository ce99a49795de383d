"""What is built on the call core (``sentral.pbx.call``), one module each.

Theory of operation
-------------------
Call control's core knows legs, dialogs, offer/answer, bridging, timers and the record. A feature
speaks its vocabulary (ring a contact for a call, bridge a leg to a held phone, play a prompt or
music, hang up a leg or the call, set a call's timer, tell the lines) from a module of its own,
and the core asks its features at defined hooks (``CallFeature``): a number the dial plan gives a
feature, keys pressed during a call, a REFER, and what the port carried out for a feature. A
feature that holds a call with nobody on its other side (``CallHolder``: a parked call) gets that
call's commands and its timer until it lets go.

- ``park``: the in-call park code (``#72``), a transfer to the park number, taking a parked call
  by dialling its slot, the recall, and the slots' busy-lamp keys;
- ``codes``: what call control does for the feature codes staff dial (``*45``-``*48``);
- ``attended``: attended and semi-attended transfers (REFER with Replaces), and a phone taking
  over an answered call (INVITE with Replaces); asked first, so that a REFER with Replaces is its.

A blind transfer (REFER to a phone) and call pickup will each be a module here too; until the
transfer module exists the core refuses a REFER no feature takes with 501.
"""

from __future__ import annotations

from collections.abc import Sequence

from sentral.pbx.call import CallControl, CallFeature
from sentral.pbx.features.attended import AttendedTransfer
from sentral.pbx.features.codes import FeatureCodes
from sentral.pbx.features.park import Parking


def standard(core: CallControl) -> Sequence[CallFeature]:
    """The features a clinic's call control has, in the order they are asked."""
    return (AttendedTransfer(core), Parking(core), FeatureCodes(core))


__all__ = ["standard"]
