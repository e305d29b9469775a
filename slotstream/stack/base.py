"""What every service of the local stack offers to ``slotstream stack``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = ["Report", "Service", "ServiceStatus"]

#: Progress callback: one line of what a long step is doing now.
Report = Callable[[str], None]


@dataclass(frozen=True)
class ServiceStatus:
    """One row of ``slotstream stack status``."""

    name: str
    running: bool
    healthy: bool
    pid: int | None
    address: str
    version: str
    log: Path
    detail: str = ""


class Service(Protocol):
    """A locally run service: install (cached), start, stop, status; all idempotent."""

    name: str

    def install(self, report: Report) -> None:
        """Fetch/build what the service needs; a no-op when the cache is warm."""

    def start(self, report: Report) -> None:
        """Start and wait until ready; a no-op when already running."""

    def stop(self) -> None:
        """Stop; leaves no process behind; a no-op when not running."""

    def status(self) -> ServiceStatus:
        """Pid, address, version and a real health probe."""

    @property
    def log_path(self) -> Path:
        """The service's log file."""
