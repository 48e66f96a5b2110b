"""`Wakes.of`, which walks thresholds laid out once per policy, against the plain definition
it replaces (below, as it was): the same wake-up time, or the same error, for varied
records and instants under policies reading every kind of time-moved fact (elapsed
percentages, minutes left, breaches, business minutes, due instants, hours since, business
hours, OLAs, versions, overrides, a calendar that has no working time)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import act, at, cond, iso, make_policy, make_record, rule
from sla_sync.rules.clock import Clock
from sla_sync.rules.engine import Evaluation, clocks_that_ran, evaluate
from sla_sync.rules.ola import ola_clocks
from sla_sync.rules.policy import Policy
from sla_sync.rules.wake import EARLY, OLA_FAMILY, Wakes, _boundary

ROOT = Path(__file__).resolve().parent.parent


def plain_of(w: Wakes, evaluation: Evaluation) -> datetime | None:
    """Wakes.of as it was before its thresholds were laid out (d4054ff)."""
    now = evaluation.now
    record = evaluation.record
    found: list[datetime] = []
    instants = [record.created_at, record.updated_at, record.solved_at,
                record.first_response_at]
    found += [at for at in instants if at is not None and at > now]
    found += [c.at for c in record.status_timeline() if c.at >= now]
    found += [m.at for m in record.messages or () if m.at > now]
    found += [at for at in w.versions if at > now]
    found += [a.at for a in record.assignment_history or () if a.at >= now]
    found += [at for at in w.boundaries if at > now]
    for name, values in w.hours.items():
        base = record.created_at if name == "hours_since_created" else record.updated_at
        for hours in values:
            at = base + timedelta(hours=hours)
            if at >= now - EARLY:
                found.append(at)
    for clock in clocks_that_ran(evaluation.clocks):
        found += plain_clock(w, clock, now)
    for clock in ola_clocks(evaluation.olas):
        found += plain_clock(w, clock, now, OLA_FAMILY)
    if w.business_hours:
        edge = _boundary(evaluation.calendar, now)
        found += [edge] if edge is not None else []
    if not found:
        return None
    return max(now, min(found) - EARLY)


def plain_clock(w: Wakes, clock: Clock, now: datetime, family: str = "") -> list[datetime]:
    family = family or clock.target
    if not clock.running:
        return []
    if clock.target_seconds is None:
        return [] if clock.paused else plain_elapsed(w, clock, now, 0.0, family, (
            "business_minutes_elapsed",))
    target = float(clock.target_seconds)
    found = []
    if w.due[family] and clock.paused:
        found.append(now)
    elif clock.due_at is not None and any(
            abs(clock.due_at.timestamp() - v) < 2 for v in w.due[family]):
        found.append(now)
    if clock.paused:
        return found
    return found + plain_elapsed(w, clock, now, target, family)


def plain_elapsed(w: Wakes, clock: Clock, now: datetime, target: float, family: str,
                  kinds: tuple[str, ...] = ("minutes_left", "elapsed_pct",
                                            "business_minutes_elapsed")) -> list[datetime]:
    found = []
    for kind, value in w.elapsed[family]:
        if kind not in kinds:
            continue
        seconds = (target - 60 * value if kind == "minutes_left"
                   else target * value / 100 if kind == "elapsed_pct" else 60 * value)
        if seconds < clock.elapsed_seconds - EARLY.total_seconds():
            continue
        try:
            found.append(clock.calendar.add_business_seconds(
                now, max(0.0, seconds - clock.elapsed_seconds)))
        except ValueError:
            found.append(now)
    return found


OFFICE = {"timezone": "Europe/Berlin", "week": {d: ["09:00-12:00", "13:00-17:00"]
                                                for d in ("mon", "tue", "wed", "thu", "fri")}}
TAG = act("add_tag", tag="t")
TIMED = [
    cond("first_response_elapsed_pct", "greater_than_or_equal_to", 75),
    cond("first_response_minutes_left", "less_than", 30),
    cond("resolution_breached", "is_true"),
    cond("resolution_minutes_left", "less_than", 120.5),
    cond("resolution_business_minutes_elapsed", "greater_than", 90),
    cond("next_response_elapsed_pct", "greater_than", 50),
    cond("next_response_business_minutes_elapsed", "greater_than", 10),
    cond("first_response_due_at_epoch", "greater_than", at("2026-03-02 10:00").timestamp()),
    cond("hours_since_created", "greater_than", 4),
    cond("hours_since_updated", "greater_than", 0.5),
    cond("hours_since_updated", "greater_than", 48),
    cond("in_business_hours", "is_true"),
    cond("ola_elapsed_pct", "greater_than", 80),
    cond("ola_minutes_left", "less_than", 15),
    cond("ola_breached", "is_true"),
]


def policies() -> Iterator[tuple[str, Policy]]:
    slas = [{"name": "office", "calendar": "office", "when": cond("tier", "equal_to", "gold"),
             "targets": {"first_response": "2h", "resolution": "2bd", "next_response": "4h"},
             "pause_statuses": ["pending"]},
            {"name": "standard", "targets": {"first_response": "1h", "resolution": "8h"}}]
    olas = [{"name": "l2", "when": cond("group", "equal_to", "l2"), "calendar": "office",
             "targets": {"resolution": "3h"}, "pause_statuses": ["pending"]}]
    calendars = {"office": OFFICE}
    def policy(*conditions: dict[str, Any]) -> Policy:
        return make_policy(slas, [rule(f"r{i}", c, TAG) for i, c in enumerate(conditions)],
                           calendars=calendars, olas=olas)

    # each fact alone (its thresholds alone decide), then together, then in groups
    for condition in TIMED:
        yield condition["name"], policy(condition)
    yield "every fact", policy(*TIMED)
    yield "next response", policy(*TIMED[5:7], cond("next_response_minutes_left", "less_than",
                                                     200))
    yield "the OLA's", policy(*TIMED[12:])
    yield "hours", policy(*TIMED[8:11])
    # the same, its calendars made to fail past 3h once evaluated (`refusing`)
    yield REFUSING, policy(*TIMED[:8], *TIMED[12:])
    shipped = json.loads((ROOT / "policies/tiered-support.json").read_text())
    from sla_sync.rules.policy import check_policy
    yield "shipped", check_policy(shipped, str(ROOT / "policies/tiered-support.json"))


def calendars_of(policy: Policy) -> list[Any]:
    return [c for group in (policy.slas, policy.olas) for s in group
            for c in (s.calendar.default, *s.calendar.by_value.values())]


REFUSING = "a calendar that cannot add more than 3h"


@contextmanager
def refusing(name: str, policy: Policy) -> Iterator[None]:
    """Under the REFUSING policy, its calendars' add_business_seconds fail past 3h, as a
    calendar without working time fails (the evaluation before ran as usual)."""
    calendars = list({id(c): c for c in calendars_of(policy)}.values()) \
        if name == REFUSING else []
    for calendar in calendars:
        add = calendar.add_business_seconds

        def fails(start: datetime, seconds: float, add: Any = add) -> datetime:
            if seconds > 3 * 3600:
                raise ValueError("no working time within the days looked at")
            return add(start, seconds)  # type: ignore[no-any-return]
        calendar.add_business_seconds = fails
    try:
        yield
    finally:
        for calendar in calendars:
            del calendar.add_business_seconds


POLICIES = list(policies())
BASE = at("2026-03-02 08:00")  # a Monday


# The strategies drawn from, made once (building them at each draw was most of the test's
# time: hypothesis validates every new strategy).
MINUTES = st.integers(min_value=0, max_value=7 * 24 * 60)
LATER = st.integers(min_value=0, max_value=10 * 24 * 60)  # minutes after creation
STATUSES = st.sampled_from(["open", "pending", "solved", "new"])
TIERS = st.sampled_from(["gold", "none", "standard", "vip"])
GROUPS = st.sampled_from(["l2", "support"])
MESSAGES = st.lists(st.tuples(LATER, st.sampled_from(["customer", "agent"]), st.booleans()),
                    max_size=4)
OWNERS = st.lists(st.tuples(LATER, GROUPS), max_size=3)
WHERE = st.sampled_from(["anywhere", "instant", "threshold"])
ANYWHERE = st.tuples(st.integers(0, 12 * 24 * 60), st.integers(0, 59))
NEAR = st.sampled_from([0, 0, 1, -1, 2, -2, 30, -30, 59, -59, 61, -61, 90, -90])
INDEX = st.integers(0, len(POLICIES) - 1)


def stamp(minutes: float) -> str:
    return iso((BASE + timedelta(minutes=minutes)).strftime("%Y-%m-%d %H:%M"))


@st.composite
def cases(draw: Any) -> tuple[int, dict[str, Any], datetime]:
    created = draw(MINUTES)
    changes = sorted(created + m for m in draw(st.lists(LATER, max_size=4)))
    statuses = [draw(STATUSES) for _ in changes]
    status = statuses[-1] if statuses and draw(st.booleans()) else draw(STATUSES)
    updated = max([created, *changes, created + draw(LATER)])
    fields: dict[str, Any] = {
        "created_at": stamp(created), "updated_at": stamp(updated), "status": status,
        "tier": draw(TIERS), "group": draw(GROUPS),
        "status_history": [{"at": stamp(m), "status": s} for m, s in zip(changes, statuses,
                                                                         strict=True)],
        "first_response_at": None if draw(st.booleans()) else stamp(created + draw(LATER)),
        "solved_at": None if draw(st.booleans()) else stamp(created + draw(LATER)),
    }
    more: list[int] = []
    if draw(st.booleans()):
        messages = sorted((created + m, a, p) for m, a, p in draw(MESSAGES))
        fields["messages"] = [{"at": stamp(m), "author": a, "public": p}
                              for m, a, p in messages]
        more += [m for m, _, _ in messages]
    if draw(st.booleans()):
        owners = sorted((created + m, g) for m, g in draw(OWNERS))
        fields["assignment_history"] = [{"at": stamp(m), "group": g, "assignee": ""}
                                        for m, g in owners]
        more += [m for m, _ in owners]
    # now: anywhere; at one of the record's instants; or about where a threshold of the
    # 24x7 SLA is crossed (30, 45, 90 minutes, 6 and 8 hours after creation)
    instants = [created, *changes, *more]
    where = draw(WHERE)
    if where == "anywhere":
        minutes, seconds = draw(ANYWHERE)
        now = BASE + timedelta(minutes=minutes, seconds=seconds)
    else:
        minutes = draw(st.sampled_from(
            instants if where == "instant"
            else [created + m for m in (30, 45, 90, 359.5, 480)]))
        now = BASE + timedelta(minutes=minutes, seconds=draw(NEAR))
    return draw(INDEX), fields, now


def outcome(call: Any) -> Any:
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 (the same error, whichever it is)
        return type(exc), str(exc)


#: A paused clock whose due instant a rule reads (the due instant moves with now): rare in
#: the random cases, so given here.
PAUSED = ([i for i, (name, _) in enumerate(POLICIES) if name == "first_response_due_at_epoch"][0],
          {"created_at": stamp(60), "updated_at": stamp(70), "status": "pending", "tier": "gold",
           "group": "support", "status_history": [{"at": stamp(70), "status": "pending"}],
           "first_response_at": None, "solved_at": None}, BASE + timedelta(minutes=200))


#: A running OLA clock (the team's "l2"), whose minutes-left threshold is ahead.
OLA = ([i for i, (name, _) in enumerate(POLICIES) if name == "ola_minutes_left"][0],
       {"created_at": stamp(60), "updated_at": stamp(60), "status": "open", "tier": "none",
        "group": "l2", "status_history": [], "first_response_at": None, "solved_at": None,
        "assignment_history": [{"at": stamp(60), "group": "l2", "assignee": ""}]},
       BASE + timedelta(minutes=90))


@settings(max_examples=1200, deadline=None, derandomize=True)
@given(cases())
@example(PAUSED)
@example(OLA)
def test_as_the_plain_definition(case: tuple[int, dict[str, Any], datetime]) -> None:
    index, fields, now = case
    name, policy = POLICIES[index]
    evaluation = evaluate(make_record(**fields), policy, now)
    wakes = Wakes(policy)
    with refusing(name, policy):
        assert outcome(lambda: wakes.of(evaluation)) == outcome(
            lambda: plain_of(wakes, evaluation))


@pytest.mark.parametrize(("name", "policy"), POLICIES, ids=[name for name, _ in POLICIES])
def test_the_cases_reach_every_branch(name: str, policy: Policy) -> None:
    """The policies above set thresholds of every kind (else the comparison proves little)."""
    wakes = Wakes(policy)
    if name in ("every fact", REFUSING):
        assert wakes.business_hours == (name == "every fact")
        assert all(wakes.hours.values()) == (name == "every fact")
        assert all(wakes.elapsed[f] for f in ("first_response", "resolution", "next_response",
                                              OLA_FAMILY))
        assert wakes.due["first_response"]


def test_a_calendar_that_cannot_add_wakes_at_once_as_before() -> None:
    policy = make_policy([{"name": "office", "calendar": "office",
                           "targets": {"resolution": "3bd"}}],
                         [rule("long", cond("resolution_business_minutes_elapsed",
                                            "greater_than", 300), TAG)],
                         calendars={"office": OFFICE})
    now = at("2026-03-02 09:30")
    evaluation = evaluate(make_record(created_at=iso("2026-03-02 09:00"),
                                      updated_at=iso("2026-03-02 09:00")), policy, now)
    wakes = Wakes(policy)
    assert wakes.of(evaluation) == plain_of(wakes, evaluation) > now + timedelta(hours=5)
    with refusing(REFUSING, policy):
        assert wakes.of(evaluation) == plain_of(wakes, evaluation) == now
