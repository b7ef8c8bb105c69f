"""A small store of Parquet files pseudonymised under a two-key keyring, for lifecycle tests."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema

from pipeline.ingest.rows import build_rows
from pipeline.keys.keyring import Key, Keyring
from pipeline.keys.pseudonym import PartyPseudonymizer, Pseudonymizer
from pipeline.lifecycle.erasure import ErasureProcessor
from pipeline.lifecycle.ledger import LedgerEntry, SubjectLedger
from pipeline.lifecycle.operations.restriction import Ledger, Passes
from pipeline.lifecycle.requests.receipts import AnyReceipt, SubjectReceipt, encode_receipt, receipt_message
from pipeline.lifecycle.rights import RightsProcessor
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.store.parquet import encode
from pipeline.store.storage import LocalStorage
from tests.support.helpers import REPO
from tests.support.samples import call_at, canonical_decode

KEYS = Keyring("k2", (Key("k1", b"a" * 32, "t"), Key("k2", b"b" * 32, "t")))

CLASSIFIER = NumberClassifier("BE", (2, 5))

SUBJECT = "+32475000111"


def parquet_file(key: Key, calls: list[tuple[str, str, str]]) -> bytes:
    """A Parquet file of calls (cdr_id, caller, start) pseudonymised under ``key``."""
    parties = PartyPseudonymizer(CLASSIFIER, Pseudonymizer(key), 64)
    cdrs = [canonical_decode(call_at(start, cdr_id=cdr_id, caller=caller)) for cdr_id, caller, start in calls]
    return encode(build_rows(cdrs, parties), [key.ref])


def sample_store(tmp_path: Path) -> LocalStorage:
    storage = LocalStorage(tmp_path)
    day = "2026-11-01T10:00:00+00:00"
    storage.publish(
        "cdr/call_date=2026-11-01/t+0+0.parquet",
        parquet_file(KEYS.keys[0], [("a", "0475000111", day), ("b", "0475999888", day)]),
    )
    storage.publish(
        "cdr/call_date=2026-11-01/t+1+0.parquet", parquet_file(KEYS.keys[1], [("c", "tel:+32475000111", day)])
    )
    storage.publish(
        "cdr/call_date=2026-11-01/t+2+0.parquet", parquet_file(KEYS.keys[1], [("d", "0475999888", day)])
    )
    return storage


def rights_processor(
    storage: LocalStorage, view: SubjectLedger, written: list[LedgerEntry], now: datetime
) -> RightsProcessor:
    """A rights processor over ``storage`` whose ledger writes go to ``view`` and ``written``."""

    def write(entry: LedgerEntry) -> None:
        written.append(entry)
        view.add(entry)

    return RightsProcessor(
        storage,
        lambda: KEYS,
        CLASSIFIER,
        ledger=Ledger(view, write),
        passes=Passes(0, lambda _: None),
        clock=lambda: now,
    )


RECEIPT_SCHEMAS = {
    kind: json.loads((REPO / "schemas" / f"{kind}-receipt.schema.json").read_text())
    for kind in ("erasure", "subject")
}


def valid_receipt(receipt: AnyReceipt) -> dict[str, Any]:
    """The receipt as published, checked against its topic's schema; its summary comes first."""
    document: dict[str, Any] = json.loads(encode_receipt(receipt))
    schema = RECEIPT_SCHEMAS["subject" if isinstance(receipt, SubjectReceipt) else "erasure"]
    jsonschema.validate(document, schema, format_checker=jsonschema.FormatChecker())
    published = json.loads(receipt_message(receipt, b"the request", KEYS.active))  # as the topic has it
    jsonschema.validate(published, schema, format_checker=jsonschema.FormatChecker())
    assert next(iter(published)) == "summary" and {"answers", "signing_key_id", "mac"} <= set(published)
    assert next(iter(document)) == "summary" and "\n" not in document["summary"] and document["summary"]
    return document


def erasure_processor(storage: LocalStorage, written: list[LedgerEntry], now: datetime) -> ErasureProcessor:
    """An erasure processor over ``storage`` under :data:`KEYS`; its ledger writes go to ``written``."""
    return ErasureProcessor(
        storage,
        lambda: KEYS,
        CLASSIFIER,
        ledger=Ledger(SubjectLedger(), written.append),
        passes=Passes(0, lambda _: None),
        residual_copies=list,
        clock=lambda: now,
    )
