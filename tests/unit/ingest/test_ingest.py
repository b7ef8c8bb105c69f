"""The ingest path without Kafka: routing, dead letters, file names and commit offsets."""

from __future__ import annotations

import pyarrow as pa

from pipeline.formats.selection import FormatSelector, builtin_decoders
from pipeline.ingest.ingestor import Ingestor
from pipeline.ingest.records import RawRecord
from pipeline.keys.keyring import Key
from pipeline.keys.pseudonym import PartyPseudonymizer, Pseudonymizer
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.record import RejectReason
from pipeline.store.schema import CDR_SCHEMA
from tests.support.samples import call_at, canonical_bytes, decode_context


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _ingestor(clock: FakeClock, flush_rows: int = 1000) -> Ingestor:
    parties = PartyPseudonymizer(
        NumberClassifier("BE", (2, 5)), Pseudonymizer(Key("k7", b"s" * 32, "2026-01-01")), 64
    )
    formats = FormatSelector(builtin_decoders({}), {"cdr.raw": "canonical-json"}, decode_context())
    return Ingestor(formats, parties, flush_rows, 5.0, clock=clock)


def _record(offset: int, payload: bytes | None, partition: int = 0) -> RawRecord:
    return RawRecord("cdr.raw", partition, offset, payload)


def test_rows_are_routed_by_utc_call_date_into_deterministic_files() -> None:
    ingestor = _ingestor(FakeClock())
    assert ingestor.add(_record(40, call_at("2026-03-29T00:30:00+01:00", cdr_id="a"))) is None
    assert ingestor.add(_record(41, call_at("2026-03-29T10:00:00+02:00", cdr_id="b"))) is None
    flush = ingestor.take(("cdr.raw", 0))
    assert [pending.path for pending in flush.files] == [
        "cdr/call_date=2026-03-28/cdr.raw+0+00000000000000000040.parquet",
        "cdr/call_date=2026-03-29/cdr.raw+0+00000000000000000040.parquet",
    ]
    assert flush.commit_offset == 42
    table = flush.files[1].table
    assert table.schema == CDR_SCHEMA
    assert table.column("cdr_id").to_pylist() == ["b"]
    assert table.column("key_id").to_pylist() == ["k7"]
    assert pa.types.is_dictionary(table.schema.field("queue").type)


def test_dead_letters_are_returned_and_still_advance_the_commit_offset() -> None:
    ingestor = _ingestor(FakeClock())
    letter = ingestor.add(_record(7, b"{broken"))
    assert letter is not None and letter.reason is RejectReason.UNDECODABLE and letter.record.offset == 7
    assert letter.format_name == "canonical-json"
    tombstone = ingestor.add(_record(8, None))
    assert tombstone is not None and tombstone.reason is RejectReason.UNDECODABLE
    flush = ingestor.take(("cdr.raw", 0))
    assert flush.files == () and flush.commit_offset == 9


def test_no_raw_party_value_is_buffered() -> None:
    ingestor = _ingestor(FakeClock())
    ingestor.add(_record(0, canonical_bytes(caller="0475 12 34 56", callee="+3225550100", connected="201")))
    table = ingestor.take(("cdr.raw", 0)).files[0].table
    text = str(table.to_pylist())
    for raw in ("475", "5550100", "'201'"):
        assert raw not in text


def test_batches_are_due_by_rows_or_age_per_partition() -> None:
    clock = FakeClock()
    ingestor = _ingestor(clock, flush_rows=2)
    ingestor.add(_record(0, canonical_bytes(cdr_id="a"), partition=0))
    ingestor.add(_record(0, canonical_bytes(cdr_id="b"), partition=1))
    assert ingestor.due() == []
    ingestor.add(_record(1, canonical_bytes(cdr_id="c"), partition=0))
    assert ingestor.due() == [("cdr.raw", 0)]
    clock.now += 5.0
    assert set(ingestor.due()) == {("cdr.raw", 0), ("cdr.raw", 1)}
    assert ingestor.buffered_rows == 3


def test_a_new_batch_starts_at_the_next_offset_after_take() -> None:
    ingestor = _ingestor(FakeClock())
    ingestor.add(_record(0, canonical_bytes(cdr_id="a")))
    ingestor.take(("cdr.raw", 0))
    ingestor.add(_record(1, canonical_bytes(cdr_id="b")))
    assert ingestor.take(("cdr.raw", 0)).files[0].path.endswith("+0+00000000000000000001.parquet")
