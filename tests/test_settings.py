"""Settings: environment names, nesting, defaults, and no silent typos."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from slotstream.settings import load_settings


def test_defaults_are_the_local_stack() -> None:
    s = load_settings()
    assert s.kafka.bootstrap_servers.startswith("127.0.0.1:")
    assert s.postgres.port != 5432  # never collide with a system PostgreSQL
    assert s.grafana.admin_password is None


def test_nested_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SLOTSTREAM_KAFKA__BOOTSTRAP_SERVERS", "kafka:19092")
    monkeypatch.setenv("SLOTSTREAM_POSTGRES__PORT", "6543")
    monkeypatch.setenv("SLOTSTREAM_STACK__STATE_DIR", str(tmp_path))
    s = load_settings()
    assert (s.kafka.host, s.kafka.port) == ("kafka", 19092)
    assert s.postgres.port == 6543
    assert "port=6543" in s.postgres.conninfo()
    assert f"user={s.postgres.reader_user}" in s.postgres.conninfo(reader=True)
    assert s.stack.state_dir == tmp_path


def test_cache_honours_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert load_settings().stack.cache_dir == tmp_path / "slotstream"


def test_bad_value_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLOTSTREAM_POSTGRES__PORT", "not-a-port")
    with pytest.raises(ValidationError, match="port"):
        load_settings()


def test_settings_are_frozen() -> None:
    s = load_settings()
    with pytest.raises(ValidationError):
        s.postgres.port = 1  # type: ignore[misc]


def test_the_sink_consumes_exactly_its_declared_inputs() -> None:
    from sinks.runner import topic_models
    from slotstream.topics import Topics

    topics = Topics("x.")
    assert sorted(topic_models(topics)) == sorted(topics.sink_inputs)
