"""The value types of the ``CDRPIPE_*`` settings: how each is read from text and written back.

Contract: each type is an ``Annotated`` type whose validator turns a
variable's text into the value, or raises ``ValueError`` saying what the
value must be, never the value itself (values that are not text, as code
passes them, are only type-checked). :func:`spelled` writes a value as the
text of its variable (defaults in docs/configuration.md and in error messages);
:func:`shown` quotes a rejected text unless it may hold a phone number or a
credential.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Annotated, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import BeforeValidator

from pipeline.numbers.text import IN_KEPT_TEXTS
from pipeline.observability.log_scrub import scrub

N = TypeVar("N")
_IDENTIFIER_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


@dataclass(frozen=True, slots=True)
class Spelling:
    """A field's own way of writing its value as text, where the generic one would not read well."""

    spell: Callable[[object], str]


def _from_text(parse: Callable[[str], object]) -> BeforeValidator:
    def validate(value: object) -> object:
        return parse(value.strip()) if isinstance(value, str) else value

    return BeforeValidator(validate)


def spelled(value: object, metadata: Sequence[object] = ()) -> str:
    """``value`` as the text of its variable: ``cdr.raw``, ``7``, ``./data/store``, ``(none)``."""
    for item in metadata:
        if isinstance(item, Spelling):
            return item.spell(value)
    if value is None or value == ():
        return "(none)"
    if isinstance(value, tuple):
        return ",".join("=".join(part) if isinstance(part, tuple) else str(part) for part in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, PurePath) and not value.is_absolute():
        return f"./{value}"
    return str(value)


def shown(text: str) -> str:
    """``text`` quoted for an error message, unless it may hold a phone number or a credential."""
    if scrub(text) != text or "@" in text:
        return "<withheld: it may hold a phone number or a credential>"
    return repr(text)


def identifier(value: str) -> str:
    """A topic, app or tenant name: letters, digits, ``.``, ``_`` and ``-``."""
    if not set(value) <= _IDENTIFIER_CHARACTERS:
        raise ValueError("use only letters, digits, '.', '_' and '-'")
    return value


def region_code(value: str) -> str:
    """An ISO 3166-1 alpha-2 region phonenumbers knows, upper-cased."""
    region = value.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError("must be an ISO 3166-1 alpha-2 region known to phonenumbers, e.g. BE")
    return region


def _topic_list(value: str) -> tuple[str, ...]:
    topics = tuple(identifier(part.strip()) for part in value.split(",") if part.strip())
    if not topics:
        raise ValueError("name at least one topic")
    return topics


def _name_list(value: str) -> tuple[str, ...]:
    """Comma-separated names (letters, digits, ``.``, ``_``, ``-``); empty for none."""
    return tuple(identifier(part.strip()) for part in value.split(",") if part.strip())


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
    return tuple((identifier(topic), format_name) for topic, format_name in pairs)


def _tenants(value: str) -> tuple[tuple[str, str], ...]:
    """``source=tenant`` pairs: the sources of one customer that share extensions and agents.

    No name holds a phone number, as no stored ``source`` does (receipts list the tenants searched). A
    tenant that is also a source mapped to another tenant is refused (the source's earlier
    extensions and the tenant's would share pseudonyms), and so are two tenants that differ
    only in case (one customer split in two by a typing slip).
    """
    pairs = _pairs(value, "source=tenant pairs, e.g. pbx-a1=acme,pbx-a2=acme")
    if len({source for source, _ in pairs}) != len(pairs):
        raise ValueError("a source is mapped to two tenants: map each source once")
    for name in {name for pair in pairs for name in pair}:
        identifier(name)
        if IN_KEPT_TEXTS.contains(name):  # the detector a record's source is checked with
            raise ValueError("a name holds a phone number")
    mapping = dict(pairs)
    for source, tenant in pairs:
        if mapping.get(tenant, tenant) != tenant:
            raise ValueError(
                f"tenant {tenant} of {source} is also a source mapped to {mapping[tenant]}: "
                "map every source of one customer to the same tenant"
            )
    tenants = {tenant for _, tenant in pairs}
    if len({tenant.casefold() for tenant in tenants}) != len(tenants):
        raise ValueError("two tenants differ only in case: spell each tenant one way")
    return tuple(pairs)


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("must be an IANA time zone such as Europe/Brussels or UTC") from None
    return value


def _broker_url(value: str) -> str:
    for url in value.split(","):
        host_port = url.split("://", 1)[-1]
        if "@" in host_port:
            raise ValueError(
                "a user or password never goes in the broker address: give the user in "
                "CDRPIPE_KAFKA_SASL_USERNAME and the password in the file "
                "CDRPIPE_KAFKA_SASL_PASSWORD_FILE names"
            )
        host, sep, port = host_port.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError("expected kafka://HOST:PORT (comma-separated for several brokers)")
    return value


def _read(kind: Callable[[str], N], value: str, problem: str) -> N:
    try:
        return kind(value)
    except ValueError:
        raise ValueError(problem) from None


def _positive_int(value: str) -> int:
    number = _read(int, value, "must be a positive whole number")
    if number <= 0:
        raise ValueError("must be a positive whole number")
    return number


def _positive_float(value: str) -> float:
    number = _read(float, value, "must be a positive number")
    if not number > 0:
        raise ValueError("must be a positive number")
    return number


def _port(value: str) -> int:
    number = _read(int, value, "must be a TCP port between 1 and 65535")
    if not 1 <= number <= 65535:
        raise ValueError("must be a TCP port between 1 and 65535")
    return number


def _digit_range(value: str) -> tuple[int, int]:
    problem = "expected a digit count or range like 2-5, within 1-8"
    low, sep, high = value.partition("-")
    shortest = _read(int, low, problem)
    longest = _read(int, high, problem) if sep else shortest
    if not 1 <= shortest <= longest <= 8:
        raise ValueError(problem)
    return shortest, longest


def _spell_range(value: object) -> str:
    shortest, longest = value if isinstance(value, tuple) else (value, value)
    return f"{shortest}-{longest}"


def _flag(value: str) -> bool:
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise ValueError("use true or false")
    return lowered == "true"


def _choice(*choices: str) -> Callable[[str], str]:
    def choose(value: str) -> str:
        chosen = value.upper()
        if chosen not in choices:
            raise ValueError(f"use one of {', '.join(choices)}")
        return chosen

    return choose


def _object_reference(value: str) -> str:
    module, sep, attribute = value.partition(":")
    names = [*module.split("."), *attribute.split(".")]
    if not sep or not all(name.isidentifier() for name in names):
        raise ValueError("expected module:attribute, e.g. mycompany.kafka_auth:token_provider")
    return value


def _log_format(value: str) -> str:
    if value not in ("text", "json"):
        raise ValueError("use text or json")
    return value


Identifier = Annotated[str, _from_text(identifier)]
Topics = Annotated[tuple[str, ...], _from_text(_topic_list)]
Names = Annotated[tuple[str, ...], _from_text(_name_list)]
TopicFormats = Annotated[tuple[tuple[str, str], ...], _from_text(_topic_formats)]
Tenants = Annotated[tuple[tuple[str, str], ...], _from_text(_tenants)]
TimeZoneName = Annotated[str, _from_text(_time_zone)]
BrokerUrls = Annotated[str, _from_text(_broker_url)]
PositiveInt = Annotated[int, _from_text(_positive_int)]
PositiveFloat = Annotated[float, _from_text(_positive_float)]
OptionalPositiveFloat = Annotated[float | None, _from_text(_positive_float)]
OptionalPositiveInt = Annotated[int | None, _from_text(_positive_int)]
Port = Annotated[int, _from_text(_port)]
Region = Annotated[str, _from_text(region_code)]
DigitRange = Annotated[tuple[int, int], _from_text(_digit_range), Spelling(_spell_range)]
LogFormat = Annotated[Literal["text", "json"], _from_text(_log_format)]
Flag = Annotated[bool, _from_text(_flag), Spelling(lambda value: str(value).lower())]
SecurityProtocol = Annotated[
    Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"],
    _from_text(_choice("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")),
]
SaslMechanism = Annotated[
    Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None,
    _from_text(_choice("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")),
]
ObjectReference = Annotated[str | None, _from_text(_object_reference)]
