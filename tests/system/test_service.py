"""Sentral as a service: systemd's notify protocol, the shipped unit, and the fail2ban filter
checked against the log lines a real server prints."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.system.peers import LOOPBACK, REPO_ROOT, Sipp, Softphone, free_port, wait_until, write_users_csv
from tests.system.server import SentralServer, sentral_command
from tests.system.test_calls import DOMAIN, SCENARIOS, dial, start_clinic, talking

PACKAGING = REPO_ROOT / "packaging"


def test_the_server_tells_systemd_it_is_ready_pings_the_watchdog_and_says_when_it_stops(tmp_path: Path) -> None:
    name = f"sentral-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind("\0" + name)  # the abstract name systemd would hand over as "@name"
        manager.settimeout(10)
        workdir = tmp_path / "server"
        server = SentralServer(
            f"sqlite:///{workdir / 'sentral.db'}",
            workdir,
            extra_args=["--drain-timeout", "1"],
            env={"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "400000"},
        )
        server.cli("init", "--domain", DOMAIN)
        server.start()
        try:
            first = manager.recv(4096).decode().split("\n")
            assert "READY=1" in first
            assert any(line.startswith("STATUS=serving 1 clinics on udp:") for line in first), first
            assert f"MAINPID={server.proc.pid}" in first if server.proc else False
            started = time.monotonic()
            pings = 0
            while pings < 3:
                if manager.recv(4096) == b"WATCHDOG=1":
                    pings += 1
            # Three pings at half the 0.4 s interval.
            assert time.monotonic() - started < 2.0
        finally:
            server.stop()
        messages = []
        manager.settimeout(0.5)
        try:
            while True:
                messages.append(manager.recv(4096).decode())
        except TimeoutError:
            pass
        assert any("STOPPING=1" in message for message in messages), messages


def test_the_shipped_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is not installed (Debian package systemd; .ci/deps installs it)")
    unit = (PACKAGING / "systemd" / "sentral.service").read_text()
    assert "Type=notify" in unit and "WatchdogSec=" in unit and "AmbientCapabilities=CAP_NET_BIND_SERVICE" in unit
    # verify insists the ExecStart program exists: point it at this environment's sentral.
    program = sentral_command()[0]
    local = tmp_path / "sentral.service"
    local.write_text(unit.replace("/opt/sentral/bin/sentral", program))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(local)], capture_output=True, text=True, timeout=60, check=False
    )
    ours = [line for line in (done.stdout + done.stderr).splitlines() if "sentral.service" in line]
    assert done.returncode == 0 and not ours, done.stdout + done.stderr


def fail2ban_matches(log: Path) -> tuple[int, list[str]]:
    """How many lines of ``log`` the shipped filter matches, and the hosts it names."""
    done = subprocess.run(
        ["fail2ban-regex", "--print-all-matched", str(log), str(PACKAGING / "fail2ban" / "filter.d" / "sentral.conf")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    found = re.search(r"Failregex: (\d+) total", done.stdout)
    assert found, done.stdout
    return int(found.group(1)), re.findall(r"remote[=\"': ]+(\d+\.\d+\.\d+\.\d+)", done.stdout)


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_the_fail2ban_filter_matches_each_failed_login_the_server_logs(
    sipp: Sipp, tmp_path: Path, log_format: str
) -> None:
    if shutil.which("fail2ban-regex") is None:
        pytest.fail("fail2ban-regex is not installed (Debian package fail2ban; .ci/deps installs it)")
    clinic = start_clinic(tmp_path, "--log-format", log_format, digest="md5")
    try:
        wrong = write_users_csv(
            tmp_path / "wrong.csv", [(ext, "not-the-password", DOMAIN) for ext in ("1001", "1002", "1003")]
        )
        sipp.run(clinic.address, SCENARIOS / "register_auth.xml", users=wrong, calls=3, auth_uri=DOMAIN, timeout=5)
        right = write_users_csv(tmp_path / "right.csv", [("1001", "secret-1001", DOMAIN)])
        assert sipp.run(clinic.address, SCENARIOS / "register_auth.xml", users=right, calls=1, auth_uri=DOMAIN).successful == 1
    finally:
        clinic.stop()
    log = clinic.log_path
    failures = log.read_text().count("auth_failed")
    assert failures == 3, clinic.log_tail()
    matched, hosts = fail2ban_matches(log)
    assert matched == failures
    assert set(hosts) == {"127.0.0.1"}


def test_sighup_reloads_the_certificate_and_the_config_file_without_dropping_a_call(
    tmp_path: Path, softphone_factory: Callable[..., Softphone]
) -> None:
    def make_certificate(name: str) -> tuple[Path, Path]:
        cert, key = tmp_path / f"{name}-cert.pem", tmp_path / f"{name}-key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )  # fmt: skip
        return cert, key

    def served_certificate(port: int) -> bytes:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with socket.create_connection((LOOPBACK, port), timeout=5) as raw, context.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return der

    first, second = make_certificate("first"), make_certificate("second")
    live_cert, live_key = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copy(first[0], live_cert)
    shutil.copy(first[1], live_key)
    tls_port = free_port()
    config = tmp_path / "sentral.toml"
    config.write_text('log-level = "warning"\nno-answer-timeout = 60\n')
    clinic = start_clinic(
        tmp_path, "--config", str(config), "--listen", f"tls:{LOOPBACK}:{tls_port}",
        "--cert", str(live_cert), "--key", str(live_key), "--drain-timeout", "3",
    )  # fmt: skip
    try:
        before = served_certificate(tls_port)
        alice, out, bob, b_call = talking(clinic, softphone_factory)
        assert "registered" not in clinic.log_tail()  # info lines are below "warning"

        # certbot renews in place; the operator turns on debug for a while.
        shutil.copy(second[0], live_cert)
        shutil.copy(second[1], live_key)
        # The operator shortens the no-answer time and changes what only a restart can (the relay's
        # ports) and what the command line set (the drain timeout, which stays).
        config.write_text(
            'log-level = "debug"\nno-answer-timeout = 2\nmedia-ports = "30000-30999"\ndrain-timeout = 9\n'
        )
        assert clinic.proc is not None
        clinic.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "reloaded" in clinic.log_tail(), 5, "the reload")
        [reloaded] = [line for line in clinic.log_tail().splitlines() if " reloaded " in line]
        assert "tls" in reloaded and "log-level=debug" in reloaded and "no-answer-timeout=2.0" in reloaded
        assert "drain-timeout" not in reloaded  # the command line's value stays
        [restart] = [line for line in clinic.log_tail().splitlines() if "restart_needed" in line]
        assert "media-ports" in restart
        after = served_certificate(tls_port)
        assert after != before and after == ssl.PEM_cert_to_DER_cert(second[0].read_text())

        alice.hangup(out)  # the call outlived the reload
        bob.wait_call_state(b_call, "DISCONNECTED")
        wait_until(lambda: "call_ended_parties" in clinic.log_tail(), 5, "a debug line after the reload")
        # The next call nobody answers gives up after the new no-answer time.
        unanswered = alice.call("1001", dial(clinic, "1002"))
        bob.wait_incoming("1002")
        rung = time.monotonic()
        alice.wait_call_state(unanswered, "DISCONNECTED", timeout=10)
        assert time.monotonic() - rung < 5

        # A file that cannot be used changes nothing and says why.
        config.write_text("no-answer-timeout = -1\n")
        clinic.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "config_not_reloaded" in clinic.log_tail(), 5, "the refusal")
        assert "no-answer-timeout" in clinic.log_tail()
        assert clinic.running() and clinic.starts == 1
    finally:
        clinic.stop()
