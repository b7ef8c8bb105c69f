"""Assemble the ingest path's parts from validated settings.

Contract: :func:`build_ingestor` raises :class:`~pipeline.errors.ConfigError`
(a keyring problem included) before anything touches Kafka or the store.
"""

from __future__ import annotations

from pipeline.config import Settings
from pipeline.formats import canonical_json
from pipeline.ingest import Ingestor
from pipeline.keyring import load_keyring
from pipeline.msisdn import NumberClassifier
from pipeline.pseudonym import PartyPseudonymizer, Pseudonymizer


def build_parties(settings: Settings) -> PartyPseudonymizer:
    """Number classification and pseudonyms under the keyring's active key."""
    keyring = load_keyring(settings.keyring)
    return PartyPseudonymizer(
        NumberClassifier(settings.region, settings.extension_digits),
        Pseudonymizer(keyring.active),
        settings.cache_size,
    )


def build_ingestor(settings: Settings) -> Ingestor:
    """The ingest path for ``settings``: canonical JSON in, pseudonymised rows out."""
    return Ingestor(
        canonical_json.decode, build_parties(settings), settings.flush_rows, settings.flush_seconds
    )
