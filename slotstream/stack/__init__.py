"""The local, Docker-less stack: Apache Kafka and PostgreSQL/TimescaleDB on loopback.

``slotstream stack up | down | status | logs`` drives it; state lives in
``Settings.stack.state_dir``, downloads and builds in ``Settings.stack.cache_dir``
(both outside the repository).
"""

from __future__ import annotations

from slotstream.settings import Settings
from slotstream.stack.base import Report, Service, ServiceStatus
from slotstream.stack.grafana import GrafanaBuild, GrafanaServer
from slotstream.stack.kafka import KafkaBroker
from slotstream.stack.postgres import PostgresServer

__all__ = ["Report", "Service", "ServiceStatus", "services"]


def services(settings: Settings) -> list[Service]:
    """The stack's services in start order (stop order is the reverse). Grafana is one
    once built (``slotstream stack build-grafana``; README, "Grafana")."""
    out: list[Service] = [
        KafkaBroker(settings.kafka, settings.stack),
        PostgresServer(settings.postgres, settings.stack),
    ]
    if GrafanaBuild(settings.stack).built:
        out.append(GrafanaServer(settings.grafana, settings.postgres, settings.stack))
    return out
