"""The bus's partitioner chooses what Kafka's default partitioner does, hashes remembered or not."""

from __future__ import annotations

import uuid

from aiokafka.partitioner import DefaultPartitioner

from shared.bus.partitioner import partition


def test_keys_go_where_the_default_partitioner_sends_them_also_when_remembered() -> None:
    default = DefaultPartitioner()
    keys = [str(uuid.uuid4()).encode() for _ in range(200)] + [b"", b"x"]
    for all_partitions in ([0], [0, 1, 2, 3], list(range(12))):
        for _ in range(2):  # the second time from what was remembered
            chosen = [partition(k, all_partitions, all_partitions) for k in keys]
            assert chosen == [default(k, all_partitions, all_partitions) for k in keys]
    assert len({partition(k, [0, 1, 2, 3], [0, 1, 2, 3]) for k in keys}) == 4


def test_no_key_goes_to_an_available_partition() -> None:
    assert {partition(None, [0, 1, 2, 3], [2]) for _ in range(20)} == {2}
