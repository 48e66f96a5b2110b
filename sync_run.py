"""The sync loop: fetch what changed, evaluate every open record, write what must change.

This module and the CLI are the only places that know both a connector and the rules.
Order of a run:
1. fetch the pages changed since the cursor into the record mirror;
2. settle any write a crashed run left pending (was it applied? record it; else drop it);
3. plan every record of the evaluation set (all mirrored records not retired), so that
   time alone makes SLA rules fire;
4. for each non-empty change: journal it, apply it, then record activations and audit
   rows in one transaction;
5. move the cursor only when every write succeeded.
A crash anywhere leaves a state from which the next run finishes the job without
repeating a write beyond the one record in flight.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connector import ConflictError, Connector, ConnectorError, Record, RecordGone
from connector.model import ChangeSet, format_instant
from rules.engine import SlaMark
from rules.planner import WRITE, Plan, plan
from rules.policy import Policy
from sync_state import StateStore


@dataclass
class RunReport:
    run_id: int
    now: datetime
    dry_run: bool
    read: int = 0
    evaluated: int = 0
    changed: int = 0
    writes: int = 0
    skipped: int = 0
    errors: int = 0
    recovered: int = 0
    retired: int = 0
    duration_ms: int = 0
    cursor_moved: bool = False
    status: str = "running"
    problems: list[str] = field(default_factory=list)  # skipped records
    failures: list[str] = field(default_factory=list)  # failed evaluations and writes
    warnings: list[str] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)

    def figures(self) -> dict[str, int]:
        return {"read": self.read, "evaluated": self.evaluated, "changed": self.changed,
                "writes": self.writes, "skipped": self.skipped, "errors": self.errors}


def outcome_of(p: Plan, previous: SlaMark | None) -> dict[str, Any]:
    """What the state store records for a plan once its change is applied."""
    outcome: dict[str, Any] = {
        "activated": sorted(p.activated),
        "deactivated": sorted(p.deactivated),
        "writes": [{"rule": s.rule, "action": s.action, "field": s.slot, "before": s.before,
                    "after": s.after} for s in p.steps if s.outcome == WRITE],
    }
    mark = p.final.sla_mark
    if mark is not None and mark != previous:
        outcome["sla_mark"] = {"sla": mark.name, "since": format_instant(mark.since)}
    return outcome


def describe(p: Plan) -> dict[str, Any]:
    """One changed record for `run --json`."""
    change = p.change.to_dict()
    change.pop("base_updated_at", None)
    change.pop("id", None)
    return {"id": p.record.id, "kind": p.record.kind, "sla": p.evaluation.facts["sla"],
            "rules": list(p.fired), "change": change}


def is_settled(record: Record, p: Plan, policy: Policy, now: datetime) -> bool:
    """True when no rule can fire for this record again until it changes: it is closed, its
    clocks have stopped, and every wall-clock threshold in the policy lies behind it."""
    if record.status not in policy.closed_statuses or not p.change.is_empty():
        return False
    if any(c.running and c.target_seconds is not None for c in p.evaluation.clocks.values()):
        return False
    horizon = policy.wall_clock_horizon_hours
    return horizon is None or (now - record.updated_at).total_seconds() / 3600 > horizon


def is_applied(change: ChangeSet, record: Record) -> bool:
    """Does the record already show every effect of `change`? (Used to settle a write that a
    crash left pending: if it shows, the write went through.)"""
    current = {"priority": record.priority, "group": record.group,
               "assignee": record.assignee, "status": record.status}
    texts = {note.text for note in record.notes}
    tags = {tag.lower() for tag in record.tags}
    return (all(current[k] == v for k, v in change.fields.items())
            and all(tag.lower() in tags for tag in change.add_tags)
            and not any(tag.lower() in tags for tag in change.remove_tags)
            and all(text in texts for text in change.notes)
            and (change.escalation_level is None
                 or record.escalation_level >= change.escalation_level))


def run_sync(connector: Connector, policy: Policy, store: StateStore, now: datetime,
             dry_run: bool = False) -> RunReport:
    started = time.monotonic()
    report = RunReport(run_id=store.begin_run(now, dry_run), now=now, dry_run=dry_run)
    try:
        _run(connector, policy, store, now, report)
    except BaseException as exc:
        report.status = "failed"
        report.errors += 1  # the failure itself
        report.duration_ms = round((time.monotonic() - started) * 1000)
        store.finish_run(report.run_id, "failed", report.figures(), report.duration_ms,
                         str(exc) or type(exc).__name__)
        raise
    report.status = "ok" if report.errors == 0 else "partial"
    report.duration_ms = round((time.monotonic() - started) * 1000)
    store.finish_run(report.run_id, report.status, report.figures(), report.duration_ms)
    return report


def _run(connector: Connector, policy: Policy, store: StateStore, now: datetime,
         report: RunReport) -> None:
    dry = report.dry_run
    cursor = store.cursor(connector.identity)
    next_cursor = cursor
    fetched: dict[str, Record] = {}
    for page in connector.fetch(cursor):
        report.read += len(page.records)
        report.skipped += len(page.problems)
        report.problems.extend(str(problem) for problem in page.problems)
        if dry:
            fetched.update((r.id, r) for r in page.records)
        else:
            store.mirror(page.records, report.run_id)
        next_cursor = page.cursor

    if not dry:
        _settle_pending(store, report, now)

    records = store.evaluation_set()
    if dry:
        known = {r.id for r in records}
        records = [fetched.get(r.id, r) for r in records]
        records += [r for r in fetched.values() if r.id not in known]
    active = store.active_rules()
    marks = store.sla_marks()

    for record in records:
        previous = marks.get(record.id)
        try:
            p = plan(record, policy, now, active.get(record.id, frozenset()), previous)
        except Exception as exc:  # a rule that blows up on one record must not stop the rest
            report.errors += 1
            report.failures.append(f"record {record.id!r}: evaluation failed: {exc!r}")
            continue
        report.evaluated += 1
        if not p.settled:
            report.warnings.append(
                f"record {record.id!r}: rules kept changing it for {p.passes} passes "
                f"({', '.join(p.fired)}); check the policy for rules that undo each other")
        outcome = outcome_of(p, previous)
        if not p.change.is_empty():
            report.changed += 1
            report.changes.append(describe(p))
            if dry:
                continue
            if _write(connector, store, report, p.change, outcome, now):
                report.writes += 1
            continue
        if dry:
            continue
        if outcome["activated"] or outcome["deactivated"] or "sla_mark" in outcome:
            store.commit(report.run_id, record.id, outcome, now)
        if is_settled(record, p, policy, now):
            store.retire(record)
            report.retired += 1

    if not dry and report.errors == 0 and next_cursor != cursor:
        store.move_cursor(connector.identity, next_cursor, report.run_id)
        report.cursor_moved = True


def _write(connector: Connector, store: StateStore, report: RunReport, change: ChangeSet,
           outcome: dict[str, Any], now: datetime) -> bool:
    store.begin_write(report.run_id, change, outcome, now)
    try:
        written = connector.apply(change, now)
    except ConflictError as exc:
        store.drop_pending(change.record_id)
        report.errors += 1
        report.failures.append(f"{exc}; nothing written, the next run re-reads it")
        return False
    except RecordGone as exc:
        store.forget(change.record_id)
        report.warnings.append(f"{exc}; it was deleted in the helpdesk, so sla-sync forgets it")
        return False
    except ConnectorError as exc:
        if exc.record_id is None:
            raise  # the helpdesk itself failed: the pending write is settled next run
        store.drop_pending(change.record_id)
        report.errors += 1
        report.failures.append(f"record {change.record_id!r}: write failed: {exc}")
        return False
    store.commit(report.run_id, change.record_id, outcome, now, written)
    return True


def _settle_pending(store: StateStore, report: RunReport, now: datetime) -> None:
    for change, outcome, run_id in store.pending():
        record = store.record(change.record_id)
        if record is not None and is_applied(change, record):
            store.commit(run_id, change.record_id, outcome, now)
            report.recovered += 1
            report.warnings.append(
                f"record {change.record_id!r}: a write interrupted in run {run_id} had gone "
                f"through (updated_at {format_instant(record.updated_at)}); recorded it")
        else:
            store.drop_pending(change.record_id)
            report.warnings.append(
                f"record {change.record_id!r}: a write interrupted in run {run_id} had not "
                "gone through; planning it again")
