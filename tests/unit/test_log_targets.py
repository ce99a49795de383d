"""Log targets (the journal's native protocol, syslog) and changing the level while serving."""

from __future__ import annotations

import datetime
import io
import socket
import struct
import uuid
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from sentral.logs import ConsoleLine, DatagramLogger, PlainRenderer, StreamLogger, configure, set_level


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, str]]:
    name = f"sentral-log-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        yield sock, "\0" + name
    configure("console", "info")


def journal_fields(data: bytes) -> dict[str, str]:
    """Parse one native-protocol datagram (plain KEY=value lines and binary-length fields)."""
    fields: dict[str, str] = {}
    while data:
        line, _, rest = data.partition(b"\n")
        if b"=" in line:
            key, _, value = line.partition(b"=")
            fields[key.decode()] = value.decode()
            data = rest
        else:
            (length,) = struct.unpack("<Q", rest[:8])
            fields[line.decode()] = rest[8 : 8 + length].decode()
            data = rest[8 + length + 1 :]
    return fields


def test_the_journal_gets_each_event_with_its_priority_and_multi_line_messages_whole(
    listener: tuple[socket.socket, str],
) -> None:
    sock, address = listener
    configure("console", "info", "journal", address=address)
    log = structlog.get_logger("sentral")
    log.warning("auth_failed", remote="203.0.113.7")
    fields = journal_fields(sock.recv(65536))
    assert fields["PRIORITY"] == "4" and fields["SYSLOG_IDENTIFIER"] == "sentral"
    assert "auth_failed" in fields["MESSAGE"] and "remote=203.0.113.7" in fields["MESSAGE"]
    # A rendered event with line breaks (a SIP message) travels as a binary field, whole.
    DatagramLogger("journal", address).error("INVITE sip:1002@clinic SIP/2.0\nVia: SIP/2.0/UDP x\n")
    fields = journal_fields(sock.recv(65536))
    assert fields["PRIORITY"] == "3" and fields["MESSAGE"] == "INVITE sip:1002@clinic SIP/2.0\nVia: SIP/2.0/UDP x\n"
    log.debug("below the level")
    log.info("serving")
    assert journal_fields(sock.recv(65536))["PRIORITY"] == "6"  # the debug event was never sent


def test_syslog_gets_rfc_3164_lines_as_the_daemon_facility(listener: tuple[socket.socket, str]) -> None:
    sock, address = listener
    configure("json", "info", "syslog", address=address)
    structlog.get_logger("sentral").warning("security_blocked", remote="203.0.113.7")
    line = sock.recv(65536).decode()
    assert line.startswith("<28>sentral[")  # daemon (3) * 8 + warning (4)
    assert '"event": "security_blocked"' in line and '"remote": "203.0.113.7"' in line


def test_a_new_level_reaches_loggers_already_in_use(listener: tuple[socket.socket, str]) -> None:
    sock, address = listener
    configure("console", "warning", "journal", address=address)
    log = structlog.get_logger("sentral")
    log.warning("first")  # cached from here on
    sock.recv(65536)
    log.info("hidden")
    set_level("debug")
    log.debug("shown")
    assert "shown" in journal_fields(sock.recv(65536))["MESSAGE"]
    set_level("error")
    log.warning("hidden again")
    log.error("last")
    assert "last" in journal_fields(sock.recv(65536))["MESSAGE"]
    with pytest.raises(ValueError, match="choose one of"):
        set_level("loud")


_VALUES = st.one_of(
    st.text(max_size=12),
    st.integers(),
    st.floats(allow_nan=False),
    st.none(),
    st.booleans(),
    st.lists(st.text(max_size=5), max_size=3),
)


@given(
    event=st.text(max_size=40),
    fields=st.dictionaries(st.text(st.characters(categories=("Ll",)), min_size=1, max_size=8), _VALUES, max_size=6),
    level=st.sampled_from(["debug", "info", "warning", "error", "critical"]),
    stamped=st.booleans(),
)
def test_the_plain_renderer_writes_what_the_console_renderer_writes(
    event: str, fields: dict[str, object], level: str, stamped: bool
) -> None:
    # Log lines are read by fail2ban filters and people; the cheaper renderer must not change one.
    reserved = {"timestamp", "level", "event", "stack", "exception", "exc_info", "logger", "logger_name"}
    data = {key: value for key, value in fields.items() if key not in reserved}
    data.update(event=event, level=level)
    if stamped:
        data["timestamp"] = "2026-12-06T12:00:00.000000Z"
    expected = structlog.dev.ConsoleRenderer(colors=False)(None, level, dict(data))
    assert PlainRenderer()(None, level, dict(data)) == expected


@given(
    event=st.text(max_size=40),
    fields=st.dictionaries(st.text(st.characters(categories=("Ll",)), min_size=1, max_size=8), _VALUES, max_size=6),
    level=st.sampled_from(["debug", "info", "warning", "warn", "error", "critical", "exception"]),
    nanoseconds=st.integers(min_value=0, max_value=4_102_444_800 * 10**9),
)
def test_the_console_line_writes_what_the_generic_chain_writes(
    event: str, fields: dict[str, object], level: str, nanoseconds: int
) -> None:
    # The one-step chain serve uses for console logs: same line, timestamp included.
    reserved = {"timestamp", "level", "event", "stack", "exception", "exc_info", "logger", "logger_name", "stack_info"}
    data = {key: value for key, value in fields.items() if key not in reserved}
    data["event"] = event
    at = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(microseconds=nanoseconds // 1000)
    stamped = dict(data, level=structlog.processors.add_log_level(None, level, {})["level"])
    stamped["timestamp"] = at.isoformat().replace("+00:00", "Z")
    expected = structlog.dev.ConsoleRenderer(colors=False)(None, level, stamped)
    assert ConsoleLine(clock=lambda: nanoseconds)(None, level, dict(data)) == expected


def test_the_console_line_timestamp_is_the_time_stampers() -> None:
    # A whole second has no fraction in isoformat; the date and time of day follow each second.
    line = ConsoleLine(clock=lambda: clock[0])
    for clock in ([1_796_040_000_000_000_000], [1_796_040_000_000_001_999], [1_796_040_059_999_999_999], [0]):
        at = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(
            microseconds=clock[0] // 1000
        )
        assert line.timestamp() == at.isoformat().replace("+00:00", "Z")
    assert ConsoleLine(clock=lambda: 1_796_040_000_000_000_000).timestamp() == "2026-11-30T12:00:00Z"


def test_the_console_line_leaves_stacks_and_exceptions_to_the_generic_chain() -> None:
    line = ConsoleLine()
    assert "Stack (most recent call last)" in line(None, "info", {"event": "where", "stack_info": True})
    try:
        raise ValueError("boom")
    except ValueError:
        assert "ValueError: boom" in line(None, "error", {"event": "failed", "exc_info": True})
    # As in the generic chain, the time stamper overwrites a timestamp given by hand.
    assert line(None, "info", {"event": "stamped", "timestamp": "then"}).endswith("Z [info     ] stamped")


def test_serve_logs_one_line_per_event_to_the_stream(capsys: pytest.CaptureFixture[str]) -> None:
    configure("console", "info")
    log = structlog.get_logger("test")
    log.info("first", n=1)
    log.debug("hidden")
    log.warning("second", text="two words")
    lines = capsys.readouterr().err.splitlines()
    assert [line[28:] for line in lines] == [
        "[info     ] first                          n=1",
        "[warning  ] second                         text='two words'",
    ]
    stream = io.StringIO()
    StreamLogger(stream).info("a line")
    assert stream.getvalue() == "a line\n"


def test_the_plain_renderer_hands_exceptions_to_the_console_renderer() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        data = {"event": "failed", "level": "error", "exc_info": True}
        assert "ValueError: boom" in PlainRenderer()(None, "error", data)
