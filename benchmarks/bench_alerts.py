"""Alert quality of the whole pipeline on a simulated population, in one process.

    python benchmarks/bench_alerts.py --accounts 1000 --days 150 --seed 21

Replays the simulator's events through ``models.replay`` (parse, state,
labels, learner, scores, alerts with the default thresholds) and prints, against
the ground truth: churn early-warning precision / recall / median lead time
(cancellations after the warm-up), sharing precision / recall / false-positive
rate per archetype / median delay / AUC of the final sharing score, the churn
learner's prequential metrics, what the alerts achieved (conversions against
backlash by action, ``models.outcomes``) and the cost per event. By default the
simulated households do not answer alerts, so those outcomes are what they would
have done anyway: a baseline for a live deployment's figures, not an effect. With
``--react`` they answer (``models/simulator/reactions.py``, default knobs), each
alert at the start of the first simulated day after the replay's batch that raised
it, as ``simulate --kafka`` does with a worker that keeps up; the answers are
printed too. The difference between the two runs is the simulated effect.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter

from models.engine import EngineConfig
from models.evaluation import DAY_MS, churn_alert_quality, sharing_alert_quality
from models.outcomes import by_action
from models.replay import replay
from models.simulator import SimConfig, reactions, simulate


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--accounts", type=int, default=1000)
    ap.add_argument("--days", type=int, default=150)
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--warmup-days", type=int, default=45, help="churn alerts judged after this")
    ap.add_argument("--react", action="store_true", help="the households answer the alerts")
    args = ap.parse_args()
    cfg = SimConfig(accounts=args.accounts, days=args.days, seed=args.seed)
    truth: list[dict] = []
    inbox: list[dict] = []
    answered: Counter[tuple[str, str, str]] = Counter()

    def alerts(day: int) -> list[dict]:
        out = list(inbox)
        inbox.clear()
        return out

    def on_reaction(r: dict) -> None:
        answered[(r["kind"], r["action"], r["reaction"])] += 1

    events = simulate(cfg, truth.append, alerts if args.react else None, on_reaction)
    result = replay(
        events, on_outputs=(lambda out: inbox.extend(out.alerts)) if args.react else None
    )
    result_window_days = EngineConfig().action_window_ms // DAY_MS
    end = cfg.start_ms + cfg.days * DAY_MS
    churn = churn_alert_quality(
        result.alerts, truth, start_ms=cfg.start_ms + args.warmup_days * DAY_MS, end_ms=end
    )
    final = {a: s["sharing_score"] for a, s in result.scores.items()}
    sharing = sharing_alert_quality(result.alerts, final, truth, end_ms=end)
    print(f"population: {args.accounts} accounts x {args.days} days, seed {args.seed}: "
          f"{result.events:,} events in {result.seconds:.0f}s "
          f"({result.seconds / result.events * 1e6:.0f} us/event, whole pipeline)")  # fmt: skip
    print(
        "churn alerts:", {k: round(v, 3) if isinstance(v, float) else v for k, v in churn.items()}
    )
    print("churn learner (prequential):",
          {k: round(v, 3) for k, v in result.models.churn.metrics().items()})  # fmt: skip
    print("sharing alerts:", {k: v for k, v in sharing.items() if k != "fp_rate"})
    print("sharing false-positive rate by archetype:",
          {k: round(v, 3) for k, v in sharing["fp_rate"].items()})  # fmt: skip
    print(f"action outcomes within {result_window_days} days (closed follow-ups):")
    for (kind, action), row in by_action(result.action_outcomes).items():
        print(f"  {kind} {action}: {row}")
    if args.react:
        print("the households answered:")
        for line in reactions.summary(answered):
            print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
