"""Settings from CDRPIPE_* variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from docs.config_table import config_table, generated_part
from pipeline.config.settings import Settings, load_settings
from pipeline.errors import ConfigError
from tests.support.helpers import REPO


def test_defaults() -> None:
    settings = load_settings({})
    assert settings == Settings()
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert settings.topics.raw_topics == ("cdr.raw",) and settings.topics.dlq_topic == "cdr.dlq"
    assert settings.numbers.region == "BE"


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
    assert settings.kafka.bootstrap_servers == "a:1,b:2"
    assert settings.topics.raw_topics == ("cdr.raw", "cdr.carrier")
    assert settings.numbers.region == "NL"
    assert settings.numbers.extension_digits == (3, 4)
    assert settings.numbers.keyring == Path("/run/secrets/keyring.json")
    assert settings.ingest.flush_seconds == 2.5


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
    assert settings.numbers.tenants == (("pbx-a1", "acme"), ("pbx-a2", "acme"))
    for broken in ("pbx-a1", "pbx-a1=acme,pbx-a1=other", "pbx a=acme"):
        with pytest.raises(ConfigError, match="CDRPIPE_TENANTS"):
            load_settings({"CDRPIPE_TENANTS": broken})
    # a source may join another's tenant by its name (pbx-a2 now shares pbx-a1's extensions)
    assert load_settings({"CDRPIPE_TENANTS": "pbx-a2=pbx-a1"}).numbers.tenants == (("pbx-a2", "pbx-a1"),)


@pytest.mark.parametrize(
    ("mapping", "problem"),
    [
        # receipts list the tenants searched: a tenant must pass the rule of a stored source
        ("pbx-a1=32475000111", "phone number"),
        ("32475000111=acme", "phone number"),
        # acme is a tenant and a source mapped elsewhere: pbx-a1's and acme's extensions would mix
        ("pbx-a1=acme,acme=beta", "is also a source mapped to"),
        # one customer split in two by a capital letter: a search of acme would miss pbx-a2's rows
        ("pbx-a1=acme,pbx-a2=Acme", "differ only in case"),
    ],
)
def test_a_tenant_mapping_that_would_mix_or_split_customers_or_list_a_number_is_refused(
    mapping: str, problem: str
) -> None:
    # The attacker review: these mappings were accepted.
    with pytest.raises(ConfigError, match=problem) as raised:
        load_settings({"CDRPIPE_TENANTS": mapping})
    assert "475" not in str(raised.value)


def test_a_bad_value_gets_one_line_with_the_problem_and_the_default() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"CDRPIPE_WEB_PORT": "http"})
    assert str(raised.value) == (
        "CDRPIPE_WEB_PORT='http' is not usable: must be a TCP port between 1 and 65535 "
        "(or leave it unset for the default: 6066)"
    )
    with pytest.raises(ConfigError) as raised:
        load_settings({"CDRPIPE_TENANTS": "pbx-a1"})
    assert str(raised.value).endswith("e.g. pbx-a1=acme,pbx-a2=acme (or leave it unset)")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CDRPIPE_WEB_PORT", "0475123456"),
        ("CDRPIPE_REGION", "+32 475 12 34 56"),
        ("CDRPIPE_TENANTS", "tel:+32475123456"),
        ("CDRPIPE_BROKER", "sasl://operator:s3cret@broker"),
    ],
)
def test_a_value_that_may_be_a_number_or_a_credential_is_never_echoed(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{name}=<withheld") as raised:
        load_settings({name: value})
    message = str(raised.value)
    assert "\n" not in message and "475" not in message and "s3cret" not in message


def test_only_cdrpipe_variables_are_read_and_blank_ones_are_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDRPIPE_WEB_PORT", "7000")
    assert load_settings({}).runtime.web_port == 6066, "an explicit mapping is the only source"
    assert load_settings().runtime.web_port == 7000
    settings = load_settings(
        {"WEB_PORT": "1", "cdrpipe_web_port": "2", "CDRPIPE_REGION": "  ", "CDRPIPE_APP_ID": ""}
    )
    assert settings == Settings()


def test_erasures_settle_for_two_flush_periods_unless_told() -> None:
    assert load_settings({"CDRPIPE_FLUSH_SECONDS": "4"}).settle_seconds == 13
    assert load_settings({"CDRPIPE_ERASURE_SETTLE_S": " 2.5 "}).settle_seconds == 2.5
    with pytest.raises(ConfigError, match=r"must be a positive number \(.*flush seconds \+ 5\)"):
        load_settings({"CDRPIPE_ERASURE_SETTLE_S": "0"})


def test_the_configuration_tables_are_generated_from_the_settings() -> None:
    document = (REPO / "docs" / "configuration.md").read_text()
    assert generated_part(document) == config_table(), (
        "docs/configuration.md's tables differ from pipeline/config/settings.py: run `make docs-config`"
    )
    variables = {variable for group in Settings.groups().values() for variable in group.variables().values()}
    assert len(variables) == 56 and all(name.startswith("CDRPIPE_") for name in variables)
