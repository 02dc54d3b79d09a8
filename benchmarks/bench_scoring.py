"""One score's cost (issue #12): River's pipeline against churnwatch's one-pass scorer.

    python benchmarks/bench_scoring.py                   # ~10 seconds here
    python benchmarks/bench_scoring.py --accounts 400 --days 90 --runs 5

Replays a simulated history (``models.replay``: the models learn from its labels as
in a worker) and keeps the features of the examples it published, churn and sharing.
Then, in each of ``--runs`` rounds, both paths score every kept example of each model
(repeated up to ``CALLS`` calls at least), their order alternating: River's ``Pipeline.predict_proba_one``, and
``OnlineLearner.predict_proba`` (``models.linear``: the engine's path). Prints CPU µs
per score (``time.process_time``), min/median/max over the rounds, the ratio River /
one-pass of each round, and the largest difference between the two probabilities:
the run fails (exit 1) if it is 1e-9 or more. Compiled or not as installed
(``CHURNWATCH_MYPYC=1 ./dev shell`` compiles the engine's path). Progress goes to
stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from models.engine import Models
from models.learner import OnlineLearner
from models.replay import replay
from models.simulator import SimConfig, simulate

KINDS = ("churn", "sharing")
TOLERANCE = 1e-9
CALLS = 5000  # per path and round, at least: a few hundred examples time too short


def cpu_us(score: Callable[[dict[str, float]], float], xs: list[dict[str, float]]) -> float:
    """CPU µs per call of ``score`` over ``xs``."""
    t = time.process_time()
    for x in xs:
        score(x)
    return 1e6 * (time.process_time() - t) / len(xs)


def river(learner: OnlineLearner) -> Callable[[dict[str, float]], float]:
    return lambda x: float(learner.model.predict_proba_one(x).get(True, 0.0))


def table(rows: dict[str, dict[str, list[float]]], diffs: dict[str, float]) -> list[str]:
    """The printed table: per model, both paths' µs per score and River / one-pass.

    >>> for line in table({"churn": {"river": [30.0, 26.0, 28.0], "one-pass": [14.0, 13.0,
    ...                   12.0]}}, {"churn": 2e-16}):
    ...     print(line)
    CPU µs per score                      min    median       max
      churn   river                      26.0      28.0      30.0
      churn   one-pass                   12.0      13.0      14.0
      churn   river / one-pass           2.00      2.14      2.33   largest difference 2.0e-16
    """
    out = [f"{'CPU µs per score':32s}{'min':>9s}{'median':>10s}{'max':>10s}"]
    for kind, paths in rows.items():
        for path, us in paths.items():
            out.append(f"  {kind:8s}{path:22s}{min(us):9.1f}{statistics.median(us):10.1f}"
                       f"{max(us):10.1f}")  # fmt: skip
        ratios = [a / b for a, b in zip(paths["river"], paths["one-pass"], strict=True)]
        out.append(
            f"  {kind:8s}{'river / one-pass':22s}{min(ratios):9.2f}"
            f"{statistics.median(ratios):10.2f}{max(ratios):10.2f}"
            f"   largest difference {diffs[kind]:.1e}"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--accounts", type=int, default=300)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    kept: dict[str, list[dict[str, float]]] = {k: [] for k in KINDS}

    def keep(examples: list[dict[str, Any]], _: Models) -> None:
        for x in examples:
            kept[x["model"]].append(x["features"])

    print(f"replaying {args.accounts} accounts x {args.days} days ...", file=sys.stderr)
    sim = SimConfig(accounts=args.accounts, days=args.days, seed=args.seed)
    models = replay(simulate(sim), on_examples=keep).models
    rows: dict[str, dict[str, list[float]]] = {}
    diffs: dict[str, float] = {}
    for kind in KINDS:
        learner, xs = models.get(kind), kept[kind]
        if not xs:
            print(f"no {kind} examples: replay more days", file=sys.stderr)
            return 1
        paths = {"river": river(learner), "one-pass": learner.predict_proba}
        rows[kind] = {path: [] for path in paths}
        timed = xs * -(-CALLS // len(xs))
        for r in range(args.runs):
            print(f"{kind}: round {r + 1}/{args.runs}, {len(timed)} calls", file=sys.stderr)
            for path in sorted(paths, reverse=r % 2 == 1):
                rows[kind][path].append(cpu_us(paths[path], timed))
        diffs[kind] = max(abs(paths["river"](x) - paths["one-pass"](x)) for x in xs)
    print(f"{args.accounts} accounts x {args.days} days; {args.runs} rounds; examples: "
          + ", ".join(f"{k} {len(v)}" for k, v in kept.items()))  # fmt: skip
    print("\n".join(table(rows, diffs)))
    if any(d >= TOLERANCE for d in diffs.values()):
        print(f"the two paths disagree by {TOLERANCE} or more", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
