"""Create the topics cdrpipe reads and writes, with bounded retention where they hold raw data.

Contract: :func:`ensure_topics` returns once every topic in the plan exists and
every partition of it has a leader (so the first produce is not answered "not
leader" while fresh topics elect theirs); existing topics are left as they are
(their configuration is the operator's). Topics are the worker's job: the CLI
never creates one (:func:`require_topics` only checks that its topics exist).
:func:`retention_days` asks the broker how long topics really keep data
(``describe_configs``), and :func:`retention_warnings` names each topic that
keeps raw data longer than its plan (or without a time limit).
:func:`durability` reads a topic's replicas and ``min.insync.replicas``, and
:func:`durability_warning` says when the ledger could be lost with one broker.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from pipeline.config.settings import Settings
from pipeline.errors import ConfigError
from pipeline.kafka.connection import KafkaConnection

TOPIC_ALREADY_EXISTS = 36
MS_PER_DAY = 86_400_000
LEADER_WAIT_S = 30.0
BROKER_DEFAULT = -1
"""The replication factor that lets the broker apply its ``default.replication.factor``."""
DURABLE_REPLICAS = 3
DURABLE_MIN_INSYNC = 2


@dataclass(frozen=True, slots=True)
class TopicPlan:
    """A topic to create if it is missing."""

    name: str
    partitions: int
    config: dict[str, str]
    replication: int = BROKER_DEFAULT


def _retention(days: float) -> dict[str, str]:
    return {"retention.ms": str(int(days * MS_PER_DAY))}


def topic_plans(settings: Settings) -> list[TopicPlan]:
    """Every topic cdrpipe uses.

    Raw, dead-letter, erasure-request and subject-request topics hold raw
    numbers: bounded retention. The ledger is compacted (one entry per request, kept). Receipts
    are kept as long as the DPO record period. Lifecycle topics have one
    partition, so one worker at a time runs the serial lifecycle path, and their
    ``min.insync.replicas`` (:func:`lifecycle_config`). Every topic has the
    replication of ``CDRPIPE_TOPIC_REPLICATION`` (default: the broker's).
    """
    topics, replication = settings.topics, settings.topics.topic_replication or BROKER_DEFAULT
    requests = _retention(topics.request_retention_days) | lifecycle_config(settings)
    receipts = _retention(settings.lifecycle.dpo_record_days) | lifecycle_config(settings)
    return [
        *(
            TopicPlan(topic, topics.topic_partitions, _retention(topics.raw_retention_days), replication)
            for topic in topics.raw_topics
        ),
        TopicPlan(topics.dlq_topic, 1, _retention(topics.dlq_retention_days), replication),
        TopicPlan(topics.erasure_topic, 1, requests, replication),
        TopicPlan(
            topics.ledger_topic, 1, {"cleanup.policy": "compact"} | lifecycle_config(settings), replication
        ),
        TopicPlan(topics.receipts_topic, 1, receipts, replication),
        TopicPlan(topics.subject_requests_topic, 1, requests, replication),
        TopicPlan(topics.subject_receipts_topic, 1, receipts, replication),
    ]


def lifecycle_config(settings: Settings) -> dict[str, str]:
    """The ``min.insync.replicas`` of the lifecycle topics, when the settings ask for one."""
    min_insync = settings.topics.lifecycle_min_insync
    return {} if min_insync is None else {"min.insync.replicas": str(min_insync)}


def planned_retention_days(plan: TopicPlan) -> float | None:
    """The retention a plan asks for, in days (None: no time limit)."""
    retention = plan.config.get("retention.ms")
    return int(retention) / MS_PER_DAY if retention is not None else None


async def retention_days(connection: KafkaConnection, topics: list[str]) -> dict[str, float | None]:
    """How long the broker keeps each existing topic's data, in days (None: without a time limit).

    A topic whose ``cleanup.policy`` does not include ``delete`` keeps data
    without a time limit whatever its ``retention.ms``; ``retention.ms=-1`` too.
    """
    found: dict[str, float | None] = {}
    for name, config in (await _topic_configs(connection, topics)).items():
        retention = int(config.get("retention.ms") or -1)
        deletes = "delete" in (config.get("cleanup.policy") or "delete")
        found[name] = retention / MS_PER_DAY if deletes and retention >= 0 else None
    return found


async def _topic_configs(connection: KafkaConnection, topics: list[str]) -> dict[str, dict[str, str]]:
    """Each existing topic's configuration as the broker applies it (``describe_configs``)."""
    admin = connection.admin(client_id="cdrpipe-admin")
    await admin.start()
    try:
        resources = [ConfigResource(ConfigResourceType.TOPIC, topic) for topic in topics]
        responses = await admin.describe_configs(resources)
    finally:
        await admin.close()
    return {
        name: {entry[0]: entry[1] for entry in entries}
        for response in responses
        for error_code, _message, _type, name, entries, *_ in response.resources
        if error_code == 0
    }


async def durability(connection: KafkaConnection, topic: str) -> tuple[int, int]:
    """The replicas of ``topic``'s first partition and the ``min.insync.replicas`` the broker applies."""
    admin = connection.admin(client_id="cdrpipe-admin")
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"] != 0 or not described["partitions"]:
        raise LookupError(f"topic {topic} cannot be described (error {described['error_code']})")
    config = (await _topic_configs(connection, [topic])).get(topic, {})
    return len(described["partitions"][0]["replicas"]), int(config.get("min.insync.replicas") or 1)


def durability_warning(topic: str, replicas: int, min_insync: int) -> str | None:
    """One line when losing a single broker could lose the ledger (or its acknowledged writes)."""
    if replicas >= DURABLE_REPLICAS and min_insync >= DURABLE_MIN_INSYNC:
        return None
    return (
        f"the erasure ledger {topic} has {replicas} replica(s) and min.insync.replicas={min_insync}: "
        "losing one broker can lose erasures, restrictions and objections, and erased records then come "
        f"back; in production give it {DURABLE_REPLICAS} replicas and "
        f"min.insync.replicas={DURABLE_MIN_INSYNC} "
        "(CDRPIPE_TOPIC_REPLICATION=3 for the topics the worker creates; kafka-reassign-partitions and "
        "kafka-configs for existing ones). This is fine on a one-broker development cluster"
    )


def retention_warnings(plans: list[TopicPlan], applied: dict[str, float | None]) -> list[str]:
    """One line per planned topic with a bounded retention that the broker keeps longer."""
    warnings = []
    for plan in plans:
        planned = planned_retention_days(plan)
        if planned is None or plan.name not in applied:
            continue
        actual = applied[plan.name]
        if actual is None:
            warnings.append(
                f"topic {plan.name} keeps data without a time limit, but should keep it {planned:g} days: "
                f"set retention.ms={plan.config['retention.ms']} and cleanup.policy=delete"
            )
        elif actual > planned:
            warnings.append(
                f"topic {plan.name} keeps data {actual:g} days, longer than its setting of {planned:g} days: "
                f"set retention.ms={plan.config['retention.ms']}"
            )
    return warnings


async def ensure_topics(connection: KafkaConnection, plans: list[TopicPlan]) -> list[str]:
    """Create the missing topics of ``plans``, wait for every partition's leader; return the names created."""
    admin = connection.admin(client_id="cdrpipe-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [plan for plan in plans if plan.name not in existing]
        if missing:
            response = await admin.create_topics([new_topic(plan) for plan in missing])
            for topic, error_code, *rest in response.topic_errors:
                if error_code not in (0, TOPIC_ALREADY_EXISTS):
                    detail = rest[0] if rest else ""
                    raise RuntimeError(f"creating topic {topic} failed: error {error_code} {detail}")
        await _wait_for_leaders(admin, [plan.name for plan in plans])
        return [plan.name for plan in missing]
    finally:
        await admin.close()


async def _wait_for_leaders(admin: AIOKafkaAdminClient, topics: list[str]) -> None:
    """Return once every partition of ``topics`` has a leader; a topic created just now takes a moment."""
    deadline = asyncio.get_running_loop().time() + LEADER_WAIT_S
    while True:
        leaderless = [
            described["topic"]
            for described in await admin.describe_topics(topics)
            if described["error_code"] != 0
            or any(part["error_code"] != 0 or part["leader"] < 0 for part in described["partitions"])
        ]
        if not leaderless:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(
                f"topics {', '.join(leaderless)} have no leader after {LEADER_WAIT_S:.0f}s: "
                "see the broker's log"
            )
        await asyncio.sleep(0.1)


def new_topic(plan: TopicPlan) -> NewTopic:
    """The creation request of ``plan``; replication -1 lets the broker apply its default.

    aiokafka refuses -1 without a replica assignment, so an empty one goes with it
    (the broker then chooses the replicas; CreateTopics v3 carries -1 to KRaft brokers).
    """
    assignments: dict[int, list[int]] | None = {} if plan.replication == BROKER_DEFAULT else None
    return NewTopic(plan.name, plan.partitions, plan.replication, assignments, plan.config)


async def require_topics(connection: KafkaConnection, topics: list[str]) -> None:
    """Return if every one of ``topics`` exists and may be described by this principal; else ConfigError.

    The CLI calls this instead of creating topics: it holds no Create, and topics are the worker's job.
    """
    consumer = connection.consumer(enable_auto_commit=False)
    try:  # stopped even when start fails (an unreachable broker), or asyncio warns of it at exit
        await consumer.start()
        visible = await consumer.topics()
    finally:
        await consumer.stop()
    missing = [topic for topic in topics if topic not in visible]
    if missing:
        raise ConfigError(
            f"topic {', '.join(missing)} does not exist, or this principal may not describe it: start a "
            "worker first (it creates the topics), or grant Describe on it (see docs/kafka-security.md)"
        )
