"""The national-ID prompt: a caller the clinic's records do not know by number keys in their
national identity number, and the call is routed on with the name found.

Theory of operation
-------------------
A public number set to ask for it (``sentral number set NUMBER --ask-id``) has its callers looked
up by number first (``sentral.pbx.caller_id``), with the call's routing held. When the records
know nothing, ``NationalIdPrompt.ask`` takes the held call: the prompt ``enter_national_id``
plays as early media (a 183 answered from the relay, so the call is not billed, and the staff
phones ring as for any call once it is routed), and the keys (RFC 4733 events or INFO, both reach
``CallControl.digit``) go to a ``DigitCollector`` until ``#``. The number keyed is checked with
python-stdnum for the clinic's country (``valid_national_id``): an invalid one gets the retry
prompt, and after ``TRIES`` invalid ones, or ``SILENCE`` seconds with no key at all, the call is
routed on as unknown. A valid one is handed to ``look_up`` (the records asked by national ID, off
call control), and the call waits for the answer no longer than ``look_up`` says, then is routed
on with the name found, if any.

The keys are never logged nor recorded: nothing here logs them, the collector's repr only counts
them, and the record keeps the matched record's reference, never the number.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from math import inf

import structlog
from stdnum import exceptions as stdnum_exceptions
from stdnum.dk import cpr
from stdnum.fi import hetu
from stdnum.no import fodselsnummer
from stdnum.se import personnummer

from sentral.media.collect import Collected, CollectReason, DigitCollector
from sentral.media.dtmf import Digit
from sentral.pbx.call import Call, CallControl

log = structlog.get_logger("sentral.calls")

PROMPT = "enter_national_id"
RETRY = "national_id_invalid"
TRIES = 3  # invalid numbers keyed before the call goes on as unknown
SILENCE = 10.0  # seconds without a key, after the prompt, before the call goes on as unknown
BETWEEN_KEYS = 5.0  # seconds a caller may pause between two keys
MAX_KEYS = 12  # the longest form keyed: a Swedish personnummer with the century (YYYYMMDDNNNC)
_HETU_CHECK = "0123456789ABCDEFHJKLMNPRSTUVWXY"


def valid_national_id(keys: str, country: str, today: datetime.date | None = None) -> str | None:
    """The national identity number ``keys`` spell for a clinic in ``country``, in the form the
    records are searched by (the digits, but in Finland the whole henkilötunnus), or None when it
    is not a valid one.

    Norway: fødselsnummer or D-number, 11 digits. Sweden: personnummer, 10 or 12 digits. Denmark:
    CPR, 10 digits. Finland: henkilötunnus, whose century sign and check character (a letter,
    as often as not) no keypad has: the caller keys the birth date and the individual number (9
    digits), the century is the later one the date allows, and the check character is computed.
    """
    if not keys.isascii() or not keys.isdigit():
        return None
    try:
        match country.upper():
            case "NO":
                return fodselsnummer.validate(keys) if len(keys) == 11 else None
            case "SE":
                # Checked with its separator put in; searched by the digits keyed, as elsewhere.
                return keys if len(keys) in (10, 12) and personnummer.is_valid(keys) else None
            case "DK":
                return cpr.validate(keys) if len(keys) == 10 else None
            case "FI":
                return _hetu(keys, today or datetime.date.today())
            case _:
                return None
    except stdnum_exceptions.ValidationError:
        return None


def _hetu(keys: str, today: datetime.date) -> str | None:
    if len(keys) != 9:
        return None
    year = int(keys[4:6])
    sign = "A" if 2000 + year <= today.year else "-"
    check = _HETU_CHECK[int(keys[:6] + keys[6:9]) % 31]
    return str(hetu.validate(f"{keys[:6]}{sign}{keys[6:9]}{check}"))


@dataclass(eq=False, slots=True)
class _Asking:
    """One caller being asked: the round of keys under way, the tries so far, when the prompt
    will have played (the collector's clock starts then), and whether the records are asked."""

    collector: DigitCollector
    tries: int
    starts: float
    looking: bool = False


class NationalIdPrompt:
    """Asks held callers for their national identity number (a ``RoutingHold``)."""

    def __init__(self, core: CallControl, look_up: Callable[[Call, str], float]) -> None:
        """``look_up(call, national_id)`` asks the clinic's records off call control and says how
        many seconds the call may wait for the answer; the answer releases the call."""
        self.core = core
        self.look_up = look_up
        self._asking: dict[str, _Asking] = {}

    def __len__(self) -> int:
        return len(self._asking)

    def ask(self, call: Call, now: float) -> bool:
        """Ask ``call``'s caller (its routing held) for the number; False when the prompt cannot
        be played (no offer in the INVITE, no media layer that plays): the call goes on then."""
        lasts = self.core.early_prompt(call, [PROMPT], now)
        if lasts is None:
            return False
        self._asking[call.id] = _Asking(_collector(), 1, now + lasts)
        self.core.ask(call, self)
        log.info("national_id_asked", call=call.id)
        return True

    # -- RoutingHold

    def next_deadline(self, call: Call) -> float:
        asking = self._asking.get(call.id)
        if asking is None or asking.looking:
            return inf
        return min(asking.starts, asking.collector.next_deadline())

    def on_timer(self, call: Call, now: float) -> None:
        asking = self._asking.get(call.id)
        if asking is None or asking.looking:
            return
        if asking.starts <= now:
            asking.starts = inf
            asking.collector.start(now)
        collected = asking.collector.on_timer(now)
        if collected is not None:
            self._collected(call, asking, collected, now)

    def digit(self, call: Call, digit: Digit, now: float) -> None:
        asking = self._asking.get(call.id)
        if asking is None or asking.looking:
            return
        try:
            collected = asking.collector.digit(digit, now)
        except ValueError:
            return  # not a keypad key (a flash): nothing a number is made of
        if collected is not None:
            self._collected(call, asking, collected, now)

    def ended(self, call: Call, now: float) -> None:
        self._asking.pop(call.id, None)

    # --

    def _collected(self, call: Call, asking: _Asking, collected: Collected, now: float) -> None:
        if collected.reason is CollectReason.NO_INPUT:
            log.info("national_id_not_given", call=call.id, tries=asking.tries, reason="silence")
            self.core.release(call.id, now)
            return
        national_id = valid_national_id(collected.digits, call.caller.clinic.country)
        if national_id is None:
            if asking.tries >= TRIES:
                log.info("national_id_not_given", call=call.id, tries=asking.tries, reason="invalid")
                self.core.release(call.id, now)
                return
            asking.tries += 1
            asking.collector = _collector()
            lasts = self.core.media.play(call, call.a, [RETRY, PROMPT])
            if lasts is None:  # a sound library without the retry prompt: the prompt alone
                lasts = self.core.media.play(call, call.a, [PROMPT])
            asking.starts = now + (lasts or 0.0)
            log.info("national_id_invalid", call=call.id, tries=asking.tries - 1)
            return
        asking.looking = True
        wait = self.look_up(call, national_id)
        self.core.ask(call, self, now + wait)


def _collector() -> DigitCollector:
    return DigitCollector(MAX_KEYS, "#", first_digit_timeout=SILENCE, inter_digit_timeout=BETWEEN_KEYS)


__all__ = ["MAX_KEYS", "PROMPT", "RETRY", "SILENCE", "TRIES", "NationalIdPrompt", "valid_national_id"]
