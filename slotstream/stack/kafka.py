"""The local Apache Kafka broker: one node in KRaft mode, run from Maven Central jars.

The jars of ``org.apache.kafka:kafka_2.13`` (version in :mod:`slotstream.versions`)
are resolved once with ``mvn dependency:copy-dependencies`` from the ``pom.xml`` beside
this module into ``<cache>/kafka/<version>/libs``; the broker runs as ``java
kafka.Kafka server.properties`` with its storage formatted once under
``<state>/kafka``.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import uuid
from pathlib import Path

from slotstream import versions
from slotstream.errors import BuildError, ServiceNotReadyError
from slotstream.settings import KafkaSettings, StackSettings
from slotstream.stack.base import Report, ServiceStatus
from slotstream.stack.process import (
    ensure_port_free,
    read_pid,
    require_tool,
    run_logged,
    stop_pid_file,
    tail,
    wait_started,
)

__all__ = ["KafkaBroker", "broker_answers"]

_POM = Path(__file__).with_name("pom.xml")
_JAVA_HINT = "Install a Java 17 runtime (apt-get install openjdk-17-jre-headless)."

_LOG4J2 = """\
Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: org.apache.kafka
        level: WARN
      - name: kafka.request.logger
        level: WARN
"""


def broker_answers(bootstrap_servers: str, timeout_s: float = 5.0) -> bool:
    """True if the broker answers a metadata request (describe cluster) with a broker."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        request_timeout_ms=int(timeout_s * 1000),
    )
    try:
        return bool(admin.describe_cluster().get("brokers"))
    finally:
        admin.close()


class KafkaBroker:
    """Single-node KRaft broker on loopback; see the module docstring."""

    name = "kafka"

    def __init__(self, kafka: KafkaSettings, stack: StackSettings) -> None:
        self._kafka = kafka
        self._home = stack.state_dir / "kafka"
        self._libs = stack.cache_dir / "kafka" / versions.KAFKA_VERSION / "libs"
        self._log = stack.log_dir / "kafka.log"
        self._pid_file = self._home / "kafka.pid"

    @property
    def log_path(self) -> Path:
        return self._log

    def _installed(self) -> bool:
        return (self._libs / f"kafka_2.13-{versions.KAFKA_VERSION}.jar").exists()

    def install(self, report: Report) -> None:
        """Resolve the broker jars from Maven Central (cached)."""
        if self._installed():
            return
        require_tool("java", _JAVA_HINT)
        mvn = require_tool("mvn", "Install Maven (apt-get install maven).")
        report(f"resolving Kafka {versions.KAFKA_VERSION} jars from Maven Central")
        staging = self._libs.with_name("libs.partial")
        shutil.rmtree(staging, ignore_errors=True)
        run_logged(
            [
                mvn,
                "-B",
                "-q",
                "-f",
                _POM,
                "dependency:copy-dependencies",
                f"-Dkafka.version={versions.KAFKA_VERSION}",
                f"-Dlog4j.version={versions.KAFKA_LOG4J_VERSION}",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={staging}",
            ],
            self._libs.parent / "maven.log",
            "Resolving the Kafka jars with Maven",
        )
        staging.rename(self._libs)  # atomic: a half-done download is never taken as done

    def _write_config(self) -> Path:
        k = self._kafka
        host, port, cport = k.host, k.port, k.controller_port
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{host}:{cport}",
            "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}",
            "advertised.listeners": f"PLAINTEXT://{host}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self._home / "data"),
            "num.partitions": "1",
            # Topics are declared in slotstream.topics and created on purpose.
            "auto.create.topics.enable": "false",
            # One broker: internal topics must not ask for more replicas than exist,
            # or idempotent/transactional producers and consumer groups never work.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.cleaner.dedupe.buffer.size": str(32 * 1024 * 1024),
        }
        self._home.mkdir(parents=True, exist_ok=True)
        conf = self._home / "server.properties"
        conf.write_text("".join(f"{key}={value}\n" for key, value in props.items()))
        (self._home / "log4j2.yaml").write_text(_LOG4J2)
        return conf

    def _java(self, main: str, *args: str) -> list[str]:
        java = require_tool("java", _JAVA_HINT)
        return [
            java,
            f"-Xms{self._kafka.heap}",
            f"-Xmx{self._kafka.heap}",
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={self._home / 'log4j2.yaml'}",
            f"-Dkafka.logs.dir={self._home / 'logs'}",
            "-cp",
            f"{self._libs}/*",
            main,
            *args,
        ]

    def _format_once(self, conf: Path, report: Report) -> None:
        if (self._home / "data" / "meta.properties").exists():
            return
        report("formatting Kafka storage (KRaft)")
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        run_logged(
            self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(conf)),
            self._log,
            "Formatting the Kafka storage",
        )

    def start(self, report: Report) -> None:
        if read_pid(self._pid_file) is not None:
            return
        self.install(report)
        k = self._kafka
        ensure_port_free(k.host, k.port, "Kafka")
        ensure_port_free(k.host, k.controller_port, "Kafka (controller)")
        conf = self._write_config()
        self._format_once(conf, report)
        report(f"starting Kafka {versions.KAFKA_VERSION} on {k.bootstrap_servers}")
        self._log.parent.mkdir(parents=True, exist_ok=True)
        with self._log.open("ab") as out:
            proc = subprocess.Popen(
                self._java("kafka.Kafka", str(conf)),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # own process group: `down` stops it and its children
            )
        self._pid_file.write_text(f"{proc.pid}\n")

        def ready() -> bool:
            if proc.poll() is not None:
                raise BuildError(f"Kafka exited with code {proc.returncode}; see {self._log}\n{tail(self._log)}")
            return broker_answers(k.bootstrap_servers, timeout_s=2.0)

        ok = wait_started(ready, k.start_timeout_s, self._pid_file)
        if not ok:
            raise ServiceNotReadyError(
                f"Kafka did not answer a metadata request within {k.start_timeout_s:.0f} s; "
                f"see {self._log}\n{tail(self._log)}"
            )

    def stop(self) -> None:
        stop_pid_file(self._pid_file, timeout=60.0)

    def status(self) -> ServiceStatus:
        pid = read_pid(self._pid_file)
        healthy = False
        detail = ""
        if pid is not None:
            try:
                healthy = broker_answers(self._kafka.bootstrap_servers)
            except Exception as exc:  # noqa: BLE001 - shown to the user as the reason
                detail = f"{type(exc).__name__}: {exc}"
        elif not self._installed():
            detail = "not installed (jars not resolved yet)"
        return ServiceStatus(
            name=self.name,
            running=pid is not None,
            healthy=healthy,
            pid=pid,
            address=self._kafka.bootstrap_servers,
            version=versions.KAFKA_VERSION,
            log=self._log,
            detail=detail,
        )
