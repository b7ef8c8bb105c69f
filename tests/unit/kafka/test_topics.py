"""Durable topics: replication, min.insync.replicas of the lifecycle topics, the ledger warning."""

from __future__ import annotations

import pytest

from pipeline.config.settings import load_settings
from pipeline.errors import ConfigError
from pipeline.kafka.topics import BROKER_DEFAULT, durability_warning, new_topic, topic_plans


def test_by_default_the_broker_chooses_the_replication() -> None:
    plans = topic_plans(load_settings({}))
    assert {plan.replication for plan in plans} == {BROKER_DEFAULT}
    assert all("min.insync.replicas" not in plan.config for plan in plans)
    request = new_topic(plans[0])
    assert (request.replication_factor, request.replica_assignments) == (-1, {})


def test_three_replicas_give_the_lifecycle_topics_min_insync_2() -> None:
    settings = load_settings({"CDRPIPE_TOPIC_REPLICATION": "3"})
    plans = {plan.name: plan for plan in topic_plans(settings)}
    assert {plan.replication for plan in plans.values()} == {3}
    lifecycle = {"cdr.erasure.requests", "cdr.erasure.ledger", "cdr.erasure.receipts", "cdr.subject.requests",
                 "cdr.subject.receipts"}  # fmt: skip
    assert {
        name for name, plan in plans.items() if plan.config.get("min.insync.replicas") == "2"
    } == lifecycle
    assert plans["cdr.erasure.ledger"].config["cleanup.policy"] == "compact"
    assert new_topic(plans["cdr.raw"]).replication_factor == 3


def test_min_insync_is_a_setting_of_its_own_and_fits_the_replication() -> None:
    two = topic_plans(load_settings({"CDRPIPE_TOPIC_REPLICATION": "2"}))
    assert all("min.insync.replicas" not in plan.config for plan in two), "2 replicas: no default"
    chosen = topic_plans(
        load_settings({"CDRPIPE_TOPIC_REPLICATION": "5", "CDRPIPE_TOPIC_MIN_INSYNC_REPLICAS": "3"})
    )
    assert {plan.config.get("min.insync.replicas") for plan in chosen} == {None, "3"}
    with pytest.raises(
        ConfigError, match=r"^CDRPIPE_TOPIC_MIN_INSYNC_REPLICAS=3 exceeds CDRPIPE_TOPIC_REPLICATION=2"
    ):
        load_settings({"CDRPIPE_TOPIC_REPLICATION": "2", "CDRPIPE_TOPIC_MIN_INSYNC_REPLICAS": "3"})
    with pytest.raises(ConfigError, match=r"^CDRPIPE_TOPIC_REPLICATION='0' is not usable"):
        load_settings({"CDRPIPE_TOPIC_REPLICATION": "0"})


@pytest.mark.parametrize(("replicas", "min_insync"), [(1, 1), (3, 1), (2, 2)])
def test_a_ledger_one_broker_could_lose_gets_a_warning(replicas: int, min_insync: int) -> None:
    warning = durability_warning("cdr.erasure.ledger", replicas, min_insync)
    assert warning is not None and "\n" not in warning
    assert f"cdr.erasure.ledger has {replicas} replica(s) and min.insync.replicas={min_insync}" in warning
    assert "CDRPIPE_TOPIC_REPLICATION=3" in warning
    assert warning.endswith("This is fine on a one-broker development cluster")


@pytest.mark.parametrize(("replicas", "min_insync"), [(3, 2), (5, 3)])
def test_a_durable_ledger_gets_none(replicas: int, min_insync: int) -> None:
    assert durability_warning("cdr.erasure.ledger", replicas, min_insync) is None
