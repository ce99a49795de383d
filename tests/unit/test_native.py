"""The guard against stale compiled modules (sentral/__init__.py) and the compiled build itself."""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import sentral
from sentral import _SourceOnly, _stale_native_modules

ROOT = Path(__file__).resolve().parents[2]
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def fake_package(tmp_path: Path, name: str = "pkg") -> Path:
    package = tmp_path / name
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "fast.py").write_text("WHERE = 'source'\n")
    (package / "slow.py").write_text("WHERE = 'source'\n")
    return package


def compile_fake(package: Path) -> None:
    """Stand-ins for compiled modules, and a manifest recording their sources."""
    (package / "sub" / f"fast{SUFFIX}").write_bytes(b"not an extension module")
    (package / f"native__mypyc{SUFFIX}").write_bytes(b"not a library")
    digest = hashlib.sha256((package / "sub" / "fast.py").read_bytes()).hexdigest()
    (package / "_native.json").write_text(json.dumps({"modules": {f"{package.name}.sub.fast": digest}}))


def test_nothing_compiled_means_nothing_to_refuse(tmp_path: Path) -> None:
    assert _stale_native_modules(fake_package(tmp_path)) == frozenset()


def test_compiled_modules_matching_their_source_are_used(tmp_path: Path) -> None:
    package = fake_package(tmp_path)
    compile_fake(package)
    assert _stale_native_modules(package) == frozenset()


def test_an_edited_source_refuses_every_compiled_module(tmp_path: Path) -> None:
    package = fake_package(tmp_path)
    compile_fake(package)
    (package / "sub" / "fast.py").write_text("WHERE = 'edited'\n")
    assert _stale_native_modules(package) == {"pkg.sub.fast"}


def test_extension_modules_without_a_manifest_are_refused(tmp_path: Path) -> None:
    package = fake_package(tmp_path)
    compile_fake(package)
    (package / "_native.json").unlink()
    assert _stale_native_modules(package) == {"pkg.sub.fast", "pkg.native__mypyc"}
    (package / "_native.json").write_text("{not json")
    assert _stale_native_modules(package) == {"pkg.sub.fast", "pkg.native__mypyc"}


@pytest.fixture
def importable(tmp_path: Path) -> Iterator[Path]:
    package = fake_package(tmp_path, "stalepkg")
    sys.path.insert(0, str(tmp_path))
    try:
        yield package
    finally:
        sys.path.remove(str(tmp_path))
        for name in [name for name in sys.modules if name.startswith("stalepkg")]:
            del sys.modules[name]


def test_a_refused_module_is_imported_from_its_source(importable: Path) -> None:
    compile_fake(importable)
    # CPython prefers the extension module, which here is not one.
    with pytest.raises(ImportError):
        importlib.import_module("stalepkg.sub.fast")
    finder = _SourceOnly(frozenset({"stalepkg.sub.fast"}))
    sys.meta_path.insert(0, finder)
    try:
        module = importlib.import_module("stalepkg.sub.fast")
    finally:
        sys.meta_path.remove(finder)
    assert module.WHERE == "source"
    assert module.__file__ is not None and module.__file__.endswith("fast.py")


def test_the_project_build_matches_its_source_when_there_is_one() -> None:
    manifest = Path(sentral.__file__).parent / "_native.json"
    if not manifest.exists():
        pytest.skip("the hot path is not compiled here (make native)")
    assert _stale_native_modules(Path(sentral.__file__).parent) == frozenset()
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", "import sentral.pbx.call as c; print(c.__file__)"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    assert out.stdout.strip().endswith(SUFFIX), out.stdout


def compiled_sources() -> list[Path]:
    spec = importlib.util.spec_from_file_location("native_build", ROOT / "tools" / "native.py")
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    return [ROOT / path for group in build.GROUPS.values() for path in group]


def test_no_compiled_function_reuses_an_except_variable_for_another_type() -> None:
    """Compiled, a function's variable has one type: ``except A as exc`` followed by ``except B as
    exc`` makes the second clause fail with a TypeError instead of handling B."""
    reused = []
    for path in compiled_sources():
        for function in ast.walk(ast.parse(path.read_text())):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            types: dict[str, set[str]] = {}
            for node in ast.walk(function):
                if isinstance(node, ast.ExceptHandler) and node.name:
                    caught = ast.unparse(node.type) if node.type is not None else "BaseException"
                    types.setdefault(node.name, set()).add(caught)
            reused += [
                f"{path.name}:{function.lineno} {name}" for name, kinds in types.items() if len(kinds) > 1
            ]
    assert compiled_sources(), "no compiled modules listed"
    assert reused == []


def _is_init_false_dataclass(node: ast.ClassDef) -> bool:
    for decorator in node.decorator_list:
        if isinstance(decorator, ast.Call) and getattr(decorator.func, "id", "") == "dataclass":
            for keyword in decorator.keywords:
                if keyword.arg == "init" and isinstance(keyword.value, ast.Constant):
                    return keyword.value.value is False
    return False


def _init_fields(node: ast.ClassDef) -> list[str]:
    """The fields a generated __init__ would take: annotated, not ClassVar, not field(init=False)."""
    names = []
    for statement in node.body:
        if not isinstance(statement, ast.AnnAssign) or not isinstance(statement.target, ast.Name):
            continue
        if "ClassVar" in ast.unparse(statement.annotation):
            continue
        value = statement.value
        if (
            isinstance(value, ast.Call)
            and getattr(value.func, "id", "") == "field"
            and any(k.arg == "init" and getattr(k.value, "value", True) is False for k in value.keywords)
        ):
            continue
        names.append(statement.target.id)
    return names


def test_every_spelled_out_dataclass_init_takes_every_field() -> None:
    """A compiled module's dataclass that writes its own __init__ (``init=False``, so that the
    constructor is compiled) must take the fields the generated one would, in order: ``replace``,
    keyword construction and the repr rely on it."""
    checked, wrong = 0, []
    for path in compiled_sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef) or not _is_init_false_dataclass(node):
                continue
            init = next(
                (f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"), None
            )
            params = [a.arg for a in init.args.args[1:]] if init is not None else None
            fields = _init_fields(node)
            assigned = (
                {
                    t.attr
                    for s in ast.walk(init)
                    if isinstance(s, ast.Assign)
                    for t in s.targets
                    if isinstance(t, ast.Attribute)
                }
                if init is not None
                else set()
            )
            checked += 1
            if params != fields or not set(fields) <= assigned:
                wrong.append(f"{path.relative_to(ROOT)}: {node.name} takes {params}, has fields {fields}")
    assert checked >= 20
    assert wrong == []
