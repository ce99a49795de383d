"""Call pickup in the dial plan: the codes, and which ringing call a pickup takes.

Theory of operation
-------------------
Staff answer a colleague's ringing phone from their own: ``**`` followed by the colleague's
extension picks up a call ringing on that colleague's phones (directed pickup), and ``*8`` picks
up a call ringing for a group or function the dialler is a member of (group pickup).
``PickupResolver`` is the dial plan's rule for both codes; it decides ``Pickup``, which call
control hands to the pickup feature (``sentral.pbx.features.pickup``).

When several calls could be taken, ``first_to_pick`` chooses, free of SIP: an acute call before
any other, then the one that has rung longest (``Ringing``: what the feature knows of each).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

GROUP_PICKUP = "*8"
DIRECTED_PICKUP = "**"  # followed by the extension whose call is picked up


@dataclass(frozen=True, slots=True)
class Pickup:
    """Pick up a call ringing on ``extension``'s phones (``**EXT``), or, with no extension, one
    ringing for a group or function the dialler is a member of (``*8``)."""

    extension: str = ""


class Dialled(Protocol):
    """What the resolver reads of a routing question; the dial plan's ``Query`` is one."""

    @property
    def number(self) -> str: ...


class PickupResolver:
    """``*8`` and ``**EXT`` decide ``Pickup``; other numbers are not this rule's."""

    def resolve(self, query: Dialled) -> Pickup | None:
        """The decision for a pickup code; None for any other number. ``**`` with an extension
        nobody has is still a pickup: there is nothing ringing there to take (404)."""
        number = query.number
        if number == GROUP_PICKUP:
            return Pickup()
        if number.startswith(DIRECTED_PICKUP) and len(number) > len(DIRECTED_PICKUP):
            return Pickup(number[len(DIRECTED_PICKUP) :])
        return None


@dataclass(frozen=True, slots=True)
class Ringing:
    """A call a pickup could take: its key, whether it is acute, and when it started ringing."""

    key: str
    acute: bool
    since: float


def first_to_pick(candidates: Iterable[Ringing]) -> Ringing | None:
    """The call a pickup takes among ``candidates``: acute first, then the longest ringing."""
    return min(candidates, key=lambda ringing: (not ringing.acute, ringing.since), default=None)


__all__ = ["DIRECTED_PICKUP", "GROUP_PICKUP", "Dialled", "Pickup", "PickupResolver", "Ringing", "first_to_pick"]
