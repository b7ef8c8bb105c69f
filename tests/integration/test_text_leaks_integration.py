"""Real broker: numbers in every kept text field of every format reach no Parquet value and no log line.

Every such record is either in the dead-letter topic (reason ``pii_in_text``)
or stored with ``[number]`` in place of the number.
"""

from __future__ import annotations

import asyncio
import io
import json
import random
import re
from pathlib import Path

import phonenumbers
import pyarrow.parquet as pq
import pytest
from aiokafka import AIOKafkaProducer

from pipeline.numbers.text import MIN_SIGNIFICANT_DIGITS
from tests.support.helpers import (
    WorkerProcess,
    broker_address,
    find_raw_numbers,
    raw_number_needles,
    read_dead_letters,
    wait_stored,
)
from tests.support.number_spellings import digits_of, random_numbers, spellings
from tests.support.text_fields import FIELDS_BY_FORMAT, TEXT_FORMAT, TEXT_MAPPING, base_cdr, encode, with_text

pytestmark = pytest.mark.integration

NUMBERS = 12
CLEAN_PER_FORMAT = 25


def _messages(rng: random.Random) -> tuple[list[tuple[bytes, list[tuple[str, bytes]]]], list[str], list[str]]:
    """The records (with their format header), the cdr_id expected per record, and the numbers used."""
    numbers = random_numbers(NUMBERS, seed=rng.randrange(1 << 30))
    messages, expected_ids, e164s = [], [], []
    for number in numbers:
        e164s.append(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
        # below 7 digits (a 5-digit national number without its country code) nothing can tell a
        # number from a count or an extension: pipeline/numbers/text.py documents that limit
        written = [
            spelling
            for spelling in spellings(number)
            if '"' not in spelling and len(digits_of(spelling)) >= MIN_SIGNIFICANT_DIGITS
        ]
        for format_name, fields in FIELDS_BY_FORMAT.items():
            for field in fields:
                for spelling in rng.sample(written, 6):
                    cdr_id = f"leak-{len(messages)}"
                    if field == "cdr_id":  # an id is only refused when it is a number as it stands
                        value = rng.choice([e164s[-1], e164s[-1][1:], "00" + e164s[-1][1:]])
                        cdr_id = value
                    elif field == "queue":
                        value = f"callback {spelling}"
                    else:
                        value = spelling
                    payload = with_text(format_name, field, value, cdr_id)
                    messages.append((payload, [("cdr-format", format_name.encode())]))
                    expected_ids.append(cdr_id)
    for format_name in FIELDS_BY_FORMAT:
        for index in range(CLEAN_PER_FORMAT):
            cdr_id = f"clean-{format_name.replace('/', '-')}-{index}"
            messages.append((encode(format_name, base_cdr(cdr_id)), [("cdr-format", format_name.encode())]))
            expected_ids.append(cdr_id)
    return messages, expected_ids, e164s


def _secrets(e164s: list[str]) -> set[str]:
    """The digits that must appear nowhere: each national number (with its country code if short)."""
    secrets = set()
    for e164 in e164s:
        nsn = phonenumbers.national_significant_number(phonenumbers.parse(e164))
        secrets.add(nsn if len(nsn) >= MIN_SIGNIFICANT_DIGITS else e164[1:])
    return secrets


def _digit_runs(text: str) -> list[str]:
    """The digits of every run of digits and separators in ``text`` (Unicode digits as ASCII)."""
    runs = re.findall(r"[\d\s._/()%+\-]+", text)
    return ["".join(str(int(char)) for char in run if char.isdecimal()) for run in runs]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_numbers_in_text_fields_reach_no_column_and_no_log_line(
    worker_env: dict[str, str], tmp_path: Path, log_format: str
) -> None:
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    (mappings / "carrier-text.json").write_text(json.dumps(TEXT_MAPPING))
    env = {**worker_env, "CDRPIPE_MAPPINGS": str(mappings), "CDRPIPE_LOG_FORMAT": log_format}
    messages, expected_ids, e164s = _messages(random.Random(1212))
    bootstrap = broker_address(env)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        coordinates = asyncio.run(_produce_in_order(bootstrap, env["CDRPIPE_RAW_TOPICS"], messages))
        wait_stored(env, timeout_s=180)
        clean = CLEAN_PER_FORMAT * len(FIELDS_BY_FORMAT)
        letters = asyncio.run(read_dead_letters(bootstrap, env["CDRPIPE_DLQ_TOPIC"], len(messages) - clean))
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    id_at = dict(zip(coordinates, expected_ids, strict=True))

    stored: dict[str, dict[str, object]] = {}
    parquet_bytes = []
    for path in sorted(Path(env["CDRPIPE_STORE"]).glob("cdr/*/*.parquet")):
        parquet_bytes.append(path.read_bytes())
        for row in pq.read_table(io.BytesIO(parquet_bytes[-1])).to_pylist():
            stored[str(row["cdr_id"])] = row
    dead = {
        id_at[(int(letter["dlq-source-partition"]), int(letter["dlq-source-offset"]))]: letter
        for letter in letters
    }

    assert not set(stored) & set(dead)
    assert set(stored) | set(dead) == set(expected_ids), "a record was lost"
    assert {letter["dlq-reason"] for letter in dead.values()} == {"pii_in_text"}
    leaky = [cdr_id for cdr_id in expected_ids if not cdr_id.startswith("clean-")]
    for cdr_id in leaky:
        assert cdr_id in dead or "[number]" in str(stored[cdr_id]["queue"]), cdr_id
    assert all(cdr_id in stored for cdr_id in expected_ids if cdr_id.startswith("clean-"))
    queue_rows = [row for row in stored.values() if "[number]" in str(row["queue"])]
    assert queue_rows, "no queue kept its text with the number replaced"
    formats_seen = {letter["dlq-format"] for letter in dead.values()}
    assert formats_seen == set(FIELDS_BY_FORMAT), formats_seen

    secrets = _secrets(e164s)
    for row in stored.values():
        for column, value in row.items():
            if isinstance(value, str):
                assert not any(secret in run for run in _digit_runs(value) for secret in secrets), column
    needles = raw_number_needles(e164s)
    assert all(find_raw_numbers(content, needles) == [] for content in parquet_bytes)
    headers = " ".join(value for letter in letters for value in letter.values())
    assert not any(secret in run for run in _digit_runs(headers) for secret in secrets)
    log = worker.log()
    assert log.count("ingest started") == 1
    assert not any(secret in run for run in _digit_runs(log) for secret in secrets)
    assert find_raw_numbers(log.encode(), needles) == []
    assert TEXT_FORMAT in formats_seen


async def _produce_in_order(
    bootstrap: str, topic: str, messages: list[tuple[bytes, list[tuple[str, bytes]]]]
) -> list[tuple[int, int]]:
    """Publish ``messages``; their (partition, offset) in publish order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    await producer.start()
    try:
        futures = [await producer.send(topic, payload, headers=headers) for payload, headers in messages]
        return [((metadata := await future).partition, metadata.offset) for future in futures]
    finally:
        await producer.stop()
