"""Kafka and PostgreSQL for a test session, from wherever they can be had.

Each ``provide_*`` function tries, in order:

1. an external service named by an environment variable (``KAFKA_BOOTSTRAP_SERVERS`` /
   ``DATABASE_URL``) - nothing is started or stopped;
2. a container through testcontainers, if a Docker engine answers ``docker info``;
3. a local process started by ``infra/kafka/kafka-local`` / ``infra/postgres/pg-local`` on a
   free port with a temporary directory.

If all of them fail it raises ``RuntimeError`` listing what was tried and why each failed: a
missing broker must fail the run, not skip the tests that need it.

Cleanup contract: the returned dataclass carries a ``stop`` callable. Call it once the session
ends (the fixtures in ``tests/conftest.py`` do so after ``yield``). ``stop`` is
idempotent and is also registered with ``atexit`` as a backstop for interrupted runs; for an
external service it does nothing.
"""

from __future__ import annotations

import atexit
import functools
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_LOCAL = REPO_ROOT / "infra" / "kafka" / "kafka-local"
PG_LOCAL = REPO_ROOT / "infra" / "postgres" / "pg-local"

# Keep the container's broker version in step with infra/kafka/pom.xml.
KAFKA_IMAGE = "apache/kafka:4.3.1"
POSTGRES_IMAGE = "postgres:16"
DB_USER = DB_PASSWORD = "portfolio"
DB_NAME = "portfolio_sync"

# A first kafka-local run downloads ~45 MB of jars with Maven; later starts take seconds.
LOCAL_START_TIMEOUT_S = 600
DOCKER_INFO_TIMEOUT_S = 5


def _nothing() -> None:
    pass


@dataclass(frozen=True)
class KafkaService:
    bootstrap_servers: str
    how: str  # "env:...", "testcontainers:<image>" or "kafka-local:<dir>"
    stop: Callable[[], None] = field(default=_nothing, repr=False, compare=False)


@dataclass(frozen=True)
class PostgresService:
    url: str  # always postgresql+asyncpg://... (SQLAlchemy form)
    how: str  # "env:...", "testcontainers:<image>" or "pg-local:<dir>"
    stop: Callable[[], None] = field(default=_nothing, repr=False, compare=False)

    @property
    def dsn(self) -> str:
        """The URL without ``+asyncpg``, as ``asyncpg.connect`` wants it."""
        return self.url.replace("postgresql+asyncpg://", "postgresql://", 1)


# --------------------------------------------------------------------------- helpers


def _stopper(fn: Callable[[], None]) -> Callable[[], None]:
    """Make ``fn`` safe to call twice (fixture teardown and atexit) and register it."""
    lock = threading.Lock()
    done = False

    def stop() -> None:
        nonlocal done
        with lock:
            if done:
                return
            done = True
        fn()

    atexit.register(stop)
    return stop


def _free_port(also_next: bool = False) -> int:
    """A port nothing listens on now. Kafka wants port+1 free too for its controller
    (kafka-local searches further if not, so this only makes the common case tidy)."""
    for _ in range(20):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not also_next:
            return port
        if port >= 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port pair found on 127.0.0.1")


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@functools.lru_cache(maxsize=1)
def _docker_unavailable() -> str | None:
    """None if a Docker engine answers, else why not. Cached: asked once per session."""
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    try:
        r = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=DOCKER_INFO_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"`docker info` did not answer within {DOCKER_INFO_TIMEOUT_S} s"
    if r.returncode != 0:
        return f"`docker info` exited {r.returncode}: {_tail(r.stderr or r.stdout, 2)}"
    return None


def _run_local(script: Path, port: int, workdir: str, *extra: str) -> subprocess.CompletedProcess[str]:
    if not os.access(script, os.X_OK):
        raise RuntimeError(f"{script} is missing or not executable")
    # The script backgrounds the server with its output sent to files, so these pipes close
    # as soon as the script itself exits.
    return subprocess.run(
        [str(script), "start", "--port", str(port), "--dir", workdir, *extra],
        capture_output=True,
        text=True,
        timeout=LOCAL_START_TIMEOUT_S,
    )


def _start_local(script: Path, also_next: bool, prefix: str) -> tuple[str, str, int]:
    """Start a local server on a free port; returns (stdout, workdir, port)."""
    workdir = tempfile.mkdtemp(prefix=prefix)
    # Ports are picked, then bound by another process: another test run can win the race, so
    # one retry on a fresh port.
    try:
        for attempt in (1, 2):
            port = _free_port(also_next)
            r = _run_local(script, port, workdir)
            if r.returncode == 0:
                return r.stdout, workdir, port
            if attempt == 1 and "already in use" in r.stderr:
                continue
            raise RuntimeError(
                f"`{script.relative_to(REPO_ROOT)} start --port {port}` exited {r.returncode}:\n"
                + _tail(r.stderr + "\n" + r.stdout, 45)
            )
        raise AssertionError("unreachable")
    except BaseException:
        # Also on a timeout or Ctrl-C: the server may be half up.
        _stop_local(script, workdir)
        raise


def _remove_workdir(workdir: str) -> None:
    # pg-local may have put the instance elsewhere (see its "location" file).
    location = Path(workdir, "location")
    if location.is_file():
        shutil.rmtree(location.read_text().strip(), ignore_errors=True)
    shutil.rmtree(workdir, ignore_errors=True)


def _stop_local(script: Path, workdir: str) -> None:
    try:
        subprocess.run([str(script), "stop", "--dir", workdir], capture_output=True, text=True, timeout=90)
    finally:
        _remove_workdir(workdir)


def _failure(what: str, attempts: list[str]) -> RuntimeError:
    lines = [f"could not provide {what} for the tests; tried, in order:"]
    for i, attempt in enumerate(attempts, 1):
        first, *rest = attempt.splitlines()
        lines.append(f"  {i}. {first}")
        lines += [f"       {line}" for line in rest]
    return RuntimeError("\n".join(lines))


# --------------------------------------------------------------------------- Kafka


def _apache_kafka_container(image: str) -> Any:
    """testcontainers' KafkaContainer, adapted to the official apache/kafka image.

    Its stock start script drives Confluent's cp-kafka entrypoint (/etc/confluent/docker/...)
    and its KRaft check compares the image tag with Confluent Platform version numbers, so
    neither works with apache/kafka. Kept: its listeners and env (PLAINTEXT on the exposed port,
    BROKER and CONTROLLER inside), its start/wait logic. Replaced: the start script, which
    here only sets the advertised listeners (known once the port is mapped) and runs the
    image's own /etc/kafka/docker/run, which turns KAFKA_* variables into server.properties.
    """
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:  # older testcontainers: modules at top level
        from testcontainers.kafka import KafkaContainer

    class ApacheKafkaContainer(KafkaContainer):
        def __init__(self) -> None:
            # 9093: the client port; the parent puts its BROKER listener on 9092.
            super().__init__(image=image, port=9093)
            self.env.pop("KAFKA_BROKER_ID", None)  # KRaft uses node.id (set by with_kraft)
            for key, value in {
                "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
                "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
                "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
                "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
                "KAFKA_NUM_PARTITIONS": "4",
            }.items():
                self.with_env(key, value)

        def _verify_min_kraft_version(self) -> None:
            pass  # apache/kafka is KRaft-only; tags are Apache versions

        def tc_start(self) -> None:
            host = self.get_container_host_ip()
            port = self.get_exposed_port(self.port)
            script = (
                f"export KAFKA_ADVERTISED_LISTENERS="
                f"PLAINTEXT://{host}:{port},BROKER://$(hostname -i | cut -d' ' -f1):9092\n"
                "exec /etc/kafka/docker/run\n"
            )
            self.create_file(script.encode(), self.TC_START_SCRIPT)

    return ApacheKafkaContainer().with_kraft()


def _kafka_from_docker() -> KafkaService:
    container = _apache_kafka_container(KAFKA_IMAGE)
    try:
        container.start(timeout=120)
        bootstrap = container.get_bootstrap_server()
    except BaseException:
        container.stop()
        raise
    return KafkaService(bootstrap, f"testcontainers:{KAFKA_IMAGE}", _stopper(container.stop))


def _kafka_from_local() -> KafkaService:
    _, workdir, port = _start_local(KAFKA_LOCAL, also_next=True, prefix="kafka-local-")
    return KafkaService(
        f"127.0.0.1:{port}",
        f"kafka-local:{workdir}",
        _stopper(functools.partial(_stop_local, KAFKA_LOCAL, workdir)),
    )


def provide_kafka(*, fresh: bool = False) -> KafkaService:
    """A Kafka for this session: env, else testcontainers, else kafka-local. Call ``.stop()``.

    `fresh`: a newly started broker of our own, never the one the environment names."""
    attempts: list[str] = []
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if env and not fresh:
        return KafkaService(env, "env:KAFKA_BOOTSTRAP_SERVERS")
    attempts.append(
        "env KAFKA_BOOTSTRAP_SERVERS: not set" if not fresh else "env: a fresh broker was asked for"
    )

    why_not = _docker_unavailable()
    if why_not is None:
        try:
            return _kafka_from_docker()
        except Exception as exc:  # reported below, then the next way is tried
            attempts.append(f"testcontainers {KAFKA_IMAGE}: {type(exc).__name__}: {exc}")
    else:
        attempts.append(f"testcontainers {KAFKA_IMAGE}: no Docker engine ({why_not})")

    try:
        return _kafka_from_local()
    except Exception as exc:
        attempts.append(f"infra/kafka/kafka-local: {exc}")
    raise _failure("Kafka", attempts)


# --------------------------------------------------------------------------- PostgreSQL


def _asyncpg_url(url: str) -> str:
    """postgres://, postgresql:// or postgresql+<driver>:// -> postgresql+asyncpg://."""
    m = re.match(r"^(postgres|postgresql)(\+\w+)?://", url)
    if not m:
        raise ValueError("not a postgresql:// URL")
    return "postgresql+asyncpg://" + url[m.end() :]


def _postgres_from_docker() -> PostgresService:
    try:
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:  # older testcontainers: modules at top level
        from testcontainers.postgres import PostgresContainer

    container = PostgresContainer(
        POSTGRES_IMAGE, username=DB_USER, password=DB_PASSWORD, dbname=DB_NAME, driver="asyncpg"
    )
    try:
        container.start()
        url = container.get_connection_url()
    except BaseException:
        container.stop()
        raise
    return PostgresService(_asyncpg_url(url), f"testcontainers:{POSTGRES_IMAGE}", _stopper(container.stop))


def _postgres_from_local() -> PostgresService:
    out, workdir, _ = _start_local(PG_LOCAL, also_next=False, prefix="pg-local-")
    urls = [line.split("=", 1)[1] for line in out.splitlines() if line.startswith("DATABASE_URL=")]
    stop = _stopper(functools.partial(_stop_local, PG_LOCAL, workdir))
    if not urls:
        stop()
        raise RuntimeError(f"pg-local printed no DATABASE_URL line:\n{_tail(out)}")
    return PostgresService(_asyncpg_url(urls[-1]), f"pg-local:{workdir}", stop)


def provide_postgres() -> PostgresService:
    """A PostgreSQL for this session: env, else testcontainers, else pg-local. Call ``.stop()``."""
    attempts: list[str] = []
    env = os.environ.get("DATABASE_URL", "").strip()
    if env:
        try:
            return PostgresService(_asyncpg_url(env), "env:DATABASE_URL")
        except ValueError:
            # e.g. a sqlite URL meant for the app: not usable here, so fall through.
            scheme = env.split("://", 1)[0]
            attempts.append(f"env DATABASE_URL: set, but scheme {scheme!r} is not postgresql")
    else:
        attempts.append("env DATABASE_URL: not set")

    why_not = _docker_unavailable()
    if why_not is None:
        try:
            return _postgres_from_docker()
        except Exception as exc:
            attempts.append(f"testcontainers {POSTGRES_IMAGE}: {type(exc).__name__}: {exc}")
    else:
        attempts.append(f"testcontainers {POSTGRES_IMAGE}: no Docker engine ({why_not})")

    try:
        return _postgres_from_local()
    except Exception as exc:
        attempts.append(f"infra/postgres/pg-local: {exc}")
    raise _failure("PostgreSQL", attempts)
