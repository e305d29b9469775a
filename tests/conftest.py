"""Shared fixtures: settings read once, the real local stack, factories for topics."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

from slotstream.errors import SlotstreamError
from slotstream.kafka_admin import ensure_topics
from slotstream.settings import Settings, load_settings
from slotstream.topics import TopicSpec


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Settings:
    """The local stack, started if needed; fails (never skips) with the reason."""
    from slotstream.stack import services

    for service in services(settings):
        try:
            service.start(lambda _line: None)
        except SlotstreamError as exc:
            pytest.fail(f"the local stack could not start: {exc}", pytrace=False)
        status = service.status()
        if not status.healthy:
            pytest.fail(f"{status.name} is not healthy: {status.detail}; log {status.log}", pytrace=False)
    return settings


TopicFactory = Callable[..., str]


@pytest.fixture
def make_topic(stack: Settings) -> TopicFactory:
    """Create a fresh, uniquely named topic; returns its name."""

    def make(partitions: int = 1, cleanup_policy: str = "delete") -> str:
        spec = TopicSpec(
            name=f"test.{uuid.uuid4().hex[:12]}",
            partitions=partitions,
            cleanup_policy=cleanup_policy,  # type: ignore[arg-type]
            description="test topic",
        )
        ensure_topics(stack.kafka.bootstrap_servers, [spec])
        return spec.name

    return make


@pytest.fixture
def db(stack: Settings) -> Iterator[psycopg.Connection]:
    """A connection as the schema owner (autocommit)."""
    with psycopg.connect(stack.postgres.conninfo(), autocommit=True) as conn:
        yield conn


@pytest.fixture
def reader_db(stack: Settings) -> Iterator[psycopg.Connection]:
    """A connection as the read-only (Grafana) role."""
    with psycopg.connect(stack.postgres.conninfo(reader=True), autocommit=True) as conn:
        yield conn


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say loudly when the Grafana tests were skipped for want of a Grafana server
    (tests/e2e/test_grafana.py): a green run without them is not a Grafana-tested run."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if "GRAFANA TESTS DID NOT RUN" in str(r.longrepr)]
    if not skipped:
        return
    reason = str(skipped[0].longrepr[-1]) if isinstance(skipped[0].longrepr, tuple) else str(skipped[0].longrepr)
    terminalreporter.section("GRAFANA TESTS DID NOT RUN", sep="!", red=True, bold=True)
    terminalreporter.write_line(f"{len(skipped)} Grafana tests skipped: no real Grafana server. {reason}", red=True)
    terminalreporter.write_line("Panel SQL was checked against TimescaleDB only (tests/e2e/test_dashboard_queries.py).")
