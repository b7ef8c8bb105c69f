"""Settings from CDRPIPE_* variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import Settings, load_settings
from pipeline.errors import ConfigError


def test_defaults() -> None:
    settings = load_settings({})
    assert settings == Settings()
    assert settings.bootstrap_servers == "127.0.0.1:9092"
    assert settings.raw_topics == ("cdr.raw",) and settings.dlq_topic == "cdr.dlq"
    assert settings.region == "BE"


def test_values_are_parsed() -> None:
    settings = load_settings(
        {
            "CDRPIPE_BROKER": "kafka://a:1,kafka://b:2",
            "CDRPIPE_RAW_TOPICS": "cdr.raw, cdr.carrier",
            "CDRPIPE_REGION": "nl",
            "CDRPIPE_EXTENSION_DIGITS": "3-4",
            "CDRPIPE_KEYRING": "/run/secrets/keyring.json",
            "CDRPIPE_FLUSH_SECONDS": "2.5",
        }
    )
    assert settings.bootstrap_servers == "a:1,b:2"
    assert settings.raw_topics == ("cdr.raw", "cdr.carrier")
    assert settings.region == "NL"
    assert settings.extension_digits == (3, 4)
    assert settings.keyring == Path("/run/secrets/keyring.json")
    assert settings.flush_seconds == 2.5


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CDRPIPE_WEB_PORT", "http", r"CDRPIPE_WEB_PORT='http' is not usable"),
        ("CDRPIPE_WEB_PORT", "70000", r"TCP port"),
        ("CDRPIPE_REGION", "XX", r"ISO 3166-1"),
        ("CDRPIPE_BROKER", "localhost", r"kafka://HOST:PORT"),
        ("CDRPIPE_EXTENSION_DIGITS", "5-2", r"digit count or range"),
        ("CDRPIPE_FLUSH_ROWS", "0", r"positive whole number"),
        ("CDRPIPE_RAW_TOPICS", "cdr raw", r"letters, digits"),
    ],
)
def test_bad_values_name_the_variable_and_the_fix(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({name: value})


def test_tenants_map_sources_to_a_tenant() -> None:
    settings = load_settings({"CDRPIPE_TENANTS": "pbx-a1=acme, pbx-a2=acme"})
    assert settings.tenants == (("pbx-a1", "acme"), ("pbx-a2", "acme"))
    for broken in ("pbx-a1", "pbx-a1=acme,pbx-a1=other", "pbx a=acme"):
        with pytest.raises(ConfigError, match="CDRPIPE_TENANTS"):
            load_settings({"CDRPIPE_TENANTS": broken})
