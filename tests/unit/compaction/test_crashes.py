"""A compaction killed at every step of its pass, then a replay and a restart: every row exactly once."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.compaction.compactor import Policy, compact_store, recover
from pipeline.lifecycle.ledger import SubjectLedger
from pipeline.store.naming import COMPACTION_DIR
from pipeline.store.storage import LocalStorage, Stamp
from tests.support.mini_pipeline import MiniPipeline, stored_ids
from tests.support.samples import call_at

POLICY = Policy(target_rows=4, quiet_s=60)


class Killed(BaseException):
    """The process died here (a BaseException: no ``except Exception`` of the code under test catches it)."""


class KilledAtStep(LocalStorage):
    """A local store whose process dies at its ``step``-th write (publish, exclusive create or delete)."""

    def __init__(self, root: Path, step: int) -> None:
        super().__init__(root)
        self.step = step
        self.writes = 0

    def _count(self) -> None:
        self.writes += 1
        if self.writes == self.step:
            raise Killed

    def publish(self, relative_path: str, data: bytes) -> Stamp:
        self._count()
        return super().publish(relative_path, data)

    def create_exclusive(self, relative_path: str, data: bytes) -> bool:
        self._count()
        return super().create_exclusive(relative_path, data)

    def delete(self, relative_path: str) -> None:
        self._count()
        super().delete(relative_path)


def _later() -> datetime:
    return datetime.now(UTC) + timedelta(hours=1)


def _prepared(root: Path) -> tuple[MiniPipeline, list[str]]:
    """Two dates over two partitions, with copies of one CDR, and a restricted mirror to compact."""
    pipeline = MiniPipeline(LocalStorage(root))
    resent = call_at("2026-11-01T09:00:00+00:00", cdr_id="resent")
    pipeline.send(0, resent)
    for number in range(14):
        day = "2026-11-01" if number % 3 else "2026-11-02"
        pipeline.call(number % 2, f"c{number}", f"{day}T10:{number:02d}:00+00:00")
        if number == 6:
            pipeline.send(1, resent)
    pipeline.consume()
    return pipeline, sorted(["resent", *(f"c{number}" for number in range(14))])


def _writes_of_a_pass(tmp_path: Path) -> int:
    pipeline, _ = _prepared(tmp_path / "count")
    counting = KilledAtStep(tmp_path / "count", step=0)
    compact_store(counting, SubjectLedger(), pipeline.offsets.committed_offsets, _later(), POLICY)
    return counting.writes


@pytest.mark.parametrize("replay_before_restart", [False, True], ids=["restart", "replay-then-restart"])
def test_a_pass_killed_at_any_write_loses_and_doubles_nothing(
    tmp_path: Path, replay_before_restart: bool
) -> None:
    writes = _writes_of_a_pass(tmp_path)
    assert writes > 10  # journal, outputs, coverage, deletes, manifests, audit, journal again
    template, expected = _prepared(tmp_path / "template")
    for step in range(1, writes + 1):
        root = tmp_path / f"step-{step}"
        shutil.copytree(template.storage.root, root)
        pipeline = MiniPipeline(LocalStorage(root))
        pipeline.log = template.log
        pipeline.offsets.committed_offsets = dict(template.offsets.committed_offsets)
        with pytest.raises(Killed):
            compact_store(
                KilledAtStep(root, step),
                SubjectLedger(),
                pipeline.offsets.committed_offsets,
                _later(),
                POLICY,
            )
        if replay_before_restart:
            for partition in pipeline.log:
                pipeline.reset(partition, 0)  # the offsets are reset while the pass lies dead
            pipeline.consume()
        recover(pipeline.storage, _later())  # what the restarted owner does first
        recovered = stored_ids(pipeline.storage)
        # Nothing lost or doubled by the crash; the producer's own copy may still wait for its pass.
        assert sorted(set(recovered)) == expected, f"killed at write {step}"
        assert [i for i in recovered if recovered.count(i) > 1] in ([], ["resent", "resent"]), (
            f"killed at {step}"
        )
        assert not pipeline.storage.list(f"{COMPACTION_DIR}/journal"), f"killed at write {step}"
        compact_store(pipeline.storage, SubjectLedger(), pipeline.offsets.committed_offsets, _later(), POLICY)
        assert stored_ids(pipeline.storage) == expected, f"killed at write {step}"
