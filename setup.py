"""Build hooks: a wheel (and ``pip install .``) carries what ``make native`` and ``make sounds``
give a checkout.

- The signalling hot path compiled with mypyc: the modules ``tools/native.py`` lists, in its two
  groups, with the manifest ``sentral/_native.json`` that ``import sentral`` checks. Where no C
  compiler is found (or ``SENTRAL_PURE_PYTHON=1``), the wheel is pure Python and the build warns.
- Music on hold and prompts, made with espeak-ng and sox into ``sentral/sounds``, which
  ``sentral serve`` uses unless told otherwise. Without espeak-ng or sox the build warns and the
  wheel has none; ``serve --sounds DIR`` or ``--direct-media`` is then needed.

Editable installs (what ``make`` does) build neither: the Makefile compiles and builds the sounds
in the checkout itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "tools"))
import native  # noqa: E402  (tools/native.py: which modules, in which groups)

EDITABLE = any(command in sys.argv for command in ("editable_wheel", "develop"))


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CC") or "cc") or shutil.which("gcc") or shutil.which("clang")


def _native_paths() -> list[str]:
    return [path for group in native.GROUPS.values() for path in group]


def extensions() -> list[Any]:
    """The mypyc extensions for a wheel, or none (with a warning saying why)."""
    if EDITABLE or "egg_info" in sys.argv or "sdist" in sys.argv:
        return []
    if os.environ.get("SENTRAL_PURE_PYTHON"):
        warnings.warn("SENTRAL_PURE_PYTHON is set: building without the compiled hot path", stacklevel=1)
        return []
    if _compiler() is None:
        warnings.warn(
            "no C compiler found: sentral is installed as pure Python, which carries fewer calls a second; "
            "install a compiler (Debian: build-essential) and build again to compile its hot path",
            stacklevel=1,
        )
        return []
    from mypyc.build import mypycify

    os.chdir(ROOT)
    return mypycify(
        _native_paths(),
        opt_level="3",
        debug_level="0",
        separate=[(files, name) for name, files in native.GROUPS.items()],
        target_dir=str(ROOT / "build" / "native"),
    )


class BuildPy(build_py):
    """Adds the compiled modules' manifest and the sounds to the package being built."""

    def run(self) -> None:
        super().run()
        if self.editable_mode or EDITABLE:
            return
        package = Path(self.build_lib) / "sentral"
        if self.distribution.ext_modules:
            manifest = {native.module_name(path): native.source_hash(ROOT / path) for path in sorted(_native_paths())}
            (package / "_native.json").write_text(json.dumps({"modules": manifest}, indent=1) + "\n")
        self._sounds(package / "sounds")

    def _sounds(self, target: Path) -> None:
        if not (shutil.which("espeak-ng") and shutil.which("sox")):
            warnings.warn(
                "espeak-ng or sox is missing: the package has no music on hold or prompts; install them "
                "(Debian: espeak-ng sox) and build again, or serve with --sounds DIR",
                stacklevel=1,
            )
            return
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        subprocess.run(
            [sys.executable, "-m", "sentral.media.sounds", "build", str(target)], check=True, env=env, cwd=ROOT
        )
        (target / ".built").touch()


setup(ext_modules=extensions(), cmdclass={"build_py": BuildPy})
