"""A trunk registers with a real carrier registrar: SIPp challenges, checks the digest and makes
the trunk refresh.

The endpoint runs in this process on real UDP sockets on loopback, following a directory that
holds one registering trunk pointed at SIPp; SIPp's own digest check (verifyauth) decides whether
the registration succeeds. The exchange is one SIPp call: REGISTER, 401, REGISTER with
Authorization, 200 granting 4 s, and the refresh through a new challenge.
"""

from __future__ import annotations

import asyncio
import time
from types import MappingProxyType

from structlog.testing import capture_logs

from sentral.config.directory import ClinicEntry, Directory, TrunkEntry
from sentral.config.settings import Listen
from sentral.pbx.endpoint import Endpoint
from sentral.pbx.guard import Guard
from sentral.pbx.location import Location
from sentral.pbx.registrar import Registrar, RegistrarPolicy
from sentral.pbx.sip.auth import DigestAuthority
from sentral.pbx.sip.transaction import TransactionLayer
from sentral.pbx.transport import Transports
from sentral.pbx.trunks import LineState
from tests.protocol.test_presence import InstantWriter
from tests.system.conftest import SCENARIOS
from tests.system.peers import LOOPBACK, Sipp, free_port

DOMAIN = "clinic.test"


def carrier_trunk(port: int, password: str) -> Directory:
    entry = TrunkEntry(
        domain=DOMAIN,
        name="carrier",
        host=LOOPBACK,
        port=port,
        transport="udp",
        priority=1,
        register=True,
        username="4722334455",
        password=password,
        realm=None,
    )
    return Directory(
        1,
        MappingProxyType({DOMAIN: ClinicEntry(DOMAIN, "Clinic", ("MD5",))}),
        MappingProxyType({}),
        trunks=MappingProxyType({DOMAIN: (entry,)}),
    )


async def register_with(sipp: Sipp, password: str, seconds: float) -> tuple[list[LineState], int, int]:
    """Run the endpoint against SIPp's registrar for up to ``seconds``: the trunk states seen,
    and SIPp's successful and failed calls."""
    carrier = sipp.start(
        None, SCENARIOS / "carrier_registrar_uas.xml", calls=1, timeout=seconds, extra=["-aa"]
    )
    carrier.wait_listening()
    directory = carrier_trunk(carrier.local_port, password)
    location = Location()
    layer = TransactionLayer()
    transports = Transports(lambda data, origin: None)
    endpoint = Endpoint(
        transports,
        layer,
        Registrar(DigestAuthority(b"k" * 32), location, RegistrarPolicy()),
        location,
        InstantWriter(),  # type: ignore[arg-type]
        Guard(),
        lambda: directory,
    )
    transports.handler = endpoint.on_message
    endpoint.attach(asyncio.get_running_loop())
    states: list[LineState] = []
    try:
        await transports.start((Listen("udp", LOOPBACK, free_port()),))
        endpoint.trunks_changed()
        deadline = time.monotonic() + seconds
        while carrier.proc.poll() is None and time.monotonic() < deadline:
            line = endpoint.trunks.line(DOMAIN, "carrier")
            assert line is not None
            if not states or states[-1] is not line.state:
                states.append(line.state)
            await asyncio.sleep(0.05)
        # SIPp ends as soon as it has sent its last answer: give the loop time to read that answer.
        await asyncio.sleep(1.0)
        line = endpoint.trunks.line(DOMAIN, "carrier")
        assert line is not None
        if states[-1] is not line.state:
            states.append(line.state)
    finally:
        endpoint.stop_trunks()
        await transports.close()
    result = await asyncio.to_thread(carrier.wait)
    return states, result.successful, result.failed


def test_trunk_registers_with_digest_and_refreshes(sipp: Sipp) -> None:
    with capture_logs() as logs:
        states, successful, failed = asyncio.run(register_with(sipp, "carrier-pass", 20.0))
    assert (successful, failed) == (1, 0)
    assert states == [LineState.REGISTERING, LineState.REGISTERED]
    events = [entry["event"] for entry in logs if entry["event"].startswith("trunk_")]
    assert events == ["trunk_registered", "trunk_refreshed"]
    assert "carrier-pass" not in repr(logs)


def test_trunk_with_a_wrong_password_is_not_registered(sipp: Sipp) -> None:
    with capture_logs() as logs:
        states, successful, failed = asyncio.run(register_with(sipp, "wrong-pass", 4.0))
    assert (successful, failed) == (0, 1)  # SIPp refused the digest
    assert LineState.REGISTERED not in states
    assert "wrong-pass" not in repr(logs)
