"""Hypothesis runs the same examples on every run (CI stays reproducible); set
HYPOTHESIS_PROFILE=explore to search new ones, with more examples."""

import os

from hypothesis import settings

settings.register_profile("deterministic", derandomize=True)
settings.register_profile("explore", max_examples=400)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))
