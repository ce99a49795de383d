"""Logging: structlog configured once by the CLI, as console text or JSON lines, to stderr, the
systemd journal or syslog (``--log-target``).

Call context (``call_id``, ``leg``, ``clinic``) is bound with ``structlog.contextvars`` where a call
is handled and merged into every event logged underneath, across awaits, without passing loggers
around. Standard-library logging from libraries goes to the same stream at the same level.

What an operator turns on by name, such as ``serve --sip-trace``, goes through ``unfiltered_logger``:
it shows at any ``--log-level``. Its events keep the debug label, because SIP messages carry phone
numbers and names, which belong at debug; digest responses are taken out of them
(``sip_trace_text``), as they are out of every log line.

The level can change while serving (``set_level``, on SIGHUP): loggers cache their bound class on
first use, so the class is one of Sentral's own whose level methods are swapped in place, and every
cached logger follows at once. Below the level, a call stays a no-op method, as cheap as before.

The journal is written in its native protocol (one datagram per event, to
``/run/systemd/journal/socket``): ``MESSAGE``, ``PRIORITY`` from the level and
``SYSLOG_IDENTIFIER=sentral``, so ``journalctl -u sentral -p warning`` filters by level. Syslog
gets RFC 3164 lines on ``/dev/log`` (facility daemon). A datagram that cannot be sent (the journal
restarting, a full buffer) is dropped rather than ever blocking the event loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any, Literal, TextIO

import structlog

LogFormat = Literal["console", "json"]
LogTarget = Literal["stderr", "journal", "syslog"]
LEVELS = ("debug", "info", "warning", "error", "critical")
TARGETS = ("stderr", "journal", "syslog")
JOURNAL_SOCKET = "/run/systemd/journal/socket"
SYSLOG_SOCKET = "/dev/log"
IDENTIFIER = "sentral"

# syslog(3) priorities by structlog method name.
_PRIORITY = {"debug": 7, "info": 6, "msg": 6, "warning": 4, "warn": 4, "error": 3, "err": 3,
             "exception": 3, "critical": 2, "fatal": 2}  # fmt: skip
_DAEMON = 3 << 3

# The bound-logger class every cached logger holds; ``set_level`` swaps its methods.
_wrapper: type | None = None

# The response parameter of an Authorization or Proxy-Authorization header line: enough, with the
# nonce beside it, to guess the password offline.
_DIGEST_RESPONSE = re.compile(
    r'^((?:proxy-)?authorization:.*?\bresponse\s*=\s*)("[^"]*"|[^\s,]+)', re.IGNORECASE | re.MULTILINE
)


_FALLBACK_KEYS = frozenset(("stack", "exception", "exc_info", "logger", "logger_name"))
_QUOTED = frozenset(" \t=\r\n\"'")


class PlainRenderer:
    """The line structlog's ``ConsoleRenderer(colors=False)`` writes, made without its per-column
    machinery: a timestamp, ``[level    ]``, the event padded to 30, then ``key=value`` sorted by
    key, a string quoted only when it holds a space, ``=`` or a quote (what fail2ban filters and
    readers rely on). It runs for every call's log line at info, so its cost is per call. Events
    with a stack, an exception or a logger name go to the ConsoleRenderer itself.
    """

    def __init__(self) -> None:
        self._fallback = structlog.dev.ConsoleRenderer(colors=False)

    def __call__(self, logger: Any, name: str, event_dict: MutableMapping[str, Any]) -> str:
        if not _FALLBACK_KEYS.isdisjoint(event_dict):
            return str(self._fallback(logger, name, event_dict))
        parts: list[str] = []
        timestamp = event_dict.pop("timestamp", None)
        if timestamp is not None:
            parts.append(str(timestamp))
        level = event_dict.pop("level", None)
        if level is not None:
            parts.append(f"[{level:<9}]")
        return _line(parts, event_dict)


def _line(parts: list[str], event_dict: MutableMapping[str, Any]) -> str:
    """``parts`` (timestamp and level, as far as there are any), the event padded to 30, then the
    rest of ``event_dict`` as ``key=value`` sorted by key, as the ConsoleRenderer writes them."""
    if "event" in event_dict:
        parts.append(f"{event_dict.pop('event')!s:<30}")
    for key in sorted(event_dict):
        value = event_dict[key]
        if isinstance(value, str) and _QUOTED.isdisjoint(value):
            parts.append(f"{key}={value}")
        else:
            parts.append(f"{key}={value!r}")
    return " ".join([part for part in parts if part]).rstrip(" ")


def _stamping() -> list[structlog.typing.Processor]:
    """The steps between the merged context and the renderer: the level, the ISO UTC timestamp,
    and the stack when one is asked for."""
    return [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]


_LEVEL_NAMES = {"warn": "warning", "exception": "error"}  # as structlog's add_log_level names them
# Keys that only the generic chain handles: asked-for stacks, and a level or time given by hand.
_CHAIN_KEYS = _FALLBACK_KEYS | {"stack_info", "level", "timestamp"}


class ConsoleLine:
    """The console chain after the context is merged (``add_log_level``, an ISO UTC
    ``TimeStamper``, ``StackInfoRenderer``, ``PlainRenderer``) as one step, with the same output.

    Every call's line at info goes through here, so the steps between are cut: no keys added only
    to be taken out again, and the timestamp is written from the clock directly, the date and time
    of day once a second. An event with a key only the generic chain handles takes that chain.
    """

    def __init__(self, clock: Callable[[], int] = time.time_ns) -> None:
        self._clock = clock
        self._second = -1
        self._prefix = ""
        self._chain: list[structlog.typing.Processor] = [*_stamping(), PlainRenderer()]

    def timestamp(self) -> str:
        """Now, as ``TimeStamper(fmt="iso", utc=True)`` writes it."""
        micro = self._clock() // 1000
        second, fraction = divmod(micro, 1_000_000)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        # datetime's isoformat leaves out a fraction of zero.
        return f"{self._prefix}.{fraction:06d}Z" if fraction else f"{self._prefix}Z"

    def __call__(self, logger: Any, name: str, event_dict: MutableMapping[str, Any]) -> Any:
        if not _CHAIN_KEYS.isdisjoint(event_dict):
            result: Any = event_dict
            for step in self._chain:
                result = step(logger, name, result)
            return result
        level = _LEVEL_NAMES.get(name, name)
        parts = [self.timestamp(), f"[{level:<9}]"]
        return _line(parts, event_dict)


class StreamLogger:
    """structlog's ``PrintLogger`` for a text stream, one write and one flush per line instead of
    print's two writes, under the same per-stream lock (threads log too)."""

    def __init__(self, stream: TextIO) -> None:
        self._write = stream.write
        self._flush = stream.flush
        self._lock = threading.Lock()

    def msg(self, message: str) -> None:
        with self._lock:
            self._write(message + "\n")
            self._flush()

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


class DatagramLogger:
    """A structlog logger that sends each rendered event as one datagram to the journal or syslog."""

    def __init__(self, target: LogTarget, address: str | None = None) -> None:
        self.target = target
        self.address = address or (JOURNAL_SOCKET if target == "journal" else SYSLOG_SOCKET)
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._socket.setblocking(False)
        self._pid = os.getpid()

    def _send(self, priority: int, message: str) -> None:
        if self.target == "journal":
            data = _journal_field("MESSAGE", message) + _journal_field("PRIORITY", str(priority))
            data += _journal_field("SYSLOG_IDENTIFIER", IDENTIFIER) + _journal_field("SYSLOG_PID", str(self._pid))
        else:
            # RFC 3164 has no room for line breaks: a multi-line event (a SIP trace) stays one line.
            flat = message.replace("\r\n", " | ").replace("\n", " | ")
            data = f"<{_DAEMON | priority}>{IDENTIFIER}[{self._pid}]: {flat}".encode()
        # Never block or fail the server over a log line.
        with contextlib.suppress(OSError):
            self._socket.sendto(data, self.address)

    def __getattr__(self, name: str) -> Any:
        priority = _PRIORITY.get(name)
        if priority is None:
            raise AttributeError(name)

        def log(message: str) -> None:
            self._send(priority, message)

        return log


def _journal_field(key: str, value: str) -> bytes:
    data = value.encode()
    if b"\n" in data:
        return key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return key.encode() + b"=" + data + b"\n"


def _numeric(level: str) -> int:
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None or level.lower() not in LEVELS:
        raise ValueError(f"log level {level!r}: choose one of {', '.join(LEVELS)}")
    return numeric


def configure(
    log_format: LogFormat, level: str, target: LogTarget = "stderr", *, address: str | None = None
) -> None:
    """Send structlog and standard logging to ``target`` at ``level`` in ``log_format``.

    ``address`` replaces the journal's or syslog's socket (for tests).
    """
    global _wrapper
    numeric = _numeric(level)
    if target not in TARGETS:
        raise ValueError(f"log target {target!r}: choose one of {', '.join(TARGETS)}")
    processors: list[structlog.typing.Processor] = [structlog.contextvars.merge_contextvars]
    if log_format == "json":
        processors += [*_stamping(), structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    elif log_format == "console":
        if target == "stderr" and sys.stderr.isatty():
            processors += [*_stamping(), structlog.dev.ConsoleRenderer(colors=True)]
        else:
            processors.append(ConsoleLine())
    else:
        raise ValueError(f"log format {log_format!r}: choose console or json")
    _wrapper = type("SentralLogger", (structlog.make_filtering_bound_logger(numeric),), {})
    factory: Any
    if target == "stderr":
        stream = StreamLogger(sys.stderr)
        factory = lambda *_args: stream  # noqa: E731
    else:
        shared = DatagramLogger(target, address)
        factory = lambda *_args: shared  # noqa: E731
    structlog.configure(
        processors=processors,
        wrapper_class=_wrapper,
        logger_factory=factory,
        # Configured once at start-up, so loggers can cache their processor chain on first use.
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(stream=sys.stderr, level=numeric, format="%(levelname)s %(name)s: %(message)s", force=True)
    _stdlib_levels(numeric)


def set_level(level: str) -> None:
    """Change the level of every logger, those already in use included (see the module docstring)."""
    numeric = _numeric(level)
    if _wrapper is None:
        raise RuntimeError("logging is not configured")
    source = structlog.make_filtering_bound_logger(numeric)
    for name, value in vars(source).items():
        if not name.startswith("__"):
            setattr(_wrapper, name, value)
    logging.getLogger().setLevel(numeric)
    _stdlib_levels(numeric)


def _stdlib_levels(numeric: int) -> None:
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


__all__ = [
    "LEVELS",
    "TARGETS",
    "ConsoleLine",
    "DatagramLogger",
    "LogFormat",
    "LogTarget",
    "PlainRenderer",
    "StreamLogger",
    "configure",
    "set_level",
    "sip_trace_text",
    "unfiltered_logger",
]
