"""The one exception tree of slotstream.

Every error slotstream raises on purpose derives from :class:`SlotstreamError`, so a
caller (the CLI, a test) can catch the family and print its message; the message
always says what failed and what to do next (a log path, a missing tool).
"""

from __future__ import annotations


class SlotstreamError(Exception):
    """Base of every error raised on purpose by slotstream."""


class StackError(SlotstreamError):
    """The local stack (Kafka, PostgreSQL/TimescaleDB, Grafana) could not be managed."""


class MissingToolError(StackError):
    """A program the stack needs (java, mvn, apt-get, pg_ctl, ...) is not installed."""


class PortInUseError(StackError):
    """A port the stack wants to listen on is taken by another process."""


class BuildError(StackError):
    """Resolving or building a service failed; the message names the log file."""


class ServiceNotReadyError(StackError):
    """A service started but did not answer its readiness check in time."""


class TopicError(SlotstreamError):
    """A Kafka topic could not be created or exists with an incompatible layout."""
