"""The Faust app: settings, services and web views. Glue only.

Faust settings are passed explicitly and Faust's own environment lookup is
disabled (``env={}``): only ``CDRPIPE_*`` variables configure the worker.
"""

from __future__ import annotations

import faust

from pipeline import log_scrub
from pipeline.config import load_settings
from pipeline.ingest_service import IngestService
from pipeline.runtime import build_ingestor
from pipeline.sink.publisher import BatchPublisher
from pipeline.sink.storage import open_storage

log_scrub.install()
settings = load_settings()

app = faust.App(
    settings.app_id,
    broker=settings.broker,
    web_port=settings.web_port,
    datadir=str(settings.state_dir),
    store="memory://",
    autodiscover=False,
    topic_replication_factor=1,
    broker_session_timeout=settings.session_timeout_s,
    broker_heartbeat_interval=settings.session_timeout_s / 3,
    env={},
)


@app.service
class CdrIngest(IngestService):
    """The ingest service bound to this app's settings."""

    def __init__(self, **kwargs: object) -> None:
        publisher = BatchPublisher(open_storage(settings.store))
        super().__init__(settings, build_ingestor(settings), publisher, **kwargs)
