"""Collecting digits for a voice menu: terminator, max digits, inter-digit timeout, no input, type-ahead."""

from __future__ import annotations

from collections.abc import Sequence
from math import inf

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentral.media.collect import Collected, CollectorState, CollectReason, DigitCollector
from sentral.media.dtmf import Digit


def test_the_terminator_ends_the_input_and_is_left_out() -> None:
    collector = DigitCollector(11, first_digit_timeout=5.0, inter_digit_timeout=3.0)
    collector.start(0.0)
    for i, key in enumerate("1203"):
        assert collector.digit(key, 1.0 + i) is None
    assert collector.digit("#", 5.0) == Collected("1203", CollectReason.TERMINATOR)
    assert collector.done and collector.next_deadline() == inf
    assert collector.result == Collected("1203", CollectReason.TERMINATOR)


def test_the_terminator_alone_skips_with_no_digits() -> None:
    collector = DigitCollector(4)
    collector.start(0.0)
    assert collector.digit("#", 0.5) == Collected("", CollectReason.TERMINATOR)


def test_max_digits_ends_without_a_terminator() -> None:
    collector = DigitCollector(4)
    collector.start(0.0)
    results = [collector.digit(Digit(key, 160 * i), float(i)) for i, key in enumerate("5678")]
    assert results == [None, None, None, Collected("5678", CollectReason.MAX_DIGITS)]
    assert collector.digit("9", 4.5) is None  # keys after the answer are not collected
    assert collector.result == Collected("5678", CollectReason.MAX_DIGITS)


def test_star_and_letters_are_digits_when_they_are_not_the_terminator() -> None:
    collector = DigitCollector(3, terminator="*")
    collector.start(0.0)
    assert collector.digit("#", 1.0) is None
    assert collector.digit("A", 1.5) is None
    assert collector.digit("*", 2.0) == Collected("#A", CollectReason.TERMINATOR)


def test_without_a_terminator_hash_is_an_ordinary_key() -> None:
    collector = DigitCollector(2, terminator=None)
    collector.start(0.0)
    collector.digit("#", 1.0)
    assert collector.digit("#", 1.5) == Collected("##", CollectReason.MAX_DIGITS)


def test_nothing_within_the_first_digit_timeout_is_no_input() -> None:
    collector = DigitCollector(4, first_digit_timeout=5.0, inter_digit_timeout=2.0)
    assert collector.next_deadline() == inf  # the clock does not run during the prompt
    collector.start(10.0)
    assert collector.next_deadline() == 15.0
    assert collector.on_timer(14.99) is None
    assert collector.on_timer(15.0) == Collected("", CollectReason.NO_INPUT)
    assert collector.on_timer(20.0) is None


def test_a_pause_after_some_digits_is_a_timeout_measured_from_the_last_key() -> None:
    collector = DigitCollector(8, first_digit_timeout=5.0, inter_digit_timeout=2.0)
    collector.start(0.0)
    collector.digit("4", 4.0)  # late for the first-digit timer's taste, but in time
    assert collector.next_deadline() == 6.0
    collector.digit("2", 5.5)
    assert collector.next_deadline() == 7.5
    assert collector.on_timer(7.0) is None
    assert collector.count == 2
    assert collector.on_timer(7.5) == Collected("42", CollectReason.TIMEOUT)
    assert collector.state is CollectorState.DONE


def test_keys_during_the_prompt_count_and_start_then_changes_nothing() -> None:
    collector = DigitCollector(3, first_digit_timeout=5.0, inter_digit_timeout=2.0)
    assert collector.digit("7", 1.0) is None
    assert collector.state is CollectorState.COLLECTING and collector.next_deadline() == 3.0
    collector.start(1.5)  # the prompt, stopped by the key, has ended
    assert collector.next_deadline() == 3.0
    assert collector.on_timer(3.0) == Collected("7", CollectReason.TIMEOUT)


def test_a_collector_that_answered_during_the_prompt_stays_answered_at_start() -> None:
    collector = DigitCollector(1)
    assert collector.digit("3", 0.2) == Collected("3", CollectReason.MAX_DIGITS)
    collector.start(1.0)
    assert collector.next_deadline() == inf and collector.on_timer(100.0) is None


def test_start_twice_is_a_mistake_of_the_caller() -> None:
    collector = DigitCollector(4)
    collector.start(0.0)
    with pytest.raises(RuntimeError):
        collector.start(1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_digits": 0}, "collect 1 to 64 digits, not 0"),
        ({"max_digits": 65}, "collect 1 to 64 digits, not 65"),
        ({"max_digits": 4, "terminator": "##"}, "the terminator must be one key"),
        ({"max_digits": 4, "terminator": "!"}, "the terminator must be one key"),
        ({"max_digits": 4, "first_digit_timeout": 0}, "first-digit timeout must be a positive number"),
        ({"max_digits": 4, "inter_digit_timeout": float("inf")}, "inter-digit timeout must be a positive"),
        ({"max_digits": 4, "inter_digit_timeout": float("nan")}, "inter-digit timeout must be a positive"),
    ],
)
def test_settings_are_checked(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DigitCollector(**kwargs)  # type: ignore[arg-type]


def test_a_key_that_is_no_key_is_refused_without_repeating_it() -> None:
    collector = DigitCollector(4)
    collector.start(0.0)
    with pytest.raises(ValueError) as raised:
        collector.digit("x9", 1.0)
    assert "x9" not in str(raised.value)
    assert collector.count == 0


def test_the_digits_never_show_in_a_repr() -> None:
    collector = DigitCollector(11)
    collector.start(0.0)
    for key in "1505901234":
        collector.digit(key, 1.0)
    assert "1505901234" not in repr(collector) and "10 of 11 digits" in repr(collector)
    result = collector.digit("5", 2.0)
    assert result is not None and result.digits == "15059012345"
    assert repr(result) == "Collected(<11 digits>, reason='max digits')"
    assert "1505" not in str(result) and "1505" not in repr([result])


KEYPAD = "0123456789*#ABCD"


@settings(max_examples=300, deadline=None)
@given(
    max_digits=st.integers(min_value=1, max_value=8),
    terminator=st.sampled_from(["#", "*", None]),
    started_at=st.one_of(st.none(), st.floats(min_value=0, max_value=10)),
    events=st.lists(
        st.tuples(st.one_of(st.sampled_from(KEYPAD), st.none()), st.floats(min_value=0, max_value=4)),
        max_size=20,
    ),
)
def test_exactly_one_answer_and_it_matches_the_keys(
    max_digits: int,
    terminator: str | None,
    started_at: float | None,
    events: Sequence[tuple[str | None, float]],
) -> None:
    """Whatever the caller does, the collector answers at most once, with the keys pressed before
    the answer (terminator left out), and the reason fits them."""
    collector = DigitCollector(max_digits, terminator, first_digit_timeout=3.0, inter_digit_timeout=2.0)
    if started_at is not None:
        collector.start(started_at)
    now = started_at or 0.0
    pressed: list[str] = []
    answers: list[Collected] = []
    for key, later in events:
        now += later
        due = collector.next_deadline()
        answer = collector.on_timer(now) if key is None else collector.digit(key, now)
        if key is None:
            assert (answer is not None) == (now >= due)
        elif not answers:
            pressed.append(key)
        if answer is not None:
            answers.append(answer)
    assert len(answers) <= 1
    assert collector.done == bool(answers)
    if not answers:
        assert collector.result is None
        return
    (answer,) = answers
    assert collector.result == answer and collector.next_deadline() == inf
    assert terminator is None or terminator not in answer.digits
    assert len(answer.digits) <= max_digits
    typed = "".join(pressed)
    match answer.reason:
        case CollectReason.TERMINATOR:
            assert terminator is not None and typed == answer.digits + terminator
        case CollectReason.MAX_DIGITS:
            assert typed == answer.digits and len(answer.digits) == max_digits
        case CollectReason.TIMEOUT:
            assert typed == answer.digits != ""
        case CollectReason.NO_INPUT:
            assert typed == answer.digits == ""
