"""A local store that counts the data files opened for reading (footer reads), for manifest tests."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from pipeline.store.storage import LocalStorage


class CountingStorage(LocalStorage):
    """A local store that counts the data files opened for reading (footer reads)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.opened: list[str] = []

    def open_input(self, relative_path: str) -> pa.NativeFile:
        self.opened.append(relative_path)
        return super().open_input(relative_path)
