"""Worker settings, read once from ``CDRPIPE_*`` environment variables.

Contract: :func:`load_settings` either returns a fully validated
:class:`Settings` or raises :class:`~pipeline.errors.ConfigError` whose message
names the variable, the value's problem and the fix. Nothing else in the
package reads the environment.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

from pipeline.errors import ConfigError

PREFIX = "CDRPIPE_"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the worker and the CLI need to know about their environment."""

    app_id: str = "cdrpipe"
    broker: str = "kafka://127.0.0.1:9092"
    raw_topics: tuple[str, ...] = ("cdr.raw",)
    topic_formats: tuple[tuple[str, str], ...] = ()
    source_timezone: str = "Europe/Brussels"
    mappings_dir: Path = Path("./schemas/mappings")
    dlq_topic: str = "cdr.dlq"
    topic_partitions: int = 4
    raw_retention_days: float = 7.0
    dlq_retention_days: float = 7.0
    erasure_topic: str = "cdr.erasure.requests"
    ledger_topic: str = "cdr.erasure.ledger"
    receipts_topic: str = "cdr.erasure.receipts"
    subject_requests_topic: str = "cdr.subject.requests"
    subject_receipts_topic: str = "cdr.subject.receipts"
    request_retention_days: float = 7.0
    retention_days: int = 365
    dpo_record_days: int = 183
    retention_interval_s: float = 3600.0
    erasure_settle_s: float | None = None
    store: str = "./data/store"
    keyring: Path = Path("./secrets/keyring.json")
    region: str = "BE"
    extension_digits: tuple[int, int] = (2, 5)
    tenants: tuple[tuple[str, str], ...] = ()
    web_port: int = 6066
    session_timeout_s: float = 10.0
    state_dir: Path = Path("./data/state")
    flush_rows: int = 100_000
    flush_seconds: float = 10.0
    max_buffered_rows: int = 250_000
    cache_size: int = 1 << 18
    log_format: str = "text"

    @property
    def settle_seconds(self) -> float:
        """How long an erasure waits before its second pass: longer than a flush period."""
        return self.erasure_settle_s if self.erasure_settle_s is not None else 2 * self.flush_seconds + 5

    @property
    def bootstrap_servers(self) -> str:
        """The broker list in the ``host:port,host:port`` form Kafka clients take."""
        return ",".join(url.split("://", 1)[-1] for url in self.broker.split(","))


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``env`` (default: ``os.environ``)."""
    source = os.environ if env is None else env
    defaults = Settings()

    def get(name: str, parse: Callable[[str], T], default: T) -> T:
        raw = source.get(PREFIX + name)
        if raw is None or raw.strip() == "":
            return default
        try:
            return parse(raw.strip())
        except ValueError as exc:
            raise ConfigError(f"{PREFIX}{name}={raw!r} is not usable: {exc}") from None

    return Settings(
        app_id=get("APP_ID", _identifier, defaults.app_id),
        broker=get("BROKER", _broker_url, defaults.broker),
        raw_topics=get("RAW_TOPICS", _topic_list, defaults.raw_topics),
        topic_formats=get("TOPIC_FORMATS", _topic_formats, defaults.topic_formats),
        source_timezone=get("SOURCE_TIMEZONE", _time_zone, defaults.source_timezone),
        mappings_dir=get("MAPPINGS", Path, defaults.mappings_dir),
        dlq_topic=get("DLQ_TOPIC", _identifier, defaults.dlq_topic),
        topic_partitions=get("TOPIC_PARTITIONS", _positive_int, defaults.topic_partitions),
        raw_retention_days=get("RAW_RETENTION_DAYS", _positive_float, defaults.raw_retention_days),
        dlq_retention_days=get("DLQ_RETENTION_DAYS", _positive_float, defaults.dlq_retention_days),
        erasure_topic=get("ERASURE_TOPIC", _identifier, defaults.erasure_topic),
        ledger_topic=get("LEDGER_TOPIC", _identifier, defaults.ledger_topic),
        receipts_topic=get("RECEIPTS_TOPIC", _identifier, defaults.receipts_topic),
        subject_requests_topic=get("SUBJECT_REQUESTS_TOPIC", _identifier, defaults.subject_requests_topic),
        subject_receipts_topic=get("SUBJECT_RECEIPTS_TOPIC", _identifier, defaults.subject_receipts_topic),
        request_retention_days=get(
            "REQUEST_RETENTION_DAYS", _positive_float, defaults.request_retention_days
        ),
        retention_days=get("RETENTION_DAYS", _positive_int, defaults.retention_days),
        dpo_record_days=get("DPO_RECORD_DAYS", _positive_int, defaults.dpo_record_days),
        retention_interval_s=get("RETENTION_INTERVAL_S", _positive_float, defaults.retention_interval_s),
        erasure_settle_s=get("ERASURE_SETTLE_S", _positive_float, defaults.erasure_settle_s),
        store=get("STORE", str, defaults.store),
        keyring=get("KEYRING", Path, defaults.keyring),
        region=get("REGION", _region, defaults.region),
        extension_digits=get("EXTENSION_DIGITS", _digit_range, defaults.extension_digits),
        tenants=get("TENANTS", _tenants, defaults.tenants),
        web_port=get("WEB_PORT", _port, defaults.web_port),
        session_timeout_s=get("SESSION_TIMEOUT_S", _positive_float, defaults.session_timeout_s),
        state_dir=get("STATE_DIR", Path, defaults.state_dir),
        flush_rows=get("FLUSH_ROWS", _positive_int, defaults.flush_rows),
        flush_seconds=get("FLUSH_SECONDS", _positive_float, defaults.flush_seconds),
        max_buffered_rows=get("MAX_BUFFERED_ROWS", _positive_int, defaults.max_buffered_rows),
        cache_size=get("CACHE_SIZE", _positive_int, defaults.cache_size),
        log_format=get("LOG_FORMAT", _log_format, defaults.log_format),
    )


def _log_format(value: str) -> str:
    if value not in ("text", "json"):
        raise ValueError("use text or json")
    return value


def _identifier(value: str) -> str:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    if not set(value) <= allowed:
        raise ValueError("use only letters, digits, '.', '_' and '-'")
    return value


def _topic_list(value: str) -> tuple[str, ...]:
    topics = tuple(_identifier(part.strip()) for part in value.split(",") if part.strip())
    if not topics:
        raise ValueError("name at least one topic")
    return topics


def _pairs(value: str, example: str) -> list[tuple[str, str]]:
    """Comma-separated ``left=right`` pairs, both sides stripped and non-empty."""
    pairs = []
    for part in value.split(","):
        left, sep, right = part.strip().partition("=")
        if not sep or not left.strip() or not right.strip():
            raise ValueError(f"expected {example}")
        pairs.append((left.strip(), right.strip()))
    return pairs


def _topic_formats(value: str) -> tuple[tuple[str, str], ...]:
    pairs = _pairs(value, "topic=format pairs, e.g. cdr.asterisk=asterisk-csv")
    return tuple((_identifier(topic), format_name) for topic, format_name in pairs)


def _tenants(value: str) -> tuple[tuple[str, str], ...]:
    """``source=tenant`` pairs: the sources of one customer that share extensions and agents."""
    pairs = _pairs(value, "source=tenant pairs, e.g. pbx-a1=acme,pbx-a2=acme")
    if len({source for source, _ in pairs}) != len(pairs):
        raise ValueError("a source is mapped to two tenants")
    return tuple((_identifier(source), _identifier(tenant)) for source, tenant in pairs)


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("must be an IANA time zone such as Europe/Brussels or UTC") from None
    return value


def _broker_url(value: str) -> str:
    for url in value.split(","):
        host_port = url.split("://", 1)[-1]
        host, sep, port = host_port.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError("expected kafka://HOST:PORT (comma-separated for several brokers)")
    return value


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError("must be a positive whole number")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError("must be a positive number")
    return number


def _port(value: str) -> int:
    number = int(value)
    if not 1 <= number <= 65535:
        raise ValueError("must be a TCP port between 1 and 65535")
    return number


def _region(value: str) -> str:
    region = value.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError("must be an ISO 3166-1 alpha-2 region known to phonenumbers, e.g. BE")
    return region


def _digit_range(value: str) -> tuple[int, int]:
    low, sep, high = value.partition("-")
    shortest = int(low)
    longest = int(high) if sep else shortest
    if not 1 <= shortest <= longest <= 8:
        raise ValueError("expected a digit count or range like 2-5, within 1-8")
    return shortest, longest
