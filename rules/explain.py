"""`explain`: why a record got (or did not get) its SLA, its clocks, and each rule's verdict,
as plain text a rule author can check by hand."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from connector.model import format_instant
from rules.clock import Clock
from rules.durations import format_duration
from rules.engine import Failure, first_failure
from rules.planner import OVERRIDDEN, SATISFIED, WRITE, Plan
from rules.policy import Policy


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


def _clock(clock: Clock, now: datetime) -> list[str]:
    name = clock.target.replace("_", " ")
    if clock.target_seconds is None:
        return [f"  {name}: no target in this SLA"]
    state = ("stopped at " + format_instant(clock.stopped_at)) if clock.stopped_at else (
        "paused" if clock.paused else "running")
    verdict = "BREACHED" if clock.breached else ("met" if clock.met else "within target")
    lines = [
        f"  {name}: target {format_duration(clock.target_seconds)}, "
        f"elapsed {format_duration(clock.elapsed_seconds)} ({clock.elapsed_pct:.0f}%), "
        f"left {format_duration(clock.minutes_left * 60)}; {state}; {verdict}",
        f"    started {format_instant(clock.started_at)}",
    ]
    due = clock.due_at(now)
    if due is not None:
        lines.append(f"    due {format_instant(due)}")
    for pause in clock.pauses:
        end = format_instant(pause.end) if pause.end else "now"
        lines.append(f"    paused ({pause.status}) {format_instant(pause.start)} -> {end}: "
                     f"{format_duration(pause.business_seconds)} not counted")
    return lines


def explain(p: Plan, policy: Policy, since: Mapping[str, str] | None = None) -> str:
    """The explanation of a plan; `since` maps active rules to when they were activated."""
    since = since or {}
    ev = p.evaluation
    r = p.record
    variables = ev.variables()
    out = [f"Record {r.id} ({r.kind}): status {r.status!r}, priority {r.priority!r}, "
           f"tier {r.tier!r}, channel {r.channel!r}, group {r.group!r}",
           f"Evaluated at {format_instant(ev.now)}", "", "SLA:"]
    for sla in policy.slas:
        if ev.sla is not None and sla.index == ev.sla.index:
            why = "no 'when': matches every record" if sla.when is None else "'when' holds"
            out.append(f"  slas[{sla.index}] {sla.name!r}: MATCHED ({why})")
            break
        assert sla.when is not None
        failure = first_failure(sla.when, variables, f"slas[{sla.index}].when")
        out.append(f"  slas[{sla.index}] {sla.name!r}: not matched: "
                   + (_failure(failure) if failure else "?"))
    if ev.sla is None:
        out.append("  no SLA matched: no clock runs")
    else:
        out.append(f"  calendar {ev.sla.calendar.name} ({ev.sla.calendar.timezone}); "
                   f"pause statuses: {', '.join(sorted(ev.sla.pause_statuses)) or 'none'}")
    out += ["", "Clocks:"]
    for clock in ev.clocks.values():
        out += _clock(clock, ev.now)
    out += ["", "Rules:"]
    fired = set(p.fired)
    for outcome in ev.outcomes:
        rule = outcome.rule
        head = f"  rules[{rule.index}] {rule.name!r}: "
        if outcome.fired and rule.name in p.active_before:
            when = f" since {since[rule.name]}" if rule.name in since else ""
            out.append(head + f"conditions hold; already active{when}, so it does not fire "
                              "again until its conditions have been false")
        elif outcome.fired:
            out.append(head + "FIRES (conditions hold, newly)")
        else:
            failure = first_failure(rule.conditions, variables, f"rules[{rule.index}].conditions")
            out.append(head + "does not fire: " + (_failure(failure) if failure else "?"))
    later = [name for name in p.fired if name not in {o.rule.name for o in ev.outcomes
                                                      if o.fired}]
    for name in later:
        out.append(f"  {name!r}: FIRES after the changes above are applied")
    for name in sorted(p.deactivated - fired):
        out.append(f"  {name!r}: deactivates (its conditions no longer hold)")
    out += ["", "Change set:"]
    if p.change.is_empty():
        out.append("  none: nothing to write")
    for step in p.steps:
        what = f"{step.action} {step.slot}"
        if step.slot == "note":
            what = f"note {step.after!r}"
        elif step.slot.startswith("tag:"):
            what = f"tag {step.slot[4:]!r} {step.before} -> {step.after}"
        else:
            what = f"{step.slot} {_value(step.before)} -> {_value(step.after)}"
        label = {WRITE: "write", SATISFIED: "already so", OVERRIDDEN: "overridden"}.get(
            step.outcome, step.outcome)
        detail = f" ({step.detail})" if step.detail else ""
        out.append(f"  [{label}] {what}  <- rule {step.rule!r}{detail}")
    if not p.settled:
        out.append(f"  warning: the rules did not settle after {p.passes} passes")
    return "\n".join(out)
