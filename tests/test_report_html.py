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
