"""Pseudonyms: deterministic per key and domain, unrelated across them, not enumerable without the key."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import secrets

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.keys.keyring import Key
from pipeline.keys.pseudonym import Domain, PartyPseudonymizer, Pseudonymizer, derive_subkey
from pipeline.numbers.msisdn import NumberClassifier
from tests.support.fuzzing import examples

KEY = Key("k1", bytes(range(32)), "2026-01-01T00:00:00Z")
OTHER_KEY = Key("k2", bytes(range(1, 33)), "2026-01-01T00:00:00Z")


def test_pseudonym_is_hmac_sha256_under_the_domain_subkey() -> None:
    expected_digest = hmac.new(
        derive_subkey(KEY.secret, Domain.SUBSCRIBER), b"+32475123456", "sha256"
    ).digest()
    pseudonym = Pseudonymizer(KEY).pseudonym(Domain.SUBSCRIBER, "+32475123456")
    assert pseudonym == expected_digest[:16].hex()


def test_deterministic_and_separated_by_domain_and_key() -> None:
    one = Pseudonymizer(KEY)
    assert one.pseudonym(Domain.SUBSCRIBER, "+32475123456") == Pseudonymizer(KEY).pseudonym(
        Domain.SUBSCRIBER, "+32475123456"
    )
    values = {
        one.pseudonym(Domain.SUBSCRIBER, "201"),
        one.pseudonym(Domain.EXTENSION, "201", "pbx-a"),
        one.pseudonym(Domain.AGENT, "201", "pbx-a"),
        Pseudonymizer(OTHER_KEY).pseudonym(Domain.SUBSCRIBER, "201"),
    }
    assert len(values) == 4


def test_extensions_and_agents_are_separated_by_tenant_and_subscribers_are_not() -> None:
    one = Pseudonymizer(KEY)
    for domain in (Domain.EXTENSION, Domain.AGENT):
        assert one.pseudonym(domain, "1001", "pbx-a") != one.pseudonym(domain, "1001", "pbx-b")
        assert one.pseudonym(domain, "1001", "pbx-a") == Pseudonymizer(KEY).pseudonym(domain, "1001", "pbx-a")
    assert one.pseudonym(Domain.EXTENSION, "1001", "pbx") != one.pseudonym(Domain.AGENT, "1001", "pbx")
    parties = PartyPseudonymizer(
        NumberClassifier("BE", (2, 5)), one, cache_size=16, tenants={"pbx-a2": "pbx-a"}
    )
    assert parties.columns("1001", "pbx-a") != parties.columns("1001", "pbx-b")
    assert parties.tenant_of("pbx-a2") == "pbx-a" and parties.tenant_of("pbx-c") == "pbx-c"
    assert parties.agent("agent-7", "pbx-a") != parties.agent("agent-7", "pbx-b")
    assert parties.columns("+32475123456", "pbx-a") == parties.columns("+32475123456", "pbx-b")


def test_tenant_scoped_domains_need_a_tenant_and_subscribers_take_none() -> None:
    with pytest.raises(ValueError, match="needs"):
        derive_subkey(KEY.secret, Domain.EXTENSION)
    with pytest.raises(ValueError, match="takes no"):
        derive_subkey(KEY.secret, Domain.SUBSCRIBER, "pbx-a")


def test_party_columns_share_one_pseudonym_across_spellings() -> None:
    parties = PartyPseudonymizer(NumberClassifier("BE", (2, 5)), Pseudonymizer(KEY), cache_size=16)
    spellings = ["0475 12 34 56", "+32475123456", "0032475123456", "tel:+32-475-123456", "sip:+32475123456@h"]
    columns = {parties.columns(spelling, "pbx-a") for spelling in spellings}
    assert len(columns) == 1
    (column,) = columns
    assert column.number_type == "E164" and column.country == "BE" and column.line_type == "MOBILE"
    assert "475" not in (column.pseudonym or "")


def test_shortcodes_stay_in_clear_and_withheld_has_no_pseudonym() -> None:
    parties = PartyPseudonymizer(NumberClassifier("BE", (2, 5)), Pseudonymizer(KEY), cache_size=16)
    emergency = parties.columns("112", "pbx-a", True)
    assert (emergency.pseudonym, emergency.shortcode, emergency.number_type) == (None, "112", "SHORTCODE")
    extension = parties.columns("112", "pbx-a", False)
    assert (extension.shortcode, extension.number_type) == (None, "EXTENSION")
    assert extension.pseudonym is not None and "112" not in extension.pseudonym
    withheld = parties.columns("anonymous", "pbx-a")
    assert (withheld.pseudonym, withheld.number_type) == (None, "WITHHELD")


def test_enumeration_without_the_key_matches_nothing() -> None:
    """Hash a block of 100,000 Belgian mobiles unkeyed and under a wrong key: no pseudonym is found."""
    right = Pseudonymizer(KEY)
    targets = {right.pseudonym(Domain.SUBSCRIBER, f"+3247512{n:04d}") for n in range(0, 10_000, 7)}
    wrong_subkey = derive_subkey(secrets.token_bytes(32), Domain.SUBSCRIBER)

    for n in range(100_000):
        value = f"+324751{n:05d}".encode()
        for digest in (hashlib.sha256(value).digest(), hmac.new(wrong_subkey, value, "sha256").digest()):
            assert digest[:16].hex() not in targets


def _e164_numbers() -> st.SearchStrategy[str]:
    regions = ["BE", "FR", "NL", "DE", "GB", "US"]

    def build(region: str, tail: int) -> str | None:
        example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
        national = str(example.national_number)
        candidate = national[:3] + str(tail).zfill(len(national) - 3)[-(len(national) - 3) :]
        number = phonenumbers.parse(f"+{example.country_code}{candidate}")
        if not phonenumbers.is_valid_number(number):
            return None
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)

    return (
        st.builds(build, st.sampled_from(regions), st.integers(min_value=0, max_value=10**9))
        .filter(lambda number: number is not None)
        .map(str)
    )


@settings(max_examples=examples(200))
@given(st.lists(_e164_numbers(), min_size=2, max_size=30, unique=True))
def test_distinct_numbers_get_distinct_pseudonyms(numbers: list[str]) -> None:
    parties = PartyPseudonymizer(NumberClassifier("BE", (2, 5)), Pseudonymizer(KEY), cache_size=64)
    pseudonyms = [parties.columns(number, "pbx-a").pseudonym for number in numbers]
    assert None not in pseudonyms
    assert len(set(pseudonyms)) == len(numbers)


@settings(max_examples=examples(200))
@given(_e164_numbers(), st.sampled_from(["{n}", "00{d}", "tel:{n}", "sip:{n}@h.example;user=phone"]))
def test_no_run_of_significant_digits_reaches_the_row(number: str, template: str) -> None:
    parties = PartyPseudonymizer(NumberClassifier("BE", (2, 5)), Pseudonymizer(KEY), cache_size=64)
    columns = parties.columns(template.format(n=number, d=number[1:]), "pbx-a")
    significant = phonenumbers.national_significant_number(phonenumbers.parse(number))
    row_text = " ".join(str(value) for value in dataclasses.astuple(columns) if value is not None)
    runs = {significant[i : i + 6] for i in range(len(significant) - 5)}
    assert columns.number_type == "E164"
    for run in runs:
        assert not re.search(rf"(?<![0-9a-f]){run}(?![0-9a-f])", row_text), run
    assert significant not in row_text
