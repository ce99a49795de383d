"""The REST API: what the running server knows, as JSON, scoped to the caller's clinic."""

from __future__ import annotations

from aiohttp import web


def api_routes() -> list[web.RouteDef]:
    """Every route of the REST API."""
    return []


__all__ = ["api_routes"]
