"""The publish-then-commit protocol: the batch it accepts, the publisher, the committer, their outcomes.

The sink never imports the ingest stage or the lifecycle: it defines what it accepts (``batch``)
and what it answers (``outcomes``); files are written through :mod:`pipeline.store`.
"""
