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
- ``transfer``: what happens on REFER: a blind transfer to any other number of the clinic, carried
  out by Sentral, and the recall to the transferring phone when nobody takes the call;
- ``attended``: attended and semi-attended transfers (a REFER with Replaces; a semi-attended one
  goes on as ``transfer``'s blind transfer), and a phone taking over an answered call (an INVITE
  with Replaces naming a confirmed dialog);
- ``codes``: what call control does for the feature codes staff dial (``*45``-``*48``, and the
  forwarding codes);
- ``pickup``: answering a colleague's ringing call (``**EXT``, ``*8``, and a busy-lamp key's
  INVITE with Replaces for a ringing dialog).
- ``outside``: calls out on the clinic's trunks (the hunt over trunks, failover, the identity the
  carrier is given) and the calls the outbound policy refuses;
- ``click``: click-to-call, a call Sentral places for a member of staff (their phones ring first,
  then the one that answers is connected to the number, as ``transfer`` connects a transferee);
  no hook of the core's leads there, so it is not among ``standard``'s features but made on the
  side with ``click_to_call``;
- ``forward``: call forwarding (always, busy, no answer), which call control asks whenever it
  routes a call to a number (``Forwarding``) rather than at the hooks above.

The core refuses a REFER no feature takes with 501.
"""

from __future__ import annotations

from collections.abc import Sequence

from sentral.pbx.call import CallControl, CallFeature
from sentral.pbx.features.attended import AttendedTransfer
from sentral.pbx.features.click import ClickToCall
from sentral.pbx.features.codes import FeatureCodes
from sentral.pbx.features.forward import CallForwarding
from sentral.pbx.features.outside import Carriers, OutsideLines
from sentral.pbx.features.park import Parking
from sentral.pbx.features.pickup import CallPickup
from sentral.pbx.features.transfer import Transfer


def standard(core: CallControl, carriers: Carriers | None = None) -> Sequence[CallFeature]:
    """The features a clinic's call control has, in the order they are asked; call forwarding is
    given to the core as its ``forwarding``; ``carriers``: the trunks calls go out on."""
    core.forwarding = CallForwarding(core)
    transfer = Transfer(core)
    return (
        Parking(core),
        transfer,
        AttendedTransfer(core, transfer),
        FeatureCodes(core),
        CallPickup(core),
        OutsideLines(core, carriers),
    )


def click_to_call(core: CallControl) -> ClickToCall:
    """Click-to-call for ``core``, whose features are ``standard``'s: it hands answered calls to
    their blind transfer."""
    transfer = next(feature for feature in core.features if isinstance(feature, Transfer))
    return ClickToCall(core, transfer)


__all__ = ["click_to_call", "standard"]
