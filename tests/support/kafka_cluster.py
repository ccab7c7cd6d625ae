"""A three-node Kafka cluster of local processes (infra/kafka/kafka-cluster) whose nodes a test can
kill and start again.

Only local processes: a test that kills a broker needs the broker's process, which neither an
external cluster nor a container gives it. Started by the session fixture `kafka_cluster` on first
use only, stopped at the end of the session (and by atexit, as the fixtures of infra.py).
"""

from __future__ import annotations

import functools
import socket
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.infra import REPO_ROOT, _nothing, _remove_workdir, _stopper, _tail

KAFKA_CLUSTER = REPO_ROOT / "infra" / "kafka" / "kafka-cluster"
NODES = 3
START_TIMEOUT_S = 600  # a first run resolves the jars with Maven
NODE_TIMEOUT_S = 120


@dataclass(frozen=True)
class KafkaCluster:
    bootstrap_servers: str  # every node's PLAINTEXT address, comma-separated
    workdir: str
    base_port: int  # node I's broker listens on base_port + I - 1
    nodes: int = NODES
    stop: Callable[[], None] = field(default=_nothing, repr=False, compare=False)

    @property
    def servers(self) -> list[str]:
        return self.bootstrap_servers.split(",")

    def kill(self, node: int) -> None:
        """kill -9 the node's JVM: no controlled shutdown, as when its machine dies."""
        self._run("kill", "--node", str(node))

    def start_node(self, node: int) -> None:
        """Start the node again on its data; returns once it serves."""
        self._run("start-node", "--node", str(node))

    def _run(self, *args: str) -> str:
        done = subprocess.run(
            [str(KAFKA_CLUSTER), *args, "--dir", self.workdir],
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT_S,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"kafka-cluster {' '.join(args)} exited {done.returncode}:\n{_tail(done.stderr)}"
            )
        return done.stdout


def _free_port_run(length: int) -> int:
    """A base port with `length` consecutive ports that nothing listens on now."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + length > 65535:
            continue
        try:
            for port in range(base, base + length):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError(f"no {length} consecutive free ports found on 127.0.0.1")


def _stop_cluster(workdir: str) -> None:
    try:
        subprocess.run(
            [str(KAFKA_CLUSTER), "stop", "--dir", workdir],
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT_S,
        )
    finally:
        _remove_workdir(workdir)


def provide_kafka_cluster() -> KafkaCluster:
    """Start a three-node cluster on free ports in a temporary directory. Call ``.stop()``."""
    if not KAFKA_CLUSTER.is_file():
        raise RuntimeError(f"{KAFKA_CLUSTER} is missing")
    workdir = tempfile.mkdtemp(prefix="kafka-cluster-")
    stop = _stopper(functools.partial(_stop_cluster, workdir))
    try:
        # Ports are picked, then bound by other processes: another test run can win the race.
        for attempt in (1, 2):
            base = _free_port_run(2 * NODES)
            done = subprocess.run(
                [str(KAFKA_CLUSTER), "start", "--nodes", str(NODES), "--port", str(base), "--dir", workdir],
                capture_output=True,
                text=True,
                timeout=START_TIMEOUT_S,
            )
            if done.returncode == 0:
                servers = Path(workdir, "bootstrap").read_text().strip()
                return KafkaCluster(servers, workdir, base, NODES, stop)
            if attempt == 1 and "already in use" in done.stderr:
                continue
            raise RuntimeError(
                f"`infra/kafka/kafka-cluster start --port {base}` exited {done.returncode}:\n"
                + _tail(done.stderr + "\n" + done.stdout, 45)
            )
        raise AssertionError("unreachable")
    except BaseException:
        stop()  # the nodes may be half up
        raise
