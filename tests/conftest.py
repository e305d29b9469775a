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
