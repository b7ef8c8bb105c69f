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
import pytest
from click.testing import CliRunner, Result

from pipeline.cli import cli
from pipeline.formats.selection import FormatSelector, builtin_decoders
from pipeline.ingest.ingestor import Ingestor
from pipeline.ingest.records import RawRecord
from pipeline.ingest.translation import KeyTranslator
from pipeline.keys.fingerprint import KeyRef
from pipeline.keys.keyring import Key, Keyring, load_keyring, rotate_keyring
from pipeline.keys.keyring_file import KeyringFile
from pipeline.keys.pseudonym import PartyPseudonymizer, Pseudonymizer
from pipeline.lifecycle.erasure import ErasureProcessor
from pipeline.lifecycle.ledger import SubjectLedger
from pipeline.lifecycle.operations.reapply import reapply_ledger
from pipeline.lifecycle.operations.restriction import (
    Ledger,
    Passes,
    Refusal,
    put_back_in_use,
    take_out_of_use,
)
from pipeline.lifecycle.operations.store_keys import KEY_REGISTER_DIR, registered_keys
from pipeline.lifecycle.requests.audit import read_audit
from pipeline.lifecycle.requests.receipts import FileNotSearched, Receipt, encode_receipt
from pipeline.lifecycle.requests.register import load_request
from pipeline.lifecycle.subject import subject_from_number
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.sink.publisher import BatchPublisher, RowFilter
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

    def ingest(self, *callers: str, row_filter: RowFilter | None = None) -> str:
        """Publish one batch of calls through the ingest path under the keyring's active key
        (through ``row_filter``: an empty ledger by default)."""
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
        BatchPublisher(self.storage, row_filter=row_filter or SubjectLedger().route).publish(flush)
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


OTHER = "+32475222333"
"""A second subject, restricted and lifted while the first stays restricted."""


def _hold_ledger() -> tuple[SubjectLedger, Ledger]:
    view = SubjectLedger()
    return view, Ledger(view, view.add)


def _restrict(site: _Site, ledger: Ledger, request_id: str, number: str) -> None:
    take_out_of_use(
        site.storage,
        ledger,
        request_id=request_id,
        subject=subject_from_number(number, load_keyring(site.keyring), CLASSIFIER),
        requested_at=datetime(2026, 11, 2, tzinfo=UTC),
        existing="quarantine",
        action="restrict",
        passes=Passes(0, lambda _: None),
    )


def _restricted_callers(site: _Site, key: Key, number: str) -> dict[str, int]:
    """How many rows of ``number`` under ``key`` each area holds."""
    pseudonyms = subject_from_number(number, Keyring(key.key_id, (key,)), CLASSIFIER).pseudonyms
    counts = {}
    for area in ("cdr", "restricted"):
        callers = [
            caller
            for path in sorted((site.root / area).glob("*/*.parquet"))
            for caller in pq.read_table(path, columns=["caller_pseudonym"]).column(0).to_pylist()
        ]
        counts[area] = sum(caller in pseudonyms for caller in callers)
    return counts


def test_lifting_another_subject_keeps_rows_a_hold_took_under_a_second_secret_of_its_key_id(
    tmp_path: Path,
) -> None:
    # The subject is restricted under k1, k2 and the first k3. A keyring restored and rotated by an
    # older version writes the subject's next call under a second k3: ingest quarantines it through
    # the k1 translation. The store has no translation, and the hold's k3 pseudonym is not this
    # row's: lifting somebody else's restriction must not take the row for one nobody holds.
    site = _Site(tmp_path)
    backup, _, _ = _write_k1_to_k3(site)
    view, ledger = _hold_ledger()
    _restrict(site, ledger, "res-subject", SUBJECT)
    _restrict(site, ledger, "res-other", OTHER)
    site.restore(backup)
    second_k3 = rotate_keyring(site.keyring).active  # as the older version did: the keyring alone
    site.ingest(SUBJECT, OTHER, row_filter=view.route)
    assert _restricted_callers(site, second_k3, SUBJECT) == {"cdr": 0, "restricted": 1}
    lifted = put_back_in_use(
        site.storage,
        ledger,
        subject=subject_from_number(OTHER, load_keyring(site.keyring), CLASSIFIER),
        requested_at=datetime(2026, 11, 3, tzinfo=UTC),
        ending="restrict",
        passes=Passes(0, lambda _: None),
    )
    assert not isinstance(lifted, Refusal) and lifted.ended == ["res-other"]
    assert _restricted_callers(site, second_k3, SUBJECT) == {"cdr": 0, "restricted": 1}
    # the other subject's call under the second k3 stays too (the subject's hold cannot rule it
    # out), and the receipt names the hold that keeps it
    assert lifted.still_in_force == ["res-subject"]
    assert _restricted_callers(site, second_k3, OTHER) == {"cdr": 0, "restricted": 1}


def test_an_export_by_number_names_the_files_under_a_key_it_could_not_search(tmp_path: Path) -> None:
    # After a keyring restored and rotated by an older version, the rows under the first k3 cannot
    # be found by number: the export says so, by file, keeps the access request open and exits 1.
    site = _Site(tmp_path)
    backup, first_k3, under_k3 = _write_k1_to_k3(site)
    site.restore(backup)
    rotate_keyring(site.keyring)  # a second k3, as an older version made it
    out = tmp_path / "subject.jsonl"
    args = ["export", "--number", SUBJECT, "--out", str(out), "--request-id", "acc-1"]
    result = CliRunner().invoke(cli, args, env=site.env)
    assert result.exit_code == 1, result.output
    assert len(out.read_text().splitlines()) == 2  # the rows under k1 and k2 are exported
    assert "INCOMPLETE: 1 data files hold rows under keys this keyring could not search" in result.output
    assert f"{under_k3} under key k3 (fingerprint {first_k3.fingerprint})" in result.output
    assert "Traceback" not in result.output
    record = load_request(site.storage, "acc-1")
    assert record is not None and record.status != "closed"  # the access request is not answered
    (note,) = [
        json.loads(path.read_text()) for path in (site.root / "_cdrpipe/requests/acc-1/notes").iterdir()
    ]
    assert "exported 2 rows" in note["text"] and f"{under_k3} under key k3" in note["text"]
    assert first_k3.fingerprint not in note["text"]  # the register holds nothing shaped like a pseudonym


def test_an_export_whose_keys_cover_the_store_closes_its_request(tmp_path: Path) -> None:
    site = _Site(tmp_path)
    _write_k1_to_k3(site)
    out = tmp_path / "subject.jsonl"
    args = ["export", "--number", SUBJECT, "--out", str(out), "--request-id", "acc-2"]
    result = CliRunner().invoke(cli, args, env=site.env)
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 3 and "INCOMPLETE" not in result.output
    record = load_request(site.storage, "acc-2")
    assert record is not None and record.status == "closed"


@pytest.mark.parametrize("store", ["missing", "a file"])
def test_keys_rotate_refuses_in_one_line_when_it_cannot_ask_the_store(tmp_path: Path, store: str) -> None:
    # Run from the wrong directory (CDRPIPE_STORE defaults to ./data/store) or with the store not
    # mounted, a restored keyring would rotate to a second k3: the store was never asked.
    site = _Site(tmp_path)
    backup, _, _ = _write_k1_to_k3(site)
    site.restore(backup)
    elsewhere = tmp_path / "not-the-store"
    if store == "a file":
        elsewhere.write_text("")
    result = CliRunner().invoke(cli, ["keys", "rotate"], env={**site.env, "CDRPIPE_STORE": str(elsewhere)})
    assert result.exit_code == 2, result.output
    assert f"store {elsewhere} " in result.output and "key ids" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert site.keyring.read_bytes() == backup  # nothing rotated
    assert site.keys("rotate").exit_code == 0 and load_keyring(site.keyring).active_id == "k4"


def test_keys_rotate_numbers_a_key_id_of_other_digits_without_a_traceback(tmp_path: Path) -> None:
    # "k²" is alphanumeric, so a keyring may carry it; its "digit" is no number int() reads
    site = _Site(tmp_path)
    site.keys("init")
    document = json.loads(site.keyring.read_text())
    document["keys"][0]["id"] = document["active"] = "k\u00b2"
    site.keyring.write_text(json.dumps(document))
    rotated = site.keys("rotate")
    assert load_keyring(site.keyring).active_id == "k2", rotated.output


def test_two_rotations_at_once_never_hand_one_key_id_two_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two operators rotate their copies of the keyring against one store at the same moment: both
    # asked the store before either recorded its new key. Only one may take k4.
    site = _Site(tmp_path)
    site.keys("init")
    site.keys("rotate")
    copy = tmp_path / "secrets" / "copy.json"
    copy.write_bytes(site.keyring.read_bytes())
    copy.chmod(0o600)
    import pipeline.cli.keys as keys_command

    asked = keys_command.known_keys
    other: list[Result] = []
    calls = []

    def asked_while_the_other_rotates(storage: LocalStorage) -> frozenset[KeyRef]:
        known = asked(storage)
        calls.append(storage)
        if len(calls) == 1:  # the other operator's rotation runs between this one's question and answer
            other.append(CliRunner().invoke(cli, ["keys", "rotate", "--keyring", str(copy)], env=site.env))
        return known

    monkeypatch.setattr(keys_command, "known_keys", asked_while_the_other_rotates)
    mine = CliRunner().invoke(cli, ["keys", "rotate"], env=site.env)
    assert other[0].exit_code == 0 and load_keyring(copy).active_id == "k3"
    assert mine.exit_code == 2 and "k3" in mine.output and "Traceback" not in mine.output
    assert [key.key_id for key in load_keyring(site.keyring).keys] == ["k1", "k2"]  # left as it was
    monkeypatch.undo()
    assert site.keys("rotate").exit_code == 0 and load_keyring(site.keyring).active_id == "k4"
    # k3 is the copy's; the key refused for k3 is in the register too (never used, never reused)
    k3s = {ref.fingerprint for ref in registered_keys(site.storage) if ref.key_id == "k3"}
    assert load_keyring(copy).active.fingerprint in k3s and len(k3s) <= 2


def test_reapplying_a_hold_fails_on_dataset_files_under_a_key_it_has_no_pseudonym_under(
    tmp_path: Path,
) -> None:
    # A restriction taken under a second k3 cannot find the rows under the first one, so they stay
    # in cdr/. Its own receipt failed by name; re-applying the ledger after a restore must not pass.
    site = _Site(tmp_path)
    backup, first_k3, under_k3 = _write_k1_to_k3(site)
    site.restore(backup)
    rotate_keyring(site.keyring)  # a second k3, as an older version made it
    view, ledger = _hold_ledger()
    _restrict(site, ledger, "res-subject", SUBJECT)
    report = reapply_ledger(site.storage, view.entries())
    assert _restricted_callers(site, first_k3, SUBJECT) == {"cdr": 1, "restricted": 0}
    assert not report.verification_passed
    assert [(item.path, item.key) for item in report.files_not_searched] == [(under_k3, first_k3.ref)]
    (audited,) = [entry for entry in read_audit(site.storage) if entry["kind"] == "ledger-reapply"]
    assert audited["files_not_searched"] == [{"path": under_k3, "key_id": "k3"}]
