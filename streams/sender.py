"""Send a batch's outputs with aiokafka's batch API, and wait for every acknowledgement.

The stream worker sends ~1.2 M messages on the full hotel replay. Sending them one by
one (``producer.send``: a partitioner call in pure Python, a future and a done callback
per message) cost ~12.5 µs of CPU per message here, against ~2.3 µs when the records
are appended to one :class:`aiokafka.producer.BatchBuilder` per partition and each
builder is sent whole (``send_batch``), with the murmur2 hash of repeated keys cached
(measured: 200k messages of 700 bytes, 2,000 per round, local broker, process CPU
time). Partitions are chosen exactly as aiokafka's and the Java client's default
partitioner choose them (murmur2 of the key), so keys land where the Faust tables and
the sink expect them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from aiokafka.producer.message_accumulator import BatchBuilder

__all__ = ["BatchSender", "Output", "partition_of", "partitioner"]

Output = tuple[str, bytes, bytes]  # topic, key, value


@lru_cache(maxsize=262_144)  # keys repeat (slots, count buckets): hash each once
def _hash(key: bytes) -> int:
    return int(murmur2(key)) & 0x7FFFFFFF


def partition_of(key: bytes, partitions: int) -> int:
    """The partition (0 .. ``partitions`` - 1) of ``key``: the default partitioner's."""
    return _hash(key) % partitions


def partitioner(key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]) -> int:
    """aiokafka's ``DefaultPartitioner`` with the key hash cached (for Faust's producer,
    which writes the table changelogs). A message without a key goes to a random
    partition, as there."""
    if key is None:
        from aiokafka.partitioner import DefaultPartitioner

        return int(DefaultPartitioner()(key, all_partitions, available))
    return all_partitions[_hash(key) % len(all_partitions)]


class BatchSender:
    """Owns an :class:`AIOKafkaProducer` (acks from every in-sync replica) and sends
    whole batches of outputs with it; see the module doc for why."""

    def __init__(self, bootstrap_servers: str, *, client_id: str, max_batch_bytes: int = 256 * 1024) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            acks="all",
            # Batches are complete when sent: waiting for more records would only delay them.
            linger_ms=0,
            max_batch_size=max_batch_bytes,
        )
        self._partitions: dict[str, int] = {}

    async def __aenter__(self) -> BatchSender:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def _partition_count(self, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            count = self._partitions[topic] = len(await self._producer.partitions_for(topic))
        return count

    async def send_all(self, outputs: Iterable[Output]) -> None:
        """Send ``outputs`` (topic, key, value) and return once the broker acknowledged
        all of them; raises the producer's error otherwise. Records of one partition
        keep their order."""
        producer = self._producer
        builders: dict[tuple[str, int], BatchBuilder] = {}
        pending: list[asyncio.Future[Any]] = []
        for topic, key, value in outputs:
            partition = partition_of(key, await self._partition_count(topic))
            builder = builders.get((topic, partition))
            if builder is None:
                builder = builders[topic, partition] = producer.create_batch()
            if builder.append(key=key, value=value, timestamp=None) is None:
                # Full: send it (send_batch waits while the partition's previous batch
                # is still queued) and start the next one with this record.
                pending.append(await producer.send_batch(builder, topic, partition=partition))
                builder = builders[topic, partition] = producer.create_batch()
                if builder.append(key=key, value=value, timestamp=None) is None:
                    raise ValueError(f"a record of {len(key) + len(value)} bytes does not fit in a batch")
        for (topic, partition), builder in builders.items():
            pending.append(await producer.send_batch(builder, topic, partition=partition))
        if pending:
            await asyncio.gather(*pending)
