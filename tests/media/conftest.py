"""Running coroutines in the media IO tests: on the stdlib loop and on uvloop, which Sentral uses."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
import uvloop

T = TypeVar("T")
Runner = Callable[[Coroutine[Any, Any, T]], T]

_FACTORIES: dict[str, Callable[[], asyncio.AbstractEventLoop] | None] = {
    "asyncio": None,
    "uvloop": uvloop.new_event_loop,
}


@pytest.fixture(params=sorted(_FACTORIES))
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    """Run a coroutine to completion on a fresh event loop of each kind."""
    factory = _FACTORIES[request.param]

    def runner(coro: Coroutine[Any, Any, Any]) -> Any:
        with asyncio.Runner(loop_factory=factory) as loop_runner:
            return loop_runner.run(coro)

    return runner
