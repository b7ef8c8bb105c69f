"""Party strings generated from phonenumbers' metadata, for the classification differential test.

:func:`party_strings` yields, for a seed, an endless deterministic stream of
(default region, party string) pairs. The numbers come from every region and
non-geographic calling code phonenumbers knows: samples of each number type's
pattern (mostly valid numbers), the metadata's example numbers, and those
numbers one digit short, one digit long, with their last digits changed, or
plain random digits. Each is spelled the way CDRs spell numbers: ``+CC…``, the
default region's international prefix (a sample of its pattern), ``000CC…``,
``CC…`` without ``+``, national with a trunk prefix or a sample of the default
region's national-prefix pattern (carrier codes), bare, with separators, as a
``tel:`` or ``sip:`` URI, or with a display name.
"""

from __future__ import annotations

import random
import re._constants as sre
import re._parser as sre_parse
from collections.abc import Callable, Iterator
from typing import Any

from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, SUPPORTED_REGIONS, PhoneMetadata

Sampler = Callable[[random.Random], str]

# Default regions: Belgium (cdrpipe's default) most often, then regions with
# shared country codes, transform rules, carrier codes or unusual prefixes, and
# one time in ten any region.
DEFAULT_REGIONS = ("BE",) * 6 + ("US", "GB", "AR", "BR", "MX", "RU", "IT", "JP", "AU", "DE", "FR", "CN", "CO")
ANY_DEFAULT_REGION = 0.1
_TYPES = (
    "fixed_line",
    "mobile",
    "toll_free",
    "premium_rate",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
)
_DIGITS = "0123456789"
_POOL = 24  # pattern samples kept per number type of a region


def _sampler(pattern: str) -> Sampler:
    """A function that returns a random string matching ``pattern`` (digits-only metadata patterns)."""
    return _sequence(sre_parse.parse(pattern))


def _sequence(items: Any) -> Sampler:
    parts = [_node(op, argument) for op, argument in items]
    return lambda rng: "".join(part(rng) for part in parts)


def _node(op: Any, argument: Any) -> Sampler:
    if op is sre.LITERAL:
        return lambda rng: chr(argument)
    if op is sre.IN:
        chars = "".join(_class_chars(item, value) for item, value in argument)
        return lambda rng: rng.choice(chars)
    if op is sre.MAX_REPEAT:
        low, high, body = argument
        inner, top = _sequence(body), min(high, low + 4)
        return lambda rng: "".join(inner(rng) for _ in range(rng.randint(low, top)))
    if op is sre.SUBPATTERN:
        return _sequence(argument[3])
    if op is sre.BRANCH:
        branches = [_sequence(branch) for branch in argument[1]]
        return lambda rng: rng.choice(branches)(rng)
    if op is sre.AT:
        return lambda rng: ""
    raise ValueError(f"regex construct {op} not expected in phone metadata")


def _class_chars(item: Any, value: Any) -> str:
    if item is sre.LITERAL:
        return chr(value)
    if item is sre.RANGE:
        return "".join(chr(code) for code in range(value[0], value[1] + 1))
    if item is sre.CATEGORY and value is sre.CATEGORY_DIGIT:
        return _DIGITS
    raise ValueError(f"character class item {item} not expected in phone metadata")


class _Plan:
    """What the generator needs to know of one region or non-geographic calling code."""

    def __init__(self, metadata: Any) -> None:
        self.region = str(metadata.id)
        self.country_code = str(metadata.country_code)
        self.national_prefix = metadata.national_prefix or "0"
        descs = [getattr(metadata, name) for name in _TYPES]
        descs = [desc for desc in descs if desc is not None and desc.national_number_pattern]
        self.examples = [desc.example_number for desc in descs if desc.example_number] or ["1234567"]
        self.type_samplers = [_sampler(desc.national_number_pattern) for desc in descs]
        self.pools: list[list[str]] = []
        self.idd = _sampler(metadata.international_prefix) if metadata.international_prefix else None
        prefix = metadata.national_prefix_for_parsing
        self.national_prefix_sampler = _sampler(prefix) if prefix else None

    def fill_pools(self, rng: random.Random) -> None:
        self.pools = [[sample(rng) for _ in range(_POOL)] for sample in self.type_samplers]

    def number(self, rng: random.Random) -> str:
        """A national significant number of this plan, mostly valid."""
        roll = rng.random()
        if roll < 0.08 or not self.pools:
            return rng.choice(self.examples)
        if roll < 0.12:
            return "".join(rng.choice(_DIGITS) for _ in range(rng.randint(1, 18)))
        number = rng.choice(rng.choice(self.pools))
        roll = rng.random()
        if roll < 0.35:  # the same number range, other subscribers
            keep = max(1, len(number) - rng.randint(1, 4))
            return number[:keep] + "".join(rng.choice(_DIGITS) for _ in range(len(number) - keep))
        if roll < 0.45:
            return number[:-1]
        if roll < 0.55:
            return number + rng.choice(_DIGITS)
        return number


def _plans() -> list[_Plan]:
    metadata = [PhoneMetadata.metadata_for_region(region) for region in sorted(SUPPORTED_REGIONS)]
    metadata += [
        PhoneMetadata.metadata_for_nongeo_region(code)
        for code, regions in sorted(COUNTRY_CODE_TO_REGION_CODE.items())
        if regions == ("001",)
    ]
    return [_Plan(item) for item in metadata if item is not None]


def _digits(plan: _Plan, default: _Plan, rng: random.Random) -> str:
    """One dialled spelling of a number of ``plan`` as seen from the ``default`` region."""
    number, code = plan.number(rng), plan.country_code
    shape = rng.randrange(12)
    if shape < 3:
        return f"+{code}{number}"
    if shape == 3:
        return f"+{code}{plan.national_prefix}{number}"
    if shape == 4 and default.idd is not None:
        return f"{default.idd(rng)}{code}{number}"
    if shape == 5:
        return f"000{code}{number}"
    if shape == 6:
        return f"{code}{number}"
    if shape == 7 and default.national_prefix_sampler is not None:
        return f"{default.national_prefix_sampler(rng)}{number}"
    if shape == 8:
        return number
    if shape == 9:
        return "".join(rng.choice(_DIGITS) for _ in range(rng.randint(1, 22)))
    return f"{default.national_prefix}{number}"


def _spelled(digits: str, rng: random.Random) -> str:
    """``digits`` as a CDR may carry it: with separators, in a URI, with a display name."""
    if rng.random() < 0.3:
        cut = sorted(rng.sample(range(1, len(digits)), min(3, len(digits) - 1))) if len(digits) > 1 else []
        pieces = [digits[start:end] for start, end in zip([0, *cut], [*cut, len(digits)], strict=True)]
        separator = rng.choice((" ", ".", "-", "/"))
        if len(pieces) > 2 and rng.random() < 0.3:
            pieces[1] = f"({pieces[1]})"
        digits = separator.join(pieces)
    wrapper = rng.randrange(8)
    if wrapper == 0:
        return f"tel:{digits.replace(' ', '-')}"
    if wrapper == 1:
        return f"sip:{digits.replace(' ', '')}@sbc.example;user=phone"
    if wrapper == 2:
        return f'"Caller" <sip:{digits.replace(" ", "")}@pbx.example>'
    return digits


def party_strings(seed: int) -> Iterator[tuple[str, str]]:
    """An endless, deterministic stream of (default region, party string) for ``seed``."""
    rng = random.Random(seed)
    plans = _plans()
    for plan in plans:
        plan.fill_pools(rng)
    defaults = {plan.region: plan for plan in plans if plan.region in SUPPORTED_REGIONS}
    every_region = sorted(defaults)
    while True:
        for plan in plans:  # every region in turn, and a quarter numbers of the default region
            use_any = rng.random() < ANY_DEFAULT_REGION
            default = defaults[rng.choice(every_region if use_any else DEFAULT_REGIONS)]
            source = default if rng.random() < 0.25 else plan
            yield default.region, _spelled(_digits(source, default, rng), rng)
