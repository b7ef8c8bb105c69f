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

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, model_validator

from pipeline.config.fields import (
    BrokerUrls,
    DigitRange,
    Flag,
    Identifier,
    LogFormat,
    Names,
    ObjectReference,
    OptionalPositiveFloat,
    OptionalPositiveInt,
    Port,
    PositiveFloat,
    PositiveInt,
    Region,
    SaslMechanism,
    SecurityProtocol,
    Spelling,
    Tenants,
    TimeZoneName,
    TopicFormats,
    Topics,
    shown,
    spelled,
)
from pipeline.config.group import PREFIX, SettingsGroup
from pipeline.errors import ConfigError


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
    rebalance_timeout_s: PositiveFloat = Field(
        60.0,
        description=(
            "How long a worker may take to hand the lifecycle topics over at a rebalance (a request in "
            "flight included) before the group moves them without it"
        ),
    )
    fetch_partition_bytes: PositiveInt = Field(
        1 << 20,
        description="Most bytes one fetch returns per raw partition (Kafka's `max.partition.fetch.bytes`)",
    )

    @property
    def bootstrap_servers(self) -> str:
        """The broker list in the ``host:port,host:port`` form Kafka clients take."""
        return ",".join(url.split("://", 1)[-1] for url in self.broker.split(","))


class KafkaSecuritySettings(SettingsGroup):
    """How every client proves who it is to the brokers and checks who they are (Kafka's client names).

    The password is read from its file when the settings are loaded and held as a
    :class:`~pydantic.SecretStr`; it never sits in a variable, a repr or a message.
    """

    kafka_security_protocol: SecurityProtocol = Field(
        "PLAINTEXT",
        description="`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL` (Kafka's `security.protocol`)",
    )
    kafka_ssl_cafile: Path | None = Field(
        None,
        description="PEM file of the CA(s) that signed the brokers' certificates (default: the system's)",
    )
    kafka_ssl_certfile: Path | None = Field(
        None, description="PEM client certificate, for mutual TLS (may hold the key too)"
    )
    kafka_ssl_keyfile: Path | None = Field(None, description="PEM key of the client certificate")
    kafka_ssl_check_hostname: Flag = Field(
        True, description="Check that the broker's certificate names the host connected to"
    )
    kafka_sasl_mechanism: SaslMechanism = Field(
        None, description="`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512` or `OAUTHBEARER` (with SASL_* protocols)"
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user (PLAIN and SCRAM)")
    kafka_sasl_password_file: Path | None = Field(
        None, description="File holding the SASL password (PLAIN and SCRAM), mounted from a secret"
    )
    kafka_sasl_oauth_provider: ObjectReference = Field(
        None,
        description="OAUTHBEARER: `module:attribute` of a callable that returns an aiokafka "
        "`AbstractTokenProvider` (e.g. for Amazon MSK IAM, see docs/kafka-security.md)",
    )
    _sasl_password: SecretStr | None = PrivateAttr(None)

    @property
    def sasl_password(self) -> SecretStr | None:
        """The password read from ``kafka_sasl_password_file`` (None without one)."""
        return self._sasl_password

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSecuritySettings:
        """One line naming the first setting that does not fit the others, or a file that cannot be read."""
        protocol = self.kafka_security_protocol
        names = self.variables()
        tls = [names[name] for name in _TLS_FIELDS if getattr(self, name) is not None]
        if not self.kafka_ssl_check_hostname:
            tls.append(names["kafka_ssl_check_hostname"])
        if tls and protocol not in ("SSL", "SASL_SSL"):
            raise ConfigError(
                f"{tls[0]} is set but CDRPIPE_KAFKA_SECURITY_PROTOCOL={protocol} uses no TLS: "
                "set the protocol to SSL or SASL_SSL, or unset the TLS settings"
            )
        sasl = [names[name] for name in _SASL_FIELDS if getattr(self, name) is not None]
        if sasl and protocol not in ("SASL_PLAINTEXT", "SASL_SSL"):
            raise ConfigError(
                f"{sasl[0]} is set but CDRPIPE_KAFKA_SECURITY_PROTOCOL={protocol} uses no SASL: "
                "set the protocol to SASL_SSL (or SASL_PLAINTEXT), or unset the SASL settings"
            )
        if self.kafka_ssl_keyfile is not None and self.kafka_ssl_certfile is None:
            raise ConfigError("CDRPIPE_KAFKA_SSL_KEYFILE is set without CDRPIPE_KAFKA_SSL_CERTFILE: set both")
        for variable, path in self.tls_files().items():
            _read_file(variable, path)
        if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
            self._check_sasl(protocol)
        return self

    def _check_sasl(self, protocol: str) -> None:
        mechanism = self.kafka_sasl_mechanism
        if mechanism is None:
            raise ConfigError(
                f"CDRPIPE_KAFKA_SECURITY_PROTOCOL={protocol} needs CDRPIPE_KAFKA_SASL_MECHANISM: "
                "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER"
            )
        if protocol == "SASL_PLAINTEXT" and mechanism in ("PLAIN", "OAUTHBEARER"):
            # SCRAM never sends the password; PLAIN sends it and OAUTHBEARER its bearer token as
            # they are, which over a listener without TLS anyone on the path can read and replay.
            raise ConfigError(
                f"CDRPIPE_KAFKA_SASL_MECHANISM={mechanism} over SASL_PLAINTEXT sends the "
                f"{'password' if mechanism == 'PLAIN' else 'token'} in clear text: "
                "set CDRPIPE_KAFKA_SECURITY_PROTOCOL=SASL_SSL (or use SCRAM-SHA-512)"
            )
        if mechanism == "OAUTHBEARER":
            if self.kafka_sasl_username is not None or self.kafka_sasl_password_file is not None:
                raise ConfigError(
                    "CDRPIPE_KAFKA_SASL_MECHANISM=OAUTHBEARER takes no user or password: "
                    "unset CDRPIPE_KAFKA_SASL_USERNAME and CDRPIPE_KAFKA_SASL_PASSWORD_FILE"
                )
            if self.kafka_sasl_oauth_provider is None:
                raise ConfigError(
                    "CDRPIPE_KAFKA_SASL_MECHANISM=OAUTHBEARER needs CDRPIPE_KAFKA_SASL_OAUTH_PROVIDER "
                    "(module:attribute of a token provider factory)"
                )
            return
        if self.kafka_sasl_oauth_provider is not None:
            raise ConfigError(
                f"CDRPIPE_KAFKA_SASL_OAUTH_PROVIDER is set but CDRPIPE_KAFKA_SASL_MECHANISM={mechanism}: "
                "set the mechanism to OAUTHBEARER, or unset the provider"
            )
        if self.kafka_sasl_username is None:
            raise ConfigError(f"CDRPIPE_KAFKA_SASL_MECHANISM={mechanism} needs CDRPIPE_KAFKA_SASL_USERNAME")
        if self.kafka_sasl_password_file is None:
            raise ConfigError(
                f"CDRPIPE_KAFKA_SASL_MECHANISM={mechanism} needs CDRPIPE_KAFKA_SASL_PASSWORD_FILE: "
                "a file holding the password (never the password itself in a variable)"
            )
        text = _read_file("CDRPIPE_KAFKA_SASL_PASSWORD_FILE", self.kafka_sasl_password_file)
        password = text.splitlines()[0] if text.strip() else ""
        if not password:
            raise ConfigError(
                "the file CDRPIPE_KAFKA_SASL_PASSWORD_FILE names is empty: write the password into it"
            )
        self._sasl_password = SecretStr(password)

    def tls_files(self) -> dict[str, Path]:
        """Variable to path of each TLS file that is set."""
        names = self.variables()
        return {names[name]: path for name in _TLS_FIELDS if (path := getattr(self, name)) is not None}


_TLS_FIELDS = ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
_SASL_FIELDS = (
    "kafka_sasl_mechanism",
    "kafka_sasl_username",
    "kafka_sasl_password_file",
    "kafka_sasl_oauth_provider",
)


def _read_file(variable: str, path: Path) -> str:
    """The text of a file a setting names, or a one-line error that names the variable and the path only.

    A value that does not look like a path is not quoted: it may be a secret (a password, a
    PEM key) put where its file's path belongs (:func:`_looks_like_a_path`). A byte order
    mark, as Windows editors write, is not part of the text.
    """
    withheld = "<withheld: not a path; is it the secret itself?>"
    quoted = shown(str(path)) if _looks_like_a_path(str(path)) else withheld
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(
            f"{variable}={quoted} does not exist: mount the file there, or fix the path"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{variable}={quoted} is not UTF-8 text: save the file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(
            f"{variable}={quoted} cannot be read ({type(exc).__name__}): check the file and its permissions"
        ) from None


def _looks_like_a_path(text: str) -> bool:
    """Whether ``text`` reads as a file's path rather than a secret: ``./x``, ``../x``, or absolute
    with a directory under the root that exists (``/run/...``, ``/etc/...``), no blank and no
    name longer than a file system allows."""
    parts = text.split("/")
    if any(character.isspace() for character in text) or any(len(part) > 255 for part in parts):
        return False
    if text.startswith(("./", "../")):
        return True
    try:
        return len(parts) > 2 and not parts[0] and Path("/", parts[1]).is_dir()
    except (OSError, ValueError):
        return False


def _broker_default(value: object) -> str:
    return "the broker's `default.replication.factor`" if value is None else spelled(value)


def _min_insync_default(value: object) -> str:
    return "2 with 3 or more replicas, else the broker's" if value is None else spelled(value)


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
    topic_replication: Annotated[OptionalPositiveInt, Spelling(_broker_default)] = Field(
        None, description="Replicas of each topic the worker creates (3 in production)"
    )
    topic_min_insync_replicas: Annotated[OptionalPositiveInt, Spelling(_min_insync_default)] = Field(
        None,
        description="`min.insync.replicas` of the ledger, request and receipt topics the worker creates",
    )

    @model_validator(mode="after")
    def _replicas_fit(self) -> TopicSettings:
        replication, min_insync = self.topic_replication, self.topic_min_insync_replicas
        if replication is not None and min_insync is not None and min_insync > replication:
            raise ConfigError(
                f"CDRPIPE_TOPIC_MIN_INSYNC_REPLICAS={min_insync} exceeds "
                f"CDRPIPE_TOPIC_REPLICATION={replication}: no write could ever be acknowledged; "
                "lower it, or raise the replication"
            )
        return self

    @property
    def lifecycle_min_insync(self) -> int | None:
        """``min.insync.replicas`` of the lifecycle topics: the setting, else 2 with 3 or more replicas."""
        if self.topic_min_insync_replicas is not None:
            return self.topic_min_insync_replicas
        return 2 if self.topic_replication is not None and self.topic_replication >= 3 else None


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
    """Where the Parquet store is, and how it is protected at rest."""

    root: str = Field(
        "./data/store",
        validation_alias=PREFIX + "STORE",
        description="Root of the Parquet store: a directory or an `s3://bucket/prefix` URL",
    )
    group_read: bool = Field(
        False,
        validation_alias=PREFIX + "STORE_GROUP_READ",
        description="`true`: files and directories the worker and the CLI create in a local store are "
        "readable by their group (0640/0750) instead of owner-only (0600/0700)",
    )
    s3_allow_unencrypted: bool = Field(
        False,
        description="`true`: start against an `s3://` bucket without default encryption, with a warning "
        "(a local MinIO); otherwise the worker refuses such a bucket",
    )


def _settle_default(value: object) -> str:
    return "2 × flush seconds + 5" if value is None else spelled(value)  # noqa: RUF001 (Settings.settle_seconds)


class LifecycleSettings(SettingsGroup):
    """Retention, compaction, the pace of erasures and timers, and the lifecycle owner's hand-over."""

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
    owner_grace_s: PositiveFloat = Field(
        30.0,
        description=(
            "How long a new lifecycle owner waits before its first write when the previous owner did not "
            "hand over (killed, or removed from the group at work); longer than any one store write"
        ),
    )
    compact_interval_s: PositiveFloat = Field(
        600.0, description="How often the lifecycle owner compacts the call dates with settled small files"
    )
    compact_quiet_s: PositiveFloat = Field(
        300.0,
        description="How long an ingest file stays unmodified (its batch committed) before it is compacted",
    )
    compact_target_rows: PositiveInt = Field(
        500_000,
        description="Rows per compacted file at most (files of a date are cut to even sizes below it)",
    )


class RuntimeSettings(SettingsGroup):
    """The worker process: web server, local state, logs."""

    web_port: Port = Field(6066, description="Faust web server port (`/metrics`, `/health`)")
    web_host: str = Field(
        "127.0.0.1",
        description="Address the web server binds (`0.0.0.0` in a container, for the probes and Prometheus)",
    )
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
    security: KafkaSecuritySettings = Field(default_factory=KafkaSecuritySettings)
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
