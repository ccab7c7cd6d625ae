"""What every benchmark records beside its figures: a quick probe of the machine's speed, and the
CPU time and peak memory of the processes it measured, as the kernel counts them.

The probe is a fixed piece of pure-Python work (hashing, a JSON round trip, a sort), timed three times;
its median in milliseconds says how fast this machine was at the time of the run, so that figures
from different machines or days can be compared through it (slower probe, slower figures).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _probe_once() -> float:
    started = time.perf_counter()
    digest = b"portfolio-sync"
    for _ in range(20_000):
        digest = hashlib.sha256(digest).digest()
    rows = [{"symbol": f"S{n}", "quantity": n * 7 % 1000, "price": n / 7} for n in range(20_000)]
    json.loads(json.dumps(rows))
    sorted(rows, key=lambda row: (row["quantity"], row["symbol"]))
    return (time.perf_counter() - started) * 1000


def machine_probe() -> dict[str, object]:
    """The probe's median of three, with what the machine is."""
    runs = [_probe_once() for _ in range(3)]
    return {
        "probe_ms": round(statistics.median(runs), 1),
        "probe_runs_ms": [round(r, 1) for r in runs],
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
    }


def run_facts() -> dict[str, object]:
    """The commit measured (with `+dirty` when the work tree differs from it) and when."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {
        "commit": git("rev-parse", "--short=12", "HEAD") + ("+dirty" if dirty else ""),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S  # utime, stime


def with_children_cpu_seconds(pid: int) -> float:
    """CPU time of a process and of its children that run now: Postgres's postmaster with its
    backends and writers."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(stat.parent.name) == pid or int(fields[1]) == pid:
            total += int(fields[11]) + int(fields[12])
    return total / _TICKS_PER_S


def local_server_pid(how: str) -> int | None:
    """The pid of the Kafka (`kafka-local:<dir>`) or Postgres (`pg-local:<dir>`, its postmaster)
    started for the run; None for one we did not start (a container, the environment's)."""
    kind, _, workdir = how.partition(":")
    if kind == "kafka-local":
        return int(Path(workdir, "kafka.pid").read_text())
    if kind == "pg-local":
        return int(next(Path(workdir).rglob("postmaster.pid")).read_text().split()[0])
    return None


def peak_rss_mb(pid: int) -> float:
    """The process's resident-memory high-water mark (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def own_peak_rss_mb() -> float:
    """This process's high-water mark (ru_maxrss, kB on Linux), in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_times() -> tuple[float, float]:
    """(busy, total) CPU time of the whole machine so far, all cores (/proc/stat), in ticks."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return float(sum(fields) - idle), float(sum(fields))


def busy_percent(before: tuple[float, float], after: tuple[float, float]) -> float:
    """How busy every core together was between two `cpu_times()` readings, in %."""
    total = after[1] - before[1]
    return round(100 * (after[0] - before[0]) / total, 1) if total else 0.0
