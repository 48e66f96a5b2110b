"""`sla-sync serve`: a read-only live view of the state file, and /metrics for scraping.

The page (`/`) asks `/api/live` every few seconds and redraws itself: the open records by
time left (at risk marked), the clocks that breached today (UTC), compliance by group
against the goal, the daily breach trend, each record linked to the helpdesk. `/metrics`
is `report --format prometheus` of the same window. Every request opens the state file
read-only (`StateStore(readonly=True)`, SQLite in WAL mode), so `run --every` keeps
writing the same file meanwhile; nothing here writes.

It listens on 127.0.0.1 by default. Another address needs a token in the environment
(SLA_SYNC_SERVE_TOKEN), checked on every request (`Authorization: Bearer TOKEN`, or
`?token=TOKEN` for a browser); where a token is set it is checked on loopback too.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import sys
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import click

from sla_sync.connector.http import is_loopback
from sla_sync.connector.model import format_instant
from sla_sync.rules.breaches import breaches
from sla_sync.rules.metrics import escalation_totals, queue, report
from sla_sync.rules.policy import Policy, PolicyError, load_policy
from sla_sync.sync_config import ConfigError, load_config, locate
from sla_sync.sync_options import instant_option
from sla_sync.sync_report import AT_RISK_PCT, label, prometheus
from sla_sync.sync_state import StateError, StateStore

log = logging.getLogger("sla_sync.serve")
TOKEN_ENV = "SLA_SYNC_SERVE_TOKEN"
#: Seconds between the page's requests for fresh data.
REFRESH_SECONDS = 5


def parse_listen(value: str) -> tuple[str, int]:
    """HOST:PORT (an IPv6 host in brackets); a usage error naming --listen otherwise."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(f"{value!r} is not HOST:PORT", param_hint="--listen")
    return host, int(port)


class LiveView:
    """What the page and /metrics show, read from the state file at each request."""

    def __init__(self, state: Path, policy: Policy, goal: float, days: int = 14,
                 now: datetime | None = None, refresh: int = REFRESH_SECONDS):
        self.state, self.policy, self.goal, self.days = state, policy, goal, days
        self.fixed_now, self.refresh = now, refresh

    def now(self) -> datetime:
        return self.fixed_now or datetime.now(UTC)

    def _read(self) -> tuple[list[Any], dict[str, Any], dict[str, list[dict[str, Any]]],
                             dict[str, float] | None, dict[str, Any]]:
        with StateStore(self.state, readonly=True) as store:
            audit: dict[str, list[dict[str, Any]]] = {}
            for row in store.audit():
                audit.setdefault(row["record_id"], []).append(row)
            return (store.all_records(), store.sla_marks(), audit, store.last_run(),
                    store.run_totals())

    def live(self, now: datetime) -> dict[str, Any]:
        records, marks, audit, last_run, _ = self._read()
        urls = {r.id: r.url for r in records}
        rows = [{**row, "url": urls.get(row["id"], ""),
                 "at_risk": not row["breached"] and row["elapsed_pct"] >= AT_RISK_PCT}
                for row in queue(records, self.policy, now, marks)]
        today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        found = breaches(records, self.policy, now, today, now + timedelta(seconds=1),
                         "day", marks, audit)["breaches"]
        data = report(records, self.policy, now, now - timedelta(days=self.days),
                      now + timedelta(seconds=1), [("group",)], "day", marks=marks,
                      audit=audit)
        return {
            "now": format_instant(now), "goal": self.goal, "at_risk_pct": AT_RISK_PCT,
            "refresh_seconds": self.refresh, "last_run": last_run, "queue": rows,
            "breaches_today": found,
            "compliance": [{"segment": label(s["by"]), "records": s["records"],
                            **s["compliance_rate"]} for s in data["segments"]],
            "trend": data["trend"]["buckets"]}

    def metrics(self, now: datetime) -> str:
        records, marks, audit, last_run, totals = self._read()
        data = report(records, self.policy, now, now - timedelta(days=30), now, marks=marks,
                      audit=audit)
        return prometheus(data, last_run, queue(records, self.policy, now, marks),
                          {**totals, "escalations": escalation_totals(
                              records, self.policy, now, audit, marks)})


def make_handler(view: LiveView, token: str | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "sla-sync"

        def log_message(self, format: str, *args: Any) -> None:
            # the path only: a query may hold the token
            status = args[1] if len(args) > 1 else ""
            log.debug(f"{self.command} {urlsplit(self.path).path} {status}",
                      extra={"event": "serve"})

        def _allowed(self) -> bool:
            if token is None:
                return True
            given = parse_qs(urlsplit(self.path).query).get("token", [""])[0]
            header = self.headers.get("Authorization", "")
            if header.startswith("Bearer "):
                given = header.removeprefix("Bearer ")
            return hmac.compare_digest(given.encode(), token.encode())

        def _send(self, status: int, body: str, kind: str) -> None:
            data = body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Security-Policy", PAGE_CSP)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
            if not self._allowed():
                self._send(401, "401: this sla-sync view needs its token "
                           f"(?token=... or Authorization: Bearer ...; {TOKEN_ENV})\n",
                           "text/plain; charset=utf-8")
                return
            path = urlsplit(self.path).path
            now = view.now()
            try:
                if path == "/":
                    self._send(200, PAGE, "text/html; charset=utf-8")
                elif path == "/api/live":
                    self._send(200, json.dumps(view.live(now), ensure_ascii=False),
                               "application/json")
                elif path == "/metrics":
                    self._send(200, view.metrics(now), "text/plain; version=0.0.4")
                else:
                    self._send(404, "404: not here (/, /api/live, /metrics)\n",
                               "text/plain; charset=utf-8")
            except StateError as exc:
                self._send(503, f"503: {exc}\n", "text/plain; charset=utf-8")

        def do_POST(self) -> None:  # noqa: N802
            self._send(405, "405: this view is read-only\n", "text/plain; charset=utf-8")

    return Handler


@click.command()
@click.option("--config", "config_path", metavar="FILE",
              help="Configuration file (default: $SLA_SYNC_CONFIG, else ./config.yaml).")
@click.option("--listen", default="127.0.0.1:8484", show_default=True, metavar="HOST:PORT",
              help=f"Where to listen; beyond loopback {TOKEN_ENV} must hold a token.")
@click.option("--goal", type=click.FloatRange(0, 1), default=0.95, show_default=True,
              help="The compliance goal the page draws against (0..1).")
@click.option("--refresh", type=click.IntRange(1, 3600), default=REFRESH_SECONDS,
              show_default=True, help="Seconds between the page's updates.")
@click.option("--now", "now_text", metavar="ISO",
              help="Show the state as of this fixed instant (demos, tests).")
def serve(config_path: str | None, listen: str, goal: float, refresh: int,
          now_text: str | None) -> None:
    """A read-only live page of the state file (at-risk queue, breaches today, compliance
    against the goal, trend) and /metrics, while `run --every` keeps syncing."""
    host, port = parse_listen(listen)
    fixed = instant_option(now_text, "--now")
    token = os.environ.get(TOKEN_ENV) or None
    if token is None and not is_loopback(host):
        raise click.UsageError(f"--listen {listen}: beyond loopback the view needs a token: "
                               f"set {TOKEN_ENV}")
    try:
        config = load_config(locate(config_path))
        policy = load_policy(config.policy)
    except (ConfigError, PolicyError) as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    try:
        server = ThreadingHTTPServer((host, port), make_handler(
            LiveView(config.state, policy, goal, now=fixed, refresh=refresh), token))
    except OSError as exc:
        click.echo(f"--listen {listen}: cannot listen there ({exc.strerror})", err=True)
        sys.exit(2)
    server.daemon_threads = True
    click.echo(f"serving {config.state} on http://{host}:{server.server_address[1]}/ "
               f"(read-only; Ctrl-C stops)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


PAGE_CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
            "connect-src 'self'")

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>sla-sync live</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.05em; margin-top: 1.5em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { padding: 3px 8px; border-bottom: 1px solid #ddd; text-align: left; }
.breached { color: #b3261e; font-weight: 600; } .risk { color: #a15c00; font-weight: 600; }
.below { color: #b3261e; } .note { color: #666; font-size: 0.85em; }
</style></head>
<body data-updates="0">
<h1>sla-sync live <span id="now" class="note"></span></h1>
<p class="note" id="status">loading...</p>
<h2>Open records by time left</h2>
<table id="queue"><thead><tr><th>id</th><th>subject</th><th>SLA</th><th>target</th>
<th>left</th><th>used</th><th>group</th><th>assignee</th></tr></thead><tbody></tbody></table>
<h2>Breached today (UTC)</h2>
<table id="breaches"><thead><tr><th>id</th><th>SLA</th><th>target</th><th>breached at</th>
<th>over</th><th>team/assignee then</th></tr></thead><tbody></tbody></table>
<h2>Compliance by group against the goal <span id="goal" class="note"></span></h2>
<table id="compliance"><thead><tr><th>segment</th><th>records</th><th>first response</th>
<th>resolution</th></tr></thead><tbody></tbody></table>
<h2>Breach trend by day of creation</h2>
<table id="trend"><thead><tr><th>day</th><th>records</th><th>first response</th>
<th>resolution</th></tr></thead><tbody></tbody></table>
<script>
(function () {
  var token = new URLSearchParams(location.search).get("token");
  var query = token ? "?token=" + encodeURIComponent(token) : "";
  function mins(m) {
    var a = Math.abs(Math.round(m)), d = Math.floor(a / 1440), h = Math.floor(a % 1440 / 60);
    var text = d ? d + "d" + h + "h" : (h ? h + "h" + (a % 60) + "m" : (a % 60) + "m");
    return (m < 0 ? "-" : "") + text;
  }
  function pct(v) { return v === null ? "-" : (100 * v).toFixed(1) + "%"; }
  function cell(row, text, css, href) {
    var td = document.createElement("td");
    if (href) {
      var a = document.createElement("a"); a.href = href; a.textContent = text;
      td.appendChild(a);
    } else { td.textContent = text; }
    if (css) { td.className = css; }
    row.appendChild(td);
  }
  function fill(id, items, draw) {
    var body = document.querySelector("#" + id + " tbody");
    body.textContent = "";
    items.forEach(function (item) {
      var tr = document.createElement("tr"); draw(tr, item); body.appendChild(tr);
    });
  }
  function draw(data) {
    document.getElementById("now").textContent = data.now;
    document.getElementById("goal").textContent = "(goal " + pct(data.goal) + ")";
    fill("queue", data.queue, function (tr, r) {
      tr.setAttribute("data-id", r.id);
      var css = r.breached ? "breached" : (r.at_risk ? "risk" : "");
      if (css) { tr.className = css; }
      cell(tr, r.id, "", r.url || null); cell(tr, r.subject); cell(tr, r.sla);
      cell(tr, r.target.replace("_", " ")); cell(tr, mins(r.minutes_left), css);
      cell(tr, Math.round(r.elapsed_pct) + "%"); cell(tr, r.group);
      cell(tr, r.assignee || "(unassigned)");
    });
    fill("breaches", data.breaches_today, function (tr, b) {
      cell(tr, b.id, "", b.url || null); cell(tr, b.sla); cell(tr, b.target.replace("_", " "));
      cell(tr, b.breached_at.slice(11, 16)); cell(tr, mins(b.time_over_minutes), "breached");
      cell(tr, (b.group || "-") + "/" + (b.assignee || "-"));
    });
    fill("compliance", data.compliance, function (tr, c) {
      cell(tr, c.segment); cell(tr, String(c.records));
      ["first_response", "resolution"].forEach(function (t) {
        var v = c[t];
        cell(tr, pct(v), v !== null && v < data.goal ? "below" : "");
      });
    });
    fill("trend", data.trend, function (tr, b) {
      cell(tr, b.start.slice(0, 10)); cell(tr, String(b.records));
      cell(tr, pct(b.first_response.rate)); cell(tr, pct(b.resolution.rate));
    });
    var ids = data.queue.map(function (r) { return r.id; }).join(" ");
    if (!document.body.hasAttribute("data-first-ids")) {
      document.body.setAttribute("data-first-ids", ids);
    }
    document.body.setAttribute("data-ids", ids);
    document.body.setAttribute("data-updates",
      String(Number(document.body.getAttribute("data-updates")) + 1));
    document.getElementById("status").textContent = "updated " + data.now +
      "; refreshes every " + data.refresh_seconds + " s";
  }
  function poll() {
    fetch("api/live" + query, {cache: "no-store"}).then(function (answer) {
      if (!answer.ok) { throw new Error(answer.status + " " + answer.statusText); }
      return answer.json();
    }).then(function (data) {
      draw(data); setTimeout(poll, data.refresh_seconds * 1000);
    }).catch(function (error) {
      document.getElementById("status").textContent = "cannot update: " + error.message;
      setTimeout(poll, 5000);
    });
  }
  poll();
})();
</script>
</body></html>
"""
