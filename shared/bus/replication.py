"""How many copies of each topic Kafka keeps, and how many must have a write before it counts.

`KAFKA_REPLICATION_FACTOR` and `KAFKA_MIN_INSYNC_REPLICAS` name them; 0 (the default) derives them
from the cluster: three replicas where there are three brokers or more (one per broker on a smaller
cluster), and one fewer in sync than replicas, at least one. So a three-broker cluster gets 3 and 2
(one broker may die and writes with acks=all go on, none lost), a single node 1 and 1.
"""

from __future__ import annotations

from dataclasses import dataclass

# Three copies survive one broker lost during another's maintenance; more buy little and cost disk.
DEFAULT_MAX_REPLICAS = 3


class ReplicationUnsatisfiable(ValueError):
    """The asked replication cannot be had on this cluster: topics created so would refuse writes."""


@dataclass(frozen=True)
class Replication:
    factor: int
    min_insync: int


def topic_replication(brokers: int, *, factor: int = 0, min_insync: int = 0) -> Replication:
    """The replication of new topics on a cluster of `brokers`; 0 for either setting: derived."""
    if brokers < 1:
        raise ReplicationUnsatisfiable("the Kafka cluster reports no broker")
    chosen_factor = factor or min(DEFAULT_MAX_REPLICAS, brokers)
    if chosen_factor > brokers:
        raise ReplicationUnsatisfiable(
            f"KAFKA_REPLICATION_FACTOR={chosen_factor} but the Kafka cluster has {brokers} broker(s): "
            f"set it to {brokers} or less, or 0 to derive it from the cluster"
        )
    chosen_min = min_insync or max(1, chosen_factor - 1)
    if chosen_min > chosen_factor:
        raise ReplicationUnsatisfiable(
            f"KAFKA_MIN_INSYNC_REPLICAS={chosen_min} exceeds the replication factor {chosen_factor}: "
            "no write could ever be acknowledged"
        )
    return Replication(chosen_factor, chosen_min)
