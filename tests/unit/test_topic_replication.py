"""Replication of new topics: derived from the cluster's size unless set, refused when impossible."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.bus.replication import Replication, ReplicationUnsatisfiable, topic_replication
from shared.settings import Settings


@pytest.mark.parametrize(
    ("brokers", "expected"),
    [(1, Replication(1, 1)), (2, Replication(2, 1)), (3, Replication(3, 2)), (6, Replication(3, 2))],
)
def test_unset_replication_follows_the_cluster_size(brokers: int, expected: Replication) -> None:
    assert topic_replication(brokers) == expected


def test_set_values_are_taken_as_they_are() -> None:
    assert topic_replication(5, factor=5, min_insync=3) == Replication(5, 3)
    assert topic_replication(3, factor=2) == Replication(2, 1)
    assert topic_replication(3, min_insync=1) == Replication(3, 1)


def test_a_factor_beyond_the_brokers_is_refused_with_what_to_do() -> None:
    with pytest.raises(ReplicationUnsatisfiable) as refused:
        topic_replication(1, factor=3)
    assert str(refused.value) == (
        "KAFKA_REPLICATION_FACTOR=3 but the Kafka cluster has 1 broker(s): "
        "set it to 1 or less, or 0 to derive it from the cluster"
    )


def test_more_in_sync_than_replicas_is_refused() -> None:
    with pytest.raises(
        ReplicationUnsatisfiable, match="KAFKA_MIN_INSYNC_REPLICAS=2 exceeds the replication factor 1"
    ):
        topic_replication(1, min_insync=2)


def test_settings_default_to_derived_and_refuse_more_in_sync_than_replicas(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("KAFKA_REPLICATION_FACTOR", "KAFKA_MIN_INSYNC_REPLICAS"):
        monkeypatch.delenv(name, raising=False)
    assert (Settings().kafka_replication_factor, Settings().kafka_min_insync_replicas) == (0, 0)

    monkeypatch.setenv("KAFKA_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("KAFKA_MIN_INSYNC_REPLICAS", "2")
    assert (Settings().kafka_replication_factor, Settings().kafka_min_insync_replicas) == (3, 2)

    monkeypatch.setenv("KAFKA_MIN_INSYNC_REPLICAS", "4")
    with pytest.raises(
        ValidationError, match="KAFKA_MIN_INSYNC_REPLICAS=4 exceeds KAFKA_REPLICATION_FACTOR=3"
    ):
        Settings()
