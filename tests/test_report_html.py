"""The HTML report in a real browser: headless Chromium, from disk, with the network off."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import act, cond, iso, record_dict, rule
from sla_sync.sync import main

NOW = iso("2026-03-02 10:20")
CHARTS = ("compliance-chart", "trend-chart", "distribution-chart")
POLICY = {
    "slas": [{"name": "standard", "targets": {"first_response": "1h", "resolution": "8h"}}],
    "rules": [rule("breach", {"all": [cond("first_response_breached", "is_true")]},
                   act("add_tag", tag="sla_breach"))],
}


def solved(id: str, day: str, responded: str, done: str) -> dict[str, Any]:
    return record_dict(id=id, status="solved", created_at=iso(f"{day} 09:00"),
                       first_response_at=iso(f"{day} {responded}"),
                       solved_at=iso(f"{day} {done}"), updated_at=iso(f"{day} {done}"),
                       status_history=[{"at": iso(f"{day} {responded}"), "status": "open"},
                                       {"at": iso(f"{day} {done}"), "status": "solved"}])


RECORDS = [
    record_dict(id="T-1", subject="Overdue invoice"),  # first response breached 20m ago
    record_dict(id="T-2", created_at=iso("2026-03-02 10:00"), updated_at=iso("2026-03-02 10:00")),
    solved("T-3", "2026-03-02", "09:10", "09:40"),
    solved("T-4", "2026-02-27", "10:30", "12:00"),  # first response breached, then met
]

BROWSER = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9"]


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    browser = shutil.which("chromium")
    if browser is None:
        reason = "chromium is not on PATH: the HTML report is not checked in a browser"
        print(reason)
        pytest.skip(reason)
    profile = tmp / "profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run([browser, *BROWSER, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("html")
    (tmp / "helpdesk.json").write_text(json.dumps({"records": RECORDS}))
    (tmp / "policy.json").write_text(json.dumps(POLICY))
    (tmp / "config.yaml").write_text("connector: {type: file, path: helpdesk.json}\n"
                                     "policy: policy.json\nstate: state.db\n")
    runner = CliRunner()
    config = str(tmp / "config.yaml")
    assert runner.invoke(main, ["run", "--config", config, "--now", NOW]).exit_code == 0
    out = tmp / "report.html"
    result = runner.invoke(main, ["report", "--config", config, "--now", NOW, "--since",
                                  "2026-02-23", "--format", "html", "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    return out


class Dom(HTMLParser):
    """The attributes of <body> and of each chart, and the at-risk table's cells."""

    def __init__(self, text: str):
        super().__init__()
        self.body: dict[str, str | None] = {}
        self.charts: dict[str | None, dict[str, str | None]] = {}
        self.risk: list[list[str]] = []
        self.in_risk = self.in_cell = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "body":
            self.body = found
        elif tag == "svg" and found.get("class") == "chart":
            self.charts[found.get("id")] = found
        elif tag == "table":
            self.in_risk = found.get("class") == "risk"
        elif tag == "tr" and self.in_risk:
            self.risk.append([])
        elif tag == "td" and self.in_risk:
            self.in_cell = True
            self.risk[-1].append("")

    def handle_endtag(self, tag: str) -> None:
        self.in_cell = self.in_cell and tag != "td"
        self.in_risk = self.in_risk and tag != "table"

    def handle_data(self, data: str) -> None:
        if self.in_cell:
            self.risk[-1][-1] += data


@pytest.fixture(scope="module")
def dom(page: Path) -> Dom:
    done = chromium(page.parent, "--dump-dom", page.as_uri())
    assert done.returncode == 0 and "<body" in done.stdout, done.stderr[-2000:]
    return Dom(done.stdout)


def test_every_chart_is_laid_out_with_marks(dom: Dom) -> None:
    assert dom.body.get("data-charts-drawn") == "3"
    assert set(dom.charts) == set(CHARTS)
    for chart in CHARTS:
        assert int(dom.charts[chart].get("data-marks-drawn") or 0) > 0, chart


def test_the_at_risk_table_lists_the_breached_record_first(dom: Dom) -> None:
    rows = [row for row in dom.risk if row]
    assert [row[0] for row in rows] == ["T-1", "T-2"]
    assert rows[0][1:5] == ["Overdue invoice", "standard", "first response",
                            "breached 20m ago"]
    assert rows[1][4] == "40m left"


def test_a_screenshot_of_the_page_is_a_real_png(page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    done = chromium(tmp_path, "--window-size=1000,1400", f"--screenshot={shot}", page.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 5000


# -- the monthly review: previous period, goal, agents, links, time zone ---------------------

def reviewed(id: str, day: str, responded: str, done: str, worked: int,
             assignee: str) -> dict[str, Any]:
    return {**solved(id, day, responded, done), "worked_seconds": worked, "assignee": assignee,
            "url": f"https://help.example.com/tickets/{id}"}


# standard 1h first response, 8h resolution; each created 09:00 UTC
REVIEWED = [
    # this period, 2026-02-23 to 2026-03-02: C-1 met both; C-2 breached both (FR due 10:00,
    # answered 10:30; RES due 17:00, solved 19:00)
    reviewed("C-1", "2026-02-24", "09:30", "12:00", 1200, "ana"),
    reviewed("C-2", "2026-02-25", "10:30", "19:00", 2400, "ben"),
    # the previous period of equal length, 2026-02-16 to 2026-02-23: both met both
    reviewed("P-1", "2026-02-17", "09:10", "09:40", 600, "ana"),
    reviewed("P-2", "2026-02-18", "09:20", "11:00", 1800, "ana"),
]


@pytest.fixture(scope="module")
def review(tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp = tmp_path_factory.mktemp("review")
    (tmp / "helpdesk.json").write_text(json.dumps({"records": REVIEWED}))
    (tmp / "policy.json").write_text(json.dumps(POLICY))
    (tmp / "config.yaml").write_text("connector: {type: file, path: helpdesk.json}\n"
                                     "policy: policy.json\nstate: state.db\n")
    config = str(tmp / "config.yaml")
    assert CliRunner().invoke(main, ["run", "--config", config, "--now", NOW]).exit_code == 0
    result = CliRunner().invoke(main, [
        "report", "--config", config, "--now", NOW, "--since", "2026-02-23T00:00:00Z",
        "--until", "2026-03-02T00:00:00Z", "--format", "html", "--goal", "0.9",
        "--timezone", "Europe/Berlin"])
    assert result.exit_code == 0, result.stderr
    return str(result.stdout)


def test_headline_figures_compare_with_the_previous_period_of_equal_length(review: str) -> None:
    import re
    rows = {key: (now, before, change) for key, now, before, change in re.findall(
        r'<tr data-figure="([^"]+)" data-now="[^"]*" data-before="[^"]*"><td>[^<]*</td>'
        r'<td>([^<]*)</td><td>([^<]*)</td><td class="[^"]*">([^<]*)</td>', review)}
    assert rows == {
        "compliance.first_response": ("50.0%", "100.0%", "-50.0 pts"),  # 1 of 2; 2 of 2
        "compliance.resolution": ("50.0%", "100.0%", "-50.0 pts"),
        "breaches.first_response": ("1", "0", "+1"),  # C-2
        "breaches.resolution": ("1", "0", "+1"),
        "escalation_rate": ("0.0%", "0.0%", "±0.0 pts"),  # the policy never escalates
        "aht_minutes": ("30m", "20m", "+10m"),  # (20 + 40) / 2; (10 + 30) / 2 worked
    }
    # worse: compliance down, breaches up, AHT up
    assert review.count('<td class="worse">') == 5


def test_the_review_draws_the_goal_links_records_and_shows_times_in_the_zone(
        review: str) -> None:
    assert 'class="goal"' in review and 'data-goal="0.9"' in review
    # 2026-02-23 00:00 UTC is 01:00 in Berlin (CET); C-2's first response breached 10:00 UTC
    assert "records created 2026-02-23 01:00 to 2026-03-02 01:00 (Europe/Berlin)" in review
    assert "previous period: records created 2026-02-16 01:00 to 2026-02-23 01:00" in \
        review.lower()
    assert '<a href="https://help.example.com/tickets/C-2">C-2</a></td><td>' in review
    assert "<td>2026-02-25 11:00</td>" in review
    agents = review.split('<table class="agents">')[1].split("</table>")[0]
    # ana: C-1 (met both); ben: C-2 (breached both), by the assignee at the breach
    assert "<tr><td>ana</td><td>1</td>" in agents and "<tr><td>ben</td><td>1</td>" in agents
    assert agents.count("<tr><td>") == 2


def test_an_unknown_time_zone_is_a_usage_error_naming_the_option(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["report", "--from", "x.json", "--policy", "p.json",
                                       "--format", "html", "--timezone", "Europe/Berln"])
    assert result.exit_code == 2
    assert "--timezone" in result.stderr and "'Europe/Berln'" in result.stderr


def test_a_previous_period_without_records_shows_no_figures_not_zeros(tmp_path: Path) -> None:
    (tmp_path / "helpdesk.json").write_text(json.dumps({"records": REVIEWED[:2]}))
    (tmp_path / "policy.json").write_text(json.dumps(POLICY))
    result = CliRunner().invoke(main, [
        "report", "--from", str(tmp_path / "helpdesk.json"), "--policy",
        str(tmp_path / "policy.json"), "--now", NOW, "--since", "2026-02-23T00:00:00Z",
        "--until", "2026-03-02T00:00:00Z", "--format", "html"])
    assert result.exit_code == 0, result.stderr
    assert ('<tr data-figure="breaches.first_response" data-now="1" data-before="">'
            '<td>First response breaches</td><td>1</td><td>-</td><td class="">-</td></tr>'
            ) in result.stdout
