"""Builds churnwatch: pure Python, or with ``CHURNWATCH_MYPYC=1`` the engine's per-event
path compiled to C by mypyc (docs/design.md, "The compiled core"). The rest of the
package metadata is in pyproject.toml; ``deploy/build_backend.py`` adds mypy to the
build requirements when it is asked for."""

import os

from setuptools import setup

# The pure core on the engine's per-event path (models/): the fold, its state, the
# features, the scores, the contract parser, the ingest's pseudonymisation. Not the
# state codec (msgspec structs), the learner (River) nor anything under streams/ (Faust, I/O).
COMPILED = [
    "models/account.py",
    "models/alerting.py",
    "models/churn.py",
    "models/contract.py",
    "models/engine.py",
    "models/features.py",
    "models/household/census.py",
    "models/household/evidence.py",
    "models/household/features.py",
    "models/household/geo.py",
    "models/household/places.py",
    "models/household/sessions.py",
    "models/household/state.py",
    "models/labels.py",
    "models/linear.py",
    "models/ordering.py",
    "models/outcomes.py",
    "models/partitioning.py",
    "models/privacy.py",
    "models/risk.py",
    "models/sharing.py",
    "models/timepolicy.py",
]


def compiled() -> list:
    if os.environ.get("CHURNWATCH_MYPYC") != "1":
        return []
    from mypyc.build import mypycify

    # mypy sees the dependencies as Any, installed or not (type-checking against them
    # took 8 minutes and made nothing faster): only our own code is compiled against
    # its types, and not against pyproject's strict settings (made for reading code: an
    # Any returned is no error here). multi_file: gcc in ~35 s, not one file in minutes.
    flags = [
        "--config-file=",
        "--no-site-packages",
        "--ignore-missing-imports",
        "--follow-imports=silent",
    ]
    return mypycify([*flags, *COMPILED], opt_level="3", multi_file=True)


setup(ext_modules=compiled())
