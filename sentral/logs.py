"""Logging: structlog configured once by the CLI, to stderr, as console text or JSON lines.

Call context (``call_id``, ``leg``, ``clinic``) is bound with ``structlog.contextvars`` where a call
is handled and merged into every event logged underneath, across awaits, without passing loggers
around. Standard-library logging from libraries goes to the same stream at the same level.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

LogFormat = Literal["console", "json"]
LEVELS = ("debug", "info", "warning", "error", "critical")


def configure(log_format: LogFormat, level: str) -> None:
    """Send structlog and standard logging to stderr at ``level`` in ``log_format``."""
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"log level {level!r}: choose one of {', '.join(LEVELS)}")
    renderer: structlog.typing.Processor
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer()
    elif log_format == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    else:
        raise ValueError(f"log format {log_format!r}: choose console or json")
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    if log_format == "json":
        processors.append(structlog.processors.format_exc_info)
    processors.append(renderer)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        # Configured once at start-up, so loggers can cache their processor chain on first use.
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(stream=sys.stderr, level=numeric, format="%(levelname)s %(name)s: %(message)s", force=True)
    # Alembic reports every schema check at INFO; only its warnings matter to an operator.
    logging.getLogger("alembic").setLevel(max(numeric, logging.WARNING))


__all__ = ["LEVELS", "LogFormat", "configure"]
