"""The whole hotel file replayed once per session, shared by the end-to-end modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from slotstream.settings import Settings
from tests.e2e.replay import drop, isolated, replay


@pytest.fixture(scope="session")
def replayed(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """The whole hotel file replayed once, uninterrupted; yields its settings."""
    s = isolated(stack, "full")
    replay(s, tmp_path_factory.mktemp("replay-logs"))
    yield s
    drop(s)
