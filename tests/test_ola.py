"""Team targets (OLAs), worked out by hand: a ticket passed from l1 to l2 on a Friday
afternoon, through the weekend and a pending spell on Monday, and back to l1 until it is
solved. Each OLA counts only the business time (UTC, Mon-Fri 09:00-17:00) the ticket spent
with its own team; each breach is attributed to the team that held it then.

    Fri 03-06 15:00  created in l1, open
    Fri 03-06 16:00  moved to l2
    Mon 03-09 09:30  pending (l2's OLA pauses in pending; l1's does not matter: not with it)
    Mon 03-09 10:30  open again
    Mon 03-09 13:00  back to l1
    Mon 03-09 15:00  solved

l1 (resolution 2h): Fri 15:00-16:00 (1h) + Mon 13:00-15:00 (2h) = 3h, breached at Mon 14:00.
l2 (resolution 2h): Fri 16:00-17:00 (1h) + Mon 09:00-09:30 (0.5h) + 10:30-13:00 (2.5h) = 4h,
breached at Mon 11:00 (1h + 0.5h, then 0.5h from 10:30).
The customer SLA (resolution 24h, 24x7): 72h, breached Sat 15:00, while l2 held it.
"""

from __future__ import annotations

from typing import Any

import pytest

from conftest import act, at, cond, iso, make_policy, make_record, rule
from sla_sync.connector.model import Record
from sla_sync.rules.engine import evaluate
from sla_sync.rules.ola import UNAVAILABLE
from sla_sync.rules.policy import Policy, PolicyError, check_policy

HOUR = 3600
OFFICE = {"timezone": "UTC", "week": {day: ["09:00-17:00"]
                                      for day in ("mon", "tue", "wed", "thu", "fri")}}
OLAS = [
    {"name": "l1", "when": cond("group", "equal_to", "l1"), "calendar": "office",
     "targets": {"resolution": "2h"}},
    {"name": "l2", "when": cond("group", "equal_to", "l2"), "calendar": "office",
     "targets": {"resolution": "2h"}, "pause_statuses": ["pending"]},
]


def policy(rules: list[dict[str, Any]] | None = None, **extra: Any) -> Policy:
    return make_policy([{"name": "standard", "targets": {"resolution": "24h"}}], rules,
                       calendars={"office": OFFICE}, olas=OLAS, **extra)


def held(when: str, group: str, assignee: str = "") -> dict[str, Any]:
    return {"at": iso(when), "group": group, "assignee": assignee}


OWNERS = [held("2026-03-06 15:00", "l1"), held("2026-03-06 16:00", "l2"),
          held("2026-03-09 13:00", "l1", "ana")]
STATUSES = [{"at": iso(when), "status": status} for when, status in (
    ("2026-03-06 15:00", "open"), ("2026-03-09 09:30", "pending"),
    ("2026-03-09 10:30", "open"), ("2026-03-09 15:00", "solved"))]


def passed_on(**fields: Any) -> dict[str, Any]:
    return {"created_at": iso("2026-03-06 15:00"), "updated_at": iso("2026-03-09 15:00"),
            "status": "solved", "solved_at": iso("2026-03-09 15:00"), "group": "l1",
            "assignee": "ana", "assignment_history": OWNERS, "status_history": STATUSES,
            **fields}


def ticket(**fields: Any) -> Record:
    return make_record(**passed_on(**fields))


def states(record: Record, now: str = "2026-03-10 09:00") -> dict[str, Any]:
    return {s.ola.name: s for s in evaluate(record, policy(), at(now)).olas}


def test_each_ola_counts_only_its_teams_time():
    found = states(ticket())
    l1, l2 = found["l1"].clocks["resolution"], found["l2"].clocks["resolution"]
    assert l1.elapsed_seconds == pytest.approx(3 * HOUR)
    assert l1.breached and l1.due_at == at("2026-03-09 14:00")
    assert l1.started_at == at("2026-03-06 15:00") and l1.stopped_at == at("2026-03-09 15:00")
    assert l2.elapsed_seconds == pytest.approx(4 * HOUR)
    assert l2.breached and l2.due_at == at("2026-03-09 11:00")
    assert l2.started_at == at("2026-03-06 16:00")
    assert [(p.start, p.end, p.status, p.reason) for p in l2.pauses] == [
        (at("2026-03-09 09:30"), at("2026-03-09 10:30"), "pending", ""),
        (at("2026-03-09 13:00"), at("2026-03-09 15:00"), "open",
         "with another team (olas[1].when does not hold)")]
    assert found["l1"].periods == ((at("2026-03-06 15:00"), at("2026-03-06 16:00")),
                                   (at("2026-03-09 13:00"), None))
    assert found["l2"].periods == ((at("2026-03-06 16:00"), at("2026-03-09 13:00")),)


def test_while_with_another_team_the_clock_is_paused():
    # Monday 12:00: with l2; l1's clock has its Friday hour and waits for the ticket
    found = states(ticket(status="open", solved_at=None, status_history=STATUSES[:3],
                          updated_at=iso("2026-03-09 10:30")), "2026-03-09 12:00")
    l1, l2 = found["l1"].clocks["resolution"], found["l2"].clocks["resolution"]
    assert l1.elapsed_seconds == pytest.approx(HOUR) and l1.paused and l1.running
    assert l1.minutes_left == pytest.approx(60)
    assert l2.elapsed_seconds == pytest.approx(3 * HOUR) and not l2.paused and l2.breached


def test_an_ola_applies_only_where_its_when_held():
    record = ticket(assignment_history=[held("2026-03-06 15:00", "l1")], group="l1")
    found = states(record)
    assert set(found) == {"l1"}
    assert found["l1"].clocks["resolution"].elapsed_seconds == pytest.approx(
        2 * HOUR + 6 * HOUR)  # Fri 15:00-17:00, Mon 09:00-15:00 (l1 has no pause statuses)


def test_no_assignment_history_leaves_the_ola_unavailable():
    found = states(ticket(assignment_history=None))
    assert set(found) == {"l1"}  # as the ticket is now: nothing older is known
    clock = found["l1"].clocks["resolution"]
    assert found["l1"].note == UNAVAILABLE and clock.note == UNAVAILABLE
    assert clock.target_seconds is None and not clock.breached


def test_rules_read_the_worst_ola_clock():
    ev = evaluate(ticket(status="open", solved_at=None, status_history=STATUSES[:3],
                         updated_at=iso("2026-03-09 10:30")), policy([rule(
                             "ola late", {"all": [cond("ola_breached", "is_true")]},
                             act("add_tag", tag="ola_late"))]), at("2026-03-09 12:00"))
    assert ev.facts["ola_breached"] is True
    assert ev.facts["ola_elapsed_pct"] == pytest.approx(150.0)
    assert ev.facts["ola_minutes_left"] == pytest.approx(-60.0)
    assert ev.outcomes[0].fired


def test_a_record_under_no_ola_sees_no_ola_clock():
    ev = evaluate(make_record(), policy(), at("2026-03-02 10:00"))
    assert ev.olas == ()
    assert (ev.facts["ola_breached"], ev.facts["ola_elapsed_pct"]) == (False, 0.0)


@pytest.mark.parametrize(("olas", "path", "message"), [
    ([{"name": "l1", "targets": {"resolution": "2x"}}], "olas[0].targets.resolution",
     "not a duration"),
    ([OLAS[0], {"name": "l2", "targets": {"resolutoin": "2h"}}], "olas[1].targets.resolutoin",
     "unknown target"),
    ([{"name": "l1", "calendar": "ofice"}], "olas[0].calendar", "unknown calendar"),
    ([{"name": "l1", "when": cond("hours_since_created", "greater_than", 2)}],
     "olas[0].when.name", "replayed over the record's history"),
    ([{"name": "l1", "when": cond("ola_breached", "is_true")}], "olas[0].when.name",
     "cannot be used here"),
    ([{"name": "l1"}, {"name": "l1"}], "olas[1].name", "duplicate OLA name"),
    ([{"name": "l1", "on_target_change": "keep"}], "olas[0].on_target_change", "unknown key"),
    ({"name": "l1"}, "olas", "expected a list"),
])
def test_a_broken_ola_names_its_json_path(olas, path, message):
    with pytest.raises(PolicyError) as caught:
        check_policy({"calendars": {"office": OFFICE}, "olas": olas,
                      "slas": [{"name": "s", "targets": {"resolution": "1h"}}]})
    found = [p for p in caught.value.problems if p.path == path]
    assert found and message in found[0].message, caught.value.problems


def test_lint_knows_the_ola_variables():
    from sla_sync.rules.lint import lint
    found = {(f.path, f.message) for f in lint(policy([
        rule("never", {"all": [cond("ola_breached", "is_true"),
                               cond("ola_elapsed_pct", "less_than", 50)]},
             act("add_tag", tag="x")),
        rule("late", {"all": [cond("ola_breached", "is_true")]}, act("add_tag", tag="y"))]))}
    assert any(path == "rules[0].conditions" and "can never hold" in message
               for path, message in found), found
    assert not any(path.startswith("rules[1]") for path, _ in found), found
    plain = lint(make_policy(rules=[rule("late", {"all": [cond("ola_breached", "is_true")]},
                                         act("add_tag", tag="y"))]))
    assert [f.path for f in plain if "no olas" in f.message] == ["rules[0].conditions"]
    never = lint(make_policy(olas=[{"name": "x", "when": {"all": [
        cond("group", "equal_to", "a"), cond("group", "equal_to", "b")]}}]))
    assert "olas[0].when" in [f.path for f in never]


def test_the_schema_knows_olas():
    import jsonschema

    from sla_sync.rules.schema import json_schema
    validator = jsonschema.Draft202012Validator(json_schema())
    good = {"calendars": {"office": OFFICE}, "slas": [{"name": "s"}], "olas": OLAS}
    assert not list(validator.iter_errors(good))
    for bad in ({**OLAS[0], "on_target_change": "keep"},
                {**OLAS[0], "when": cond("hours_since_created", "greater_than", 1)},
                {**OLAS[0], "targets": {"resolutoin": "1h"}}):
        assert list(validator.iter_errors({**good, "olas": [bad]})), bad


def test_explain_shows_each_ola_its_periods_and_clocks():
    from sla_sync.rules.explain import explain, explain_data
    from sla_sync.rules.planner import plan
    other = {"name": "l3", "when": cond("group", "equal_to", "l3"),
             "targets": {"resolution": "1h"}}
    p = make_policy([{"name": "standard", "targets": {"resolution": "24h"}}],
                    calendars={"office": OFFICE}, olas=[*OLAS, other])
    planned = plan(ticket(), p, at("2026-03-10 09:00"))
    text = explain(planned, p)
    block = text[text.index("OLAs (team targets):"):text.index("Rules:")]
    assert "olas[0] 'l1': APPLIES; calendar office (UTC); pause statuses: none" in block
    assert "with the team 2026-03-06T15:00:00+00:00 -> 2026-03-06T16:00:00+00:00" in block
    assert "with the team 2026-03-09T13:00:00+00:00 -> now" in block
    assert "olas[1] 'l2': APPLIES; calendar office (UTC); pause statuses: pending" in block
    assert "breached at 2026-03-09T11:00:00+00:00" in block
    assert "paused (with another team (olas[1].when does not hold))" in block
    assert "olas[2] 'l3': does not apply" in block
    data = explain_data(planned, p)
    assert [(o["name"], o["clocks"]["resolution"]["breached"]) for o in data["olas"]] == [
        ("l1", True), ("l2", True)]
    assert data["olas"][1]["periods"] == [{"start": "2026-03-06T16:00:00+00:00",
                                           "end": "2026-03-09T13:00:00+00:00"}]
    unknown = explain(plan(ticket(assignment_history=None), p, at("2026-03-10 09:00")), p)
    assert f"{UNAVAILABLE}: its clocks do not run" in unknown


def test_the_report_counts_each_breach_under_the_team_that_held_the_record():
    from sla_sync.rules.metrics import report
    data = report([ticket()], policy(), at("2026-03-10 09:00"), at("2026-03-01 00:00"),
                  at("2026-03-10 00:00"), by=[("team_at_breach",), ("group",)])
    whole, *teams = data["segments"]
    assert data["olas"] == [{"name": "l1", "target": "resolution"},
                            {"name": "l2", "target": "resolution"}]
    assert whole["ola_breach_rate"] == {"l1": {"resolution": {"rate": 1.0, "count": 1, "of": 1}},
                                        "l2": {"resolution": {"rate": 1.0, "count": 1, "of": 1}}}
    assert whole["ola_compliance_rate"] == {"l1": {"resolution": 0.0},
                                            "l2": {"resolution": 0.0}}
    by_team = {s["by"]["team_at_breach"]: s for s in teams if "team_at_breach" in s["by"]}
    # the record is l1's now; the SLA ran out on Saturday (24x7), while l2 held it
    assert (by_team["l1"]["records"], by_team["l2"]["records"]) == (1, 0)
    assert by_team["l1"]["breach_rate"]["resolution"]["count"] == 0
    assert by_team["l2"]["breach_rate"]["resolution"]["count"] == 1
    assert [by_team["l1"]["ola_breach_rate"][o]["resolution"]["count"] for o in ("l1", "l2")] \
        == [1, 0]
    assert [by_team["l2"]["ola_breach_rate"][o]["resolution"]["count"] for o in ("l1", "l2")] \
        == [0, 1]
    # by group, the same history decides who held it: the breach is l2's there too
    by_group = {s["by"]["group"]: s for s in teams if "group" in s["by"]}
    assert by_group["l2"]["breach_rate"]["resolution"]["count"] == 1
    assert by_group["l1"]["breach_rate"]["resolution"]["count"] == 0


def test_a_policy_without_olas_reports_as_before():
    from sla_sync.rules.metrics import report
    data = report([ticket()], make_policy(), at("2026-03-10 09:00"), at("2026-03-01 00:00"),
                  at("2026-03-10 00:00"))
    assert "olas" not in data and "ola_breach_rate" not in data["segments"][0]


def test_through_sla_sync_run_and_report_on_the_file_helpdesk(tmp_path):
    import csv
    import io
    import json

    from conftest import cli, record_dict, write_project
    late = rule("ola late", {"all": [cond("ola_breached", "is_true")]},
                act("add_tag", tag="ola_late"))
    fresh = record_dict(id="B", created_at=iso("2026-03-09 09:00"), updated_at=iso(
        "2026-03-09 09:00"), group="l2", assignee="bo", status="open",
        assignment_history=[held("2026-03-09 09:00", "l2", "bo")])
    config = write_project(tmp_path, [record_dict(id="A", **passed_on()), fresh], {
        "calendars": {"office": OFFICE}, "olas": OLAS, "rules": [late],
        "slas": [{"name": "standard", "targets": {"resolution": "24h"}}]})
    now = iso("2026-03-10 09:00")
    ran = cli("run", "--config", str(config), "--now", now)
    assert ran.exit_code == 0, ran.stderr
    records = json.loads((tmp_path / "helpdesk.json").read_text())["records"]
    assert [r["tags"] for r in records] == [["ola_late"], ["ola_late"]]

    def report(fmt: str) -> str:
        done = cli("report", "--config", str(config), "--now", now, "--since",
                   "2026-03-01", "--by", "team_at_breach", "--format", fmt)
        assert done.exit_code == 0, done.stderr
        return str(done.stdout)

    data = json.loads(report("json"))
    teams = {s["by"]["team_at_breach"]: s for s in data["segments"][1:]}
    # A: the SLA's breach (Saturday) and l2's under l2, l1's under l1; B: l2's OLA
    assert {team: (s["breach_rate"]["resolution"]["count"],
                   s["ola_breach_rate"]["l1"]["resolution"]["count"],
                   s["ola_breach_rate"]["l2"]["resolution"]["count"])
            for team, s in teams.items()} == {"l1": (0, 1, 0), "l2": (1, 0, 2)}
    rows = {row["segment"]: row for row in csv.DictReader(io.StringIO(report("csv")))}
    assert (rows["team_at_breach=l2"]["ola.l2.resolution.breach_count"],
            rows["team_at_breach=l2"]["ola.l2.resolution.of"],
            rows[""]["ola.l1.resolution.compliance_rate"]) == ("2", "2", "0.0")
    table = report("table")
    assert "by team_at_breach:" in table
    block = table[table.index("OLAs (team targets"):]
    assert [line.split() for line in block.splitlines()[3:9]] == [
        ["all", "l1", "resolution", "0.0", "1", "1"], ["l2", "resolution", "0.0", "2", "2"],
        ["l1", "l1", "resolution", "0.0", "1", "1"], ["l2", "resolution", "-", "0", "0"],
        ["l2", "l1", "resolution", "-", "0", "0"], ["l2", "resolution", "0.0", "2", "2"]]
    page = tmp_path / "report.html"
    done = cli("report", "--config", str(config), "--now", now, "--since", "2026-03-01",
               "--by", "team_at_breach", "--format", "html", "--out", str(page))
    assert done.exit_code == 0, done.stderr
    ola_table = page.read_text()
    ola_table = ola_table[ola_table.index("<h2>Team targets (OLAs)</h2>"):]
    assert "<tr><td>team_at_breach=l2</td><td>-</td><td>0</td><td>0.0</td><td>2</td></tr>" \
        in ola_table


def test_a_broken_ola_stops_the_run_before_any_write(tmp_path):
    from conftest import cli, record_dict, write_project
    broken = [OLAS[0], {**OLAS[1], "targets": {"resolution": "soon"}}]
    config = write_project(tmp_path, [record_dict(id="A", **passed_on())], {
        "calendars": {"office": OFFICE}, "olas": broken,
        "rules": [rule("late", {"all": [cond("ola_breached", "is_true")]},
                       act("add_tag", tag="ola_late"))]})
    before = (tmp_path / "helpdesk.json").read_bytes()
    result = cli("run", "--config", str(config), "--now", iso("2026-03-10 09:00"))
    assert result.exit_code == 2
    assert "olas[1].targets.resolution: 'soon' is not a duration" in result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "helpdesk.json").read_bytes() == before
    assert not (tmp_path / "state.db").exists()


def test_check_looks_up_the_names_an_ola_uses():
    from sla_sync.sync_check import names_used
    uses = [(u.path, u.value) for u in names_used(policy()) if u.path.startswith("olas")]
    assert uses == [("olas[0].when.value", "l1"), ("olas[1].when.value", "l2")]


def test_a_first_response_given_before_the_team_got_the_record_is_not_owed_by_it():
    from sla_sync.rules.ola import NOT_OWED
    both = [{**ola, "targets": {"first_response": "1h"}} for ola in OLAS]
    p = make_policy([{"name": "standard", "targets": {"resolution": "24h"}}],
                    calendars={"office": OFFICE}, olas=both)
    found = {s.ola.name: s for s in evaluate(ticket(first_response_at=iso(
        "2026-03-06 15:30")), p, at("2026-03-10 09:00")).olas}
    l1, l2 = found["l1"].clocks["first_response"], found["l2"].clocks["first_response"]
    assert l1.met and l1.elapsed_seconds == pytest.approx(HOUR / 2)
    assert l2.note == NOT_OWED and l2.target_seconds is None and not l2.met


def test_the_breach_audit_lists_the_ola_breaches_with_the_team_then():
    from sla_sync.rules.breaches import breaches
    rows = breaches([ticket()], policy(), at("2026-03-10 09:00"), at("2026-03-01 00:00"),
                    at("2026-03-10 00:00"))["breaches"]
    assert [(r["ola"], r["target"], r["breached_at"], r["team_at_breach"],
             r["clock_over_minutes"]) for r in rows] == [
        (None, "resolution", "2026-03-07T15:00:00+00:00", "l2", 48 * 60.0),
        ("l2", "resolution", "2026-03-09T11:00:00+00:00", "l2", 120.0),
        ("l1", "resolution", "2026-03-09T14:00:00+00:00", "l1", 60.0)]


def test_an_ola_picks_its_calendar_and_targets_by_a_record_field():
    by = [{"name": "l2", "when": cond("group", "equal_to", "l2"),
           "calendar_by": {"field": "tier", "calendars": {"gold": "24x7"}, "default": "office"},
           "targets": {"resolution": "2h"},
           "targets_by": {"field": "priority", "values": {"urgent": {"resolution": "1d"}}}}]
    p = make_policy([{"name": "standard", "targets": {"resolution": "24h"}}],
                    calendars={"office": OFFICE}, olas=by)
    gold = evaluate(ticket(tier="gold", priority="urgent"), p, at("2026-03-10 09:00")).olas[0]
    clock = gold.clocks["resolution"]
    # 24x7: Fri 16:00 to Mon 13:00 is 69h (this OLA pauses in no status)
    assert gold.calendar.name == "24x7" and clock.target_seconds == 24 * HOUR
    assert clock.elapsed_seconds == pytest.approx(69 * HOUR) and clock.breached
    plain = evaluate(ticket(), p, at("2026-03-10 09:00")).olas[0]
    assert plain.calendar.name == "office"
    assert plain.clocks["resolution"].elapsed_seconds == pytest.approx(5 * HOUR)
