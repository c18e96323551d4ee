"""Hypothesis profiles: CI replays a fixed set of examples (`HYPOTHESIS_PROFILE=ci`, set by `.ci/run`) so a
submission's verdict does not depend on the draw; local runs keep exploring new examples."""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
