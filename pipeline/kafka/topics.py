"""Create the topics cdrpipe reads and writes, with bounded retention where they hold raw data.

Contract: :func:`ensure_topics` returns once every topic in the plan exists and
every partition of it has a leader (so the first produce is not answered "not
leader" while fresh topics elect theirs); existing topics are left as they are
(their configuration is the operator's).
:func:`retention_days` asks the broker how long topics really keep data
(``describe_configs``), and :func:`retention_warnings` names each topic that
keeps raw data longer than its plan (or without a time limit).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from pipeline.config.settings import Settings

TOPIC_ALREADY_EXISTS = 36
MS_PER_DAY = 86_400_000
LEADER_WAIT_S = 30.0


@dataclass(frozen=True, slots=True)
class TopicPlan:
    """A topic to create if it is missing."""

    name: str
    partitions: int
    config: dict[str, str]


def _retention(days: float) -> dict[str, str]:
    return {"retention.ms": str(int(days * MS_PER_DAY))}


def topic_plans(settings: Settings) -> list[TopicPlan]:
    """Every topic cdrpipe uses.

    Raw, dead-letter, erasure-request and subject-request topics hold raw
    numbers: bounded retention. The ledger is compacted (one entry per request, kept). Receipts
    are kept as long as the DPO record period. Lifecycle topics have one
    partition, so one worker at a time runs the serial lifecycle path.
    """
    return [
        *(
            TopicPlan(topic, settings.topics.topic_partitions, _retention(settings.topics.raw_retention_days))
            for topic in settings.topics.raw_topics
        ),
        TopicPlan(settings.topics.dlq_topic, 1, _retention(settings.topics.dlq_retention_days)),
        TopicPlan(settings.topics.erasure_topic, 1, _retention(settings.topics.request_retention_days)),
        TopicPlan(settings.topics.ledger_topic, 1, {"cleanup.policy": "compact"}),
        TopicPlan(settings.topics.receipts_topic, 1, _retention(settings.lifecycle.dpo_record_days)),
        TopicPlan(
            settings.topics.subject_requests_topic, 1, _retention(settings.topics.request_retention_days)
        ),
        TopicPlan(settings.topics.subject_receipts_topic, 1, _retention(settings.lifecycle.dpo_record_days)),
    ]


def planned_retention_days(plan: TopicPlan) -> float | None:
    """The retention a plan asks for, in days (None: no time limit)."""
    retention = plan.config.get("retention.ms")
    return int(retention) / MS_PER_DAY if retention is not None else None


async def retention_days(bootstrap_servers: str, topics: list[str]) -> dict[str, float | None]:
    """How long the broker keeps each existing topic's data, in days (None: without a time limit).

    A topic whose ``cleanup.policy`` does not include ``delete`` keeps data
    without a time limit whatever its ``retention.ms``; ``retention.ms=-1`` too.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="cdrpipe-admin")
    await admin.start()
    try:
        resources = [ConfigResource(ConfigResourceType.TOPIC, topic) for topic in topics]
        responses = await admin.describe_configs(resources)
    finally:
        await admin.close()
    found: dict[str, float | None] = {}
    for response in responses:
        for error_code, _message, _type, name, entries, *_ in response.resources:
            if error_code != 0:
                continue
            config = {entry[0]: entry[1] for entry in entries}
            retention = int(config.get("retention.ms") or -1)
            deletes = "delete" in (config.get("cleanup.policy") or "delete")
            found[name] = retention / MS_PER_DAY if deletes and retention >= 0 else None
    return found


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


async def ensure_topics(bootstrap_servers: str, plans: list[TopicPlan]) -> list[str]:
    """Create the missing topics of ``plans``, wait for every partition's leader; return the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="cdrpipe-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [plan for plan in plans if plan.name not in existing]
        if missing:
            response = await admin.create_topics(
                [NewTopic(plan.name, plan.partitions, 1, topic_configs=plan.config) for plan in missing]
            )
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
