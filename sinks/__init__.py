"""The TimescaleDB sink: the pipeline's output topics -> slotstream's tables.

- :mod:`sinks.migrate` — versioned SQL migrations (``sinks/migrations/NNN_name.sql``).
- :mod:`sinks.writer` — :func:`~sinks.writer.write_batch`: one batch of contract records
  in one transaction, idempotent and order-insensitive.
- :mod:`sinks.runner` — :func:`~sinks.runner.run_sink` / :func:`~sinks.runner.main`: the
  Kafka consumer that feeds the writer and commits offsets after the database.
"""
