"""Installing Sentral from a wheel, as a server without `make` would: the wheel built from a clean
clone carries the compiled hot path and the sounds, and the installed server anchors a call and
plays music on hold with no further step."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.system.peers import REPO_ROOT, Softphone
from tests.system.server import SentralServer
from tests.system.test_calls import DOMAIN, talking
from tests.system.test_media import A_TONE, B_TONE, LISTEN_SECONDS, assert_music, record


def run(*command: str | Path, cwd: Path | None = None, timeout: float = 600) -> str:
    done = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False
    )
    assert done.returncode == 0, f"$ {' '.join(map(str, command))}\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with Sentral installed from a wheel built from a clone of the repository."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"
    run("git", "clone", "--quiet", REPO_ROOT, source)
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", root / "dist", source)
    [wheel] = (root / "dist").glob("sentral-*.whl")
    venv = root / "venv"
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "pip", "install", "--quiet", wheel)
    return venv


def test_the_installed_package_loads_its_compiled_modules_and_carries_its_sounds(installed: Path) -> None:
    out = run(
        installed / "bin" / "python", "-W", "error", "-c",
        "import sentral.pbx.sip.message as m, sentral.pbx.call as c, sentral.config.settings as s;"
        "print(m.__file__); print(c.__file__); print(s.default_sounds())",
        cwd=installed,
    )  # fmt: skip
    message, call, sounds = out.split()
    assert message.endswith(".so") and call.endswith(".so"), out
    assert Path(sounds).is_relative_to(installed) and (Path(sounds) / "music.wav").is_file(), out
    assert (Path(sounds) / "nb" / "logged_in.wav").is_file() and (Path(sounds) / "en" / "logged_in.wav").is_file()


def test_the_installed_server_plays_music_on_hold_with_no_further_step(
    installed: Path, softphone_factory: Callable[..., Softphone], tmp_path: Path
) -> None:
    workdir = tmp_path / "server"
    server = SentralServer(
        f"sqlite:///{workdir / 'sentral.db'}",
        workdir,
        extra_args=["--drain-timeout", "3"],
        command=[str(installed / "bin" / "sentral")],
        drop_env=["SENTRAL_SOUNDS"],
    )
    server.cli("init", "--domain", DOMAIN)
    for ext in ("1001", "1002"):
        server.cli("user", "add", ext, "--name", f"Staff {ext}", "--password", f"secret-{ext}")
    server.start()
    try:
        alice, a_call, bob, b_call = talking(server, softphone_factory)
        alice.hold(a_call)
        bob.wait_event("media_state", call=b_call, status="remote_hold")
        held = record(bob, b_call, tmp_path / "held.wav", LISTEN_SECONDS)
        assert_music(held, "Bob on hold", (A_TONE, B_TONE))
        alice.hangup(a_call)
        bob.wait_call_state(b_call, "DISCONNECTED")
    finally:
        server.stop()
    assert "compiled modules do not match" not in server.log_path.read_text()
