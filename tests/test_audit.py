"""Audit and undo (issue 12 item 6): `sla-sync audit` lists what sla-sync changed, by record,
run and time, as a table or JSON; `sla-sync revert RUN` puts back what a run changed where
the helpdesk still holds sla-sync's value, leaves (and lists) a person's later edit, goes
through the journalled write path, and a second revert writes nothing."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import act, at, cli, cond, iso, record_dict, rule
from sla_sync.connector.base import OutcomeUnknown
from sla_sync.connector.file import FileHelpdesk
from sla_sync.sync_audit import revert
from sla_sync.sync_state import APPLICATION_ID, MIGRATIONS, StateStore

POLICY = {
    "slas": [{"name": "std", "targets": {"first_response": "1h"}}],
    "rules": [
        rule("breach", cond("first_response_breached", "is_true"),
             act("add_tag", tag="sla_breach"), act("remove_tag", tag="waiting"),
             act("escalate", level=2, group="tier2", assignee="bob",
                 note="{id}: overdue, escalated")),
        # sets what makes it false: the ledger alone would fire it again after a revert
        rule("never-low", cond("priority", "equal_to", "low"),
             act("set_priority", priority="normal")),
    ],
}
T0 = "2026-03-02 12:00"


def project(folder: Path) -> Path:
    records = [
        record_dict(id="T-1", created_at=iso("2026-03-02 09:00"),
                    updated_at=iso("2026-03-02 09:00"), tags=["waiting", "printer"]),
        record_dict(id="T-2", created_at=iso("2026-03-02 09:30"),
                    updated_at=iso("2026-03-02 09:30"), priority="low",
                    first_response_at=iso("2026-03-02 09:40")),  # answered: never breaches
        record_dict(id="T-3", created_at=iso("2026-03-02 11:30"),
                    updated_at=iso("2026-03-02 11:30")),  # breaches at 12:30
    ]
    (folder / "helpdesk.json").write_text(json.dumps({"records": records}))
    (folder / "policy.json").write_text(json.dumps(POLICY))
    config = folder / "config.yaml"
    config.write_text("connector: {type: file, path: helpdesk.json}\npolicy: policy.json\n"
                      "state: state.db\nfirst_run: act\n")
    return config


def sync(config: Path, when: str) -> Any:
    result = cli("run", "--config", str(config), "--now", iso(when))
    assert result.exit_code == 0, result.output
    return result


def desk(folder: Path) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in json.loads((folder / "helpdesk.json").read_text())["records"]}


def edit(folder: Path, record_id: str, when: str, **fields: Any) -> None:
    """A person's edit in the helpdesk: new values and a new updated_at."""
    data = json.loads((folder / "helpdesk.json").read_text())
    for record in data["records"]:
        if record["id"] == record_id:
            record.update(fields, updated_at=iso(when))
    (folder / "helpdesk.json").write_text(json.dumps(data))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def synced(tmp_path: Path) -> Path:
    """Run 1 at 12:00 writes T-1 (escalation, tags, note) and T-2 (priority); run 2 at 12:40
    writes T-3."""
    config = project(tmp_path)
    sync(config, T0)
    sync(config, "2026-03-02 12:40")
    return config


def audit(config: Path, *args: str) -> Any:
    result = cli("audit", "--config", str(config), *args)
    assert result.exit_code == 0, result.output
    return result


def test_audit_lists_every_value_written_with_its_before_and_after(synced: Path) -> None:
    table = audit(synced).stdout.splitlines()
    assert table[0].split() == ["run", "at", "record", "rule", "action", "field", "before",
                                "after"]
    assert [line.split(None, 7) for line in table[1:]] == [
        [run, iso(when), record, rule_name, action, slot, before, after]
        for run, when, record, rule_name, action, slot, before, after in [
            ("1", T0, "T-1", "breach", "add_tag", "tag:sla_breach", "absent", "present"),
            ("1", T0, "T-1", "breach", "remove_tag", "tag:waiting", "present", "absent"),
            ("1", T0, "T-1", "breach", "escalate", "escalation_level", "0", "2"),
            ("1", T0, "T-1", "breach", "escalate", "group", "support", "tier2"),
            ("1", T0, "T-1", "breach", "escalate", "assignee", '""', "bob"),
            ("1", T0, "T-1", "breach", "escalate", "note", "-", "T-1: overdue, escalated"),
            ("1", T0, "T-2", "never-low", "set_priority", "priority", "low", "normal"),
            ("2", "2026-03-02 12:40", "T-3", "breach", "add_tag", "tag:sla_breach", "absent",
             "present"),
            ("2", "2026-03-02 12:40", "T-3", "breach", "escalate", "escalation_level", "0",
             "2"),
            ("2", "2026-03-02 12:40", "T-3", "breach", "escalate", "group", "support",
             "tier2"),
            ("2", "2026-03-02 12:40", "T-3", "breach", "escalate", "assignee", '""', "bob"),
            ("2", "2026-03-02 12:40", "T-3", "breach", "escalate", "note", "-",
             "T-3: overdue, escalated"),
        ]]


def test_audit_filters_by_record_run_and_time_and_prints_json_lines(synced: Path) -> None:
    lines = [json.loads(x) for x in audit(synced, "--json").stdout.splitlines()]
    assert len(lines) == 12 and [x["id"] for x in lines] == sorted(x["id"] for x in lines)
    assert set(lines[0]) == {"id", "run", "at", "record", "rule", "action", "field", "before",
                             "after", "kind", "reverts"}
    t2 = [json.loads(x) for x in audit(synced, "--record", "T-2", "--json").stdout.splitlines()]
    assert t2 == [{"id": t2[0]["id"], "run": 1, "at": iso(T0), "record": "T-2",
                   "rule": "never-low", "action": "set_priority", "field": "priority",
                   "before": "low", "after": "normal", "kind": "sync", "reverts": None}]
    run2 = [json.loads(x) for x in audit(synced, "--run", "2", "--json").stdout.splitlines()]
    assert {x["record"] for x in run2} == {"T-3"} and len(run2) == 5
    since = [json.loads(x) for x in
             audit(synced, "--since", "2026-03-02T12:30:00+00:00", "--json").stdout.splitlines()]
    assert since == run2
    assert [json.loads(x) for x in audit(synced, "--since", "2026-03-03",
                                         "--json").stdout.splitlines()] == []
    assert audit(synced, "--record", "T-9").stderr == "no changes recorded that match\n"


def test_audit_reads_the_state_file_without_writing_it(synced: Path) -> None:
    state = synced.parent / "state.db"
    state.chmod(0o400)  # a reader needs no write access (a sync would refuse the file)
    try:
        before = sha(state)
        assert "T-1" in audit(synced).stdout
        assert sha(state) == before
    finally:
        state.chmod(0o600)


def test_audit_refuses_a_bad_date_and_a_missing_state_file(tmp_path: Path) -> None:
    config = project(tmp_path)
    missing = cli("audit", "--config", str(config))
    assert missing.exit_code == 2 and "no state file yet" in missing.stderr
    bad = cli("audit", "--config", str(config), "--since", "yesterday")
    assert bad.exit_code == 2 and "--since" in bad.stderr


def test_revert_restores_a_runs_writes_and_leaves_a_persons_later_edit_alone(synced: Path):
    folder = synced.parent
    # After run 1, a person moves T-1 to another group (not back to support).
    edit(folder, "T-1", "2026-03-02 12:50", group="billing")
    before = sha(folder / "helpdesk.json"), sha(folder / "state.db")
    dry = cli("revert", "1", "--config", str(synced), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "left alone: record 'T-1': group: run 1 set 'tier2', it is now 'billing' " \
           "(changed since)" in dry.stdout
    assert "would put back: record 'T-2': priority: 'normal' -> 'low'" in dry.stdout
    assert "(dry run: nothing written): would put back 5 values on 2 records" in dry.stderr
    # a dry run writes neither the helpdesk nor the state file
    assert (sha(folder / "helpdesk.json"), sha(folder / "state.db")) == before

    result = cli("revert", "1", "--config", str(synced))
    assert result.exit_code == 0, result.output
    records = desk(folder)
    t1 = records["T-1"]
    assert sorted(t1["tags"]) == ["printer", "waiting"]  # added removed, removed added back
    assert (t1["escalation_level"], t1["assignee"], t1["group"]) == (0, "", "billing")
    assert [n["text"] for n in t1["notes"]] == ["T-1: overdue, escalated"]  # notes stay
    assert records["T-2"]["priority"] == "low"
    assert records["T-3"]["tags"] == ["sla_breach"]  # run 2's writes are not run 1's
    out = result.stdout
    assert "left alone: record 'T-1': group" in out
    assert "kept: record 'T-1': note by rule 'breach' ('T-1: overdue, escalated') stays " \
           "(internal notes are never deleted)" in out
    assert "restored: record 'T-2': priority: 'normal' -> 'low'" in out
    assert result.stderr.strip().endswith(
        "revert of run 1 (run 3): put back 5 values on 2 records; 1 left alone "
        "(changed since), 1 notes and notifications kept, 0 errors")

    reverts = [json.loads(x) for x in audit(synced, "--run", "3", "--json").stdout.splitlines()]
    originals = {x["id"]: x for x in
                 (json.loads(y) for y in audit(synced, "--run", "1", "--json").stdout.splitlines())}
    assert {x["kind"] for x in reverts} == {"revert"} and len(reverts) == 5
    for row in reverts:
        undone = originals[row["reverts"]]
        assert (row["record"], row["field"], row["before"], row["after"]) == \
            (undone["record"], undone["field"], undone["after"], undone["before"])

    # A second revert of the same run writes nothing, and says so.
    settled = sha(folder / "helpdesk.json")
    second = cli("revert", "1", "--config", str(synced))
    assert second.exit_code == 0, second.output
    assert sha(folder / "helpdesk.json") == settled
    assert "put back 0 values on 0 records" in second.stderr
    assert "nothing to do: record 'T-2': priority was reverted already" in second.stdout
    # And the next sync does not do again what was reverted (T-2 is low once more).
    after = sync(synced, "2026-03-02 13:00")
    assert "writes 0" in after.stdout
    assert desk(folder)["T-2"]["priority"] == "low"


def test_a_value_a_person_already_put_back_needs_nothing(synced: Path) -> None:
    edit(synced.parent, "T-2", "2026-03-02 12:50", priority="low")
    result = cli("revert", "1", "--config", str(synced))
    assert "nothing to do: record 'T-2': priority is already 'low' again" in result.stdout


def test_revert_lists_notifications_it_cannot_unsend(tmp_path: Path, local_server: Any):
    config = project(tmp_path)
    policy = json.loads((tmp_path / "policy.json").read_text())
    policy["rules"][0]["actions"].append(act("notify", webhook="oncall", text="{id}"))
    (tmp_path / "policy.json").write_text(json.dumps(policy))
    config.write_text(config.read_text() + f"webhooks: {{oncall: {{url: '{local_server.url}'}}}}\n")
    sync(config, T0)
    assert len(local_server.requests) == 1
    result = cli("revert", "1", "--config", str(config))
    assert "kept: record 'T-1': notification to 'oncall' by rule 'breach' was sent (a " \
           "notification cannot be unsent)" in result.stdout
    assert len(local_server.requests) == 1


def test_runs_that_cannot_be_reverted_are_refused(synced: Path) -> None:
    missing = cli("revert", "9", "--config", str(synced))
    assert missing.exit_code == 2 and "no run 9 in" in missing.stderr
    assert cli("revert", "1", "--config", str(synced)).exit_code == 0
    of_revert = cli("revert", "3", "--config", str(synced))
    assert of_revert.exit_code == 2 and "run 3 is a revert, not a sync" in of_revert.stderr
    dry = cli("run", "--config", str(synced), "--now", iso("2026-03-02 13:00"), "--dry-run")
    assert dry.exit_code == 0
    refused = cli("revert", "4", "--config", str(synced))
    assert refused.exit_code == 2 and "run 4 was a dry run: it wrote nothing" in refused.stderr


def test_a_revert_whose_answer_was_lost_is_settled_by_reading_back_never_sent_twice(
        synced: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The revert's write lands in the helpdesk but its answer is lost: it stays journalled;
    the next revert reads the record back, sees the write and records it, and sends nothing."""
    folder = synced.parent
    real_apply = FileHelpdesk.apply
    sent: list[str] = []

    def lost_answer(self: FileHelpdesk, change: Any, now: datetime) -> Any:
        sent.append(change.record_id)
        written = real_apply(self, change, now)
        if change.record_id == "T-2":
            raise OutcomeUnknown("the answer never came", record_id=change.record_id)
        return written

    monkeypatch.setattr(FileHelpdesk, "apply", lost_answer)
    with StateStore(folder / "state.db") as store:
        report = revert(FileHelpdesk(folder / "helpdesk.json"), store, 1, at("2026-03-02 13:00"))
    # read back at once, the write shows: recorded, not resent
    assert sent == ["T-1", "T-2"] and report.writes == 2 and report.failures == []
    assert desk(folder)["T-2"]["priority"] == "low"

    sent.clear()
    with StateStore(folder / "state.db") as store:
        again = revert(FileHelpdesk(folder / "helpdesk.json"), store, 1, at("2026-03-02 13:05"))
        assert store.pending() == []
    assert sent == [] and again.writes == 0


def test_a_crash_after_the_revert_was_sent_is_settled_by_the_next_sync(
        synced: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed between sending the revert and recording it: the journal entry stays; the next
    sync reads the record back, records the revert's audit rows, and writes nothing again."""
    folder = synced.parent
    real_commit = StateStore.commit

    def crash(self: StateStore, run_id: int, results: Any, *args: Any, **kwargs: Any) -> None:
        results = list(results)
        if any(outcome.get("writes") and outcome["writes"][0].get("kind") == "revert"
               for _, outcome, _ in results):
            raise KeyboardInterrupt  # stands in for the kill: nothing after the send runs
        real_commit(self, run_id, results, *args, **kwargs)

    monkeypatch.setattr(StateStore, "commit", crash)
    with pytest.raises(KeyboardInterrupt), StateStore(folder / "state.db") as store:
        revert(FileHelpdesk(folder / "helpdesk.json"), store, 1, at("2026-03-02 13:00"))
    monkeypatch.setattr(StateStore, "commit", real_commit)
    assert desk(folder)["T-1"]["escalation_level"] == 0  # the first record was sent
    assert desk(folder)["T-2"]["priority"] == "normal"  # the second was not
    with StateStore(folder / "state.db") as store:
        assert [c.record_id for c, _, _ in store.pending()] == ["T-1"]
    settled = sha(folder / "helpdesk.json")
    after = sync(synced, "2026-03-02 13:05")
    assert "a write left pending by run 3 had gone through" in after.stderr
    assert sha(folder / "helpdesk.json") == settled and "writes 0" in after.stdout
    reverted = [json.loads(x) for x in audit(synced, "--run", "3", "--json").stdout.splitlines()]
    assert {x["record"] for x in reverted} == {"T-1"}
    # T-2, never sent, is put back by a second revert, T-1 is not sent again.
    second = cli("revert", "1", "--config", str(synced))
    assert second.exit_code == 0, second.output
    assert "restored: record 'T-2': priority: 'normal' -> 'low'" in second.stdout
    assert "restored: record 'T-1'" not in second.stdout


def test_an_older_state_file_gains_the_audit_columns_after_a_backup(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    db = sqlite3.connect(state)
    for migration in MIGRATIONS[:5]:
        db.executescript(f"BEGIN; {migration}; COMMIT;")
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.execute("PRAGMA user_version = 5")
    db.execute("INSERT INTO audit (run_id, at, record_id, rule, action, field, before, after)"
               " VALUES (1, '2026-03-02T12:00:00+00:00', 'T-1', 'r', 'add_tag', 'tag:x',"
               " '\"absent\"', '\"present\"')")
    db.commit()
    db.close()
    with StateStore(state) as store:
        assert store.backup == tmp_path / "state.db.bak-schema5"
        [row] = store.audit()
        assert (row["kind"], row["reverts"], row["before"]) == ("sync", None, "absent")
