"""A store held in memory, for tests that send many thousands of requests through the processors."""

from __future__ import annotations

import itertools
import time
from datetime import datetime

import pyarrow as pa

from pipeline.store.storage import Stamp

_STORES = itertools.count(1)


class MemoryStorage:
    """The :class:`~pipeline.store.storage.Storage` protocol over a dict, with every folder indexed.

    Listing a folder costs what it holds, not what the store holds, so a register of
    a hundred thousand requests stays as quick to read one request from as a small one.
    """

    def __init__(self) -> None:
        # Each store its own location: the sealed chains remember their tail per location, and
        # stores sharing one name would take each other's tail for theirs (and list every time).
        self._location = f"memory store {next(_STORES)}"
        self._files: dict[str, tuple[bytes, float]] = {}
        self._folders: dict[str, set[str]] = {}

    def _folders_of(self, path: str) -> list[str]:
        parts = path.split("/")[:-1]
        return ["/".join(parts[: end + 1]) for end in range(len(parts))]

    def publish(self, relative_path: str, data: bytes) -> None:
        self._files[relative_path] = (data, time.time())
        for folder in self._folders_of(relative_path):
            self._folders.setdefault(folder, set()).add(relative_path)

    def create_exclusive(self, relative_path: str, data: bytes) -> bool:
        if relative_path in self._files:
            return False
        self.publish(relative_path, data)
        return True

    def read(self, relative_path: str) -> bytes | None:
        stored = self._files.get(relative_path)
        return stored[0] if stored is not None else None

    def open_input(self, relative_path: str) -> pa.NativeFile:
        data = self.read(relative_path)
        if data is None:
            raise OSError(f"no file {relative_path}")
        return pa.BufferReader(data)

    def delete(self, relative_path: str) -> None:
        if self._files.pop(relative_path, None) is not None:
            for folder in self._folders_of(relative_path):
                self._folders[folder].discard(relative_path)

    def sweep_temporaries(self, relative_dir: str, older_than: datetime | None = None) -> int:
        return 0  # a publish here is one assignment: nothing is ever left half-written

    def list(self, relative_dir: str, modified_since: datetime | None = None) -> list[str]:
        since = float("-inf") if modified_since is None else modified_since.timestamp()
        paths = self._folders.get(relative_dir.rstrip("/"), set())
        return sorted(path for path in paths if self._files[path][1] >= since)

    def list_stamped(self, relative_dir: str) -> dict[str, Stamp]:
        return {path: stamp for path in self.list(relative_dir) if (stamp := self.stamp(path)) is not None}

    def stamp(self, relative_path: str) -> Stamp | None:
        stored = self._files.get(relative_path)
        return Stamp(len(stored[0]), int(stored[1] * 1e9)) if stored is not None else None

    def describe(self) -> str:
        return self._location
