"""``python -m pipeline`` is the ``cdrpipe`` command."""

from pipeline.cli import main

main()
