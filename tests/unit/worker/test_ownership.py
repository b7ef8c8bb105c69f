"""A worker's lifecycle claim: taken after an assignment, lost for good until the next one, released."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pipeline.store.fence import OwnerFence, OwnershipLostError
from pipeline.store.storage import LocalStorage
from pipeline.worker.ownership import LifecycleOwnership


class _Partition:
    held = True

    def __call__(self) -> bool:
        return self.held


def _ownership(storage: LocalStorage, name: str, partition: _Partition) -> LifecycleOwnership:
    return LifecycleOwnership(OwnerFence(storage, name), 0.01, partition)


def test_a_worker_without_the_partition_neither_claims_nor_writes(tmp_path: Path) -> None:
    partition = _Partition()
    partition.held = False
    ownership = _ownership(LocalStorage(tmp_path), "a", partition)
    assert not asyncio.run(ownership.ensure())
    with pytest.raises(OwnershipLostError, match="holds no lifecycle claim"):
        ownership.guard()


def test_a_fenced_owner_does_not_claim_back_until_it_is_assigned_again(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    a_partition, b_partition = _Partition(), _Partition()
    old, new = _ownership(storage, "a", a_partition), _ownership(storage, "b", b_partition)
    assert asyncio.run(old.ensure())
    old.guard()
    assert asyncio.run(new.ensure())  # removed from the group, A still believes it holds the partition
    with pytest.raises(OwnershipLostError):
        old.guard()
    assert not asyncio.run(old.ensure()), "a fenced owner must not take the lifecycle back"
    new.guard()
    asyncio.run(old.revoked())  # A rejoins: its revocation ends, a new assignment may follow
    assert asyncio.run(old.ensure())
    with pytest.raises(OwnershipLostError):
        new.guard()


def test_a_revoked_owner_releases_so_the_next_one_need_not_wait(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = LocalStorage(tmp_path)
    old = _ownership(storage, "a", _Partition())
    assert asyncio.run(old.ensure())
    asyncio.run(old.revoked())
    with pytest.raises(OwnershipLostError):
        old.guard()  # handed over: it writes nothing more
    caplog.set_level("INFO")
    assert asyncio.run(_ownership(storage, "b", _Partition()).ensure())
    assert "lifecycle epoch 2 claimed" in caplog.text and "did not hand over" not in caplog.text


def test_a_new_owner_after_one_that_did_not_hand_over_waits_the_grace(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = LocalStorage(tmp_path)
    assert asyncio.run(_ownership(storage, "a", _Partition()).ensure())  # then killed
    caplog.set_level("INFO")
    waited: list[float] = []
    original = asyncio.sleep

    async def sleep(seconds: float) -> None:
        waited.append(seconds)
        await original(0)

    new = _ownership(storage, "b", _Partition())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(asyncio, "sleep", sleep)
        assert asyncio.run(new.ensure())
    assert waited == [0.01] and "the previous owner did not hand over" in caplog.text
