"""SIGTERM and Ctrl-C against a real sla-sync process: the batch in flight is finished and
recorded, the run exits with its documented code and no traceback, and the next run does
the rest without repeating a write. Synchronised on the process's own output, no sleeps."""

from __future__ import annotations

import http.server
import json
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, act, cli, cond, iso, record_dict, rule

POLICY = {
    "slas": [{"name": "standard", "targets": {"first_response": "1h", "resolution": "8h"}}],
    "rules": [rule("breach", {"all": [cond("first_response_breached", "is_true")]},
                   act("add_tag", tag="sla_breach"), act("add_note", text="{id} overdue"))],
}
NOW = iso("2026-03-02 10:20")
DEADLINE = 60  # seconds for a process to reach a point: generous for a loaded CI machine


def project(tmp_path: Path, count: int = 6) -> Path:
    records = [record_dict(id=f"T-{n}") for n in range(1, count + 1)]
    (tmp_path / "helpdesk.json").write_text(json.dumps({"records": records}))
    (tmp_path / "policy.json").write_text(json.dumps(POLICY))
    config = tmp_path / "config.yaml"
    config.write_text("connector: {type: file, path: helpdesk.json, batch_size: 2}\n"
                      "policy: policy.json\nstate: state.db\nfirst_run: act\n")
    return config


class Sync:
    """A sla-sync process (through the harness) whose output lines are read as they come."""

    def __init__(self, point: str, *args: str):
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "tests/signal_harness.py"), point, *args], cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[tuple[str, str]] = queue.Queue()
        self.output: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self.readers = [threading.Thread(target=self._read, args=(name,), daemon=True)
                        for name in ("stdout", "stderr")]
        for reader in self.readers:
            reader.start()

    def _read(self, name: str) -> None:
        for line in getattr(self.process, name):
            self.output[name].append(line)
            self.lines.put((name, line))

    def expect(self, text: str) -> None:
        """Wait for a line containing `text` on either stream; fail naming what came."""
        while True:
            try:
                _, line = self.lines.get(timeout=DEADLINE)
            except queue.Empty:
                self.process.kill()
                pytest.fail(f"no line with {text!r} within {DEADLINE}s; got {self.output}")
            if text in line:
                return

    def send(self, signum: int) -> None:
        self.process.send_signal(signum)

    def release(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def finish(self) -> tuple[int, str, str]:
        try:
            code = self.process.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"the process did not end within {DEADLINE}s: {self.output}")
        for reader in self.readers:
            reader.join(timeout=DEADLINE)
        return code, "".join(self.output["stdout"]), "".join(self.output["stderr"])


def helpdesk(tmp_path: Path) -> dict[str, dict[str, Any]]:
    data = json.loads((tmp_path / "helpdesk.json").read_text())
    return {r["id"]: r for r in data["records"]}


def assert_each_written_once(tmp_path: Path) -> None:
    for record in helpdesk(tmp_path).values():
        assert record["tags"] == ["sla_breach"], record["id"]
        assert [n["text"] for n in record["notes"]] == [f"{record['id']} overdue"], record["id"]


@pytest.mark.parametrize(("signum", "point", "code"), [
    (signal.SIGTERM, "batch", 143), (signal.SIGINT, "batch", 130),
    (signal.SIGTERM, "transaction", 143), (signal.SIGINT, "transaction", 130),
], ids=["sigterm-in-batch", "sigint-in-batch", "sigterm-in-transaction",
        "sigint-in-transaction"])
def test_a_signal_finishes_the_batch_in_flight_records_it_and_exits_with_its_code(
        tmp_path: Path, signum: int, point: str, code: int) -> None:
    config = project(tmp_path)
    sync = Sync(point, "run", "--config", str(config), "--now", NOW)
    sync.expect(f"PAUSED {point}")
    sync.send(signum)
    sync.expect(f"{signal.Signals(signum).name}: stopping after the write in flight")
    sync.release()
    exit_code, stdout, stderr = sync.finish()
    assert exit_code == code, stderr
    assert f"stopped by {signal.Signals(signum).name} after recording what was in flight" \
        in stderr
    assert "Traceback" not in stderr + stdout
    assert "writes 2," in stdout  # the first batch of two, recorded; nothing after it
    written = [r for r in helpdesk(tmp_path).values() if r["tags"]]
    assert sorted(r["id"] for r in written) == ["T-1", "T-2"]
    rest = cli("run", "--config", str(config), "--now", NOW)
    assert rest.exit_code == 0 and "writes 4," in rest.stdout
    assert "interrupted" not in rest.stderr  # nothing was left pending
    assert_each_written_once(tmp_path)


def test_a_second_ctrl_c_inside_a_transaction_stops_at_once_without_a_traceback(
        tmp_path: Path) -> None:
    config = project(tmp_path)
    sync = Sync("transaction", "run", "--config", str(config), "--now", NOW)
    sync.expect("PAUSED transaction")
    sync.send(signal.SIGINT)
    sync.expect("SIGINT: stopping after the write in flight")
    sync.send(signal.SIGINT)
    exit_code, stdout, stderr = sync.finish()
    assert exit_code == 130, stderr
    assert "stopped at once by a second SIGINT" in stderr
    assert "Traceback" not in stderr + stdout
    # The batch reached the helpdesk but its record was rolled back: the next run finds the
    # journalled writes applied and records them instead of writing again.
    rest = cli("run", "--config", str(config), "--now", NOW)
    assert rest.exit_code == 0, rest.output
    assert rest.stderr.count("had gone through") == 2
    assert_each_written_once(tmp_path)


def test_every_stops_at_once_on_sigterm_while_waiting_and_holds_the_state_meanwhile(
        tmp_path: Path) -> None:
    config = project(tmp_path)
    sync = Sync("none", "run", "--config", str(config), "--every", "1h")
    sync.expect("next sync in")
    for _ in range(2):  # a second sync is refused for as long as the first one lives
        other = cli("run", "--config", str(config), "--now", NOW)
        assert other.exit_code == 4 and f"held by process {sync.process.pid}" in other.stderr
    sync.send(signal.SIGTERM)
    exit_code, stdout, stderr = sync.finish()  # a 1h wait would overrun the deadline
    assert exit_code == 0, stderr
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr
    assert cli("run", "--config", str(config), "--now", NOW).exit_code == 0


def test_every_stopped_during_a_sync_finishes_the_batch_and_exits_0(tmp_path: Path) -> None:
    config = project(tmp_path)
    sync = Sync("batch", "run", "--config", str(config), "--every", "1h")
    sync.expect("PAUSED batch")
    sync.send(signal.SIGTERM)
    sync.expect("SIGTERM: stopping after the write in flight")
    sync.release()
    exit_code, stdout, stderr = sync.finish()
    assert exit_code == 0, stderr
    assert "stopped by SIGTERM" in stderr and "next sync in" not in stderr
    assert "Traceback" not in stderr + stdout
    assert sorted(r["id"] for r in helpdesk(tmp_path).values() if r["tags"]) == ["T-1", "T-2"]


class _Unavailable(http.server.BaseHTTPRequestHandler):
    """Every request: 503 with Retry-After 100 s, which sla-sync honours (within its
    max_retry_seconds of 120) by waiting before it tries again."""

    asked = threading.Event()

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(503)
        self.send_header("Retry-After", "100")
        self.send_header("Content-Length", "0")
        self.end_headers()
        type(self).asked.set()

    def log_message(self, *args: Any) -> None:
        pass


def test_sigterm_while_waiting_to_retry_the_helpdesk_stops_at_once(tmp_path: Path,
                                                                     monkeypatch) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Unavailable.asked.clear()
    (tmp_path / "policy.json").write_text(json.dumps(POLICY))
    config = tmp_path / "config.yaml"
    config.write_text("connector:\n  type: zendesk\n"
                      f"  url: http://127.0.0.1:{server.server_address[1]}\n"
                      "  email: agent@example.com\n  token: ${ZENDESK_TOKEN}\n"
                      "  start_time: 2026-03-01T00:00:00Z\n"
                      "policy: policy.json\nstate: state.db\n")
    monkeypatch.setenv("ZENDESK_TOKEN", "not-a-real-token")
    try:
        sync = Sync("none", "run", "--config", str(config))
        assert _Unavailable.asked.wait(DEADLINE), "sla-sync never asked the helpdesk"
        sync.send(signal.SIGTERM)
        # Without the stop reaching the retry wait, the process would sleep its 100 s and
        # outlive finish()'s deadline.
        exit_code, stdout, stderr = sync.finish()
    finally:
        server.shutdown()
        server.server_close()
    assert exit_code == 143, stderr
    assert "stopped by SIGTERM while waiting to try the helpdesk again" in stderr
    assert "Traceback" not in stderr + stdout
    assert "not-a-real-token" not in stderr + stdout
