"""Fixtures the CLI tests share."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import structlog

from sentral.config.settings import Reread, ServeConfig


class Served(list[ServeConfig]):
    """The configurations `sentral serve` handed over, and its SIGHUP readers of the file."""

    rereads: list[Callable[[], Reread] | None]

    def __init__(self) -> None:
        super().__init__()
        self.rereads = []


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    """Stand in for the server: record the configuration `sentral serve` hands over."""
    seen = Served()

    def serve(config: ServeConfig, reread: Callable[[], Reread] | None = None) -> int:
        seen.append(config)
        seen.rereads.append(reread)
        return 3

    monkeypatch.setattr("sentral.app.serve", serve, raising=False)
    yield seen
    structlog.reset_defaults()
