"""Naming a data subject."""

from __future__ import annotations

import pytest

from pipeline.errors import RequestRefusedError
from pipeline.lifecycle.subject import subject_from_number
from tests.support.lifecycle_store import CLASSIFIER, KEYS


def test_a_subject_must_be_a_number_or_extension() -> None:
    with pytest.raises(RequestRefusedError, match="WITHHELD"):
        subject_from_number("anonymous", KEYS, CLASSIFIER)
