"""Errors raised on purpose by the sink; all derive from :class:`SlotstreamError`."""

from __future__ import annotations

from slotstream.errors import SlotstreamError

__all__ = ["MigrationError", "RejectedBatchError", "SinkError"]


class SinkError(SlotstreamError):
    """The sink cannot run: a topic is missing, the database refused, ... (the message says which)."""


class MigrationError(SinkError):
    """The database schema cannot be migrated: a bad migration file, a missing extension,
    or a database migrated by a different set of migrations."""


class RejectedBatchError(SinkError):
    """The database refused data of a batch (a value out of range, a NUL character in
    text, ...); nothing of the batch was written. The cause is chained (``__cause__``)."""
