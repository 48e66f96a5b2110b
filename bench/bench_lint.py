"""`sla-sync lint` on the shipped policy and on a large, overlapping one: N rules over ten
tiers that all set the priority and a tag (so every pair is examined for undoing each other
and for a loop, most of them with a witness to find) and 30 SLAs before a fallback.

    python bench/bench_lint.py [--rules 100]

Each figure is the best of three rounds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sla_sync.rules.lint import lint  # noqa: E402
from sla_sync.rules.policy import check_policy, load_policy  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def large_policy(rules: int) -> dict[str, Any]:
    def leaf(name: str, operator: str, value: Any = None) -> dict[str, Any]:
        return {"name": name, "operator": operator, "value": value}

    return {
        "slas": [{"name": f"s{i}", "when": {"all": [leaf("tier", "equal_to", f"t{i}"),
                                                   leaf("priority", "is_one_of", ["a", "b"])]},
                  "targets": {"first_response": "1h"}} for i in range(30)]
        + [{"name": "rest", "targets": {"first_response": "1h"}}],
        "rules": [{"name": f"r{i}", "conditions": {"all": [
            leaf("tier", "equal_to", f"t{i % 10}"),
            leaf("hours_since_created", "greater_than", i),
            {"any": [leaf("status", "equal_to", "open"),
                     leaf("first_response_breached", "is_true")]}]},
            "actions": [{"name": "set_priority", "params": {"priority": f"p{i % 4}"}},
                        {"name": "add_tag", "params": {"tag": f"x{i % 3}"}}]}
            for i in range(rules)],
    }


def best(run: Any) -> tuple[float, int]:
    times, found = [], 0
    for _ in range(3):
        started = time.perf_counter()
        found = len(run())
        times.append(time.perf_counter() - started)
    return min(times), found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=100)
    args = parser.parse_args()
    shipped = load_policy(ROOT / "policies" / "tiered-support.json")
    large = check_policy(large_policy(args.rules), "large")
    for name, policy in (("tiered-support.json", shipped), (f"{args.rules} rules", large)):
        seconds, found = best(lambda policy=policy: lint(policy))
        print(f"{name:>20}: {seconds * 1000:8.1f} ms, {found} findings")


if __name__ == "__main__":
    main()
