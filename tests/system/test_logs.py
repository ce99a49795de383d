"""What the real server's log tells an operator, as it prints it (console format, INFO level):
who registered from where, and who failed a challenge and why."""

from __future__ import annotations

import re

from tests.system.server import SentralServer
from tests.system.sipclient import DOMAIN, SipClient


def test_the_log_names_who_registered_from_where_and_who_failed_the_challenge_and_why(server: SentralServer) -> None:
    server.cli("clinic", "set", DOMAIN, "--digest", "md5")  # the raw client speaks MD5 only
    server.reconfigure("user", "add", "1001", "--name", "Kari Nordmann", "--password", "secret-1001")
    with SipClient(server.host, server.port) as client:
        assert client.register("1001", "not-the-password").startswith("SIP/2.0 401")
        assert client.register("1001", "secret-1001").startswith("SIP/2.0 200")
        source = f"{client.local_host}:{client.local_port}"
    log = server.log_tail(200)
    failed = [line for line in log.splitlines() if " auth_failed " in line]
    assert len(failed) == 1, log
    assert "[warning" in failed[0]
    for field in ("method=REGISTER", "reason='wrong password'", f"remote={client.local_host}", "user=1001"):
        assert field in failed[0], failed[0]
    assert "not-the-password" not in log
    registered = [line for line in log.splitlines() if re.search(r"\] registered\s", line)]
    assert len(registered) == 1, log
    assert "[info" in registered[0]
    for field in ("extension=1001", f"domain={DOMAIN}", "transport=udp", f"source={source}", "expires=3600"):
        assert field in registered[0], registered[0]
