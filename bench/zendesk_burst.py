"""A busy second through bench/zendesk_fake.py (docs/performance.md, "Zendesk past a busy
second"): a generated desk first synced, then a person edits a share of its tickets at once
(more than 1,000 events in one second, which the time-based event export cannot page past),
then the syncs after it. Per sync: the requests by kind (counted from the HTTP lines of
`sla-sync -v`), the CPU seconds of the sla-sync process (debug logging included), and
whether it met the busy second.

    python bench/zendesk_burst.py [--size 20k] [--share 0.25]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_desk  # noqa: E402


def run(label: str, folder: Path, now: datetime) -> None:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, "-m", "sla_sync", "-v", "run", "--config", "config.yaml",
         "--now", now.isoformat()], cwd=folder, capture_output=True, text=True,
        env={**os.environ, "BENCH_ZENDESK_TOKEN": bench_desk.ZENDESK_TOKEN}, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    kinds: Counter[str] = Counter()
    for line in done.stderr.splitlines():
        found = re.search(r"zendesk: (GET|PUT) https?://[^/\s]+(/\S*?)[?:\s]", line)
        if found and "HTTP" in line:
            path = re.sub(r"/\d+/", "/{id}/", re.sub(r"/job_statuses/\w+", "/job_statuses/{id}",
                                                    found[2]))
            kinds[f"{found[1]} {path}"] += 1
    summary = bench_desk.SUMMARY.search(done.stdout + done.stderr)
    print(f"{label}: exit {done.returncode}, {cpu:.2f} CPU s, "
          f"{summary.group(0) if summary else 'no summary'}, busy second met: "
          f"{'1,000 events or more' in done.stderr}")
    for kind, count in sorted(kinds.items()):
        print(f"    {kind}: {count}")
    if done.returncode:
        print(done.stderr[-3000:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="20k", help="records generated (80%% tickets)")
    parser.add_argument("--share", type=float, default=0.25,
                        help="the share of the tickets edited at once")
    options = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="sla-sync-burst-"))
    fake = None
    try:
        desk = folder / "helpdesk.json"
        bench_desk.in_helper("make", str(desk), str(bench_desk.parse_size(options.size)))
        (folder / "policy.json").write_text(json.dumps(bench_desk.bench_policy()))
        fake = bench_desk.FakeZendesk(desk)
        (folder / "config.yaml").write_text(fake.config() + "policy: policy.json\n"
                                            "state: state.db\nfirst_run: act\n")
        now = bench_desk.NOW
        run("first sync", folder, now)
        print("a person edits", fake.post("/bench/touch", {"share": options.share}))
        fake.post("/bench/advance", {"seconds": 61})
        run("after the burst", folder, now + timedelta(minutes=2))
        run("rerun, nothing changed", folder, now + timedelta(minutes=2))
        fake.post("/bench/advance", {"seconds": 300})
        run("5 minutes later", folder, now + timedelta(minutes=7))
    finally:
        if fake is not None:
            fake.close()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
