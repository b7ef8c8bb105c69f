"""Where published files live: a local directory (more backends plug in here).

Contract: :meth:`Storage.publish` makes a complete file visible under its final
name atomically (absent or complete, never partial) and durably before it
returns; a failed publish leaves no file under the final name. Temporary files
start with ``.`` and never end in ``.parquet``, so readers' globs skip them.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Protocol


class Storage(Protocol):
    """A store of immutable files addressed by store-relative paths."""

    def publish(self, relative_path: str, data: bytes) -> None:
        """Atomically create or replace ``relative_path`` with ``data``."""

    def describe(self) -> str:
        """A human-readable location, for logs (no credentials)."""


class LocalStorage:
    """Files under a local directory; publish = temp file, fsync, rename, fsync directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def describe(self) -> str:
        return str(self.root.resolve())

    def publish(self, relative_path: str, data: bytes) -> None:
        target = self.root / relative_path
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
        try:
            with open(temp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _fsync_directory(target.parent)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def open_storage(location: str) -> Storage:
    """The storage for a ``CDRPIPE_STORE`` value (a local path)."""
    return LocalStorage(Path(location))
