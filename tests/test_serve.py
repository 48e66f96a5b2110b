"""`sla-sync serve` in a real browser: headless Chromium against the live page, the server a
real process on 127.0.0.1 reading the state file a sync writes meanwhile."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import cli, iso, record_dict, write_project
from test_report_html import BROWSER, Dom
from test_report_html import chromium as chromium_offline

#: The report test's browser flags, but with 127.0.0.1 reachable: its host rules map every
#: name and address (IP literals included) to nothing, so the served page would not load.
LOOPBACK = [f"{flag}, EXCLUDE 127.0.0.1" if flag.startswith("--host-resolver-rules=") else flag
            for flag in BROWSER]


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium (skipped where it is not on PATH, as in test_report_html) with
    only 127.0.0.1 reachable."""
    import test_report_html
    saved = test_report_html.BROWSER
    test_report_html.BROWSER = LOOPBACK
    try:
        return chromium_offline(tmp, *args)
    finally:
        test_report_html.BROWSER = saved

NOW = iso("2026-03-02 10:20")
POLICY = {"slas": [{"name": "standard", "targets": {"first_response": "1h",
                                                     "resolution": "8h"}}], "rules": []}


def ticket(rid: str, created: str, **fields: Any) -> dict[str, Any]:
    return record_dict(id=rid, created_at=iso(created), updated_at=iso(created),
                       url=f"https://help.example.com/tickets/{rid}", **fields)


class Server:
    """`sla-sync -v serve` as a process; its stderr read line by line (the port it took,
    then one debug line per request)."""

    def __init__(self, config: Path, *args: str, env: dict[str, str] | None = None):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sla_sync", "-v", "serve", "--config", str(config),
             "--now", NOW, *args], stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})})
        assert self.process.stderr is not None
        self.lines = self.process.stderr
        for line in self.lines:
            found = re.search(r"on http://[^:]+:(\d+)/", line)
            if found:
                self.port = int(found[1])
                break
        else:
            raise AssertionError(f"serve did not start: exit {self.process.wait()}")

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_for(self, text: str) -> None:
        for line in self.lines:
            if text in line:
                return
        raise AssertionError(f"serve ended before logging {text!r}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    # at NOW: A created 09:10 (70 of 60 min: breached), B 10:10 (10 of 60: 17%)
    config = write_project(tmp_path, [ticket("A", "2026-03-02 09:10", subject="Printer"),
                                      ticket("B", "2026-03-02 10:10")], POLICY)
    assert cli("run", "--config", str(config), "--now", NOW).exit_code == 0
    return config


@pytest.fixture
def server(project: Path) -> Iterator[Server]:
    running = Server(project, "--listen", "127.0.0.1:0", "--refresh", "5")
    yield running
    running.stop()


def test_the_live_page_shows_a_record_that_becomes_at_risk_without_a_reload(
        project: Path, server: Server, tmp_path: Path) -> None:
    result: list[subprocess.CompletedProcess[str]] = []
    # virtual time: the page's 5 s timers run at once, each request is real: 60 requests of
    # page time, ample for the sync to land between two of them
    browsing = threading.Thread(target=lambda: result.append(chromium(
        tmp_path, "--virtual-time-budget=300000", "--dump-dom", server.url())))
    browsing.start()
    seen = threading.Event()

    def end_the_wait() -> None:
        # A browser that ends (or hangs) before its first request would leave wait_for
        # reading the server's log forever: stopping the server ends it, as a failure.
        browsing.join(timeout=180)
        if not seen.is_set():
            server.process.kill()

    threading.Thread(target=end_the_wait, daemon=True).start()
    try:
        server.wait_for("GET /api/live 200")  # the page has its first data: A and B
    except AssertionError as ended:
        # the server's own account first: it may have died by itself, not by the watcher
        raise AssertionError(
            f"{ended} (server exit {server.process.poll()}); chromium: "
            + (f"exited {result[0].returncode}: {result[0].stderr[-2000:]}" if result
               else "had not finished in 180 s")) from None
    seen.set()
    # Hold the server while the sync runs: the page's next request waits for its answer,
    # and a page waiting on the network does not move its virtual time on.
    server.process.send_signal(signal.SIGSTOP)
    try:
        # C, created 09:30 (50 of 60 min used: 83%, at risk), entered at 10:15 (after the
        # cursor), reaches the state file
        desk = project.parent / "helpdesk.json"
        records = json.loads(desk.read_text())["records"]
        late = {**ticket("C", "2026-03-02 09:30"), "updated_at": iso("2026-03-02 10:15")}
        desk.write_text(json.dumps({"records": [*records, late]}))
        assert cli("run", "--config", str(project), "--now", NOW).exit_code == 0
    finally:
        server.process.send_signal(signal.SIGCONT)
    browsing.join(timeout=120)
    assert result, "chromium did not finish"
    done = result[0]
    assert done.returncode == 0, done.stderr[-2000:]
    dom = Dom(done.stdout)
    assert dom.body.get("data-first-ids") == "A B"  # breached first, then by time left
    assert dom.body.get("data-ids") == "A C B", "C did not appear without a reload"
    assert int(dom.body.get("data-updates") or 0) > 1
    page = done.stdout
    assert 'href="https://help.example.com/tickets/C"' in page  # linked to the helpdesk
    assert re.search(r'<tr data-id="C" class="risk">', page)
    assert re.search(r'<tr data-id="A" class="breached">', page)


def test_metrics_are_served_for_scraping(server: Server) -> None:
    with urllib.request.urlopen(server.url("/metrics"), timeout=30) as answer:
        text = answer.read().decode()
    # at NOW: A breached, B at 17%: one open record breached, none at risk
    assert "sla_sync_open_breached 1.0" in text and "sla_sync_open_at_risk 0.0" in text
    assert "sla_sync_runs_total{status=\"ok\"} 1.0" in text


def test_beyond_loopback_a_request_without_the_token_is_refused(
        project: Path, tmp_path: Path) -> None:
    running = Server(project, "--listen", "0.0.0.0:0",
                     env={"SLA_SYNC_SERVE_TOKEN": "s3cret-token"})
    try:
        refused = chromium(tmp_path, "--dump-dom", running.url())
        assert refused.returncode == 0, refused.stderr[-2000:]
        assert "401: this sla-sync view needs its token" in refused.stdout
        assert "s3cret-token" not in refused.stdout
        with pytest.raises(urllib.error.HTTPError) as wrong:
            urllib.request.urlopen(urllib.request.Request(
                running.url("/api/live"), headers={"Authorization": "Bearer nope"}),
                timeout=30)
        assert wrong.value.code == 401
        shown = chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom",
                         running.url("/?token=s3cret-token"))
        assert int(Dom(shown.stdout).body.get("data-updates") or 0) >= 1
        with urllib.request.urlopen(urllib.request.Request(
                running.url("/metrics"), headers={"Authorization": "Bearer s3cret-token"}),
                timeout=30) as answer:
            assert answer.status == 200
    finally:
        running.stop()


def test_beyond_loopback_without_a_token_it_does_not_start(project: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.delenv("SLA_SYNC_SERVE_TOKEN", raising=False)
    result = cli("serve", "--config", str(project), "--listen", "0.0.0.0:8484")
    assert result.exit_code == 2
    assert "beyond loopback the view needs a token: set SLA_SYNC_SERVE_TOKEN" in result.stderr


def test_metrics_carry_the_same_metric_names_as_the_reports_prometheus_text(
        tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from sla_sync.rules.policy import load_policy
    from sla_sync.sync_serve import LiveView
    from test_report_cli import ESCALATING
    config = write_project(tmp_path, [ticket("A", "2026-03-02 09:00"),
                                      ticket("B", "2026-03-02 09:10")], ESCALATING)
    # 09:50: A 10 min left -> warn; 10:05: A breached -> late, B 5 left -> warn
    for now in ("2026-03-02 09:50", "2026-03-02 10:05"):
        assert cli("run", "--config", str(config), "--now", iso(now)).exit_code == 0
    reported = cli("report", "--config", str(config), "--now", NOW, "--format", "prometheus")
    assert reported.exit_code == 0, reported.stderr
    served = LiveView(tmp_path / "state.db", load_policy(tmp_path / "policy.json"),
                      0.95).metrics(datetime.fromisoformat(NOW))

    def families(text: str) -> dict[str, list[Any]]:
        return {f.name: f.samples for f in text_string_to_metric_families(text)}

    assert set(families(served)) == set(families(reported.stdout))
    escalations = families(served)["sla_sync_escalations"]
    assert {(s.labels["rule"], s.labels["when"]): s.value for s in escalations} == {
        ("late", "after_breach"): 1, ("warn", "before_breach"): 2}
