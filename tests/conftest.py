"""Shared test helpers: written-out times, records and policies built in one line."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from sla_sync.connector.model import Record
from sla_sync.rules.policy import Policy, check_policy
from sla_sync.sync import main

ROOT = Path(__file__).resolve().parent.parent


def at(text: str, tz: str = "UTC") -> datetime:
    """`at("2026-03-02 09:15", tz="Europe/Berlin")` -> that wall time there, as aware UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).astimezone(UTC)


def iso(text: str, tz: str = "UTC") -> str:
    return at(text, tz).isoformat()


def record_dict(**fields: Any) -> dict[str, Any]:
    """A valid ticket in the file helpdesk's format; keyword arguments override fields."""
    data: dict[str, Any] = {
        "id": "T-1", "kind": "ticket", "subject": "Printer on fire", "status": "open",
        "priority": "normal", "tier": "standard", "channel": "email", "source": "",
        "group": "support", "assignee": "", "tags": [],
        "created_at": iso("2026-03-02 09:00"), "updated_at": iso("2026-03-02 09:00"),
        "first_response_at": None, "solved_at": None, "status_history": [],
        "escalation_level": 0, "notes": [], "custom": {},
    }
    data.update(fields)
    return data


def make_record(**fields: Any) -> Record:
    return Record.from_dict(record_dict(**fields))


def make_policy(slas: list[dict[str, Any]] | None = None,
                rules: list[dict[str, Any]] | None = None, **extra: Any) -> Policy:
    """A checked policy; by default one fallback SLA 'standard' with 1h/8h targets."""
    if slas is None:
        slas = [{"name": "standard", "targets": {"first_response": "1h", "resolution": "8h"}}]
    return check_policy({"slas": slas, "rules": rules or [], **extra}, "test-policy")


def rule(name: str, conditions: dict[str, Any], *actions: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "conditions": conditions, "actions": list(actions)}


def cond(name: str, operator: str, value: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "operator": operator}
    if value is not None:
        out["value"] = value
    return out


def act(name: str, **params: Any) -> dict[str, Any]:
    return {"name": name, "params": params}


def bench_script(name: str) -> Any:
    """A script of bench/ (not a package) imported as a module, once per test session."""
    if name in sys.modules:
        return sys.modules[name]
    path = ROOT / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def build_wheel(source: Path, out: Path) -> Path:
    """The wheel `pip wheel` builds from a copy of `source` (setuptools builds in the tree,
    and a stale build/ there could add modules the source no longer has), with this
    environment's setuptools (no build isolation: nothing is downloaded); its path."""
    copy = out / "source"
    shutil.copytree(source, copy, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "*.egg-info", "__pycache__", ".*_cache", ".demo"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "--no-index", "-w", str(out), str(copy)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, "pip wheel failed (needs setuptools>=77 in this " \
        f"environment: pip install -e '.[test]'):\n{done.stdout}{done.stderr}"
    wheels = list(out.glob("sla_sync-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def write_project(folder: Path, records: list[dict[str, Any]], policy: dict[str, Any]) -> Path:
    """A file helpdesk, a policy and a config in `folder`; returns the config's path."""
    (folder / "helpdesk.json").write_text(json.dumps({"records": records}, indent=2))
    (folder / "policy.json").write_text(json.dumps(policy))
    config = folder / "config.yaml"
    # first_run: act: these projects are about what a sync writes, from the first run on
    config.write_text("connector: {type: file, path: helpdesk.json}\n"
                      "policy: policy.json\nstate: state.db\nfirst_run: act\n")
    return config


#: A line of the CLI's text log (sync_log.TextFormatter): UTC time, level, message.
LOG_LINE = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) "
                      r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) (.*)")


def log_lines(stderr: str, level: str | None = None) -> list[str]:
    """The messages of the text log lines in `stderr` (of `level`, if given), without their
    time and level."""
    found = [LOG_LINE.fullmatch(line) for line in stderr.splitlines()]
    return [m.group(3) for m in found if m and (level is None or m.group(2) == level)]


def error_lines(stderr: str) -> list[str]:
    """The error lines of the CLI's stderr: its ERROR log records, and click's own usage
    errors (`Error: ...`, printed before logging is set up)."""
    return log_lines(stderr, "ERROR") + [line for line in stderr.splitlines()
                                         if line.startswith("Error:")]


def cli(*args: str) -> Any:
    """Run the sla-sync CLI in-process; result.stdout and result.stderr are separate."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def helpdesk(tmp_path: Path):
    """Write records to a file helpdesk in tmp_path; returns a function (records) -> path."""
    def write(*records: dict[str, Any]) -> Path:
        path = tmp_path / "helpdesk.json"
        path.write_text(json.dumps({"records": list(records)}, indent=2))
        return path
    return write


class Waits:
    """Stands in for time.sleep and time.monotonic: records each wait and advances a fake
    clock, so retries and throttles are tested without sleeping."""

    def __init__(self) -> None:
        self.slept: list[float] = []
        self.now = 1000.0

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


class LocalServer:
    """A real HTTP server on 127.0.0.1 that answers from a script and records requests.

    `script` is consumed in order: (status, headers, body) per request; when it runs out,
    `default` answers. `requests` holds (method, path, headers, json body), `raw` each
    request's exact body bytes (for checking a signature over them)."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str], Any]] = []
        self.default: tuple[int, dict[str, str], Any] = (200, {}, {"ok": True})
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.raw: list[bytes] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                server.raw.append(raw)
                server.requests.append((self.command, self.path, dict(self.headers), body))
                status, headers, payload = (server.script.pop(0) if server.script
                                            else server.default)
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,),
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def local_server():
    server = LocalServer()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The fault suite's table (tests/test_faults.py), when it ran; shown with -q too."""
    import faultstats
    text = faultstats.table()
    if text:
        terminalreporter.write_sep("=", "fault suite")
        terminalreporter.write_line(text)
