"""Attacks on the sealed chains by someone with file-system access to the store but not the keyring."""

from __future__ import annotations

import json
import shutil
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.keys.keyring import Keyring
from pipeline.lifecycle.requests import chain
from pipeline.lifecycle.requests.audit import AUDIT_CHAIN, append_audit, purge_audit, read_audit, verify_audit
from pipeline.lifecycle.requests.register import (
    close,
    load_register,
    purge_requests,
    register_received,
    verify_register,
)
from pipeline.store.storage import LocalStorage
from pipeline.worker.dpo_records import ChainHealth

NOW = datetime(2026, 11, 25, tzinfo=UTC)
LONG_AGO = NOW - timedelta(days=300)


def _entry(root: Path, seq: int) -> Path:
    return root / AUDIT_CHAIN.path(seq)


def _other_store_with_a_checkpoint(root: Path, expired: int, kept: int = 1) -> Path:
    """A second store sealed with the same keyring (staging, a second tenant...) after a purge."""
    other = LocalStorage(root)
    for index in range(expired):
        append_audit(other, "erasure", {"request_id": f"b-{index}"}, LONG_AGO)
    for _ in range(kept):
        append_audit(other, "erasure", {"request_id": "b-kept"}, NOW)
    assert purge_audit(other, 183, NOW.date()) == expired
    return _entry(root, expired + kept + 1)  # the checkpoint: purged_through == expired


def _rewrite(path: Path, **changes: object) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}, sort_keys=True))


def test_a_checkpoint_copied_from_another_store_does_not_hide_a_rewrite(
    tmp_path: Path, sealing_keyring: Keyring
) -> None:
    storage = LocalStorage(tmp_path / "a")
    for index in range(3):
        append_audit(storage, "erasure", {"request_id": f"a-{index}", "rows_removed": 3}, NOW)
    _rewrite(_entry(storage.root, 2), rows_removed=0)  # its MAC no longer holds ...
    checkpoint = _other_store_with_a_checkpoint(tmp_path / "b", expired=50)
    # ... so the attacker drops a sealed checkpoint of store B (purged through 50) into any slot
    shutil.copy(checkpoint, _entry(storage.root, 3))
    report = verify_audit(storage, sealing_keyring)
    assert not report.intact, "B's checkpoint made verification skip the whole of A's chain"


def test_a_checkpoint_copied_into_its_own_slot_does_not_hide_the_entries_behind_it(
    tmp_path: Path, sealing_keyring: Keyring
) -> None:
    storage = LocalStorage(tmp_path / "a")
    for index in range(3):
        append_audit(storage, "erasure", {"request_id": f"a-{index}", "rows_removed": 3}, NOW)
    _rewrite(_entry(storage.root, 2), rows_removed=0)
    checkpoint = _other_store_with_a_checkpoint(tmp_path / "b", expired=3, kept=0)  # entry 4, through 3
    shutil.copy(checkpoint, _entry(storage.root, 4))
    assert [entry["rows_removed"] for entry in read_audit(storage)] == [3, 0, 3]  # what readers see
    report = verify_audit(storage, sealing_keyring)
    assert not report.intact, "entries left behind a checkpoint are read but were never verified"


def test_a_planted_entry_far_ahead_is_one_break_not_a_hang(tmp_path: Path, sealing_keyring: Keyring) -> None:
    storage = LocalStorage(tmp_path)
    append_audit(storage, "erasure", {}, NOW)
    _entry(tmp_path, 999_999_999_999).write_text("{}")  # the worker verifies every minute
    started = time.monotonic()
    report = verify_audit(storage, sealing_keyring)
    assert time.monotonic() - started < 5
    assert report.breaks[0].startswith("entries 2 to 999999999998 ") and "deleted" in report.breaks[0]
    assert len(report.breaks) == 2


def test_an_old_style_entry_inserted_after_the_chain_began_is_a_break(
    tmp_path: Path, sealing_keyring: Keyring
) -> None:
    storage = LocalStorage(tmp_path)
    append_audit(storage, "erasure", {"request_id": "real"}, NOW - timedelta(days=1))
    day = tmp_path / "_cdrpipe" / "audit" / NOW.date().isoformat()
    day.mkdir()
    (day / "forged.json").write_text(json.dumps({"kind": "erasure", "request_id": "forged"}))
    assert "forged" in [entry["request_id"] for entry in read_audit(storage)]  # readers show it
    report = verify_audit(storage, sealing_keyring)
    assert not report.intact and "forged.json" in report.breaks[0] and "inserted" in report.breaks[0]


def test_an_old_style_entry_after_a_purge_is_a_break(tmp_path: Path, sealing_keyring: Keyring) -> None:
    storage = LocalStorage(tmp_path)
    append_audit(storage, "erasure", {}, LONG_AGO)
    append_audit(storage, "erasure", {}, NOW)
    purge_audit(storage, 183, NOW.date())  # every old-style entry is older than the first chained one
    day = tmp_path / "_cdrpipe" / "audit" / "2020-01-01"
    day.mkdir()
    (day / "backdated.json").write_text(json.dumps({"kind": "erasure", "request_id": "forged"}))
    assert not verify_audit(storage, sealing_keyring).intact


def test_genuine_old_style_entries_and_a_purge_cut_short_still_verify(
    tmp_path: Path, sealing_keyring: Keyring
) -> None:
    storage = LocalStorage(tmp_path)
    day = tmp_path / "_cdrpipe" / "audit" / (NOW.date() - timedelta(days=1)).isoformat()
    day.mkdir(parents=True)
    (day / "old.json").write_text(json.dumps({"kind": "erasure", "request_id": "old"}))
    for _ in range(3):
        append_audit(storage, "erasure", {}, LONG_AGO + timedelta(days=400))
    assert verify_audit(storage, sealing_keyring).intact
    # a purge killed after its checkpoint, before it deleted anything
    saved = {seq: _entry(tmp_path, seq).read_bytes() for seq in (1, 2, 3)}
    assert purge_audit(storage, 183, date(2028, 1, 1)) == 3 + 1
    for seq, data in saved.items():
        _entry(tmp_path, seq).write_bytes(data)
    report = verify_audit(storage, sealing_keyring)
    assert report.intact and report.purged_through == 3, report.breaks
    _entry(tmp_path, 1).unlink()  # ... or after it deleted entry 1
    assert verify_audit(storage, sealing_keyring).intact
    _entry(tmp_path, 1).write_bytes(saved[1])
    _entry(tmp_path, 2).unlink()  # a gap behind the checkpoint: no purge leaves one
    assert "entry 2 " in verify_audit(storage, sealing_keyring).breaks[0]


def test_concurrent_writers_in_a_loop_never_fork_the_chain(tmp_path: Path, sealing_keyring: Keyring) -> None:
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            for index in range(25):
                append_audit(LocalStorage(tmp_path), name, {"n": index}, NOW)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    report = verify_audit(LocalStorage(tmp_path), sealing_keyring)
    assert report.intact and report.last_seq == 100, report.breaks[:3]


@pytest.mark.xfail(
    strict=True,
    reason="documented limit: the newest entries removed (or the audit directory rolled back to an "
    "older copy) cannot be seen by the chain alone; only a worker that saw the longer chain since it "
    "started reports it. Needs an anchor outside the store (Object Lock, or a signed tail kept elsewhere)",
)
def test_a_rollback_is_seen_after_the_worker_restarts(tmp_path: Path, sealing_keyring: Keyring) -> None:
    storage = LocalStorage(tmp_path / "store")
    for _ in range(3):
        append_audit(storage, "erasure", {}, NOW)
    backup = tmp_path / "backup"
    shutil.copytree(tmp_path / "store" / "_cdrpipe" / "audit", backup)
    ChainHealth().check(storage)
    append_audit(storage, "erasure", {"request_id": "the erasure to hide"}, NOW)
    shutil.rmtree(tmp_path / "store" / "_cdrpipe" / "audit")
    shutil.copytree(backup, tmp_path / "store" / "_cdrpipe" / "audit")
    restarted = ChainHealth()
    restarted.check(storage)
    assert restarted.first_break is not None


def test_chain_key_is_separate_from_every_pseudonym_key(sealing_keyring: Keyring) -> None:
    from pipeline.keys.pseudonym import Domain, derive_subkey

    key = sealing_keyring.active
    mac_key = chain.chain_key(key)
    assert mac_key != key.secret
    for domain in Domain:
        try:
            assert derive_subkey(key.secret, domain) != mac_key
        except ValueError:  # tenant-scoped
            assert derive_subkey(key.secret, domain, "t") != mac_key


def test_a_reused_request_id_does_not_excuse_a_deleted_event(
    tmp_path: Path, sealing_keyring: Keyring
) -> None:
    storage = LocalStorage(tmp_path)
    long_ago = NOW - timedelta(days=400)
    register_received(storage, "acc-1", "access", long_ago)
    close(storage, "acc-1", long_ago, "exported")
    register_received(storage, "acc-2", "access", NOW)  # keeps the register chain from being purged
    assert purge_requests(storage, 183, NOW) == 1
    register_received(storage, "acc-1", "access", NOW)  # the id again, for a new request
    close(storage, "acc-1", NOW, "refused: manifestly unfounded")
    assert verify_register(storage, sealing_keyring).intact
    (tmp_path / "_cdrpipe" / "requests" / "acc-1" / "closed.json").unlink()  # it looks open again
    report = verify_register(storage, sealing_keyring)
    assert not report.intact and "deleted" in report.breaks[0]


@pytest.mark.parametrize("planted", ["non-ascii mac", "deep nesting"])
def test_a_crafted_entry_is_a_break_not_a_crash(
    tmp_path: Path, sealing_keyring: Keyring, planted: str
) -> None:
    # A crash would leave cdrpipe_audit_chain_intact at 1 in the worker: the rewrite would go unreported.
    storage = LocalStorage(tmp_path)
    for _ in range(3):
        append_audit(storage, "erasure", {"rows_removed": 3}, NOW)
    _rewrite(_entry(tmp_path, 2), rows_removed=0)
    if planted == "non-ascii mac":
        _rewrite(_entry(tmp_path, 3), mac="\u00e9" * 64)
    else:
        _entry(tmp_path, 3).write_text("[" * 100_000 + "]" * 100_000)
    health = ChainHealth()
    health.check(storage)
    assert health.first_break is not None and health.first_break.startswith("entry 2 ")
    assert len(verify_audit(storage, sealing_keyring).breaks) == 2
    read_audit(storage)  # readers skip it too


@pytest.mark.parametrize(
    "event",
    [
        {"event": "received", "at": "2026-11-25T00:00:00+00:00"},  # no kind
        {"event": "received", "at": "not an instant", "kind": "access"},
        {"event": "closed", "at": "2026-11-25T00:00:00+00:00"},  # no status, no outcome
    ],
    ids=["no-kind", "bad-instant", "closed-without-status"],
)
def test_a_crafted_register_event_is_skipped_not_a_crash(tmp_path: Path, event: dict[str, str]) -> None:
    # The worker reads the register before it verifies the chains, in the same timer run: a crash
    # there means the chains are never verified again, and a rewrite elsewhere goes unreported.
    storage = LocalStorage(tmp_path)
    register_received(storage, "acc-1", "access", NOW)
    if event["event"] == "closed":
        register_received(storage, "acc-2", "access", NOW)
    directory = tmp_path / "_cdrpipe" / "requests" / "acc-2"
    directory.mkdir(exist_ok=True)
    (directory / f"{event['event']}.json").write_text(json.dumps(event))
    assert "acc-1" in [record.request_id for record in load_register(storage)]
    purge_requests(storage, 183, NOW + timedelta(days=400))  # no crash, and acc-2 is kept as evidence
    assert (directory / f"{event['event']}.json").exists()
