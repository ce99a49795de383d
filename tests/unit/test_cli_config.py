"""The config file of `sentral serve` and `sentral config check|show`, through click's runner."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from sentral.cli import _config_option, cli, serve
from sentral.config.db import database_url
from sentral.config.settings import SERVE_DEFAULTS, Listen, Reread, ServeConfig
from tests.unit.conftest import Served
from tests.unit.test_cli import fails, ok, run

EXAMPLE = Path(__file__).resolve().parents[2] / "packaging" / "sentral.toml"


@pytest.fixture(autouse=True)
def no_host_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Keep the machine's own /etc/sentral/sentral.toml and environment out; return the stand-in default."""
    default = tmp_path / "etc" / "sentral.toml"
    monkeypatch.setattr("sentral.config.file.DEFAULT_CONFIG", default)
    for name in ("SENTRAL_CONFIG", "SENTRAL_DB", "SENTRAL_SPOOL"):
        monkeypatch.delenv(name, raising=False)
    return default


@pytest.fixture
def db(tmp_path: Path) -> str:
    """An SQLite database set up by `sentral init`."""
    path = str(tmp_path / "sentral.db")
    ok(path, "init")
    return path


def invoke(*args: str) -> Result:
    """Run the CLI without --db, as a service manager would."""
    return CliRunner().invoke(cli, list(args), prog_name="sentral")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# -- serve reads the file --------------------------------------------------------------------------


def test_serve_takes_its_options_from_the_file(db: str, served: list[ServeConfig], tmp_path: Path) -> None:
    config = write(
        tmp_path / "sentral.toml",
        'listen = ["udp:127.0.0.1:5071", "tcp:127.0.0.1:5071"]\n'
        "no-answer-timeout = 30\n"
        "transfer-recall = 12\n"
        "international-calls = 4\n"
        "drain_timeout = 5\n"  # underscores spell the same key
        "direct-media = true\n"
        'trust = "192.0.2.0/24"\n'  # a single value for a repeatable option
        'log-format = "json"\n'
        f'spool = "{tmp_path / "spool"}"\n',
    )
    result = CliRunner().invoke(cli, ["--db", db, "serve", "--config", str(config)], prog_name="sentral")
    assert result.exit_code == 3, result.output
    got = served[-1]
    assert got.listens == (Listen("udp", "127.0.0.1", 5071), Listen("tcp", "127.0.0.1", 5071))
    assert (got.no_answer_timeout, got.drain_timeout, got.direct_media) == (30.0, 5.0, True)
    assert got.transfer_recall == 12.0
    assert (got.international_calls, got.international_calls_per_staff) == (4, 2)
    assert (got.trusted, got.log_format, got.spool_dir) == (
        ("192.0.2.0/24",),
        "json",
        str(tmp_path / "spool"),
    )
    assert got.flood_rate == 500.0  # not in the file: the built-in default


def test_sighup_rereads_the_file_and_keeps_what_the_command_line_set(
    db: str, served: Served, tmp_path: Path
) -> None:
    config = write(tmp_path / "sentral.toml", 'no-answer-timeout = 30\ntrust = "192.0.2.0/24"\ndead-media = 100\n')
    args = ["--db", db, "serve", "--config", str(config), "--drain-timeout", "4", "--direct-media"]
    assert CliRunner().invoke(cli, args, prog_name="sentral").exit_code == 3
    reread = served.rereads[-1]
    assert reread is not None
    assert reread() == Reread({}, ())  # nothing changed yet
    # The operator edits the file: a timer, the trusted networks, a key taken out (its default
    # again), one the command line set (kept), and one that takes a restart.
    write(
        config,
        'no-answer-timeout = 12\ntrust = ["192.0.2.0/24", "198.51.100.0/24"]\n'
        'drain-timeout = 9\nmedia-ports = "30000-30999"\n',
    )
    found = reread()
    assert found.updates == {
        "no_answer_timeout": 12.0,
        "trusted": ("192.0.2.0/24", "198.51.100.0/24"),
        "dead_media": SERVE_DEFAULTS.dead_media,
    }
    assert found.restart == ("media-ports",)
    assert reread() == Reread({}, ("media-ports",))  # applied once; the restart is still owed
    write(config, "no-answer-timeout = -3\nsession-interval = 10\n")
    with pytest.raises(ValueError, match="no-answer-timeout") as raised:
        reread()
    assert "session-interval" in str(raised.value)
    write(config, 'no-answer-timeout = 20\ntrust = "not-a-network"\n')
    with pytest.raises(ValueError, match="not-a-network"):
        reread()
    # Nothing of a refused file was taken: the timer is still 12 in force, so 20 is news.
    write(config, "no-answer-timeout = 20\n")
    assert reread().updates["no_answer_timeout"] == 20.0


def test_the_command_line_and_environment_win_over_the_file(
    db: str, served: list[ServeConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(
        tmp_path / "sentral.toml",
        f'no-answer-timeout = 30\nflood-rate = 50\nspool = "{tmp_path / "from-file"}"\n',
    )
    monkeypatch.setenv("SENTRAL_SPOOL", str(tmp_path / "from-env"))
    result = CliRunner().invoke(
        cli, ["--db", db, "serve", "--config", str(config), "--no-answer-timeout", "10"], prog_name="sentral"
    )
    assert result.exit_code == 3, result.output
    got = served[-1]
    assert (got.no_answer_timeout, got.flood_rate, got.spool_dir) == (10.0, 50.0, str(tmp_path / "from-env"))


def test_the_file_comes_from_the_environment_or_the_default_path(
    db: str, served: list[ServeConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_host_config: Path
) -> None:
    ok_exit3(run(db, "serve"))
    assert served[-1].no_answer_timeout == 60.0
    write(no_host_config, "no-answer-timeout = 11\n")
    ok_exit3(run(db, "serve"))
    assert served[-1].no_answer_timeout == 11.0
    monkeypatch.setenv("SENTRAL_CONFIG", str(write(tmp_path / "env.toml", "no-answer-timeout = 22\n")))
    ok_exit3(run(db, "serve"))
    assert served[-1].no_answer_timeout == 22.0
    given = write(tmp_path / "given.toml", "no-answer-timeout = 33\n")
    ok_exit3(run(db, "serve", "--config", str(given)))
    assert served[-1].no_answer_timeout == 33.0


def ok_exit3(result: Result) -> None:
    """`serve` ran with the stand-in server, which exits 3."""
    assert result.exit_code == 3, result.output + result.stderr


def test_db_in_the_file_ranks_below_the_option_and_environment(
    db: str, served: list[ServeConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = str(tmp_path / "other.db")
    ok(other, "init")
    config = write(tmp_path / "sentral.toml", f'db = "{db}"\n')
    ok_exit3(invoke("serve", "--config", str(config)))
    assert served[-1].db_url == database_url(db)
    ok_exit3(invoke("--db", other, "serve", "--config", str(config)))
    assert served[-1].db_url == database_url(other)
    monkeypatch.setenv("SENTRAL_DB", other)
    ok_exit3(invoke("serve", "--config", str(config)))
    assert served[-1].db_url == database_url(other)


def test_other_commands_find_the_database_through_the_file(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok(db, "user", "add", "1001", "--name", "Kari Nordmann", "--password", "correct-horse-9")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SENTRAL_CONFIG", str(write(tmp_path / "sentral.toml", f'db = "{db}"\n')))
    result = invoke("user", "list", "--json")
    assert result.exit_code == 0, result.output
    assert [entry["extension"] for entry in json.loads(result.stdout)] == ["1001"]
    write(tmp_path / "sentral.toml", "db = [\n")
    result = invoke("user", "list")
    assert result.exit_code == 1
    monkeypatch.setenv("SENTRAL_DB", db)  # the environment wins: the file is not even read
    assert [entry["extension"] for entry in json.loads(invoke("user", "list", "--json").stdout)] == ["1001"]
    monkeypatch.delenv("SENTRAL_DB")
    assert result.stderr.startswith(f"sentral: the config file {tmp_path / 'sentral.toml'} is not valid TOML")


def test_serve_refuses_a_file_with_mistakes_naming_each(
    db: str, served: list[ServeConfig], tmp_path: Path
) -> None:
    config = write(
        tmp_path / "sentral.toml", 'listen = ["udp:127.0.0.1:5071"]\nno-answer-timeout = "soon"\nlisen = 1\n'
    )
    err = fails(db, "serve", "--config", str(config))
    assert err == (
        f"sentral: {config} line 2: no-answer-timeout: 'soon' is not a valid float range.\n"
        f"sentral: {config} line 3: lisen: is not a setting: `sentral serve` has no option --lisen\n"
    )
    missing = tmp_path / "nope.toml"
    assert (
        fails(db, "serve", "--config", str(missing)) == f"sentral: the config file {missing} does not exist\n"
    )
    assert served == []


def test_an_option_added_later_is_read_from_the_file_without_listing_it(tmp_path: Path) -> None:
    @click.command()
    @click.option("--metrics", type=click.IntRange(1, 65535))
    @click.option("--log-target", multiple=True)
    @_config_option
    def later(metrics: int | None, log_target: tuple[str, ...]) -> None:
        click.echo(f"{metrics} {list(log_target)}")

    config = write(tmp_path / "sentral.toml", 'metrics = 9100\nlog_target = ["journal", "file"]\n')
    result = CliRunner().invoke(later, ["--config", str(config)])
    assert result.output == "9100 ['journal', 'file']\n"
    write(config, "metrics = 70000\n")
    result = CliRunner().invoke(later, ["--config", str(config)])
    assert result.exit_code == 1
    assert f"{config} line 1: metrics: 70000 is not in the range 1<=x<=65535" in result.stderr


# -- config check ----------------------------------------------------------------------------------


def test_config_check_accepts_a_valid_file(tmp_path: Path) -> None:
    config = write(tmp_path / "sentral.toml", 'listen = ["udp:0.0.0.0:5060"]\nsip_trace = true\n')
    assert ok(str(tmp_path / "x.db"), "config", "check", str(config)) == f"{config} is valid.\n"


def test_config_check_names_every_mistake_with_its_key_and_line(tmp_path: Path) -> None:
    config = write(
        tmp_path / "sentral.toml",
        "# a comment\n"
        'listen = ["udp:0.0.0.0:99999"]\n'
        'direct-media = "yes"\n'
        "flood-rate = 0\n"
        "colour = 'blue'\n"
        'media-ports = "20000-10000"\n'
        'trust = ["10.0.0.0/8", "nonsense"]\n'
        'log-level = "loud"\n'
        'db = "/no/such/dir/sentral.db"\n'
        f'clinic-sounds = "{tmp_path / "none"}"\n'
        f'cert = "{tmp_path / "cert.pem"}"\n'
        "session-interval = [1]\n",
    )
    result = invoke("config", "check", str(config))
    assert result.exit_code == 1 and result.stdout == ""
    assert "Traceback" not in result.stderr
    mistakes = result.stderr.splitlines()
    keys = [re.match(rf"sentral: {re.escape(str(config))} line (\d+): ([a-z-]+): ", m) for m in mistakes]
    assert [(int(k[1]), k[2]) for k in keys if k] == [
        (2, "listen"),
        (3, "direct-media"),
        (4, "flood-rate"),
        (5, "colour"),
        (6, "media-ports"),
        (7, "trust"),
        (8, "log-level"),
        (9, "db"),
        (10, "clinic-sounds"),
        (11, "cert"),
        (12, "session-interval"),
    ], result.stderr
    text = result.stderr
    assert "the port must be a number" in text
    assert "must be true or false, not a string" in text
    assert "has no option --colour" in text
    assert "the directory /no/such/dir does not exist" in text
    assert f"cannot read the TLS certificate {tmp_path / 'cert.pem'}" in text
    assert "must be a string or a number, not a list" in text


def test_config_check_explains_files_it_cannot_read(tmp_path: Path, no_host_config: Path) -> None:
    broken = write(tmp_path / "broken.toml", 'listen = ["udp:0.0.0.0:5060"]\nno-answer-timeout = \n')
    err = fails(str(tmp_path / "x.db"), "config", "check", str(broken))
    assert err.startswith(f"sentral: the config file {broken} is not valid TOML: ") and "line 2" in err
    twice = write(tmp_path / "twice.toml", "drain-timeout = 1\ndrain_timeout = 2\n")
    assert fails(str(tmp_path / "x.db"), "config", "check", str(twice)) == (
        f"sentral: {twice} line 2: drain_timeout: is set twice (also as drain-timeout); keep one\n"
    )
    assert fails(str(tmp_path / "x.db"), "config", "check") == (
        "sentral: there is no config file to check: give one, set $SENTRAL_CONFIG or create "
        "/etc/sentral/sentral.toml\n"
    )
    write(no_host_config, "drain-timeout = 1\n")
    assert ok(str(tmp_path / "x.db"), "config", "check") == f"{no_host_config} is valid.\n"


def test_the_shipped_example_is_valid_and_names_every_serve_option(tmp_path: Path) -> None:
    assert ok(str(tmp_path / "x.db"), "config", "check", str(EXAMPLE)) == f"{EXAMPLE} is valid.\n"
    commented = re.findall(r"^# ([a-z-]+) = ", EXAMPLE.read_text(), flags=re.MULTILINE)
    options = {
        name[2:]
        for param in serve.params
        if isinstance(param, click.Option) and not param.is_eager
        for name in param.opts
        if name.startswith("--")
    }
    assert options - set(commented) == set(), "document every serve option in packaging/sentral.toml"
    # Each commented line, uncommented, is a setting serve takes (the paths in it need not exist here).
    examples = [line[2:] for line in EXAMPLE.read_text().splitlines() if re.match(r"# [a-z-]+ = ", line)]
    keys = {key for line in examples for key in tomllib.loads(line)}
    assert keys == options | {"db"}


# -- config show -----------------------------------------------------------------------------------


def test_config_show_says_where_each_setting_comes_from(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path / "sentral.toml", f'db = "{db}"\nno-answer-timeout = 30\nflood-rate = 50\n')
    monkeypatch.setenv("SENTRAL_SOUNDS", str(tmp_path / "sounds"))
    result = invoke("config", "show", "--json", "--config", str(config), "--flood-rate", "70")
    assert result.exit_code == 0, result.output
    shown = {item["key"]: (item["value"], item["source"]) for item in json.loads(result.stdout)}
    assert shown["config"] == (str(config), "command line")
    assert shown["db"] == (db, "file")
    assert shown["no-answer-timeout"] == (30.0, "file")
    assert shown["flood-rate"] == (70.0, "command line")
    assert shown["sounds"] == (str(tmp_path / "sounds"), "environment")
    assert shown["dead-media"] == (300.0, "default")
    table = invoke("config", "show", "--config", str(config)).stdout
    assert re.search(r"^no-answer-timeout\s+30\.0\s+file$", table, flags=re.MULTILINE), table
