"""How much property tests and fuzzers explore: fixed and modest in CI, random and large in `make fuzz`.

``CDRPIPE_FUZZ=1`` (set by ``make fuzz``) loads the Hypothesis ``fuzz`` profile
(random seeds) and multiplies every example count by :data:`FUZZ_FACTOR`; the
default ``ci`` profile is derandomized, so a green run stays green. A bug found
by fuzzing becomes an explicit ``@example`` (or a fixed input) in the test.
"""

from __future__ import annotations

import os
import random

from hypothesis import settings

FUZZING = os.environ.get("CDRPIPE_FUZZ") == "1"
FUZZ_FACTOR = 25

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("fuzz", derandomize=False, deadline=None, print_blob=True)
settings.load_profile("fuzz" if FUZZING else "ci")


def examples(count: int) -> int:
    """The number of examples a property test runs: ``count`` in CI, many more when fuzzing."""
    return count * FUZZ_FACTOR if FUZZING else count


def mutation_seed(fixed: int) -> int:
    """The seed of a mutation fuzzer: ``fixed`` in CI, a fresh one when fuzzing (report it on failure)."""
    return random.SystemRandom().randrange(2**32) if FUZZING else fixed
