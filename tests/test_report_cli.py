"""`sla-sync report` and `sla-sync queue` through the CLI, on a tmp helpdesk after a real run."""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import act, cli, cond, iso, record_dict, rule, write_project
from sla_sync.connector.model import parse_instant
from sla_sync.sync_report import CSV_COLUMNS
from sla_sync.sync_state import NEVER

NOW = iso("2026-03-02 10:20")  # a Monday
POLICY = {
    "slas": [{"name": "vip", "when": cond("tier", "equal_to", "vip"),
              "targets": {"first_response": "30m", "resolution": "4h"}},
             {"name": "standard", "targets": {"first_response": "1h", "resolution": "8h"},
              "pause_statuses": ["pending"]}],
    "rules": [rule("breach", {"all": [cond("first_response_breached", "is_true")]},
                   act("add_tag", tag="sla_breach"))],
}


def ticket(id: str, created: str = "2026-03-02 09:00", **fields: Any) -> dict[str, Any]:
    return record_dict(id=id, created_at=iso(created),
                       updated_at=fields.pop("updated_at", iso(created)), **fields)


def solved(id: str, created: str, responded: str, done: str, **fields: Any) -> dict[str, Any]:
    return ticket(id, created, status="solved", first_response_at=iso(responded),
                  solved_at=iso(done), updated_at=iso(done),
                  status_history=[{"at": iso(responded), "status": "open"},
                                  {"at": iso(done), "status": "solved"}], **fields)


# At NOW: T-6 resolution breached 2h50m ago, T-1 first response breached 20m ago, T-3 has
# 10m left, T-4 (vip, first response breached at 10:00) 2h40m of resolution left; T-2 and
# T-5 are solved within both targets. T-6 was created on a Sunday, 30 min before midnight.
RECORDS = [
    ticket("T-1", subject="Overdue invoice"),
    solved("T-2", "2026-03-02 09:00", "2026-03-02 09:10", "2026-03-02 09:40"),
    ticket("T-3", "2026-03-02 10:00", tier="vip", group="vip-desk"),
    ticket("T-4", tier="vip", group="vip-desk", first_response_at=iso("2026-03-02 10:00"),
           escalation_level=1, updated_at=iso("2026-03-02 10:00")),
    solved("T-5", "2026-02-27 09:00", "2026-02-27 09:20", "2026-02-27 12:00", group="billing"),
    ticket("T-6", "2026-03-01 23:30", group="billing",
           first_response_at=iso("2026-03-02 00:10"), updated_at=iso("2026-03-02 00:10")),
]


def setup(tmp_path: Path, records: list[dict[str, Any]]) -> Path:
    return write_project(tmp_path, records, POLICY)


def figures(result: Any) -> dict[str, int]:
    found = re.search(r"read (\d+), evaluated \d+, changed \d+, writes (\d+)", result.output)
    assert found, result.output
    return {"reads": int(found[1]), "writes": int(found[2])}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """The helpdesk after one sync at NOW: the state file's mirror holds every record."""
    path = setup(tmp_path, RECORDS)
    assert cli("run", "--config", str(path), "--now", NOW).exit_code == 0
    return path


def report(config: Path, *args: str) -> Any:
    return cli("report", "--config", str(config), "--now", NOW, *args)


def data(config: Path, *args: str) -> dict[str, Any]:
    result = report(config, "--format", "json", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def prom(text: str) -> dict[str, list[Any]]:
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def queue(config: Path, *args: str) -> Any:
    return cli("queue", "--config", str(config), "--now", NOW, *args)


# -- the table ---------------------------------------------------------------------------

def test_the_table_fits_80_columns_and_reports_the_mirror_solved_records_included(
        config: Path) -> None:
    with sqlite3.connect(config.parent / "state.db") as db:
        retired = db.execute("SELECT count(*) FROM records WHERE wake_at = ?",
                             (NEVER,)).fetchone()[0]
    assert retired >= 1, "a solved record left evaluation but stays in the mirror"
    result = report(config)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    whole = next(line for line in lines if line.startswith("all "))
    assert whole.split()[1] == "6"
    assert data(config)["segments"][0]["resolution_time"]["count"] == 2  # T-2 and T-5


def test_by_tier_adds_a_heading_and_one_row_per_tier(config: Path) -> None:
    lines = report(config, "--by", "tier").stdout.splitlines()
    heading = lines.index("by tier:")
    assert lines[heading - 1].startswith("all ")
    assert [line.split()[:2] for line in lines[heading + 1:heading + 3]] == [
        ["standard", "4"], ["vip", "2"]]
    assert lines[heading + 3] == ""
    assert all(len(line) <= 80 for line in lines)


# -- json, csv, prometheus ---------------------------------------------------------------

def test_json_has_the_documented_contract(config: Path) -> None:
    out = data(config)
    assert {"since", "until", "segments", "trend"} <= set(out)
    whole = out["segments"][0]
    assert whole["by"] == {} and whole["records"] == 6
    times = {"count", "mean_minutes", "p50_minutes", "p90_minutes", "mean_clock_minutes"}
    assert set(whole["first_response_time"]) == times == set(whole["resolution_time"])
    assert set(whole["compliance_rate"]) == {"first_response", "resolution"}
    for target in ("first_response", "resolution"):
        assert {"rate", "count"} <= set(whole["breach_rate"][target])
    assert set(whole["average_handling_time"]) == {"count", "mean_minutes", "source"}
    assert set(whole["time_in_work_statuses"]) == {"count", "mean_minutes"}
    assert {"rate", "count"} <= set(whole["escalation_rate"])
    assert whole["escalation_rate"]["count"] == 0  # the policy never escalates
    assert whole["people_escalation_rate"]["count"] == 1  # T-4, at level 1 in the helpdesk
    buckets = out["trend"]["buckets"]
    assert len(buckets) == 31 and buckets[-1]["start"] == "2026-03-02T00:00:00+00:00"
    assert sum(b["records"] for b in buckets) == 6


def test_json_empty_figures_are_null(config: Path) -> None:
    result = report(config, "--format", "json", "--by", "tier")
    vip = json.loads(result.stdout)["segments"][2]
    assert vip["by"] == {"tier": "vip"}
    assert vip["resolution_time"] == {"count": 0, "mean_minutes": None, "p50_minutes": None,
                                      "p90_minutes": None, "mean_clock_minutes": None}
    assert vip["compliance_rate"]["resolution"] is None
    assert vip["average_handling_time"]["mean_minutes"] is None
    assert '"mean_minutes": null' in result.stdout


def test_csv_header_is_the_contract_with_one_row_per_segment(config: Path) -> None:
    rows = list(csv.reader(io.StringIO(report(config, "--format", "csv", "--by", "tier").stdout)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(r[0], r[1]) for r in rows[1:]] == [("", "6"), ("tier=standard", "4"),
                                                ("tier=vip", "2")]
    vip = dict(zip(CSV_COLUMNS, rows[3], strict=True))
    assert vip["resolution_time.mean_minutes"] == "" and vip["compliance_rate.resolution"] == ""
    assert vip["first_response_time.mean_minutes"] == "60.0"


def test_prometheus_parses_with_tier_labels_and_no_unlabeled_total(config: Path) -> None:
    metrics = prom(report(config, "--format", "prometheus", "--by", "tier").stdout)
    records = {s.labels["tier"]: s.value for s in metrics["sla_sync_window_records"]}
    # only the breakdown's series, so sum() is the whole window (6): no unlabeled total
    assert records == {"standard": 4, "vip": 2}
    assert {s.labels["by"] for s in metrics["sla_sync_window_records"]} == {"tier"}
    compliance = {(s.labels["tier"], s.labels["target"]): s.value
                  for s in metrics["sla_sync_compliance_ratio"]}
    assert compliance[("vip", "first_response")] == 0.0
    assert ("vip", "resolution") not in compliance  # nothing counted: no sample


def test_prometheus_base_units_one_metric_per_statistic(config: Path) -> None:
    metrics = prom(report(config, "--format", "prometheus").stdout)
    assert not any("minutes" in name or "stat" in sample.labels
                   for name, samples in metrics.items() for sample in samples)
    one = {name: samples[0].value for name, samples in metrics.items() if len(samples) == 1}
    # first responses: T-2 10 min, T-4 60, T-5 20, T-6 40 (23:30 -> 00:10)
    # mean 130/4 = 32.5 min = 1950 s; nearest rank p50 (2nd of 10 20 40 60) 20 min = 1200 s,
    # p90 (4th) 60 min = 3600 s; 24x7, no pauses: the clock mean is the same
    assert one["sla_sync_first_response_time_mean_seconds"] == 1950.0
    assert one["sla_sync_first_response_time_p50_seconds"] == 1200.0
    assert one["sla_sync_first_response_time_p90_seconds"] == 3600.0
    assert one["sla_sync_first_response_time_clock_mean_seconds"] == 1950.0
    assert one["sla_sync_window_records"] == 6
    clocks = {(s.labels["target"], s.labels["outcome"]): s.value
              for s in metrics["sla_sync_window_clocks"]}
    # FR: met T-2, T-5, T-6; breached T-1 (no answer, 80 min of 60), T-4 (vip, 60 of 30);
    # T-3 (20 of 30 min) is running within: not counted
    assert (clocks[("first_response", "met")], clocks[("first_response", "breached")]) == (
        3, 2)
    # counters: one sync, which read the 6 records
    assert [(s.name, s.labels, s.value) for s in metrics["sla_sync_runs"]] == [
        ("sla_sync_runs_total", {"status": "ok"}, 1.0)]
    assert metrics["sla_sync_reads"][0].name == "sla_sync_reads_total"
    assert metrics["sla_sync_reads"][0].value == 6


def test_prometheus_gauges_of_open_records_at_risk_and_breached_now(config: Path) -> None:
    # at 10:25: T-6 (resolution 8h from Sun 23:30: breached), T-1 (FR 1h from 09:00:
    # breached), standard; T-3 vip FR 30m from 10:00: 25 of 30 min = 83% >= 75%: at risk;
    # T-4 vip: resolution 85 of 240 min = 35%: neither
    text = cli("report", "--config", str(config), "--now", iso("2026-03-02 10:25"),
               "--format", "prometheus", "--by", "tier").stdout
    metrics = prom(text)
    assert {s.labels["tier"]: s.value for s in metrics["sla_sync_open_at_risk"]} == {
        "standard": 0, "vip": 1}
    assert {s.labels["tier"]: s.value for s in metrics["sla_sync_open_breached"]} == {
        "standard": 2, "vip": 0}
    whole = prom(cli("report", "--config", str(config), "--now", iso("2026-03-02 10:25"),
                     "--format", "prometheus").stdout)
    assert [(s.labels, s.value) for s in whole["sla_sync_open_at_risk"]] == [({}, 1)]
    assert [(s.labels, s.value) for s in whole["sla_sync_open_breached"]] == [({}, 2)]


def test_prometheus_last_run_gauges_are_those_of_the_last_non_dry_run(config: Path) -> None:
    second = cli("run", "--config", str(config), "--now", iso("2026-03-02 10:40"))
    dry = cli("run", "--config", str(config), "--now", iso("2026-03-02 11:30"), "--dry-run")
    assert figures(second) != figures(dry)
    metrics = prom(report(config, "--format", "prometheus").stdout)
    last = {name.removeprefix("sla_sync_last_run_"): samples[0].value
            for name, samples in metrics.items() if name.startswith("sla_sync_last_run_")}
    with sqlite3.connect(config.parent / "state.db") as db:
        finished, duration_ms = db.execute(
            "SELECT finished_at, duration_ms FROM runs WHERE id = 2").fetchone()
    assert last == {**figures(second), "errors": 0, "success": 1,
                    "duration_seconds": duration_ms / 1000,
                    "timestamp_seconds": parse_instant(finished, "finished_at").timestamp()}


def test_prometheus_records_without_a_tier_are_labeled_none(
        tmp_path: Path) -> None:
    config = setup(tmp_path, [ticket("A", tier=""), ticket("B", tier="vip")])
    cli("run", "--config", str(config), "--now", NOW)
    samples = prom(report(config, "--format", "prometheus", "--by", "tier").stdout)
    assert {s.labels["tier"]: s.value for s in samples["sla_sync_window_records"]} == {
        "(none)": 1, "vip": 1}


def test_prometheus_does_not_report_a_failed_run_as_clean(config: Path) -> None:
    (config.parent / "helpdesk.json").write_text('{"records": [')
    assert cli("run", "--config", str(config), "--now", iso("2026-03-02 10:40")).exit_code == 1
    metrics = prom(report(config, "--format", "prometheus").stdout)
    last = {name: samples[0].value for name, samples in metrics.items()}
    assert last["sla_sync_last_run_errors"] > 0 and last["sla_sync_last_run_success"] == 0


ESCALATING = {
    "slas": POLICY["slas"],
    "rules": [rule("warn", {"all": [cond("first_response_minutes_left", "less_than", 15),
                                    cond("first_response_breached", "is_false")]},
                   act("escalate", level=1)),
              rule("late", {"all": [cond("first_response_breached", "is_true")]},
                   act("escalate", level=2))],
}


def test_escalation_rate_reads_sla_syncs_audit_before_and_after_breach(tmp_path: Path) -> None:
    # standard 1h first response: A created 09:00 (due 10:00), B created 09:10 (due 10:10)
    config = write_project(tmp_path, [ticket("A"), ticket("B", "2026-03-02 09:10"),
                                      ticket("C", "2026-03-02 09:50", escalation_level=3)],
                           ESCALATING)
    # 09:50: A 10 min left -> warn (level 1), B 20 left, C 60 left: nothing
    # 10:05: A breached -> late (level 2); B 5 left -> warn (level 1)
    # 10:20: B breached -> late (level 2); C (a person's level 3, due 10:50): 30 left, nothing
    for now in ("2026-03-02 09:50", "2026-03-02 10:05", "2026-03-02 10:20"):
        assert cli("run", "--config", str(config), "--now", iso(now)).exit_code == 0
    whole = data(config)["segments"][0]
    # escalated by sla-sync: A, B of 3; four escalations: warn A 09:50 and B 10:05 before the
    # breach (A 10:00, B 10:10), late A 10:05 and B 10:20 after it
    assert whole["escalation_rate"] == {
        "rate": 0.6667, "count": 2, "of": 3, "escalations": 4, "before_breach": 2,
        "after_breach": 2, "by_rule": {"late": {"before_breach": 0, "after_breach": 2},
                                       "warn": {"before_breach": 2, "after_breach": 0}}}
    assert whole["people_escalation_rate"] == {"rate": 0.3333, "count": 1, "of": 3}  # C
    counters = prom(report(config, "--format", "prometheus").stdout)["sla_sync_escalations"]
    assert {(s.labels["rule"], s.labels["when"]): s.value for s in counters} == {
        ("late", "after_breach"): 2, ("warn", "before_breach"): 2}


# -- files -------------------------------------------------------------------------------

def test_out_writes_the_file_and_says_so_on_stderr(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.csv"
    result = report(config, "--format", "csv", "--out", str(out))
    assert result.exit_code == 0 and result.stdout == ""
    assert f"wrote {out} (6 records in the window)" in result.stderr
    assert out.read_text() == report(config, "--format", "csv").stdout


def test_the_html_page_is_self_contained(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert report(config, "--format", "html", "--out", str(out)).exit_code == 0
    page = out.read_text()
    urls = re.findall(r"""([\w:-]+)\s*=\s*["']?(https?://[^"'\s>]*)""", page)
    assert urls and set(urls) == {("xmlns", "http://www.w3.org/2000/svg")}
    assert page.count("://") == len(urls)
    assert not re.search(r"<link\b|<img\b|<iframe\b|<script\b[^>]*\bsrc|url\(", page, re.I)
    assert "T-1" in page and "Overdue invoice" in page


def test_from_a_file_needs_no_config_and_reports_skipped_records(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "dump.json").write_text(json.dumps({"records": [*RECORDS, {"kind": "ticket"}]}))
    (tmp_path / "policy.json").write_text(json.dumps(POLICY))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    monkeypatch.delenv("SLA_SYNC_CONFIG", raising=False)
    result = cli("report", "--from", str(tmp_path / "dump.json"), "--policy",
                 str(tmp_path / "policy.json"), "--now", NOW, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert "skipped: record #6: has no id" in result.stderr
    assert f"skipped 1 record(s) of {tmp_path / 'dump.json'}" in result.stderr
    assert json.loads(result.stdout)["segments"][0]["records"] == 6


# -- the window --------------------------------------------------------------------------

def test_since_and_until_with_an_offset_select_by_created_at(config: Path) -> None:
    # 23:30 UTC (T-6, inclusive) to 10:00 UTC (T-3, exclusive)
    out = data(config, "--since", "2026-03-02T00:30:00+01:00",
               "--until", "2026-03-02T11:00:00+01:00")
    assert out["since"] == "2026-03-01T23:30:00+00:00"
    assert out["segments"][0]["records"] == 4  # T-1, T-2, T-4, T-6


def test_a_bare_date_is_utc_midnight(config: Path) -> None:
    assert data(config, "--since", "2026-03-02")["segments"][0]["records"] == 4  # not T-6
    before = data(config, "--since", "2026-02-01", "--until", "2026-03-02")
    assert before["until"] == "2026-03-02T00:00:00+00:00"
    assert before["segments"][0]["records"] == 2  # T-5 and T-6


def test_since_after_until_is_a_usage_error(config: Path) -> None:
    result = report(config, "--since", "2026-03-03", "--until", "2026-03-02")
    assert result.exit_code == 2
    assert "--since" in result.stderr
    assert ("2026-03-03T00:00:00+00:00 is not before --until 2026-03-02T00:00:00+00:00"
            in result.stderr)


def test_by_assignee_is_a_breakdown(tmp_path: Path) -> None:
    config = setup(tmp_path, [ticket("A", assignee="ann"), ticket("B", assignee="ann"),
                              ticket("C")])
    assert cli("run", "--config", str(config), "--now", NOW).exit_code == 0
    segments = data(config, "--by", "assignee")["segments"]
    # A and B (ann), C unassigned: all three first responses breached at 10:00 (1h from 09:00)
    assert [(s["by"], s["records"], s["breach_rate"]["first_response"]["count"])
            for s in segments] == [({}, 3, 3), ({"assignee": ""}, 1, 1),
                                   ({"assignee": "ann"}, 2, 2)]


def test_aht_reads_worked_seconds_from_the_embedded_helpdesk(tmp_path: Path) -> None:
    # solved 09:00 -> 09:40 (10 min new, 30 open: 40 in work statuses); 12 min logged work
    config = setup(tmp_path, [
        solved("A", "2026-03-02 09:00", "2026-03-02 09:10", "2026-03-02 09:40",
               worked_seconds=720),
        solved("B", "2026-03-02 09:00", "2026-03-02 09:20", "2026-03-02 10:00",
               group="billing")])  # 20 new + 40 open = 60, no worked time
    assert cli("run", "--config", str(config), "--now", NOW).exit_code == 0
    segments = data(config, "--by", "group")["segments"]
    # the whole window: A's 12 min (B has none, so it is left out of the worked mean)
    assert segments[0]["average_handling_time"] == {"count": 1, "mean_minutes": 12.0,
                                                    "source": "worked_time"}
    assert segments[0]["time_in_work_statuses"] == {"count": 2, "mean_minutes": 50.0}
    assert [(s["by"], s["average_handling_time"]) for s in segments[1:]] == [
        ({"group": "billing"}, {"count": 1, "mean_minutes": 60.0, "source": "work_statuses"}),
        ({"group": "support"}, {"count": 1, "mean_minutes": 12.0, "source": "worked_time"})]
    lines = report(config, "--by", "group").stdout.splitlines()
    assert next(line for line in lines if "billing" in line).split()[7] == "1hs"
    assert next(line for line in lines if "support" in line).split()[7] == "12m"


def test_an_unknown_by_field_names_the_allowed_ones(config: Path) -> None:
    result = report(config, "--by", "team")
    assert result.exit_code == 2
    assert "unknown field 'team'" in result.stderr
    assert "tier, channel, group, source, kind, sla, priority" in result.stderr


def test_no_state_file_yet_says_to_run_first(tmp_path: Path) -> None:
    config = setup(tmp_path, RECORDS)
    result = report(config)
    assert result.exit_code == 2
    assert "no state file yet: run `sla-sync run` first" in result.stderr
    assert "--from FILE" in result.stderr
    assert not (tmp_path / "state.db").exists()


def test_an_empty_mirror_is_an_error(tmp_path: Path) -> None:
    config = setup(tmp_path, [])
    assert cli("run", "--config", str(config), "--now", NOW).exit_code == 0
    result = report(config)
    assert result.exit_code == 2 and result.stdout == ""
    assert "no records to report on: the record mirror is empty" in result.stderr


def test_an_empty_window_reports_zero_records_and_null_figures(config: Path) -> None:
    result = report(config, "--format", "json", "--since", "2025-01-01", "--until", "2025-01-08")
    assert result.exit_code == 0
    assert ("note: no record was created between 2025-01-01T00:00:00+00:00 and "
            "2025-01-08T00:00:00+00:00; every figure is empty") in result.stderr
    out = json.loads(result.stdout)
    whole = out["segments"][0]
    assert whole["records"] == 0
    assert whole["first_response_time"]["mean_minutes"] is None
    assert whole["compliance_rate"] == {"first_response": None, "resolution": None}
    assert whole["escalation_rate"]["rate"] is None
    assert [b["records"] for b in out["trend"]["buckets"]] == [0] * 7


def test_weekly_buckets_start_on_mondays(config: Path) -> None:
    out = data(config, "--every", "week", "--since", "2026-02-25")  # a Wednesday
    buckets = {b["start"][:10]: b["records"] for b in out["trend"]["buckets"]}
    assert all(date.fromisoformat(day).weekday() == 0 for day in buckets)
    assert buckets == {"2026-02-23": 2, "2026-03-02": 4}  # T-6, made on Sunday, is last week


# -- the queue ---------------------------------------------------------------------------

def test_the_queue_puts_breached_records_first_then_the_least_time_left(config: Path) -> None:
    result = queue(config)
    assert result.exit_code == 0
    rows = [line.split() for line in result.stdout.splitlines()[2:]]
    assert [(r[0], r[2], r[3]) for r in rows] == [
        ("T-6", "RES", "-2h50m"), ("T-1", "FR", "-20m"), ("T-3", "FR", "10m"),
        ("T-4", "RES", "2h40m")]


def test_the_queue_limit_keeps_the_first_rows(config: Path) -> None:
    lines = queue(config, "--limit", "2").stdout.splitlines()
    assert [line.split()[0] for line in lines[2:]] == ["T-6", "T-1"]


def test_the_queue_by_group_has_a_heading_and_a_limit_per_group(config: Path) -> None:
    lines = queue(config, "--by", "group", "--limit", "1").stdout.splitlines()
    headings = [i for i, line in enumerate(lines) if line.startswith("group = ")]
    assert [lines[i] for i in headings] == ["group = billing", "group = support",
                                            "group = vip-desk"]
    assert [lines[i + 3].split()[0] for i in headings] == ["T-6", "T-1", "T-3"]
    assert len(lines) == 3 * 4 + 2  # heading, header, rule, row; blank between groups


def test_the_queue_json_is_one_object_per_line(config: Path) -> None:
    rows = [json.loads(line) for line in queue(config, "--json").stdout.splitlines()]
    assert [r["id"] for r in rows] == ["T-6", "T-1", "T-3", "T-4"]
    assert {"id", "target", "minutes_left", "breached", "elapsed_pct", "due_at"} <= set(rows[0])
    assert {k: rows[1][k] for k in ("target", "minutes_left", "breached", "elapsed_pct",
                                    "due_at")} == {
        "target": "first_response", "minutes_left": -20.0, "breached": True,
        "elapsed_pct": 133.3, "due_at": "2026-03-02T10:00:00+00:00"}
    assert rows[2]["breached"] is False and rows[2]["minutes_left"] == 10.0
