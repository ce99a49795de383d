"""Overload as a caller sees it: a server that fell far behind refuses new calls with 503 and a
short Retry-After until it has caught up, then takes calls again.

The server is stopped (SIGSTOP) while a new INVITE and a burst of OPTIONS queue up in its UDP
socket, the way a queue builds when more is offered than it can carry, and then let go.
"""

from __future__ import annotations

import os
import re
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sentral.pbx.transport import BACKLOG_CHECK
from tests.system.peers import wait_until
from tests.system.server import SentralServer
from tests.system.sipclient import SipClient
from tests.system.test_calls import DOMAIN, start_clinic

BURST = 4000  # about 5 MiB of receive queue in the kernel's accounting: past the mark (3 MiB of 8)


@pytest.fixture
def clinic(tmp_path: Path) -> Iterator[SentralServer]:
    server = start_clinic(tmp_path, "--drain-timeout", "3")
    try:
        yield server
    finally:
        server.stop()


def invite(client: SipClient, call_id: str) -> bytes:
    return (
        f"INVITE sip:1002@{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {client.via_host}:{client.local_port};branch=z9hG4bK{uuid.uuid4().hex};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:1001@{DOMAIN}>;tag={call_id[:8]}\r\nTo: <sip:1002@{DOMAIN}>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:1001@{client.via_host}:{client.local_port}>\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def final_answer(client: SipClient, call_id: str) -> str:
    while True:
        text = client.receive().decode()
        if f"Call-ID: {call_id}" in text and not text.startswith("SIP/2.0 1"):
            return text


def stopped(pid: int) -> bool:
    """Whether the process is stopped by a signal, as /proc tells (state T)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2] == "T"


def test_a_server_far_behind_refuses_new_calls_until_it_has_caught_up(clinic: SentralServer) -> None:
    assert clinic.proc is not None
    with (
        SipClient(clinic.host, clinic.port, timeout=10) as caller,
        SipClient(clinic.host, clinic.port) as noisy,
    ):
        first = uuid.uuid4().hex
        pid = clinic.proc.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            # kill() returns before a busy process has stopped: it must not read the INVITE early.
            wait_until(lambda: stopped(pid), 5, "the server to stop")
            caller.send(invite(caller, first))  # first in the queue: read while it is deepest
            for n in range(BURST):
                noisy.send(
                    (
                        f"OPTIONS sip:{DOMAIN} SIP/2.0\r\n"
                        f"Via: SIP/2.0/UDP {noisy.via_host}:{noisy.local_port};branch=z9hG4bKburst{n};rport\r\n"
                        f"Max-Forwards: 70\r\nFrom: <sip:probe@{DOMAIN}>;tag=b\r\nTo: <sip:{DOMAIN}>\r\n"
                        f"Call-ID: burst-{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                    ).encode()
                )
            time.sleep(BACKLOG_CHECK * 2)  # its first reading after the pause measures the queue
        finally:
            os.kill(pid, signal.SIGCONT)
        refused = final_answer(caller, first)
        assert refused.startswith("SIP/2.0 503 "), refused
        assert re.search(r"^Retry-After: 2\r$", refused, re.M), refused
        assert re.search(r"^To: .*;tag=", refused, re.M), refused
        # The server says so in its log, and when it has caught up, with the count of calls refused.
        wait_until(lambda: "overload_over" in clinic.log_path.read_text(), 10, "the overload to end")
        log = clinic.log_path.read_text()
        assert re.search(r"overloaded .*queued_bytes=\d{7}", log), clinic.log_tail()
        assert re.search(r"overload_over .*calls_refused=1\b", log), clinic.log_tail()
        # Caught up: a new call is served as ever (challenged, here).
        second = uuid.uuid4().hex
        caller.send(invite(caller, second))
        challenged = final_answer(caller, second)
        assert challenged.startswith("SIP/2.0 407 "), challenged
