"""Trains the zstandard dictionary of the account state records (``models/state_v10.zdict``).

    python benchmarks/train_state_dictionary.py --out models/state_v10.zdict

A state record of version 10 (``models.state_codec``) is a zstandard frame compressed
with a dictionary: a few KB per account is too little for zstandard to learn the
msgpack layout, the fixed names and the shapes of the columns from the record alone,
and a dictionary gives it that up front (median record -17% in session 25).

The samples are the states of simulated populations, some drawn from the sharing
matrix's *tuning* cells (``bench_sharing_matrix.draw_cell``: places, devices, address
pools, geo and vocabularies over wide ranges), some of the simulator's default mix on
other seeds than the benchmarks', run through the ingest's privacy step and the
engine as ``bench_state`` does. So that the dictionary holds the format and not the
simulator, every account's own action names are replaced by random words and its
places moved by a random offset before it is sampled (:func:`scramble`); identifiers
are already random pseudonyms. The dictionary is part of the format: a new one needs
a new state version (the old one kept, to read the records written with it).

Prints the held-out check: bytes per record without and with the dictionary on
``bench_scale``'s default population (seed 5), its action names kept and scrambled.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import string
import sys
from pathlib import Path

import zstandard
from bench_sharing_matrix import draw_cell
from bench_state import progress, simulated_states, sizes

from models import state_codec
from models.account import AccountState
from models.simulator import SimConfig

HELD_OUT = SimConfig(accounts=300, days=60, seed=5)  # bench_scale's population, smaller


def scramble(state: AccountState, rng: random.Random) -> bytes:
    """The msgpack array of ``state`` with its own action names replaced by random words
    (in the names table, the usual actions and the feature names made of them) and its
    places and device positions moved by one random offset.

    >>> from models.account import new_account
    >>> s = new_account("a")
    >>> s.actions = ["browse"]
    >>> raw = scramble(s, random.Random(1))
    >>> b"browse" in raw, len(raw) > 20
    (False, True)
    """
    wire = state_codec._to_wire(state)
    words: dict[str, str] = {}
    for name in sorted({*wire.actions, *wire.names} - set(state_codec.NAMES), key=len):
        if not any(w in name for w in words):  # a feature name made of an action's
            words[name] = "".join(rng.choices(string.ascii_lowercase + "_", k=rng.randint(4, 16)))

    def rename(name: str) -> str:
        for old in sorted(words, key=len, reverse=True):
            if old in name:
                return name.replace(old, words[old])
        return name

    wire.names = [rename(n) for n in wire.names]
    wire.actions = [rename(n) for n in wire.actions]
    dlat, dlon = rng.uniform(-40, 40), rng.uniform(-150, 150)
    for place in wire.household.places:
        if place.lat is not None and place.lon is not None:
            place.lat, place.lon = round(place.lat + dlat, 5), round(place.lon + dlon, 5)
    for device in wire.household.devices.values():
        if device.pos is not None:
            ts, lat, lon = device.pos
            device.pos = (ts, round(lat + dlat, 5), round(lon + dlon, 5))
    return state_codec._ENCODER.encode(wire)


def described(frames: list[bytes]) -> str:
    median, p95, _ = sizes(frames)  # bench_state's figures of the same
    return f"median {median:,.0f} B, p95 {p95:,} B"


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, required=True, help="where to write the dictionary")
    ap.add_argument("--cells", type=int, default=3, help="tuning cells simulated (default 3)")
    ap.add_argument(
        "--plain",
        type=int,
        default=3,
        help="populations of the simulator's default mix (seeds 101...; default 3)",
    )
    ap.add_argument("--accounts", type=int, default=300, help="accounts per cell (default 300)")
    ap.add_argument("--days", type=int, default=60, help="days per cell (default 60)")
    ap.add_argument("--size", type=int, default=32768, help="dictionary bytes (default 32768)")
    args = ap.parse_args()
    rng = random.Random(25)
    samples: list[bytes] = []
    populations = [
        draw_cell(seed, held_out=False, accounts=args.accounts, days=args.days)
        for seed in range(1, args.cells + 1)
    ]
    populations += [SimConfig(accounts=args.accounts, days=args.days, seed=100 + i)
                    for i in range(1, args.plain + 1)]  # fmt: skip
    for i, cfg in enumerate(populations, 1):
        progress(
            f"population {i}/{len(populations)}: {args.accounts} accounts x {args.days} days ..."
        )
        samples += [scramble(s, rng) for s in simulated_states(cfg, 8, 1000)]
    progress(f"training a {args.size:,}-byte dictionary on {len(samples):,} states ...")
    trained = zstandard.train_dictionary(args.size, samples, level=state_codec.LEVEL)
    args.out.write_bytes(trained.as_bytes())
    digest = hashlib.sha256(trained.as_bytes()).hexdigest()
    print(f"wrote {args.out} ({len(trained.as_bytes()):,} bytes, sha256 {digest})")

    progress("held-out check: bench_scale's population (seed 5) ...")
    states = simulated_states(HELD_OUT, 8, 1000)
    plain = zstandard.ZstdCompressor(level=state_codec.LEVEL)
    with_dict = zstandard.ZstdCompressor(level=state_codec.LEVEL, dict_data=trained)
    check = random.Random(5)
    for label, arrays in (
        ("its own action names", [state_codec._ENCODER.encode(state_codec._to_wire(s)) for s in states]),
        ("action names scrambled", [scramble(s, check) for s in states]),
    ):  # fmt: skip
        print(f"{len(arrays)} held-out states, {label}: "
              f"without the dictionary {described([plain.compress(a) for a in arrays])}; "
              f"with it {described([with_dict.compress(a) for a in arrays])}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
