"""The lifecycle owner's fence: numbered claims, checked before every write, released on hand-over."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.store.fence import OWNER_DIR, FencedStorage, OwnerFence, OwnershipLostError
from pipeline.store.storage import LocalStorage


def test_claims_are_numbered_and_a_later_claim_fences_the_earlier(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    old, new = OwnerFence(storage, "worker a"), OwnerFence(storage, "worker b")
    first = old.claim()
    assert (first.epoch, first.previous_released) == (1, True)  # nobody before it to wait for
    old.check(first)
    second = new.claim()
    assert (second.epoch, second.previous_released) == (2, False)  # the first never handed over
    with pytest.raises(OwnershipLostError, match="epoch 2 was claimed"):
        old.check(first)
    new.check(second)


def test_a_released_claim_lets_the_next_owner_start_without_waiting(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    fence = OwnerFence(storage, "worker a")
    fence.release(fence.claim())
    assert OwnerFence(storage, "worker b").claim().previous_released


def test_two_claimants_of_one_number_get_two_numbers(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)

    class Racing(LocalStorage):
        """Another worker claims between this one's listing and its create."""

        def list(self, relative_dir: str, modified_since: object = None) -> list[str]:
            listed = super().list(relative_dir)
            if not listed:
                OwnerFence(storage, "worker b").claim()
            return listed

    claim = OwnerFence(Racing(tmp_path), "worker a").claim()
    assert claim.epoch == 2
    assert sorted(storage.list(OWNER_DIR)) == [f"{OWNER_DIR}/{n:012d}.json" for n in (1, 2)]


def test_a_fenced_store_writes_nothing_once_its_guard_refuses(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.publish("cdr/a.parquet", b"a")
    fence = OwnerFence(storage, "worker a")
    claim = fence.claim()
    fenced = FencedStorage(storage, lambda: fence.check(claim))
    fenced.publish("cdr/b.parquet", b"b")
    OwnerFence(storage, "worker b").claim()
    writes = [
        lambda: fenced.publish("cdr/a.parquet", b"stale"),
        lambda: fenced.create_exclusive("_cdrpipe/receipts/r.json", b"{}"),
        lambda: fenced.delete("cdr/b.parquet"),
        lambda: fenced.sweep_temporaries("cdr"),
    ]
    for write in writes:
        with pytest.raises(OwnershipLostError):
            write()
    assert storage.read("cdr/a.parquet") == b"a" and storage.read("cdr/b.parquet") == b"b"
    assert storage.read("_cdrpipe/receipts/r.json") is None
    assert fenced.read("cdr/a.parquet") == b"a"  # reading is not writing
