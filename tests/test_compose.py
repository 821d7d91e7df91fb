"""The production stack files: docker-compose.yml (validated by Debian's docker-compose),
the Dockerfile, and their agreement with prometheus/ and grafana/ and the settings."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from driftline.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
LONG_RUNNING = {"kafka", "clickhouse", "worker", "retrainer", "prometheus", "grafana"}
#: Variables the compose file sets ahead of the settings field that reads them.


def raw() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    """The file as ``docker-compose config`` resolves it (fails if it is rejected)."""
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose is not installed")
    result = subprocess.run(
        [compose, "-f", str(COMPOSE), "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},  # no DRIFTLINE_* from the test environment
    )
    assert result.returncode == 0, result.stderr
    return dict(yaml.safe_load(result.stdout))


def test_docker_compose_config_accepts_the_file(resolved: dict[str, Any]) -> None:
    assert set(resolved["services"]) == LONG_RUNNING | {"init", "traffic"}


def test_every_service_restarts_and_long_running_ones_have_healthchecks(
    resolved: dict[str, Any],
) -> None:
    for name, service in resolved["services"].items():
        assert service.get("restart") in {"unless-stopped", "on-failure", "always"}, name
        if name in LONG_RUNNING:
            assert service["healthcheck"]["test"], name


def test_init_runs_topics_and_migrations_before_worker_and_retrainer(
    resolved: dict[str, Any],
) -> None:
    services = resolved["services"]
    init = " ".join([*services["init"].get("entrypoint", []), *services["init"]["command"]])
    assert "driftline topics create" in init and "driftline db migrate" in init
    for needs in ("kafka", "clickhouse"):
        assert services["init"]["depends_on"][needs]["condition"] == "service_healthy"
    for name in ("worker", "retrainer"):
        assert services[name]["depends_on"]["init"] == {
            "condition": "service_completed_successfully"
        }
    assert services["worker"]["command"][0] == "worker"
    assert services["retrainer"]["command"][0] == "retrainer"
    assert services["traffic"]["profiles"] == ["traffic"]


def test_the_retrainer_reserves_a_gpu(resolved: dict[str, Any]) -> None:
    retrainer = resolved["services"]["retrainer"]
    devices = retrainer["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert "cu" in retrainer["build"]["args"]["TORCH_INDEX_URL"].rsplit("/", 1)[-1]
    assert "deploy" not in resolved["services"]["worker"]


def test_driftline_variables_are_settings_fields(resolved: dict[str, Any]) -> None:
    fields = {f"DRIFTLINE_{name.upper()}" for name in Settings.model_fields}
    for name, service in resolved["services"].items():
        env = service.get("environment", {})
        unknown = {k for k in env if k.startswith("DRIFTLINE_")} - fields
        assert not unknown, f"{name} sets unknown settings {unknown}"
        if name in {"init", "worker", "retrainer", "traffic"}:
            assert env["DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
            assert env["DRIFTLINE_CLICKHOUSE_URL"] == "http://clickhouse:8123"
            # the settings model accepts what the stack passes
            Settings(
                **{
                    k.removeprefix("DRIFTLINE_").lower(): v
                    for k, v in env.items()
                    if k.startswith("DRIFTLINE_")
                }
            )


def test_mounted_files_exist_and_volumes_are_named() -> None:
    compose = raw()
    declared = set(compose["volumes"])
    used: set[str] = set()
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                used.add(source)
    assert used == declared
    grafana = compose["services"]["grafana"]
    assert "grafana-clickhouse-datasource" in grafana["environment"]["GF_INSTALL_PLUGINS"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"]}
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load(
        (ROOT / "grafana/provisioning/dashboards/dashboards.yml").read_text()
    )["providers"][0]
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert list((ROOT / "grafana/dashboards").glob("*.json"))


def scrape_targets(job: str) -> list[str]:
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    (scrape,) = [s for s in config["scrape_configs"] if s["job_name"] == job]
    return [t for static in scrape["static_configs"] for t in static["targets"]]


def test_prometheus_scrapes_the_ports_the_stack_serves(resolved: dict[str, Any]) -> None:
    if not (ROOT / "prometheus" / "prometheus.yml").exists():
        pytest.fail("prometheus/prometheus.yml is missing (mounted by docker-compose.yml)")
    services = resolved["services"]
    worker_port = services["worker"]["environment"]["DRIFTLINE_WORKER_WEB_PORT"]
    retrainer_port = services["retrainer"]["environment"]["DRIFTLINE_RETRAINER_METRICS_PORT"]
    assert scrape_targets("driftline-worker") == [f"worker:{worker_port}"]
    assert scrape_targets("driftline-retrainer") == [f"retrainer:{retrainer_port}"]
    assert str(worker_port) in services["worker"]["expose"]
    assert str(retrainer_port) in services["retrainer"]["expose"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in services["prometheus"]["volumes"]}
    assert Path(mounted["/etc/prometheus/rules.yml"]) == ROOT / "prometheus" / "rules.yml"
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    assert "rules.yml" in {Path(p).name for p in config.get("rule_files", [])}


def test_the_dockerfile_builds_a_non_root_driftline_image() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    assert re.search(r'^ENTRYPOINT \["driftline"\]$', text, re.M)
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user and user[-1] not in {"root", "0"}
    # torch: the pin of the train extra, CPU wheels unless the build arg says otherwise
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (pin,) = [d for d in pyproject["project"]["optional-dependencies"]["train"] if "torch" in d]
    version = re.search(r"^ARG TORCH_VERSION=(\S+)$", text, re.M)
    assert version and pin == f"torch=={version.group(1)}"
    assert re.search(r"^ARG TORCH_INDEX_URL=\S+/whl/cpu$", text, re.M)
    # every package folder that setuptools maps is copied into the image
    for folder in set(pyproject["tool"]["setuptools"]["package-dir"].values()):
        assert re.search(rf"^COPY {folder} {folder}$", text, re.M), folder
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".git" in ignored and ".venv" in ignored


def test_the_traffic_generator_stores_the_reference_profile_the_worker_needs(
    tmp_path: Path,
) -> None:
    """The worker evaluates a model's windows only against a stored reference profile;
    the traffic service stores the one of the "credit" v1 it sends before any traffic.
    Run here on an embedded store, with TRAFFIC_WINDOWS=0 (the reference only)."""
    import os
    import sys

    from driftline.store import EmbeddedStore

    traffic = raw()["services"]["traffic"]
    assert traffic["entrypoint"] == ["python", "-c"]
    (script,) = traffic["command"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
    env |= {
        "DRIFTLINE_DATA_DIR": str(tmp_path / "data"),
        "DRIFTLINE_MONITORS_DIR": str(ROOT / "monitors"),
        "TRAFFIC_WINDOWS": "0",
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    store = EmbeddedStore(tmp_path / "data" / "chdb", Settings().clickhouse_database)
    try:
        rows = store.query("SELECT model_id, model_version, profile FROM reference_profiles FINAL")
    finally:
        store.close()
    assert [(r["model_id"], r["model_version"]) for r in rows] == [("credit", "v1")]
    monitor = yaml.safe_load((ROOT / "monitors" / "credit.yaml").read_text())
    profiled = set(json.loads(rows[0]["profile"])["features"])
    assert set(monitor["features"]) <= profiled


def test_driftline_ports_stay_off_the_host_and_the_query_token_is_wired(
    resolved: dict[str, Any],
) -> None:
    services = resolved["services"]
    for name in ("worker", "retrainer", "init", "traffic"):
        assert "ports" not in services[name], f"{name} publishes a port on the host"
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"prometheus", "grafana"}
    assert "DRIFTLINE_QUERY_TOKEN" in raw()["services"]["worker"]["environment"]
