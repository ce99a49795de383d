"""Fixtures the CLI tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog

from sentral.config.settings import ServeConfig


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[ServeConfig]]:
    """Stand in for the server: record the configuration `sentral serve` hands over."""
    seen: list[ServeConfig] = []

    def serve(config: ServeConfig) -> int:
        seen.append(config)
        return 3

    monkeypatch.setattr("sentral.app.serve", serve, raising=False)
    yield seen
    structlog.reset_defaults()
