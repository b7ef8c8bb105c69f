"""The shared number detector: at least as wide as the classifier; logs leak none of 200,000 spellings."""

from __future__ import annotations

import io
import json
import logging
import random
import re
import sys
import threading
from collections.abc import Callable, Iterator

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.numbers.msisdn import NumberClassifier, NumberKind
from pipeline.numbers.text import (
    MIN_SIGNIFICANT_DIGITS,
    contains_number,
    redact_numbers,
)
from pipeline.observability import log_scrub
from pipeline.observability.log_json import JsonFormatter
from tests.support.number_spellings import REGIONS, digits_of, random_numbers, spellings

BELGIAN = NumberClassifier("BE", (2, 5))


class _BoomError(Exception):
    pass


def _log_lines(formatter: logging.Formatter, emit: Callable[[logging.Logger], None]) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("cdrpipe.test.leaks")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    emit(logger)
    return stream.getvalue()


@pytest.fixture
def scrubbing_factory() -> Iterator[None]:
    saved = (logging.getLogRecordFactory(), sys.excepthook, threading.excepthook)
    log_scrub.install()
    yield
    logging.setLogRecordFactory(saved[0])
    sys.excepthook, threading.excepthook = saved[1], saved[2]
    logging.captureWarnings(False)


@pytest.mark.slow
@pytest.mark.usefixtures("scrubbing_factory")
@pytest.mark.parametrize(
    "formatter", [logging.Formatter("%(levelname)s %(name)s %(message)s"), JsonFormatter()]
)
def test_ten_thousand_numbers_in_twenty_spellings_never_reach_a_log_line(
    formatter: logging.Formatter,
) -> None:
    numbers = random_numbers(10_000, seed=12)
    leaked = []
    for number in numbers:
        written = spellings(number)
        assert len(written) == 20

        def emit(logger: logging.Logger, spellings: list[str] = written) -> None:
            logger.info("caller %s" % " | ".join(spellings))  # noqa: UP031 - the number in the message itself
            logger.warning("rejected %s and %r", " | ".join(spellings), spellings)
            try:
                raise _BoomError("unexpected caller " + " / ".join(repr(spelling) for spelling in spellings))
            except _BoomError:
                logger.exception("decoding failed for %s", spellings[0])

        output = _log_lines(formatter, emit)
        if isinstance(formatter, JsonFormatter):
            documents = [json.loads(line) for line in output.splitlines()]
            output = "\n".join(doc["message"] + doc.get("exception", "") for doc in documents)
        # A national number shorter than 7 digits (Saint Helena's 5) written without its country
        # code is below what any detector can tell from a count or an extension: the country code
        # must not pass with it, and every spelling of 7 or more digits must not pass at all.
        nsn = phonenumbers.national_significant_number(number)
        secret = nsn if len(nsn) >= MIN_SIGNIFICANT_DIGITS else f"{number.country_code}{nsn}"
        visible = [spelling for spelling in written if len(digits_of(spelling)) >= MIN_SIGNIFICANT_DIGITS]
        # the spellings are joined by | / ' and , which no spelling holds: look at each piece's digits
        pieces = re.split(r"\[number\]|[|',\n]", output)
        if any(secret in digits_of(piece) for piece in pieces) or any(
            spelling in output for spelling in visible
        ):
            leaked.append(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    assert leaked == []


def _candidate_strings() -> st.SearchStrategy[str]:
    digits = st.text("0123456789", min_size=1, max_size=17)
    prefix = st.sampled_from(["", "+", "00", "0", "000"])
    separator = st.sampled_from(["", " ", "-", ".", "/", "\u00a0"])

    def spell(prefix_text: str, body: str, sep: str, cut: int) -> str:
        cut = min(cut, len(body))
        return f"{prefix_text}{body[:cut]}{sep}{body[cut:]}"

    return st.builds(spell, prefix, digits, separator, st.integers(min_value=0, max_value=17))


@settings(max_examples=3000, deadline=None)
@given(_candidate_strings(), st.sampled_from(["queue {} west", "{}", "cb:{};", "Queue({},t)", "x{}y"]))
def test_the_detector_catches_everything_the_classifier_calls_e164(raw: str, context: str) -> None:
    if BELGIAN.classify(raw).kind is NumberKind.E164:
        text = context.format(raw)
        assert contains_number(text), text
        assert digits_of(raw) not in digits_of(redact_numbers(text))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(REGIONS), st.integers(min_value=0, max_value=19), st.randoms(use_true_random=False))
def test_the_detector_catches_every_spelling_of_valid_numbers(
    region: str, which: int, rng: random.Random
) -> None:
    number = random_numbers(1, seed=rng.randrange(1 << 30))[0]
    spelling = spellings(number)[which]
    if len(digits_of(spelling)) >= MIN_SIGNIFICANT_DIGITS:
        assert contains_number(f"queue '{spelling}' is full")
