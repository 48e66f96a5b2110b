"""Backtest: what a policy would have done had sla-sync been running with it.

Each record is replayed on its own, from its creation to `until`, at the instants a sync
every `step` from `since` would have run: at each such instant it is seen as it was then
(`as_of`: its status from its status history, its first response and solve only once they
happened, the notes written by then) with the writes the replayed policy made before
(tags, priority, group, assignee, escalation level, notes), and planned by the real planner
with the ledger and SLA mark the replay carried so far. Nothing is written anywhere.

Evaluating every record at every step is what a sync would do, and mostly wasted: between
two changes of a record, only its wake-up time (`rules.wake`) can make a condition change,
so a record is evaluated only at the first step at or after the earlier of its wake-up
time and its next change in history; `naive=True` evaluates every step (the tests compare
both). What cannot be reconstructed: fields a helpdesk keeps no history of (priority,
tier, group, assignee, channel, source, subject, custom fields, tags) are taken as they
are today from the record's creation on, except what sla-sync itself wrote: from the state
file, its audit rows give the values before its first write (`before_sla_sync`); from a
file, the tags any policy of the comparison adds are left out. The escalation level starts
at 0 either way.
"""

from __future__ import annotations

import dataclasses
import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sla_sync.connector.model import (
    INITIAL_STATUS,
    Note,
    Record,
    custom_name,
    format_instant,
    merge_tags,
)
from sla_sync.rules.clock import TARGETS
from sla_sync.rules.durations import format_duration
from sla_sync.rules.engine import SlaMark
from sla_sync.rules.lint import is_warning_rule
from sla_sync.rules.metrics import Measured, measure_record, segment
from sla_sync.rules.planner import plan
from sla_sync.rules.policy import Policy
from sla_sync.rules.wake import Wakes, result_of

#: Outcomes of a record, for flips.
WHATS = (*TARGETS, "escalated", "warned")


def as_of(record: Record, at: datetime) -> Record | None:
    """The record as it read at `at` (None: not created yet), as far as its history tells."""
    if record.created_at > at:
        return None
    timeline = record.status_timeline()
    status = next((c.status for c in reversed(timeline) if c.at <= at), INITIAL_STATUS)
    history = tuple(c for c in record.status_history if c.at <= at)
    first = record.first_response_at
    first = first if first is not None and first <= at else None
    solved = record.solved_at if record.solved_at is not None and record.solved_at <= at \
        else None
    notes = tuple(n for n in record.notes if n.at <= at)
    if record.updated_at <= at:
        updated = record.updated_at
    else:
        updated = max([record.created_at, *(c.at for c in timeline if c.at <= at),
                       *(n.at for n in notes), *(x for x in (first, solved) if x is not None)])
    if (status, history, first, solved, notes, updated) == (
            record.status, record.status_history, record.first_response_at, record.solved_at,
            record.notes, record.updated_at):
        return record
    return dataclasses.replace(record, status=status, status_history=history,
                               first_response_at=first, solved_at=solved, notes=notes,
                               updated_at=updated)


def before_sla_sync(record: Record, audit: Iterable[tuple[str, Any, Any]]) -> Record:
    """The record without what sla-sync wrote, from its audit rows (field, before, after),
    oldest first: a field or tag takes the value before the first write to it, and the
    notes it added are left out (one per note written, by text)."""
    firsts: dict[str, Any] = {}
    notes = list(record.notes)
    for slot, before, after in audit:
        if slot == "note":
            found = next((i for i, n in enumerate(notes) if n.text == after), None)
            if found is not None:
                del notes[found]
        elif slot.startswith("notify:"):
            continue
        else:
            firsts.setdefault(slot.lower() if slot.startswith("tag:") else slot, before)
    fields = {k: v for k, v in firsts.items()
              if k in ("priority", "group", "assignee") and isinstance(v, str)}
    tags = list(record.tags)
    for slot, before in firsts.items():
        if slot.startswith("tag:"):
            tag = slot[4:]
            tags = [t for t in tags if t.lower() != tag]
            if before == "present":
                tags.append(tag)
    changes: dict[str, Any] = {**fields, "tags": tuple(tags), "notes": tuple(notes)}
    if isinstance(firsts.get("escalation_level"), int):
        changes["escalation_level"] = firsts["escalation_level"]
    return dataclasses.replace(record, **changes)


def next_change(record: Record, at: datetime) -> datetime | None:
    """The first instant after `at` at which `as_of` reads the record differently."""
    later = [c.at for c in record.status_timeline() if c.at > at]
    later += [n.at for n in record.notes if n.at > at]
    later += [x for x in (record.first_response_at, record.solved_at, record.updated_at)
              if x is not None and x > at]
    return min(later, default=None)


@dataclass(frozen=True)
class Event:
    """One evaluation that activated rules or planned writes or notifications."""

    at: datetime
    rules: tuple[str, ...]
    change: Mapping[str, Any]  # as `run --json` prints it, without id and base
    notify: tuple[tuple[str, str, str], ...]

    def to_dict(self, record_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {"id": record_id, "at": format_instant(self.at),
                               "rules": list(self.rules), "change": dict(self.change)}
        if self.notify:
            out["notify"] = [{"rule": r, "webhook": w, "text": t} for r, w, t in self.notify]
        return out


@dataclass(frozen=True)
class Replayed:
    """One record's replay: its events, and the record and clocks as they stand at the end."""

    record: Record  # as of `until`, with the replay's writes
    measured: Measured
    events: tuple[Event, ...]
    warned: bool
    evaluations: int

    def outcomes(self) -> dict[str, str]:
        out = {}
        for target in TARGETS:
            clock = self.measured.clocks[target]
            found = self.measured.outcome(target)
            out[target] = found or ("no target" if clock.target_seconds is None else "running")
        level = self.record.escalation_level
        out["escalated"] = f"escalated (level {level})" if level else "not escalated"
        out["warned"] = "warned" if self.warned else "not warned"
        return out


class _Overlay:
    """What the replayed policy wrote to one record so far."""

    def __init__(self, start: Record, added_by_policies: frozenset[str]):
        self.fields: dict[str, str] = {}
        self.tags = tuple(t for t in start.tags if t.lower() not in added_by_policies)
        self.level = 0
        self.notes: tuple[Note, ...] = ()
        self.written_at: datetime | None = None

    def view(self, base: Record) -> Record:
        updated = base.updated_at if self.written_at is None \
            else max(base.updated_at, self.written_at)
        notes = tuple(sorted(base.notes + self.notes, key=lambda n: n.at)) if self.notes \
            else base.notes
        changes: dict[str, Any] = {**self.fields, "tags": self.tags, "notes": notes,
                                   "escalation_level": self.level, "updated_at": updated}
        custom = {custom_name(k): changes.pop(k) for k in self.fields if custom_name(k)}
        if custom:
            changes["custom"] = {**base.custom, **custom}
        return dataclasses.replace(base, **changes)

    def write(self, view: Record, change: Any, at: datetime) -> None:
        self.fields.update(change.fields)
        self.tags = tuple(merge_tags(view.tags, change.add_tags, change.remove_tags))
        if change.escalation_level is not None:
            self.level = change.escalation_level
        self.notes += tuple(Note(at, text) for text in change.notes)
        self.written_at = at


def steps_of(since: datetime, until: datetime, step: timedelta) -> int:
    """How many sync instants since, since + step, ... lie at or before until."""
    return int((until - since) / step) + 1


def replay(record: Record, policy: Policy, since: datetime, until: datetime,
           step: timedelta, wakes: Wakes, added: frozenset[str] = frozenset(),
           naive: bool = False) -> Replayed:
    """`added`: tags (lower case) left out of the record at the start; `naive`: evaluate
    at every step instead of only where something can change."""
    count = steps_of(since, until, step)
    index = first_step(record, since, step)
    overlay = _Overlay(record, added)
    active: frozenset[str] = frozenset()
    mark: SlaMark | None = None
    events: list[Event] = []
    warned = False
    evaluations = 0
    while index < count:
        now = since + index * step
        base = as_of(record, now)
        assert base is not None
        view = overlay.view(base)
        p = plan(view, policy, now, active, mark)
        evaluations += 1
        result = result_of(p, mark, wakes)
        if p.activated or p.acts:
            change = p.change.to_dict()
            change.pop("id")
            change.pop("base_updated_at", None)
            events.append(Event(now, tuple(sorted(p.activated, key=_rule_order(policy))),
                                change, p.notifications))
            warned = warned or any(is_warning_rule(r.name, r.actions) for r in policy.every_rule()
                                   if r.name in p.activated)
        if not p.change.is_empty():
            overlay.write(view, p.change, now)
        active = p.active_after
        mark = p.final.sla_mark
        if naive or result.wake_at is None or result.wake_at <= now:
            following = index + 1 if naive or result.wake_at is not None else count
        else:
            following = max(index + 1, math.ceil((result.wake_at - since) / step))
        changed = next_change(record, now)
        if changed is not None:
            following = min(following, max(index + 1, math.ceil((changed - since) / step)))
        index = following
    end = overlay.view(as_of(record, until) or record)
    measured = measure_record(end, policy, until, mark)
    return Replayed(end, measured, tuple(events), warned, evaluations)


def _rule_order(policy: Policy) -> Any:
    order = {r.name: r.index for r in policy.every_rule()}
    return lambda name: order.get(name, len(order))


def added_tags(*policies: Policy) -> frozenset[str]:
    """The tags (lower case) the policies' rules add."""
    return frozenset(a["params"]["tag"].lower() for policy in policies
                     for rule in policy.every_rule()
                     for a in rule.actions if a["name"] == "add_tag")


@dataclass(frozen=True)
class Run:
    """One policy's replay of every record in the window."""

    policy: Policy
    replayed: tuple[Replayed, ...]
    failed: tuple[tuple[str, str], ...] = ()  # (record id, why): left out of every figure

    @property
    def evaluations(self) -> int:
        return sum(r.evaluations for r in self.replayed)


def run_policy(records: Iterable[Record], policy: Policy, since: datetime, until: datetime,
               step: timedelta, added: frozenset[str], naive: bool = False) -> Run:
    wakes = Wakes(policy)
    replayed, failed = [], []
    for record in records:
        try:
            replayed.append(replay(record, policy, since, until, step, wakes, added, naive))
        except Exception as exc:  # a rule that blows up on one record must not stop the rest
            failed.append((record.id, f"evaluation failed: {exc!r}"))
    return Run(policy, tuple(replayed), tuple(failed))


def _groups(run: Run, by: Sequence[Sequence[str]]) -> list[tuple[dict[str, str],
                                                                   list[Replayed]]]:
    """(segment, records) for the whole window, then each value of each breakdown."""
    out: list[tuple[dict[str, str], list[Replayed]]] = [({}, list(run.replayed))]
    for fields in by:
        groups: dict[tuple[str, ...], list[Replayed]] = {}
        for r in run.replayed:
            groups.setdefault(tuple(r.measured.segment(f) for f in fields), []).append(r)
        out += [(dict(zip(fields, values, strict=True)), groups[values])
                for values in sorted(groups)]
    return out


def _segment(by: Mapping[str, str], items: Sequence[Replayed]) -> dict[str, Any]:
    data = segment([r.measured for r in items], by)
    data["warned"] = sum(r.warned for r in items)
    data["escalated"] = sum(r.record.escalation_level >= 1 for r in items)
    data["activations"] = sum(len(e.rules) for r in items for e in r.events)
    data["writes"] = sum(bool(e.change) for r in items for e in r.events)
    data["notifications"] = sum(len(e.notify) for r in items for e in r.events)
    return data


def _rules(run: Run) -> list[dict[str, Any]]:
    rows = []
    for rule in run.policy.every_rule():
        times = [e.at for r in run.replayed for e in r.events if rule.name in e.rules]
        ids = {r.record.id for r in run.replayed for e in r.events if rule.name in e.rules}
        rows.append({"rule": rule.name, "fired": len(times), "records": len(ids),
                     "first": format_instant(min(times)) if times else None,
                     "last": format_instant(max(times)) if times else None})
    return rows


def first_step(record: Record, since: datetime, step: timedelta) -> int:
    """The index of the first sync instant at or after the record's creation."""
    return max(0, math.ceil((record.created_at - since) / step))


def _summary(run: Run, by: Sequence[Sequence[str]], since: datetime,
             step: timedelta, steps: int) -> dict[str, Any]:
    events = sorted(((e, r.record.id) for r in run.replayed for e in r.events),
                    key=lambda item: (item[0].at, item[1]))
    return {"file": run.policy.source, "evaluations": run.evaluations,
            "failed": [{"id": i, "reason": why} for i, why in run.failed],
            "record_steps": sum(steps - first_step(r.record, since, step)
                                for r in run.replayed),
            "rules": _rules(run), "events": [e.to_dict(rid) for e, rid in events],
            "segments": [_segment(key, items) for key, items in _groups(run, by)]}


def _delta(a: Any, b: Any) -> Any:
    return None if a is None or b is None else round(a - b, 4)


def _difference(new: Mapping[str, Any] | None, old: Mapping[str, Any] | None,
                by: Mapping[str, str]) -> dict[str, Any]:
    def get(seg: Mapping[str, Any] | None, *keys: str) -> Any:
        value: Any = seg
        for key in keys:
            value = None if value is None else value.get(key)
        return value

    out: dict[str, Any] = {"by": dict(by), "records": {"policy": get(new, "records") or 0,
                                                      "baseline": get(old, "records") or 0}}
    out["compliance_rate"] = {t: _delta(get(new, "compliance_rate", t),
                                        get(old, "compliance_rate", t)) for t in TARGETS}
    out["breaches"] = {t: (get(new, "breach_rate", t, "count") or 0)
                       - (get(old, "breach_rate", t, "count") or 0) for t in TARGETS}
    for key in ("warned", "escalated", "writes", "notifications"):
        out[key] = (get(new, key) or 0) - (get(old, key) or 0)
    return out


def flips(new: Run, old: Run) -> list[dict[str, Any]]:
    """Records whose outcome flips: a target breached or not (met, still running, no
    target), escalated or not, warned or not."""
    before = {r.record.id: r.outcomes() for r in old.replayed}
    out = []
    for r in new.replayed:
        after = r.outcomes()
        was = before.get(r.record.id)
        if was is None:
            continue
        for what in WHATS:
            a, b = was[what], after[what]
            if what in TARGETS:  # breached or not (met, running, no target)
                flipped = (a == "breached") != (b == "breached")
            else:  # escalated or not (not a change of level), warned or not
                flipped = a.split(" (")[0] != b.split(" (")[0]
            if flipped:
                out.append({"id": r.record.id, "what": what, "baseline": was[what],
                            "policy": after[what]})
    return sorted(out, key=lambda f: (f["id"], WHATS.index(f["what"])))


def backtest(records: Iterable[Record], policy: Policy, since: datetime, until: datetime,
             step: timedelta, by: Sequence[Sequence[str]] = (),
             baseline: Policy | None = None, naive: bool = False,
             audit: Mapping[str, Sequence[tuple[str, Any, Any]]] | None = None,
             ) -> dict[str, Any]:
    """The backtest's data (JSON-ready): each policy's rules, events and segments, and with
    a baseline the difference per segment and the records whose outcome flips. Records
    created in [since, until) are replayed. `audit`: sla-sync's own writes by record id
    (field, before, after), undone before the replay; without it, the tags the policies add
    are left out instead."""
    if step <= timedelta(0):
        raise ValueError("step: must be positive")
    if since >= until:
        raise ValueError("since: must be before until")
    chosen = [r for r in records if since <= r.created_at < until]
    if audit is not None:
        chosen = [before_sla_sync(r, audit[r.id]) if r.id in audit else r for r in chosen]
        added: frozenset[str] = frozenset()
    else:
        added = added_tags(policy, *([baseline] if baseline else []))
    steps = steps_of(since, until, step)
    new = run_policy(chosen, policy, since, until, step, added, naive)
    data: dict[str, Any] = {
        "since": format_instant(since), "until": format_instant(until),
        "step": format_duration(step.total_seconds()), "steps": steps,
        "records": len(chosen), "by": [list(f) for f in by],
        "policy": _summary(new, by, since, step, steps), "baseline": None}
    if baseline is None:
        return data
    old = run_policy(chosen, baseline, since, until, step, added, naive)
    data["baseline"] = _summary(old, by, since, step, steps)
    keys = [(tuple(sorted(s["by"].items())), s) for s in data["policy"]["segments"]]
    olds = {tuple(sorted(s["by"].items())): s for s in data["baseline"]["segments"]}
    news = dict(keys)
    order = [k for k, _ in keys] + [k for k in olds if k not in news]
    data["difference"] = [_difference(news.get(k), olds.get(k), dict(k)) for k in order]
    data["flips"] = flips(new, old)
    return data


# -- rendering ---------------------------------------------------------------------------------

def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _signed_pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.1f} pts"


def _change_text(change: Mapping[str, Any]) -> str:
    parts = [f"set {k} {v!r}" for k, v in change.get("set", {}).items()]
    if "escalation_level" in change:
        parts.append(f"escalation level {change['escalation_level']}")
    parts += [f"add tag {t!r}" for t in change.get("add_tags", ())]
    parts += [f"remove tag {t!r}" for t in change.get("remove_tags", ())]
    parts += [f"note {n!r}" for n in change.get("notes", ())]
    return ", ".join(parts) or "no write"


def _segment_name(by: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v or '(none)'}" for k, v in by.items()) or "all"


SHORT = {"first_response": "FR", "resolution": "RES"}
SEGMENT_HEADS = ("segment", "records", *(f"{SHORT.get(t, t)} {what}" for t in TARGETS
                                         for what in ("met%", "breached")),
                 "warned", "escalated", "writes")
DIFFERENCE_HEADS = ("segment", "records", *(f"{SHORT.get(t, t)} {what}" for t in TARGETS
                                            for what in ("met%", "breaches")),
                    "warned", "escalated", "writes")
LEGEND = ("FR: first response, RES: resolution; met%: compliance, of the clocks that "
          "stopped or breached")


def segment_rows(run: Mapping[str, Any]) -> list[tuple[str, ...]]:
    rows = []
    for seg in run["segments"]:
        cells = [_segment_name(seg["by"]), str(seg["records"])]
        for target in TARGETS:
            rate = seg["breach_rate"][target]
            cells += [_pct(seg["compliance_rate"][target]), f"{rate['count']}/{rate['of']}"]
        cells += [str(seg["warned"]), str(seg["escalated"]), str(seg["writes"])]
        rows.append(tuple(cells))
    return rows


def difference_rows(data: Mapping[str, Any]) -> list[tuple[str, ...]]:
    rows = []
    for diff in data.get("difference", ()):
        records = diff["records"]
        cells = [_segment_name(diff["by"]), f"{records['policy']} (was {records['baseline']})"
                 if records["policy"] != records["baseline"] else str(records["policy"])]
        for target in TARGETS:
            cells += [_signed_pct(diff["compliance_rate"][target]),
                      f"{diff['breaches'][target]:+d}"]
        cells += [f"{diff[k]:+d}" for k in ("warned", "escalated", "writes")]
        rows.append(tuple(cells))
    return rows


def _columns(heads: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in (heads, *rows)) for i in range(len(heads))]
    lines = []
    for row in (heads, *rows):
        cells = [str(c).ljust(w) if i == 0 else str(c).rjust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    return lines


def _header(data: Mapping[str, Any]) -> list[str]:
    baseline = data["baseline"]
    lines = [f"backtest of {data['policy']['file']}"
             + (f" against the baseline {baseline['file']}" if baseline else ""),
             f"{data['records']} records created {data['since']} to {data['until']}",
             f"replayed as if sla-sync ran every {data['step']} ({data['steps']} syncs)"]
    for key in ("policy", "baseline"):
        run = data[key]
        if run:
            lines.append(f"{key}: evaluated {run['evaluations']} of {run['record_steps']} "
                         "record-syncs (the others could change nothing)")
    return lines


def _run_lines(name: str, run: Mapping[str, Any], events: bool = True) -> list[str]:
    lines = ["", f"rules that would have fired ({name}):"]
    for row in run["rules"]:
        when = f", {row['first']} to {row['last']}" if row["fired"] else ""
        lines.append(f"  {row['rule']}: {row['fired']} time{'s' * (row['fired'] != 1)} on "
                     f"{row['records']} record{'s' * (row['records'] != 1)}{when}")
    if events:
        lines += ["", f"what it would have done ({name}):"]
        for event in run["events"]:
            notify = "".join(f"; notify {n['webhook']!r}" for n in event.get("notify", ()))
            lines.append(f"  {event['at']}  {event['id']}  {', '.join(event['rules']) or '-'}"
                         f": {_change_text(event['change'])}{notify}")
        if not run["events"]:
            lines.append("  nothing")
    lines += ["", f"by segment ({name}):"]
    lines += ["  " + line for line in _columns(SEGMENT_HEADS, segment_rows(run))]
    return lines


def table(data: Mapping[str, Any]) -> str:
    """The backtest as text; the baseline's own events are left to --format json."""
    lines = _header(data)
    lines += _run_lines("policy", data["policy"])
    if data["baseline"]:
        lines += _run_lines("baseline", data["baseline"], events=False)
        lines += ["", "difference (policy - baseline):"]
        lines += ["  " + line for line in _columns(DIFFERENCE_HEADS, difference_rows(data))]
        lines += ["", f"flips ({len(data['flips'])}):"]
        lines += [f"  {f['id']}  {f['what']}: {f['baseline']} -> {f['policy']}"
                  for f in data["flips"]] or ["  none"]
    return "\n".join([*lines, "", LEGEND]) + "\n"


def _html_table(heads: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in heads)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_page(data: Mapping[str, Any]) -> str:
    """One self-contained page: the same sections as the table."""
    parts = [f"<p>{html.escape(line)}</p>" for line in (*_header(data), LEGEND)]
    for name in ("policy", "baseline"):
        run = data[name]
        if not run:
            continue
        parts.append(f"<h2>Rules that would have fired ({name}: {html.escape(run['file'])})"
                     "</h2>")
        parts.append(_html_table(("rule", "fired", "records", "first", "last"),
                                 ((r["rule"], r["fired"], r["records"], r["first"] or "-",
                                   r["last"] or "-") for r in run["rules"])))
        parts.append(f"<h2>What it would have done ({name})</h2>")
        parts.append(_html_table(("at", "record", "rules", "writes", "notifications"), (
            (e["at"], e["id"], ", ".join(e["rules"]), _change_text(e["change"]),
             ", ".join(n["webhook"] for n in e.get("notify", ()))) for e in run["events"])))
        parts.append(f"<h2>By segment ({name})</h2>")
        parts.append(_html_table(SEGMENT_HEADS, segment_rows(run)))
    if data["baseline"]:
        parts.append("<h2>Difference (policy - baseline)</h2>")
        parts.append(_html_table(DIFFERENCE_HEADS, difference_rows(data)))
        parts.append(f"<h2>Flips ({len(data['flips'])})</h2>")
        parts.append(_html_table(("record", "what", "baseline", "policy"), (
            (f["id"], f["what"], f["baseline"], f["policy"]) for f in data["flips"])))
    style = ("body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse;"
             "margin-bottom:1.5em}td,th{border:1px solid #ccc;padding:.2em .5em;"
             "text-align:right}td:first-child,th:first-child{text-align:left}")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>sla-sync backtest</title><style>{style}</style></head><body>"
            "<h1>sla-sync backtest</h1>" + "".join(parts) + "</body></html>\n")
