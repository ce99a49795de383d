"""Fixtures for system tests: the real server on loopback, pjsua2 softphones, SIPp."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from sentral.media.sounds import REQUIRED, SoundLibrary, build, missing
from tests.system.peers import Sipp, Softphone
from tests.system.server import SentralServer

CLINIC_DOMAIN = "clinic.test"
SCENARIOS = Path(__file__).parent / "scenarios"
SYSTEM_DIR = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SYSTEM_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.system)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item so fixtures can add logs when the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def call_failed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "report_call", None)
    return report is None or report.failed


@pytest.fixture(scope="session", autouse=True)
def sounds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Music and prompts for every server of this run, found through $SENTRAL_SOUNDS: the ones
    `make test` built when they are complete, else built once into a temporary directory."""
    given = os.environ.get("SENTRAL_SOUNDS")
    if given and not missing(SoundLibrary([given]), REQUIRED, "nb"):
        yield Path(given)
        return
    directory = tmp_path_factory.mktemp("sounds")
    build(directory, ("nb",))
    assert not missing(SoundLibrary([directory]), REQUIRED, "nb")
    os.environ["SENTRAL_SOUNDS"] = str(directory)
    try:
        yield directory
    finally:
        if given is None:
            os.environ.pop("SENTRAL_SOUNDS", None)
        else:
            os.environ["SENTRAL_SOUNDS"] = given


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[SentralServer]:
    """A started server on a fresh SQLite database holding the clinic ``clinic.test``."""
    workdir = tmp_path / "server"
    workdir.mkdir()
    srv = SentralServer(f"sqlite:///{workdir / 'sentral.db'}", workdir)
    srv.cli("init", "--domain", CLINIC_DOMAIN)
    srv.start()
    try:
        yield srv
    finally:
        try:
            srv.stop()
        finally:
            if call_failed(request):
                print(f"-- sentral serve log ({srv.log_path}):\n{srv.log_tail(80)}")


@pytest.fixture
def softphone_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Softphone]]:
    """Start softphone processes by name; all are closed (then killed if stuck) after the test."""
    phones: list[Softphone] = []

    def start(name: str = "phone", **kwargs: Any) -> Softphone:
        if any(p.name == name for p in phones):
            raise ValueError(f"a softphone named {name!r} exists already in this test")
        phone = Softphone(name, tmp_path / "phones", **kwargs)
        phones.append(phone)
        return phone

    yield start
    if call_failed(request):
        for phone in phones:
            print(phone.diagnostics())
    # Each phone takes about a second to unregister and shut down; close them side by side.
    with ThreadPoolExecutor(max_workers=max(len(phones), 1)) as pool:
        list(pool.map(lambda phone: phone.close(), phones))


@pytest.fixture(scope="session")
def sipp_binary() -> str:
    """The sipp executable; missing, it skips locally and fails in CI (env CI set)."""
    found = shutil.which("sipp")
    if found is None:
        message = "sipp is not installed: apt-get install sip-tester (make test-deps does it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture
def sipp(sipp_binary: str, tmp_path: Path) -> Sipp:
    """A SIPp runner whose files (statistics, errors, users) live in the test's temporary directory."""
    return Sipp(tmp_path / "sipp", sipp_binary)
