"""Several ``sentral`` commands in one process: ``python -m tests.system.cli_batch --db URL``
reads a JSON list of argument lists on stdin and runs them in order, stopping at the first that
fails with its message and exit code.

Provisioning a test clinic takes a handful of commands; run one by one, each pays the
interpreter's and the libraries' start-up again (about half a second). Each command here still
goes through the CLI's own parsing, checks and database writes, as when typed.
"""

from __future__ import annotations

import json
import sys

import click

from sentral.cli import cli


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] != "--db":
        print("usage: python -m tests.system.cli_batch --db URL < commands.json", file=sys.stderr)
        return 2
    db_url = sys.argv[2]
    for args in json.load(sys.stdin):
        command = ["--db", db_url, *args]
        try:
            code = cli.main(command, prog_name="sentral", standalone_mode=False)
        except click.ClickException as exc:
            exc.show()
            code = exc.exit_code
        except click.Abort:
            code = 1
        if code:
            print(f"$ sentral {' '.join(args)} exited {code}", file=sys.stderr)
            return int(code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
