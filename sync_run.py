"""The sync loop: fetch what changed, evaluate every open record, write what must change.

This module and the CLI are the only places that know both a connector and the rules.
Order of a run:
1. fetch the pages changed since the cursor into the record mirror, planning each page's
   records as it is mirrored (but those with a pending write, and every record under rules
   that read the whole desk: `_page_wise`);
2. settle any write an earlier run left pending (a crash, an answer that never came): read
   the record back from the helpdesk, with its notes; applied: record it; not applied:
   drop it and plan again; not readable now: keep it pending and leave the record alone;
3. plan the records read and not planned yet, and those whose wake-up time has come
   (rules/wake.py: when time alone can next change what the rules say), so that time alone
   makes SLA rules fire; all of them under another policy, an earlier `now` than before,
   or `full`;
4. for each batch of non-empty changes: journal the batch in one transaction, send it, then
   record its activations and audit rows in one transaction (plans that write nothing are
   committed together, in batches); a batch the helpdesk runs as jobs is settled while the
   next one is planned (`connector.base.submit_many`), at the latest before a page holding
   one of its records is mirrored and before step 2, and a full batch waits, while the
   loop plans on, for as long as the helpdesk would wait before taking it
   (`connector.base.wait_before`);
5. move the cursor only when every write succeeded.
On a state file that has never completed a run, `first_run="baseline"` replaces steps 4's
writes: every rule whose conditions already hold on the record as read is recorded as
active, and nothing is written or notified (a lost state file must not write again what
the helpdesk already shows); `"act"` writes as every later run does.
A crash anywhere leaves a state from which the next run finishes the job without
repeating a write beyond the one record in flight.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sla_sync.connector import (
    ConflictError,
    Connector,
    ConnectorError,
    Record,
    RecordError,
    RecordGone,
    WriteResult,
)
from sla_sync.connector.base import (
    Answer,
    OutcomeUnknown,
    apply_single,
    fetch,
    submit_many,
    wait_before,
)
from sla_sync.connector.model import (
    CUSTOM_FIELD_PREFIX,
    ChangeSet,
    format_instant,
    parse_instant,
)
from sla_sync.rules.assignment import Pool
from sla_sync.rules.engine import SlaMark, note_values, sla_and_clocks
from sla_sync.rules.load import Entry, Load, at_risk, measure
from sla_sync.rules.planner import WRITE, Plan, plan
from sla_sync.rules.policy import Policy
from sla_sync.rules.wake import Wakes, policy_digest, result_of
from sla_sync.sync_state import StateStore

if TYPE_CHECKING:  # loaded when an alert is raised or sent: a plain sync never needs it
    from sla_sync.sync_alerts import Alerts

log = logging.getLogger("sla_sync.run")

#: The most batches of planned writes the loop keeps planning past while the helpdesk would
#: wait before taking the next (`connector.base.wait_before`): beyond, it waits too.
HELD_BATCHES = 3

#: Reports progress: (stage, counts so far); see sync_log.Progress. Called often: cheap.
Progress = Callable[[str, Mapping[str, int]], None]


@dataclass
class RunReport:
    run_id: int
    now: datetime
    dry_run: bool
    read: int = 0
    #: of `read`, records a versioned connector found exactly as the mirror holds them
    #: (`connector.base.Mirrored`: most often sla-sync's own writes), neither parsed nor
    #: mirrored again
    unchanged: int = 0
    evaluated: int = 0
    changed: int = 0
    writes: int = 0
    skipped: int = 0
    errors: int = 0
    recovered: int = 0
    retired: int = 0
    notified: int = 0
    notify_failures: int = 0
    held: int = 0  # alerts held for quiet hours or a digest interval
    duration_ms: int = 0
    cursor_moved: bool = False
    stopped: bool = False  # should_stop said so: the rest is left for the next run
    full: bool = False  # every record evaluated, not only those read or due
    #: a first run under first_run: baseline: rules that hold are recorded, nothing written
    baseline: bool = False
    baselined: int = 0  # records whose rules would have acted, recorded as already active
    baseline_rules: int = 0  # the rule activations so recorded
    status: str = "running"
    problems: list[str] = field(default_factory=list)  # skipped records
    failures: list[str] = field(default_factory=list)  # failed evaluations and writes
    warnings: list[str] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)

    def figures(self) -> dict[str, int]:
        return {"read": self.read, "evaluated": self.evaluated, "changed": self.changed,
                "writes": self.writes, "skipped": self.skipped, "errors": self.errors}

    def summary(self) -> dict[str, Any]:
        """The run as one structured record (`run --json`'s last line, the JSON log's)."""
        return {"run": self.run_id, "now": format_instant(self.now), "dry_run": self.dry_run,
                "status": self.status, **self.figures(), "unchanged": self.unchanged,
                "recovered": self.recovered,
                "notified": self.notified, "notify_failures": self.notify_failures,
                "held": self.held,
                "retired": self.retired, "full": self.full, "cursor_moved": self.cursor_moved,
                "stopped": self.stopped, "duration_ms": self.duration_ms,
                "baseline": self.baseline, "baselined": self.baselined,
                "baseline_rules": self.baseline_rules}

    def quiet(self) -> bool:
        """Nothing happened worth a line: nothing changed, written, sent, settled or
        reported."""
        return not (self.changed or self.writes or self.errors or self.recovered
                    or self.notified or self.notify_failures or self.problems
                    or self.failures or self.warnings or self.stopped)


def outcome_of(p: Plan, previous: SlaMark | None) -> dict[str, Any]:
    """What the state store records for a plan once its change is applied."""
    outcome: dict[str, Any] = {
        "activated": sorted(p.activated),
        "deactivated": sorted(p.deactivated),
        "writes": [{"rule": s.rule, "action": s.action, "field": s.slot, "before": s.before,
                    "after": s.after} for s in p.steps if s.outcome == WRITE],
        "notify": [{"rule": rule, "webhook": webhook, "text": text, "data": alert_of(p, rule)}
                   for rule, webhook, text in p.notifications],
    }
    mark = p.final.sla_mark
    if mark is not None and mark != previous:
        outcome["sla_mark"] = {"sla": mark.name, "since": format_instant(mark.since)}
    return outcome


def alert_of(p: Plan, rule: str) -> dict[str, Any]:
    """What a channel renders an alert from (sync_alerts): the record's values as the plan
    leaves it, the event kind (an escalation by this rule, else a breach when a clock is
    breached, else a warning) and, when its calendar is closed, the instant it opens."""
    from sla_sync.sync_alerts import alert_data, next_opening
    final = p.final
    if any(s.rule == rule and s.action == "escalate" and s.outcome == WRITE for s in p.steps):
        event = "escalation"
    elif any(final.facts.get(f"{target}_breached") for target in final.clocks):
        event = "breach"
    else:
        event = "warning"
    values = note_values(final.record, final.facts, final.clocks, final.calendar)
    opens = next_opening(final.calendar.is_open, final.calendar.add_business_seconds, final.now)
    return alert_data(event, values, final.calendar.timezone, opens)


def describe(p: Plan) -> dict[str, Any]:
    """One changed record for `run --json`."""
    change = p.change.to_dict()
    change.pop("base_updated_at", None)
    change.pop("id", None)
    out = {"id": p.record.id, "kind": p.record.kind, "sla": p.evaluation.facts["sla"],
           "rules": list(p.fired), "change": change}
    if p.notifications:
        out["notify"] = [{"rule": rule, "webhook": webhook, "text": text}
                         for rule, webhook, text in p.notifications]
    return out


def is_applied(change: ChangeSet, record: Record, notes_readable: bool = True,
               lowers_level: bool = False) -> bool:
    """Does the record, as read back from the helpdesk, show every effect of `change`? (Used
    to settle a write whose outcome is unknown: if it shows, the write went through.) Notes
    count when added at or after the version the change was planned on, so an older note
    with the same text is not taken for this one; a note may sit inside a longer comment
    (Zendesk posts a change's notes as one comment). Without `notes_readable` notes are not
    looked for: the caller must not take such a write as done. An escalation level counts
    when the record is at least at it (a person may have raised it further), or, for a
    write that `lowers_level` (a revert), at most at it."""
    current = {"priority": record.priority, "group": record.group,
               "assignee": record.assignee, "status": record.status,
               **{f"{CUSTOM_FIELD_PREFIX}{k}": v for k, v in record.custom.items()}}
    base = change.base_updated_at
    texts = [_plain(note.text) for note in record.notes if base is None or note.at >= base]
    tags = {tag.lower() for tag in record.tags}
    return (all(current.get(k) == v for k, v in change.fields.items())
            and all(tag.lower() in tags for tag in change.add_tags)
            and not any(tag.lower() in tags for tag in change.remove_tags)
            and (not notes_readable
                 or all(any(_plain(text) in seen for seen in texts) for text in change.notes))
            and (change.escalation_level is None
                 or (record.escalation_level <= change.escalation_level if lowers_level
                     else record.escalation_level >= change.escalation_level)))


def lowers_level(outcome: Mapping[str, Any]) -> bool:
    """Does this journalled write lower the escalation level (a revert does)?"""
    return any(step["field"] == "escalation_level"
               and (step["after"] or 0) < (step["before"] or 0)
               for step in outcome.get("writes", ()))


def _plain(text: str) -> str:
    """A note's text with its whitespace folded: helpdesks re-wrap and trim what they store."""
    return " ".join(text.split())


#: Sends one notification: (webhook name, text, context) -> None; raises ConnectorError.
Notifier = Callable[[str, str, Mapping[str, Any]], None]


def run_sync(connector: Connector, policy: Policy, store: StateStore, now: datetime,
             dry_run: bool = False, notifier: Notifier | None = None,
             should_stop: Callable[[], bool] = lambda: False, full: bool = False,
             progress: Progress | None = None, first_run: str = "act") -> RunReport:
    """One sync. `should_stop` is asked between pages and between records (a SIGTERM): once
    it says yes, the batch already planned is written and recorded, the cursor stays.
    `full` evaluates every record, not only those read or due (see `_evaluation_set`).
    `progress` is told how reading, evaluating and writing go (a terminal's progress line).
    `first_run`: what a run does while the state file has not completed one ("baseline"
    or "act"; the CLI passes the config's, whose default is "baseline")."""
    started = time.monotonic()
    baseline = first_run == "baseline" and not store.completed_a_run()
    report = RunReport(run_id=store.begin_run(now, dry_run), now=now, dry_run=dry_run,
                       baseline=baseline)
    try:
        _run(connector, policy, store, now, report, notifier, should_stop, full,
             progress or _no_progress)
    except BaseException as exc:
        report.status = "failed"
        report.errors += 1  # the failure itself
        report.duration_ms = round((time.monotonic() - started) * 1000)
        store.finish_run(report.run_id, "failed", report.figures(), report.duration_ms,
                         str(exc) or type(exc).__name__)
        raise
    report.status = "ok" if report.errors == 0 and report.notify_failures == 0 else "partial"
    report.status = "stopped" if report.stopped else report.status
    report.duration_ms = round((time.monotonic() - started) * 1000)
    store.finish_run(report.run_id, report.status, report.figures(), report.duration_ms)
    return report


def _no_progress(stage: str, counts: Mapping[str, int]) -> None:
    pass


def _run(connector: Connector, policy: Policy, store: StateStore, now: datetime,
         report: RunReport, notifier: Notifier | None, should_stop: Callable[[], bool],
         full: bool, progress: Progress) -> None:
    dry = report.dry_run
    cursor = store.cursor(connector.identity)
    digest = policy_digest(policy)
    fetched: dict[str, Record] = {}
    store.start_taking()
    if _page_wise(policy, dry):
        full = full or _must_evaluate_all(store, digest, now)
        _move_horizon(store, now)
        writer = _Writer(connector, policy, store, now, report, progress)
        on_page = _PageWise(writer, report, should_stop, None if full else now)
        try:
            next_cursor = _read(connector, store, cursor, report, fetched, should_stop,
                                progress, on_page)
        except ConnectorError:
            _settle_if_possible(writer)
            raise
        if report.stopped:
            writer.drain()
            writer.finish()
            return
        writer.settle_sent()  # this run's own writes are no earlier run's pending ones
        held = settle_pending(connector, store, report, now)
        load = None
    else:
        next_cursor = _read(connector, store, cursor, report, fetched, should_stop, progress)
        if report.stopped:
            return
        held = set() if dry else settle_pending(connector, store, report, now)
        # Rules that read the desk's load answer with the figures of this sync: when they
        # are not those of the last full evaluation, no wake-up time can be trusted.
        load = desk_load(policy, store, now) if policy.load_variables else None
        full = dry or full or _must_evaluate_all(store, digest, now) or (
            load is not None and store.meta("load") != load.digest())
        if not dry:
            _move_horizon(store, now)
        writer = _Writer(connector, policy, store, now, report, progress, load)
    report.full = full
    for record in _evaluation_set(store, writer, None if full else now, fetched if dry else None):
        if progress is not _no_progress:
            progress("evaluating", {"done": report.evaluated, "total": writer.due})
        if should_stop():
            report.stopped = True
            break
        if record.id not in held:  # else its earlier write is unsettled: planning could repeat it
            _plan_one(writer, record, report, dry)
    writer.drain()
    writer.finish()
    progress("evaluating", {"done": report.evaluated, "total": writer.due})
    if full and not dry and not report.stopped:
        # Every wake-up time now stems from this policy and this `now`.
        store.set_meta({"policy": digest, "horizon": format_instant(now),
                        **({"load": load.digest()} if load is not None else {})})

    identity = connector.identity
    if not dry and report.errors == 0 and not report.stopped and (
            next_cursor != cursor or store.memory_staged(identity, report.run_id)):
        store.move_cursor(identity, next_cursor, report.run_id)  # and the memory kept
        report.cursor_moved = next_cursor != cursor
    elif dry:
        store.drop_staged_memory(identity)
    if not dry and not report.stopped:
        _drain_outbox(store, notifier, report, now)


def _page_wise(policy: Policy, dry: bool) -> bool:
    """Can the records read be planned page by page, as they are mirrored? Not in a dry run
    (nothing is mirrored), nor under rules that read the whole desk: the load variables
    and assign_next's open records per agent are figures of the mirror once every page is
    in."""
    return not dry and not policy.load_variables and not uses_assign_next(policy)


def _move_horizon(store: StateStore, now: datetime) -> None:
    horizon = store.meta("horizon")
    if horizon is None or parse_instant(horizon, "horizon") < now:
        store.set_meta({"horizon": format_instant(now)})


class _PageWise:
    """Plans each page's records as soon as the page is mirrored, from the Records the
    connector built (not parsed back from the mirror), so that a first sync holds a page
    and the writes not sent yet, not the desk. Only records the mirror now holds exactly
    as read, that are due, and that have no pending write are planned here
    (`StateStore.take_fresh`): a pending write is settled after the fetch, before its
    record is planned; the rest is planned from the mirror after the fetch, as before. A
    record a later page brings again is planned again on that page's version, and its plan
    not sent yet, if any, is dropped (`_Writer.unplan`): one write per record."""

    def __init__(self, writer: _Writer, report: RunReport, should_stop: Callable[[], bool],
                 due_by: datetime | None):
        self.writer, self.report, self.should_stop = writer, report, should_stop
        self.due_by = due_by

    def before(self, records: list[Record],
               unchanged: Sequence[tuple[int, str]] = ()) -> None:
        """Before a page is mirrored: a batch in flight that holds one of its records is
        settled first, so that the mirror takes the page's version after the write's."""
        sending = self.writer.in_flight()
        if sending and (any(r.id in sending for r in records)
                        or any(record_id in sending for _, record_id in unchanged)):
            self.writer.settle_sent()

    def __call__(self, records: list[Record],
                 unchanged: Sequence[tuple[int, str]] = ()) -> None:
        """Plans the page's records taken (`StateStore.take_fresh`), and those of its records
        a versioned connector left out as the mirror's that are due, in the page's order."""
        writer = self.writer
        taken = writer.store.take_fresh(records, self.due_by)
        if unchanged:
            due = writer.store.take_unchanged([record_id for _, record_id in unchanged],
                                              self.due_by)
            if due:
                taken = _in_page_order(records, taken, unchanged, due)
        writer.unplan({r.id for r in taken})  # planned again below, on this page's version
        writer.due += len(taken)
        writer.load([r.id for r in taken])
        for record in taken:
            if self.should_stop():
                self.report.stopped = True
                return
            _plan_one(writer, record, self.report, False)


def _in_page_order(records: list[Record], taken: list[Record],
                   unchanged: Sequence[tuple[int, str]], due: dict[str, Record],
                   ) -> list[Record]:
    """The page's records taken and its unchanged ones due (as the mirror holds them), in
    the order of the page as the helpdesk gave it (`Page.unchanged`)."""
    chosen = {id(record) for record in taken}
    ordered: list[Record] = []
    done = 0
    for place, record_id in unchanged:
        ordered.extend(record for record in records[done:place] if id(record) in chosen)
        done = max(done, place)
        if record_id in due:
            ordered.append(due[record_id])
    ordered.extend(record for record in records[done:] if id(record) in chosen)
    return ordered


def _read(connector: Connector, store: StateStore, cursor: str | None, report: RunReport,
          fetched: dict[str, Record], should_stop: Callable[[], bool],
          progress: Progress, on_page: _PageWise | None = None) -> str | None:
    """Step 1: the pages changed since `cursor` into the mirror (a dry run: into `fetched`),
    each handed to `on_page` once mirrored; the cursor after the last page read.
    `report.stopped` when asked to stop."""
    next_cursor = cursor
    pages = 0
    progress("reading", {"pages": 0, "records": 0})
    # A dry run reads every record as the helpdesk has it: what it shows is not the mirror's.
    for page in fetch(connector, cursor, store.memory(connector.identity, report.run_id),
                      None if report.dry_run else store):
        pages += 1
        log.debug("run %d: page %d: %d records, %d skipped", report.run_id, pages,
                  len(page.records), len(page.problems),
                  extra={"event": "page", "run": report.run_id, "page": pages,
                         "records": len(page.records), "skipped": len(page.problems)})
        report.read += len(page.records) + len(page.unchanged)
        report.unchanged += len(page.unchanged)
        report.skipped += len(page.problems)
        report.problems.extend(str(problem) for problem in page.problems)
        report.warnings.extend(page.notices)
        if report.dry_run:
            fetched.update((r.id, r) for r in page.records)
        else:
            if on_page is not None:
                on_page.before(page.records, page.unchanged)
            store.mirror(page.records, report.run_id, page.problems, page.versions)
        next_cursor = page.cursor
        progress("reading", {"pages": pages, "records": report.read + report.skipped})
        if on_page is not None:
            on_page(page.records, page.unchanged)
        if report.stopped or should_stop():
            report.stopped = True
            break
    return next_cursor


def _plan_one(writer: _Writer, record: Record, report: RunReport, dry: bool) -> None:
    """Plan one record and hand its outcome to the writer: queued for writing, kept (nothing
    to write), or, on a first run under baseline, recorded as already done."""
    p = writer.plan(record)
    if p is None:
        return
    if not p.settled:
        report.warnings.append(
            f"record {record.id!r}: rules kept changing it for {p.passes} passes "
            f"({', '.join(p.fired)}); check the policy for rules that undo each other")
    if p.acts and report.baseline:
        # A first run under baseline: what holds already is taken as done, not written.
        report.baselined += 1
        report.changes.append({**describe(p), "baseline": True})
        writer.baseline(p, commit=not dry)
        return
    if p.acts:
        report.changed += 1
        report.changes.append(describe(p))
    if dry:
        return
    if not p.change.is_empty():
        writer.queue(p)
        return
    writer.keep(p)


#: Records planned per read of the mirror and the ledger: what an evaluation holds at once.
CHUNK = 1000


def _evaluation_set(store: StateStore, writer: _Writer, due_by: datetime | None,
                    fetched: dict[str, Record] | None) -> Iterator[Record]:
    """The records to evaluate, a chunk of the mirror at a time, with the chunk's ledger;
    a dry run (`fetched`: what it read, not mirrored) sees those over the mirror's."""
    known: set[str] = set()

    def counted(total: int) -> None:
        writer.due += total

    for chunk in store.evaluation_chunks(due_by, CHUNK, counted):
        writer.load([r.id for r in chunk])
        if fetched is not None:
            known.update(r.id for r in chunk)
            chunk = [fetched.get(r.id, r) for r in chunk]
        yield from chunk
    if fetched is not None:
        extra = [r for r in fetched.values() if r.id not in known]
        writer.due += len(extra)
        writer.load([r.id for r in extra])
        yield from extra


def _must_evaluate_all(store: StateStore, digest: str, now: datetime) -> bool:
    """The wake-up times hold for the policy they were computed with, from the `now` they
    were computed at on: another policy, or an earlier `now`, evaluates everything."""
    horizon = store.meta("horizon")
    return store.meta("policy") != digest or (
        horizon is not None and now < parse_instant(horizon, "horizon"))


class _Writer:
    """Plans records and writes their changes: in batches where the connector writes in
    bulk, one by one otherwise; a conflict is re-read, re-planned and retried once."""

    def __init__(self, connector: Connector, policy: Policy, store: StateStore,
                 now: datetime, report: RunReport, progress: Progress = _no_progress,
                 load: Load | None = None):
        self.connector, self.policy, self.store = connector, policy, store
        self.now, self.report = now, report
        self.progress = progress
        self.due = 0  # records to evaluate, as far as known
        self.queued = 0  # changes planned for writing so far
        self.sent = 0  # of which sent (whatever their outcome)
        self.active: dict[str, frozenset[str]] = {}
        self.marks: dict[str, SlaMark] = {}
        capabilities = connector.capabilities
        self.batch_size = max(1, capabilities.batch_size) if capabilities.bulk_writes else 1
        self.pending: list[Plan] = []
        #: The batch sent and not settled yet (the helpdesk runs it while the next records
        #: are planned), with what gives its results.
        self.sending: tuple[list[Plan], Answer] | None = None
        self.overlaps = callable(getattr(connector, "submit_many", None))
        self.quiet: list[tuple[str, dict[str, Any], Record | None]] = []  # nothing to write
        self.wakes: list[tuple[Record, datetime | None]] = []
        self.wake_rules = Wakes(policy)
        self.pool: Pool | None = None  # read on the first plan that needs it
        self.assigns = uses_assign_next(policy)
        self.desk = load  # the load variables' figures

    def load(self, ids: list[str]) -> None:
        """The ledger of the records about to be planned (one chunk at a time), keeping that
        of the planned writes not sent yet: a batch fills across chunks."""
        waiting = {p.record.id for p in self.pending} | self.in_flight()
        active = {key: value for key, value in self.active.items() if key in waiting}
        marks = {key: value for key, value in self.marks.items() if key in waiting}
        active.update(self.store.active_rules(ids))
        marks.update(self.store.sla_marks(ids))
        self.active, self.marks = active, marks

    def plan(self, record: Record, again: bool = False) -> Plan | None:
        """The record's plan; `again` for a re-plan of a record already counted."""
        try:
            p = plan(record, self.policy, self.now, self.active.get(record.id, frozenset()),
                     self.marks.get(record.id), self.agents(), self.desk)
        except Exception as exc:  # a rule that blows up on one record must not stop the rest
            if not self.report.dry_run:
                self.wakes.append((record, self.now))  # due again next run
            self.report.errors += 1
            self.report.failures.append(f"record {record.id!r}: evaluation failed: {exc!r}")
            return None
        if not again:
            self.report.evaluated += 1
        return p

    def agents(self) -> Pool | None:
        """The sync's agent pool for assign_next, read once, when a policy uses it."""
        if self.pool is None and self.assigns:
            self.pool = agent_pool(self.policy, self.store, self.connector, self.report)
        return self.pool

    def outcome(self, p: Plan) -> dict[str, Any]:
        return outcome_of(p, self.marks.get(p.record.id))

    def keep(self, p: Plan) -> None:
        """A plan with nothing to write: its ledger changes and its wake-up time are
        committed with the others'."""
        result = result_of(p, self.marks.get(p.record.id), self.wake_rules)
        if not result.quiet:
            self.quiet.append((p.record.id, self.outcome(p), None))
        self.wakes.append((p.record, result.wake_at))
        if result.wake_at is None:
            self.report.retired += 1
        if len(self.wakes) >= 1000:
            self.finish()

    def baseline(self, p: Plan, commit: bool = True) -> None:
        """A first run under baseline: the rules that hold on the record as read (its first
        evaluation, before any cascade) are recorded as active, the rest as inactive, and
        nothing is written or notified. Due again at the next sync, which sees them active.
        Without `commit` (a dry run) they are only counted."""
        holding = frozenset(o.rule.name for o in p.evaluation.outcomes if o.fired)
        outcome: dict[str, Any] = {"activated": sorted(holding - p.active_before),
                                   "deactivated": sorted(p.active_before - holding),
                                   "writes": [], "notify": []}
        mark = p.evaluation.sla_mark
        if mark is not None and mark != self.marks.get(p.record.id):
            outcome["sla_mark"] = {"sla": mark.name, "since": format_instant(mark.since)}
        self.report.baseline_rules += len(outcome["activated"])
        if not commit:
            return
        self.quiet.append((p.record.id, outcome, None))
        self.wakes.append((p.record, self.now))
        if len(self.wakes) >= 1000:
            self.finish()

    def finish(self) -> None:
        """Commit the plans that write nothing, and the wake-up times, in one transaction."""
        quiet, self.quiet = self.quiet, []
        wakes, self.wakes = self.wakes, []
        if quiet or wakes:
            self.store.commit(self.report.run_id, quiet, self.now, wakes)

    def queue(self, p: Plan) -> None:
        self.pending.append(p)
        self.queued += 1
        self.wakes.append((p.record, self.now))  # a write that fails is tried next run
        if len(self.pending) >= self.batch_size:
            self.flush(hold=True)

    def unplan(self, ids: set[str]) -> None:
        """Drop the plans not sent yet of the records `ids`, which are about to be planned
        again (a later page brought them again: a plan made on the version before would
        be a second write of the same record, refused as a conflict at best)."""
        if self.pending and any(p.record.id in ids for p in self.pending):
            kept = [p for p in self.pending if p.record.id not in ids]
            self.queued -= len(self.pending) - len(kept)
            self.pending = kept

    def in_flight(self) -> set[str]:
        """The ids of the records whose batch is sent and not settled yet."""
        return set() if self.sending is None else {p.record.id for p in self.sending[0]}

    def flush(self, hold: bool = False) -> None:
        """Send up to a batch of the planned writes, once the batch sent before it is
        settled; this one is settled by the next flush, or by `drain`. The helpdesk runs a
        batch while the next one is planned. With `hold`, a helpdesk that would wait before
        it could take the batch (`connector.base.wait_before`: the jobs in flight cannot be
        done yet, or it paces its writes) is left to it: nothing is sent or settled now, the
        loop plans on, and a later flush sends. Without `hold` (the run's end, or
        HELD_BATCHES held) the loop waits that long itself, before the batch is journalled."""
        if not self.pending:
            return
        size = min(len(self.pending), self.batch_size)
        # Held plans are memory: past HELD_BATCHES batches, the loop waits with the helpdesk.
        hold = hold and len(self.pending) < HELD_BATCHES * self.batch_size
        if hold and wait_before(self.connector, size) > 0:
            return
        self.settle_sent()
        # (One change is written at once, as a single update: nothing to wait for.)
        delay = wait_before(self.connector, size) if size > 1 else 0.0
        if hold and delay > 0:
            return
        if delay > 0:  # waited here, before the batch is journalled: a stop meanwhile
            from sla_sync.connector import http  # loaded already by any that asks to wait
            http.wait(delay)  # leaves nothing pending
        batch, self.pending = self.pending[:self.batch_size], self.pending[self.batch_size:]
        self.store.begin_write(self.report.run_id,
                               [(p.change, self.outcome(p)) for p in batch], self.now)
        self.progress("writing", {"done": self.sent, "total": self.queued})
        # An error of the helpdesk itself propagates: the journalled writes are settled by
        # the next run. A batch whose answer was lost is settled record by record.
        try:
            if len(batch) == 1:
                results = apply_single(self.connector, batch[0].change, self.now)
                answer: Answer = lambda: results  # noqa: E731
            else:
                answer = submit_many(self.connector, [p.change for p in batch], self.now)
        except OutcomeUnknown as exc:
            answer = _unknown(batch, exc)
        self.sending = (batch, answer)
        if len(batch) == 1 or not self.overlaps:
            self.settle_sent()  # written already: nothing to overlap

    def drain(self) -> None:
        """Send what is planned and settle every batch sent."""
        while self.pending:
            self.flush()
        self.settle_sent()

    def settle_sent(self) -> None:
        """Settle the batch sent last, if any: its outcomes in one transaction; then what
        went wrong, record by record."""
        if self.sending is None:
            return
        batch, answer = self.sending
        self.sending = None
        try:
            results = answer()
        except OutcomeUnknown as exc:
            results = _unknown(batch, exc)()
        pairs = list(zip(batch, results, strict=True))
        # The batch's outcomes in one transaction; then what went wrong, record by record.
        done = [(p.record.id, self.outcome(p), result.record or _as_written(p))
                for p, result in pairs if result.error is None]
        wakes = [(result.record, self.wake_rules.of(p.final)) for p, result in pairs
                 if result.error is None and result.record is not None
                 and _final_is_written(p, result.record)]
        versions = {p.record.id: result.version for p, result in pairs
                    if result.error is None and result.record is not None
                    and result.version is not None}
        if done:
            self.store.commit(self.report.run_id, done, self.now, wakes, versions)
            self.report.writes += len(done)
        for p, result in pairs:
            if result.error is not None:
                self.settle(p, result, retry=True)
        self.sent += len(batch)
        if log.isEnabledFor(logging.DEBUG):  # what failed is reported as the run's failures
            for p, result in pairs:
                if result.error is None:
                    log.debug("run %d: record %r: written (rules %s)", self.report.run_id,
                              p.record.id, ", ".join(p.fired),
                              extra={"event": "write", "run": self.report.run_id,
                                     "record": p.record.id, "rules": list(p.fired)})
        self.progress("writing", {"done": self.sent, "total": self.queued})

    def settle(self, p: Plan, result: WriteResult, retry: bool) -> None:
        record_id = p.record.id
        error = result.error
        if error is None:
            written = result.record or _as_written(p)
            self.store.commit(self.report.run_id, [(record_id, self.outcome(p), written)],
                              self.now, versions={record_id: result.version}
                              if result.record is not None and result.version else None)
            self.report.writes += 1
            return
        if isinstance(error, RecordGone):
            self.store.forget(record_id)
            self.report.warnings.append(
                f"{error}; it was deleted in the helpdesk, so sla-sync forgets it")
            return
        if isinstance(error, OutcomeUnknown | ConflictError):
            self.reconcile(p, error, retry)
            return
        self.store.drop_pending(record_id)
        self.report.errors += 1
        self.report.failures.append(f"record {record_id!r}: write failed: {error}; nothing "
                                    "written, the next run tries again")

    def reconcile(self, p: Plan, error: ConnectorError, retry: bool) -> None:
        """The write's outcome is unknown (its answer was lost), or the helpdesk refused it
        as a conflict (someone else's edit, or our own earlier attempt that did land): read
        the record back and settle by what it shows. Applied: record it. A conflict that is
        not ours: plan again on what the other person left and write once more. An unknown
        outcome that does not show yet stays pending, never resent in this run: the next
        run reads the record again."""
        record_id = p.record.id
        unknown = isinstance(error, OutcomeUnknown)
        try:
            fresh = self.connector.read_back(record_id, p.change.base_updated_at)
        except (ConnectorError, RecordError) as exc:
            if isinstance(exc, ConnectorError) and exc.record_id is None:
                raise
            # Pending either way: a conflict may be our own earlier attempt, refused on its
            # version check after an answer was lost; the next run reads it back first.
            self.report.errors += 1
            self.report.failures.append(
                f"record {record_id!r}: {error}; reading it back failed ({exc}): the write "
                "stays pending and the next run settles it")
            return
        if fresh is None:
            self.store.forget(record_id)
            return
        self.store.mirror([fresh], self.report.run_id)
        notes_readable = self.connector.capabilities.reads_notes
        if is_applied(p.change, fresh, notes_readable,
                      lowers_level(self.outcome(p))) and (notes_readable
                                                             or not p.change.notes):
            self.store.commit(self.report.run_id, [(record_id, self.outcome(p), fresh)],
                              self.now)
            self.report.writes += 1
            self.report.recovered += 1
            why = "the answer to its write was lost" if unknown \
                else "its write was refused as a conflict"
            self.report.warnings.append(f"record {record_id!r}: {why}; read back, the record "
                                        "shows the write: recorded it, not sent again")
            return
        if unknown:
            self.report.errors += 1
            self.report.failures.append(
                f"record {record_id!r}: {error}; read back, the record does not show it "
                "(yet): the write stays pending and the next run settles it")
            return
        self.store.drop_pending(record_id)
        if retry:
            self.replan(p, fresh)
            return
        self.report.errors += 1
        self.report.failures.append(f"record {record_id!r}: changed again while being "
                                    f"retried: {error}; nothing written, the next run tries "
                                    "again")

    def replan(self, p: Plan, fresh: Record) -> None:
        """Someone changed the record between our read and our write: plan again on what
        they left, and write once more (only what is still needed)."""
        again = self.plan(fresh, again=True)
        if again is None:
            return
        if again.change.is_empty():
            self.store.commit(self.report.run_id, [(fresh.id, self.outcome(again), None)],
                              self.now)
            return
        self.store.begin_write(self.report.run_id, [(again.change, self.outcome(again))],
                               self.now)
        try:
            [result] = apply_single(self.connector, again.change, self.now)
        except ConnectorError as exc:
            if exc.record_id is None and not isinstance(exc, OutcomeUnknown):
                raise
            self.settle(again, WriteResult(fresh.id, error=exc), retry=False)
            return
        self.settle(again, result, retry=False)


def _settle_if_possible(writer: _Writer) -> None:
    """A fetch failed with a batch in flight: settle it if the helpdesk still answers (else
    its journal entries are settled by the next run, by reading each record back)."""
    try:
        writer.settle_sent()
    except ConnectorError as exc:
        log.debug("the batch in flight could not be settled: %s", exc)


def _unknown(batch: list[Plan], exc: OutcomeUnknown) -> Answer:
    """The answer of a batch whose answer was lost: each record's outcome unknown."""
    results = [WriteResult(p.record.id, error=OutcomeUnknown(str(exc), record_id=p.record.id))
               for p in batch]
    return lambda: results


def desk_load(policy: Policy, store: StateStore, now: datetime) -> Load:
    """The load variables' figures over the mirror as it stands (rules/load.py); the clocks
    of every open record are run only when a rule reads group_at_risk."""
    closed = policy.closed_statuses
    if "group_at_risk" not in policy.load_variables:
        return measure((Entry(group, status not in closed, parse_instant(created, "created_at"))
                        for group, status, created in store.group_rows()), now)
    marks = store.sla_marks()

    def entry(record: Record) -> Entry:
        open_ = record.status not in closed
        risky = open_ and at_risk(sla_and_clocks(record, policy, now, marks.get(record.id))[3])
        return Entry(record.group, open_, record.created_at, risky)

    return measure(map(entry, store.all_records()), now)


def uses_assign_next(policy: Policy) -> bool:
    return any(action["name"] == "assign_next" for rule in policy.every_rule()
               for action in rule.actions)


def agent_pool(policy: Policy, store: StateStore, connector: Connector,
               report: RunReport | None = None) -> Pool:
    """Whom assign_next chooses from in this sync: the policy's groups, open records per
    agent from the mirror, the last agent given one from the audit, and the helpdesk's
    directory (for availability) where the connector has one. A directory that cannot be
    read leaves every agent available, and the run says so."""
    directory: Mapping[str, Mapping[str, str]] = {}
    read = getattr(connector, "directory", None)
    if read is not None:
        try:
            directory = read()
        except ConnectorError as exc:
            if report is not None:
                report.warnings.append(f"assign_next: the helpdesk's directory could not be "
                                       f"read ({exc}); no agent is taken as unavailable")
    return Pool(policy.groups, store.open_by_assignee(policy.closed_statuses),
                store.last_written("assign_next", "assignee"), directory)


def _final_is_written(p: Plan, written: Record) -> bool:
    """The plan's last evaluation was of the record exactly as the helpdesk says it wrote it,
    and no rule was left to fire: that evaluation's wake-up time holds for the record written
    (a refetch of the same data keeps it), so it need not be evaluated again at once."""
    return (p.settled and p.final.record.id == written.id
            and p.final.record.to_dict() == written.to_dict())


def _as_written(p: Plan) -> Record:
    """The record as the change leaves it, when the helpdesk does not say. Its version stays
    the one read, so that the next fetch's copy replaces it."""
    return dataclasses.replace(p.change.applied_to(p.record, p.evaluation.now),
                               updated_at=p.record.updated_at)


def _drain_outbox(store: StateStore, notifier: Notifier | None, report: RunReport,
                  now: datetime) -> None:
    """Send the notifications committed so far; one that fails stays for the next run.
    Each carries a delivery id (the state file's instance and the outbox id): a send
    repeated after a crash between the post and marking it sent has the same id, so a
    receiver can drop the repeat. Alerts of `notify:` channels go through `_send_alerts`."""
    items = store.outbox()
    if not items:
        return
    from sla_sync.sync_alerts import Alerts
    if isinstance(notifier, Alerts):
        _send_alerts(store, notifier, report, now, items)
        return
    instance = store.instance_id()
    for item in items:
        item["delivery_id"] = f"{instance}-{item['id']}"
        if notifier is None:
            report.notify_failures += 1
            report.failures.append(f"record {item['record_id']!r}: rule {item['rule']!r} "
                                   f"notifies webhook {item['webhook']!r}, which the config "
                                   "does not define; kept for the next run")
            continue
        try:
            notifier(item["webhook"], item["text"], item)
        except (ConnectorError, ValueError) as exc:
            store.outbox_failed(item["id"], str(exc))
            report.notify_failures += 1
            report.failures.append(f"record {item['record_id']!r}: notification to "
                                   f"{item['webhook']!r} failed ({exc}); kept for the next run")
            continue
        store.outbox_sent(item["id"])
        report.notified += 1


def _send_alerts(store: StateStore, alerts: Alerts, report: RunReport, now: datetime,
                 items: list[dict[str, Any]]) -> None:
    """Rows of a channel with recipients are first split into one row per recipient (one
    transaction); then each message that may go at `now` is sent, and its rows leave the
    outbox together. A message of several rows (a digest) takes its first row's id and
    their number as its delivery id."""
    fan = alerts.fan_out(items)
    if fan:
        store.outbox_fan_out(fan)
        items = store.outbox()
    instance = store.instance_id()
    for delivery in alerts.deliveries(items, now):
        if delivery.ready_at > now:
            report.held += len(delivery.items)
            continue
        ids = delivery.ids
        delivery_id = f"{instance}-{ids[0]}" + (f"-{len(ids)}" if len(ids) > 1 else "")
        try:
            alerts.send(delivery, delivery_id)
        except (ConnectorError, ValueError) as exc:
            store.outbox_failed(ids, str(exc))
            report.notify_failures += 1
            report.failures.append(f"record {delivery.items[0]['record_id']!r}: notification "
                                   f"to {delivery.channel!r} failed ({exc}); kept for the "
                                   "next run")
            continue
        store.outbox_sent(ids)
        report.notified += 1
        report.warnings.extend(delivery.problems)


def settle_pending(connector: Connector, store: StateStore, report: RunReport,
                   now: datetime) -> set[str]:
    """Settle the writes earlier runs left pending (a crash, an answer that never came) by
    reading each record back from the helpdesk itself, notes included: the fetched pages
    may lag (Zendesk's export leaves out the last minute) and do not carry notes. Returns
    the records whose write is still unsettled: this run does not plan them. The writes this
    run left pending (its records planned page by page) wait for the next run."""
    held: set[str] = set()
    notes_readable = connector.capabilities.reads_notes
    for change, outcome, run_id in store.pending():
        if run_id == report.run_id:  # this run's own, settled as it was written
            continue
        record_id = change.record_id
        try:
            record = connector.read_back(record_id, change.base_updated_at)
        except (ConnectorError, RecordError) as exc:
            if isinstance(exc, ConnectorError) and exc.record_id is None:
                raise
            held.add(record_id)
            report.errors += 1
            report.failures.append(f"record {record_id!r}: a write left pending by run "
                                   f"{run_id} cannot be settled now ({exc}); kept pending")
            continue
        if record is None:
            store.forget(record_id)
            report.warnings.append(f"record {record_id!r}: a write left pending by run "
                                   f"{run_id} concerns a record the helpdesk no longer has; "
                                   "forgot it")
            continue
        store.mirror([record], report.run_id)
        if is_applied(change, record, notes_readable, lowers_level(outcome)):
            if change.notes and not notes_readable:
                held.add(record_id)
                report.errors += 1
                report.failures.append(
                    f"record {record_id!r}: a write left pending by run {run_id} shows, but "
                    "this helpdesk's notes cannot be read back to confirm its note; kept "
                    "pending (check the record, then remove the pending write)")
                continue
            store.commit(run_id, [(record_id, outcome, record)], now)
            report.recovered += 1
            report.warnings.append(
                f"record {record_id!r}: a write left pending by run {run_id} had gone "
                f"through (updated_at {format_instant(record.updated_at)}); recorded it")
        else:
            store.drop_pending(record_id)
            report.warnings.append(
                f"record {record_id!r}: a write left pending by run {run_id} had not "
                "gone through; planning it again")
    return held
