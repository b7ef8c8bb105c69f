"""The first-seen fast path gives exactly the full phonenumbers result (pipeline/numbers/plan.py)."""

from __future__ import annotations

import phonenumbers
import pytest
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, SUPPORTED_REGIONS, PhoneNumberType

from pipeline.numbers.msisdn import NumberClassifier, NumberKind
from pipeline.numbers.plan import UNDECIDED, NumberingPlan, Valid
from tests.support.classify_differential import run

DIFFERENTIAL_INPUTS = 1_000_000
TYPE_NAMES = {value: name for name, value in vars(PhoneNumberType).items() if name.isupper()}


def full_parse(digits: str, region: str) -> Valid | None:
    """What phonenumbers itself says of ``digits``: (E.164, region, type name) if valid, else None."""
    try:
        number = phonenumbers.parse(digits, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164, phonenumbers.region_code_for_number(number), TYPE_NAMES[phonenumbers.number_type(number)]


# Every region phonenumbers gives a valid number (EH, say, never: MA's leading digits take all +212).
REGIONS_OF_EXAMPLES = {
    phonenumbers.region_code_for_number(example)
    for region in SUPPORTED_REGIONS
    for number_type in TYPE_NAMES
    if (example := phonenumbers.example_number_for_type(region, number_type)) is not None
} | {"001"}


@pytest.mark.slow
def test_a_million_generated_inputs_classify_exactly_as_the_full_parse() -> None:
    report = run(DIFFERENTIAL_INPUTS, seed=14)
    assert report.inputs == DIFFERENTIAL_INPUTS
    assert report.mismatches == 0, "\n".join(
        f"{region} {raw!r}: fast {got} != full {expected}" for region, raw, got, expected in report.examples
    )
    # The inputs are mostly valid numbers, of every region phonenumbers knows,
    # and the fast path (not the fallback) decided nearly all of them.
    valid = report.kinds[NumberKind.E164]
    assert valid >= DIFFERENTIAL_INPUTS // 2
    assert report.regions >= REGIONS_OF_EXAMPLES
    assert report.decided >= 0.95 * valid
    assert report.kinds[NumberKind.INVALID] >= DIFFERENTIAL_INPUTS // 5


SHARED_CODES = sorted(code for code, regions in COUNTRY_CODE_TO_REGION_CODE.items() if len(regions) > 1)
SHARED_CODE_EXAMPLES = sorted(
    {
        phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
        for code in SHARED_CODES
        for region in COUNTRY_CODE_TO_REGION_CODE[code]
        for number_type in TYPE_NAMES
        if (example := phonenumbers.example_number_for_type(region, number_type)) is not None
    }
)


@pytest.mark.parametrize("e164", SHARED_CODE_EXAMPLES)
def test_shared_country_codes_pick_phonenumbers_region(e164: str) -> None:
    """+1, +7, +39, +44, +47, +61, +212, +262, +290, +358, +590, +599: by leading digits or validity."""
    decided = NumberingPlan("BE").decide(e164)
    assert decided is not UNDECIDED
    assert decided == full_parse(e164, "BE")
    # Changing the last digits moves a number between regions or makes it invalid; still the same answer.
    for tail in ("0", "00", "99", "1234"):
        altered = e164[: -len(tail)] + tail
        assert NumberingPlan("BE").decide(altered) == full_parse(altered, "BE")


NATIONAL_SPELLINGS = [
    ("AR", "01123456789"),  # fixed, national prefix 0
    ("AR", "0111523456789"),  # mobile with "15": the transform rule inserts a 9
    ("AR", "91123456789"),
    ("BR", "0151123456789"),  # carrier code 15 after the national prefix
    ("BR", "01511961234567"),
    ("BR", "901511961234567"),
    ("BR", "011961234567"),
    ("BR", "01123456789"),
    ("MX", "2221234567"),
    ("MX", "0442221234567"),  # the old mobile prefix: invalid now
    ("JP", "0312345678"),
    ("JP", "09012345678"),
    ("JP", "00037680312345678"),
    ("GB", "01212345678"),
    ("GB", "07400123456"),
    ("GB", "1800201212345678"),  # 180020: a national prefix for parsing without a transform
    ("IT", "0212345678"),  # the leading zero is part of the national number
    ("IT", "3123456789"),
    ("CO", "056012345678"),  # carrier code 5 after the national prefix
    ("CO", "0156012345678"),  # carrier 15 is not in CO's prefix pattern: invalid
    ("KR", "0101234567"),
    ("KR", "08122123456"),  # carrier code 81
    ("AU", "0412345678"),
    ("AU", "1831412345678"),  # 1831: a captured prefix without a transform
    ("CN", "13123456789"),
    ("CN", "117901012345678"),
    ("US", "16502530000"),
    ("US", "0116502530000"),  # 011 then 65: a Singapore number, invalid
    ("US", "01132475123456"),
    ("BE", "32475123456"),  # the default country code without "+"
    ("BE", "320475123456"),
    ("BE", "3232475123456"),
    ("BE", "00032475123456"),  # no "0" may follow the international prefix: a national number, invalid
]


@pytest.mark.parametrize(("region", "digits"), NATIONAL_SPELLINGS)
def test_national_prefixes_carrier_codes_and_transform_rules(region: str, digits: str) -> None:
    decided = NumberingPlan(region).decide(digits)
    assert decided is not UNDECIDED
    assert decided == full_parse(digits, region)


@pytest.mark.parametrize(
    ("region", "digits"),
    [
        ("BE", "+0032475123456"),  # phonenumbers reads it again without "+": 00 is BE's international prefix
        ("BE", "+00032475123456"),  # ... but no "0" may follow the prefix
        ("BE", "+0475123456"),
        ("BE", "+99912345678"),
        ("BE", "+00999123456"),
        ("US", "+01132475123456"),
        ("US", "+0032475123456"),
        ("ZZ", "+0032475123456"),  # no default region, no international prefix
    ],
)
def test_an_unknown_code_after_plus_is_read_again_without_it(region: str, digits: str) -> None:
    decided = NumberingPlan(region).decide(digits)
    assert decided is not UNDECIDED
    assert decided == full_parse(digits, region)


def test_short_long_and_unknown_region_inputs_are_left_to_phonenumbers() -> None:
    assert NumberingPlan("BE").decide("+32") is UNDECIDED
    assert NumberingPlan("BE").decide("+3" + "4" * 24) is UNDECIDED
    assert NumberingPlan("ZZ").decide("0475123456") is UNDECIDED
    assert NumberingPlan("ZZ").decide("+32475123456") == ("+32475123456", "BE", "MOBILE")


def test_the_classifier_remembers_what_the_fast_path_decided() -> None:
    classifier = NumberClassifier("BE", (2, 5))
    first = classifier.classify("+32 475 12 34 56")
    assert (first.kind, first.value, first.region, first.line_type) == (
        NumberKind.E164,
        "+32475123456",
        "BE",
        "MOBILE",
    )
    assert classifier.classify("0475/12.34.56") is first
