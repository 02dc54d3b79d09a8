"""The engine's path compiled by mypyc (``setup.py``) gives what the Python gives.

CI runs this tier with ``CHURNWATCH_MYPYC=1 ./dev test tests/integration``: the
modules are compiled in place there, as in the image. This checks that they are (and
that a plain ``./dev test`` runs the Python), then replays one simulated history with
the installed modules and with the same sources run by the interpreter (a copy
without the compiled ones): every alert, score and count must be the same.
``benchmarks/bench_compiled.py`` measures what the compiled core saves.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REPLAY = """
import models.engine
from models.replay import replay
from models.simulator import SimConfig, simulate
r = replay(list(simulate(SimConfig(accounts=40, days=45, seed=11))))
print(models.engine.__file__, len(r.alerts), r.digest())
"""


def run(path: Path | None, cwd: Path) -> tuple[str, int, str]:
    env = {**os.environ, "PYTHONPATH": str(path)} if path else dict(os.environ)
    done = subprocess.run([sys.executable, "-c", REPLAY], env=env, cwd=cwd, text=True,
                          capture_output=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    module, alerts, digest = done.stdout.split()
    return module, int(alerts), digest


def test_the_compiled_engine_gives_what_the_python_gives(tmp_path: Path):
    installed, alerts, digest = run(None, ROOT)
    compiled = not installed.endswith(".py")
    assert compiled == (os.environ.get("CHURNWATCH_MYPYC") == "1"), installed
    python = tmp_path / "python"
    shutil.copytree(ROOT / "models", python / "models", ignore=shutil.ignore_patterns("*.so"))
    module, alerts_py, digest_py = run(python, tmp_path)
    assert module == str(python / "models" / "engine.py")
    assert alerts > 0 and (alerts, digest) == (alerts_py, digest_py)
