"""Valid phone numbers of every region in the spellings people and machines write them."""

from __future__ import annotations

import random
import re

import phonenumbers

REGIONS = ["BE", "FR", "NL", "DE", "GB", "LU", "US", "MA", "TR", "IT", "SE", "NU", "SH", "IE", "ES"]
FULL_WIDTH = str.maketrans("0123456789+", "".join(chr(0xFF10 + digit) for digit in range(10)) + "\uff0b")


def spellings(number: phonenumbers.PhoneNumber) -> list[str]:
    """Twenty spellings of one number: formats people, carriers, URLs and log lines use."""
    fmt = phonenumbers.PhoneNumberFormat
    e164 = phonenumbers.format_number(number, fmt.E164)
    international = phonenumbers.format_number(number, fmt.INTERNATIONAL)
    national = phonenumbers.format_number(number, fmt.NATIONAL)
    nsn = phonenumbers.national_significant_number(number)
    grouped = " ".join(nsn[i : i + 2] for i in range(0, len(nsn), 2))
    cc = str(number.country_code)
    return [
        e164,
        international,
        national,
        "00" + e164[1:],
        "000" + e164[1:],
        e164[1:],
        nsn,
        "0" + nsn,
        international.replace(" ", "\u00a0"),
        international.replace(" ", "\t"),
        f"{cc}_{nsn}",
        "%2B" + e164[1:],
        "%2B" + cc + "%20" + nsn,
        e164.translate(FULL_WIDTH),
        e164 + "4711",
        f"tel:{international.replace(' ', '-')}",
        f"sip:{e164}@sbc.example;user=phone",
        f"+{cc} (0){grouped}",
        "0" + ".".join(nsn[i : i + 2] for i in range(0, len(nsn), 2)),
        f"({cc}) {nsn[:3]}/{nsn[3:]}",
    ]


def random_numbers(count: int, seed: int) -> list[phonenumbers.PhoneNumber]:
    rng = random.Random(seed)
    numbers: list[phonenumbers.PhoneNumber] = []
    while len(numbers) < count:
        region = rng.choice(REGIONS)
        kind = rng.choice([phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE])
        example = phonenumbers.example_number_for_type(region, kind)
        if example is None:
            continue
        national = str(example.national_number)
        keep = min(2, len(national) - 1)
        tail = "".join(rng.choice("0123456789") for _ in range(len(national) - keep))
        number = phonenumbers.parse(f"+{example.country_code}{national[:keep]}{tail}")
        if phonenumbers.is_valid_number(number):
            numbers.append(number)
    return numbers


def digits_of(text: str) -> str:
    """The decimal digits of ``text`` (Unicode digits as ASCII), traceback line numbers left out."""
    without_lines = re.sub(r"line \d+", "", text)
    return "".join(str(int(char)) for char in without_lines if char.isdecimal())
