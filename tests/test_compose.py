"""docker-compose.yml agrees with the local stack: service names, ports, env variable
names and pinned versions (no Docker engine runs here, so this is how it is checked)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from slotstream import versions
from slotstream.cli import app
from slotstream.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
APP_SERVICES = ["topics", "stream", "sink", "produce-hotel-bookings"]
INFRA = {
    "kafka": versions.KAFKA_IMAGE,
    "timescaledb": versions.TIMESCALEDB_IMAGE,
    "grafana": versions.GRAFANA_IMAGE,
}
DEFAULTS = Settings()


def _env(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in (SERVICES[service].get("environment") or {}).items()}


def _host_ports(service: str) -> set[int]:
    """Host-side ports of "ip:host:container" mappings."""
    return {int(str(p).split(":")[-2]) for p in SERVICES[service].get("ports", [])}


def _settings_path_exists(env_name: str) -> bool:
    """True if SLOTSTREAM_A__B names the field Settings.a.b."""
    parts = env_name.removeprefix("SLOTSTREAM_").lower().split("__")
    model: type[BaseModel] = Settings
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        annotation = field.annotation
        if i < len(parts) - 1:
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                return False
            model = annotation
    return True


def test_expected_services() -> None:
    assert set(INFRA) | set(APP_SERVICES) <= set(SERVICES)


@pytest.mark.parametrize(("service", "image"), sorted(INFRA.items()))
def test_images_pinned_to_local_stack_versions(service: str, image: str) -> None:
    assert SERVICES[service]["image"] == image


def test_host_ports_equal_settings_defaults() -> None:
    assert _host_ports("kafka") == {DEFAULTS.kafka.port}
    assert _host_ports("timescaledb") == {DEFAULTS.postgres.port}
    assert _host_ports("grafana") == {DEFAULTS.grafana.port}
    for service in INFRA:  # published on loopback only
        assert all(str(p).startswith("127.0.0.1:") for p in SERVICES[service]["ports"])


@pytest.mark.parametrize("service", [*APP_SERVICES, "timescaledb", "grafana"])
def test_env_names_are_settings_fields(service: str) -> None:
    names = [n for n in _env(service) if n.startswith("SLOTSTREAM_")]
    assert names
    unknown = [n for n in names if not _settings_path_exists(n)]
    assert not unknown, f"{service}: {unknown} are not fields of slotstream.settings.Settings"


@pytest.mark.parametrize("service", APP_SERVICES)
def test_app_services_reach_kafka_on_its_advertised_internal_listener(service: str) -> None:
    advertised = _env("kafka")["KAFKA_ADVERTISED_LISTENERS"]
    bootstrap = _env(service)["SLOTSTREAM_KAFKA__BOOTSTRAP_SERVERS"]
    assert f"PLAINTEXT://{bootstrap}" in advertised.split(",")
    assert _env(service)["SLOTSTREAM_POSTGRES__HOST"] == "timescaledb"


@pytest.mark.parametrize("service", APP_SERVICES)
def test_app_commands_exist_in_the_cli(service: str) -> None:
    import typer.main

    command = SERVICES[service]["command"]
    assert command[0] == "slotstream"
    group = typer.main.get_command(app)
    ctx_command: Any = group
    for word in command[1:]:
        if word.startswith("-"):
            break
        ctx_command = ctx_command.commands.get(word)
        assert ctx_command is not None, f"{service}: `{' '.join(command)}` is not a slotstream command"


def test_healthchecks_and_ordering() -> None:
    for service in INFRA:
        assert "test" in SERVICES[service]["healthcheck"], service
    for service in ["stream", "sink", "produce-hotel-bookings"]:
        deps = SERVICES[service]["depends_on"]
        assert deps["kafka"]["condition"] == "service_healthy"
        assert deps["timescaledb"]["condition"] == "service_healthy"
        assert deps["topics"]["condition"] == "service_completed_successfully"


def test_named_volumes_declared() -> None:
    used = {
        v.split(":")[0] for s in SERVICES.values() for v in s.get("volumes", []) if not v.startswith((".", "/", "$"))
    }
    assert used and used <= set(COMPOSE["volumes"])


def test_secrets_come_from_env_file_without_defaults() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    referenced = set(re.findall(r"\$\{([A-Z_]+)", text))
    example = {
        line.split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert referenced <= example, referenced - example
    for var in ("POSTGRES_SUPERUSER_PASSWORD", "SLOTSTREAM_DB_PASSWORD", "GRAFANA_ADMIN_PASSWORD"):
        assert re.search(r"\$\{" + var + r":\?", text), f"{var} must be required, not defaulted"
        assert re.search(rf"^{var}=$", (ROOT / ".env.example").read_text(), re.M), f"{var} shipped with a value"


def test_pom_default_kafka_version_matches() -> None:
    pom = (ROOT / "slotstream" / "stack" / "pom.xml").read_text()
    assert f"<kafka.version>{versions.KAFKA_VERSION}</kafka.version>" in pom
    assert f"<log4j.version>{versions.KAFKA_LOG4J_VERSION}</log4j.version>" in pom
