"""The deployment files against the code they deploy.

docker-compose.yml, docs/configuration.md, the Dockerfile's entrypoint, the CLI, the Settings class
and the Kafka version of infra/kafka/pom.xml are written by hand in different places. These tests
fail, naming the file to fix, as soon as one of them moves without the others.
"""

from __future__ import annotations

import argparse
import re
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo

from services.cli import _parser
from services.fetcher.registry import known_brokers
from shared.brokers import fetched_broker_codes
from shared.settings import Settings
from tests.support import infra

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
CONFIG_DOC = REPO_ROOT / "docs" / "configuration.md"
KAFKA_POM = REPO_ROOT / "infra" / "kafka" / "pom.xml"

ENV_ANCHOR = "x-portfolio-sync-env"
KAFKA_IMAGE_REPO = "apache/kafka"
POM_NS = "{http://maven.apache.org/POM/4.0.0}"
# How docs/configuration.md writes a default that is the empty string.
EMPTY_DEFAULT = "*(empty)*"
# The subcommands the compose stack must run: both one-shot tasks and the four services.
DEPLOYED_COMMANDS = {"db", "topics", "api", "scheduler", "fetcher", "ledger"}

# `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?error}`, `${NAME?error}`.
_INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
# A row of the variables table: | `NAME` | default | description |
_DOC_ROW = re.compile(
    r"^\|\s*`(?P<name>[A-Z][A-Z0-9_]*)`\s*\|(?P<default>[^|]*)\|(?P<description>[^|]*)\|\s*$"
)


def _settings_env() -> dict[str, str]:
    """Environment variable name -> Settings field name, as pydantic-settings reads them."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    return {(prefix + name).upper(): name for name in Settings.model_fields}


def _load_compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict), "docker-compose.yml is not a mapping"
    return loaded


def _services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services = compose.get("services")
    assert isinstance(services, dict) and services, "docker-compose.yml has no services"
    return services


def _portfolio_sync_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services built from ./Dockerfile: they run `portfolio-sync <command>`."""
    ours = {name: service for name, service in _services(compose).items() if "build" in service}
    assert ours, "docker-compose.yml builds no service from the Dockerfile"
    return ours


def _cli_args(name: str, service: dict[str, Any]) -> argparse.Namespace:
    """The service's `command:` as the CLI parses it (the Dockerfile's entrypoint is the CLI)."""
    assert "entrypoint" not in service, f"docker-compose.yml service {name!r} overrides the entrypoint"
    command = service.get("command")
    assert command, f"docker-compose.yml service {name!r} must name its portfolio-sync command"
    argv = shlex.split(command) if isinstance(command, str) else [str(part) for part in command]
    try:
        return _parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"docker-compose.yml service {name!r}: `portfolio-sync {shlex.join(argv)}` is no command")


def _interpolated(value: Any) -> str:
    """The value as compose would hand it over, with `${...}` replaced by a stand-in or default."""

    def substitute(match: re.Match[str]) -> str:
        op, arg = match["op"], match["arg"]
        if op in {":-", "-"}:
            return str(arg)
        return f"<{match['name']} from the environment>"

    return _INTERPOLATION.sub(substitute, str(value))


def _documented_default(field: FieldInfo) -> str:
    default = field.get_default(call_default_factory=True)
    if isinstance(default, SecretStr):
        default = default.get_secret_value()
    return str(default)


def _documented_variables() -> dict[str, tuple[str, str]]:
    """Variable name -> (default, description) from the table of docs/configuration.md."""
    rows: dict[str, tuple[str, str]] = {}
    for line in CONFIG_DOC.read_text().splitlines():
        match = _DOC_ROW.match(line)
        if match is None:
            continue
        name, cell = match["name"], match["default"].strip()
        assert name not in rows, f"docs/configuration.md lists {name} twice"
        if cell == EMPTY_DEFAULT:
            default = ""
        elif len(cell) > 1 and cell.startswith("`") and cell.endswith("`"):
            default = cell[1:-1]
        else:
            pytest.fail(
                f"docs/configuration.md: default of {name} must be `code` or {EMPTY_DEFAULT}: {cell!r}"
            )
        rows[name] = (default, match["description"].strip())
    return rows


def _pom_kafka_version() -> str:
    version = ET.parse(KAFKA_POM).getroot().findtext(f"{POM_NS}properties/{POM_NS}kafka.version")
    assert version, "infra/kafka/pom.xml has no <kafka.version> property"
    return version.strip()


# (a) compose environment <-> Settings


def test_compose_env_anchor_sets_every_settings_variable_and_nothing_else() -> None:
    anchor = _load_compose().get(ENV_ANCHOR)
    assert isinstance(anchor, dict), f"docker-compose.yml has no {ENV_ANCHOR} mapping"
    expected = set(_settings_env())
    missing, stale = sorted(expected - set(anchor)), sorted(set(anchor) - expected)
    assert not missing, f"docker-compose.yml {ENV_ANCHOR} lacks Settings variables: {missing}"
    assert not stale, f"docker-compose.yml {ENV_ANCHOR} sets variables Settings does not read: {stale}"


def test_compose_env_values_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    anchor = _load_compose()[ENV_ANCHOR]
    fields = _settings_env()
    for name in fields:  # only the compose values count, not this process's environment
        monkeypatch.delenv(name, raising=False)
    for name, value in anchor.items():  # read as a container would: from its environment
        if name in fields:
            monkeypatch.setenv(name, str(_interpolated(value)))
    try:
        settings = Settings()
    except ValidationError as exc:
        pytest.fail(f"docker-compose.yml {ENV_ANCHOR} holds values Settings rejects:\n{exc}")
    assert settings.bus == "kafka"
    assert settings.database_url.startswith("postgresql+asyncpg://")


def test_compose_takes_credentials_keys_from_the_environment_only() -> None:
    value = str(_load_compose()[ENV_ANCHOR]["CREDENTIALS_KEYS"])
    assert re.fullmatch(r"\$\{CREDENTIALS_KEYS:\?[^}]+\}", value), (
        "docker-compose.yml must read CREDENTIALS_KEYS as ${CREDENTIALS_KEYS:?...}, never hold a key"
    )


# The one-shot tasks run as the schema's owner; a long-running service does not even see its URL.
TASKS = {"db", "topics"}


def test_every_portfolio_sync_service_gets_the_shared_environment() -> None:
    compose = _load_compose()
    for name, service in _portfolio_sync_services(compose).items():
        expected = dict(compose[ENV_ANCHOR])
        if _cli_args(name, service).command not in TASKS:
            expected["DATABASE_URL"] = ""
        assert service.get("environment") == expected, (
            f"docker-compose.yml service {name!r} must take its environment from *env"
            + ("" if _cli_args(name, service).command in TASKS else ", with DATABASE_URL empty")
        )


# (b) compose commands <-> CLI


def test_dockerfile_entrypoint_is_the_cli() -> None:
    # The compose commands below are arguments to this entrypoint.
    assert re.search(r'^ENTRYPOINT \["portfolio-sync"\]$', DOCKERFILE.read_text(), re.MULTILINE), (
        'Dockerfile must have ENTRYPOINT ["portfolio-sync"]'
    )


def test_compose_services_run_real_cli_commands() -> None:
    services = _portfolio_sync_services(_load_compose())
    ran = {_cli_args(name, service).command for name, service in services.items()}
    assert ran >= DEPLOYED_COMMANDS, f"docker-compose.yml does not run: {sorted(DEPLOYED_COMMANDS - ran)}"


def test_compose_fetchers_serve_registered_brokers_whose_topics_exist() -> None:
    fetched: dict[str, str] = {}
    topic_brokers: set[str] = set()
    for name, service in _portfolio_sync_services(_load_compose()).items():
        args = _cli_args(name, service)
        if args.command == "fetcher":
            fetched[name] = args.broker
        elif args.command == "topics":
            named = fetched_broker_codes() if args.brokers is None else args.brokers.split(",")
            topic_brokers.update(b.strip() for b in named if b.strip())
    assert fetched, "docker-compose.yml runs no fetcher"
    for name, broker in fetched.items():
        assert broker in known_brokers(), (
            f"docker-compose.yml {name!r}: no broker adapter is called {broker!r}"
        )
        assert name == f"fetcher-{broker}", (
            f"docker-compose.yml: call the fetcher of {broker!r} fetcher-{broker}"
        )
        assert broker in topic_brokers, f"docker-compose.yml `topics create --brokers` lacks {broker!r}"


def test_compose_creates_every_registered_brokers_topics_and_kafka_creates_none() -> None:
    services = _services(_load_compose())
    [topics_task] = [
        _cli_args(name, s)
        for name, s in _portfolio_sync_services(_load_compose()).items()
        if _cli_args(name, s).command == "topics"
    ]
    assert topics_task.brokers is None, (
        "docker-compose.yml: `topics create` without --brokers makes every broker's"
    )
    assert sorted(fetched_broker_codes()) == known_brokers()
    kafka_env = {str(k): str(v) for k, v in services["kafka"]["environment"].items()}
    assert kafka_env.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE") == "false", (
        'docker-compose.yml: set KAFKA_AUTO_CREATE_TOPICS_ENABLE: "false" on the kafka service'
    )


def test_compose_publishes_ports_on_loopback_only() -> None:
    published = [
        (name, str(port))
        for name, service in _services(_load_compose()).items()
        for port in service.get("ports", [])
    ]
    assert published, "docker-compose.yml publishes no port: the API should be reachable on 127.0.0.1"
    for name, port in published:
        assert port.startswith("127.0.0.1:"), (
            f"docker-compose.yml {name!r} publishes {port!r} on every interface: write 127.0.0.1:{port}"
        )


# (c) docs/configuration.md <-> Settings


def test_configuration_doc_lists_every_settings_variable_with_its_default() -> None:
    documented = _documented_variables()
    fields = _settings_env()
    missing, stale = sorted(set(fields) - set(documented)), sorted(set(documented) - set(fields))
    assert not missing, f"docs/configuration.md lacks Settings variables: {missing}"
    assert not stale, f"docs/configuration.md documents variables Settings does not read: {stale}"
    for env_name, field_name in fields.items():
        field = Settings.model_fields[field_name]
        default, description = documented[env_name]
        assert default == _documented_default(field), (
            f"docs/configuration.md: {env_name} defaults to {_documented_default(field)!r}, not {default!r}"
        )
        assert description == field.description, (
            f"docs/configuration.md: the description of {env_name} is the field's: {field.description!r}"
        )


# (d) one Kafka version


def test_kafka_images_match_the_broker_version_of_the_pom() -> None:
    expected = f"{KAFKA_IMAGE_REPO}:{_pom_kafka_version()}"
    images = [
        str(service["image"])
        for service in _services(_load_compose()).values()
        if str(service.get("image", "")).startswith(f"{KAFKA_IMAGE_REPO}:")
    ]
    assert images and set(images) == {expected}, (
        f"docker-compose.yml must run {expected} (infra/kafka/pom.xml), not {images}"
    )
    assert expected == infra.KAFKA_IMAGE, f"tests/support/infra.py KAFKA_IMAGE must be {expected}"


def test_compose_postgres_matches_the_test_image() -> None:
    images = [str(service.get("image", "")) for service in _services(_load_compose()).values()]
    assert infra.POSTGRES_IMAGE in images, f"docker-compose.yml must run {infra.POSTGRES_IMAGE}"


# (e) metrics


def test_compose_services_serve_metrics_on_the_compose_network_only() -> None:
    compose = _load_compose()
    anchor = compose[ENV_ANCHOR]
    assert int(anchor["METRICS_PORT"]) > 0, "docker-compose.yml: every service should serve /metrics"
    assert anchor["METRICS_HOST"] == "0.0.0.0", "Prometheus reaches the containers over the compose network"
    for name, service in _portfolio_sync_services(compose).items():
        published = [str(p) for p in service.get("ports", [])]
        assert not [p for p in published if p.endswith(f":{anchor['METRICS_PORT']}")], (
            f"docker-compose.yml {name!r} publishes its metrics port: keep it on the compose network"
        )


# (f) the `cluster` profile: three KRaft brokers, and the services pointed at them

CLUSTER_PROFILE = "cluster"
# The command the file's header gives for the cluster profile.
_CLUSTER_COMMAND = re.compile(r"KAFKA_SERVERS=(?P<servers>\S+) docker compose --profile cluster up")


def _cluster_brokers(compose: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Service name -> environment of the apache/kafka services of the cluster profile."""
    return {
        name: {str(k): str(v) for k, v in service["environment"].items()}
        for name, service in _services(compose).items()
        if CLUSTER_PROFILE in service.get("profiles", [])
        and str(service.get("image", "")).startswith(f"{KAFKA_IMAGE_REPO}:")
    }


def test_cluster_profile_runs_three_kraft_nodes_of_one_quorum() -> None:
    compose = _load_compose()
    brokers = _cluster_brokers(compose)
    assert len(brokers) == 3, f"docker-compose.yml profile {CLUSTER_PROFILE!r} must run 3 Kafka brokers"
    ids = {env["KAFKA_NODE_ID"]: name for name, env in brokers.items()}
    assert sorted(ids) == ["1", "2", "3"], "docker-compose.yml: the cluster's KAFKA_NODE_IDs must be 1, 2, 3"
    expected_voters = ",".join(f"{i}@{ids[i]}:9093" for i in sorted(ids))
    for name, env in brokers.items():
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller", f"{name}: broker and controller in one"
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == expected_voters, (
            f"docker-compose.yml {name}: KAFKA_CONTROLLER_QUORUM_VOTERS must be {expected_voters}"
        )
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        assert compose["services"][name]["hostname"] == name
        assert name in " ".join(compose["services"][name]["healthcheck"]["test"]), f"{name}: checks itself"
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert len({env["CLUSTER_ID"] for env in brokers.values()}) == 1, "one CLUSTER_ID for the three nodes"
    volumes = [str(v) for name in brokers for v in compose["services"][name]["volumes"]]
    assert len({v.split(":")[0] for v in volumes}) == 3, "each node needs a data volume of its own"


def test_cluster_profile_replicates_three_times_with_two_in_sync() -> None:
    for name, env in _cluster_brokers(_load_compose()).items():
        for key in (
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
            "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
            "KAFKA_DEFAULT_REPLICATION_FACTOR",
        ):
            assert env.get(key) == "3", f"docker-compose.yml {name}: {key} must be 3"
        for key in (
            "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
            "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR",
            "KAFKA_MIN_INSYNC_REPLICAS",
        ):
            assert env.get(key) == "2", f"docker-compose.yml {name}: {key} must be 2"


def test_services_reach_the_cluster_when_its_profile_is_used() -> None:
    compose = _load_compose()
    anchor = compose[ENV_ANCHOR]
    assert anchor["KAFKA_BOOTSTRAP_SERVERS"] == "${KAFKA_SERVERS:-kafka:9092}", (
        "docker-compose.yml: KAFKA_BOOTSTRAP_SERVERS is the single kafka unless KAFKA_SERVERS names "
        "the cluster"
    )
    # Topics made on the cluster get 3 replicas and 2 in sync: derived (0) or set so.
    assert int(anchor["KAFKA_REPLICATION_FACTOR"]) in {0, 3}
    assert int(anchor["KAFKA_MIN_INSYNC_REPLICAS"]) in {0, 2}
    commands = _CLUSTER_COMMAND.findall(COMPOSE_FILE.read_text())
    advertised = sorted(
        env["KAFKA_ADVERTISED_LISTENERS"].removeprefix("PLAINTEXT://")
        for env in _cluster_brokers(compose).values()
    )
    assert commands and all(sorted(c.split(",")) == advertised for c in commands), (
        f"docker-compose.yml: tell users to run KAFKA_SERVERS={','.join(advertised)} "
        "docker compose --profile cluster up"
    )
    [topics_task] = [s for s in _portfolio_sync_services(compose).values() if s["command"][0] == "topics"]
    for broker in ["kafka", *_cluster_brokers(compose)]:
        dependency = topics_task["depends_on"].get(broker)
        assert dependency == {"condition": "service_healthy", "required": False}, (
            f"docker-compose.yml: `topics` must wait for {broker} healthy, and not require it "
            "(a profile leaves it out)"
        )


# (g) each service its own database role


def test_compose_services_connect_as_their_own_roles_granted_after_the_migration() -> None:
    from sqlalchemy.engine import make_url

    from shared.db.ownership import SERVICES

    compose = _load_compose()
    anchor = compose[ENV_ANCHOR]
    owner = make_url(_interpolated(anchor["DATABASE_URL"]))
    users = set()
    for service in SERVICES:
        own = make_url(_interpolated(anchor[f"{service.upper()}_DATABASE_URL"]))
        assert own.username not in {None, owner.username}, (
            f"docker-compose.yml: {service.upper()}_DATABASE_URL must connect as the {service}'s own role"
        )
        assert (own.host, own.port, own.database) == (owner.host, owner.port, owner.database)
        users.add(own.username)
    assert len(users) == len(SERVICES), "docker-compose.yml: each service needs a role of its own"
    ours = _portfolio_sync_services(compose)
    tasks = {" ".join(map(str, s["command"])): name for name, s in ours.items()}
    assert "db roles" in tasks, "docker-compose.yml runs no `db roles`"
    roles = ours[tasks["db roles"]]
    assert roles["depends_on"][tasks["db upgrade"]]["condition"] == "service_completed_successfully"
    for name, service in ours.items():
        if _cli_args(name, service).command in set(SERVICES):
            assert service["depends_on"].get(tasks["db roles"], {}).get("condition") == (
                "service_completed_successfully"
            ), f"docker-compose.yml {name!r} must start after `db roles` completed"


def test_make_up_grants_each_service_its_role_after_the_migration_and_hides_the_owners_url() -> None:
    from shared.db.ownership import SERVICES

    stack = (REPO_ROOT / "infra" / "stack").read_text()
    upgrade, roles = stack.find("\n  portfolio-sync db upgrade"), stack.find("\n  portfolio-sync db roles")
    first_service = stack.find("\n  start_service api")
    assert 0 < upgrade < roles < first_service, (
        "infra/stack: `db roles` after `db upgrade`, before the services"
    )
    assert "for service in " + " ".join(SERVICES) + "; do" in stack
    assert '"${service^^}_DATABASE_URL=' in stack, "infra/stack must write each service's own URL"
    assert "env DATABASE_URL= " in stack, "infra/stack: a service must not see the schema owner's URL"
