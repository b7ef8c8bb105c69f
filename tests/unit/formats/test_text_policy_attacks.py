"""Attacks on the kept-text detector: lookalike separators, people's texts in the register."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo

import pytest

from pipeline.errors import RequestRefusedError
from pipeline.formats import DecodeContext
from pipeline.formats.mapped_csv import MappedCsvDecoder
from pipeline.formats.selection import FormatSelector, builtin_decoders
from pipeline.lifecycle.requests.ids import check_text
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.numbers.text import IN_KEPT_TEXTS
from tests.support.text_fields import FIELDS_BY_FORMAT, TEXT_FORMAT, text_mapping, with_text

CLASSIFIER = NumberClassifier("BE", (2, 5))
DECODERS = builtin_decoders({})
DECODERS[TEXT_FORMAT] = MappedCsvDecoder(text_mapping()).decode
SELECTOR = FormatSelector(DECODERS, {}, DecodeContext(ZoneInfo("Europe/Brussels"), CLASSIFIER))
QUEUE_FORMATS = sorted(name for name, fields in FIELDS_BY_FORMAT.items() if "queue" in fields)
LOOKALIKES = {
    "semicolon": ";",
    "fullwidth comma": "\uff0c",
    "arabic comma": "\u060c",
    "ideographic comma": "\u3001",
    "hyphenation point": "\u2027",
    "katakana middle dot": "\u30fb",
    "halfwidth katakana middle dot": "\uff65",
    "fraction slash": "\u2044",
    "bullet": "\u2022",
    "fullwidth colon": "\uff1a",
    "fullwidth full stop": "\uff0e",
    "fullwidth hyphen": "\uff0d",
    "small hyphen": "\ufe63",
    "one dot leader": "\u2024",
    "dot operator": "\u22c5",
    "greek ano teleia": "\u0387",
    "left single quote": "\u2018",
    "prime": "\u2032",
    "left-to-right mark": "\u200e",
    "right-to-left mark": "\u200f",
    "combining low line": "\u0332",
    "braille blank": "\u2800",
    "wave dash": "\u301c",
    "semicolon and space": "; ",
    "star": "*",
    "tilde": "~",
}
NUMBERS = ["0475 12 34 56", "+32 475 12 34 56", "0032 475 12 34 56", "+33 6 12 34 56 78", "+1 212 555 0123"]


@pytest.mark.parametrize("format_name", QUEUE_FORMATS)
@pytest.mark.parametrize("separator", list(LOOKALIKES.values()), ids=list(LOOKALIKES))
def test_a_number_split_by_a_lookalike_separator_never_reaches_the_queue(
    format_name: str, separator: str
) -> None:
    for number in NUMBERS:
        spelled = number.replace(" ", separator)
        payload = with_text(format_name, "queue", f"callback {spelled} west", "1732530102.7")
        queue = SELECTOR.decode("cdr.raw", [("cdr-format", format_name.encode())], payload).queue
        assert queue == "callback [number] west", (spelled, queue)


@pytest.mark.parametrize(
    "text",
    [
        "the caller 0475,12,34,56 asked twice",
        "call back on +32\uff0c475\uff0c12\uff0c34\uff0c56",
        "tel 0475:12:34:56",
    ],
)
def test_a_number_in_a_register_note_is_refused_whatever_its_separators(text: str) -> None:
    # check_text read notes, reasons and outcomes with the log scrubber, where a comma is no separator
    with pytest.raises(RequestRefusedError, match="must not contain a phone number") as refused:
        check_text(text, "a note")
    assert "12" not in str(refused.value)


@pytest.mark.parametrize(
    "name",
    [
        "Support NL",
        "Billing (2nd line)",
        "Support 24/7",
        "Helpdesk ext. 2001",
        "Queue 10, 20, 30",
        "Zone 1, 2 & 3",
    ],
)
def test_ordinary_queue_names_stay_readable(name: str) -> None:
    assert IN_KEPT_TEXTS.redact(name) == name


@pytest.mark.parametrize(
    "name", ["Sales 08:00-17:00", "Queue 1,000,000 calls", "Tickets 1,234,567", "ISO 9001:2015"]
)
def test_times_and_counts_in_queue_names_are_replaced_aggressive_but_safe(name: str) -> None:
    # the price of reading , and : as separators: 7 digits joined by them are a number
    assert "[number]" in IN_KEPT_TEXTS.redact(name)
    assert not re.search(r"\d{7}", re.sub(r"\D", "", IN_KEPT_TEXTS.redact(name)))
