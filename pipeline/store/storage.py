"""Where published files live: a local directory or an S3 bucket, through ``pyarrow.fs``.

Contract:

* :meth:`Storage.publish` makes a complete file visible under its final name
  atomically (absent or complete, never partial) and durably before it
  returns; a failed publish leaves no file under the final name. Locally:
  temporary file in the same directory, fsync, rename, fsync of the directory
  (temporary names start with ``.`` and never end in ``.parquet``, so readers'
  globs skip them). On S3: one PUT of the complete object. A publish or
  delete touches only its own file, never lists its directory (a day holds
  tens of thousands of files: one listing per publish would make a day's
  writes quadratic); the temporary files that processes killed while
  publishing left behind are removed by :meth:`Storage.sweep_temporaries`,
  which erasure and the retention timer call (an orphan may hold a
  subject's rows).
* :meth:`Storage.create_exclusive` creates a small file only if it does not
  exist yet and says whether it did; the file appears whole or not at all.
  Locally: a temporary file is written and fsynced, then hard-linked to the
  final name (``link`` refuses an existing name, so two writers cannot both
  succeed, and a process killed in between leaves only a temporary file). On
  S3: a conditional PUT (``If-None-Match: *``), which the store refuses when
  the object exists.
* Local files are owner-only (``0600``, directories ``0700``) whatever the
  umask, or group-readable (``0640``/``0750``) with ``group_read``. Only what
  this class creates gets these modes: existing files and directories are
  left as they are (:mod:`pipeline.store.permissions` reports and fixes them).
* Errors are raised as :class:`StorageError`, which callers may retry, or as
  its subclass :class:`TerminalStorageError` when retrying cannot help
  (permission denied, read-only or full disk, missing bucket, rejected
  credentials); its message says what the operator must fix.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

import pyarrow as pa

from pipeline.store.errors import storage_error


@dataclass(frozen=True, slots=True)
class Stamp:
    """What a listing says of a file: its size and modification time, which together tag its version.

    Locally the time has nanoseconds; on S3 it is the object's last-modified time
    (whole seconds), and ``tag`` is the object's ETag, which changes with its content.
    """

    size: int
    modified_ns: int
    tag: str | None = None

    def same_version(self, other: Stamp) -> bool:
        """True if both stamps describe the same version of a file.

        With both tags known, the tags decide (an S3 ETag changes with the content; a
        time with whole seconds could not tell two writes of one second apart);
        otherwise size and modification time.
        """
        if self.tag is not None and other.tag is not None:
            return self.tag == other.tag and self.size == other.size
        return self.size == other.size and self.modified_ns == other.modified_ns


class Storage(Protocol):
    """A store of files addressed by store-relative paths (``/``-separated)."""

    def publish(self, relative_path: str, data: bytes) -> Stamp | None:
        """Atomically create or replace ``relative_path`` with ``data``.

        Returns the :class:`Stamp` of the version this call published, when the
        store tells it without another request that could see a later version
        (locally the temporary file's status before the rename, on S3 the PUT's
        ETag); None when it cannot.
        """

    def create_exclusive(self, relative_path: str, data: bytes) -> bool:
        """Create ``relative_path`` with ``data`` unless it exists; True if this call created it."""

    def read(self, relative_path: str) -> bytes | None:
        """The content of ``relative_path``, or None if it does not exist."""

    def open_input(self, relative_path: str) -> pa.NativeFile:
        """A random-access reader of ``relative_path`` (e.g. to read only a Parquet footer)."""

    def delete(self, relative_path: str) -> None:
        """Remove ``relative_path`` if it exists."""

    def sweep_temporaries(self, relative_dir: str, older_than: datetime | None = None) -> int:
        """Remove the temporary files of publishes cut short under ``relative_dir``; return how many.

        A publish in flight whose temporary file is removed fails and is retried; with
        ``older_than``, only temporary files last modified before it are removed (a publish
        takes milliseconds, so an old one is an orphan and no publish in flight fails).
        """

    def list(self, relative_dir: str, modified_since: datetime | None = None) -> list[str]:
        """Store-relative paths of the files directly or indirectly under ``relative_dir``.

        With ``modified_since``, only files whose modification time (as the
        store's clock records it) is at or after that instant.
        """

    def list_stamped(self, relative_dir: str) -> dict[str, Stamp]:
        """As :meth:`list` without ``modified_since``, with each file's :class:`Stamp`."""

    def stamp(self, relative_path: str) -> Stamp | None:
        """The :class:`Stamp` of ``relative_path``, or None if it does not exist."""

    def describe(self) -> str:
        """A human-readable location, for logs (no credentials)."""


class ForwardingStorage:
    """A :class:`Storage` that passes every call on to another; wrappers override what they add to."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def publish(self, relative_path: str, data: bytes) -> Stamp | None:
        return self._storage.publish(relative_path, data)

    def create_exclusive(self, relative_path: str, data: bytes) -> bool:
        return self._storage.create_exclusive(relative_path, data)

    def read(self, relative_path: str) -> bytes | None:
        return self._storage.read(relative_path)

    def open_input(self, relative_path: str) -> pa.NativeFile:
        return self._storage.open_input(relative_path)

    def delete(self, relative_path: str) -> None:
        self._storage.delete(relative_path)

    def sweep_temporaries(self, relative_dir: str, older_than: datetime | None = None) -> int:
        return self._storage.sweep_temporaries(relative_dir, older_than)

    def list(self, relative_dir: str, modified_since: datetime | None = None) -> list[str]:
        return self._storage.list(relative_dir, modified_since)

    def list_stamped(self, relative_dir: str) -> dict[str, Stamp]:
        return self._storage.list_stamped(relative_dir)

    def stamp(self, relative_path: str) -> Stamp | None:
        return self._storage.stamp(relative_path)

    def describe(self) -> str:
        return self._storage.describe()


class LocalStorage:
    """Files under a local directory."""

    def __init__(self, root: Path, group_read: bool = False) -> None:
        self.root = root
        self.file_mode, self.dir_mode = modes(group_read)

    def describe(self) -> str:
        return str(self.root.resolve())

    def publish(self, relative_path: str, data: bytes) -> Stamp:
        target = self.root / relative_path
        try:
            make_dirs(target.parent, self.dir_mode)
            temp = self._write_temporary(target, data)
            try:
                # The rename keeps the inode, so this is the published version's stamp; taken
                # after the publish it could be that of a file another writer put there since.
                status = temp.stat()
                os.replace(temp, target)
            except BaseException:
                temp.unlink(missing_ok=True)
                raise
            _fsync_directory(target.parent)
        except OSError as exc:
            raise storage_error(f"publishing {relative_path}", exc) from exc
        return Stamp(status.st_size, status.st_mtime_ns)

    def create_exclusive(self, relative_path: str, data: bytes) -> bool:
        target = self.root / relative_path
        try:
            make_dirs(target.parent, self.dir_mode)
            temp = self._write_temporary(target, data)
            try:
                os.link(temp, target, follow_symlinks=False)
            except FileExistsError:
                return False
            finally:
                temp.unlink(missing_ok=True)
            _fsync_directory(target.parent)
            return True
        except OSError as exc:
            raise storage_error(f"creating {relative_path}", exc) from exc

    def _write_temporary(self, target: Path, data: bytes) -> Path:
        """A fsynced temporary file of ``data`` beside ``target``, with this store's file mode."""
        temp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        descriptor = os.open(temp, flags, self.file_mode)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                os.fchmod(handle.fileno(), self.file_mode)  # the umask may have taken bits away
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return temp

    def read(self, relative_path: str) -> bytes | None:
        try:
            return (self.root / relative_path).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise storage_error(f"reading {relative_path}", exc) from exc

    def open_input(self, relative_path: str) -> pa.NativeFile:
        try:
            return pa.OSFile(str(self.root / relative_path))
        except OSError as exc:
            raise storage_error(f"opening {relative_path}", exc) from exc

    def delete(self, relative_path: str) -> None:
        target = self.root / relative_path
        try:
            target.unlink(missing_ok=True)
        except OSError as exc:
            raise storage_error(f"deleting {relative_path}", exc) from exc

    def sweep_temporaries(self, relative_dir: str, older_than: datetime | None = None) -> int:
        removed = 0
        before = float("inf") if older_than is None else older_than.timestamp()
        try:
            for path, entry in _walk(self.root, relative_dir):
                if not (entry.name.startswith(".") and entry.name.endswith(".tmp") and entry.is_file()):
                    continue
                try:
                    if entry.stat().st_mtime >= before:
                        continue
                except FileNotFoundError:
                    continue
                (self.root / path).unlink(missing_ok=True)
                removed += 1
        except OSError as exc:
            raise storage_error(f"sweeping {relative_dir}", exc) from exc
        return removed

    def list(self, relative_dir: str, modified_since: datetime | None = None) -> list[str]:
        since = float("-inf") if modified_since is None else modified_since.timestamp()
        return [path for path, status in _files(self.root, relative_dir) if status.st_mtime >= since]

    def list_stamped(self, relative_dir: str) -> dict[str, Stamp]:
        return {
            path: Stamp(status.st_size, status.st_mtime_ns)
            for path, status in _files(self.root, relative_dir)
        }

    def stamp(self, relative_path: str) -> Stamp | None:
        try:
            status = (self.root / relative_path).stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise storage_error(f"reading the size of {relative_path}", exc) from exc
        return Stamp(status.st_size, status.st_mtime_ns)


def modes(group_read: bool) -> tuple[int, int]:
    """The modes of the files and directories a local store creates: owner-only, or group-readable."""
    return (0o640, 0o750) if group_read else (0o600, 0o700)


def make_dirs(directory: Path, mode: int = 0o700) -> None:
    """Create ``directory`` and its missing parents with ``mode``, whatever the umask.

    Directories that exist already keep their mode.
    """
    missing = []
    while not directory.is_dir():
        missing.append(directory)
        directory = directory.parent
    for created in reversed(missing):
        try:
            created.mkdir(mode)
        except FileExistsError:
            continue  # created meanwhile by another writer, with its own mode
        os.chmod(created, mode)  # mkdir's mode is filtered by the umask


def _files(root: Path, relative_dir: str) -> list[tuple[str, os.stat_result]]:
    """The regular files under ``relative_dir`` not named ``.*``, sorted by path, with their status."""
    files = []
    for path, entry in _walk(root, relative_dir):
        if entry.name.startswith("."):
            continue
        try:
            status = entry.stat()
        except FileNotFoundError:
            continue
        if stat.S_ISREG(status.st_mode):
            files.append((path, status))
    return sorted(files, key=lambda file: file[0])


def _walk(root: Path, relative_dir: str) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Every entry under ``root/relative_dir`` but its directories, with its store-relative path.

    One ``scandir`` per directory, and no pattern matching: a day holds tens of thousands of files.
    """
    pending = [relative_dir.strip("/")]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(root / folder) as entries:
                for entry in entries:
                    path = f"{folder}/{entry.name}" if folder else entry.name
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(path)
                    else:
                        yield path, entry
        except (FileNotFoundError, NotADirectoryError):
            continue


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
