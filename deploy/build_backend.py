"""setuptools' build backend, with mypy added to the build requirements when
``CHURNWATCH_MYPYC=1`` asks for the compiled core (setup.py): a pure Python build
does not download it."""

import os

from setuptools.build_meta import *  # noqa: F403 - every hook setuptools has

MYPYC = ["mypy==2.4.1"]  # the mypyc the compiled core is built and tested with


def _compiler() -> list[str]:
    return MYPYC if os.environ.get("CHURNWATCH_MYPYC") == "1" else []


# setuptools' own hooks would run setup.py, which needs mypyc already when it compiles;
# setup.py asks for nothing else (setuptools >= 70.1 builds wheels without `wheel`)
def get_requires_for_build_wheel(config_settings=None):  # noqa: ANN001, ANN201
    return _compiler()


def get_requires_for_build_editable(config_settings=None):  # noqa: ANN001, ANN201
    return _compiler()
