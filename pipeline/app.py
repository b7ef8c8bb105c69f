"""The documented Faust entry point (``faust -A pipeline.app worker``).

It is the app built in :mod:`pipeline.worker.app`; nothing else lives here.
"""

from pipeline.worker.app import app

__all__ = ["app"]
