"""Who may read a local store: finding files others can read, and taking that access away.

Contract: :func:`exposed` is a bounded check, cheap enough for every start of
the worker and the CLI: the store root, its top-level directories, the
directories under ``_cdrpipe/`` and at most ``sample`` files (the first ones
met, breadth first); it returns the paths whose mode grants more than the
store's own modes (:func:`~pipeline.store.storage.modes`: nothing for group or
others, or group read only). It never changes a mode. :func:`fix_permissions`
walks the whole store (symlinks are neither followed nor changed) and takes
the excess bits away from every file and directory; it never adds any.
"""

from __future__ import annotations

import os
import stat
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from pipeline.store.storage import modes

SAMPLE_FILES = 64


def _excess(mode: int, group_read: bool, directory: bool) -> int:
    """The bits of ``mode`` beyond what the store grants a file (or directory) to group and others."""
    file_mode, dir_mode = modes(group_read)
    allowed = (dir_mode if directory else file_mode) | stat.S_IRWXU
    return stat.S_IMODE(mode) & (stat.S_IRWXG | stat.S_IRWXO) & ~allowed


def exposed(root: Path, group_read: bool, sample: int = SAMPLE_FILES) -> list[Path]:
    """Paths of the local store at ``root`` that group or others may use beyond the store's modes."""
    if not root.is_dir():
        return []
    found: list[Path] = []
    files_seen = 0
    queue = deque([(root, 0)])
    while queue:
        directory, depth = queue.popleft()
        if _excess(directory.lstat().st_mode, group_read, directory=True):
            found.append(directory)
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError:
            continue
        for entry in entries:
            if entry.is_symlink():
                continue
            if entry.is_dir():
                # the root's areas, and _cdrpipe's record directories: a bounded number of directories
                if depth == 0 or (depth == 1 and directory.name == "_cdrpipe"):
                    queue.append((Path(entry.path), depth + 1))
            elif files_seen < sample:
                files_seen += 1
                if _excess(entry.stat(follow_symlinks=False).st_mode, group_read, directory=False):
                    found.append(Path(entry.path))
    return found


@dataclass(frozen=True, slots=True)
class FixReport:
    """What :func:`fix_permissions` changed."""

    files: int
    directories: int


def fix_permissions(root: Path, group_read: bool) -> FixReport:
    """Take away from every file and directory under ``root`` the access beyond the store's modes."""
    files = directories = 0
    for current, subdirectories, names in os.walk(root):
        for path, directory in [(Path(current), True)] + [(Path(current) / name, False) for name in names]:
            status = path.lstat()
            if stat.S_ISLNK(status.st_mode):
                continue
            excess = _excess(status.st_mode, group_read, directory)
            if excess:
                os.chmod(path, stat.S_IMODE(status.st_mode) & ~excess)  # never a symlink: skipped above
                files += not directory
                directories += directory
        subdirectories[:] = [name for name in subdirectories if not (Path(current) / name).is_symlink()]
    return FixReport(files, directories)
