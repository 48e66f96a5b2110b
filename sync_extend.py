"""`sla-sync extend ID DURATION --reason TEXT`: an agent grants one record extra SLA time.

The extension is written to the record itself, as the tag rules.extensions reads
(`sla_extend_2h`, or `sla_extend_resolution_2h` with `--target`) and an internal note that
says who granted it and why, so the helpdesk shows it and every later sync, report and
explain sees the due time moved. The write goes through the sync's own journal
(`StateStore.begin_write`, `apply`, `commit`), in a run of kind `extend` whose audit rows
(rule `extend by WHO`) hold the tag, the note and the reason. A record that carries the tag
already is not written again: the same extension is never granted twice. To withdraw one,
remove the tag in the helpdesk.
"""

from __future__ import annotations

import getpass
import sqlite3
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
    RecordError,
    RecordGone,
    WriteResult,
)
from sla_sync.connector.base import OutcomeUnknown, apply_each
from sla_sync.connector.file import FileProblem, file_problem
from sla_sync.rules.extensions import extension_tag
from sla_sync.sync_audit import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_LOCKED,
    Exit,
    _config,
    _connector,
    config_option,
)
from sla_sync.sync_run import RunReport, is_applied, settle_pending
from sla_sync.sync_state import StateError, StateLock, StateLocked, StateStore

EXIT_NOT_WRITTEN = 3


@dataclass
class ExtendReport:
    record_id: str
    tag: str
    run_id: int | None = None
    written: bool = False
    already: bool = False
    failures: list[str] = field(default_factory=list)


def extend(connector: Connector, store: StateStore, record_id: str, duration: str,
           reason: str, who: str, now: datetime, target: str | None = None) -> ExtendReport:
    """Write the extension to the record (see the module's text). ValueError for a duration
    or target that cannot be one; an error of the helpdesk itself propagates."""
    tag = extension_tag(duration, target)
    report = ExtendReport(record_id, tag)
    started = time.monotonic()
    report.run_id = store.begin_run(now, dry_run=False, kind="extend")
    settled = RunReport(run_id=report.run_id, now=now, dry_run=False)
    status = "failed"
    try:
        held = settle_pending(connector, store, settled, now)
        report.failures += settled.failures
        if record_id in held:
            report.failures.append(f"record {record_id!r}: a write to it is still pending "
                                   "(its outcome is unknown): run a sync first")
        else:
            _write(connector, store, report, duration, reason, who, now, target)
        status = "partial" if report.failures else "ok"
    finally:
        store.finish_run(report.run_id, status, {"writes": int(report.written)},
                         round((time.monotonic() - started) * 1000),
                         f"extend {record_id} by {duration}")
    return report


def _write(connector: Connector, store: StateStore, report: ExtendReport, duration: str,
           reason: str, who: str, now: datetime, target: str | None) -> None:
    assert report.run_id is not None
    record_id, tag = report.record_id, report.tag
    which = target.replace("_", " ") if target else "first response and resolution"
    text = f"SLA extension: +{duration} on {which}, granted by {who}: {reason}"
    notes = connector.capabilities.notes
    for attempt in (1, 2):  # a conflict (someone edited it meanwhile): read again, once
        try:
            record = connector.read_back(record_id, now)
        except (ConnectorError, RecordError) as exc:
            if isinstance(exc, ConnectorError) and exc.record_id is None:
                raise
            report.failures.append(f"record {record_id!r}: cannot be read ({exc})")
            return
        if record is None:
            report.failures.append(f"record {record_id!r}: the helpdesk has no such record")
            return
        if any(t.lower() == tag.lower() for t in record.tags):
            report.already = True
            return
        change = ChangeSet(record_id, base_updated_at=record.updated_at, add_tags=(tag,),
                           notes=(text,) if notes else ())
        rule = f"extend by {who}"
        steps: list[dict[str, Any]] = [
            {"rule": rule, "action": "extend", "field": f"tag:{tag}", "before": "absent",
             "after": "present", "kind": "extend"},
            {"rule": rule, "action": "extend", "field": "note" if notes else "reason",
             "before": None, "after": text if notes else reason, "kind": "extend"}]
        outcome: dict[str, Any] = {"activated": [], "deactivated": [], "writes": steps,
                                   "notify": []}
        store.begin_write(report.run_id, [(change, outcome)], now)
        try:
            [result] = apply_each(connector, [change], now)
        except OutcomeUnknown as exc:
            result = WriteResult(record_id, error=exc)
        error = result.error
        if error is None:
            written = result.record or change.applied_to(record, now)
            store.commit(report.run_id, [(record_id, outcome, written)], now)
            report.written = True
            return
        if isinstance(error, OutcomeUnknown | ConflictError):
            fresh = None
            try:
                fresh = connector.read_back(record_id, record.updated_at)
            except (ConnectorError, RecordError) as exc:
                if isinstance(exc, ConnectorError) and exc.record_id is None:
                    raise
            if fresh is not None and is_applied(change, fresh, notes):
                store.commit(report.run_id, [(record_id, outcome, fresh)], now)
                report.written = True
                return
            if isinstance(error, OutcomeUnknown):
                report.failures.append(f"record {record_id!r}: {error}; the write stays "
                                       "pending and the next sync settles it")
                return
            store.drop_pending(record_id)
            if attempt == 1:
                continue
        else:
            store.drop_pending(record_id)
        gone = isinstance(error, RecordGone)
        report.failures.append(f"record {record_id!r}: " + (
            "the helpdesk no longer has it" if gone else f"write failed: {error}; nothing "
            "written"))
        return


@click.command("extend")
@click.argument("record_id", metavar="ID")
@click.argument("duration", metavar="DURATION")
@click.option("--reason", required=True, help="Why the time is granted (kept in the note "
                                              "and the audit).")
@click.option("--target", metavar="TARGET", help="Extend only this target (default: first "
                                                 "response and resolution).")
@click.option("--by", "who", metavar="NAME", help="Who grants it (default: the login name).")
@config_option
def extend_command(record_id: str, duration: str, reason: str, target: str | None,
                   who: str | None, config_path: str | None) -> None:
    """Grant record ID extra SLA time (DURATION: 2h, 1h30m, 2bd): writes the tag
    sla_extend_DURATION and a note saying who and why; the due times move from the next
    sync on, and reports count a clock met with it as extended."""
    if not reason.strip():
        raise Exit("--reason: say why the time is granted", EXIT_INVALID)
    try:
        extension_tag(duration, target)
    except ValueError as exc:
        raise Exit(f"{'--target' if target and 'target' in str(exc) else 'DURATION'}: {exc}",
                   EXIT_INVALID) from None
    who = who or _login()
    config = _config(config_path)
    connector = _connector(config)
    if not config.state.exists():
        raise Exit(f"{config.state}: no state file yet: run `sla-sync run` first",
                   EXIT_INVALID)
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        with StateLock(config.state), StateStore(config.state) as store:
            result = extend(connector, store, record_id, duration, reason.strip(), who, now,
                            target)
    except StateLocked as exc:
        raise Exit(str(exc), EXIT_LOCKED) from None
    except StateError as exc:
        raise Exit(str(exc), EXIT_INVALID) from None
    except FileProblem as exc:
        raise Exit(f"extend failed: {exc}", EXIT_INVALID) from None
    except (ConnectorError, RecordError) as exc:
        raise Exit(f"extend failed: {exc}", EXIT_FAILED) from None
    except OSError as exc:
        where = Path(exc.filename) if exc.filename else config.state
        raise Exit(file_problem(where, exc, "use the file"), EXIT_INVALID) from None
    except sqlite3.Error as exc:
        raise Exit(f"{config.state}: cannot write the state file ({exc})", EXIT_INVALID) \
            from None
    for line in result.failures:
        click.echo(f"error: {line}", err=True)
    if result.already:
        click.echo(f"record {record_id!r} already carries {result.tag}: nothing written")
    elif result.written:
        click.echo(f"record {record_id!r}: {result.tag} written (run {result.run_id})")
    if result.failures:
        raise SystemExit(EXIT_NOT_WRITTEN)


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in a bare container
        return "unknown"
