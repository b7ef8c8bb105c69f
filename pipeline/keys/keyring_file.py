"""The keyring at a path, followed: loaded again when a rotation replaces the file."""

from __future__ import annotations

from pathlib import Path

from pipeline.keys.keyring import Keyring, load_keyring


class KeyringFile:
    """The keyring at a path, loaded again when the file changes (a rotation replaces it).

    :meth:`current` costs one ``stat`` while the file is unchanged: a rotation
    writes a new file and renames it over the old one, which changes its inode
    and modification time. A changed file that does not validate raises
    :class:`~pipeline.errors.KeyringError`, like :func:`load_keyring`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._keyring: Keyring | None = None

    def current(self) -> Keyring:
        """The keyring as the file holds it now."""
        try:
            status = self.path.stat()
        except FileNotFoundError:
            status = None
        seen = (status.st_ino, status.st_mtime_ns, status.st_size) if status is not None else None
        if self._keyring is None or seen != self._seen:
            self._keyring = load_keyring(self.path)
            self._seen = seen
        return self._keyring

    def changed(self) -> Keyring | None:
        """The keyring if the file changed since the last call (or this is the first), else None."""
        before = self._keyring
        current = self.current()
        return current if current is not before else None
