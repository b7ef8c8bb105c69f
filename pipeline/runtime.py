"""Assemble the ingest path's parts from validated settings.

Contract: the builders raise :class:`~pipeline.errors.ConfigError` (keyring,
mapping and format problems included) before anything touches Kafka or the store.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from pipeline.config import Settings
from pipeline.formats import DecodeContext
from pipeline.formats.mapped_csv import load_mappings
from pipeline.formats.selection import FormatSelector, builtin_decoders
from pipeline.ingest import Ingestor
from pipeline.keyring import load_keyring
from pipeline.msisdn import NumberClassifier
from pipeline.pseudonym import PartyPseudonymizer, Pseudonymizer


def build_classifier(settings: Settings) -> NumberClassifier:
    """Number classification for the configured region and extension lengths."""
    return NumberClassifier(settings.region, settings.extension_digits)


def build_parties(settings: Settings) -> PartyPseudonymizer:
    """Number classification and pseudonyms under the keyring's active key, per configured tenant."""
    keyring = load_keyring(settings.keyring)
    return PartyPseudonymizer(
        build_classifier(settings), Pseudonymizer(keyring.active), settings.cache_size, dict(settings.tenants)
    )


def build_formats(settings: Settings) -> FormatSelector:
    """The decoders (built-in and mapped CSV layouts) and the per-topic format choice."""
    context = DecodeContext(ZoneInfo(settings.source_timezone), build_classifier(settings))
    decoders = builtin_decoders(load_mappings(settings.mappings_dir))
    return FormatSelector(decoders, dict(settings.topic_formats), context)


def build_ingestor(settings: Settings) -> Ingestor:
    """The ingest path for ``settings``."""
    return Ingestor(
        build_formats(settings),
        build_parties(settings),
        settings.flush_rows,
        settings.flush_seconds,
        max_buffered_rows=settings.max_buffered_rows,
        retention_days=settings.retention_days,
    )
