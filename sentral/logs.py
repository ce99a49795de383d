"""Logging: structlog configured once by the CLI, to stderr, as console text or JSON lines.

Call context (``call_id``, ``leg``, ``clinic``) is bound with ``structlog.contextvars`` where a call
is handled and merged into every event logged underneath, across awaits, without passing loggers
around. Standard-library logging from libraries goes to the same stream at the same level.

What an operator turns on by name, such as ``serve --sip-trace``, goes through ``unfiltered_logger``:
it shows at any ``--log-level``. Its events keep the debug label, because SIP messages carry phone
numbers and names, which belong at debug; digest responses are taken out of them
(``sip_trace_text``), as they are out of every log line.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, Literal

import structlog

LogFormat = Literal["console", "json"]
LEVELS = ("debug", "info", "warning", "error", "critical")

# The response parameter of an Authorization or Proxy-Authorization header line: enough, with the
# nonce beside it, to guess the password offline.
_DIGEST_RESPONSE = re.compile(
    r'^((?:proxy-)?authorization:.*?\bresponse\s*=\s*)("[^"]*"|[^\s,]+)', re.IGNORECASE | re.MULTILINE
)


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


def unfiltered_logger(name: str) -> Any:
    """A logger for output the operator asked for by name: every level passes, whatever ``configure``
    was given, while the format and stream stay those ``configure`` chose."""
    return structlog.wrap_logger(
        None, wrapper_class=structlog.make_filtering_bound_logger(logging.NOTSET), logger_factory_args=(name,)
    )


def sip_trace_text(data: bytes) -> str:
    """A SIP message as a trace shows it: decoded, with digest responses hidden."""
    return _DIGEST_RESPONSE.sub(r'\1"(hidden)"', data.decode("utf-8", "replace"))


__all__ = ["LEVELS", "LogFormat", "configure", "sip_trace_text", "unfiltered_logger"]
