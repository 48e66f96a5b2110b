"""Evaluation throughput: records planned per second with the demo policy, against a
baseline of business-rules alone on the same rules, measured in the same run.

    python bench/bench_evaluate.py [--repeat 5]

The baseline evaluates the policy's rules with business-rules `run_all` over precomputed
variables (no SLA matching, clocks, merging or multi-pass); the difference is what
sla-sync adds per record.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from business_rules import engine as br_engine  # noqa: E402

from sla_sync.connector.model import Record  # noqa: E402
from sla_sync.rules.actions import ActionCollector  # noqa: E402
from sla_sync.rules.engine import evaluate  # noqa: E402
from sla_sync.rules.planner import plan  # noqa: E402
from sla_sync.rules.policy import load_policy  # noqa: E402

NOW = datetime.fromisoformat("2026-03-02T12:00:00+00:00")


def best_of(repeat: int, work) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    raw = json.loads((ROOT / "examples/helpdesk.json").read_text())["records"]
    records = [Record.from_dict(r) for r in raw] * 10  # 2,000 records
    policy = load_policy(ROOT / "policies/tiered-support.json")
    facts = [evaluate(r, policy, NOW).variables() for r in records]
    engine_rules = [rule.as_engine_rule() for rule in policy.rules]

    def baseline() -> None:
        for variables in facts:
            br_engine.run_all(engine_rules, variables, ActionCollector({}))

    def evaluation() -> None:
        for record in records:
            evaluate(record, policy, NOW)

    def planning() -> None:
        for record in records:
            plan(record, policy, NOW)

    rows = [("business-rules run_all (baseline)", baseline),
            ("evaluate (SLA, clocks, rules)", evaluation),
            ("plan (evaluate, merge, settle)", planning)]
    print(f"{len(records)} records, {len(policy.rules)} rules, {len(policy.slas)} SLAs, "
          f"best of {args.repeat}")
    print(f"{'case':<36} {'seconds':>8} {'records/s':>10} {'x baseline':>10}")
    base = None
    for name, work in rows:
        seconds = best_of(args.repeat, work)
        base = base or seconds
        print(f"{name:<36} {seconds:>8.3f} {len(records) / seconds:>10.0f} "
              f"{seconds / base:>10.2f}")


if __name__ == "__main__":
    main()
