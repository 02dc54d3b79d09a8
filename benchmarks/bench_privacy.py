"""CPU cost of the ingest's pseudonymisation (models.privacy) on the whole in-process
pipeline: a replay of simulated events (parse, engine, learning) with and without it.

Run: python benchmarks/bench_privacy.py [--accounts N] [--days D] [--runs R]

Runs alternate, so load from other processes hits both alike; prints CPU µs per
event (min, median, max). ``benchmarks/bench_parse.py`` prints the cost of the
pseudonymisation alone (cold and warm cache).
"""

from __future__ import annotations

import argparse
import statistics
import time

from models.engine import EngineConfig
from models.privacy import Pseudonymiser
from models.replay import replay
from models.simulator import SimConfig, simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    events = list(simulate(SimConfig(accounts=args.accounts, days=args.days, seed=3)))
    key = b"bench-pseudonym-key-0123456789abcdef"
    cpu: dict[str, list[float]] = {"plain": [], "pseudonymised": []}
    for _ in range(args.runs):
        for label, runs in cpu.items():
            p = Pseudonymiser(key) if label == "pseudonymised" else None
            start = time.process_time()
            result = replay(events, cfg=EngineConfig(), pseudonymiser=p)
            runs.append((time.process_time() - start) / result.events * 1e6)
    print(f"{len(events)} events ({args.accounts} accounts x {args.days} days), "
          f"replay CPU µs/event, {args.runs} runs alternating")  # fmt: skip
    for label, runs in cpu.items():
        print(f"  {label:14} min {min(runs):6.1f}  median {statistics.median(runs):6.1f}"
              f"  max {max(runs):6.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
