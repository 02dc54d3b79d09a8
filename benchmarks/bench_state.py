"""Account state on the changelog: size and cost of the encoding, old (pickle) vs new.

    python benchmarks/bench_state.py --accounts 1000 --days 120 --runs 5

Simulates a population, runs it through the ingest's privacy step and the engine as
a worker does (partitions, batches, the learner), then encodes and decodes every account's
final state with

- **v2**: what ``dump_state`` wrote before version 3, ``b"CWAS\\x02"`` + a
  pickle of the object graph, decoded with ``pickle.loads`` (of today's graph: a
  real v2 record holds the risk state in a dict, a few bytes more);
- **v8**: ``models.state_codec``'s msgpack array (msgspec, typed schema), as
  version 8 wrote it (versions 3 to 7 were earlier forms of it);
- **v9**: the same array in a zstandard frame, as version 9 wrote it;
- **v10**: what ``dump_state`` writes now: the frame compressed with the format's
  dictionary (``models/state_v10.zdict``).

Prints serialized bytes per account (median / p95 / max) and the CPU time
(``time.process_time``, garbage collector off) to encode and decode one state,
min / median / max over ``--runs`` passes over all states, with the ratios
v10 / v2, v10 / v8 and v10 / v9 of each pass. (The arrays are today's: the packing's
whole numbers and the float32 rhythm of version 10 are in all three.)
Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import gc
import pickle
import statistics
import sys
import time
import zlib
from collections.abc import Callable, Sequence

import orjson
import zstandard

from models import state_codec
from models.account import AccountState, dump_state, load_state
from models.contract import Event, parse_message
from models.engine import EngineConfig, Models, Outputs, Shard, process
from models.household import PrefixCensus
from models.privacy import Pseudonymiser, coarsen
from models.simulator import SimConfig, simulate
from streams.devworker import TEST_PSEUDONYM_KEY


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def simulated_states(cfg: SimConfig, partitions: int, batch: int) -> list[AccountState]:
    """Every account's state after the whole history (``models.replay``'s loop), its
    events coarsened and pseudonymised first, as the ingest does (a state then holds
    tokens of 16 hex digits, not the simulator's identifiers)."""
    engine, models, census = EngineConfig(), Models.fresh(), PrefixCensus()
    pseudonymise = Pseudonymiser(TEST_PSEUDONYM_KEY.encode()).event
    shards = [Shard() for _ in range(partitions)]
    pending: list[Event] = []

    def flush() -> None:
        by_partition: dict[int, list[Event]] = {}
        for e in pending:
            by_partition.setdefault(zlib.crc32(e.account_id.encode()) % partitions, []).append(e)
        pending.clear()
        out = Outputs()
        for p, part in by_partition.items():
            process(shards[p], part, models, engine, out, census)
        for kind in ("churn", "sharing"):
            models.get(kind).learn_many(
                [(x["features"], x["label"], x["example_id"]) for x in out.examples
                 if x["model"] == kind]
            )  # fmt: skip

    for i, raw in enumerate(simulate(cfg)):
        parsed, _ = parse_message(orjson.dumps(raw), topic="bench", partition=0, offset=i)
        pending += [pseudonymise(coarsen(e)) for e in parsed]
        if len(pending) >= batch:
            flush()
        if i % 100_000 == 0 and i:
            progress(f"  {i:,} events")
    flush()
    return [s for shard in shards for s in shard.accounts.values()]


def dump_v8(state: AccountState) -> bytes:
    return b"CWAS\x08" + state_codec._ENCODER.encode(state_codec._to_wire(state))


_V9 = zstandard.ZstdCompressor(level=state_codec.LEVEL, write_content_size=True)


def dump_v9(state: AccountState) -> bytes:
    return b"CWAS\x09" + _V9.compress(state_codec._ENCODER.encode(state_codec._to_wire(state)))


def dump_v2(state: AccountState) -> bytes:
    return b"CWAS\x02" + pickle.dumps(state, protocol=5)


def load_v2(raw: bytes) -> AccountState:
    return pickle.loads(raw[5:])  # noqa: S301 - our own bytes, as the old load_state did


def per_item_us(fn: Callable[[object], object], items: Sequence[object], runs: int) -> list[float]:
    """CPU µs per item, one figure per pass over all items (garbage collector off, as in
    ``timeit``: its passes scan every live state and would blur both codecs alike)."""
    out = []
    gc.disable()
    try:
        for _ in range(runs):
            started = time.process_time()
            for x in items:
                fn(x)
            out.append((time.process_time() - started) / len(items) * 1e6)
    finally:
        gc.enable()
    return out


def spread(xs: list[float]) -> tuple[float, float, float]:
    return min(xs), statistics.median(xs), max(xs)


def sizes(raws: list[bytes]) -> tuple[float, float, float]:
    n = sorted(map(len, raws))
    return statistics.median(n), n[min(len(n) - 1, int(0.95 * len(n)))], n[-1]


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--accounts", type=int, default=1000)
    ap.add_argument("--days", type=int, default=120)
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--runs", type=int, default=5, help="timed passes (>= 3)")
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--batch", type=int, default=1000, help="events per engine batch")
    args = ap.parse_args()
    if args.runs < 3:
        ap.error("--runs must be >= 3")
    progress(f"simulating {args.accounts} accounts x {args.days} days ...")
    cfg = SimConfig(accounts=args.accounts, days=args.days, seed=args.seed)
    states = simulated_states(cfg, args.partitions, args.batch)
    progress(f"encoding {len(states)} states, {args.runs} runs ...")
    codecs = {"v2 (pickle)": (dump_v2, load_v2), "v8 (msgspec)": (dump_v8, load_state),
              "v9 (msgspec + zstd)": (dump_v9, load_state),
              "v10 (+ dictionary)": (dump_state, load_state)}  # fmt: skip
    raws = {name: [dump(s) for s in states] for name, (dump, _) in codecs.items()}
    for name in list(codecs)[1:]:
        if any(load_state(raw) != s for raw, s in zip(raws[name], states, strict=True)):
            raise SystemExit(f"{name} round trip differs")
    us = {name: {"encode": per_item_us(dump, states, args.runs),
                 "decode": per_item_us(load, raws[name], args.runs)}
          for name, (dump, load) in codecs.items()}  # fmt: skip

    print(f"{len(states)} account states ({args.accounts} accounts x {args.days} days, "
          f"seed {args.seed}); CPU µs per state, min / median / max of {args.runs} runs")  # fmt: skip
    print()
    v2, v8, v9, v10 = codecs
    print(f"| figure | {v2} | {v8} | {v9} | {v10} | v10 / v2 | v10 / v8 | v10 / v9 |")
    print("|---|---|---|---|---|---|---|---|")
    size = {name: sizes(r) for name, r in raws.items()}
    for i, stat in enumerate(("median", "p95", "max")):
        a, b, c, d = (size[name][i] for name in codecs)
        print(f"| bytes per account, {stat} | {a:,.0f} | {b:,.0f} | {c:,.0f} | {d:,.0f} "
              f"| {d / a:.2f} | {d / b:.2f} | {d / c:.2f} |")  # fmt: skip
    for fig in ("encode", "decode"):
        cells = [" / ".join(f"{x:.1f}" for x in spread(us[name][fig])) for name in codecs]
        ratios = [" / ".join(f"{x:.2f}" for x in spread([n / o for o, n in zip(
            us[base][fig], us[v10][fig], strict=True)])) for base in (v2, v8, v9)]  # fmt: skip
        print(f"| {fig} µs per state | {' | '.join(cells)} | {' | '.join(ratios)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
