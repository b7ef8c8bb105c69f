"""The audit trail and the register are sealed hash chains: every kind of tampering is named."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.keys.keyring import Key, Keyring, load_keyring, rotate_keyring
from pipeline.lifecycle.requests import chain
from pipeline.lifecycle.requests.audit import AUDIT_CHAIN, append_audit, purge_audit, read_audit, verify_audit
from pipeline.lifecycle.requests.register import (
    REGISTER_CHAIN,
    close,
    load_register,
    purge_requests,
    register_received,
    verify_register,
)
from pipeline.store.storage import LocalStorage
from tests.support.memory_storage import MemoryStorage

NOW = datetime(2026, 11, 25, tzinfo=UTC)


def _trail(tmp_path: Path, count: int = 4) -> LocalStorage:
    storage = LocalStorage(tmp_path)
    for index in range(count):
        append_audit(storage, "erasure", {"request_id": f"r-{index}", "rows_removed": 3}, NOW)
    return storage


def _entry(storage: LocalStorage, seq: int) -> Path:
    return storage.root / AUDIT_CHAIN.path(seq)


def test_an_untouched_trail_verifies(tmp_path: Path, sealing_keyring: Keyring) -> None:
    storage = _trail(tmp_path)
    report = verify_audit(storage, sealing_keyring)
    assert report.intact and report.checked == 4 and report.last_seq == 4
    stored = json.loads(_entry(storage, 2).read_text())
    assert stored["seq"] == 2 and stored["key_id"] == "s1" and len(stored["prev"]) == 64


def test_a_rewritten_entry_is_named(tmp_path: Path, sealing_keyring: Keyring) -> None:
    storage = _trail(tmp_path)
    entry = json.loads(_entry(storage, 2).read_text())
    _entry(storage, 2).write_text(json.dumps({**entry, "rows_removed": 0}, sort_keys=True))
    report = verify_audit(storage, sealing_keyring)
    assert report.breaks[0].startswith("entry 2 ") and "rewritten" in report.breaks[0]


def test_a_deleted_entry_is_named(tmp_path: Path, sealing_keyring: Keyring) -> None:
    storage = _trail(tmp_path)
    _entry(storage, 3).unlink()
    assert "entry 3" in verify_audit(storage, sealing_keyring).breaks[0]
    assert "deleted" in verify_audit(storage, sealing_keyring).breaks[0]


def test_an_inserted_entry_is_named(tmp_path: Path, sealing_keyring: Keyring) -> None:
    storage = _trail(tmp_path)
    for seq in (4, 3):  # make room after entry 2 ...
        _entry(storage, seq).rename(_entry(storage, seq + 1))
    forged = {**json.loads(_entry(storage, 2).read_text()), "request_id": "r-forged", "seq": 3}
    _entry(storage, 3).write_text(json.dumps(forged, sort_keys=True))  # ... and slip one in
    report = verify_audit(storage, sealing_keyring)
    assert report.breaks[0].startswith("entry 3 ")


def test_reordered_entries_are_named(tmp_path: Path, sealing_keyring: Keyring) -> None:
    storage = _trail(tmp_path)
    second, third = _entry(storage, 2).read_bytes(), _entry(storage, 3).read_bytes()
    _entry(storage, 2).write_bytes(third)
    _entry(storage, 3).write_bytes(second)
    report = verify_audit(storage, sealing_keyring)
    assert report.breaks[0].startswith("entry 2 ") and "reordered" in report.breaks[0]


def test_a_purge_leaves_a_verifiable_trail_behind_a_checkpoint(
    tmp_path: Path, sealing_keyring: Keyring
) -> None:
    storage = LocalStorage(tmp_path)
    for index, day in enumerate((NOW - timedelta(days=300), NOW - timedelta(days=200), NOW)):
        append_audit(storage, "erasure", {"request_id": f"r-{index}"}, day)
    assert purge_audit(storage, 183, NOW.date()) == 2
    report = verify_audit(storage, sealing_keyring)
    assert report.intact and report.purged_through == 2 and report.last_seq == 4
    assert [entry["request_id"] for entry in read_audit(storage)] == ["r-2"]
    append_audit(storage, "erasure", {"request_id": "r-3"}, NOW)
    assert verify_audit(storage, sealing_keyring).intact
    _entry(storage, 3).unlink()  # the oldest kept entry, right after the checkpoint
    assert "entry 3" in verify_audit(storage, sealing_keyring).breaks[0]


def test_a_purge_cut_short_still_verifies(tmp_path: Path, sealing_keyring: Keyring) -> None:
    storage = LocalStorage(tmp_path)
    for day in (NOW - timedelta(days=300), NOW - timedelta(days=300), NOW):
        append_audit(storage, "erasure", {}, day)
    purged = {seq: (tmp_path / AUDIT_CHAIN.path(seq)).read_bytes() for seq in (1, 2)}
    purge_audit(storage, 183, NOW.date())
    leftover = {**json.loads(_entry(storage, 4).read_text())}
    assert leftover["kind"] == chain.CHECKPOINT and leftover["purged_through"] == 2
    # as if the purge had been killed before deleting entry 2
    (tmp_path / AUDIT_CHAIN.path(2)).write_bytes(purged[2])
    assert verify_audit(storage, sealing_keyring).intact
    # what it left is checked: an entry of another chain in its place is a break
    append_audit(LocalStorage(tmp_path / "other"), "x", {}, NOW)
    append_audit(LocalStorage(tmp_path / "other"), "x", {}, NOW)
    (tmp_path / AUDIT_CHAIN.path(2)).write_bytes((tmp_path / "other" / AUDIT_CHAIN.path(2)).read_bytes())
    assert "not the one the checkpoint sealed" in verify_audit(storage, sealing_keyring).breaks[0]


def test_a_stray_file_is_skipped_by_readers_and_the_purge(tmp_path: Path, sealing_keyring: Keyring) -> None:
    storage = _trail(tmp_path, 2)
    (tmp_path / "_cdrpipe" / "audit" / "notes.txt").write_text("left here by someone")
    (tmp_path / "_cdrpipe" / "audit" / "2026-01-01").mkdir()
    (tmp_path / "_cdrpipe" / "audit" / "2026-01-01" / "half.json").write_bytes(b"")
    assert [entry["request_id"] for entry in read_audit(storage)] == ["r-0", "r-1"]
    assert purge_audit(storage, 183, date(2027, 12, 1)) == 3  # the empty old-style day file goes too
    report = verify_audit(storage, sealing_keyring)
    assert report.intact and report.foreign == ["_cdrpipe/audit/notes.txt"]


def test_old_entries_stay_verifiable_after_a_key_rotation(tmp_path: Path) -> None:
    old, new = Key("k1", bytes(range(32)), "t"), Key("k2", bytes(range(1, 33)), "t")
    chain.seal_with(lambda: Keyring("k1", (old,)))
    storage = _trail(tmp_path, 2)
    chain.seal_with(lambda: Keyring("k2", (old, new)))
    append_audit(storage, "erasure", {}, NOW)
    assert json.loads(_entry(storage, 3).read_text())["key_id"] == "k2"
    assert verify_audit(storage, Keyring("k2", (old, new))).intact
    without_old = verify_audit(storage, Keyring("k2", (new,)))
    assert "which the keyring does not hold" in without_old.breaks[0]


def test_two_writers_never_fork_the_chain(tmp_path: Path, sealing_keyring: Keyring) -> None:
    storage = _trail(tmp_path, 1)

    class Racing(LocalStorage):
        """Another writer appends between this writer's look at the tail and its create."""

        raced = False

        def create_exclusive(self, relative_path: str, data: bytes) -> bool:
            if not self.raced:
                self.raced = True
                append_audit(storage, "retention", {}, NOW)
            return super().create_exclusive(relative_path, data)

    append_audit(Racing(tmp_path), "erasure", {"request_id": "r-late"}, NOW)
    report = verify_audit(storage, sealing_keyring)
    assert report.intact and report.last_seq == 3
    assert [entry["kind"] for entry in read_audit(storage)] == ["erasure", "retention", "erasure"]


class _CountingLocal(LocalStorage):
    listings = 0

    def list(self, relative_dir: str, modified_since: datetime | None = None) -> list[str]:
        self.listings += 1
        return super().list(relative_dir, modified_since)


class _CountingMemory(MemoryStorage):
    listings = 0

    def list(self, relative_dir: str, modified_since: datetime | None = None) -> list[str]:
        self.listings += 1
        return super().list(relative_dir, modified_since)


@pytest.mark.parametrize("kind", ["local", "memory"])
def test_each_store_lists_its_chain_once_however_appends_interleave(
    tmp_path: Path, sealing_keyring: Keyring, kind: str
) -> None:
    # A listing per append makes a register of 100,000 requests quadratic: after its first
    # append, a process appends at the number after its own last entry, store by store.
    def store(name: str) -> _CountingLocal | _CountingMemory:
        return _CountingLocal(tmp_path / name) if kind == "local" else _CountingMemory()

    stores = [store("a"), store("b"), store("c")]
    for index in range(30):
        append_audit(stores[index % 3], "erasure", {"request_id": f"r-{index}"}, NOW)
    for each in stores:
        assert each.listings == 1
        report = verify_audit(each, sealing_keyring)
        assert report.intact and report.last_seq == 10


def test_a_remembered_tail_that_is_gone_is_not_trusted(tmp_path: Path, sealing_keyring: Keyring) -> None:
    storage = _trail(tmp_path, 2)
    _entry(storage, 2).unlink()  # this process's last entry is gone: the tail is unknown again
    append_audit(storage, "erasure", {"request_id": "r-after"}, NOW)
    assert json.loads(_entry(storage, 2).read_text())["request_id"] == "r-after"
    assert verify_audit(storage, sealing_keyring).intact


def _register(tmp_path: Path) -> LocalStorage:
    storage = LocalStorage(tmp_path)
    register_received(storage, "acc-1", "access", NOW)
    register_received(storage, "acc-2", "access", NOW)
    close(storage, "acc-1", NOW, "exported 3 rows")
    return storage


def test_register_events_are_sealed_and_chained(tmp_path: Path, sealing_keyring: Keyring) -> None:
    storage = _register(tmp_path)
    assert verify_register(storage, sealing_keyring).intact
    assert len(storage.list(REGISTER_CHAIN.directory)) == 3


@pytest.mark.parametrize("tampering", ["rewritten", "deleted", "inserted"])
def test_register_tampering_is_named(tmp_path: Path, sealing_keyring: Keyring, tampering: str) -> None:
    storage = _register(tmp_path)
    closed = tmp_path / "_cdrpipe" / "requests" / "acc-1" / "closed.json"
    if tampering == "rewritten":
        closed.write_text(closed.read_text().replace("exported 3 rows", "exported 0 rows"))
    elif tampering == "deleted":
        closed.unlink()  # the request looks open again
    else:
        copy = tmp_path / "_cdrpipe" / "requests" / "acc-2" / "closed.json"
        copy.write_bytes(closed.read_bytes())  # a sealed event, but not one the chain recorded
    report = verify_register(storage, sealing_keyring)
    assert not report.intact and tampering in report.breaks[0]


def test_a_register_purge_keeps_the_register_verifiable(tmp_path: Path, sealing_keyring: Keyring) -> None:
    storage = LocalStorage(tmp_path)
    long_ago = NOW - timedelta(days=400)
    register_received(storage, "old", "access", long_ago)
    close(storage, "old", long_ago, "exported")
    register_received(storage, "kept", "access", NOW)
    assert purge_requests(storage, 183, NOW) == 1
    assert [record.request_id for record in load_register(storage)] == ["kept"]
    assert verify_register(storage, sealing_keyring).intact


def test_an_empty_register_file_is_skipped(tmp_path: Path) -> None:
    storage = _register(tmp_path)
    (tmp_path / "_cdrpipe" / "requests" / "acc-2" / "extended.json").write_bytes(b"")
    assert sorted(record.request_id for record in load_register(storage)) == ["acc-1", "acc-2"]
    assert purge_requests(storage, 183, NOW + timedelta(days=400)) == 1


def test_cdrpipe_audit_verify_names_the_first_break_and_passes_after_a_purge(
    tmp_path: Path, keyring_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CDRPIPE_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("CDRPIPE_KEYRING", str(keyring_path))
    runner = CliRunner()
    chain.seal_with(lambda: load_keyring(keyring_path))
    storage = LocalStorage(tmp_path / "store")
    for day in (NOW - timedelta(days=400), datetime.now(UTC)):
        append_audit(storage, "erasure", {"request_id": "r"}, day)
    assert runner.invoke(cli, ["requests", "add", "--kind", "access", "--request-id", "acc-9"]).exit_code == 0
    rotate_keyring(keyring_path)  # entries under the first key stay verifiable
    assert runner.invoke(cli, ["requests", "close", "acc-9", "--outcome", "answered"]).exit_code == 0
    verified = runner.invoke(cli, ["audit", "verify"])
    assert verified.exit_code == 0, verified.output
    assert "audit trail: 2 entries up to 2: intact" in verified.output and "register: " in verified.output

    assert runner.invoke(cli, ["retention"]).exit_code == 0
    after_purge = runner.invoke(cli, ["audit", "verify"])
    assert after_purge.exit_code == 0 and "purged through entry 1: intact" in after_purge.output

    entry = tmp_path / "store" / AUDIT_CHAIN.path(2)
    entry.write_text(entry.read_text().replace('"request_id": "r"', '"request_id": "x"'))
    broken = runner.invoke(cli, ["audit", "verify"])
    assert broken.exit_code == 1 and "audit trail:" in broken.output
    assert "BROKEN: entry 2 (_cdrpipe/audit/000000000002.json): its MAC does not match" in broken.output
