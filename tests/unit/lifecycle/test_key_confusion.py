"""A keyring restored from an old backup and rotated: no key id can pass for another secret.

End to end in process: the ``cdrpipe keys`` commands on a real keyring file, rows written by the
ingest path and the publisher into a local store, and the erasure processor reading the keyring
file as the worker does.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
from click.testing import CliRunner, Result

from pipeline.cli import cli
from pipeline.formats.selection import FormatSelector, builtin_decoders
from pipeline.ingest.ingestor import Ingestor
from pipeline.ingest.records import RawRecord
from pipeline.ingest.translation import KeyTranslator
from pipeline.keys.keyring import Key, Keyring, load_keyring, rotate_keyring
from pipeline.keys.keyring_file import KeyringFile
from pipeline.keys.pseudonym import PartyPseudonymizer, Pseudonymizer
from pipeline.lifecycle.erasure import ErasureProcessor
from pipeline.lifecycle.ledger import SubjectLedger
from pipeline.lifecycle.operations.restriction import Ledger, Passes, take_out_of_use
from pipeline.lifecycle.operations.store_keys import KEY_REGISTER_DIR, registered_keys
from pipeline.lifecycle.requests.receipts import FileNotSearched, Receipt, encode_receipt
from pipeline.lifecycle.subject import subject_from_number
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.sink.publisher import BatchPublisher
from pipeline.store.parquet import KEYS_METADATA_KEY
from pipeline.store.storage import LocalStorage
from tests.support.helpers import REPO
from tests.support.samples import call_at, decode_context
from tests.support.signed import signed

CLASSIFIER = NumberClassifier("BE", (2, 5))
SUBJECT = "+32475000111"
DAY = "2026-11-01T10:00:00+00:00"
RECEIPT_SCHEMA = json.loads((REPO / "schemas/erasure-receipt.schema.json").read_text())


class _Site:
    """A keyring file, a store, the ``cdrpipe keys`` commands on them, the ingest path and an erasure."""

    def __init__(self, tmp_path: Path) -> None:
        self.keyring = tmp_path / "secrets" / "keyring.json"
        self.root = tmp_path / "store"
        self.root.mkdir()
        self.storage = LocalStorage(self.root)
        self.env = {"CDRPIPE_KEYRING": str(self.keyring), "CDRPIPE_STORE": str(self.root)}
        self.partition = 0

    def keys(self, *args: str) -> Result:
        result = CliRunner().invoke(cli, ["keys", *args], env=self.env)
        assert result.exit_code == 0, result.output
        return result

    def ingest(self, *callers: str) -> str:
        """Publish one batch of calls through the ingest path under the keyring's active key."""
        keyring = load_keyring(self.keyring)
        parties = PartyPseudonymizer(CLASSIFIER, Pseudonymizer(keyring.active), 64)
        translator = KeyTranslator.for_keyring(parties, keyring, CLASSIFIER, 64)
        formats = FormatSelector(builtin_decoders({}), {"cdr.raw": "canonical-json"}, decode_context())
        ingestor = Ingestor(formats, parties, 10_000, 60.0, translator=translator)
        self.partition += 1
        for offset, caller in enumerate(callers):
            cdr_id = f"p{self.partition}-{offset}"
            record = RawRecord("cdr.raw", self.partition, offset, call_at(DAY, cdr_id=cdr_id, caller=caller))
            assert ingestor.add(record) is None
        flush = ingestor.take(("cdr.raw", self.partition))
        BatchPublisher(self.storage, row_filter=SubjectLedger().route).publish(flush)
        (written,) = [pending.path for pending in flush.files]
        return written

    def erase(self, request_id: str) -> Receipt:
        processor = ErasureProcessor(
            self.storage,
            KeyringFile(self.keyring).current,
            CLASSIFIER,
            ledger=Ledger(SubjectLedger(), lambda entry: None),
            passes=Passes(0, lambda _: None),
            residual_copies=list,
            clock=lambda: datetime(2026, 11, 3, tzinfo=UTC),
        )
        document = {"request_id": request_id, "subject": SUBJECT, "subject_kind": "number",
                    "mode": "delete", "requested_at": "2026-11-02T00:00:00+00:00"}  # fmt: skip
        return processor.handle(signed(document, load_keyring(self.keyring)))  # as the CLI holds it

    def restore(self, backup: bytes) -> None:
        self.keyring.write_bytes(backup)
        self.keyring.chmod(0o600)

    def subject_rows_under(self, key: Key, path: str) -> int:
        pseudonyms = subject_from_number(SUBJECT, Keyring(key.key_id, (key,)), CLASSIFIER).pseudonyms
        callers = pq.read_table(self.root / path, columns=["caller_pseudonym"]).column("caller_pseudonym")
        return sum(caller in pseudonyms for caller in callers.to_pylist())


def _validated(receipt: Receipt) -> dict[str, object]:
    import jsonschema

    document: dict[str, object] = json.loads(encode_receipt(receipt))
    jsonschema.validate(document, RECEIPT_SCHEMA, format_checker=jsonschema.FormatChecker())
    return document


def _write_k1_to_k3(site: _Site) -> tuple[bytes, Key, str]:
    """Rows under k1, k2 and k3; the keyring backup taken before k3, k3 and its file."""
    site.keys("init")
    site.ingest(SUBJECT, "0475999888")
    site.keys("rotate")
    site.ingest("0475 00 01 11")
    backup = site.keyring.read_bytes()
    site.keys("rotate")
    first_k3 = load_keyring(site.keyring).active
    assert first_k3.key_id == "k3"
    under_k3 = site.ingest("tel:+32-475-000111", "0475999888")
    return backup, first_k3, under_k3


def test_a_restored_keyring_rotates_to_a_new_id_and_the_erasure_fails_by_name(tmp_path: Path) -> None:
    site = _Site(tmp_path)
    backup, first_k3, under_k3 = _write_k1_to_k3(site)
    site.restore(backup)  # the keyring of before k3: k1 and k2 only
    rotated = site.keys("rotate")
    keyring = load_keyring(site.keyring)
    # the store knows k3 (its footers, its key register): the new key is k4, never a second k3
    assert [key.key_id for key in keyring.keys] == ["k1", "k2", "k4"] and "k4 (fingerprint" in rotated.output
    assert keyring.active.fingerprint != first_k3.fingerprint
    assert first_k3.ref in registered_keys(site.storage)
    receipt = site.erase("after-restore")
    document = _validated(receipt)
    assert receipt.status == "completed" and not receipt.passed
    assert receipt.rows_removed == 2  # the rows under k1 and k2
    assert site.subject_rows_under(first_k3, under_k3) == 1  # the row under the first k3 is still there
    assert receipt.verification is not None
    assert receipt.verification.files_not_searched == [
        FileNotSearched(path=under_k3, key_id="k3", fingerprint=first_k3.fingerprint)
    ]
    assert receipt.verification.key_ids_not_searched == ["k3"]
    assert f"{under_k3} under key k3 (fingerprint {first_k3.fingerprint})" in receipt.verification.checked
    assert "FAILED" in receipt.summary or "FAILED" in receipt.verification.checked
    assert [(key["key_id"], key["fingerprint"]) for key in document["keys"]] == [  # type: ignore[index,union-attr]
        (key.key_id, key.fingerprint) for key in keyring.keys
    ]


def test_a_second_k3_from_an_older_rotation_fails_verification_by_name(tmp_path: Path) -> None:
    # An older version rotated a restored keyring without asking the store: the new key was called
    # k3 again, with another secret, and an erasure searched "k3", found nothing and passed.
    site = _Site(tmp_path)
    backup, first_k3, under_k3 = _write_k1_to_k3(site)
    site.restore(backup)
    second_k3 = rotate_keyring(site.keyring).active  # as the older version did: the keyring alone
    assert second_k3.key_id == "k3" and second_k3.fingerprint != first_k3.fingerprint
    under_second = site.ingest("0475000111", "0475999888")
    receipt = site.erase("confused")
    _validated(receipt)
    assert receipt.status == "completed" and not receipt.passed
    assert receipt.key_ids == ["k1", "k2", "k3"]  # "k3" was searched, but not the k3 of under_k3
    assert site.subject_rows_under(first_k3, under_k3) == 1
    assert site.subject_rows_under(second_k3, under_second) == 0  # the second k3's rows were erased
    assert receipt.verification is not None
    assert receipt.verification.files_not_searched == [
        FileNotSearched(path=under_k3, key_id="k3", fingerprint=first_k3.fingerprint)
    ]
    # and `keys rotate` now says which key of the keyring is not the store's, then takes k4
    warned = site.keys("rotate")
    assert f"the store knows a key k3 (fingerprint {first_k3.fingerprint}) that is not" in warned.output
    assert load_keyring(site.keyring).active_id == "k4"


def test_keys_init_on_a_store_with_rows_of_a_lost_keyring_takes_the_next_id(tmp_path: Path) -> None:
    site = _Site(tmp_path)
    site.keys("init")
    site.ingest(SUBJECT)
    site.keyring.unlink()  # the keyring is lost; the store still holds rows under its k1
    site.keys("init")
    assert load_keyring(site.keyring).active_id == "k2"
    assert len(site.storage.list(KEY_REGISTER_DIR)) == 2


def test_a_file_written_before_fingerprints_is_searched_by_id_and_the_receipt_says_so(tmp_path: Path) -> None:
    site = _Site(tmp_path)
    site.keys("init")
    path = site.ingest(SUBJECT, "0475999888")
    table = pq.read_table(site.root / path)
    older = {key: value for key, value in (table.schema.metadata or {}).items() if key != KEYS_METADATA_KEY}
    pq.write_table(table.replace_schema_metadata(older), site.root / path)  # as an older version wrote it
    receipt = site.erase("legacy")
    _validated(receipt)
    assert receipt.passed and receipt.rows_removed == 1 and receipt.verification is not None
    assert receipt.verification.files_searched_by_key_id_only == 1
    assert receipt.verification.key_ids_searched_by_id_only == ["k1"]
    assert "could not be checked to be the key they were written with" in receipt.verification.checked


def test_a_restriction_fails_by_name_on_rows_under_another_secret_with_a_searched_id(tmp_path: Path) -> None:
    site = _Site(tmp_path)
    backup, first_k3, under_k3 = _write_k1_to_k3(site)
    site.restore(backup)
    rotate_keyring(site.keyring)  # a second k3, as an older version made it
    subject = subject_from_number(SUBJECT, load_keyring(site.keyring), CLASSIFIER)
    outcome = take_out_of_use(
        site.storage,
        Ledger(SubjectLedger(), lambda entry: None),
        request_id="restrict-1",
        subject=subject,
        requested_at=datetime(2026, 11, 2, tzinfo=UTC),
        existing="quarantine",
        action="restrict",
        passes=Passes(0, lambda _: None),
    )
    assert outcome.rows_moved == 2 and outcome.verification is not None
    assert not outcome.verification.passed
    assert outcome.verification.files_not_searched == [
        FileNotSearched(path=under_k3, key_id="k3", fingerprint=first_k3.fingerprint)
    ]
    assert site.subject_rows_under(first_k3, under_k3) == 1
