"""A finished call's report (``CallReport``, on the monotonic clock) as the record the server
stores (``CallRecord``, epoch seconds).

It runs once for every call that ends, on the event loop, so it is compiled with the rest of call
control: read from the report in C, the record's fields cost a fraction of what the same reads
cost interpreted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from sentral.config.cdr import CallRecord, HangupBy, LegRecord, TransferKind, TransferRecord, forwarded_text
from sentral.pbx.call import CallReport, LegReport, TransferReport

_DISPOSITIONS = {
    486: "busy",
    600: "busy",
    603: "declined",
    404: "not_found",
    480: "unavailable",
    487: "cancelled",
}
_REJECTED = {486: "busy", 600: "busy", 603: "declined"}
_HANGUP_BY = frozenset(("caller", "callee", "system"))


def call_record(report: CallReport, wall_offset: float) -> CallRecord:
    """The stored record of a call report; monotonic times shifted by ``wall_offset`` to epoch."""
    legs = tuple([_leg_record(index, leg, report.ended, wall_offset) for index, leg in enumerate(report.legs)])
    status = report.status if report.status is not None else 500
    rang = report.rang
    answered = report.answered
    hangup_by = report.hangup_by
    return CallRecord(
        call_id=report.call_id,
        domain=report.clinic,
        caller=report.caller,
        caller_name=report.caller_name or None,
        callee=report.callee,
        # Who answered: a group's or a role's number is dialled, and one member answers it.
        callee_extension=report.answered_by or None,
        started_at=report.started + wall_offset,
        ringing_at=None if rang is None else rang + wall_offset,
        answered_at=None if answered is None else answered + wall_offset,
        ended_at=report.ended + wall_offset,
        disposition=_disposition(report),
        hangup_by=cast(HangupBy, hangup_by) if hangup_by in _HANGUP_BY else None,
        hangup_reason=report.cause,
        status_to_caller=status,
        legs=legs,
        forwarded=forwarded_text(report.forwarded) if report.forwarded else None,
        transfers=transfer_records(report.transfers, wall_offset),
        caller_kind=report.caller_kind or None,
        caller_reference=report.caller_reference or None,
        caller_source=report.caller_source or None,
    )


def _leg_record(index: int, leg: LegReport, call_ended: float, wall_offset: float) -> LegRecord:
    ended = leg.ended
    answered = leg.answered
    ringing = leg.ringing
    return LegRecord(
        leg=index,
        role="caller" if leg.side == "a" else "callee",
        target=leg.target,
        started_at=leg.started + wall_offset,
        ended_at=(ended if ended is not None else call_ended) + wall_offset,
        outcome=_leg_outcome(leg.outcome, leg.status),
        answered_at=None if answered is None else answered + wall_offset,
        ringing_at=None if ringing is None else ringing + wall_offset,
        status=leg.status,
    )


def transfer_records(transfers: Sequence[TransferReport], wall_offset: float) -> tuple[TransferRecord, ...]:
    """The stored form of a call's transfers; monotonic times shifted by ``wall_offset`` to epoch."""
    if not transfers:
        return ()
    return tuple(
        [
            TransferRecord(
                at=transfer.at + wall_offset,
                by=transfer.by,
                kind=cast(TransferKind, transfer.kind),
                target=transfer.target,
                outcome=transfer.outcome,
            )
            for transfer in transfers
        ]
    )


def _disposition(report: CallReport) -> str:
    if report.answered is not None:
        return "answered"
    if report.cause == "no answer timeout":
        return "no_answer"
    return _DISPOSITIONS.get(report.status or 0, "failed")


def _leg_outcome(outcome: str, status: int | None) -> str:
    if outcome == "rejected":
        return _REJECTED.get(status or 0, "failed")
    if outcome == "timeout":
        return "no_answer"
    return outcome.replace(" ", "_")


__all__ = ["call_record", "transfer_records"]
