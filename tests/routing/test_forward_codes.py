"""The forwarding codes in the dial plan: *21*, *67*, *61* with a number, #21#, #67#, #61#, ##002#."""

from __future__ import annotations

import pytest

from sentral.config.directory import ForwardKind
from sentral.routing.dialplan import Feature, FeatureCode, Reject
from tests.routing.test_dialplan import route

NOT_FOUND = Reject(404, "Not Found")


@pytest.mark.parametrize("end", ["#", "", "%23"])
@pytest.mark.parametrize(
    ("code", "kind"),
    [("*21*", ForwardKind.ALWAYS), ("*67*", ForwardKind.BUSY), ("*61*", ForwardKind.NO_ANSWER)],
)
def test_a_forwarding_code_sets_that_forward_to_a_number_of_the_clinic(code: str, kind: ForwardKind, end: str) -> None:
    assert route(f"{code}1003{end}") == Feature(FeatureCode.FORWARD, forward=kind, number="1003")


def test_the_no_answer_code_may_give_the_seconds_of_ringing() -> None:
    assert route("*61*1003*15#") == Feature(FeatureCode.FORWARD, forward=ForwardKind.NO_ANSWER, number="1003", after=15)
    assert route("*21*1003*15#") == NOT_FOUND  # only a no-answer forward waits
    assert route("*61*1003*x#") == NOT_FOUND


@pytest.mark.parametrize("end", ["#", "", "%23"])
@pytest.mark.parametrize(
    ("code", "kind"),
    [("#21", ForwardKind.ALWAYS), ("#67", ForwardKind.BUSY), ("#61", ForwardKind.NO_ANSWER), ("##002", None)],
)
def test_a_clearing_code_clears_one_forward_or_all(code: str, kind: ForwardKind | None, end: str) -> None:
    assert route(f"{code}{end}") == Feature(FeatureCode.CLEAR_FORWARD, forward=kind)
    assert route(f"{code.replace('#', '%23')}{end}") == Feature(FeatureCode.CLEAR_FORWARD, forward=kind)


@pytest.mark.parametrize(
    "dialled",
    [
        "*21*9999#",  # nobody has it
        "*21*2001#",  # another clinic's extension
        "*21*#",  # no number
        "*21*+4722334455#",  # outside numbers need a trunk
        "*67*004722334455",
    ],
)
def test_a_forward_to_a_number_that_leads_nowhere_here_is_404(dialled: str) -> None:
    assert route(dialled) == NOT_FOUND


def test_the_other_feature_codes_still_work() -> None:
    assert route("*47") == Feature(FeatureCode.TOGGLE_PHONE)
    assert route("#22#") == NOT_FOUND
