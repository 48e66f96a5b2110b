"""Runs the sla-sync CLI with one pause added, so that a test can send a real signal at a
known point: `python tests/signal_harness.py POINT sla-sync-args...`.

POINT is `batch` (inside the first apply_many, before the file is rewritten) or
`transaction` (inside the SQLite transaction that records the first write). At the point
the harness prints `PAUSED POINT` on stdout and waits for a line on stdin; nothing else
about the sync changes. Test-only: not shipped.
"""

from __future__ import annotations

import sys
from typing import Any

from sla_sync.connector.file import FileHelpdesk
from sla_sync.sync import main
from sla_sync.sync_state import StateStore

paused: list[str] = []


def pause(point: str) -> None:
    if not paused:
        paused.append(point)
        print(f"PAUSED {point}", flush=True)
        sys.stdin.readline()


def patch(point: str) -> None:
    if point == "batch":
        real_apply_many = FileHelpdesk.apply_many

        def apply_many(self: FileHelpdesk, changes: Any, now: Any) -> Any:
            pause(point)
            return real_apply_many(self, changes, now)

        FileHelpdesk.apply_many = apply_many  # type: ignore[method-assign]
    elif point == "transaction":
        real_write_rows = StateStore._write_rows

        def write_rows(self: StateStore, rows: Any, wakes: Any) -> None:
            assert self.db.in_transaction
            if rows["activations"]:  # the first transaction that records a rule's activation
                pause(point)
            real_write_rows(self, rows, wakes)

        StateStore._write_rows = write_rows  # type: ignore[method-assign]
    elif point != "none":
        raise SystemExit(f"unknown pause point {point!r}")


if __name__ == "__main__":
    patch(sys.argv[1])
    main(args=sys.argv[2:], prog_name="sla-sync")
