"""Assemble the ingest path's parts from validated settings.

Contract: the builders raise :class:`~pipeline.errors.ConfigError` (keyring,
mapping and format problems included) before anything touches Kafka or the store.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from pipeline.config.settings import Settings
from pipeline.formats import DecodeContext
from pipeline.formats.dialplan import Dialplan
from pipeline.formats.mapped_csv import load_mappings
from pipeline.formats.selection import FormatSelector, builtin_decoders
from pipeline.ingest.ingestor import Ingestor
from pipeline.ingest.translation import KeyTranslator
from pipeline.keys.keyring import Keyring, load_keyring
from pipeline.keys.pseudonym import PartyPseudonymizer, Pseudonymizer
from pipeline.numbers.msisdn import NumberClassifier


def build_classifier(settings: Settings) -> NumberClassifier:
    """Number classification for the configured region and extension lengths."""
    return NumberClassifier(settings.numbers.region, settings.numbers.extension_digits)


def build_parties(settings: Settings, keyring: Keyring | None = None) -> PartyPseudonymizer:
    """Number classification and pseudonyms under the keyring's active key, per configured tenant."""
    keyring = keyring or load_keyring(settings.numbers.keyring)
    return PartyPseudonymizer(
        build_classifier(settings),
        Pseudonymizer(keyring.active),
        settings.numbers.cache_size,
        dict(settings.numbers.tenants),
    )


def build_keys(settings: Settings, keyring: Keyring) -> tuple[PartyPseudonymizer, KeyTranslator]:
    """The active key's pseudonymiser and its translator to the keyring's other keys."""
    parties = build_parties(settings, keyring)
    translator = KeyTranslator.for_keyring(
        parties, keyring, build_classifier(settings), settings.numbers.cache_size
    )
    return parties, translator


def build_formats(settings: Settings) -> FormatSelector:
    """The decoders (built-in and mapped CSV layouts) and the per-topic format choice."""
    ingest = settings.ingest
    dialplan = Dialplan(
        internal_contexts=frozenset(ingest.asterisk_internal_contexts),
        inbound_contexts=frozenset(ingest.asterisk_inbound_contexts),
        trunks=frozenset(ingest.asterisk_trunks),
    )
    context = DecodeContext(ZoneInfo(ingest.source_timezone), build_classifier(settings), dialplan)
    decoders = builtin_decoders(load_mappings(settings.ingest.mappings_dir))
    return FormatSelector(decoders, dict(settings.ingest.topic_formats), context)


def build_ingestor(settings: Settings, keyring: Keyring | None = None) -> Ingestor:
    """The ingest path for ``settings`` (and ``keyring``, or the one its file holds)."""
    parties, translator = build_keys(settings, keyring or load_keyring(settings.numbers.keyring))
    return Ingestor(
        build_formats(settings),
        parties,
        settings.ingest.flush_rows,
        settings.ingest.flush_seconds,
        max_buffered_rows=settings.ingest.max_buffered_rows,
        retention_days=settings.lifecycle.retention_days,
        translator=translator,
    )
