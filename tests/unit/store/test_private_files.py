"""Every file and directory the worker and the CLI create in a local store is private, whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.lifecycle.requests.audit import append_audit
from pipeline.lifecycle.requests.receipts import receipt_path
from pipeline.lifecycle.requests.register import close, register_received
from pipeline.store.permissions import exposed
from pipeline.store.storage import LocalStorage, make_dirs

NOW = datetime(2026, 11, 25, tzinfo=UTC)


@pytest.fixture(params=[0o022, 0o077, 0o000], ids=["umask022", "umask077", "umask000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _fill(storage: LocalStorage) -> list[str]:
    """One of every kind of file the worker writes to a store; returns the temporaries' modes seen."""
    temporaries: list[str] = []
    real_replace = os.replace

    def replace(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        temporaries.append(f"{_mode(Path(source)):o}")
        real_replace(source, target)

    os.replace = replace  # type: ignore[assignment]
    try:
        storage.publish("cdr/call_date=2026-11-24/t+0+00000000000000000000.parquet", b"PAR1")
        storage.publish("restricted/call_date=2026-11-24/t+0+00000000000000000000.parquet", b"PAR1")
    finally:
        os.replace = real_replace  # type: ignore[assignment]
    append_audit(storage, "erasure", {"request_id": "r-1"}, NOW)
    storage.create_exclusive(receipt_path("r-1"), b"{}")
    register_received(storage, "acc-1", "access", NOW)
    close(storage, "acc-1", NOW, "exported 1 rows")
    return temporaries


def _everything(root: Path) -> tuple[set[int], set[int]]:
    files, directories = set(), set()
    for current, _, names in os.walk(root):
        directories.add(_mode(Path(current)))
        files.update(_mode(Path(current) / name) for name in names if not (Path(current) / name).is_symlink())
    return files, directories


def test_store_files_are_owner_only_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    del umask
    root = tmp_path / "store"
    temporaries = _fill(LocalStorage(root))
    assert temporaries == ["600", "600"]
    files, directories = _everything(root)
    assert files == {0o600} and directories == {0o700}
    kinds = {path.relative_to(root).parts[:2] for path in root.rglob("*.json")}
    assert {
        ("_cdrpipe", "audit"),
        ("_cdrpipe", "receipts"),
        ("_cdrpipe", "requests"),
        ("_cdrpipe", "register"),
    } <= kinds
    assert exposed(root, group_read=False) == []


def test_group_read_grants_the_group_read_only(tmp_path: Path, umask: int) -> None:
    del umask
    root = tmp_path / "store"
    _fill(LocalStorage(root, group_read=True))
    assert _everything(root) == ({0o640}, {0o750})


def test_the_state_directory_is_owner_only(tmp_path: Path, umask: int) -> None:
    del umask
    make_dirs(tmp_path / "state" / "faust")
    assert _mode(tmp_path / "state") == 0o700 and _mode(tmp_path / "state" / "faust") == 0o700


def test_an_exclusive_create_is_whole_or_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = LocalStorage(tmp_path)
    assert storage.create_exclusive("_cdrpipe/receipts/r.json", b"first")
    assert not storage.create_exclusive("_cdrpipe/receipts/r.json", b"second")
    assert (tmp_path / "_cdrpipe" / "receipts" / "r.json").read_bytes() == b"first"

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # the process dies after writing, before the name appears

    monkeypatch.setattr(os, "link", killed)
    with pytest.raises(KeyboardInterrupt):
        storage.create_exclusive("_cdrpipe/receipts/s.json", b"never half")
    assert sorted(path.name for path in (tmp_path / "_cdrpipe" / "receipts").iterdir()) == ["r.json"]


def test_a_store_others_can_read_is_reported_and_fixed(
    tmp_path: Path, keyring_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "store"
    previous = os.umask(0o022)
    try:  # a store written by an older cdrpipe: 0644 files, 0755 directories
        (root / "cdr" / "call_date=2026-11-24").mkdir(parents=True)
        (root / "cdr" / "call_date=2026-11-24" / "t+0+0.parquet").write_bytes(b"PAR1")
        (root / "_cdrpipe" / "receipts").mkdir(parents=True)
        (root / "_cdrpipe" / "receipts" / "r.json").write_bytes(b"{}")
        (tmp_path / "elsewhere").write_text("not ours")
        (root / "_cdrpipe" / "link").symlink_to(tmp_path / "elsewhere")
    finally:
        os.umask(previous)
    monkeypatch.setenv("CDRPIPE_STORE", str(root))
    monkeypatch.setenv("CDRPIPE_KEYRING", str(keyring_path))
    listed = CliRunner().invoke(cli, ["requests"])
    assert listed.exit_code == 0 and "can be read by other users" in listed.output
    assert "cdrpipe store fix-permissions" in listed.output
    assert _mode(root / "_cdrpipe" / "receipts" / "r.json") == 0o644  # warned, never silently changed

    fixed = CliRunner().invoke(cli, ["store", "fix-permissions"])
    assert fixed.exit_code == 0 and "fixed 2 files and 5 directories" in fixed.output
    assert _everything(root) == ({0o600}, {0o700})
    assert _mode(tmp_path / "elsewhere") == 0o644  # the symlink's target is not the store's
    assert "can be read" not in CliRunner().invoke(cli, ["requests"]).output


def test_the_start_check_is_bounded(tmp_path: Path) -> None:
    partition = tmp_path / "cdr" / "call_date=2026-11-24"
    partition.mkdir(parents=True, mode=0o700)
    os.chmod(tmp_path, 0o700)
    os.chmod(tmp_path / "cdr", 0o700)
    for index in range(200):
        (partition / f"t+0+{index}.parquet").write_bytes(b"")
        os.chmod(partition / f"t+0+{index}.parquet", 0o644)
    # partitions are not walked at start: the DPO runs fix-permissions, which walks everything
    assert exposed(tmp_path, group_read=False) == []
    os.chmod(tmp_path / "cdr", 0o755)
    assert exposed(tmp_path, group_read=False) == [tmp_path / "cdr"]


def test_the_keyring_written_by_keys_init_and_rotate_is_owner_only(tmp_path: Path, umask: int) -> None:
    del umask
    path = tmp_path / "secrets" / "keyring.json"
    (tmp_path / "store").mkdir()  # rotate asks the store which key ids it knows
    runner = CliRunner()
    env = {"CDRPIPE_KEYRING": str(path), "CDRPIPE_STORE": str(tmp_path / "store")}
    for command in (["keys", "init"], ["keys", "rotate"]):
        result = runner.invoke(cli, command, env=env)
        assert result.exit_code == 0, result.output
        assert _mode(path) == 0o600
        assert not list(path.parent.glob(".*.tmp"))
    assert _mode(path.parent) & 0o022 == 0  # only its owner can write the directory
