"""Logs for schedulers and the progress line (README, "Logs and progress"): -v, -q and
--log-format on the CLI group; timestamped, levelled lines on stderr; the run's summary as
one structured record; HTTP requests at debug level without secrets; a quiet `--every` run
that says nothing; a progress line on a terminal only."""

from __future__ import annotations

import base64
import io
import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import LOG_LINE, act, cli, cond, iso, log_lines, record_dict, rule, write_project
from faultdesk import FaultDesk, Ticket, unix
from sla_sync import sync_log
from sla_sync.connector.base import ConnectorError, WriteResult
from sla_sync.connector.http import HttpClient

NOW = iso("2026-03-02 10:20")
POLICY = {
    "slas": [{"name": "standard", "targets": {"first_response": "1h", "resolution": "8h"}}],
    "rules": [rule("breach", {"all": [cond("first_response_breached", "is_true")]},
                   act("add_tag", tag="sla_breach"))],
}
EMAIL = "sla-bot@acme.example.com"
TOKEN = "zd-logs-token-5b0e19c2d7"  # made up; it must show up in no output
SECRETS = [TOKEN, base64.b64encode(f"{EMAIL}/token:{TOKEN}".encode()).decode()]


def project(tmp_path: Path, records: int = 3, bad: bool = False) -> Path:
    rows = [record_dict(id=f"T-{n}") for n in range(1, records + 1)]
    if bad:
        rows.append(record_dict(id="T-bad", updated_at="9999-12-31T23:30-01:00"))
    return write_project(tmp_path, rows, POLICY)


def run(*args: str) -> Any:
    return cli(*args)


# -- text and JSON lines ---------------------------------------------------------------------

def test_every_text_log_line_is_timestamped_in_utc_and_levelled(tmp_path: Path) -> None:
    config = project(tmp_path, bad=True)
    result = run("run", "--config", str(config), "--now", NOW)
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines, "a first run with a bad record says so on stderr"
    for line in lines:
        found = re.fullmatch(r"(\S+) (DEBUG|INFO|WARNING|ERROR) (.+)", line)
        assert found, f"not a log line: {line!r}"
        assert datetime.fromisoformat(found.group(1)).utcoffset().total_seconds() == 0
    assert "skipped: record 'T-bad': updated_at: '9999-12-31T23:30-01:00' is out of range" \
        in log_lines(result.stderr, "WARNING")
    # The summary is the command's output, on stdout, as it always was.
    assert re.fullmatch(r"run 1: read 3, evaluated 3, changed 3, writes 3, skipped 1, "
                        r"errors 0 in \d+\.\d\ds; cursor moved\n", result.stdout)


def test_json_logs_parse_line_by_line_and_carry_their_fields(tmp_path: Path) -> None:
    config = project(tmp_path, bad=True)
    result = run("--log-format", "json", "run", "--config", str(config), "--now", NOW)
    assert result.exit_code == 0, result.output
    assert result.stdout == "", "in JSON logs the summary is a log record, not a text line"
    records = [json.loads(line) for line in result.stderr.splitlines()]
    for record in records:
        assert {"time", "level", "message"} <= set(record), record
        assert record["time"].endswith("Z") and datetime.fromisoformat(record["time"])
        assert record["level"] in ("info", "warning", "error")
    [skipped] = [r for r in records if r.get("event") == "skipped"]
    assert skipped["level"] == "warning" and skipped["record"] == "T-bad"
    assert skipped["run"] == 1
    [summary] = [r for r in records if r.get("event") == "summary"]
    assert summary["level"] == "info" and summary["message"].startswith("run 1: read 3")
    assert {k: summary[k] for k in ("run", "read", "evaluated", "changed", "writes",
                                    "skipped", "errors", "status", "cursor_moved")} == {
        "run": 1, "read": 3, "evaluated": 3, "changed": 3, "writes": 3, "skipped": 1,
        "errors": 0, "status": "ok", "cursor_moved": True}
    assert isinstance(summary["duration_ms"], int)


def test_a_failed_write_is_an_error_record_naming_the_record(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Any, changes: list[Any], now: Any) -> list[WriteResult]:
        return [WriteResult(c.record_id, error=ConnectorError(
            "HTTP 422: the helpdesk refused the change", record_id=c.record_id))
            for c in changes]

    monkeypatch.setattr("sla_sync.connector.file.FileHelpdesk.apply_many", refuse)
    config = project(tmp_path, records=2)
    result = run("--log-format", "json", "run", "--config", str(config), "--now", NOW)
    assert result.exit_code == 3
    records = [json.loads(line) for line in result.stderr.splitlines()]
    failures = [r for r in records if r.get("event") == "failure"]
    assert [(r["level"], r["record"], r["run"]) for r in failures] == \
        [("error", "T-1", 1), ("error", "T-2", 1)]
    assert "write failed: HTTP 422" in failures[0]["message"]
    [summary] = [r for r in records if r.get("event") == "summary"]
    assert (summary["status"], summary["errors"], summary["writes"]) == ("partial", 2, 0)


def test_an_error_is_one_json_record_with_its_exit_code(tmp_path: Path) -> None:
    result = run("--log-format", "json", "run", "--config", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2
    [record] = [json.loads(line) for line in result.stderr.splitlines()]
    assert record["level"] == "error" and record["event"] == "exit"
    assert record["exit_code"] == 2 and "nope.yaml: config file not found" in record["message"]


def test_the_log_format_can_come_from_the_environment(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLA_SYNC_LOG_FORMAT", "json")
    result = run("run", "--config", str(project(tmp_path)), "--now", NOW)
    assert [json.loads(line)["event"] for line in result.stderr.splitlines()][-1] == "summary"


def test_a_multi_line_message_is_prefixed_on_every_line() -> None:
    record = sync_log.logging.makeLogRecord({"msg": "first\n  second", "levelname": "ERROR",
                                             "created": 1772445600.25})
    assert sync_log.TextFormatter().format(record) == (
        "2026-03-02T10:00:00.250Z ERROR first\n2026-03-02T10:00:00.250Z ERROR   second")


# -- verbosity ---------------------------------------------------------------------------------

def test_quiet_keeps_warnings_and_drops_info(tmp_path: Path) -> None:
    config = project(tmp_path, bad=True)
    result = run("-q", "run", "--config", str(config), "--now", NOW)
    assert result.exit_code == 0
    assert result.stdout == ""  # no summary line
    assert log_lines(result.stderr, "INFO") == []
    assert any(line.startswith("NEW STATE FILE: ")  # a warning
               for line in log_lines(result.stderr, "WARNING"))
    assert any(line.startswith("skipped: record 'T-bad'")
               for line in log_lines(result.stderr, "WARNING"))
    # ...and what --json asks for is still printed.
    again = run("-q", "run", "--config", str(config), "--now", NOW, "--json")
    assert json.loads(again.stdout.splitlines()[-1])["event"] == "summary"
    assert log_lines(again.stderr, "INFO") == []


def test_verbose_and_quiet_together_are_refused(tmp_path: Path) -> None:
    for args in (["-v", "-q", "run"], ["-v", "run", "-q"], ["run", "-q", "-v"]):
        result = run(*args, "--config", str(project(tmp_path)))
        assert result.exit_code == 2 and "-v and -q contradict each other" in result.stderr
        assert not (tmp_path / "state.db").exists()


def test_the_global_options_are_taken_after_the_command_too(tmp_path: Path) -> None:
    config = project(tmp_path, bad=True)
    quiet = run("run", "--config", str(config), "--now", NOW, "-q")
    assert quiet.exit_code == 0 and quiet.stdout == "" and log_lines(quiet.stderr, "INFO") == []
    as_json = run("run", "--config", str(config), "--now", NOW, "--log-format", "json", "-v")
    records = [json.loads(line) for line in as_json.stderr.splitlines()]
    assert {"debug", "info"} <= {r["level"] for r in records}
    assert [r["run"] for r in records if r.get("event") == "summary"] == [2]


def test_run_json_prints_the_summary_as_the_last_line_of_stdout(tmp_path: Path) -> None:
    config = project(tmp_path, records=2)
    result = run("run", "--config", str(config), "--now", NOW, "--json")
    assert result.exit_code == 0
    *changes, last = [json.loads(line) for line in result.stdout.splitlines()]
    assert [c["id"] for c in changes] == ["T-1", "T-2"]
    assert last["event"] == "summary" and last["run"] == 1
    assert (last["read"], last["changed"], last["writes"], last["errors"]) == (2, 2, 2, 0)
    # The text summary stays in the log, on stderr.
    assert any(line.startswith("run 1: read 2") for line in log_lines(result.stderr, "INFO"))


# -- --every -----------------------------------------------------------------------------------

def every(monkeypatch: pytest.MonkeyPatch, *args: str, syncs: int = 2) -> Any:
    """`run --every 5m` for `syncs` syncs (Stop.wait patched: nothing sleeps)."""
    naps: list[float] = []
    monkeypatch.setattr("sla_sync.sync.Stop.wait",
                        lambda stop, seconds: naps.append(seconds) or len(naps) >= syncs)
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert len(naps) == syncs
    return result


def test_a_quiet_every_run_logs_nothing_at_default_verbosity(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = project(tmp_path)
    assert run("run", "--config", str(config), "--now", NOW).exit_code == 0
    result = every(monkeypatch, "run", "--config", str(config), "--every", "5m", syncs=3)
    assert result.stdout == ""
    assert log_lines(result.stderr) == [
        "syncing every 5m; SIGTERM or Ctrl-C stops after the write in flight",
        "stopped by a signal"]


def test_a_quiet_every_run_logs_its_summary_at_info_with_verbose(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = project(tmp_path)
    assert run("run", "--config", str(config), "--now", NOW).exit_code == 0
    result = every(monkeypatch, "-v", "--log-format", "json", "run", "--config", str(config),
                   "--every", "5m", syncs=2)
    records = [json.loads(line) for line in result.stderr.splitlines()]
    summaries = [r for r in records if r.get("event") == "summary"]
    assert [(r["level"], r["run"], r["changed"]) for r in summaries] == \
        [("info", 2, 0), ("info", 3, 0)]
    assert [r["event"] for r in records if r.get("event") == "wait"] == ["wait", "wait"]


def test_an_every_run_that_changes_something_says_so(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    config = project(tmp_path)
    result = every(monkeypatch, "run", "--config", str(config), "--every", "5m", syncs=2)
    # The first sync writes (the records are new and breached); the second is quiet.
    assert re.findall(r"^run (\d+): ", result.stdout, re.M) == ["1"]
    assert sum(line.startswith("next sync in") for line in log_lines(result.stderr)) == 1


# -- HTTP at debug level -----------------------------------------------------------------------

@pytest.fixture
def zendesk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A Zendesk fake (tests/faultdesk.py) with two tickets past their first response."""
    t0 = unix("2026-03-02T12:00:00Z")
    desk = FaultDesk(EMAIL, TOKEN, now=t0).start()
    for number in (1, 2):
        desk.add(Ticket(id=number, subject=f"Ticket {number}", created_at=t0 - 3 * 3600,
                        updated_at=t0 - 3 * 3600))
    (tmp_path / "policy.json").write_text(json.dumps(POLICY))
    (tmp_path / "config.yaml").write_text(
        f"connector:\n  type: zendesk\n  url: {desk.url}\n  email: {EMAIL}\n"
        "  token: ${ZENDESK_TOKEN}\n  start_time: 2026-03-01T00:00:00Z\n"
        "  requests_per_minute: 6000\n  api_requests_per_minute: 6000\n"
        "  sandbox: true\n"  # the fake is no real helpdesk: --now is allowed
        "first_run: act\npolicy: policy.json\nstate: state.db\n")
    monkeypatch.setenv("ZENDESK_TOKEN", TOKEN)
    monkeypatch.setattr("sla_sync.connector.http.wait", lambda seconds: None)  # job polls
    yield desk, tmp_path / "config.yaml"
    desk.stop()


def test_verbose_logs_each_http_request_without_secrets(zendesk: Any) -> None:
    desk, config = zendesk
    result = run("-v", "--log-format", "json", "run", "--config", str(config),
                 "--now", "2026-03-02T12:00:00+00:00")
    assert result.exit_code == 0, result.output
    assert desk.writes[1] and desk.writes[2], "both tickets were written"
    records = [json.loads(line) for line in result.stderr.splitlines()]
    http = [r for r in records if r.get("event") == "http"]
    assert {r["method"] for r in http} >= {"GET", "PUT"}
    for r in http:
        assert r["level"] == "debug" and r["status"] in (200, 201, 202)
        assert r["url"].startswith(desk.url + "/api/v2/")
        assert isinstance(r["duration_ms"], int) and r["attempt"] == 1 and r["retries"] == 0
    assert len(http) == len(desk.log), "one debug record per request the desk answered"
    for secret in SECRETS:
        assert secret not in result.stderr + result.stdout


def test_a_retried_request_logs_each_attempt_without_secrets(
        zendesk: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    desk, config = zendesk
    desk.inject("5xx", method="GET", path=r"/api/v2/incremental/tickets/cursor", status=503)
    result = run("-v", "run", "--config", str(config), "--now", "2026-03-02T12:00:00+00:00")
    assert result.exit_code == 0, result.output
    exports = [line for line in log_lines(result.stderr, "DEBUG")
               if "/api/v2/incremental/tickets/cursor" in line]
    assert re.search(r": HTTP 503 in \d+ ms \(attempt 1\)$", exports[0]), exports
    assert re.search(r": HTTP 200 in \d+ ms \(attempt 2\)$", exports[1]), exports
    for secret in SECRETS:
        assert secret not in result.stderr + result.stdout


def test_without_verbose_no_http_line_is_logged(zendesk: Any) -> None:
    desk, config = zendesk
    result = run("run", "--config", str(config), "--now", "2026-03-02T12:00:00+00:00")
    assert result.exit_code == 0 and desk.log
    assert log_lines(result.stderr, "DEBUG") == [] and "/api/v2/" not in result.stderr


def test_a_url_is_logged_without_credentials_or_secret_query_values() -> None:
    client = HttpClient("https://desk.example.com")
    shown = client.shown_url("https://desk.example.com/api/tickets?page=2&api_key=SECRET1",
                             {"hapikey": "SECRET2", "access_token": "SECRET3", "per_page": 100})
    assert shown == ("https://desk.example.com/api/tickets?page=2&api_key=***&hapikey=***"
                     "&access_token=***&per_page=100")
    assert client.shown_url("https://user:SECRET4@desk.example.com:8443/x") == \
        "https://desk.example.com:8443/x"
    hook = HttpClient("https://hooks.example.com", quote_paths=False)
    assert hook.shown_url("https://hooks.example.com/services/T0/B0/SECRET5") == \
        "https://hooks.example.com/(withheld)"


# -- the progress line -------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_progress_line_redraws_in_place_at_most_every_interval() -> None:
    out, clock = io.StringIO(), Clock()
    line = sync_log.ProgressLine(out, every=0.2, clock=clock)
    line("reading", {"pages": 0, "records": 0})
    clock.now += 0.1
    line("reading", {"pages": 1, "records": 100})  # too soon: not drawn
    clock.now += 0.4
    line("reading", {"pages": 2, "records": 1000})
    line("evaluating", {"done": 0, "total": 1000})  # a new stage: drawn at once
    clock.now += 2
    line("evaluating", {"done": 500, "total": 1000})
    line.close()
    clear = sync_log.CLEAR
    assert out.getvalue() == (
        f"{clear}reading: 0 pages, 0 records"
        f"{clear}reading: 2 pages, 1,000 records (2,000/s)"
        f"{clear}evaluating: 0/1,000"
        f"{clear}evaluating: 500/1,000 (250/s)"
        f"{clear}")


def test_a_log_record_clears_the_progress_line_and_draws_it_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The isatty decision injected: click's runner gives no terminal.
    monkeypatch.setattr("sla_sync.sync_log._is_terminal", lambda stream: True)
    config = project(tmp_path, bad=True)
    result = run("-v", "run", "--config", str(config), "--now", NOW)  # -v: records meanwhile
    assert result.exit_code == 0
    err = result.stderr
    assert f"{sync_log.CLEAR}reading: 0 pages, 0 records" in err
    assert re.search(r"evaluating: \d+/3", err) and re.search(r"writing: \d+/3", err)
    # Each log record starts on a cleared line (then the progress line comes back), and the
    # run ends with the line cleared.
    lines = err.split("\n")
    assert lines[-1] == "", "the last thing written is a whole log line"
    for line in lines[:-1]:
        assert LOG_LINE.fullmatch(line.rsplit(sync_log.CLEAR, 1)[-1]), repr(line)
    assert any(line.startswith(sync_log.CLEAR) and "DEBUG run 1: page 1" in line
               for line in lines)


def test_no_progress_line_with_quiet_even_on_a_terminal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sla_sync.sync_log._is_terminal", lambda stream: True)
    result = run("-q", "run", "--config", str(project(tmp_path)), "--now", NOW)
    assert result.exit_code == 0 and "\r" not in result.stderr


def sla_sync(args: list[str], cwd: Path, stderr: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "sla_sync", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=stderr,
                            env={**os.environ, "TERM": "xterm"})


def read_all(fd: int, process: subprocess.Popen[bytes], deadline: float = 60.0) -> bytes:
    """Everything written to a pty's child side until the child exits."""
    data = b""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child side is closed
                break
            if not chunk:
                break
            data += chunk
        elif process.poll() is not None:
            break
    return data


def test_a_dumb_terminal_gets_no_progress_line(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("TERM", "xterm-256color")
    assert sync_log._is_terminal(Terminal())
    monkeypatch.setenv("TERM", "dumb")
    assert not sync_log._is_terminal(Terminal())
    assert not sync_log._is_terminal(io.StringIO())


def test_progress_appears_on_a_terminal_and_not_on_a_pipe(tmp_path: Path) -> None:
    config = project(tmp_path, records=5)
    main, child = pty.openpty()
    try:
        process = sla_sync(["run", "--config", str(config), "--now", NOW], tmp_path, child)
        os.close(child)
        on_tty = read_all(main, process).decode()
        assert process.wait(timeout=60) == 0, on_tty
    finally:
        os.close(main)
    assert "reading: 0 pages, 0 records" in on_tty
    assert re.search(r"evaluating: \d+/5", on_tty) and re.search(r"writing: \d+/5", on_tty)
    assert sync_log.CLEAR in on_tty

    (tmp_path / "state.db").unlink()
    piped = subprocess.run([sys.executable, "-m", "sla_sync", "run", "--config", str(config),
                            "--now", NOW], cwd=tmp_path, capture_output=True, text=True,
                           timeout=60, env={**os.environ, "TERM": "xterm"})
    assert piped.returncode == 0, piped.stderr
    assert "\r" not in piped.stderr and "\x1b" not in piped.stderr
    assert "reading:" not in piped.stderr and "evaluating:" not in piped.stderr
