"""``cdrpipe export --out``: exclusive and owner-only, never through a symlink, replaced atomically."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pipeline.cli import cli
from pipeline.ingest.rows import build_rows
from pipeline.keys.keyring import load_keyring
from pipeline.keys.pseudonym import PartyPseudonymizer, Pseudonymizer
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.store.parquet import encode
from pipeline.store.storage import LocalStorage
from tests.support.samples import canonical_bytes, canonical_decode

Run = Callable[..., Result]


@pytest.fixture
def export(tmp_path: Path, keyring_path: Path) -> Iterator[tuple[Path, Run]]:
    """A store with one call of agent-42; yields (tmp_path, run(out, *extra) -> Result)."""
    key = load_keyring(keyring_path).active
    parties = PartyPseudonymizer(NumberClassifier("BE", (2, 5)), Pseudonymizer(key), 8)
    rows = build_rows([canonical_decode(canonical_bytes(cdr_id="a1", agent="agent-42"))], parties)
    LocalStorage(tmp_path / "store").publish(
        "cdr/call_date=2026-03-29/t+0+0.parquet", encode(rows, [key.ref])
    )
    env = {"CDRPIPE_KEYRING": str(keyring_path), "CDRPIPE_STORE": str(tmp_path / "store")}
    previous = os.umask(0o022)

    def run(out: Path, *extra: str) -> Result:
        args = ["export", "--agent", "agent-42", "--tenant", "contact-centre", "--out", str(out), *extra]
        return CliRunner().invoke(cli, args, env=env)

    yield tmp_path, run
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_a_fresh_export_is_owner_only(export: tuple[Path, Run]) -> None:
    tmp_path, run = export
    for export_format in ("jsonl", "csv", "parquet"):
        out = tmp_path / f"agent.{export_format}"
        result = run(out, "--format", export_format)
        assert result.exit_code == 0, result.output
        assert _mode(out) == 0o600 and out.stat().st_size > 0
    assert not list(tmp_path.glob(".*.tmp"))


def test_an_existing_target_is_refused_with_one_line(export: tuple[Path, Run]) -> None:
    tmp_path, run = export
    out = tmp_path / "agent.jsonl"
    out.write_text("someone else's file")
    result = run(out)
    assert result.exit_code == 2
    problems = [line for line in result.output.splitlines() if line.startswith("cdrpipe:")]
    assert problems == [f"cdrpipe: {out} exists: choose another file, or give --force to replace it"]
    assert "Traceback" not in result.output
    assert out.read_text() == "someone else's file"


@pytest.mark.parametrize("force", [False, True])
def test_a_symlinked_target_is_refused(export: tuple[Path, Run], force: bool) -> None:
    tmp_path, run = export
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    out = tmp_path / "agent.jsonl"
    out.symlink_to(victim)
    result = run(out, *(["--force"] if force else []))
    assert result.exit_code == 2 and "is a symbolic link" in result.output
    assert victim.read_text() == "untouched" and out.is_symlink()


def test_force_replaces_atomically_with_an_owner_only_file(export: tuple[Path, Run]) -> None:
    tmp_path, run = export
    out = tmp_path / "agent.jsonl"
    out.write_text("old export")
    os.chmod(out, 0o666)
    reader = out.open()  # a reader of the old file keeps reading the old file, whole
    old_inode = out.stat().st_ino
    result = run(out, "--force")
    assert result.exit_code == 0, result.output
    assert reader.read() == "old export"
    assert out.stat().st_ino != old_inode and _mode(out) == 0o600
    assert '"cdr_id": "a1"' in out.read_text()
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".")) == []


@pytest.mark.parametrize("force", [False, True])
def test_a_fifo_target_is_refused_without_blocking(export: tuple[Path, Run], force: bool) -> None:
    tmp_path, run = export
    out = tmp_path / "agent.jsonl"
    os.mkfifo(out)  # opening it for writing would block until a reader came, and hand it the rows
    result = run(out, *(["--force"] if force else []))
    assert result.exit_code == 2 and stat.S_ISFIFO(out.lstat().st_mode)


def test_force_over_a_hard_link_leaves_the_other_name_alone(export: tuple[Path, Run]) -> None:
    tmp_path, run = export
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    out = tmp_path / "agent.jsonl"
    os.link(victim, out)
    assert run(out, "--force").exit_code == 0
    assert victim.read_text() == "untouched" and '"cdr_id": "a1"' in out.read_text()


@pytest.mark.parametrize("inside", ["cdr/call_date=2026-03-29/agent.parquet", "_cdrpipe/agent.jsonl"])
def test_an_export_into_the_store_itself_is_refused(export: tuple[Path, Run], inside: str) -> None:
    # Inside the store an export is read back as the store's data (a Parquet file in a partition)
    # or sits among the DPO's records, with the store's readers and its backups.
    tmp_path, run = export
    out = tmp_path / "store" / inside
    out.parent.mkdir(exist_ok=True)
    result = run(out, "--format", "parquet")
    assert result.exit_code == 2 and "inside the store" in result.output
    assert not out.exists()


def test_a_missing_directory_is_one_line_not_a_traceback(export: tuple[Path, Run]) -> None:
    tmp_path, run = export
    result = run(tmp_path / "nowhere" / "agent.jsonl")
    assert result.exit_code == 2 and "is not a directory" in result.output
    assert "Traceback" not in result.output
