"""Caller ID on the call path: who calls from outside, as the clinic's records say, within a budget.

Theory of operation
-------------------
A call in from a trunk, from a number (not anonymous), to a clinic with a lookup chain
(``CallerLookups.chain``) is handed to call control with its routing held until the clinic's
budget has passed (``CallControl.on_invite(hold_until=...)``), and ``CallerId.start`` asks the
chain by number in a task of its own. Whichever comes first routes the call:

- the answer, within the budget: a match names the caller (``CallControl.identify``: the phones
  rung show the name in From and P-Asserted-Identity) and the call is released at once; a miss
  releases it too, or, for a public number that asks for it, hands it to the national-ID prompt
  (``sentral.pbx.features.national_id``), which asks the chain by national ID through ``CallerId``
  as well;
- the budget: call control releases the call itself and the phones ring with the number. The
  answer, when it comes later, still names the caller in the live call and in its record.

Call control stays sans-IO: the IO is here, in tasks this object owns. A call's task is cancelled
when the call ends (``forget``), all of them when the server stops (``close``); an answer is
given up on after ``LATE_LIMIT`` whatever the chain does. The chain itself never raises and skips
a failing adapter; a task that fails anyway is logged without what it looked up.

Calls from staff phones never come here: their callers keep their staff names, and the SIP path
of a call that needs no lookup does not change. Phone numbers and names are logged only at
DEBUG, national ID numbers never.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Protocol

import structlog

from sentral.pbx.call import Call, CallControl, CallerIdentity
from sentral.pbx.features.national_id import NationalIdPrompt

log = structlog.get_logger("sentral.caller_id")

# An answer later than this is given up on: the call has long been ringing with the number.
LATE_LIMIT = 10.0


class Found(Protocol):
    """A match in the clinic's records (``sentral.adapters.Match``)."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> Enum: ...
    @property
    def reference(self) -> str: ...
    @property
    def source(self) -> str: ...


class Chain(Protocol):
    """A clinic's lookup chain (``sentral.adapters.LookupChain``): never raises."""

    async def by_number(self, e164: str) -> Found | None:
        """The caller with phone number ``e164``, if the records know one."""

    async def by_national_id(self, national_id: str) -> Found | None:
        """The person with ``national_id``, if the records know one."""


class CallerLookups(Protocol):
    """The server's chains (``sentral.adapters.CallerLookup``)."""

    def chain(self, domain: str) -> Chain | None:
        """The clinic's chain, or None when it has no adapters."""

    def budget(self, domain: str) -> float:
        """How long the clinic's calls may wait for an answer, in seconds."""


def identity_of(found: Found) -> CallerIdentity:
    """What call control keeps of a match."""
    return CallerIdentity(found.name, str(found.kind.value), found.reference, found.source)


class CallerId:
    """Looks outside callers up for call control, in tasks it owns."""

    def __init__(
        self,
        calls: CallControl,
        lookups: CallerLookups,
        schedule: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``schedule``: run after call control has acted on an answer (the driver's timer);
        ``clock``: call control's ``now``."""
        self.calls = calls
        self.lookups = lookups
        self.schedule = schedule
        self.clock = clock
        self.prompt = NationalIdPrompt(calls, self._by_national_id)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._chains: dict[str, Chain] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def chain(self, domain: str) -> tuple[Chain, float] | None:
        """The chain of the clinic ``domain`` and its budget, or None when it has none."""
        chain = self.lookups.chain(domain)
        return None if chain is None else (chain, self.lookups.budget(domain))

    def start(self, call: Call, chain: Chain, number: str, *, ask_id: bool = False) -> None:
        """Ask ``chain`` who ``number`` (E.164) is for ``call``, whose routing is held; with
        ``ask_id``, a caller it does not know is asked for their national ID number."""
        self._chains[call.id] = chain
        self._own(call.id, self._by_number(call.id, chain, number, ask_id))

    def forget(self, call_id: str) -> None:
        """``call_id`` ended: stop looking for it."""
        self._chains.pop(call_id, None)
        task = self._tasks.pop(call_id, None)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        """Cancel every lookup under way and wait for them to end."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        self._chains.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --

    def _own(self, call_id: str, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks[call_id] = task
        task.add_done_callback(lambda done: self._done(call_id, done))

    def _done(self, call_id: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(call_id) is task:
            del self._tasks[call_id]
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            # The type alone: the message could hold what was looked up.
            log.error("caller_lookup_failed", call=call_id, error=type(error).__name__)
            self.calls.release(call_id, self.clock())
            self.schedule()

    async def _by_number(self, call_id: str, chain: Chain, number: str, ask_id: bool) -> None:
        started = self.clock()
        found: Found | None = None
        try:
            async with asyncio.timeout(LATE_LIMIT):
                found = await chain.by_number(number)
        except TimeoutError:
            pass
        now = self.clock()
        held = self.calls.held(call_id)
        ms = round((now - started) * 1000)
        if found is not None:
            self.calls.identify(call_id, identity_of(found), now)
            log.info(
                "caller_identified", call=call_id, kind=identity_of(found).kind, source=found.source, ms=ms,
                late=held is None,
            )  # fmt: skip
            log.debug("caller_identified_as", call=call_id, caller=number, name=found.name)
        else:
            log.info("caller_not_identified", call=call_id, ms=ms, late=held is None)
        if held is not None and not (found is None and ask_id and self.prompt.ask(held, now)):
            self.calls.release(call_id, now)
        self.schedule()

    def _by_national_id(self, call: Call, national_id: str) -> float:
        """The prompt's lookup: started here, the answer releases the call; the wait allowed."""
        chain = self._chains.get(call.id)
        domain = call.caller.clinic.domain
        if chain is None:
            return 0.0
        self._own(call.id, self._national_id_answer(call.id, chain, national_id))
        return self.lookups.budget(domain)

    async def _national_id_answer(self, call_id: str, chain: Chain, national_id: str) -> None:
        started = self.clock()
        found: Found | None = None
        try:
            async with asyncio.timeout(LATE_LIMIT):
                found = await chain.by_national_id(national_id)
        except TimeoutError:
            pass
        now = self.clock()
        ms = round((now - started) * 1000)
        if found is not None:
            self.calls.identify(call_id, identity_of(found), now)
            log.info("caller_identified_by_national_id", call=call_id, source=found.source, ms=ms)
            log.debug("caller_identified_as", call=call_id, name=found.name)
        else:
            log.info("caller_not_identified_by_national_id", call=call_id, ms=ms)
        self.calls.release(call_id, now)
        self.schedule()


__all__ = ["LATE_LIMIT", "CallerId", "CallerLookups", "Chain", "Found", "identity_of"]
