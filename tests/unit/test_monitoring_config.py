"""The shipped monitoring files against the code: every metric an alert or a dashboard panel names
is one the services register, and Prometheus scrapes every service docker-compose.yml runs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY

import services.api.metrics
import services.fetcher.metrics
import services.ledger.metrics
import services.scheduler.metrics
import services.webhooks.metrics
import shared.metrics

REPO_ROOT = Path(__file__).resolve().parents[2]
MONITORING = REPO_ROOT / "infra" / "monitoring"
ALERTS = MONITORING / "alerts.yml"
DASHBOARD = MONITORING / "grafana" / "portfolio-sync.json"
PROMETHEUS = MONITORING / "prometheus.yml"
COMPOSE = REPO_ROOT / "docker-compose.yml"
OPERATIONS_DOC = REPO_ROOT / "docs" / "operations.md"

_METRIC = re.compile(r"\bportfolio_sync_[a-z0-9_]+\b")
# Series every scraped target has, which Prometheus adds itself.
_PROMETHEUS_OWN = {"up"}
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}


def _registered() -> set[str]:
    """Every series name the services' metrics expose, labelled children or not."""
    services.fetcher.metrics.process_metrics()  # the fetcher registers on first use
    assert services.api.metrics and services.ledger.metrics and services.scheduler.metrics and shared.metrics
    assert services.webhooks.metrics
    names: set[str] = set()
    for family in REGISTRY.collect():
        if family.name.startswith("portfolio_sync_"):
            names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
    return names


def _alert_rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(ALERTS.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def _panel_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_every_alert_names_only_registered_metrics() -> None:
    registered = _registered()
    rules = _alert_rules()
    assert rules
    for rule in rules:
        named = set(_METRIC.findall(rule["expr"]))
        assert named or "up{" in rule["expr"], f"alert {rule['alert']} names no metric"
        assert named <= registered, (
            f"alert {rule['alert']} names unknown metrics: {sorted(named - registered)}"
        )
        assert {"alert", "expr", "labels", "annotations"} <= rule.keys(), rule["alert"]


def test_the_issue_s_alerts_are_all_there() -> None:
    alerts = {rule["alert"] for rule in _alert_rules()}
    wanted = {"FetcherGone", "ConsumerLagGrowing", "SyncFailureRatioHigh", "NeedsReauthSurge", "OutboxStuck"}
    assert wanted <= alerts


def test_every_alert_is_explained_in_the_operations_doc() -> None:
    doc = OPERATIONS_DOC.read_text()
    alerts_section = doc[doc.index("## Alerts") :]
    for rule in _alert_rules():
        assert f"### {rule['alert']}" in alerts_section, f"docs/operations.md: no section for {rule['alert']}"


def test_every_registered_metric_is_explained_in_the_operations_doc() -> None:
    doc = OPERATIONS_DOC.read_text()
    services.fetcher.metrics.process_metrics()
    families = {f.name for f in REGISTRY.collect() if f.name.startswith("portfolio_sync_")}
    for name in families:
        assert f"`{name}" in doc, f"docs/operations.md does not explain {name}"


def test_every_dashboard_panel_queries_registered_metrics() -> None:
    registered = _registered() | _PROMETHEUS_OWN
    exprs = _panel_exprs()
    assert len(exprs) >= 10
    used: set[str] = set()
    for expr in exprs:
        named = set(_METRIC.findall(expr)) | ({"up"} if re.fullmatch(r"up\b.*", expr) else set())
        assert named, f"dashboard panel queries no metric: {expr}"
        assert named <= registered, f"dashboard queries unknown metrics: {sorted(named - registered)}"
        used |= named
    families = {f.name for f in REGISTRY.collect() if f.name.startswith("portfolio_sync_")}
    unshown = {f for f in families if not any(u.startswith(f) for u in used)}
    assert not unshown, f"no dashboard panel shows {sorted(unshown)}"


def test_prometheus_scrapes_every_service_compose_runs_on_its_metrics_port() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    port = compose["x-portfolio-sync-env"]["METRICS_PORT"]
    long_running = {
        name
        for name, service in compose["services"].items()
        if "build" in service and service.get("restart") == "unless-stopped"
    }
    assert {"api", "scheduler", "ledger", "fetcher-sim"} <= long_running
    scrape = yaml.safe_load(PROMETHEUS.read_text())
    targets = {
        target
        for job in scrape["scrape_configs"]
        for config in job["static_configs"]
        for target in config["targets"]
    }
    assert targets == {f"{name}:{port}" for name in long_running}
    assert "/etc/prometheus/alerts.yml" in scrape["rule_files"]
    fetcher_job = [job for job in scrape["scrape_configs"] if job["job_name"] == "fetcher"]
    assert fetcher_job, "FetcherGone watches job=fetcher"
    for job in scrape["scrape_configs"]:
        for config in job["static_configs"]:
            assert "broker" not in config.get("labels", {}), "a target label would rename the metrics' broker"


def test_monitoring_runs_under_its_profile_from_official_images_with_the_shipped_files() -> None:
    services_ = yaml.safe_load(COMPOSE.read_text())["services"]
    for name, image in (("prometheus", "prom/prometheus:"), ("grafana", "grafana/grafana:")):
        service = services_[name]
        assert service.get("profiles") == ["monitoring"], f"{name} runs only with --profile monitoring"
        assert str(service["image"]).startswith(image)
        for volume in service["volumes"]:
            source = str(volume).split(":")[0]
            if source.startswith("./"):
                assert (REPO_ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
    mounted = " ".join(str(v) for v in services_["prometheus"]["volumes"] + services_["grafana"]["volumes"])
    for shipped in (PROMETHEUS, ALERTS, DASHBOARD):
        assert "./" + str(shipped.relative_to(REPO_ROOT)) in mounted, f"{shipped.name} is not mounted"
    for name, service in services_.items():
        if "build" not in service:
            continue
        assert "9100" not in " ".join(str(p) for p in service.get("ports", [])), f"{name} publishes metrics"
