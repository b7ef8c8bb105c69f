"""Compaction: a call date's small files merged into few large ones, exactly once (see :mod:`.compactor`)."""
