"""Sentral: a SIP softswitch for clinics.

The signalling hot path may be compiled to C extension modules (``make native``; see
``tools/native.py``). CPython imports an extension module in preference to the source beside it,
so a module edited since it was compiled would silently run its old self. On import, the package
compares each compiled module's source with the hash recorded when it was compiled; if any
differs, or extension modules lie there with no record, none of them is used (they call each
other directly, so it is all or none), the source runs, and a warning says how to compile again.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

__version__ = "0.1.0"

_HERE = Path(__file__).resolve().parent
_MANIFEST = _HERE / "_native.json"


class _SourceOnly(importlib.abc.MetaPathFinder):
    """Finds the listed modules' source files, passing over extension modules beside them."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names or not path:
            return None
        details = (importlib.machinery.SourceFileLoader, importlib.machinery.SOURCE_SUFFIXES)
        for entry in path:
            spec = importlib.machinery.FileFinder(entry, details).find_spec(fullname, target)
            if spec is not None:
                return spec
        return None


def _stale_native_modules(package: Path) -> frozenset[str]:
    """The compiled modules of ``package`` that must not be used: all of them if any one is out
    of date (full module names, the package's own name first)."""
    try:
        recorded = json.loads((package / _MANIFEST.name).read_text())["modules"]
        if not isinstance(recorded, dict):
            raise TypeError("modules is not a mapping")
    except (OSError, ValueError, KeyError, TypeError):
        # No usable record: extension modules here come from an interrupted or foreign build.
        return frozenset(
            ".".join((package.name, *path.relative_to(package).parts[:-1], path.name.split(".", 1)[0]))
            for path in package.rglob("*.so")
        )
    for name, digest in recorded.items():
        source = package.parent.joinpath(*str(name).split(".")).with_suffix(".py")
        try:
            current = hashlib.sha256(source.read_bytes()).hexdigest()
        except OSError:
            current = ""
        if current != digest:
            return frozenset(str(key) for key in recorded)
    return frozenset()


def _guard_native_modules() -> None:
    stale = _stale_native_modules(_HERE)
    if stale:
        sys.meta_path.insert(0, _SourceOnly(stale))
        warnings.warn(
            "sentral: the compiled modules do not match their source, so the source runs "
            "(slower); `make native` compiles them again",
            RuntimeWarning,
            stacklevel=2,
        )


_guard_native_modules()
