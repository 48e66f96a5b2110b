"""A whole sync on the embedded helpdesk: the first run (everything new), a rerun (nothing
to write) and a run half an hour later (time alone makes rules fire), with the demo policy.

    python bench/bench_sync.py [--records 2000]

Baseline in the same run: the file helpdesk rewriting its file once per changed record
(batch_size 1) instead of once per batch of 100.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sla_sync.connector.file import FileHelpdesk  # noqa: E402
from sla_sync.rules.policy import load_policy  # noqa: E402
from sla_sync.sync_run import run_sync  # noqa: E402
from sla_sync.sync_state import StateStore  # noqa: E402

NOW = datetime.fromisoformat("2026-03-02T12:00:00+00:00")


def runs(records: list[dict], batch_size: int) -> list[tuple[str, float, dict[str, int]]]:
    folder = Path(tempfile.mkdtemp(prefix="sla-sync-bench-"))
    (folder / "helpdesk.json").write_text(json.dumps({"records": records}))
    policy = load_policy(ROOT / "policies/tiered-support.json")
    connector = FileHelpdesk(folder / "helpdesk.json", batch_size=batch_size)
    out = []
    with StateStore(folder / "state.db") as store:
        for label, now in (("first run", NOW), ("rerun", NOW),
                           ("30 min later", NOW + timedelta(minutes=30))):
            started = time.perf_counter()
            report = run_sync(connector, policy, store, now)
            out.append((label, time.perf_counter() - started, report.figures()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=2000)
    args = parser.parse_args()
    demo = json.loads((ROOT / "examples/helpdesk.json").read_text())["records"]
    records = [{**demo[i % len(demo)], "id": f"X-{i}"} for i in range(args.records)]
    print(f"{args.records} records, policies/tiered-support.json")
    print(f"{'batch':>5} {'run':<13} {'seconds':>8} {'evaluated':>9} {'writes':>6}")
    for batch_size in (100, 1):
        for label, seconds, figures in runs(records, batch_size):
            print(f"{batch_size:>5} {label:<13} {seconds:>8.2f} {figures['evaluated']:>9} "
                  f"{figures['writes']:>6}")


if __name__ == "__main__":
    main()
