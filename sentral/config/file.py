"""The config file: ``sentral serve``'s options written down in TOML, for a service run for years.

Theory of operation. A file such as ``/etc/sentral/sentral.toml`` holds ``key = value`` lines whose
keys are the long option names of a click command without their dashes (``no-answer-timeout = 30``;
``no_answer_timeout`` is the same key). Nothing here lists ``serve``'s options: ``default_map``
walks the command's own parameters, so an option added to ``serve`` later is accepted in the file
the day it is added. The mapping becomes click's ``default_map`` on the command's context, which
gives exactly the precedence an operator expects: the command line over environment variables,
those over the file, the file over the built-in defaults. Values go through each option's own
click type (ranges, choices, paths that must exist) when they are read, so a mistake in the file
is named by its key and line, all mistakes at once, before anything starts.

``db`` is the global ``--db`` and is not an option of the command: ``database`` hands it out
separately. The file to read is the one given, else ``$SENTRAL_CONFIG``, else the default path
when it exists.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from sentral.config.db import ENV_DATABASE, StoreError

DEFAULT_CONFIG = Path("/etc/sentral/sentral.toml")
ENV_CONFIG = "SENTRAL_CONFIG"
DATABASE_KEY = "db"

_TOML_LINE = re.compile(r"\bat line (\d+)")
_SCALARS = (str, int, float)


class ConfigFileError(StoreError):
    """The config file cannot be read at all: missing, unreadable or not TOML."""


@dataclass(frozen=True, slots=True)
class Mistake:
    """One thing wrong in a config file, worded for the operator."""

    key: str
    line: int | None
    problem: str

    def sentence(self, path: Path) -> str:
        """``FILE line N: key KEY: problem``."""
        where = f"{path} line {self.line}" if self.line is not None else str(path)
        return f"{where}: {self.key}: {self.problem}"


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """A config file as read: each key in its normal spelling with its value and line."""

    path: Path
    values: Mapping[str, Any]
    lines: Mapping[str, int]
    mistakes: tuple[Mistake, ...]

    def line(self, key: str) -> int | None:
        """The line ``key`` is set on, when it could be found."""
        return self.lines.get(key)


def normal_key(key: str) -> str:
    """Keys are compared in one spelling: lower case, dashes rather than underscores."""
    return key.strip().lower().replace("_", "-")


def config_path(given: str | Path | None) -> Path | None:
    """The file to read: ``given``, else ``$SENTRAL_CONFIG``, else the default path if it exists."""
    if given:
        return Path(given).expanduser()
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env).expanduser()
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None


def read_config(path: Path) -> ConfigFile:
    """Read and parse ``path``; raises ``ConfigFileError`` when it is not a TOML file one can read."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigFileError(f"the config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigFileError(f"the config file {path} is a directory; give a TOML file") from None
    except OSError as exc:
        raise ConfigFileError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigFileError(f"the config file {path} is not UTF-8 text") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"the config file {path} is not valid TOML: {exc}") from None
    lines = _key_lines(text)
    values: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    mistakes: list[Mistake] = []
    for key, value in document.items():
        normal = normal_key(key)
        if normal in values:
            mistakes.append(
                Mistake(key, lines.get(key), f"is set twice (also as {spelled[normal]}); keep one")
            )
            continue
        values[normal] = value
        spelled[normal] = key
    return ConfigFile(
        path,
        values,
        {normal: lines[key] for normal, key in spelled.items() if key in lines},
        tuple(mistakes),
    )


def _key_lines(text: str) -> dict[str, int]:
    """The line each top-level key is set on (bare or quoted keys before the first table)."""
    lines: dict[str, int] = {}
    pattern = re.compile(r"""^\s*(?:"([^"]+)"|'([^']+)'|([A-Za-z0-9_-]+))\s*=""")
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("["):
            break
        match = pattern.match(line)
        if match:
            key = next(group for group in match.groups() if group is not None)
            lines.setdefault(key, number)
    return lines


def option_keys(command: click.Command) -> dict[str, tuple[click.Option, bool]]:
    """Every file key ``command`` takes: each long option name, with whether it means the flag's opposite."""
    keys: dict[str, tuple[click.Option, bool]] = {}
    for param in command.params:
        if not isinstance(param, click.Option) or param.hidden or param.is_eager or param.name is None:
            continue
        for names, inverted in ((param.opts, False), (param.secondary_opts, True)):
            for name in names:
                if name.startswith("--"):
                    keys[normal_key(name[2:])] = (param, inverted)
    return keys


def _shaped(option: click.Option, inverted: bool, value: Any) -> tuple[Any, str | None]:
    """The value in the shape click expects for ``option``, or why a TOML value of this kind cannot be one."""
    if option.is_flag and not option.count:
        if not isinstance(value, bool):
            return None, f"must be true or false, not {_kind(value)}"
        return (not value) if inverted else value, None
    if option.multiple:
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, bool) or not isinstance(item, _SCALARS):
                return None, f"must be a list of strings or numbers, not one holding {_kind(item)}"
        return items, None
    if isinstance(value, bool) or not isinstance(value, _SCALARS):
        return None, f"must be a string or a number, not {_kind(value)}"
    return value, None


def _kind(value: Any) -> str:
    match value:
        case bool():
            return "true or false"
        case str():
            return "a string"
        case int() | float():
            return "a number"
        case list():
            return "a list"
        case dict():
            return "a table"
        case _:
            return "a date or time"


def default_map(ctx: click.Context, config: ConfigFile) -> tuple[dict[str, Any], list[Mistake]]:
    """The ``default_map`` for ``ctx.command`` that ``config`` gives, and every mistake found in it.

    A value is kept only when the option's own type takes it; ``db`` is left to ``database``.
    """
    keys = option_keys(ctx.command)
    mapping: dict[str, Any] = {}
    mistakes = list(config.mistakes)
    for key, raw in config.values.items():
        line = config.line(key)
        if key == DATABASE_KEY:
            if not isinstance(raw, str) or not raw.strip():
                mistakes.append(
                    Mistake(key, line, f"must be a file path or a database URL string, not {_kind(raw)}")
                )
            continue
        if key not in keys:
            mistakes.append(
                Mistake(key, line, f"is not a setting: `sentral {ctx.info_name}` has no option --{key}")
            )
            continue
        option, inverted = keys[key]
        value, problem = _shaped(option, inverted, raw)
        if problem is None:
            try:
                option.type_cast_value(ctx, value)
            except click.BadParameter as exc:
                problem = exc.message
        if problem is not None:
            mistakes.append(Mistake(key, line, problem))
            continue
        assert option.name is not None
        mapping[option.name] = value
    return mapping, mistakes


def environment_database() -> str | None:
    """``$SENTRAL_DB``, when set."""
    return os.environ.get(ENV_DATABASE) or None


def database(config: ConfigFile) -> str | None:
    """The file's ``db``, unless ``$SENTRAL_DB`` is set (the environment wins over the file)."""
    value = config.values.get(DATABASE_KEY)
    if environment_database() is not None or not isinstance(value, str) or not value.strip():
        return None
    return value.strip()


__all__ = [
    "DATABASE_KEY",
    "DEFAULT_CONFIG",
    "ENV_CONFIG",
    "ConfigFile",
    "ConfigFileError",
    "Mistake",
    "config_path",
    "database",
    "default_map",
    "environment_database",
    "normal_key",
    "option_keys",
    "read_config",
]
