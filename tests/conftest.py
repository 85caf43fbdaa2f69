"""Hypothesis profiles: 'ci' (default, fast) and 'long' (MINIVM_HYPOTHESIS=long).

MINIVM_EXAMPLES overrides the number of examples per property in either
profile, e.g. MINIVM_EXAMPLES=10000 for a long fuzzing run (see docs/testing.md).
"""

import os

from hypothesis import HealthCheck, settings

_examples = os.environ.get("MINIVM_EXAMPLES")
settings.register_profile(
    "ci", max_examples=int(_examples or 40), deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile(
    "long", max_examples=int(_examples or 10_000), deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("MINIVM_HYPOTHESIS", "ci"))
