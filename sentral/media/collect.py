"""Collecting the digits a caller keys in to a voice menu: a choice, an extension, a national ID number.

Theory of operation
-------------------
``DigitCollector`` is pure, like the group hunt: call control feeds it key presses (``digit``, the
``Digit`` that ``DtmfDetector`` or a SIP INFO gave, or the key alone) and the clock (``on_timer``
once ``next_deadline()`` has passed), always with ``now``, and it answers ``Collected`` exactly
once, when collecting is over:

- ``terminator``: the caller pressed the terminator (``#`` unless told otherwise); it ends the
  input and is not part of it, so ``#`` alone gives no digits ("skip");
- ``max digits``: ``max_digits`` keys came; no terminator is needed then;
- ``timeout``: the caller keyed something, then nothing for ``inter_digit_timeout``;
- ``no input``: nothing at all for ``first_digit_timeout`` after ``start``.

Call control plays the prompt, then calls ``start``, which sets off the first-digit timer: the
caller is given the whole prompt before the clock runs. Keys pressed while the prompt still plays
count (callers who know the menu type ahead): the first one begins the input and the inter-digit
timer, call control stops the prompt, and the later ``start`` changes nothing. Keys after the
collector answered are not its business and are ignored.

The digits may be a national ID number, so they never reach a log line: nothing here logs, and
the ``repr`` of ``Collected`` and of the collector shows how many digits there are, never which.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from math import inf, isfinite

from sentral.media.dtmf import Digit

# The keys of a phone's keypad (RFC 4733 events 0-15); flash is not a key one collects.
KEYS = frozenset("0123456789*#ABCD")
# Long enough for any national ID number or phone number; more is a caller leaning on a key.
MAX_DIGITS_LIMIT = 64
DEFAULT_FIRST_DIGIT_TIMEOUT = 5.0
DEFAULT_INTER_DIGIT_TIMEOUT = 3.0


class CollectReason(Enum):
    """Why collecting ended; the value is what a call record or a menu's script names it."""

    TERMINATOR = "terminator"
    MAX_DIGITS = "max digits"
    TIMEOUT = "timeout"
    NO_INPUT = "no input"


@dataclass(frozen=True, slots=True, repr=False)
class Collected:
    """The keys the caller pressed, terminator left out, and why collecting ended."""

    digits: str
    reason: CollectReason

    def __repr__(self) -> str:
        # The digits may identify a patient: a repr ends up in logs and tracebacks, so it counts them.
        return f"Collected(<{len(self.digits)} digits>, reason={self.reason.value!r})"


class CollectorState(Enum):
    """Where a collector stands."""

    READY = "ready"  # waiting for ``start`` or a first key
    COLLECTING = "collecting"
    DONE = "done"


def _timeout(value: float, what: str) -> float:
    if not (isfinite(value) and value > 0):
        raise ValueError(f"the {what} must be a positive number of seconds, not {value}")
    return float(value)


class DigitCollector:
    """One round of digit collection with first-digit and inter-digit timeouts."""

    __slots__ = (
        "_deadline",
        "_digits",
        "_result",
        "_started",
        "first_digit_timeout",
        "inter_digit_timeout",
        "max_digits",
        "state",
        "terminator",
    )

    def __init__(
        self,
        max_digits: int,
        terminator: str | None = "#",
        first_digit_timeout: float = DEFAULT_FIRST_DIGIT_TIMEOUT,
        inter_digit_timeout: float = DEFAULT_INTER_DIGIT_TIMEOUT,
    ) -> None:
        if isinstance(max_digits, bool) or not 1 <= max_digits <= MAX_DIGITS_LIMIT:
            raise ValueError(f"collect 1 to {MAX_DIGITS_LIMIT} digits, not {max_digits}")
        if terminator is not None and terminator not in KEYS:
            raise ValueError(f"the terminator must be one key of 0-9, *, #, A-D, or None, not {terminator!r}")
        self.max_digits = max_digits
        self.terminator = terminator
        self.first_digit_timeout = _timeout(first_digit_timeout, "first-digit timeout")
        self.inter_digit_timeout = _timeout(inter_digit_timeout, "inter-digit timeout")
        self.state = CollectorState.READY
        self._digits: list[str] = []
        self._started = False
        self._deadline = inf
        self._result: Collected | None = None

    def __repr__(self) -> str:
        return f"<DigitCollector {self.state.value}, {len(self._digits)} of {self.max_digits} digits>"

    @property
    def done(self) -> bool:
        """True once the collector has answered."""
        return self.state is CollectorState.DONE

    @property
    def result(self) -> Collected | None:
        """What was collected, once done."""
        return self._result

    @property
    def count(self) -> int:
        """How many digits have been keyed so far (the terminator not counted)."""
        return len(self._digits)

    def next_deadline(self) -> float:
        """When ``on_timer`` is next due; ``math.inf`` before ``start`` or a key, and once done."""
        return self._deadline

    # -- events

    def start(self, now: float) -> None:
        """The prompt has played: the caller has ``first_digit_timeout`` to begin."""
        if self._started:
            raise RuntimeError("a digit collector starts once")
        self._started = True
        if self.state is CollectorState.READY:
            self.state = CollectorState.COLLECTING
            self._deadline = now + self.first_digit_timeout
        # Already collecting: keys came during the prompt and their inter-digit timer runs on.

    def digit(self, key: Digit | str, now: float) -> Collected | None:
        """The caller pressed ``key``; ``Collected`` if that ends the input."""
        pressed = key.key if isinstance(key, Digit) else key
        if pressed not in KEYS:
            raise ValueError("not a keypad key (0-9, *, #, A-D)")  # the key itself is not repeated
        if self.state is CollectorState.DONE:
            return None
        self.state = CollectorState.COLLECTING
        if pressed == self.terminator:
            return self._finish(CollectReason.TERMINATOR)
        self._digits.append(pressed)
        if len(self._digits) >= self.max_digits:
            return self._finish(CollectReason.MAX_DIGITS)
        self._deadline = now + self.inter_digit_timeout
        return None

    def on_timer(self, now: float) -> Collected | None:
        """Time passed: the caller may have waited too long to begin or to go on."""
        if self.state is not CollectorState.COLLECTING or now < self._deadline:
            return None
        return self._finish(CollectReason.TIMEOUT if self._digits else CollectReason.NO_INPUT)

    def _finish(self, reason: CollectReason) -> Collected:
        self.state = CollectorState.DONE
        self._deadline = inf
        self._result = Collected("".join(self._digits), reason)
        return self._result


__all__ = [
    "DEFAULT_FIRST_DIGIT_TIMEOUT",
    "DEFAULT_INTER_DIGIT_TIMEOUT",
    "KEYS",
    "MAX_DIGITS_LIMIT",
    "CollectReason",
    "Collected",
    "CollectorState",
    "DigitCollector",
]
