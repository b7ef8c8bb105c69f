"""Every request kind, one shape: typed receipts that match their schemas, always come, close the register.

The erasure and the rights processor share their paperwork (``pipeline.lifecycle.desk``): these
tests send real requests of every kind through both and look at what comes out of every path
(completed, rejected, failed, re-delivered, a reused id).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from pipeline.lifecycle.erasure import ErasureProcessor
from pipeline.lifecycle.ledger import LedgerEntry, SubjectLedger
from pipeline.lifecycle.operations.restriction import Ledger, Passes
from pipeline.lifecycle.requests.audit import read_audit
from pipeline.lifecycle.requests.ids import new_request_id
from pipeline.lifecycle.requests.receipts import (
    RECEIPT_DIR,
    AnyReceipt,
    Receipt,
    ResidualCopy,
    SubjectReceipt,
    receipt_path,
)
from pipeline.lifecycle.requests.register import REGISTER_DIR, load_request
from pipeline.lifecycle.rights import RightsProcessor
from pipeline.lifecycle.subject import subject_from_number
from pipeline.store.errors import StorageError
from pipeline.store.fence import FencedStorage, OwnershipLostError
from pipeline.store.storage import Storage
from tests.support.lifecycle_store import CLASSIFIER, KEYS, SUBJECT, parquet_file, valid_receipt
from tests.support.memory_storage import MemoryStorage
from tests.support.signed import signed

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
DAY = "2026-11-01T10:00:00+00:00"
OTHER = "+32475999888"
RESIDUAL = [
    ResidualCopy(topic="cdr.raw", holds="raw CDRs", retention_days=7.0, retention_source="broker"),
    ResidualCopy(topic="cdr.dlq", holds="rejected raw CDRs", retention_days=7.0, retention_source="broker"),
]


class _Worker:
    """Both processors on one store, with one ledger, the same passes and the same clock."""

    def __init__(self, storage: Storage | None = None) -> None:
        self.storage = storage or _store()
        self.view = SubjectLedger()
        self.written: list[LedgerEntry] = []

        def write(entry: LedgerEntry) -> None:
            self.written.append(entry)
            self.view.add(entry)

        ledger, passes = Ledger(self.view, write), Passes(0, lambda _: None)
        self.erasures = ErasureProcessor(
            self.storage,
            lambda: KEYS,
            CLASSIFIER,
            ledger=ledger,
            passes=passes,
            residual_copies=lambda: RESIDUAL,
            clock=lambda: NOW,
        )
        self.rights = RightsProcessor(
            self.storage, lambda: KEYS, CLASSIFIER, ledger=ledger, passes=passes, clock=lambda: NOW
        )

    def erase(self, request_id: str, subject: str = SUBJECT, **fields: object) -> Receipt:
        document = {"request_id": request_id, "subject": subject, "requested_at": NOW.isoformat(), **fields}
        return self.erasures.handle(signed(document, KEYS), request_id.encode())

    def ask(self, request_id: str, kind: str, **fields: object) -> SubjectReceipt:
        document = {"request_id": request_id, "kind": kind, "requested_at": NOW.isoformat(), **fields}
        if kind != "rectification":
            document.setdefault("subject", SUBJECT)
        return self.rights.handle(signed(document, KEYS), request_id.encode())


def _store(storage: MemoryStorage | None = None) -> MemoryStorage:
    """Three calls (a and c of the subject, b of another person) in two files under two keys."""
    storage = storage if storage is not None else MemoryStorage()
    storage.publish(
        "cdr/call_date=2026-11-01/t+0+0.parquet",
        parquet_file(KEYS.keys[0], [("a", "0475000111", DAY), ("b", "0475999888", DAY)]),
    )
    storage.publish(
        "cdr/call_date=2026-11-01/t+1+0.parquet", parquet_file(KEYS.keys[1], [("c", "0475000111", DAY)])
    )
    return storage


def _closed(storage: Storage, request_id: str) -> bool:
    record = load_request(storage, request_id)
    return record is not None and record.status != "open"


def test_receipts_of_every_kind_and_status_match_their_schemas_and_agree_on_names() -> None:
    worker = _Worker()
    completed: list[AnyReceipt] = [
        worker.ask("res-1", "restriction"),
        worker.ask("lift-1", "lift"),
        worker.ask("obj-1", "objection", existing="quarantine"),
        worker.ask("wd-1", "withdrawal"),
        worker.ask("rect-1", "rectification", cdr_id="a", party="callee"),
        worker.ask("obj-2", "objection", existing="erase"),
        worker.erase("era-1", OTHER),
    ]
    rejected: list[AnyReceipt] = [
        worker.ask("lift-2", "lift"),  # nothing in force: kept, and it closes the entry as rejected
        worker.ask("rect-2", "rectification", cdr_id="1732530102.42#3", party="callee"),
        worker.ask("r-bad", "restriction", subject="112"),
        worker.rights.handle(signed({"request_id": "r-json"}, KEYS)),
        worker.rights.handle(b"[]"),  # unsigned: rejected unread
        worker.ask("era-1", "restriction"),  # an erasure's id
        worker.erase("res-1"),  # a restriction's id
        worker.erase("e-bad", "+3247"),
        worker.erasures.handle(b"{", b"e-json"),  # unsigned: rejected unread, keyed as sent
    ]
    for receipt in completed:
        document = valid_receipt(receipt)
        assert receipt.status == "completed" and receipt.passed, document
        assert document["verification"]["checked"] and document["verification"]["files_checked"] >= 0
    for receipt in rejected:
        document = valid_receipt(receipt)
        assert receipt.status == "rejected" and document["summary"] == f"rejected: {receipt.reason}"
    erased = valid_receipt(completed[-1])
    assert erased["summary"] == (
        "erased 1 rows in 1 files; verification passed; raw copies remain in cdr.raw and cdr.dlq "
        "for up to 7 days"
    )
    restricted = valid_receipt(completed[0])
    assert restricted["summary"].startswith("restricted: later records are quarantined; 2 rows moved")
    shared = {"summary", "request_id", "status", "finished_at", "verification", "pipeline_version"}
    assert shared <= set(erased) and shared <= set(restricted)
    assert set(erased["verification"]) == set(restricted["verification"])
    assert rejected[2].reason is not None and "only unique within its tenant" in rejected[2].reason
    assert (rejected[3].request_id, rejected[8].request_id) == ("r-json", "e-json")  # keyed as sent
    for request_id in ("res-1", "lift-1", "obj-1", "wd-1", "rect-1", "obj-2", "era-1", "lift-2", "rect-2"):
        assert _closed(worker.storage, request_id), request_id


class _BreakingStorage(MemoryStorage):
    """A store whose data writes under ``prefix`` fail while ``broken`` (a full disk, say)."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix, self.broken = prefix, False

    def publish(self, relative_path: str, data: bytes) -> None:
        if self.broken and relative_path.startswith(self.prefix):
            raise StorageError(f"publishing {relative_path}: disk full (caller 0475000111)")
        super().publish(relative_path, data)

    def delete(self, relative_path: str) -> None:
        if self.broken and relative_path.startswith(self.prefix):
            raise StorageError(f"deleting {relative_path}: read-only file system")
        super().delete(relative_path)


@pytest.mark.parametrize("kind", ["erasure", "restriction", "objection", "rectification"])
def test_a_request_that_breaks_part_way_gets_a_failed_receipt_and_a_re_run_completes(kind: str) -> None:
    storage = _BreakingStorage("cdr/" if kind in ("erasure", "rectification") else "restricted/")
    _store(storage).broken = True
    worker = _Worker(storage)

    def send() -> AnyReceipt:
        if kind == "erasure":
            return worker.erase("case-1")
        if kind == "rectification":
            return worker.ask("case-1", kind, cdr_id="a", party="caller")
        return worker.ask("case-1", kind, **({"existing": "quarantine"} if kind == "objection" else {}))

    failed = send()
    document = valid_receipt(failed)
    assert failed.status == "failed" and failed.work_done is not None
    assert failed.reason is not None and failed.reason.startswith("StorageError: ")
    assert "0475000111" not in json.dumps(document)  # the exception's text is scrubbed
    assert (
        document["summary"].startswith("FAILED part-way") and "send the request again" in document["summary"]
    )
    if kind != "rectification":
        assert failed.work_done.ledger_entries, "the ledger entry was written before the store failed"
    record = load_request(storage, "case-1")
    assert record is not None and record.status == "open" and "FAILED" in record.history[-1]["text"]
    assert storage.read(receipt_path("case-1")) is None, "a failed receipt is not kept: a re-run redoes it"
    assert [entry["status"] for entry in read_audit(storage)] == ["failed"]
    storage.broken = False  # the operator frees the disk; the request is delivered again
    done = send()
    assert done.status == "completed" and done.passed and _closed(storage, "case-1"), valid_receipt(done)


class _TakenOver(MemoryStorage):
    """Another worker claims the lifecycle once this one has read a data file, written one, or is
    about to keep its receipt."""

    def __init__(self, when: str) -> None:
        super().__init__()
        self.when = when
        self.moved = False

    def _touch(self, relative_path: str, writes: bool) -> None:
        data = relative_path.startswith(("cdr/", "restricted/"))
        if data and self.when == ("after-its-first-write" if writes else "reading"):
            self.moved = True

    def open_input(self, relative_path: str) -> pa.NativeFile:
        self._touch(relative_path, writes=False)
        return super().open_input(relative_path)

    def read(self, relative_path: str) -> bytes | None:
        self._touch(relative_path, writes=False)
        return super().read(relative_path)

    def publish(self, relative_path: str, data: bytes) -> None:
        super().publish(relative_path, data)
        self._touch(relative_path, writes=True)

    def guard(self) -> None:
        if self.moved:
            raise OwnershipLostError("lifecycle epoch 2 was claimed by another worker")


class _ReceiptFenced(FencedStorage):
    """The fence of a :class:`_TakenOver` store, which also sees where each write goes."""

    def __init__(self, storage: _TakenOver) -> None:
        super().__init__(storage, storage.guard)
        self.taken_over = storage

    def create_exclusive(self, relative_path: str, data: bytes) -> bool:
        if self.taken_over.when == "keeping-its-receipt" and relative_path.startswith(RECEIPT_DIR):
            self.taken_over.moved = True
        return super().create_exclusive(relative_path, data)


@pytest.mark.parametrize("when", ["reading", "after-its-first-write", "keeping-its-receipt"])
@pytest.mark.parametrize("kind", ["erasure", "restriction", "objection", "rectification"])
def test_a_request_whose_owner_lost_the_lifecycle_part_way_writes_nothing_more_and_gets_no_receipt(
    kind: str, when: str
) -> None:
    storage = _TakenOver(when)
    _store(storage)
    before = {path: storage.read(path) for path in storage.list("cdr")}
    storage.moved = False
    worker = _Worker(_ReceiptFenced(storage))
    with pytest.raises(OwnershipLostError):
        if kind == "erasure":
            worker.erase("case-1")
        elif kind == "rectification":
            worker.ask("case-1", kind, cdr_id="a", party="caller")
        else:
            worker.ask("case-1", kind, **({"existing": "quarantine"} if kind == "objection" else {}))
    if when == "reading":
        assert {path: storage.read(path) for path in storage.list("cdr")} == before
        assert storage.list("restricted") == []
    assert storage.read(receipt_path("case-1")) is None and read_audit(storage) == []
    record = load_request(storage, "case-1")  # registered before the work: the new owner answers it
    assert record is not None and record.status == "open" and len(record.history) == 1


def test_a_re_delivered_request_gets_its_receipt_again_and_closes_the_entry_left_open() -> None:
    worker = _Worker()
    for send in (lambda: worker.erase("era-9"), lambda: worker.ask("res-9", "restriction")):
        first = send()
        request_id = first.request_id or ""
        assert _closed(worker.storage, request_id)
        # What a worker killed between the receipt and the register's answer leaves behind:
        worker.storage.delete(f"{REGISTER_DIR}/{request_id}/closed.json")
        assert not _closed(worker.storage, request_id)
        written = len(worker.written)
        again = send()
        assert again == first and len(worker.written) == written, "nothing is done twice"
        assert _closed(worker.storage, request_id)


def test_a_register_that_cannot_be_answered_never_stops_the_receipt() -> None:
    class _NoRegister(MemoryStorage):
        def create_exclusive(self, relative_path: str, data: bytes) -> bool:
            if relative_path.endswith("closed.json"):
                raise StorageError("creating closed.json: permission denied")
            return super().create_exclusive(relative_path, data)

    worker = _Worker(_store(_NoRegister()))
    receipt = worker.erase("era-3")
    assert receipt.passed and worker.storage.read(receipt_path("era-3")) is not None
    record = load_request(worker.storage, "era-3")
    assert record is not None and record.status == "open"
    assert "could not be answered" in record.history[-1]["text"]


def test_a_store_that_cannot_be_read_still_gets_every_request_a_failed_receipt() -> None:
    class _Unreadable(MemoryStorage):
        def read(self, relative_path: str) -> bytes | None:
            if relative_path.startswith("_cdrpipe/receipts/"):
                raise StorageError(f"reading {relative_path}: input/output error")
            return super().read(relative_path)

    worker = _Worker(_store(_Unreadable()))
    for receipt in (worker.erase("era-5"), worker.ask("res-5", "restriction")):
        valid_receipt(receipt)
        assert receipt.status == "failed" and (receipt.reason or "").startswith("StorageError: reading")
        assert receipt.work_done is not None and receipt.work_done.ledger_entries == []
    assert worker.written == [], "nothing was done"


def test_a_request_id_means_one_request() -> None:
    worker = _Worker()
    restricted = worker.ask("A-1", "restriction")
    assert restricted.passed
    reused: list[AnyReceipt] = [
        worker.ask("A-1", "restriction", subject=OTHER),  # another subject under A's id
        worker.ask("A-1", "lift"),  # another kind
        worker.ask("A-1", "objection", existing="erase"),
        worker.erase("A-1"),  # an erasure reusing a restriction's id
    ]
    obj = worker.ask("O-1", "objection", subject=OTHER, existing="quarantine")
    reused.append(worker.ask("O-1", "objection", subject=OTHER, existing="erase"))  # other content
    era = worker.erase("E-1", OTHER)
    reused += [worker.ask("E-1", "restriction", subject=OTHER), worker.erase("E-1", OTHER, mode="redact")]
    for receipt in reused:
        # on its own topic's schema: a subject request's rejection is a subject receipt
        valid_receipt(receipt)
        assert receipt.status == "rejected" and "already used" in (receipt.reason or ""), receipt
    assert isinstance(reused[-2], SubjectReceipt) and isinstance(reused[3], Receipt)
    assert [entry.request_id for entry in worker.written] == ["A-1", "O-1", "E-1"], "nothing else was done"
    assert worker.ask("A-1", "restriction") == restricted  # a re-delivery: its own receipt again
    assert worker.ask("O-1", "objection", subject=OTHER, existing="quarantine") == obj
    assert worker.erase("E-1", OTHER) == era
    for request_id in ("A-1", "O-1", "E-1"):  # the first request's entry is left as it was
        record = load_request(worker.storage, request_id)
        assert record is not None and record.status == "closed"
        assert not [event for event in record.history if event["event"] == "note"]


# --- receipts that always come: ids of every style through every kind ----------------------------


def _ids(count: int, seed: int) -> Iterator[str]:
    """Request ids in the styles DPOs and systems use: UUIDs, case numbers, carrier and PBX ids."""
    rng = random.Random(seed)
    styles: list[Callable[[], str]] = [
        new_request_id,
        lambda: str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        lambda: f"DPO-{rng.randrange(2020, 2031)}-{rng.randrange(10_000):04d}",
        lambda: (
            f"CR{rng.randrange(2020, 2031)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
            f"{rng.randrange(10_000):04d}"
        ),
        lambda: f"SBC-{rng.randrange(10**13, 10**14)}",
        lambda: f"CA{rng.getrandbits(64):016x}",
        lambda: f"INV-{rng.randrange(10**6):010d}",
        lambda: f"{rng.randrange(1_600_000_000, 1_800_000_000)}.{rng.randrange(1000)}#{rng.randrange(1, 9)}",
        lambda: f"call-{rng.randrange(10**9)}@pbx{rng.randrange(10)}.example",
    ]
    seen: set[str] = set()
    while len(seen) < count:
        candidate = rng.choice(styles)()
        if candidate not in seen:
            seen.add(candidate)
            yield candidate


def _through_every_kind(count: int, seed: int) -> None:
    """Ids through the kinds in turn, so every kind gets ids of every style; one empty store per kind.

    The id is checked once, at the door, by the same rule for every kind. The property is about
    ids: an empty store makes each request quick, and each one still goes the whole way (decoded,
    registered, carried out, verified, receipted, audited, its register entry closed).
    """
    kinds = ("erasure", "restriction", "lift", "objection", "withdrawal", "rectification")
    workers = {kind: _Worker(MemoryStorage()) for kind in kinds}
    for index, request_id in enumerate(_ids(count, seed)):
        kind = kinds[index % len(kinds)]
        worker = workers[kind]
        subject = f"+32475{index:06d}"  # a subject each, as a DPO's cases have
        receipt: AnyReceipt
        if kind == "erasure":
            receipt = worker.erase(request_id, subject)
        elif kind == "rectification":  # the id names the call too: the reason quotes it
            receipt = worker.ask(request_id, kind, cdr_id=request_id, party="caller")
        else:
            if kind in ("lift", "withdrawal"):  # something in force to end
                action = "restrict" if kind == "lift" else "suppress"
                pairs = list(subject_from_number(subject, KEYS, CLASSIFIER).pairs)
                worker.view.add(
                    LedgerEntry(request_id=f"hold-{index}", requested_at=NOW, action=action, subject=pairs)
                )
            fields = {"existing": "erase"} if kind == "objection" else {}
            receipt = worker.ask(request_id, kind, subject=subject, **fields)
        assert receipt.request_id == request_id, (kind, receipt)
        if kind == "rectification":  # a call that is not there: answered, and closed as rejected
            assert (receipt.status, receipt.reason) == ("rejected", f"no row of call {request_id}"), receipt
        else:
            assert receipt.status == "completed" and receipt.passed, receipt
        assert _closed(worker.storage, request_id), (kind, request_id)


def test_two_thousand_ids_of_every_style_are_receipted_and_closed_by_every_kind() -> None:
    _through_every_kind(2_000, seed=20)


@pytest.mark.slow
@pytest.mark.timeout(900)  # about a millisecond a request alone on two cores: under two minutes
def test_a_hundred_thousand_ids_of_every_style_are_receipted_and_closed_by_every_kind() -> None:
    _through_every_kind(100_000, seed=21)
