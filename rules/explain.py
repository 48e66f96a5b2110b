"""`explain`: why a record got (or did not get) its SLA, its clocks, and each rule's verdict,
as plain text a rule author can check by hand."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sla_sync.connector.model import format_instant
from sla_sync.rules.clock import ALL_TARGETS, TARGETS, Clock
from sla_sync.rules.durations import format_duration
from sla_sync.rules.engine import Failure, first_failure
from sla_sync.rules.extensions import describe, extensions_of
from sla_sync.rules.overrides import scale_for
from sla_sync.rules.planner import OVERRIDDEN, SATISFIED, VOID, WRITE, Plan, Step
from sla_sync.rules.policy import Policy, Sla, field_value


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return repr(value)


def _failure(failure: Failure) -> str:
    cond = failure.condition
    if failure.path.endswith(".any"):
        return f"{failure.path}: none of its conditions holds"
    test = f"{cond['name']} {cond['operator']}"
    if cond.get("value") is not None:
        test += f" {_value(cond['value'])}"
    return f"{failure.path}: {test} (is {_value(failure.actual)})"


def _clock(clock: Clock) -> list[str]:
    name = clock.target.replace("_", " ")
    if clock.target_seconds is None:
        return [f"  {name}: {clock.note or 'no target in this SLA'}"]
    zone = ZoneInfo(clock.calendar.timezone)
    state = ("stopped at " + _both(clock.stopped_at, zone)) if clock.stopped_at else (
        "paused" if clock.paused else "running")
    verdict = "BREACHED" if clock.breached else ("met" if clock.met else "within target")
    if clock.stopped_at and clock.stop_reason:
        state += f" ({clock.stop_reason})"
    started = _both(clock.started_at, zone)
    if clock.start_reason and clock.start_reason != "created":
        started += f" ({clock.start_reason})"
    lines = [
        f"  {name}: target {format_duration(clock.target_seconds)}, "
        f"elapsed {format_duration(clock.elapsed_seconds)} ({clock.elapsed_pct:.0f}%), "
        f"left {format_duration(clock.minutes_left * 60)}; {state}; {verdict}",
        f"    calendar {clock.calendar.name} ({clock.calendar.timezone}); started {started}",
        f"    business minutes counted: {clock.elapsed_seconds / 60:.2f}".rstrip("0").rstrip("."),
    ]
    if clock.due_at is not None:
        what = "breached at" if clock.breached else "due"
        if clock.paused and not clock.breached:
            what = "due if it resumed now"
        lines.append(f"    {what} {_both(clock.due_at, zone)}")
    for pause in clock.pauses:
        end = _both(pause.end, zone) if pause.end else "now"
        lines.append(f"    paused ({pause.reason or pause.status}) {_both(pause.start, zone)} "
                     f"-> {end}: "
                     f"{format_duration(pause.business_seconds)} of business time not counted")
    for number, cycle in enumerate(clock.cycles, 1):
        end = _both(cycle.stopped_at, zone) if cycle.stopped_at else "waiting"
        if cycle.stopped_at and cycle.ended:
            end += f" ({cycle.ended})"
        lines.append(f"    cycle {number}: {_both(cycle.started_at, zone)} -> {end}: "
                     f"{format_duration(cycle.elapsed_seconds)}; "
                     f"{'BREACHED' if cycle.breached else 'within target'}")
    return lines


def _both(instant: datetime, zone: ZoneInfo) -> str:
    """An instant in the calendar's timezone, and in UTC when that differs."""
    local = instant.astimezone(zone)
    if local.utcoffset() == timedelta(0) and str(zone) in ("UTC", "Etc/UTC"):
        return format_instant(instant)
    return f"{local.isoformat()} ({format_instant(instant)})"


def explain(p: Plan, policy: Policy, since: Mapping[str, str] | None = None) -> str:
    """The explanation of a plan; `since` maps active rules to when they were activated."""
    ev = p.evaluation
    r = p.record
    out = [f"Record {r.id} ({r.kind}): status {r.status!r}, priority {r.priority!r}, "
           f"tier {r.tier!r}, channel {r.channel!r}, group {r.group!r}",
           f"Evaluated at {format_instant(ev.now)}", "", "SLA:"]
    out += _sla_lines(p, policy)
    out += ["", "Clocks:"]
    for clock in ev.clocks.values():
        if clock.target in TARGETS or clock.target_seconds is not None or clock.note:
            out += _clock(clock)  # a newer target is shown where the SLA sets it
    if policy.olas:
        out += ["", "OLAs (team targets):"]
        out += _ola_lines(p, policy)
    if policy.load_variables:
        f = ev.facts
        out += ["", "Load (counted once per sync over the state file's copy of the desk):",
                f"  group {r.group!r}: group_open {f['group_open']}, group_at_risk "
                f"{f['group_at_risk']}, group_arrivals_1h {f['group_arrivals_1h']}; desk_open "
                f"{f['desk_open']}"]
    if policy.overrides:
        out += ["", "Overrides:"] + [
            f"  {o.path} {o.describe()}: "
            + ("IN EFFECT" if o.holds(ev.now) else "not in effect at this time")
            for o in policy.overrides]
    out += ["", "Rules:"]
    out += _rule_lines(p, since or {})
    out += ["", "Change set:"]
    if p.change.is_empty():
        out.append("  none: nothing to write")
    out += [_step_line(step) for step in p.steps]
    if not p.settled:
        out.append(f"  warning: the rules did not settle after {p.passes} passes")
    return "\n".join(out)


def _sla_lines(p: Plan, policy: Policy) -> list[str]:
    """Which SLA matched (and why each one before it did not), and how its clocks run."""
    ev = p.evaluation
    variables = ev.variables()
    out = []
    for sla in policy.slas:
        if ev.sla is not None and sla.index == ev.sla.index:
            why = "no 'when': matches every record" if sla.when is None else "'when' holds"
            version = f"; {sla.version()} applies" if sla.valid_from else ""
            out.append(f"  slas[{sla.index}] {sla.name!r}: MATCHED ({why}{version})")
            break
        refused = sla.version_refuses(p.record, ev.now, policy.closed_statuses)
        if refused is not None:
            out.append(f"  slas[{sla.index}] {sla.name!r}: not matched: {refused}")
            continue
        assert sla.when is not None
        failure = first_failure(sla.when, variables, f"slas[{sla.index}].when")
        out.append(f"  slas[{sla.index}] {sla.name!r}: not matched: "
                   + (_failure(failure) if failure else "?"))
    if ev.sla is None:
        out.append("  no SLA matched: no clock runs")
        return out
    choice = ev.sla.calendar
    picked = f"calendar {ev.calendar.name} ({ev.calendar.timezone})"
    if choice.record_field is not None:
        picked += f", picked by {choice.record_field}"
    open_now = "inside" if ev.facts["in_business_hours"] else "outside"
    out.append(f"  {picked}; now is {open_now} its working time")
    out.append(f"  pause statuses: {', '.join(sorted(ev.sla.pause_statuses)) or 'none'}; "
               f"on target change: {ev.sla.on_target_change}")
    if ev.sla.on_target_change == "restart" and ev.sla_mark is not None:
        out.append(f"  under this SLA since {format_instant(ev.sla_mark.since)}: "
                   "its clocks count from then")
    by = ev.sla.targets_by
    if by is not None:
        value = field_value(p.record, by.field)
        targets = ev.sla.targets_for(p.record)
        which = (f"row {value!r} over the SLA's targets" if value in by.values
                 else "not listed: the SLA's own targets")
        out.append(f"  targets by {by.field} = {value!r}: {which}: " + (", ".join(
            f"{t.replace('_', ' ')} {targets[t]}" for t in sorted(targets, key=_order))
            or "none"))
    scale, by_override = scale_for(policy.overrides, p.record.created_at)
    if by_override:
        out.append(f"  targets x{scale:g}: created within override {by_override!r}")
    granted = extensions_of(p.record)
    out += [f"  extension: {line}" for line in describe(granted, ev.sla.targets_for(p.record))]
    for target, rules in ev.sla.clocks.items():
        given = [key for key in ("start_when", "pause_when", "stop_when")
                 if getattr(rules, key) is not None]
        out.append(f"  {target.replace('_', ' ')} clock: {', '.join(given)} ({rules.path}), "
                   "replayed over the record's history")
    return out


def _ola_lines(p: Plan, policy: Policy) -> list[str]:
    """Each OLA: whether it applies, the record's periods with the team, and its clocks."""
    ev = p.evaluation
    applying = {state.ola.index: state for state in ev.olas}
    out = []
    for ola in policy.olas:
        state = applying.get(ola.index)
        if state is None:
            failure = None if ola.when is None else first_failure(
                ola.when, ev.variables(), f"{ola.path}.when")
            out.append(f"  {ola.path} {ola.name!r}: does not apply: its when has not held "
                       "at any change of the record" + (f" (now: {_failure(failure)})"
                                                        if failure else ""))
            continue
        out.append(f"  {ola.path} {ola.name!r}: APPLIES; calendar {state.calendar.name} "
                   f"({state.calendar.timezone}); pause statuses: "
                   f"{', '.join(sorted(ola.pause_statuses)) or 'none'}")
        if state.note:
            out.append(f"    {state.note}: its clocks do not run")
            continue
        zone = ZoneInfo(state.calendar.timezone)
        for start, end in state.periods:
            out.append(f"    with the team {_both(start, zone)} -> "
                       + (_both(end, zone) if end else "now"))
        for clock in state.clocks.values():
            out += ["  " + line for line in _clock(clock)]
    return out


def _order(target: str) -> int:
    return ALL_TARGETS.index(target)


def _rule_lines(p: Plan, since: Mapping[str, str]) -> list[str]:
    """Each rule's verdict on the record as read, then the rules that fire only on the
    plan's own changes and those that deactivate."""
    ev = p.evaluation
    variables = ev.variables()
    out = []
    fired = set(p.fired)
    for outcome in ev.outcomes:
        rule = outcome.rule
        head = f"  {rule.path} {rule.name!r}: "
        if outcome.fired and rule.name in p.active_before:
            when = f" since {since[rule.name]}" if rule.name in since else ""
            out.append(head + f"conditions hold; already active{when}, so it does not fire "
                              "again until its conditions have been false")
        elif outcome.fired:
            out.append(head + "FIRES (conditions hold, newly)")
        elif rule.during is not None and not rule.during[0] <= ev.now < rule.during[1]:
            out.append(head + "not run: outside its override's range")
        else:
            failure = first_failure(rule.conditions, variables, f"{rule.path}.conditions")
            out.append(head + "does not fire: " + (_failure(failure) if failure else "?"))
    later = [name for name in p.fired if name not in {o.rule.name for o in ev.outcomes
                                                      if o.fired}]
    for name in later:
        out.append(f"  {name!r}: FIRES after the changes above are applied")
    for name in sorted(p.deactivated - fired):
        out.append(f"  {name!r}: deactivates (its conditions no longer hold)")
    return out


def _step_line(step: Step) -> str:
    """One step of the change set: what it sets, its outcome, the rule that asked."""
    if step.slot == "note":
        what = f"note {step.after!r}"
    elif step.slot.startswith("tag:"):
        what = f"tag {step.slot[4:]!r} {step.before} -> {step.after}"
    else:
        what = f"{step.slot} {_value(step.before)} -> {_value(step.after)}"
    label = {WRITE: "write", SATISFIED: "already so", OVERRIDDEN: "overridden",
             VOID: "void"}.get(step.outcome, step.outcome)
    detail = f" ({step.detail})" if step.detail else ""
    return f"  [{label}] {what}  <- rule {step.rule!r}{detail}"


def _version(sla: Sla) -> dict[str, Any]:
    """An SLA version's key for explain's data (none for an SLA without versions)."""
    if sla.valid_from is None:
        return {}
    return {"version": {"valid_from": format_instant(sla.valid_from),
                        "applies_to": sla.applies_to}}


def explain_data(p: Plan, policy: Policy, since: Mapping[str, str] | None = None
                 ) -> dict[str, Any]:
    """The content of `explain` as JSON-ready data, for tools: the SLAs tried, the clocks,
    each rule's verdict (with the first condition that failed) and the change set."""
    since = since or {}
    ev, r = p.evaluation, p.record
    variables = ev.variables()

    def failure(f: Failure | None) -> dict[str, Any] | None:
        if f is None:
            return None
        if f.path.endswith(".any"):
            return {"path": f.path, "none_of_any_holds": True, "actual": f.actual}
        return {"path": f.path, "name": f.condition["name"],
                "operator": f.condition["operator"], "value": f.condition.get("value"),
                "actual": f.actual}

    slas = []
    for sla in policy.slas:
        if ev.sla is not None and sla.index == ev.sla.index:
            slas.append({"index": sla.index, "name": sla.name, "matched": True,
                         "why": "no when" if sla.when is None else "when holds",
                         **_version(sla)})
            break
        refused = sla.version_refuses(r, ev.now, policy.closed_statuses)
        if refused is not None:
            slas.append({"index": sla.index, "name": sla.name, "matched": False,
                         **_version(sla), "version_refuses": refused})
            continue
        assert sla.when is not None
        slas.append({"index": sla.index, "name": sla.name, "matched": False,
                     "failed": failure(first_failure(sla.when, variables,
                                                     f"slas[{sla.index}].when"))})

    def instant(value: datetime | None) -> str | None:
        return None if value is None else format_instant(value)

    def local(clock: Clock) -> str | None:
        """Its due instant in its calendar's timezone."""
        zone = ZoneInfo(clock.calendar.timezone)
        return None if clock.due_at is None else clock.due_at.astimezone(zone).isoformat()

    def clock_data(clock: Clock) -> dict[str, Any]:
        return {
            "target_seconds": clock.target_seconds,
            "elapsed_seconds": clock.elapsed_seconds,
            "elapsed_pct": clock.elapsed_pct if clock.target_seconds is not None else None,
            "minutes_left": clock.minutes_left if clock.target_seconds is not None else None,
            "state": "stopped" if clock.stopped_at else ("paused" if clock.paused
                                                         else "running"),
            "breached": clock.breached, "met": clock.met,
            "started_at": instant(clock.started_at), "stopped_at": instant(clock.stopped_at),
            "due_at": instant(clock.due_at), "due_at_local": local(clock),
            "pauses": [{"status": pause.status, "start": instant(pause.start),
                        "end": instant(pause.end), "business_seconds": pause.business_seconds,
                        "reason": pause.reason or None}
                       for pause in clock.pauses],
            "start_reason": clock.start_reason or None,
            "stop_reason": clock.stop_reason or None,
            "note": clock.note or None,
            "cycles": [{"started_at": instant(c.started_at), "stopped_at": instant(c.stopped_at),
                        "elapsed_seconds": c.elapsed_seconds, "breached": c.breached,
                        "ended": c.ended or None, "due_at": instant(c.due_at)}
                       for c in clock.cycles],
        }

    clocks = {target: clock_data(clock) for target, clock in ev.clocks.items()}
    olas = [{"index": state.ola.index, "name": state.ola.name,
             "calendar": state.calendar.name, "note": state.note or None,
             "periods": [{"start": instant(a), "end": instant(b)} for a, b in state.periods],
             "clocks": {target: clock_data(clock) for target, clock in state.clocks.items()}}
            for state in ev.olas]
    rules = []
    for outcome in ev.outcomes:
        rule = outcome.rule
        entry: dict[str, Any] = {"index": rule.index, "name": rule.name}
        if outcome.fired and rule.name in p.active_before:
            entry.update(verdict="active", active_since=since.get(rule.name))
        elif outcome.fired:
            entry["verdict"] = "fires"
        else:
            entry.update(verdict="does not fire", failed=failure(first_failure(
                rule.conditions, variables, f"{rule.path}.conditions")))
        rules.append(entry)
    first_pass = {o.rule.name for o in ev.outcomes if o.fired}
    change = p.change.to_dict()
    change.pop("id", None)
    change.pop("base_updated_at", None)
    return {
        "record": {"id": r.id, "kind": r.kind, "status": r.status, "priority": r.priority,
                   "tier": r.tier, "channel": r.channel, "group": r.group},
        "now": format_instant(ev.now),
        "policy": policy.source,
        "slas": slas,
        "sla": None if ev.sla is None else {
            "name": ev.sla.name, "calendar": ev.calendar.name,
            "timezone": ev.calendar.timezone, "calendar_by": ev.sla.calendar.record_field,
            "targets_by": None if ev.sla.targets_by is None else {
                "field": ev.sla.targets_by.field,
                "value": field_value(r, ev.sla.targets_by.field),
                "row": field_value(r, ev.sla.targets_by.field)
                in ev.sla.targets_by.values},
            "in_business_hours": ev.facts["in_business_hours"],
            "pause_statuses": sorted(ev.sla.pause_statuses),
            "on_target_change": ev.sla.on_target_change,
            "since": instant(ev.sla_mark.since) if ev.sla_mark else None,
            "extensions": describe(extensions_of(r), ev.sla.targets_for(r))},
        "clocks": clocks,
        "olas": olas,
        "rules": rules,
        "fires_after_changes": [name for name in p.fired if name not in first_pass],
        "deactivates": sorted(p.deactivated - set(p.fired)),
        "change": change,
        "steps": [{"rule": s.rule, "action": s.action, "slot": s.slot, "before": s.before,
                   "after": s.after, "outcome": s.outcome, "detail": s.detail}
                  for s in p.steps],
        "notify": [{"rule": rule, "webhook": webhook, "text": text}
                   for rule, webhook, text in p.notifications],
        "settled": p.settled,
        "passes": p.passes,
    }
