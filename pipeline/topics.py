"""Create the topics cdrpipe reads and writes, with bounded retention where they hold raw data.

Contract: :func:`ensure_topics` returns once every topic in the plan exists;
existing topics are left as they are (their configuration is the operator's).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pipeline.config import Settings

TOPIC_ALREADY_EXISTS = 36
MS_PER_DAY = 86_400_000


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
            TopicPlan(topic, settings.topic_partitions, _retention(settings.raw_retention_days))
            for topic in settings.raw_topics
        ),
        TopicPlan(settings.dlq_topic, 1, _retention(settings.dlq_retention_days)),
        TopicPlan(settings.erasure_topic, 1, _retention(settings.request_retention_days)),
        TopicPlan(settings.ledger_topic, 1, {"cleanup.policy": "compact"}),
        TopicPlan(settings.receipts_topic, 1, _retention(settings.dpo_record_days)),
        TopicPlan(settings.subject_requests_topic, 1, _retention(settings.request_retention_days)),
        TopicPlan(settings.subject_receipts_topic, 1, _retention(settings.dpo_record_days)),
    ]


async def ensure_topics(bootstrap_servers: str, plans: list[TopicPlan]) -> list[str]:
    """Create the missing topics of ``plans``; return the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="cdrpipe-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [plan for plan in plans if plan.name not in existing]
        if not missing:
            return []
        response = await admin.create_topics(
            [NewTopic(plan.name, plan.partitions, 1, topic_configs=plan.config) for plan in missing]
        )
        for topic, error_code, *rest in response.topic_errors:
            if error_code not in (0, TOPIC_ALREADY_EXISTS):
                detail = rest[0] if rest else ""
                raise RuntimeError(f"creating topic {topic} failed: error {error_code} {detail}")
        return [plan.name for plan in missing]
    finally:
        await admin.close()
