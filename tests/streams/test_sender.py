"""The batch sender: the default partitioner's partitions, per-partition order, and
every record acknowledged (real Kafka)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from slotstream.settings import Settings
from streams.sender import BatchSender, partition_of, partitioner
from tests.conftest import TopicFactory


@given(st.binary(min_size=0, max_size=64), st.integers(1, 12))
def test_partitions_are_the_default_partitioners(key: bytes, partitions: int) -> None:
    all_partitions = list(range(partitions))
    expected = DefaultPartitioner()(key, all_partitions, all_partitions)
    assert partition_of(key, partitions) == expected
    assert partitioner(key, all_partitions, all_partitions) == expected


def test_keyless_messages_go_to_some_partition() -> None:
    assert partitioner(None, [0, 1, 2], [1]) == 1


def test_batches_arrive_complete_in_order_on_the_keys_partition(stack: Settings, make_topic: TopicFactory) -> None:
    topics = [make_topic(partitions=3), make_topic(partitions=2)]
    # Enough records (and big enough values) to fill several batches per partition.
    outputs = [
        (topics[i * 7 % 11 % 2], f"key-{i * 7919 % 40}".encode(), f"{i:06d}".encode() * 200) for i in range(3000)
    ]

    async def run() -> list[tuple[str, int, bytes, bytes]]:
        bootstrap = stack.kafka.bootstrap_servers
        async with BatchSender(bootstrap, client_id="test-sender", max_batch_bytes=64 * 1024) as out:
            await out.send_all(outputs[:1000])
            await out.send_all(outputs[1000:])
        consumer = AIOKafkaConsumer(
            *topics, bootstrap_servers=stack.kafka.bootstrap_servers, auto_offset_reset="earliest", group_id=None
        )
        await consumer.start()
        got: list[tuple[str, int, bytes, bytes]] = []
        try:
            async with asyncio.timeout(30):
                while len(got) < len(outputs):
                    for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                        got += [(tp.topic, tp.partition, r.key, r.value) for r in records]
        finally:
            await consumer.stop()
        return got

    got = asyncio.run(run())
    assert len(got) == len(outputs)
    partitions = {topics[0]: 3, topics[1]: 2}
    for topic, partition, key, _value in got:
        assert partition == partition_of(key, partitions[topic])
    for topic in topics:
        for partition in range(partitions[topic]):
            sent = [(k, v) for t, k, v in outputs if t == topic and partition_of(k, partitions[topic]) == partition]
            assert [(k, v) for t, p, k, v in got if t == topic and p == partition] == sent
