"""sla-sync backtest: a record seen as it was at each sync, the real planner, the wake-up
skip proven equal to a replay of every step, the difference against a baseline, and a
command that writes nothing."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import ROOT, at, iso, make_policy, make_record, record_dict
from sla_sync.connector.file import FileHelpdesk
from sla_sync.rules.backtest import as_of, backtest, before_sla_sync, next_change
from sla_sync.rules.policy import Policy, load_policy
from sla_sync.sync import main

FIVE = timedelta(minutes=5)
EMPTY = hashlib.sha256(b"").hexdigest()


def vip_policy(target: str) -> Policy:
    """A warning tag at 75% of the first response (not once breached or met), escalation
    to tier2 at the breach; pending pauses the clock."""
    return make_policy(
        slas=[{"name": "vip", "targets": {"first_response": target},
               "pause_statuses": ["pending"]}],
        rules=[{"name": "vip-warning", "conditions": {"all": [
            {"name": "first_response_elapsed_pct", "operator": "greater_than_or_equal_to",
             "value": 75},
            {"name": "first_response_breached", "operator": "is_false"},
            {"name": "first_response_met", "operator": "is_false"}]},
                "actions": [{"name": "add_tag", "params": {"tag": "sla_warning"}}]},
               {"name": "breach-escalate",
                "conditions": {"name": "first_response_breached", "operator": "is_true"},
                "actions": [{"name": "escalate", "params": {"level": 1, "group": "tier2"}}]}])


def paused_ticket(**fields: Any) -> Any:
    """Created 09:00, pending 09:10-09:40, answered and solved at 10:45. Today it is solved,
    tagged sla_warning and escalated (what an earlier sla-sync wrote)."""
    data = dict(
        status="solved", tags=["sla_warning", "billing"], escalation_level=1,
        updated_at=iso("2026-03-02 10:45"), first_response_at=iso("2026-03-02 10:45"),
        solved_at=iso("2026-03-02 10:45"),
        status_history=[{"at": iso("2026-03-02 09:10"), "status": "pending"},
                        {"at": iso("2026-03-02 09:40"), "status": "open"},
                        {"at": iso("2026-03-02 10:45"), "status": "solved"}])
    data.update(fields)
    return make_record(**data)


def test_a_record_is_seen_as_it_was_then() -> None:
    record = paused_ticket()
    assert as_of(record, at("2026-03-02 08:59")) is None
    first = as_of(record, at("2026-03-02 09:05"))
    assert first is not None
    assert (first.status, first.status_history, first.first_response_at, first.solved_at,
            first.updated_at) == ("new", (), None, None, at("2026-03-02 09:00"))
    paused = as_of(record, at("2026-03-02 09:20"))
    assert paused is not None
    assert (paused.status, paused.updated_at) == ("pending", at("2026-03-02 09:10"))
    assert as_of(record, at("2026-03-02 10:45")) == record
    # what no history records stays as it is today
    assert paused.tags == record.tags and paused.priority == record.priority
    assert next_change(record, at("2026-03-02 09:10")) == at("2026-03-02 09:40")
    assert next_change(record, at("2026-03-02 10:45")) is None


def test_what_sla_sync_wrote_is_undone_from_its_audit() -> None:
    record = make_record(group="tier2", priority="high", tags=["vip", "SLA_Warning", "mine"],
                         escalation_level=2,
                         notes=[{"at": iso("2026-03-02 09:00"), "text": "by a person"},
                                {"at": iso("2026-03-02 10:00"), "text": "Escalated"}])
    audit = [("group", "support", "tier2"), ("tag:sla_warning", "absent", "present"),
             ("tag:mine", "present", "absent"), ("escalation_level", 0, 1),
             ("escalation_level", 1, 2), ("note", None, "Escalated"),
             ("group", "tier2", "tier3"), ("notify:oncall", None, "x")]
    before = before_sla_sync(record, audit)
    assert (before.group, before.priority, before.escalation_level) == ("support", "high", 0)
    assert before.tags == ("vip", "mine")
    assert [n.text for n in before.notes] == ["by a person"]


def test_the_replay_fires_where_the_clock_of_that_time_says() -> None:
    # Hand-worked: 10 minutes count before the pause, the clock runs again from 09:40;
    # 45 minutes (75% of 1h) are used at 10:15, the hour at 10:30, so the first sync that
    # sees it breached (elapsed above the target) is 10:35. The answer at 10:45 is late.
    # Baseline 2h: 75 of 120 minutes used at the answer: met, no warning, no escalation.
    data = backtest([paused_ticket()], vip_policy("1h"), at("2026-03-02 09:00"),
                    at("2026-03-02 12:00"), FIVE, [("tier",)], baseline=vip_policy("2h"))
    assert data["policy"]["events"] == [
        {"id": "T-1", "at": iso("2026-03-02 10:15"), "rules": ["vip-warning"],
         "change": {"add_tags": ["sla_warning"]}},
        {"id": "T-1", "at": iso("2026-03-02 10:35"), "rules": ["breach-escalate"],
         "change": {"set": {"group": "tier2"}, "escalation_level": 1}}]
    assert data["baseline"]["events"] == []
    assert data["flips"] == [
        {"id": "T-1", "what": "first_response", "baseline": "met", "policy": "breached"},
        {"id": "T-1", "what": "escalated", "baseline": "not escalated",
         "policy": "escalated (level 1)"},
        {"id": "T-1", "what": "warned", "baseline": "not warned", "policy": "warned"}]
    whole = data["policy"]["segments"][0]
    assert (whole["records"], whole["warned"], whole["escalated"], whole["writes"]) == \
        (1, 1, 1, 2)
    assert whole["breach_rate"]["first_response"] == {"rate": 1.0, "count": 1, "of": 1}
    assert data["baseline"]["segments"][0]["compliance_rate"]["first_response"] == 1.0
    diff = data["difference"][0]
    assert diff["compliance_rate"]["first_response"] == -1.0
    assert (diff["breaches"]["first_response"], diff["escalated"], diff["warned"]) == (1, 1, 1)
    assert [s["by"] for s in data["policy"]["segments"]] == [{}, {"tier": "standard"}]
    rules = {r["rule"]: r for r in data["policy"]["rules"]}
    assert rules["vip-warning"] == {"rule": "vip-warning", "fired": 1, "records": 1,
                                    "first": iso("2026-03-02 10:15"),
                                    "last": iso("2026-03-02 10:15")}


def test_todays_status_is_not_taken_for_the_past() -> None:
    # Read with today's status (solved) from creation, nothing would fire; read without
    # the pause, the warning would come at 09:45.
    events = backtest([paused_ticket()], vip_policy("1h"), at("2026-03-02 09:00"),
                      at("2026-03-02 12:00"), FIVE)["policy"]["events"]
    assert events[0]["at"] == iso("2026-03-02 10:15")


def test_a_step_off_the_grid_takes_the_next_sync() -> None:
    # Syncs at 08:52, 09:07, ...: 75% is reached at 10:15, first seen at 10:22; the breach
    # (after 10:30) at 10:37.
    data = backtest([paused_ticket()], vip_policy("1h"), at("2026-03-02 08:52"),
                    at("2026-03-02 12:00"), timedelta(minutes=15))
    assert [e["at"] for e in data["policy"]["events"]] == [iso("2026-03-02 10:22"),
                                                           iso("2026-03-02 10:37")]


def test_records_outside_the_window_are_not_replayed() -> None:
    early = paused_ticket(id="T-0", created_at=iso("2026-03-01 09:00"))
    data = backtest([early, paused_ticket()], vip_policy("1h"), at("2026-03-02 09:00"),
                    at("2026-03-02 12:00"), FIVE)
    assert data["records"] == 1
    assert {e["id"] for e in data["policy"]["events"]} == {"T-1"}


def scenario() -> list[Any]:
    """Records whose clocks pause, breach, are answered late or in time, with a status
    change the policy's hours_since_updated rule waits on."""
    return [
        paused_ticket(),
        make_record(id="T-2", tier="vip", created_at=iso("2026-03-02 08:30"),
                    updated_at=iso("2026-03-02 09:20"),
                    status_history=[{"at": iso("2026-03-02 09:20"), "status": "open"}]),
        make_record(id="T-3", priority="urgent", created_at=iso("2026-03-02 07:55"),
                    updated_at=iso("2026-03-02 13:00"), first_response_at=iso("2026-03-02 08:20"),
                    solved_at=iso("2026-03-02 13:00"), status="solved",
                    status_history=[{"at": iso("2026-03-02 08:20"), "status": "pending"},
                                    {"at": iso("2026-03-02 11:00"), "status": "open"},
                                    {"at": iso("2026-03-02 13:00"), "status": "solved"}]),
        make_record(id="L-1", kind="lead", source="campaign",
                    created_at=iso("2026-03-02 11:58"), updated_at=iso("2026-03-02 11:58")),
    ]


def rich_policy() -> Policy:
    """Business hours, an hours_since_updated rule, a notify and two passes (a tag that
    makes another rule fire)."""
    return make_policy(
        calendars={"office": {"timezone": "Europe/Berlin",
                              "week": {d: ["09:00-17:00"] for d in
                                       ("mon", "tue", "wed", "thu", "fri")}}},
        slas=[{"name": "urgent", "when": {"name": "priority", "operator": "equal_to",
                                          "value": "urgent"},
               "calendar": "office", "targets": {"first_response": "30m", "resolution": "2h"},
               "pause_statuses": ["pending"]},
              {"name": "standard", "targets": {"first_response": "1h", "resolution": "4h"},
               "pause_statuses": ["pending"]}],
        rules=[{"name": "warn", "conditions": {"all": [
            {"name": "first_response_elapsed_pct", "operator": "greater_than_or_equal_to",
             "value": 50},
            {"name": "first_response_met", "operator": "is_false"}]},
                "actions": [{"name": "add_tag", "params": {"tag": "sla_warning"}}]},
               {"name": "follow", "conditions": {"name": "tags", "operator": "contains",
                                                 "value": "sla_warning"},
                "actions": [{"name": "add_note", "params": {"text": "{id} warned"}}]},
               {"name": "stale", "conditions": {"all": [
                   {"name": "hours_since_updated", "operator": "greater_than", "value": 1.5},
                   {"name": "status", "operator": "equal_to", "value": "open"}]},
                "actions": [{"name": "set_priority", "params": {"priority": "high"}}]},
               {"name": "resolution-breach",
                "conditions": {"all": [
                    {"name": "resolution_breached", "operator": "is_true"},
                    {"name": "in_business_hours", "operator": "is_true"}]},
                "actions": [{"name": "escalate", "params": {"level": 2}},
                            {"name": "notify", "params": {"webhook": "oncall",
                                                          "text": "{id} breached"}}]}])


@pytest.mark.parametrize("step", [timedelta(minutes=5), timedelta(minutes=7)])
def test_skipping_to_wake_up_times_equals_a_replay_of_every_step(step: timedelta) -> None:
    policy = rich_policy()
    args = (scenario(), policy, at("2026-03-02 07:00"), at("2026-03-02 20:00"), step,
            [("sla",), ("priority", "tier")])
    fast, naive = backtest(*args, baseline=vip_policy("1h")), \
        backtest(*args, baseline=vip_policy("1h"), naive=True)
    for run in ("policy", "baseline"):
        assert fast[run]["evaluations"] < naive[run]["evaluations"]
        naive[run]["evaluations"] = fast[run]["evaluations"]
    assert fast == naive
    assert fast["policy"]["events"], "the scenario must make rules fire"
    assert {r["rule"] for r in fast["policy"]["rules"] if r["fired"]} == \
        {"warn", "follow", "stale", "resolution-breach"}


def test_the_demo_data_replays_alike_both_ways() -> None:
    records = [r for page in FileHelpdesk(ROOT / "examples" / "helpdesk.json").fetch(None)
               for r in page.records]
    policy = load_policy(ROOT / "policies" / "tiered-support.json")
    args = (records, policy, at("2026-03-01 06:00"), at("2026-03-02 12:00"),
            timedelta(minutes=10), [("tier",)])
    fast, naive = backtest(*args), backtest(*args, naive=True)
    assert fast["records"] > 30 and fast["policy"]["events"]
    assert fast["policy"]["evaluations"] * 5 < naive["policy"]["evaluations"]
    naive["policy"]["evaluations"] = fast["policy"]["evaluations"]
    assert fast == naive


# -- the command -------------------------------------------------------------------------------

def demo(tmp_path: Path) -> Path:
    """The demo config after one run, in a scratch folder."""
    for name in ("examples", "policies"):
        (tmp_path / name).symlink_to(ROOT / name)
    shutil.copy(ROOT / "config.example.yaml", tmp_path / "config.yaml")
    ran = CliRunner().invoke(main, ["run", "--config", str(tmp_path / "config.yaml"),
                                    "--now", "2026-03-02T12:00:00+00:00"])
    assert ran.exit_code == 0, ran.output
    return tmp_path / "config.yaml"


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def test_backtest_on_the_mirror_writes_nothing(tmp_path: Path) -> None:
    config = demo(tmp_path)
    before = digests(tmp_path / ".demo")
    assert {"state.db", "helpdesk.json"} <= set(before)
    result = CliRunner().invoke(main, [
        "backtest", "--config", str(config), "--policy", "policies/tiered-support.json",
        "--baseline", str(ROOT / "examples" / "authoring" / "support.json"),
        "--since", "2025-12-02T12:00:00+00:00", "--until", "2026-03-02T12:00:00+00:00",
        "--by", "tier", "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    after = digests(tmp_path / ".demo")
    # A reader of a WAL database leaves SQLite's companions (-shm, an empty -wal) beside it.
    assert after.get("state.db-wal", EMPTY) == EMPTY
    assert {k: v for k, v in after.items() if not k.endswith(("-shm", "-wal"))} == before
    data = json.loads(result.output)
    assert data["records"] == 200 and data["steps"] == 90 * 288 + 1
    assert data["flips"] and all({"id", "what", "baseline", "policy"} <= set(f)
                                 for f in data["flips"])
    assert [d["by"] for d in data["difference"]][:2] == [{}, {"tier": "gold"}]


def test_the_mirror_and_the_file_give_the_same_backtest(tmp_path: Path) -> None:
    config = demo(tmp_path)
    common = ["--policy", str(ROOT / "policies" / "tiered-support.json"), "--since",
              "2026-02-16", "--until", "2026-03-02T12:00:00+00:00", "--format", "json"]
    mirror = CliRunner().invoke(main, ["backtest", "--config", str(config), *common])
    # The demo run wrote tags and escalations into the mirror; the replay leaves the tags
    # the policy adds out and starts at level 0, so both read the same history.
    from_file = CliRunner().invoke(main, ["backtest", "--from",
                                          str(ROOT / "examples" / "helpdesk.json"), *common])
    assert mirror.exit_code == from_file.exit_code == 0
    assert json.loads(mirror.output)["policy"]["events"] == \
        json.loads(from_file.output)["policy"]["events"]


def test_the_table_and_the_html_page(tmp_path: Path) -> None:
    helpdesk = tmp_path / "helpdesk.json"
    helpdesk.write_text(json.dumps({"records": [record_dict(
        **{k: v for k, v in paused_ticket().to_dict().items()
           if k not in ("subject",)}, subject="<b>x</b>")]}))
    policy, baseline = tmp_path / "new.json", tmp_path / "old.json"
    for path, target in ((policy, "1h"), (baseline, "2h")):
        data = json.loads(json.dumps({"slas": [{"name": "vip", "targets": {
            "first_response": target}, "pause_statuses": ["pending"]}],
            "rules": [{"name": "breach-escalate", "conditions": {
                "name": "first_response_breached", "operator": "is_true"},
                "actions": [{"name": "escalate", "params": {"level": 1}}]}]}))
        path.write_text(json.dumps(data))
    args = ["backtest", "--from", str(helpdesk), "--policy", str(policy), "--baseline",
            str(baseline), "--since", "2026-03-02T09:00:00Z", "--until",
            "2026-03-02T12:00:00Z"]
    text = CliRunner().invoke(main, args).output
    assert f"  {iso('2026-03-02 10:35')}  T-1  breach-escalate: escalation level 1" in text
    assert "  T-1  first_response: met -> breached" in text
    assert "  T-1  escalated: not escalated -> escalated (level 1)" in text
    out = tmp_path / "bt.html"
    result = CliRunner().invoke(main, [*args, "--format", "html", "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<h2>Flips (2)</h2>" in page
    assert "<td>escalated (level 1)</td>" in page


@pytest.mark.parametrize("args, message", [
    (["--step", "0s"], "--step"),
    (["--step", "2bd"], "--step"),
    (["--since", "2026-03-03"], "is not before --until"),
    (["--by", "colour"], "unknown field 'colour'"),
])
def test_bad_options_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    base = {"--since": "2026-03-01", "--until": "2026-03-02"}
    for key, value in zip(args[::2], args[1::2], strict=True):
        base[key] = value
    flat = [x for pair in base.items() for x in pair]
    result = CliRunner().invoke(main, ["backtest", "--from",
                                       str(ROOT / "examples" / "helpdesk.json"), "--policy",
                                       str(ROOT / "policies" / "tiered-support.json"), *flat])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_no_state_file_says_to_run_first(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("connector: {type: file, path: h.json}\npolicy: p.json\n"
                      "state: state.db\n")
    result = CliRunner().invoke(main, ["backtest", "--config", str(config), "--policy",
                                       str(ROOT / "policies" / "tiered-support.json"),
                                       "--since", "2026-03-01"])
    assert result.exit_code == 2
    assert "no state file yet" in result.output
    assert not (tmp_path / "state.db").exists()


def test_a_broken_policy_names_its_path(tmp_path: Path) -> None:
    policy = tmp_path / "p.json"
    policy.write_text(json.dumps({"slas": [{"name": "x", "targets": {"first_response": "1q"}}]}))
    result = CliRunner().invoke(main, ["backtest", "--from",
                                       str(ROOT / "examples" / "helpdesk.json"),
                                       "--policy", str(policy), "--since", "2026-03-01"])
    assert result.exit_code == 2
    assert "slas[0].targets.first_response" in result.output


def test_a_record_whose_evaluation_fails_is_left_out_and_named(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from sla_sync.rules import backtest as module
    real = module.plan

    def failing(record: Any, *args: Any, **kwargs: Any) -> Any:
        if record.id == "T-2":
            raise ZeroDivisionError("boom")
        return real(record, *args, **kwargs)

    monkeypatch.setattr("sla_sync.rules.backtest.plan", failing)
    data = backtest(scenario()[:2], vip_policy("1h"), at("2026-03-02 08:00"),
                    at("2026-03-02 12:00"), FIVE)
    assert data["policy"]["failed"] == [{"id": "T-2", "reason":
                                         "evaluation failed: ZeroDivisionError('boom')"}]
    assert data["policy"]["segments"][0]["records"] == 1
