"""Storage errors: the ones a retry may cure, and the ones only the operator can fix.

Contract: :func:`storage_error` turns an ``OSError`` (or an S3 client's error) of a store operation into
a :class:`TerminalStorageError` whose message ends with what to fix when the
cause cannot pass by itself (permission denied, read-only or full disk,
missing bucket, rejected credentials), and into a plain :class:`StorageError`
otherwise. Messages name store paths, never file contents.
"""

from __future__ import annotations

import errno

from pipeline.errors import CdrpipeError


class StorageError(CdrpipeError):
    """A storage operation failed; nothing was published by it. Retrying may help."""


class TerminalStorageError(StorageError):
    """A storage operation failed in a way only the operator can fix; the message says how."""


_TERMINAL_ERRNOS = {
    errno.EACCES: "give the worker's user write permission on the store directory",
    errno.EPERM: "give the worker's user write permission on the store directory",
    errno.EROFS: "the store is on a read-only file system: point CDRPIPE_STORE at a writable one",
    errno.ENOSPC: "the store's disk is full: free space or move CDRPIPE_STORE",
    errno.EDQUOT: "the store's disk quota is exhausted: raise it or free space",
}
_TERMINAL_S3_ERRORS = {
    "ACCESS_DENIED": "the credentials may not use this bucket: check the bucket policy and AWS credentials",
    "AccessDenied": "the credentials may not use this bucket: check the bucket policy and AWS credentials",
    "NO_SUCH_BUCKET": "the bucket does not exist: create it or correct CDRPIPE_STORE",
    "NoSuchBucket": "the bucket does not exist: create it or correct CDRPIPE_STORE",
    "InvalidAccessKeyId": "the AWS access key is unknown: correct the credentials",
    "SignatureDoesNotMatch": "the AWS secret key is wrong: correct the credentials",
}


def storage_error(action: str, exc: Exception) -> StorageError:
    """The error to raise when ``action`` (e.g. ``publishing cdr/…``) failed with ``exc``."""
    detail = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
    number = exc.errno if isinstance(exc, OSError) else None
    fix = _TERMINAL_ERRNOS.get(number or 0) or next(
        (hint for code, hint in _TERMINAL_S3_ERRORS.items() if code in str(exc)), None
    )
    if fix is not None:
        return TerminalStorageError(f"{action} failed: {detail}: {fix}")
    return StorageError(f"{action} failed: {detail}")
