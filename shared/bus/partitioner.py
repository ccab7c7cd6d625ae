"""Kafka's default partitioner with each key's hash remembered.

aiokafka's `DefaultPartitioner` hashes the key (murmur2, as the Java client does) in pure Python on
every send: a few microseconds a message, a tenth of the ledger's relay. A service sends under the
same keys again and again (an account's id, for each of its events), so the hashes of recent keys are
kept. The partition chosen is the default partitioner's, always.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from aiokafka.partitioner import DefaultPartitioner, murmur2

_KEYS_REMEMBERED = 100_000  # a few MB


@functools.lru_cache(maxsize=_KEYS_REMEMBERED)
def _hash(key: bytes) -> int:
    return int(murmur2(key)) & 0x7FFFFFFF


def partition(key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]) -> int:
    """The partition for `key` among `all_partitions` (sorted by id), as `DefaultPartitioner` says."""
    if key is None:
        return int(DefaultPartitioner()(key, all_partitions, available))  # a random one
    return all_partitions[_hash(key) % len(all_partitions)]
