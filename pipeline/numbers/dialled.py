"""The dialled digits of a party string: what every spelling of one number has in common.

Contract: :func:`dialled_key` is cheap, never raises, and gives spellings that
differ only in separators, display names, URI scheme, host or parameters the
same key; ``""`` for a withheld party.
"""

from __future__ import annotations

import re

WITHHELD_WORDS = frozenset(
    {
        "",
        "anonymous",
        "restricted",
        "unknown",
        "unavailable",
        "private",
        "withheld",
        "anonymous@anonymous.invalid",
    }
)
_SEPARATORS = re.compile(r"[\s.\-/()\[\]]+")
_URI_SCHEMES = ("tel:", "sip:", "sips:")
_PLAIN_DIGITS = re.compile(r"\+?[0-9]+")


def dialled_key(raw: str) -> str:
    """The dialled digits of ``raw`` without separators or URI parts; ``""`` if it is withheld.

    Spellings that differ only in separators, display names, URI scheme, host
    or parameters share one key, and :meth:`NumberClassifier.classify_dialled`
    gives the same result for them; computing the key is cheap.
    """
    if _PLAIN_DIGITS.fullmatch(raw):  # the most common spelling has nothing to take away
        return raw
    dialled = _dialled_part(raw)
    if dialled.lower() in WITHHELD_WORDS:
        return ""
    return _SEPARATORS.sub("", dialled)


def _dialled_part(raw: str) -> str:
    """The dialled digits of ``raw``, without display name, URI scheme, host or parameters."""
    text = raw.strip()
    if "<" in text and text.endswith(">"):
        text = text[text.rindex("<") + 1 : -1]
    lowered = text.lower()
    for scheme in _URI_SCHEMES:
        if lowered.startswith(scheme):
            text = text[len(scheme) :]
            text = text.split("@", 1)[0]
            break
    return text.split(";", 1)[0].strip()
