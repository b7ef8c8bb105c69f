"""Fuzzing: every decoder gets 100,000 malformed inputs and either decodes or raises its own error.

Inputs are mutations of the realistic samples (bit flips, cut, spliced, duplicated
and inserted bytes, structural characters, invalid UTF-8), from a fixed seed so a
failure reproduces; hypothesis adds structured JSON of arbitrary shape.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections import Counter
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipeline.formats import DecodeContext, asterisk_csv, canonical_json, freeswitch_json
from pipeline.formats.mapped_csv import MappedCsvDecoder, load_mapping
from pipeline.formats.selection import FormatSelector
from pipeline.record import CanonicalCdr, RecordRejectedError, RejectReason
from tests.support.fuzzing import examples, mutation_seed
from tests.support.helpers import REPO
from tests.support.samples import canonical_bytes, decode_context

INPUTS_PER_DECODER = examples(100_000)
DATA = REPO / "tests" / "data"
INTERESTING = [b'"', b",", b";", b"{", b"}", b"[", b"]", b":", b"\x00", b"\xff", b"\xc3", b"\n", b"\r",
               b"%", b"%2", b"-", b"+", b"9" * 12, b"-1", b"1e999", b"NaN", b"null", b'""', b"\\u0000",
               b"2026-02-30 25:61:61", b"99999999999999999999"]  # fmt: skip

Decode = Callable[[bytes, DecodeContext], CanonicalCdr]


def _mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(7)
        position = rng.randrange(len(data) + 1)
        if choice == 0 and data:
            data[min(position, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif choice == 1:
            data[position:position] = rng.choice(INTERESTING)
        elif choice == 2:
            del data[position : position + rng.randint(1, 32)]
        elif choice == 3:
            del data[position:]
        elif choice == 4:
            chunk = data[position : position + rng.randint(1, 64)]
            data[position:position] = chunk * rng.randint(1, 3)
        elif choice == 5:
            data[position:position] = rng.randbytes(rng.randint(1, 16))
        else:
            other = rng.choice(seeds)
            data = data[:position] + other[rng.randrange(len(other) + 1) :]
    return bytes(data)


def _fuzz(name: str, decode: Decode, seeds: list[bytes], seed: int) -> Counter[str]:
    """Outcomes of the worker's decode path (the format selector) over mutated inputs."""
    rng = random.Random(seed)
    selector = FormatSelector({name: decode}, {"cdr.fuzz": name}, decode_context())
    outcomes: Counter[str] = Counter()
    for _ in range(INPUTS_PER_DECODER):
        payload = _mutate(rng, seeds)
        try:
            selector.decode("cdr.fuzz", [], payload)
        except RecordRejectedError as rejected:
            outcomes[rejected.reason.value] += 1
            if rejected.reason is RejectReason.DECODER_ERROR:
                pytest.fail(f"{name} raised {rejected.message} on {payload!r} (seed {seed})")
        else:
            outcomes["decoded"] += 1
    return outcomes


def _asterisk_seeds() -> list[bytes]:
    return (DATA / "asterisk" / "Master.csv").read_bytes().splitlines()


def _freeswitch_seeds() -> list[bytes]:
    return [path.read_bytes() for path in sorted((DATA / "freeswitch").glob("*.json"))[:8]]


def _canonical_seeds() -> list[bytes]:
    return [canonical_bytes(), canonical_bytes(answer_time=None, queue=None, cost=1.5, currency="EUR")]


def _mapped() -> tuple[Decode, list[bytes]]:
    decoder = MappedCsvDecoder(load_mapping(REPO / "schemas" / "mappings" / "carrier-eu-semicolon.json"))
    return decoder.decode, (DATA / "mapped" / "carrier-eu-semicolon.csv").read_bytes().splitlines()[1:]


@pytest.mark.parametrize(
    ("name", "decode", "seeds"),
    [
        ("canonical-json", canonical_json.decode, _canonical_seeds()),
        ("asterisk-csv", asterisk_csv.decode, _asterisk_seeds()),
        ("freeswitch-json", freeswitch_json.decode, _freeswitch_seeds()),
        ("mapped-csv", *_mapped()),
    ],
)
def test_decoder_survives_100k_malformed_inputs(name: str, decode: Decode, seeds: list[bytes]) -> None:
    outcomes = _fuzz(name, decode, seeds, seed=mutation_seed(len(name)))
    assert set(outcomes) <= {"decoded", *(reason.value for reason in RejectReason)}, outcomes
    rejected = INPUTS_PER_DECODER - outcomes["decoded"]
    assert rejected > INPUTS_PER_DECODER // 10, f"the mutations were too mild to test {name}: {outcomes}"
    assert len(outcomes) >= 3, outcomes


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=20,
)
CANONICAL_KEYS = list(json.loads(canonical_bytes()))
FREESWITCH_VARIABLES = [
    "uuid", "destination_number", "caller_id_number", "duration", "billsec", "direction", "start_uepoch",
    "end_uepoch", "answer_uepoch", "start_stamp", "end_stamp", "answer_stamp", "hangup_cause", "cc_queue",
    "cc_agent",
]  # fmt: skip


@pytest.mark.slow
@settings(max_examples=examples(2000), suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from([*CANONICAL_KEYS, "variables", "callflow"]), json_values, max_size=14))
def test_json_decoders_only_raise_their_own_error_on_any_json_shape(document: dict) -> None:
    payload = json.dumps(document).encode()
    for decode in (canonical_json.decode, freeswitch_json.decode):
        with contextlib.suppress(RecordRejectedError):
            decode(payload, decode_context())


@settings(max_examples=examples(1000))
@given(
    st.dictionaries(
        st.sampled_from(FREESWITCH_VARIABLES), st.text(max_size=25) | st.integers().map(str), max_size=15
    )
)
# Found by fuzzing: '\u00b9'.isdigit() is true but int('\u00b9') raises.
@example({"duration": "\u00b9", "uuid": "u", "destination_number": "1001"})
@example({"duration": "\u0663", "billsec": "\uff11", "uuid": "u", "destination_number": "1001"})
@example({"start_uepoch": "\u00b9\u00b2", "end_uepoch": "1", "uuid": "u", "destination_number": "1"})
def test_freeswitch_variables_of_any_value(variables: dict[str, str]) -> None:
    with contextlib.suppress(RecordRejectedError):
        freeswitch_json.decode(json.dumps({"variables": variables}).encode(), decode_context())
