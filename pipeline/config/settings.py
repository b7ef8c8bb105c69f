"""Worker settings, read once from ``CDRPIPE_*`` environment variables, in typed groups.

Contract: :func:`load_settings` either returns a fully validated
:class:`Settings` or raises :class:`~pipeline.errors.ConfigError` whose one-line
message names the variable, the value's problem and the fix, and quotes the
value only if it cannot be a phone number or a credential. Only ``CDRPIPE_*``
variables are read, and nothing else in the package reads the environment.
Each group's fields carry their variable (``CDRPIPE_`` and the field name in
capitals, unless aliased), default, meaning and validator: the configuration table is
generated from them (:mod:`docs.config_table`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.config.fields import (
    BrokerUrls,
    DigitRange,
    Identifier,
    LogFormat,
    Names,
    OptionalPositiveFloat,
    Port,
    PositiveFloat,
    PositiveInt,
    Region,
    Spelling,
    Tenants,
    TimeZoneName,
    TopicFormats,
    Topics,
    spelled,
)
from pipeline.config.group import PREFIX, SettingsGroup


class KafkaSettings(SettingsGroup):
    """The broker and how the worker joins it."""

    broker: BrokerUrls = Field(
        "kafka://127.0.0.1:9092", description="Kafka bootstrap servers (comma-separated `kafka://host:port`)"
    )
    app_id: Identifier = Field(
        "cdrpipe", description="Faust app id; the ingest consumer group is `<app id>-ingest`"
    )
    session_timeout_s: PositiveFloat = Field(
        10.0, description="Consumer group session timeout: how soon a dead worker's partitions move"
    )
    fetch_partition_bytes: PositiveInt = Field(
        1 << 20,
        description="Most bytes one fetch returns per raw partition (Kafka's `max.partition.fetch.bytes`)",
    )

    @property
    def bootstrap_servers(self) -> str:
        """The broker list in the ``host:port,host:port`` form Kafka clients take."""
        return ",".join(url.split("://", 1)[-1] for url in self.broker.split(","))


class TopicSettings(SettingsGroup):
    """The topics the worker reads and writes, and how the ones it creates are set up."""

    raw_topics: Topics = Field(("cdr.raw",), description="Comma-separated raw CDR topics")
    topic_partitions: PositiveInt = Field(4, description="Partitions of raw topics the worker creates")
    raw_retention_days: PositiveFloat = Field(
        7.0, description="Retention of raw topics the worker creates (they hold raw numbers)"
    )
    dlq_topic: Identifier = Field("cdr.dlq", description="Dead-letter topic")
    dlq_retention_days: PositiveFloat = Field(
        7.0, description="Retention of the dead-letter topic it creates"
    )
    erasure_topic: Identifier = Field("cdr.erasure.requests", description="Erasure requests (one partition)")
    ledger_topic: Identifier = Field(
        "cdr.erasure.ledger", description="Erasure ledger, compacted, read by every worker (one partition)"
    )
    receipts_topic: Identifier = Field("cdr.erasure.receipts", description="Erasure receipts (one partition)")
    subject_requests_topic: Identifier = Field(
        "cdr.subject.requests",
        description="Rectification, restriction and objection requests (one partition)",
    )
    subject_receipts_topic: Identifier = Field(
        "cdr.subject.receipts", description="Receipts of those subject requests (one partition)"
    )
    request_retention_days: PositiveFloat = Field(
        7.0, description="Retention of the erasure and subject request topics (they hold numbers)"
    )


FREEPBX_INTERNAL_CONTEXTS = (
    "from-internal",
    "from-internal-xfer",
    "from-internal-noxfer",
    "from-internal-additional",
    "from-internal-custom",
)
"""FreePBX's contexts of calls placed by its own phones."""
FREEPBX_INBOUND_CONTEXTS = ("from-trunk", "from-pstn", "from-did-direct", "ext-did", "from-sip-external")
"""FreePBX's contexts of calls that arrive from a trunk."""


class IngestSettings(SettingsGroup):
    """How raw CDRs are decoded and batched into files."""

    topic_formats: TopicFormats = Field(
        (),
        description="Format per topic, e.g. `cdr.asterisk=asterisk-csv,cdr.carrier=mapped-csv/carrier-epoch`",
    )
    source_timezone: TimeZoneName = Field(
        "Europe/Brussels", description="IANA zone of zone-less times (Asterisk, FreeSWITCH stamps)"
    )
    mappings_dir: Path = Field(
        Path("./schemas/mappings"),
        validation_alias=PREFIX + "MAPPINGS",
        description="Directory of mapped-CSV layouts (`*.json`)",
    )
    flush_rows: PositiveInt = Field(
        100_000, description="Rows per partition batch before its files are published"
    )
    flush_seconds: PositiveFloat = Field(10.0, description="Maximum age of a batch before it is published")
    max_buffered_rows: PositiveInt = Field(
        250_000, description="Rows held in memory before every batch is published early"
    )
    asterisk_internal_contexts: Names = Field(
        FREEPBX_INTERNAL_CONTEXTS,
        description="Asterisk dialplan contexts of calls placed by the PBX's own phones (FreePBX's)",
    )
    asterisk_inbound_contexts: Names = Field(
        FREEPBX_INBOUND_CONTEXTS,
        description="Asterisk dialplan contexts of calls that arrive from a trunk (FreePBX's)",
    )
    asterisk_trunks: Names = Field(
        (),
        description="Asterisk endpoints of the trunks to the carriers: a `Dial()` to one is outbound, "
        "a channel from one inbound",
    )


class NumberSettings(SettingsGroup):
    """How numbers are classified and which keys turn parties into pseudonyms."""

    keyring: Path = Field(
        Path("./secrets/keyring.json"), description="Keyring file (mode 0600), kept apart from the data"
    )
    region: Region = Field("BE", description="Default region for national numbers (ISO 3166-1 alpha-2)")
    extension_digits: DigitRange = Field(
        (2, 5), description="Length range of internal extensions (`N` or `N-M`)"
    )
    tenants: Tenants = Field(
        (),
        description="`source=tenant` pairs, e.g. `pbx-a1=acme,pbx-a2=acme`: sources that share one "
        "customer's extensions and agents (default: each source is its own tenant)",
    )
    cache_size: PositiveInt = Field(
        1 << 18,
        description="Entries in each party cache (dialled number, extension per tenant, agent id; LRU)",
    )


class StoreSettings(SettingsGroup):
    """Where the Parquet store is."""

    root: str = Field(
        "./data/store",
        validation_alias=PREFIX + "STORE",
        description="Root of the Parquet store: a directory or an `s3://bucket/prefix` URL",
    )


def _settle_default(value: object) -> str:
    return "2 × flush seconds + 5" if value is None else spelled(value)  # noqa: RUF001 (Settings.settle_seconds)


class LifecycleSettings(SettingsGroup):
    """Retention, and the pace of erasures and of the retention timer."""

    retention_days: PositiveInt = Field(
        365,
        description="Call-date partitions older than this are deleted; older records are dropped at ingest",
    )
    dpo_record_days: PositiveInt = Field(
        183, description="Receipts and audit entries are purged this long after completion"
    )
    retention_interval_s: PositiveFloat = Field(3600.0, description="How often the retention timer runs")
    erasure_settle_s: Annotated[OptionalPositiveFloat, Spelling(_settle_default)] = Field(
        None, description="Pause before an erasure's second pass"
    )


class RuntimeSettings(SettingsGroup):
    """The worker process: web server, local state, logs."""

    web_port: Port = Field(6066, description="Faust web server port (`/metrics`, `/health`)")
    state_dir: Path = Field(Path("./data/state"), description="Faust's data directory")
    log_format: LogFormat = Field(
        "text",
        description="`json`: one JSON object per log line on standard error (`time`, `level`, `logger`, "
        "`process`, `message`, `exception`, `stack`), at INFO; both formats are scrubbed of numbers "
        '(see "Numbers and pseudonyms")',
    )


class Settings(BaseModel):
    """Everything the worker and the CLI need to know about their environment, by group."""

    model_config = ConfigDict(frozen=True)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    numbers: NumberSettings = Field(default_factory=NumberSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    lifecycle: LifecycleSettings = Field(default_factory=LifecycleSettings)
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)

    @property
    def settle_seconds(self) -> float:
        """How long an erasure waits before its second pass: longer than a flush period."""
        settle = self.lifecycle.erasure_settle_s
        return settle if settle is not None else 2 * self.ingest.flush_seconds + 5

    @classmethod
    def groups(cls) -> dict[str, type[SettingsGroup]]:
        """Group name to group class, in the order of the configuration tables (docs/configuration.md)."""
        return {name: _group(field.annotation) for name, field in cls.model_fields.items()}


def _group(annotation: Any) -> type[SettingsGroup]:
    assert isinstance(annotation, type) and issubclass(annotation, SettingsGroup)
    return annotation


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``env`` (default: ``os.environ``)."""
    source = os.environ if env is None else env
    return Settings.model_validate({name: group.read(source) for name, group in Settings.groups().items()})
