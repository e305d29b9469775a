"""The real broker: round trips with aiokafka and kafka-python, idempotent and
transactional producers, idempotent topic creation, no auto-created topics."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient

from slotstream.errors import TopicError
from slotstream.kafka_admin import ensure_topics, existing_topics
from slotstream.settings import Settings
from slotstream.topics import Topics, TopicSpec
from tests.conftest import TopicFactory

pytestmark = pytest.mark.integration


async def _consume(bootstrap: str, topic: str, count: int, **kw: object) -> list[tuple[bytes, bytes]]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=f"test-{uuid.uuid4().hex[:8]}",
        **kw,
    )
    await consumer.start()
    out: list[tuple[bytes, bytes]] = []
    try:
        async with asyncio.timeout(30):
            async for msg in consumer:
                out.append((msg.key, msg.value))
                if len(out) == count:
                    break
    finally:
        await consumer.stop()
    return out


def test_aiokafka_idempotent_round_trip(stack: Settings, make_topic: TopicFactory) -> None:
    topic = make_topic(partitions=2)
    sent = [(f"k{i % 3}".encode(), f"v{i}".encode()) for i in range(200)]

    async def run() -> list[tuple[bytes, bytes]]:
        producer = AIOKafkaProducer(
            bootstrap_servers=stack.kafka.bootstrap_servers, enable_idempotence=True, acks="all"
        )
        await producer.start()
        try:
            for key, value in sent:
                await producer.send(topic, value, key=key)
            await producer.flush()
        finally:
            await producer.stop()
        return await _consume(stack.kafka.bootstrap_servers, topic, len(sent))

    got = asyncio.run(run())
    assert sorted(got) == sorted(sent)
    for key in {k for k, _ in sent}:  # one key's messages stay in order (same partition)
        assert [v for k, v in got if k == key] == [v for k, v in sent if k == key]


def test_kafka_python_idempotent_round_trip(stack: Settings, make_topic: TopicFactory) -> None:
    topic = make_topic()
    producer = KafkaProducer(bootstrap_servers=stack.kafka.bootstrap_servers, enable_idempotence=True, acks="all")
    for i in range(100):
        producer.send(topic, key=b"k", value=str(i).encode())
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=stack.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=f"test-{uuid.uuid4().hex[:8]}",
        consumer_timeout_ms=15_000,
    )
    values = [int(m.value) for m in consumer]
    consumer.close()
    assert values == list(range(100))


def test_transactional_producer_commits_on_one_broker(stack: Settings, make_topic: TopicFactory) -> None:
    """Needs transaction.state.log replication factor 1 on a single broker."""
    topic = make_topic()

    async def run() -> list[tuple[bytes, bytes]]:
        producer = AIOKafkaProducer(
            bootstrap_servers=stack.kafka.bootstrap_servers,
            transactional_id=f"test-tx-{uuid.uuid4().hex[:8]}",
        )
        await producer.start()
        try:
            async with producer.transaction():
                await producer.send(topic, b"aborted", key=b"a")
                raise_abort = True
                if raise_abort:
                    await producer.abort_transaction()
                    await producer.begin_transaction()
                await producer.send(topic, b"committed", key=b"a")
        finally:
            await producer.stop()
        return await _consume(stack.kafka.bootstrap_servers, topic, 1, isolation_level="read_committed")

    assert asyncio.run(run()) == [(b"a", b"committed")]


def test_topics_create_is_idempotent(stack: Settings) -> None:
    ensure_topics(stack.kafka.bootstrap_servers)
    assert ensure_topics(stack.kafka.bootstrap_servers) == []
    have = existing_topics(stack.kafka.bootstrap_servers)
    for spec in Topics().specs():
        assert have[spec.name] == spec.partitions


def test_declared_cleanup_policies_reach_the_broker(stack: Settings) -> None:
    from kafka.admin import ConfigResource, ConfigResourceType

    ensure_topics(stack.kafka.bootstrap_servers)
    admin = KafkaAdminClient(bootstrap_servers=stack.kafka.bootstrap_servers)
    try:
        for spec in Topics().specs():
            result = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, spec.name)])
            entries = result["topic"][spec.name]
            for key, value in spec.configs().items():
                assert entries[key]["value"] == value, (spec.name, key)
    finally:
        admin.close()


def test_partition_mismatch_is_refused(stack: Settings, make_topic: TopicFactory) -> None:
    name = make_topic(partitions=1)
    spec = TopicSpec(name=name, partitions=3, cleanup_policy="delete", description="")
    with pytest.raises(TopicError, match="1 partitions"):
        ensure_topics(stack.kafka.bootstrap_servers, [spec])


def test_broker_does_not_auto_create_topics(stack: Settings) -> None:
    from kafka.errors import KafkaTimeoutError

    topic = f"test.never-created.{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(bootstrap_servers=stack.kafka.bootstrap_servers, max_block_ms=3000)
    try:
        with pytest.raises(KafkaTimeoutError):
            producer.send(topic, b"x").get(timeout=5)
    finally:
        producer.close()
    assert topic not in existing_topics(stack.kafka.bootstrap_servers)
