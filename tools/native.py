"""Compile the signalling hot path to C extension modules with mypyc, in place.

The SIP core and call control are plain, fully typed Python; mypyc turns those modules into C
extensions that CPython imports in preference to the source beside them. Every message a call
exchanges runs through them, so they set how many calls a second one event loop carries. The
source stays the only thing maintained: nothing generated is committed, and
``sentral/__init__.py`` refuses compiled modules that no longer match their source (it runs the
source instead and says so), so an edit never runs stale code.

    .venv/bin/python tools/native.py            # compile (what `make native` runs)
    .venv/bin/python tools/native.py --clean    # remove the compiled modules

The modules are compiled in three groups, the SIP core, call control and the media relay, which
the C compiler builds side by side. The build writes ``sentral/_native.json`` last: each compiled module's
source hash, which is what the import-time check compares.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "sentral" / "_native.json"
BUILD = ROOT / "build" / "native"

# Each group is one shared library; calls inside a group are direct C calls.
GROUPS: dict[str, list[str]] = {
    "sentral.native_sip": [
        "sentral/pbx/sip/auth.py",
        "sentral/pbx/sip/dialog.py",
        "sentral/pbx/sip/dialog_info.py",
        "sentral/pbx/sip/entropy.py",
        "sentral/pbx/sip/errors.py",
        "sentral/pbx/sip/event.py",
        "sentral/pbx/sip/grammar.py",
        "sentral/pbx/sip/headers.py",
        "sentral/pbx/sip/message.py",
        "sentral/pbx/sip/pidf.py",
        "sentral/pbx/sip/replaces.py",
        "sentral/pbx/sip/sdp.py",
        "sentral/pbx/sip/session_timer.py",
        "sentral/pbx/sip/timers.py",
        "sentral/pbx/sip/transaction.py",
        "sentral/pbx/sip/uri.py",
    ],
    "sentral.native_pbx": [
        "sentral/pbx/anchoring.py",
        "sentral/pbx/call.py",
        "sentral/pbx/endpoint.py",
        "sentral/pbx/features/attended.py",
        "sentral/pbx/features/codes.py",
        "sentral/pbx/features/forward.py",
        "sentral/pbx/features/park.py",
        "sentral/pbx/features/pickup.py",
        "sentral/pbx/features/transfer.py",
        "sentral/pbx/guard.py",
        "sentral/pbx/hunting.py",
        "sentral/pbx/location.py",
        "sentral/pbx/presence.py",
        "sentral/pbx/records.py",
        "sentral/pbx/registrar.py",
        "sentral/pbx/transport.py",
        "sentral/routing/dialplan.py",
        "sentral/routing/groups.py",
        "sentral/routing/park.py",
        "sentral/routing/pickup.py",
        "sentral/routing/queue.py",
    ],
    "sentral.native_media": [
        "sentral/media/anchor.py",
        "sentral/media/dtmf.py",
        "sentral/media/g711.py",
        "sentral/media/latch.py",
        "sentral/media/player.py",
        "sentral/media/relay.py",
        "sentral/media/rtp.py",
    ],
}


def module_name(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def source_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compiled_files() -> list[Path]:
    """Every extension module under ``sentral``: the modules' and the groups' libraries."""
    return sorted((ROOT / "sentral").rglob("*.so"))


def clean() -> None:
    # The manifest goes first: an interrupted clean or build leaves extension modules with no
    # manifest, which the import-time check treats as stale.
    MANIFEST.unlink(missing_ok=True)
    for path in compiled_files():
        path.unlink()
    shutil.rmtree(BUILD, ignore_errors=True)


def build(jobs: int) -> None:
    # Imported here so that --clean works without the build tools installed.
    from mypyc.build import mypycify
    from setuptools import Distribution  # type: ignore[import-untyped]

    os.chdir(ROOT)
    paths = [path for group in GROUPS.values() for path in group]
    # The sources' hashes as they are when the build starts: a source edited while it compiles
    # then no longer matches, and the import-time check runs the source rather than the old build.
    hashes = {module_name(path): source_hash(ROOT / path) for path in sorted(paths)}
    extensions = mypycify(
        paths,
        opt_level="3",
        debug_level="0",
        separate=[(files, name) for name, files in GROUPS.items()],
        target_dir=str(BUILD),
    )
    # A bare Distribution: the project's own metadata has nothing to say about these extensions.
    dist = Distribution({"name": "sentral-native", "ext_modules": extensions})
    command = dist.get_command_obj("build_ext")
    command.inplace = True
    command.parallel = jobs
    command.build_temp = str(BUILD / "temp")
    dist.run_command("build_ext")
    MANIFEST.write_text(json.dumps({"modules": hashes}, indent=1) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clean", action="store_true", help="remove the compiled modules and stop")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="C compilers run at once")
    args = parser.parse_args()
    clean()  # also what makes a build start from nothing
    if args.clean:
        return 0
    started = time.monotonic()
    build(args.jobs)
    print(f"compiled {sum(len(g) for g in GROUPS.values())} modules in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
