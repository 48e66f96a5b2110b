"""Audit and undo: `sla-sync audit` lists what sla-sync changed, `sla-sync revert RUN` puts
back what one run changed where the helpdesk still holds sla-sync's value.

The audit table of the state file has one row per value written: run, time, record, rule,
action, field (priority, group, assignee, escalation_level, tag:NAME, custom.NAME, note,
notify:WEBHOOK), the value before and the value written. A revert reads each record live
through the connector and, per row:
- a field, the escalation level or a tag that still holds sla-sync's value is put back
  (a tag sla-sync added is removed, one it removed is added again);
- one that holds something else was changed since by someone: left alone, and listed;
- one that already holds the value before needs nothing;
- an internal note stays (Zendesk and Request Tracker cannot delete one, and on every
  helpdesk people may have read it or answered it), and a notification cannot be unsent:
  both are listed.
The writes go through the sync's own journal (`StateStore.begin_write`, then `commit`), so a
crash or a lost answer is settled by reading the record back, as for a sync (the revert
settles what earlier runs left pending before it starts, and so does the next sync); the
audit rows it commits are of kind `revert` and name the row they undid, so a second revert
of the same run writes nothing. The rules whose writes were put back are recorded as active
for their records, so the next sync does not do again what was reverted (as for a person's
undo): they fire again only once their conditions have been false and hold again.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from sla_sync.connector import (
    ChangeSet,
    ConflictError,
    Connector,
    ConnectorError,
    Record,
    RecordError,
    RecordGone,
    WriteResult,
    open_connector,
)
from sla_sync.connector.base import OutcomeUnknown, apply_each
from sla_sync.connector.file import FileProblem, file_problem
from sla_sync.connector.model import custom_name
from sla_sync.sync_config import Config, ConfigError, load_config, locate
from sla_sync.sync_options import instant_option
from sla_sync.sync_run import RunReport, is_applied, lowers_level, settle_pending
from sla_sync.sync_state import StateError, StateLock, StateLocked, StateStore

EXIT_FAILED, EXIT_INVALID, EXIT_PARTIAL, EXIT_LOCKED = 1, 2, 3, 4
#: What cannot be undone, and why, by the kind of audit row.
KEPT = {
    "note": "stays (internal notes are never deleted)",
    "notify": "was sent (a notification cannot be unsent)",
}


# -- reading the audit -------------------------------------------------------------------------

def show(value: Any, width: int = 40) -> str:
    """A before/after value for the table: text as it is, shortened; none as `-`."""
    if value is None:
        return "-"
    if value == "":
        return '""'
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"


def audit_table(rows: list[dict[str, Any]]) -> str:
    head = ("run", "at", "record", "rule", "action", "field", "before", "after")
    lines = [[str(r["run_id"]), r["at"], r["record_id"], r["rule"], r["action"], r["field"],
              show(r["before"]), show(r["after"])] for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip()]
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
            for line in lines]
    return "\n".join(out) + "\n"


def audit_json(row: dict[str, Any]) -> str:
    return json.dumps({"id": row["id"], "run": row["run_id"], "at": row["at"],
                       "record": row["record_id"], "rule": row["rule"],
                       "action": row["action"], "field": row["field"],
                       "before": row["before"], "after": row["after"], "kind": row["kind"],
                       "reverts": row["reverts"]}, ensure_ascii=False)


# -- reverting a run ---------------------------------------------------------------------------

@dataclass
class RevertReport:
    target: int  # the run reverted
    run_id: int | None  # the revert's own run (None for a dry run)
    dry_run: bool
    writes: int = 0  # records written
    recovered: int = 0  # writes an earlier run left pending, found applied and recorded
    records: int = 0  # records put back (a dry run: to put back)
    restored: list[str] = field(default_factory=list)  # values put back (or to put back)
    left: list[str] = field(default_factory=list)  # changed since by someone: not touched
    kept: list[str] = field(default_factory=list)  # notes and notifications
    already: list[str] = field(default_factory=list)  # nothing to do
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class RevertRefused(Exception):
    """The run cannot be reverted (no such run, a dry run, a revert)."""


@dataclass
class _Undo:
    """What undoing one record's rows of a run takes, given the record as it is now."""

    change: ChangeSet
    steps: list[dict[str, Any]]  # the revert's audit rows
    restored: list[str]
    left: list[str]
    already: list[str]


def _current(record: Record, slot: str) -> Any:
    if slot.startswith("tag:"):
        name = slot[4:].lower()
        return "present" if any(t.lower() == name for t in record.tags) else "absent"
    if slot == "escalation_level":
        return record.escalation_level
    if custom_name(slot):
        return record.custom.get(custom_name(slot))
    return getattr(record, slot)


def _undo(rows: list[dict[str, Any]], record: Record, target: int) -> _Undo:
    fields: dict[str, str] = {}
    add: list[str] = []
    remove: list[str] = []
    level: int | None = None
    steps: list[dict[str, Any]] = []
    restored, left, already = [], [], []
    for row in rows:
        slot, before, after = row["field"], row["before"], row["after"]
        what = f"record {record.id!r}: {_slot_name(slot)}"
        now = _current(record, slot)
        if now == before and now != after:
            already.append(f"{what} is already {show(before)!r} again")
            continue
        if now != after:
            left.append(f"{what}: run {target} set {show(after)!r}, it is now {show(now)!r} "
                        "(changed since)")
            continue
        if slot.startswith("tag:"):
            name = slot[4:]
            if before == "absent":
                remove.extend(t for t in record.tags if t.lower() == name.lower())
            else:
                add.append(name)
        elif slot == "escalation_level":
            level = int(before or 0)
        else:
            fields[slot] = "" if before is None else str(before)
        restored.append(f"{what}: {show(after)!r} -> {show(before)!r}")
        steps.append({"rule": row["rule"], "action": "revert", "field": slot, "before": after,
                      "after": before, "kind": "revert", "reverts": row["id"]})
    change = ChangeSet(record.id, base_updated_at=record.updated_at, fields=fields,
                       add_tags=tuple(add), remove_tags=tuple(remove), escalation_level=level)
    return _Undo(change, steps, restored, left, already)


def _slot_name(slot: str) -> str:
    if slot.startswith("tag:"):
        return f"tag {slot[4:]!r}"
    return slot.replace("_", " ")


def revert(connector: Connector, store: StateStore, target: int, now: datetime,
           dry_run: bool = False) -> RevertReport:
    """Put back what run `target` wrote, where the helpdesk still holds it (see the module's
    text). Raises RevertRefused for a run that cannot be reverted; an error of the helpdesk
    itself (unreachable, bad credentials) propagates, what was written so far is recorded."""
    info = store.run_info(target)
    if info is None:
        raise RevertRefused(f"no run {target} in {store.path} (`sla-sync audit` lists the "
                            "runs that changed something)")
    if info["kind"] != "sync":
        if info["kind"] == "extend":
            raise RevertRefused(f"run {target} granted an extension (sla-sync extend), not a "
                                "sync: withdraw it by removing its tag from the record")
        raise RevertRefused(f"run {target} is a {info['kind']}, not a sync: revert the sync "
                            "run it undid instead")
    if info["dry_run"]:
        raise RevertRefused(f"run {target} was a dry run: it wrote nothing")
    started = time.monotonic()
    report = RevertReport(target=target, run_id=None, dry_run=dry_run)
    held: set[str] = set()
    if dry_run:
        held = {change.record_id for change, _, _ in store.pending()}
    else:
        report.run_id = store.begin_run(now, dry_run=False, kind="revert")
        settled = RunReport(run_id=report.run_id, now=now, dry_run=False)
        try:
            held = settle_pending(connector, store, settled, now)
        except BaseException:
            store.finish_run(report.run_id, "failed", {}, 0, "settling pending writes failed")
            raise
        report.failures += settled.failures
        report.warnings += settled.warnings
        report.recovered = settled.recovered
    try:
        _revert(connector, store, target, now, report, held)
    except BaseException as exc:
        if report.run_id is not None:
            store.finish_run(report.run_id, "failed", {"writes": report.writes},
                             round((time.monotonic() - started) * 1000),
                             str(exc) or type(exc).__name__)
        raise
    if report.run_id is not None:
        store.finish_run(report.run_id, "partial" if report.failures else "ok",
                         {"writes": report.writes, "errors": len(report.failures)},
                         round((time.monotonic() - started) * 1000), f"revert of run {target}")
    return report


def _revert(connector: Connector, store: StateStore, target: int, now: datetime,
            report: RevertReport, held: set[str]) -> None:
    rows = [r for r in store.audit(run_id=target) if r["kind"] == "sync"]
    done = store.reverted(r["id"] for r in rows)
    by_record: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        slot = row["field"]
        what = f"record {row['record_id']!r}"
        if slot == "note":
            report.kept.append(f"{what}: note by rule {row['rule']!r} "
                               f"({show(row['after'])!r}) {KEPT['note']}")
        elif slot.startswith("notify:"):
            report.kept.append(f"{what}: notification to {slot[7:]!r} by rule "
                               f"{row['rule']!r} {KEPT['notify']}")
        elif row["id"] in done:
            report.already.append(f"{what}: {_slot_name(slot)} was reverted already")
        else:
            by_record.setdefault(row["record_id"], []).append(row)
    for record_id, record_rows in by_record.items():
        if record_id in held:
            report.failures.append(f"record {record_id!r}: a write to it is still pending "
                                   "(its outcome is unknown): not reverted now; run again "
                                   "once a sync has settled it")
            continue
        _revert_record(connector, store, target, now, report, record_id, record_rows)


def _revert_record(connector: Connector, store: StateStore, target: int, now: datetime,
                   report: RevertReport, record_id: str, rows: list[dict[str, Any]]) -> None:
    for attempt in (1, 2):  # a conflict (someone edited it meanwhile): read again, once
        try:
            record = connector.read_back(record_id, now)
        except (ConnectorError, RecordError) as exc:
            if isinstance(exc, ConnectorError) and exc.record_id is None:
                raise
            report.failures.append(f"record {record_id!r}: cannot be read ({exc}); not "
                                   "reverted")
            return
        if record is None:
            report.already.append(f"record {record_id!r}: the helpdesk no longer has it")
            return
        undo = _undo(rows, record, target)
        if undo.change.is_empty() or report.dry_run:
            report.records += not undo.change.is_empty()
            _tell(report, undo)
            return
        # The rules undone are recorded as active, so that the next sync does not write again
        # what was reverted (a rule whose action made its own conditions false was left
        # inactive): they fire again only after their conditions have been false.
        outcome: dict[str, Any] = {"activated": sorted({step["rule"] for step in undo.steps}),
                                   "deactivated": [], "writes": undo.steps, "notify": []}
        assert report.run_id is not None
        store.begin_write(report.run_id, [(undo.change, outcome)], now)
        try:
            [result] = apply_each(connector, [undo.change], now)
        except OutcomeUnknown as exc:
            result = WriteResult(record_id, error=exc)
        error = result.error
        if error is None:
            written = result.record
            if lowers_level(outcome):
                written = _check_level(connector, report, undo, outcome, now) or written
            written = written or dataclasses.replace(
                undo.change.applied_to(record, now), updated_at=record.updated_at)
            store.commit(report.run_id, [(record_id, outcome, written)], now)
            report.writes += 1
            _tell(report, undo)
            return
        if isinstance(error, OutcomeUnknown | ConflictError):
            # a conflict may be our own attempt, resent after its answer was lost
            if _settle(connector, store, report, undo, outcome, error, attempt == 1):
                continue  # someone else's edit: plan again on what they left, once
            return
        if isinstance(error, RecordGone):
            store.forget(record_id)
            report.already.append(f"record {record_id!r}: the helpdesk no longer has it")
            return
        store.drop_pending(record_id)
        report.failures.append(f"record {record_id!r}: write failed: {error}; nothing "
                               "written, `sla-sync revert` again tries again")
        return


def _check_level(connector: Connector, report: RevertReport, undo: _Undo,
                 outcome: dict[str, Any], now: datetime) -> Record | None:
    """A write that lowers an escalation level is read back: a connector may only be able to
    raise one (Zendesk's `sla_escalation_N` tags: a write removes the lower tags only). A
    level that did not come down is not recorded as reverted, and is reported."""
    record_id, level = undo.change.record_id, undo.change.escalation_level
    try:
        shown = connector.read_back(record_id, now)
    except (ConnectorError, RecordError) as exc:
        if isinstance(exc, ConnectorError) and exc.record_id is None:
            raise
        report.warnings.append(f"record {record_id!r}: could not read it back to check its "
                               f"escalation level ({exc})")
        return None
    if shown is None or level is None or shown.escalation_level <= level:
        return shown
    for index, step in enumerate(undo.steps):
        if step["field"] == "escalation_level":
            del undo.steps[index], undo.restored[index]
            break
    outcome["writes"] = undo.steps
    report.failures.append(
        f"record {record_id!r}: the helpdesk still shows escalation level "
        f"{shown.escalation_level} after the revert set {level}: this connector cannot lower "
        "a level; lower it by hand (the rest was put back)")
    return shown


def _tell(report: RevertReport, undo: _Undo) -> None:
    report.records += report.run_id is not None and not undo.change.is_empty()
    report.restored += undo.restored
    report.left += undo.left
    report.already += undo.already


def _settle(connector: Connector, store: StateStore, report: RevertReport, undo: _Undo,
            outcome: dict[str, Any], error: ConnectorError, retry: bool) -> bool:
    """The answer to a revert's write was lost, or the helpdesk refused it as a conflict:
    read the record back. The write shows: recorded, never resent. An unknown outcome that
    does not show stays pending, for the next run to settle. A conflict that is not ours:
    True when the caller may plan again on what the other person left."""
    assert report.run_id is not None
    record_id = undo.change.record_id
    try:
        fresh = connector.read_back(record_id, undo.change.base_updated_at)
    except (ConnectorError, RecordError) as exc:
        if isinstance(exc, ConnectorError) and exc.record_id is None:
            raise
        report.failures.append(f"record {record_id!r}: {error}; reading it back failed "
                               f"({exc}): the write stays pending and the next sync or "
                               "revert settles it")
        return False
    if fresh is not None and is_applied(undo.change, fresh, True, lowers_level(outcome)):
        store.commit(report.run_id, [(record_id, outcome, fresh)], datetime.now(UTC))
        report.writes += 1
        _tell(report, undo)
        return False
    if isinstance(error, OutcomeUnknown):
        report.failures.append(f"record {record_id!r}: {error}; read back, the record does "
                               "not show it (yet): the write stays pending and the next sync "
                               "or revert settles it")
        return False
    store.drop_pending(record_id)
    if fresh is not None and retry:
        return True
    report.failures.append(f"record {record_id!r}: changed again while being reverted "
                           f"({error}); nothing written, `sla-sync revert` again tries again")
    return False


# -- the commands ------------------------------------------------------------------------------

class Exit(click.ClickException):
    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.exit_code = code  # type: ignore[misc]


def _connector(config: Config) -> Any:
    try:
        return open_connector(dict(config.connector), config.base_dir)
    except ValueError as exc:
        raise Exit(f"{config.path}: {exc}", EXIT_INVALID) from None


def _config(path: str | None) -> Config:
    try:
        return load_config(locate(path))
    except ConfigError as exc:
        raise Exit(str(exc), EXIT_INVALID) from None


config_option = click.option(
    "--config", "config_path", metavar="FILE",
    help="Configuration file (default: $SLA_SYNC_CONFIG, else ./config.yaml).")


@click.command("audit")
@config_option
@click.option("--record", "record_id", metavar="ID", help="Only this record.")
@click.option("--run", "run_id", type=int, metavar="N", help="Only this run.")
@click.option("--since", metavar="DATE", help="Only changes made at or after DATE (a date, "
                                               "UTC, or an ISO 8601 instant).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per change.")
def audit_command(config_path: str | None, record_id: str | None, run_id: int | None,
                  since: str | None, as_json: bool) -> None:
    """What sla-sync changed: run, time, record, rule, action, field, before, after. Reverts
    show as action `revert`. Reads the state file only."""
    start = instant_option(since, "--since")
    config = _config(config_path)
    if not config.state.exists():
        raise Exit(f"{config.state}: no state file yet: nothing was changed (run `sla-sync "
                   "run` first)", EXIT_INVALID)
    try:
        with StateStore(config.state, readonly=True) as store:
            rows = store.audit(record_id, run_id, start)
    except StateError as exc:
        raise Exit(str(exc), EXIT_INVALID) from None
    if as_json:
        for row in rows:
            click.echo(audit_json(row))
        return
    if not rows:
        click.echo("no changes recorded" + (" that match" if record_id or run_id or start
                                              else ""), err=True)
        return
    click.echo(audit_table(rows), nl=False)


@click.command("revert")
@click.argument("run_id", metavar="RUN", type=click.IntRange(min=1))
@config_option
@click.option("--dry-run", is_flag=True, help="Say what would be put back; write nothing.")
def revert_command(run_id: int, config_path: str | None, dry_run: bool) -> None:
    """Put back what run RUN changed, where the helpdesk still holds sla-sync's value; a
    value someone changed since is left alone and listed, and so are notes and
    notifications, which cannot be undone."""
    config = _config(config_path)
    connector = _connector(config)
    if not config.state.exists():
        raise Exit(f"{config.state}: no state file: there is no run to revert", EXIT_INVALID)
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        if dry_run:
            with StateStore(config.state, readonly=True) as store:
                result = revert(connector, store, run_id, now, dry_run=True)
        else:
            with StateLock(config.state), StateStore(config.state) as store:
                result = revert(connector, store, run_id, now)
    except RevertRefused as exc:
        raise Exit(str(exc), EXIT_INVALID) from None
    except StateLocked as exc:
        raise Exit(str(exc), EXIT_LOCKED) from None
    except StateError as exc:
        raise Exit(str(exc), EXIT_INVALID) from None
    except FileProblem as exc:
        raise Exit(f"revert failed: {exc}", EXIT_INVALID) from None
    except (ConnectorError, RecordError) as exc:
        raise Exit(f"revert failed: {exc}; what was put back so far is recorded, run it "
                   "again to finish", EXIT_FAILED) from None
    except OSError as exc:
        where = Path(exc.filename) if exc.filename else config.state
        raise Exit(file_problem(where, exc, "use the file"), EXIT_INVALID) from None
    except sqlite3.Error as exc:
        raise Exit(f"{config.state}: cannot write the state file ({exc}); what was put back "
                   "so far is recorded", EXIT_INVALID) from None
    _print(result)
    if result.failures:
        sys.exit(EXIT_PARTIAL)


def _print(report: RevertReport) -> None:
    mode = " (dry run: nothing written)" if report.dry_run else f" (run {report.run_id})"
    verb = "would put back" if report.dry_run else "put back"
    for label, lines in (("would put back" if report.dry_run else "restored", report.restored),
                         ("left alone", report.left), ("kept", report.kept),
                         ("nothing to do", report.already)):
        for line in lines:
            click.echo(f"{label}: {line}")
    for line in report.failures:
        click.echo(f"error: {line}", err=True)
    for line in report.warnings:
        click.echo(f"warning: {line}", err=True)
    click.echo(f"revert of run {report.target}{mode}: {verb} {len(report.restored)} values "
               f"on {report.records} records; {len(report.left)} left alone (changed "
               f"since), {len(report.kept)} notes and notifications kept, "
               f"{len(report.failures)} errors", err=True)


AUDIT_COMMANDS = (audit_command, revert_command)
