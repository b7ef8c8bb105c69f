"""``cdrpipe worker`` whose first lifecycle rewrite, once armed, waits in its thread until told to go.

Run as ``python -m tests.support.paused_worker worker ...`` (the ``cdrpipe`` command line) with
``PAUSED_WORKER_DIR`` set to a directory.
While ``<dir>/armed`` exists, the next file the lifecycle rewrites (read, rows taken out, not yet
written back) stops there: the worker removes ``armed``, creates ``<dir>/paused`` and waits for
``<dir>/go``. That is a lifecycle request held in a thread for as long as a test needs, between
reading a file and writing it back, which no rebalance can cancel.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from pipeline.cli import main
from pipeline.lifecycle.operations import rewriter


def _pausing(encode: Any, control: Path) -> Any:
    def encode_after_go(*args: Any, **kwargs: Any) -> Any:
        armed = control / "armed"
        if armed.exists():
            armed.unlink()
            (control / "paused").touch()
            while not (control / "go").exists():
                time.sleep(0.05)
        return encode(*args, **kwargs)

    return encode_after_go


if __name__ == "__main__":
    rewriter.encode = _pausing(rewriter.encode, Path(os.environ["PAUSED_WORKER_DIR"]))
    main()
