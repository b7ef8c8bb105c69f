"""Lifecycle messages only cdrpipe's tools can write: the MAC, its key domain, and what a check refuses."""

from __future__ import annotations

import json
import logging

import pytest

from pipeline.keys.keyring import Key, Keyring
from pipeline.keys.macs import MacProblem
from pipeline.keys.pseudonym import Domain, derive_subkey
from pipeline.lifecycle.requests.chain import chain_key
from pipeline.lifecycle.requests.signing import (
    MESSAGE_MACS,
    message_digest,
    sign_message,
    verified_message,
)
from pipeline.observability.metrics import REGISTRY
from tests.support.lifecycle_store import KEYS

K1, K2 = KEYS.keys
OTHER = Keyring("x1", (Key("x1", bytes(range(100, 132)), "t"),))
REQUEST = {"request_id": "r-1", "subject": "0123456789abcdef0123456789abcdef", "requested_at": "2026-11-02"}


def _refused(message: str, reason: str) -> float:
    labels = {"message": message, "reason": reason}
    return REGISTRY.get_sample_value("cdrpipe_lifecycle_messages_refused_total", labels) or 0.0


def test_a_signed_message_verifies_and_keeps_its_field_order() -> None:
    payload = sign_message(json.dumps({"summary": "done", **REQUEST}).encode(), KEYS.active)
    document = json.loads(payload)
    assert list(document) == ["summary", *REQUEST, "signing_key_id", "mac"]
    assert document["signing_key_id"] == KEYS.active_id and len(document["mac"]) == 64
    checked = verified_message(payload, KEYS, "request", "test")
    assert checked is not None and json.loads(checked) == document


def test_a_message_signed_before_a_rotation_still_verifies_while_its_key_is_in_the_keyring() -> None:
    before = sign_message(json.dumps(REQUEST).encode(), K1)
    assert verified_message(before, KEYS, "request", "test") is not None  # active is k2 now
    assert verified_message(before, Keyring("k2", (K2,)), "request", "test") is None  # k1 retired


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (json.dumps(REQUEST).encode(), MacProblem.UNSIGNED),
        (b"not json", MacProblem.UNSIGNED),
        (b"[1, 2]", MacProblem.UNSIGNED),
        (None, MacProblem.UNSIGNED),
        (sign_message(json.dumps(REQUEST).encode(), OTHER.active), MacProblem.UNKNOWN_KEY),
        # a forger who knows another keyring's key id under its own secret
        (
            sign_message(json.dumps(REQUEST).encode(), Key("k2", bytes(range(50, 82)), "t")),
            MacProblem.MISMATCH,
        ),
    ],
)
def test_a_message_without_a_valid_mac_is_refused_counted_and_logged_without_its_payload(
    payload: bytes | None, reason: MacProblem, caplog: pytest.LogCaptureFixture
) -> None:
    before = _refused("request", reason)
    with caplog.at_level(logging.WARNING):
        assert verified_message(payload, KEYS, "request", "topic t offset 7") is None
    assert _refused("request", reason) == before + 1
    assert "topic t offset 7" in caplog.text and reason in caplog.text
    assert "0123456789abcdef" not in caplog.text and "r-1" not in caplog.text


@pytest.mark.parametrize(
    "change",
    [
        {"subject": ""},  # the forged erasure that emptied a genuine entry's subject
        {"request_id": "r-2"},
        {"action": "ended"},
        {"signing_key_id": "k1"},  # another key of the same keyring
    ],
)
def test_any_change_to_a_signed_message_breaks_its_mac(change: dict[str, str]) -> None:
    document = json.loads(sign_message(json.dumps(REQUEST).encode(), KEYS.active))
    changed = json.dumps({**document, **change}).encode()
    assert verified_message(changed, KEYS, "ledger", "test") is None


def test_a_key_given_twice_is_decoded_as_checked() -> None:
    genuine = sign_message(json.dumps(REQUEST).encode(), KEYS.active)
    # a forger prepends a second "subject": a parser that took the first one would read the forgery
    crafted = b'{"subject": "",' + genuine[1:]
    checked = verified_message(crafted, KEYS, "ledger", "test")
    assert checked is not None and json.loads(checked)["subject"] == REQUEST["subject"]
    assert checked.count(b'"subject"') == 1


def test_a_crafted_mac_never_crashes_the_check() -> None:
    document = json.loads(sign_message(json.dumps(REQUEST).encode(), KEYS.active))
    for mac in ("é" * 64, "", "0" * 64, "\udcff"):
        assert MESSAGE_MACS.check({**document, "mac": mac}, KEYS) is MacProblem.MISMATCH
    assert MESSAGE_MACS.check({**document, "signing_key_id": ["k2"]}, KEYS) is MacProblem.UNSIGNED


def test_the_signing_key_is_a_domain_of_its_own() -> None:
    key = KEYS.active
    signing = MESSAGE_MACS.derive(key)
    others = {chain_key(key), key.secret, derive_subkey(key.secret, Domain.SUBSCRIBER)}
    others |= {derive_subkey(key.secret, Domain.EXTENSION, "t"), derive_subkey(key.secret, Domain.AGENT, "t")}
    assert len(signing) == 32 and signing not in others
    assert MESSAGE_MACS.derive(K1) != signing


def test_the_digest_names_the_exact_bytes() -> None:
    payload = sign_message(json.dumps(REQUEST).encode(), KEYS.active)
    assert message_digest(payload) == message_digest(bytes(payload))
    assert message_digest(payload) != message_digest(payload + b" ")
