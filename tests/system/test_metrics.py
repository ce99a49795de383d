"""The metrics and health endpoint of a running server, scraped the way Prometheus and a monitor do."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.system.peers import LOOPBACK, REPO_ROOT, Sipp, Softphone, free_port, wait_until, write_users_csv
from tests.system.server import SentralServer
from tests.system.test_calls import DOMAIN, SCENARIOS, dial, phone_for, records, start_clinic


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def scrape(address: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics by (name, sorted labels)."""
    status, body = get(f"http://{address}/metrics")
    assert status == 200, body
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


@pytest.fixture
def observed(tmp_path: Path) -> Iterator[tuple[SentralServer, str]]:
    address = f"{LOOPBACK}:{free_port()}"
    # MD5 offered: SIPp, which plays the phone with a wrong password, speaks no other digest.
    server = start_clinic(tmp_path, "--metrics", address, "--drain-timeout", "3", digest="md5")
    try:
        yield server, address
    finally:
        server.stop()


def test_metrics_count_what_the_phones_did_and_health_says_ready(
    observed: tuple[SentralServer, str],
    softphone_factory: Callable[..., Softphone],
    sipp: Sipp,
    tmp_path: Path,
) -> None:
    clinic, address = observed
    status, body = get(f"http://{address}/health")
    assert status == 200, body
    report = json.loads(body)
    assert report["ready"] is True and report["database"] == "ok"
    assert report["listening"] and report["calls"] == 0

    alice = phone_for(softphone_factory, clinic, "1001")
    bob = phone_for(softphone_factory, clinic, "1002")
    out = alice.call("1001", dial(clinic, "1002"))
    incoming = bob.wait_incoming("1002")
    bob.answer(incoming["call"])
    alice.wait_event("media_state", call=out, status="active")
    during = scrape(address)
    assert during[("sentral_calls_in_progress", (("state", "answered"),))] == 1
    assert during[("sentral_relay_streams", ())] == 2
    time.sleep(1.0)
    alice.hangup(out)
    bob.wait_call_state(incoming["call"], "DISCONNECTED")
    records(clinic, 1)

    # A phone with a wrong password: one failed challenge answer.
    wrong = write_users_csv(tmp_path / "wrong.csv", [("1003", "not-the-password", DOMAIN)])
    sipp.run(
        clinic.address, SCENARIOS / "register_auth.xml", users=wrong, calls=1, auth_uri=DOMAIN, timeout=5
    )

    after = scrape(address)
    assert after[("sentral_registrations", ())] == 2
    assert after[("sentral_calls_started_total", ())] == 1
    assert after[("sentral_calls_ended_total", (("status", "200"),))] == 1
    assert after[("sentral_call_answer_delay_seconds_count", ())] == 1
    assert after[("sentral_auth_failures_total", ())] >= 1
    assert (
        after[("sentral_relay_packets_total", (("direction", "in"),))] > 50
    )  # a second of 20 ms packets, twice
    assert after[("sentral_relay_streams", ())] == 0
    assert after[("sentral_db_commit_seconds_count", (("writer", "call_records"),))] >= 1
    assert after[("sentral_spool_items", (("writer", "call_records"),))] == 0
    assert after[("sentral_process_resident_memory_bytes", ())] > 10_000_000
    assert ("sentral_event_loop_lag_seconds", ()) in after
    assert not any(name.startswith("sentral_calls_in_progress") for name, _ in after)

    # The dashboard shipped for Grafana graphs only what the server exports.
    dashboard = json.loads((REPO_ROOT / "packaging" / "grafana" / "sentral.json").read_text())
    graphed = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bsentral_\w+", target["expr"])
    }
    # Every sample, and every gauge and summary the server declares (the queue's have none while
    # nobody called a group).
    text = get(f"http://{address}/metrics")[1].decode()
    exported = {name for name, _ in (*during, *after)} | set(re.findall(r"^# TYPE (\w+) gauge$", text, re.M))
    for summary in re.findall(r"^# TYPE (\w+) summary$", text, re.M):
        exported |= {f"{summary}_sum", f"{summary}_count"}
    assert len(graphed) >= 16 and graphed <= exported, graphed - exported

    assert get(f"http://{address}/other")[0] == 404
    wait_until(lambda: get(f"http://{address}/health")[0] == 200, 2, "health still ready")


def test_a_metrics_address_in_use_stops_the_server_with_a_sentence(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        workdir = tmp_path / "server"
        server = SentralServer(
            f"sqlite:///{workdir / 'sentral.db'}", workdir, extra_args=["--metrics", f"{LOOPBACK}:{port}"]
        )
        server.cli("init", "--domain", DOMAIN)
        done = server.cli("serve", "--listen", f"udp:{LOOPBACK}:{free_port()}", "--metrics", f"{LOOPBACK}:{port}",
                          check=False, timeout=20)  # fmt: skip
    assert done.returncode != 0
    assert "cannot_listen" in done.stdout + done.stderr and "Traceback" not in done.stdout + done.stderr
