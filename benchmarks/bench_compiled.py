"""The compiled core (issue #12): the same engine as Python and as mypyc built it.

    python benchmarks/bench_compiled.py                       # builds it, ~3 minutes here
    python benchmarks/bench_compiled.py --accounts 1000 --days 120 --runs 5
    python benchmarks/bench_compiled.py --wheel dist/churnwatch-0.1.0-cp311-...whl

Builds churnwatch's wheel with ``CHURNWATCH_MYPYC=1`` (``setup.py``; or takes
``--wheel``), unpacks it twice: as built, and without its compiled modules (the same
sources, run by the interpreter). Then, in each of ``--runs`` rounds, one process per
variant (their order alternating) measures over one simulated history:

  stages   CPU µs/event (``time.process_time``) of contract parse, internal codec,
           engine and state encode (``bench_scale.stages``: buffers of 1000)
  replay   CPU µs/event of ``models.replay`` (parse, engine, learner: the worker's
           path without Kafka and Faust)

and a digest of what the replay gave (every alert, the last score of every account,
the counts, what the alerts achieved). The table prints min/median/max per variant and
the ratio python/compiled of each round; the run fails (exit 1) unless the digests of
every process agree: compiled, the engine must give the very same outputs.
Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("python", "compiled")


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def build_wheel(out: Path) -> Path:
    """churnwatch's wheel with the compiled core (pip, ``CHURNWATCH_MYPYC=1``)."""
    say("building the compiled wheel (mypyc, gcc) ...")
    env = {**os.environ, "CHURNWATCH_MYPYC": "1"}
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)]
    subprocess.run(cmd, env=env, check=True)
    (wheel,) = out.glob("churnwatch-*.whl")
    return wheel


def unpack(wheel: Path, into: Path) -> dict[str, Path]:
    """The wheel as built, and without its compiled modules (its .py files run)."""
    dirs = {v: into / v for v in VARIANTS}
    for d in dirs.values():
        with zipfile.ZipFile(wheel) as z:
            z.extractall(d)
    compiled = list(dirs["compiled"].rglob("*.so"))
    if not compiled:
        raise SystemExit(f"{wheel.name} holds no compiled module: was it built with mypyc?")
    for so in dirs["python"].rglob("*.so"):
        so.unlink()
    return dirs


def measure(accounts: int, days: int, seed: int) -> dict[str, Any]:
    """In the child: the figures of the ``models`` this process imports."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_scale

    import models.engine
    from models.replay import replay
    from models.simulator import SimConfig, simulate

    events = list(simulate(SimConfig(accounts=accounts, days=days, seed=seed)))
    stages, _ = bench_scale.stages(bench_scale.Input(events))
    t = time.process_time()
    r = replay(events)
    replay_us = (time.process_time() - t) / len(events) * 1e6
    return {
        "engine_module": models.engine.__file__,
        "events": len(events),
        "stages": stages,
        "replay": replay_us,
        "digest": r.digest(),
    }


def child(variant: str, path: Path, args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(path)}
    code = (
        f"import sys, orjson; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); "
        "import bench_compiled as b; "
        f"sys.stdout.buffer.write(orjson.dumps(b.measure({args.accounts}, {args.days}, "
        f"{args.seed})))"
    )
    run = [sys.executable, "-c", code]  # cwd: not the repository (its models/ would win)
    out = subprocess.run(run, env=env, cwd=path.parent, capture_output=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"the {variant} run failed:\n{out.stderr.decode()[-3000:]}")
    fig: dict[str, Any] = orjson.loads(out.stdout)
    compiled = not fig["engine_module"].endswith(".py")
    if compiled != (variant == "compiled") or not fig["engine_module"].startswith(str(path)):
        raise SystemExit(f"the {variant} run imported {fig['engine_module']}")
    return fig


def rows(runs: list[dict[str, dict[str, Any]]]) -> list[tuple[str, list[dict[str, float]]]]:
    """(label, per round {variant: µs/event}) for each stage and the replay."""
    first = runs[0]["python"]["stages"]
    out = [(k, [{v: r[v]["stages"][k] for v in VARIANTS} for r in runs]) for k in first]
    out.append(("replay (parse, engine, learner)", [{v: r[v]["replay"] for v in VARIANTS}
                                                    for r in runs]))  # fmt: skip
    return out


def table(runs: list[dict[str, dict[str, Any]]], args: argparse.Namespace) -> str:
    """The figures of every round as min/median/max, and the ratio python/compiled.

    >>> fig = {"stages": {"engine": 60.0}, "replay": 90.0}
    >>> runs = [{"python": fig, "compiled": {"stages": {"engine": 30.0}, "replay": 60.0}}]
    >>> print(table(runs, argparse.Namespace(accounts=2, days=3, runs=1)))  # doctest: +ELLIPSIS +NORMALIZE_WHITESPACE
    CPU µs/event (2 accounts x 3 days; 1 rounds) ...
    engine  60.0  60.0  60.0  30.0  30.0  30.0  2.00  2.00  2.00
    replay (parse, engine, learner)  90.0  90.0  90.0  60.0  60.0  60.0  1.50  1.50  1.50
    """
    head = (f"CPU µs/event ({args.accounts} accounts x {args.days} days; {args.runs} rounds)"
            f"{'':<2}{'python':>30}{'compiled':>30}{'python / compiled':>27}")  # fmt: skip
    lines = [
        head,
        f"{'':<35}" + "       min    median       max" * 2 + "      min   median      max",
    ]
    for label, per_round in rows(runs):
        cells = ""
        for v in VARIANTS:
            xs = sorted(r[v] for r in per_round)
            cells += f"{xs[0]:>10.1f}{xs[len(xs) // 2]:>10.1f}{xs[-1]:>10.1f}"
        ratios = sorted(r["python"] / r["compiled"] for r in per_round if r["compiled"] > 0)
        if ratios:
            cells += f"{ratios[0]:>9.2f}{ratios[len(ratios) // 2]:>9.2f}{ratios[-1]:>9.2f}"
        lines.append(f"{label:<35}{cells}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--accounts", type=int, default=200, help="simulated accounts (200)")
    ap.add_argument("--days", type=int, default=30, help="simulated days (30)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--runs", type=int, default=3, help="rounds, each variant once (>= 3)")
    ap.add_argument("--wheel", type=Path, help="a wheel built with CHURNWATCH_MYPYC=1 (else built)")
    args = ap.parse_args(argv)
    if args.runs < 3:
        ap.error("--runs must be >= 3 (min/median/max)")
    work = Path(tempfile.mkdtemp(prefix="bench-compiled-"))
    try:
        dirs = unpack(args.wheel or build_wheel(work / "wheel"), work / "site")
        runs, digests = [], set()
        for i in range(args.runs):
            order = VARIANTS if i % 2 == 0 else VARIANTS[::-1]
            fig: dict[str, dict[str, Any]] = {}
            for v in order:
                say(f"round {i + 1}/{args.runs}: {v} ...")
                fig[v] = child(v, dirs[v], args)
                digests.add(fig[v]["digest"])
            runs.append(fig)
        print(table(runs, args))
        same = len(digests) == 1
        print(f"outputs of every process identical: {'yes' if same else 'NO'} "
              f"({len(digests)} digest{'s' if len(digests) > 1 else ''}: "
              f"{', '.join(sorted(d[:12] for d in digests))})")  # fmt: skip
        return 0 if same else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
