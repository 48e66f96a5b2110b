"""Wake-up times: when time alone can next change a record's evaluation, and the index of the
state file that evaluates only the records read or due."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

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
from sla_sync.connector.file import FileHelpdesk
from sla_sync.rules.engine import evaluate
from sla_sync.rules.wake import Wakes, policy_digest
from sla_sync.sync_run import run_sync
from sla_sync.sync_state import APPLICATION_ID, MIGRATIONS, NEVER, StateStore

NOW = at("2026-03-02 09:20")  # a Monday
OFFICE = {"timezone": "UTC", "week": {"mon": ["09:00-17:00"], "tue": ["09:00-17:00"]}}


def wake(policy: Any, now: datetime = NOW, **record: Any) -> datetime | None:
    evaluation = evaluate(make_record(**record), policy, now)
    return Wakes(policy).of(evaluation)


def test_an_elapsed_percentage_wakes_a_second_before_it_is_reached() -> None:
    policy = make_policy(rules=[rule("warn", cond("first_response_elapsed_pct",
                                                  "greater_than_or_equal_to", 75),
                                     act("add_tag", tag="w"))])
    # created 09:00, 1h target: 75% at 09:45
    assert wake(policy) == at("2026-03-02 09:45") - timedelta(seconds=1)


def test_minutes_left_and_breach_thresholds_take_the_earliest() -> None:
    policy = make_policy(rules=[
        rule("soon", cond("resolution_minutes_left", "less_than", 60), act("add_tag", tag="s")),
        rule("late", cond("first_response_breached", "is_true"), act("add_tag", tag="b"))])
    # first response breaches at 10:00; resolution (8h) has 60 minutes left at 16:00
    assert wake(policy) == at("2026-03-02 10:00") - timedelta(seconds=1)
    assert wake(policy, at("2026-03-02 10:30")) == at("2026-03-02 16:00") - timedelta(seconds=1)


def test_business_time_thresholds_follow_the_calendar() -> None:
    policy = make_policy(slas=[{"name": "office", "calendar": "office",
                                "targets": {"first_response": "4h"}}],
                         rules=[rule("late", cond("first_response_breached", "is_true"),
                                     act("add_tag", tag="b"))],
                         calendars={"office": OFFICE})
    # opened Monday 15:00: 2 business hours on Monday, the other 2 on Tuesday by 11:00
    got = wake(policy, at("2026-03-02 15:30"), created_at=iso("2026-03-02 15:00"),
               updated_at=iso("2026-03-02 15:00"))
    assert got == at("2026-03-03 11:00") - timedelta(seconds=1)


def test_in_business_hours_wakes_at_the_next_opening_or_closing() -> None:
    policy = make_policy(slas=[{"name": "office", "calendar": "office",
                                "targets": {"resolution": "8d"}}],
                         rules=[rule("open", cond("in_business_hours", "is_true"),
                                     act("add_tag", tag="o"))],
                         calendars={"office": OFFICE})
    assert wake(policy, at("2026-03-02 08:00")) == at("2026-03-02 09:00") - timedelta(seconds=1)
    assert wake(policy, at("2026-03-02 12:00")) == at("2026-03-02 17:00") - timedelta(seconds=1)


def test_hours_since_thresholds_wake_until_they_are_behind() -> None:
    policy = make_policy(rules=[rule("stale", cond("hours_since_updated", "greater_than", 2),
                                     act("add_tag", tag="s"))])
    solved = {"status": "solved", "first_response_at": iso("2026-03-02 09:05"),
              "solved_at": iso("2026-03-02 09:10"), "updated_at": iso("2026-03-02 09:10")}
    assert wake(policy, **solved) == at("2026-03-02 11:10") - timedelta(seconds=1)
    assert wake(policy, at("2026-03-02 11:30"), **solved) is None


def test_a_solved_record_under_clock_rules_never_wakes() -> None:
    policy = make_policy(rules=[rule("late", cond("resolution_breached", "is_true"),
                                     act("add_tag", tag="b"))])
    assert wake(policy, status="solved", solved_at=iso("2026-03-02 09:10"),
                updated_at=iso("2026-03-02 09:10")) is None


def test_a_response_stamped_after_now_wakes_when_it_happens() -> None:
    policy = make_policy(rules=[rule("met", cond("first_response_met", "is_true"),
                                     act("add_tag", tag="m"))])
    assert wake(policy, first_response_at=iso("2026-03-02 09:40")) == \
        at("2026-03-02 09:40") - timedelta(seconds=1)


def test_the_digest_follows_the_policy() -> None:
    one = make_policy(rules=[rule("a", cond("status", "equal_to", "open"),
                                  act("add_tag", tag="x"))])
    same = make_policy(rules=[rule("a", cond("status", "equal_to", "open"),
                                   act("add_tag", tag="x"))])
    other = make_policy(rules=[rule("a", cond("status", "equal_to", "new"),
                                    act("add_tag", tag="x"))])
    assert policy_digest(one) == policy_digest(same) != policy_digest(other)


# -- the index in the state file -----------------------------------------------------------

WARN = {"slas": [{"name": "standard", "targets": {"first_response": "1h"}}],
        "rules": [rule("warn", cond("first_response_elapsed_pct", "greater_than_or_equal_to",
                                    75), act("add_tag", tag="sla_warning"))]}


def parts(tmp_path: Path) -> tuple[FileHelpdesk, Any, StateStore]:
    from sla_sync.rules.policy import load_policy
    return (FileHelpdesk(tmp_path / "helpdesk.json"), load_policy(tmp_path / "policy.json"),
            StateStore(tmp_path / "state.db"))


def test_a_sync_evaluates_what_was_read_and_what_is_due(tmp_path: Path) -> None:
    records = [record_dict(id="T-1"), record_dict(id="T-2", created_at=iso("2026-03-02 09:10"),
                                                  updated_at=iso("2026-03-02 09:10"))]
    write_project(tmp_path, records, WARN)
    connector, policy, store = parts(tmp_path)
    assert run_sync(connector, policy, store, at("2026-03-02 09:20")).evaluated == 2
    assert run_sync(connector, policy, store, at("2026-03-02 09:30")).evaluated == 0
    due = run_sync(connector, policy, store, at("2026-03-02 09:50"))  # T-1 at 75%
    assert (due.evaluated, due.writes) == (1, 1)
    # T-2 at 75%; T-1 is read again as written, unchanged: its wake-up time still holds
    later = run_sync(connector, policy, store, at("2026-03-02 10:30"))
    assert (later.read, later.evaluated, later.writes, later.full) == (1, 1, 1, False)
    edited = json.loads((tmp_path / "helpdesk.json").read_text())
    edited["records"][0].update(assignee="ann", updated_at=iso("2026-03-02 10:40"))
    (tmp_path / "helpdesk.json").write_text(json.dumps(edited))
    assert run_sync(connector, policy, store, at("2026-03-02 10:45")).evaluated == 1


def test_an_earlier_now_a_changed_policy_or_full_evaluates_everything(tmp_path: Path) -> None:
    write_project(tmp_path, [record_dict(id=f"T-{n}") for n in range(3)], WARN)
    connector, policy, store = parts(tmp_path)
    run_sync(connector, policy, store, at("2026-03-02 09:20"))
    assert run_sync(connector, policy, store, at("2026-03-02 09:25")).evaluated == 0
    assert run_sync(connector, policy, store, at("2026-03-02 09:21")).evaluated == 3
    assert run_sync(connector, policy, store, at("2026-03-02 09:22")).evaluated == 0
    assert run_sync(connector, policy, store, at("2026-03-02 09:23"), full=True).evaluated == 3
    changed = json.loads((tmp_path / "policy.json").read_text())
    changed["rules"][0]["conditions"]["value"] = 50
    (tmp_path / "policy.json").write_text(json.dumps(changed))
    connector, policy, store = parts(tmp_path)
    report = run_sync(connector, policy, store, at("2026-03-02 09:31"))
    assert (report.evaluated, report.writes) == (3, 3)  # 50% of the hour by 09:30
    reread = run_sync(connector, policy, store, at("2026-03-02 09:32"))  # read as written
    assert (reread.read, reread.evaluated) == (3, 0)


def test_run_full_on_the_command_line(tmp_path: Path) -> None:
    config = write_project(tmp_path, [record_dict(id="T-1")], WARN)
    assert cli("run", "--config", str(config), "--now", iso("2026-03-02 09:20")).exit_code == 0
    quiet = cli("run", "--config", str(config), "--now", iso("2026-03-02 09:21"))
    assert "evaluated 0" in quiet.output
    full = cli("run", "--config", str(config), "--now", iso("2026-03-02 09:22"), "--full")
    assert full.exit_code == 0 and "evaluated 1" in full.output
    refused = cli("run", "--config", str(config), "--every", "5m", "--full")
    assert refused.exit_code == 2 and "--full" in refused.output


def test_schema_5_turns_retired_records_into_never_and_backs_up_first(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    db = sqlite3.connect(state, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    for number in range(4):
        db.executescript(f"BEGIN; {MIGRATIONS[number]}; COMMIT;")
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.execute("PRAGMA user_version = 4")
    for record_id, retired in (("T-1", "2026-03-01T00:00:00+00:00"), ("T-2", None)):
        db.execute("INSERT INTO records (id, kind, status, updated_at, data, retired_version)"
                   " VALUES (?, 'ticket', 'open', '2026-03-01T00:00:00+00:00', ?, ?)",
                   (record_id, json.dumps(record_dict(id=record_id)), retired))
    db.close()
    with StateStore(state) as store:
        assert store.backup == tmp_path / "state.db.bak-schema4"
        rows = dict(store.db.execute("SELECT id, wake_at FROM records").fetchall())
        assert rows == {"T-1": NEVER, "T-2": None}
        columns = [row[1] for row in store.db.execute("PRAGMA table_info(records)")]
        assert "retired_version" not in columns
    with sqlite3.connect(tmp_path / "state.db.bak-schema4") as backup:
        assert backup.execute("SELECT count(retired_version) FROM records").fetchone()[0] == 1
