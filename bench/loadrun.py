"""What the SIPp load benchmarks share: a provisioned server, CPU accounting, and rate steps.

Each benchmark runs the same SIPp load twice: once through Sentral, once against a SIPp peer
standing in for it, so every figure comes with the same measure without Sentral in the path and
the ratio between them (these machines are shared and noisy; the ratio travels better than the
absolute figure).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.system.peers import Sipp, SippResult, write_users_csv  # noqa: E402
from tests.system.server import SentralServer  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SCENARIOS = ROOT / "tests" / "system" / "scenarios"
DOMAIN = "clinic.test"


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) a live process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children_cpu() -> float:
    """CPU seconds used by the children this process has waited for (the finished SIPp runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_rss(pid: int) -> int:
    """Resident memory of a live process in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


@dataclass(frozen=True, slots=True)
class Step:
    """One SIPp run at one offered rate."""

    rate: float
    offered: int
    successful: int
    failed: int
    retransmissions: int
    wall: float
    generator_cpu: float
    server_cpu: float | None

    @property
    def completed_per_second(self) -> float:
        return self.successful / self.wall if self.wall else 0.0

    @property
    def failure_ratio(self) -> float:
        return self.failed / self.offered if self.offered else 1.0

    def row(self, label: str) -> str:
        server = f"{self.server_cpu / self.wall * 100:5.0f}%" if self.server_cpu is not None else "     -"
        return (
            f"{label:<9} {self.rate:>7.0f} {self.completed_per_second:>9.0f} {self.successful:>8} "
            f"{self.failed:>6} {self.failure_ratio * 100:>7.3f}% {self.retransmissions:>7} "
            f"{self.generator_cpu / self.wall * 100:>6.0f}% {server}"
        )


HEADER = (
    f"{'path':<9} {'offered':>7} {'done/s':>9} {'ok':>8} {'failed':>6} {'fail':>8} {'retrans':>7} "
    f"{'sipp':>7} {'server':>6}"
)


def run_step(
    sipp: Sipp,
    remote: str,
    scenario: Path,
    rate: float,
    count: int,
    *,
    server_pid: int | None,
    users: Path | None = None,
    transport: str = "udp",
    timeout: float = 120.0,
    extra: tuple[str, ...] = (),
) -> Step:
    """Offer ``count`` calls at ``rate`` a second and measure what completed, and the CPU."""
    generator_before = children_cpu()
    server_before = process_cpu(server_pid) if server_pid else None
    started = time.monotonic()
    result: SippResult = sipp.run(
        remote,
        scenario,
        transport=transport,
        users=users,
        calls=count,
        rate=rate,
        timeout=timeout,
        auth_uri=DOMAIN,
        extra=extra,
    )
    wall = time.monotonic() - started
    server_cpu = process_cpu(server_pid) - server_before if server_pid and server_before is not None else None
    return Step(
        rate=rate,
        offered=count,
        successful=result.successful,
        failed=result.failed,
        retransmissions=result.retransmissions,
        wall=wall,
        generator_cpu=children_cpu() - generator_before,
        server_cpu=server_cpu,
    )


def highest_clean(steps: list[Step], max_failure: float = 0.001) -> Step | None:
    """The step with the most completed per second among those under ``max_failure``."""
    clean = [s for s in steps if s.failure_ratio < max_failure and s.successful > 0]
    return max(clean, key=lambda s: s.completed_per_second, default=None)


def provision(server: SentralServer, users: int, workdir: Path, first: int = 100000) -> Path:
    """Create the clinic with ``users`` staff (MD5 for SIPp) and return SIPp's users CSV."""
    server.cli("init", "--domain", DOMAIN)
    server.cli("clinic", "set", DOMAIN, "--digest", "md5")
    staff = workdir / "staff.csv"
    csv = workdir / "users.csv"
    with staff.open("w") as sheet, csv.open("w") as sipp_users:
        sheet.write("extension,name,password\n")
        sipp_users.write("SEQUENTIAL\n")
        for i in range(users):
            ext, password = str(first + i), f"pw-{first + i}-bench"
            sheet.write(f"{ext},Bench {ext},{password}\n")
            sipp_users.write(f"{ext};{password};{DOMAIN}\n")
    server.cli("user", "import", str(staff))
    return csv


def bench_password(extension: str) -> str:
    """The password every benchmark gives ``extension``."""
    return f"pw-{extension}-bench"


# What --tuned adds to serve's defaults: media passed through and only warnings logged.
TUNED_ARGS = ("--log-level", "warning", "--direct-media")


def add_mode_argument(parser: argparse.ArgumentParser) -> None:
    """--tuned: measure the tuned mode instead of the configuration a clinic runs."""
    parser.add_argument(
        "--tuned",
        action="store_true",
        help="serve with " + " ".join(TUNED_ARGS) + " (the tuned mode) instead of serve's defaults "
        "(media anchored at the relay, calls logged at info), which are what a clinic runs",
    )


def mode_name(tuned: bool) -> str:
    """How a run's configuration is named in its output."""
    return "tuned mode (" + " ".join(TUNED_ARGS) + ")" if tuned else "default configuration (media anchored, info logs)"


def call_server(work: Path, extensions: Sequence[str], *, tuned: bool = False) -> SentralServer:
    """A server for SIPp call benchmarks, not started yet: the clinic offering MD5 (SIPp speaks no
    other) and ``extensions`` with ``bench_password``. By default it runs as a clinic runs it,
    with its media anchored at the relay and calls logged at info; ``tuned`` passes media
    through and logs only warnings, which measures signalling alone."""
    server = SentralServer(
        f"sqlite:///{work / 'sentral.db'}",
        work,
        extra_args=("--drain-timeout", "2", *(TUNED_ARGS if tuned else ())),
    )
    server.cli_batch(
        ("init", "--domain", DOMAIN),
        ("clinic", "set", DOMAIN, "--digest", "md5"),
        *(
            ("user", "add", ext, "--name", f"Bench {ext}", "--password", bench_password(ext))
            for ext in extensions
        ),
    )
    return server


def register_extension(sipp: Sipp, server: SentralServer, work: Path, extension: str, port: int) -> SippResult:
    """Register ``extension`` (with ``bench_password``) from ``port``, where a SIPp uas then listens."""
    users = write_users_csv(work / f"register-{extension}.csv", [(extension, bench_password(extension), DOMAIN)])
    return sipp.run(
        server.address, SCENARIOS / "register_auth.xml", users=users, calls=1, local_port=port, auth_uri=DOMAIN
    )


def print_run(title: str, command: str, lines: list[str]) -> None:
    print(f"\n{title}\n{'=' * len(title)}")
    print(f"command: {command}")
    for line in lines:
        print(line)


def step_rates(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


Measure = Callable[[float], Step]
