"""Pinned versions of the services slotstream runs on.

One place for every version, read by the local stack (``slotstream stack``), by the
Kafka ``pom.xml`` (passed as ``-Dkafka.version``) and checked against
``docker-compose.yml`` by ``tests/test_compose.py``, so the Docker stack and the
Docker-less stack run the same releases.
"""

from __future__ import annotations

from typing import Final

#: Apache Kafka broker (``org.apache.kafka:kafka_2.13`` on Maven Central; image ``apache/kafka``).
KAFKA_VERSION: Final = "4.1.1"
#: log4j2 binding shipped with that Kafka release (its pom omits the SLF4J binding).
KAFKA_LOG4J_VERSION: Final = "2.24.3"
#: PostgreSQL major version of the local stack (Debian bookworm's ``postgresql-15``).
POSTGRES_MAJOR: Final = 15
#: PostgreSQL major version of the compose image (``timescale/timescaledb:<v>-pg17``).
COMPOSE_POSTGRES_MAJOR: Final = 17
#: TimescaleDB, built from Debian trixie's ``timescaledb`` source package here.
TIMESCALEDB_VERSION: Final = "2.19.3"
#: Grafana OSS (image ``grafana/grafana-oss``; built from its Go module here).
GRAFANA_VERSION: Final = "12.2.0"
#: Go module and commit the local stack builds that release from. Grafana's v11/v12 tags
#: do not match its module path, so the module proxy serves commits as pseudo-versions:
#: this is the 12.2.0 release branch commit named in issue 4 (12.2.0-pre).
GRAFANA_MODULE: Final = "github.com/grafana/grafana"
GRAFANA_COMMIT: Final = "5aa17d065a235eb047efe06eebd5ee8fd8dd47c4"

KAFKA_IMAGE: Final = f"apache/kafka:{KAFKA_VERSION}"
TIMESCALEDB_IMAGE: Final = f"timescale/timescaledb:{TIMESCALEDB_VERSION}-pg{COMPOSE_POSTGRES_MAJOR}"
GRAFANA_IMAGE: Final = f"grafana/grafana-oss:{GRAFANA_VERSION}"
