"""What one batch costs the file helpdesk on a large desk: a fetch, then batches of 100
changes (each: find the records, one atomic rewrite of the file).

    python bench/bench_file.py [--size 100k] [--format json|jsonl] [--batches 8] [--code DIR]

`--code DIR` measures another checkout's connector (e.g. main's, for a before figure).

The desk is bench_desk.py's. The first JSON batch also encodes every record once (later
rewrites reuse the encodings); every batch writes the whole file and fsyncs it.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_desk import package_path, parse_size, write_desk  # noqa: E402
from generate_helpdesk import NOW, generate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="100k")
    parser.add_argument("--format", choices=("json", "jsonl"), default="json")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--code", type=Path, help="the checkout whose connector runs")
    args = parser.parse_args()
    if args.code:  # ahead of this checkout and of the editable install's import hook
        sys.meta_path[:] = [f for f in sys.meta_path
                            if "__editable__" not in getattr(f, "__module__", "")]
        sys.path.insert(0, str(package_path(args.code.resolve())))
    from sla_sync.connector.file import FileHelpdesk
    from sla_sync.connector.model import ChangeSet

    print(f"connector: {sys.modules['sla_sync.connector.file'].__file__}")
    folder = Path(tempfile.mkdtemp(prefix="sla-sync-file-"))
    try:
        records = generate(scale=max(1, parse_size(args.size) // 200), seed=11)["records"]
        desk = folder / f"helpdesk.{args.format}"
        write_desk(desk, records)
        ids = [r["id"] for r in records]
        del records
        connector = FileHelpdesk(desk)
        started = time.perf_counter()
        read = sum(len(page.records) for page in connector.fetch(None))
        print(f"{read:,} records, {desk.stat().st_size / 1e6:.0f} MB ({args.format}); "
              f"fetch {time.perf_counter() - started:.2f} s")
        stride = max(1, len(ids) // (100 * args.batches))
        print(f"{'batch':>5} {'seconds':>8} {'CPU s':>7}")
        for batch in range(args.batches):
            chosen = ids[batch::stride][:100]
            changes = [ChangeSet(i, add_tags=("bench",), notes=(f"batch {batch}",))
                       for i in chosen]
            wall, cpu = time.perf_counter(), time.process_time()
            results = connector.apply_many(changes, NOW + timedelta(minutes=batch))
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            assert all(result.error is None for result in results), results
            print(f"{batch + 1:>5} {wall:>8.2f} {cpu:>7.2f}")
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
