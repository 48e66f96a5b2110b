"""Date-ranged overrides for planned peaks (issue 15 item 6): a calendar that counts as
another within the range, SLA targets scaled for records created within it, and rules that
run only within it; each shown by explain and reached by the wake-up index at its ends."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    act,
    at,
    cli,
    cond,
    iso,
    make_policy,
    make_record,
    record_dict,
    rule,
    write_project,
)
from sla_sync.rules.engine import evaluate
from sla_sync.rules.policy import PolicyError, check_policy

BERLIN = "Europe/Berlin"
OFFICE = {"timezone": BERLIN, "week": {d: ["09:00-17:00"]
                                       for d in ("mon", "tue", "wed", "thu", "fri")}}
LAUNCH = {"timezone": BERLIN, "week": {d: ["07:00-22:00"] for d in (
    "mon", "tue", "wed", "thu", "fri", "sat", "sun")}}
CALENDARS = {"office": OFFICE, "launch-hours": LAUNCH}
HOUR = 3600.0


def spliced(start: str, until: str) -> Any:
    """The office calendar with launch hours from `start` to `until` (Berlin times)."""
    policy = make_policy(slas=[{"name": "s", "calendar": "office",
                                "targets": {"resolution": "8h"}}], calendars=CALENDARS,
                         overrides=[{"name": "launch", "from": iso(start, BERLIN),
                                     "until": iso(until, BERLIN),
                                     "calendars": {"office": "launch-hours"}}])
    return policy.slas[0].calendar.default


def test_a_calendar_counts_as_its_replacement_only_within_the_range():
    # the weekend of 7-8 March 2026 is worked 07:00-22:00; Friday and Monday are office days
    calendar = spliced("2026-03-07 00:00", "2026-03-09 00:00")
    friday_4pm, monday_10am = at("2026-03-06 16:00", BERLIN), at("2026-03-09 10:00", BERLIN)
    # Friday 16-17 (office), Saturday and Sunday 07-22 (launch), Monday 09-10 (office)
    assert calendar.business_seconds(friday_4pm, monday_10am) == 32 * HOUR
    assert calendar.add_business_seconds(friday_4pm, 3 * HOUR) == at("2026-03-07 09:00", BERLIN)
    assert calendar.add_business_seconds(friday_4pm, 31.5 * HOUR) == at(
        "2026-03-09 09:30", BERLIN)
    assert calendar.is_open(at("2026-03-07 08:00", BERLIN))
    assert not calendar.is_open(at("2026-03-07 23:00", BERLIN))
    assert not calendar.is_open(at("2026-03-14 08:00", BERLIN))  # the next Saturday: office
    assert [(a.astimezone().hour, b.astimezone().hour) for a, b in calendar.intervals(
        at("2026-03-07 12:00", BERLIN).date())] == [(6, 21)]  # UTC hours: 07-22 in Berlin


def test_a_range_that_starts_within_a_day_joins_both_calendars_hours():
    calendar = spliced("2026-03-06 12:00", "2026-03-07 00:00")  # Friday from noon
    [(start, end)] = calendar.intervals(at("2026-03-06 12:00", BERLIN).date())
    assert (start, end) == (at("2026-03-06 09:00", BERLIN), at("2026-03-06 22:00", BERLIN))
    assert calendar.business_seconds(at("2026-03-06 08:00", BERLIN),
                                     at("2026-03-07 08:00", BERLIN)) == 13 * HOUR


def test_the_spliced_arithmetic_is_consistent_at_random_instants():
    calendar = spliced("2026-03-06 15:30", "2026-03-09 08:15")
    rng = random.Random(7)
    origin = at("2026-03-05 00:00", BERLIN)
    for _ in range(300):
        a, b, c = sorted(origin + timedelta(minutes=rng.randrange(0, 7 * 24 * 60))
                         for _ in range(3))
        assert calendar.business_seconds(a, c) == pytest.approx(
            calendar.business_seconds(a, b) + calendar.business_seconds(b, c))
        seconds = rng.randrange(1, 40 * 3600)
        reached = calendar.add_business_seconds(a, seconds)
        assert calendar.business_seconds(a, reached) == pytest.approx(seconds)


def test_targets_are_scaled_for_records_created_within_the_range():
    policy = make_policy(slas=[{"name": "s", "targets": {"first_response": "2h"}}], overrides=[
        {"name": "launch", "from": iso("2026-03-02 00:00"), "until": iso("2026-03-03 00:00"),
         "targets_scale": 0.5}])
    inside = make_record(created_at=iso("2026-03-02 09:00"), updated_at=iso("2026-03-02 09:00"))
    before = make_record(created_at=iso("2026-03-01 23:00"), updated_at=iso("2026-03-01 23:00"))
    now = at("2026-03-03 12:00")  # after the range: the record keeps its halved target
    assert evaluate(inside, policy, now).clocks["first_response"].target_seconds == HOUR
    assert evaluate(before, policy, now).clocks["first_response"].target_seconds == 2 * HOUR


@pytest.mark.parametrize(("override", "path", "message"), [
    ({"from": "2026-03-02T00:00", "until": "2026-03-03T00:00+00:00", "targets_scale": 0.5},
     "overrides[0].from", "'2026-03-02T00:00' has no UTC offset"),
    ({"from": "2026-03-03T00:00+00:00", "until": "2026-03-02T00:00+00:00",
      "targets_scale": 0.5}, "overrides[0].until", "must be after 'from'"),
    ({"from": "2026-03-02T00:00+00:00", "until": "2026-03-03T00:00+00:00"},
     "overrides[0]", "an override needs calendars, targets_scale or rules"),
    ({"from": "2026-03-02T00:00+00:00", "until": "2026-03-03T00:00+00:00",
      "calendars": {"office": "lanch-hours"}}, "overrides[0].calendars.office",
     "unknown calendar 'lanch-hours' (did you mean 'launch-hours'?)"),
    ({"from": "2026-03-02T00:00+00:00", "until": "2026-03-03T00:00+00:00",
      "targets_scale": 0}, "overrides[0].targets_scale", "expected a number from 0.01 to 10"),
    ({"from": "2026-03-02T00:00+00:00", "until": "2026-03-03T00:00+00:00", "rules": [
        rule("r", cond("tier", "equal_to", "vip"), act("add_tag", tag=""))]},
     "overrides[0].rules[0].actions[0].params.tag", "expected a non-empty string"),
])
def test_a_broken_override_is_refused_with_its_path(override: dict[str, Any], path: str,
                                                    message: str):
    with pytest.raises(PolicyError) as caught:
        check_policy({"calendars": CALENDARS, "overrides": [{"name": "launch", **override}]})
    problems = {p.path: p.message for p in caught.value.problems}
    assert path in problems, problems
    assert problems[path].startswith(message), problems[path]


def test_loosening_targets_is_allowed_with_a_warning():
    policy = make_policy(overrides=[{"name": "sale", "from": iso("2026-03-02 00:00"),
                                     "until": iso("2026-03-03 00:00"), "targets_scale": 2}])
    assert [(w.path, w.message) for w in policy.warnings] == [
        ("overrides[0].targets_scale", "2 loosens the targets promised to customers; at a "
                                       "peak, warn and escalate earlier instead")]


def run(config: Path, when: str) -> dict[str, Any]:
    result = cli("run", "--config", str(config), "--now", iso(when, BERLIN), "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_an_overrides_rules_run_only_within_its_range_and_the_index_wakes_at_its_ends(
        tmp_path: Path):
    launch = {"name": "launch", "from": iso("2026-03-02 12:00", BERLIN),
              "until": iso("2026-03-02 18:00", BERLIN), "calendars": {"office": "launch-hours"},
              "rules": [rule("warn early", {"all": [
                  cond("resolution_elapsed_pct", "greater_than_or_equal_to", 10),
                  cond("status", "equal_to", "open")]}, act("add_tag", tag="launch_watch"))]}
    policy = {"calendars": CALENDARS, "overrides": [launch],
              "slas": [{"name": "s", "calendar": "office", "targets": {"resolution": "8h"}}],
              "rules": [rule("breach", cond("resolution_breached", "is_true", True),
                             act("add_tag", tag="breached"))]}
    opened = iso("2026-03-02 09:00", BERLIN)
    config = write_project(tmp_path, [record_dict(id="T-1", created_at=opened,
                                                  updated_at=opened)], policy)
    first = run(config, "2026-03-02 11:00")  # 2h of 8h used, but the override has not begun
    assert first["writes"] == 0
    quiet = run(config, "2026-03-02 11:59")
    assert quiet["evaluated"] == 0  # nothing due before the override begins
    begun = run(config, "2026-03-02 12:01")
    assert (begun["evaluated"], begun["writes"]) == (1, 1)  # due at 12:00, unchanged record
    tags = json.loads((tmp_path / "helpdesk.json").read_text())["records"][0]["tags"]
    assert tags == ["launch_watch"]
    result = cli("explain", "T-1", "--config", str(config), "--now",
                 iso("2026-03-02 19:00", BERLIN))
    assert ("  overrides[0] override 'launch' (2026-03-02T11:00:00+00:00 to "
            "2026-03-02T17:00:00+00:00): calendar 'office' counts as 'launch-hours'; rules "
            "'launch: warn early': not in effect at this time") in result.stdout, result.stdout
    assert ("  overrides[0].rules[0] 'launch: warn early': not run: outside its override's "
            "range") in result.stdout
    # The office closed at 17:00 but the launch hours ran to 18:00: 9 business hours by
    # 19:00 (09-17 office, 17-18 launch), past the 8h target at 17:00 (launch hours).
    assert "resolution: target 8h, elapsed 9h (112%), left -1h; running; BREACHED" in result.stdout
    assert "breached at 2026-03-02T17:00:00+01:00" in result.stdout
