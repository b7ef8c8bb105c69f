"""Number classification and E.164 normalisation."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.numbers.msisdn import NumberClassifier, NumberKind, Role, can_reach_service
from tests.support.fuzzing import examples

BELGIAN = NumberClassifier("BE", (2, 5))

SAME_MOBILE = [
    "0475 12 34 56",
    "0475123456",
    "+32475123456",
    "+32 475 12 34 56",
    "0032475123456",
    "00032475123456",
    "32475123456",
    "tel:+32-475-123456",
    "tel:+32475123456;phone-context=example.com",
    "sip:+32475123456@sbc.example;user=phone",
    "sips:0475123456@pbx.example",
    '"Jan Peeters" <sip:+32475123456@pbx.example>',
    "0475/12.34.56",
    "(0475) 12-34-56",
]


@pytest.mark.parametrize("spelling", SAME_MOBILE)
def test_every_spelling_of_a_mobile_normalises_to_one_e164(spelling: str) -> None:
    result = BELGIAN.classify(spelling)
    assert result.kind is NumberKind.E164
    assert result.value == "+32475123456"
    assert result.region == "BE"
    assert result.line_type == "MOBILE"


@pytest.mark.parametrize(
    ("raw", "e164", "region"),
    [
        ("+33 6 12 34 56 78", "+33612345678", "FR"),
        ("0033612345678", "+33612345678", "FR"),
        ("+49 151 23456789", "+4915123456789", "DE"),
        ("tel:+1-650-253-0000", "+16502530000", "US"),
        ("02 555 12 34", "+3225551234", "BE"),
        ("0800 12 345", "+3280012345", "BE"),
    ],
)
def test_foreign_and_fixed_numbers(raw: str, e164: str, region: str) -> None:
    result = BELGIAN.classify(raw)
    assert (result.kind, result.value, result.region) == (NumberKind.E164, e164, region)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "  ",
        "anonymous",
        "Anonymous",
        "restricted",
        "unknown",
        "unavailable",
        "private",
        "sip:anonymous@anonymous.invalid",
        "<sip:anonymous@host>",
    ],
)
def test_withheld(raw: str) -> None:
    assert BELGIAN.classify(raw).kind is NumberKind.WITHHELD


@pytest.mark.parametrize("raw", ["112", "100", "101"])
def test_dialled_emergency_numbers_are_shortcodes_even_at_extension_length(raw: str) -> None:
    result = BELGIAN.classify(raw, service=True)
    assert (result.kind, result.value) == (NumberKind.SHORTCODE, raw)


@pytest.mark.parametrize("raw", ["112", "100", "101", "1207", "116000"])
def test_short_digits_are_never_service_numbers_where_no_call_can_reach_one(raw: str) -> None:
    result = BELGIAN.classify(raw)
    assert result.kind is not NumberKind.SHORTCODE
    assert result.kind in (NumberKind.EXTENSION, NumberKind.INVALID)


@pytest.mark.parametrize(
    ("role", "direction", "reachable"),
    [
        ("callee", "outbound", True),
        ("callee", "inbound", False),
        ("callee", "internal", False),
        ("caller", "outbound", False),
        ("caller", "inbound", False),
        ("caller", "internal", False),
        ("connected", "outbound", False),
        ("connected", "inbound", False),
    ],
)
def test_only_the_callee_of_an_outbound_call_can_reach_a_service(
    role: Role, direction: str, reachable: bool
) -> None:
    assert can_reach_service(role, direction) is reachable


def test_service_short_code_longer_than_extensions() -> None:
    assert BELGIAN.classify("116000", service=True).kind is NumberKind.SHORTCODE


@pytest.mark.parametrize("raw", ["201", "2001", "sip:2001@pbx.local", "45"])
def test_extensions_by_configured_length(raw: str) -> None:
    result = BELGIAN.classify(raw)
    assert result.kind is NumberKind.EXTENSION
    assert result.value == raw.removeprefix("sip:").split("@")[0]


def test_extension_length_is_configurable() -> None:
    assert NumberClassifier("BE", (6, 6)).classify("201").kind is not NumberKind.EXTENSION
    assert NumberClassifier("BE", (6, 6)).classify("220011").kind is NumberKind.EXTENSION


@pytest.mark.parametrize("raw", ["abc", "0912345", "+32 12", "0475 12 34 5x", "++32475123456", "tel:"])
def test_invalid(raw: str) -> None:
    result = BELGIAN.classify(raw)
    assert result.kind in (NumberKind.INVALID, NumberKind.WITHHELD)
    assert result.value is None


REGIONS = ["BE", "FR", "NL", "DE", "GB", "LU", "US", "MA", "TR", "IT"]


@st.composite
def valid_numbers(draw: st.DrawFn) -> phonenumbers.PhoneNumber:
    region = draw(st.sampled_from(REGIONS))
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    national = str(example.national_number)
    keep = draw(st.integers(min_value=2, max_value=3))
    tail = draw(st.text("0123456789", min_size=len(national) - keep, max_size=len(national) - keep))
    number = phonenumbers.parse(f"+{example.country_code}{national[:keep]}{tail}")
    if not phonenumbers.is_valid_number(number):
        number = example
    return number


@settings(max_examples=examples(300))
@given(valid_numbers(), st.data())
def test_international_spellings_agree(number: phonenumbers.PhoneNumber, data: st.DataObject) -> None:
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    international = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    spellings = [
        e164,
        international,
        "00" + e164[1:],
        f"tel:{international.replace(' ', '-')}",
        f"sip:{e164}@host.example;user=phone",
    ]
    if phonenumbers.region_code_for_number(number) == "BE":
        spellings.append(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL))
    results = {BELGIAN.classify(data.draw(st.sampled_from(spellings))).value for _ in range(3)}
    results |= {BELGIAN.classify(spelling).value for spelling in spellings}
    assert results == {e164}


TRICKY_SPELLINGS = [
    "{e164}", "00{cc}{nsn}", "0{nsn}", "{nsn}", "+{cc}0{nsn}", "0{nsn}9", "00{cc}0{nsn}", "{cc}{nsn}",
]  # fmt: skip


@settings(max_examples=examples(400))
@given(valid_numbers(), st.sampled_from(TRICKY_SPELLINGS))
def test_remembered_numbers_never_change_a_classification(
    number: phonenumbers.PhoneNumber, template: str
) -> None:
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    nsn = phonenumbers.national_significant_number(number)
    text = template.format(e164=e164, cc=number.country_code, nsn=nsn)
    remembering = NumberClassifier("BE", (2, 5))
    assert remembering.classify(e164).value == e164
    assert remembering.classify(text) == NumberClassifier("BE", (2, 5)).classify(text)
