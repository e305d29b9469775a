"""Run the pipeline's long-lived components as child processes and wait for them.

Used by ``slotstream demo``, the end-to-end tests and the benchmarks: the stream worker
(``slotstream stream``) and the sink (``slotstream sink``) run as real processes, with
the parent's settings passed down through ``SLOTSTREAM_*`` environment variables, so
they can be killed (``kill -9`` in the restart tests) and restarted like in production.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from slotstream.errors import SlotstreamError
from slotstream.kafka_admin import consumer_lag
from slotstream.settings import Settings

__all__ = ["Pipeline", "PipelineError", "consumer_groups", "namespaced", "settings_env"]

log = logging.getLogger(__name__)

COMPONENTS = ("stream", "sink")


def consumer_groups(settings: Settings) -> dict[str, tuple[str, list[str]]]:
    """Component -> (its consumer group id, the topics it consumes)."""
    topics = settings.kafka.topics
    return {
        "stream": (settings.stream.app_id, topics.stream_inputs),
        "sink": (settings.sink.group_id, topics.sink_inputs),
    }


def _instances(name: str, settings: Settings) -> list[str]:
    """Process names of a component: ``stream`` runs ``settings.stream.workers`` workers
    (``stream``, ``stream.2``, ...), which split the partitions as one consumer group."""
    count = settings.stream.workers if name == "stream" else 1
    return [name if i == 0 else f"{name}.{i + 1}" for i in range(count)]


class PipelineError(SlotstreamError):
    """A component died or the pipeline did not catch up in time."""


def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as ``SLOTSTREAM_*`` environment variables (secrets in clear text)."""
    env: dict[str, str] = {}

    def walk(prefix: str, model: BaseModel) -> None:
        for name in type(model).model_fields:
            value: Any = getattr(model, name)
            var = f"{prefix}{name.upper()}"
            if isinstance(value, BaseModel):
                walk(f"{var}__", value)
            elif value is None:
                continue
            elif isinstance(value, SecretStr):
                env[var] = value.get_secret_value()
            elif isinstance(value, dict | list):
                import json

                env[var] = json.dumps(value)
            else:
                env[var] = str(value)

    walk("SLOTSTREAM_", settings)
    return env


class Pipeline:
    """The stream worker and the sink as child processes, logs in ``log_dir``."""

    def __init__(self, settings: Settings, log_dir: Path | None = None) -> None:
        self.settings = settings
        self.log_dir = log_dir or settings.stack.log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._env = {**os.environ, **settings_env(settings)}

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(self, name: str) -> list[subprocess.Popen[bytes]]:
        """Start every process of component ``name`` (``stream`` or ``sink``) that is
        not running; returns them all."""
        assert name in COMPONENTS, name
        procs = []
        for instance in _instances(name, self.settings):
            proc = self.procs.get(instance)
            if proc is None or proc.poll() is not None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                with self.log_path(instance).open("ab") as log:
                    proc = subprocess.Popen(
                        [sys.executable, "-m", "slotstream", name],
                        env={**self._env, "SLOTSTREAM_STREAM__INSTANCE": instance},
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                self.procs[instance] = proc
            procs.append(proc)
        return procs

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to every process of a component and wait for them to exit."""
        for instance in _instances(name, self.settings):
            proc = self.procs.get(instance)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(sig)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop every component gracefully (SIGTERM), SIGKILL after 60 s."""
        for name in COMPONENTS:
            self.kill(name, signal.SIGTERM)

    def lags(self) -> dict[str, int]:
        """Unconsumed messages per component (consumer group lag, a count)."""
        bootstrap = self.settings.kafka.bootstrap_servers
        groups = consumer_groups(self.settings)
        return {name: consumer_lag(bootstrap, group, topics) for name, (group, topics) in groups.items()}

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = "\n".join(self.log_path(name).read_text(errors="replace").splitlines()[-30:])
                raise PipelineError(f"{name} exited with code {proc.returncode}; see {self.log_path(name)}\n{tail}")

    def wait_caught_up(
        self, timeout: float = 900.0, on_poll: Callable[[Mapping[str, int]], None] | None = None
    ) -> float:
        """Block until both consumer groups have lag 0; returns the seconds waited.

        The stream's lag is read before the sink's: the worker commits an offset only
        after its outputs were acknowledged, so once it is 0 the sink has everything
        to read. Raises :class:`PipelineError` if a component dies or ``timeout``
        (seconds) passes.
        """
        from kafka.errors import KafkaError

        start = time.monotonic()
        while True:
            self._check_alive()
            try:
                lags = self.lags()
            except KafkaError as exc:  # a slow or busy broker: ask again, within the timeout
                log.warning("reading consumer lag failed (%s); retrying", exc)
                if time.monotonic() - start > timeout:
                    raise PipelineError(f"pipeline did not catch up within {timeout:.0f} s: {exc}") from exc
                time.sleep(1.0)
                continue
            if on_poll is not None:
                on_poll(lags)
            if lags["stream"] == 0 and lags["sink"] == 0:
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise PipelineError(f"pipeline did not catch up within {timeout:.0f} s: lag {lags}")
            time.sleep(0.5)


def namespaced(settings: Settings, run: str) -> Settings:
    """``settings`` with its own topics, consumer groups and database schema, all named
    after ``run`` (letters, digits, ``_``): for tests and benchmarks beside the demo."""
    return settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(update={"topic_prefix": f"{run}."}),
            "stream": settings.stream.model_copy(update={"app_id": f"{run}-stream"}),
            "sink": settings.sink.model_copy(update={"group_id": f"{run}-sink"}),
            "postgres": settings.postgres.model_copy(update={"db_schema": run}),
        }
    )
