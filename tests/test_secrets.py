"""Secrets: a recognisable token and a webhook URL with a secret path, pushed through every
error path we can reach with logging at DEBUG (the CLI's -v, which logs every HTTP request,
and caplog), appear nowhere (stdout, stderr, logs, any table of the state file, exception
texts). Credentials never follow a redirect to another
host; TLS is verified; plain http is for loopback only. Real servers on 127.0.0.1/.2."""

from __future__ import annotations

import base64
import json
import logging
import socket
import sqlite3
import ssl
import subprocess
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conftest import act, cli, cond, iso, record_dict, rule

TOKEN = "tok-SECRET-4c7e9a1f"
HOOK_SECRET = "T0HOOK/B0HOOK/hookSECRET91b2"
NOW = iso("2026-03-02 10:30")
CONNECTORS = {
    # type -> its settings with the token from the environment, and where the token goes
    "zendesk": "{type: zendesk, url: URL, email: agent@example.com, token: '${SLA_TOKEN}'}",
    "freshdesk": "{type: freshdesk, url: URL, api_key: '${SLA_TOKEN}'}",
    "hubspot": "{type: hubspot, url: URL, token: '${SLA_TOKEN}'}",
    "rt": "{type: rt, url: URL, token: '${SLA_TOKEN}'}",
    "jsm": "{type: jsm, url: URL, email: agent@example.com, token: '${SLA_TOKEN}', "
           "projects: [SUP]}",
}
NEEDLES = [TOKEN, base64.b64encode(f"agent@example.com/token:{TOKEN}".encode()).decode(),
           base64.b64encode(f"{TOKEN}:X".encode()).decode(), HOOK_SECRET, "hookSECRET91b2",
           base64.b64encode(f"agent@example.com:{TOKEN}".encode()).decode()]


class Server:
    """A real HTTP(S) server on `host` answering every request with one scripted response;
    it records each request's path and headers."""

    def __init__(self, host: str, status: int, headers: dict[str, str] | None = None,
                 body: Any = None, context: ssl.SSLContext | None = None):
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                server.requests.append((self.command, self.path, dict(self.headers)))
                data = json.dumps(body if body is not None else {"error": "no"}).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = _answer

            def log_message(self, *args: Any) -> None:
                pass

        try:
            self.httpd = ThreadingHTTPServer((host, 0), Handler)
        except OSError as exc:
            pytest.fail(f"this test needs to listen on {host} (loopback 127.0.0.0/8): {exc}")
        if context is not None:
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,),
                                       daemon=True)
        self.thread.start()
        scheme = "https" if context else "http"
        self.url = f"{scheme}://{host}:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers():
    started: list[Server] = []

    def start(*args: Any, **kwargs: Any) -> Server:
        started.append(Server(*args, **kwargs))
        return started[-1]

    yield start
    for server in started:
        server.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def project(tmp_path: Path, connector: str, hook_url: str | None = None) -> Path:
    (tmp_path / "helpdesk.json").write_text(json.dumps({"records": [record_dict(id="T-1")]}))
    rules = [rule("breach", {"all": [cond("first_response_breached", "is_true")]},
                  act("add_tag", tag="sla_breach"),
                  *([act("notify", webhook="oncall", text="{id} breached")] if hook_url else []))]
    (tmp_path / "policy.json").write_text(json.dumps(
        {"slas": [{"name": "std", "targets": {"first_response": "1h"}}], "rules": rules}))
    config = tmp_path / "config.yaml"
    # sandbox: the fake helpdesks are written to at --now; first_run: act, so that the first
    # run writes and notifies
    connector = connector[:-1] + ", sandbox: true}"
    config.write_text(f"connector: {connector}\npolicy: policy.json\nstate: state.db\n"
                      "first_run: act\n"
                      + ("webhooks: {oncall: {url: '${SLA_HOOK_URL}'}}\n" if hook_url else ""))
    return config


def everything_said(tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: Any,
                    config: Path, env: dict[str, str]) -> str:
    """Run a sync with logging at DEBUG (`-v`, and urllib3's too through caplog); return all
    it left behind: output, log records, exception texts, every row of every table of the
    state file and the state file's bytes."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # The HTTP layer's waits between retries are taken at once (what they would be is the
    # retry tests' business, not this file's).
    monkeypatch.setattr("sla_sync.connector.http.wait", lambda seconds: None)
    caplog.set_level(logging.DEBUG)
    said = []
    try:
        result = cli("-v", "run", "--config", str(config), "--now", NOW)
        said += [result.stdout, result.stderr, str(result.exit_code)]
    except BaseException as exc:  # an escaped exception is a failure; its text is evidence
        said.append("".join(traceback.format_exception(exc)))
        raise AssertionError(f"an exception escaped the CLI: {said[-1]}") from None
    said.append(caplog.text)
    said += [repr(record.args) for record in caplog.records]
    for path in sorted(tmp_path.glob("state.db*")):
        said.append(path.read_bytes().decode("latin-1"))
    if (tmp_path / "state.db").exists():
        with sqlite3.connect(tmp_path / "state.db") as db:
            for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
                said += [repr(row) for row in db.execute(f"SELECT * FROM {table}")]
    return "\n".join(said)


def assert_no_secret(text: str) -> None:
    for needle in NEEDLES:
        assert needle not in text, f"{needle!r} leaked:\n{text}"


# -- the helpdesk's credentials --------------------------------------------------------------

FAULTS = {
    "401": (401, {}), "403": (403, {}),
    "500-after-retries": (500, {"Retry-After": "0"}),
    "429-after-retries": (429, {"Retry-After": "0"}),
}


@pytest.mark.parametrize("kind", sorted(CONNECTORS))
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_an_http_error_from_the_helpdesk_never_shows_the_token(
        tmp_path: Path, caplog: Any, monkeypatch: Any, servers: Any, kind: str,
        fault: str) -> None:
    status, headers = FAULTS[fault]
    server = servers("127.0.0.1", status, headers,
                     {"error": "denied", "description": "no", "message": "no"})
    settings = CONNECTORS[kind].replace("URL", server.url).replace(
        "}", ", max_attempts: 3}")
    said = everything_said(tmp_path, caplog, monkeypatch, project(tmp_path, settings),
                           {"SLA_TOKEN": TOKEN})
    assert server.requests, "the helpdesk was never asked"
    assert "run failed, cursor not moved" in said
    assert f": HTTP {status} in " in said and "(attempt 1)" in said  # -v logged the requests
    assert_no_secret(said)


@pytest.mark.parametrize("kind", sorted(CONNECTORS))
def test_a_refused_connection_never_shows_the_token(tmp_path: Path, caplog: Any,
                                                    monkeypatch: Any, kind: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    settings = CONNECTORS[kind].replace("URL", url).replace("}", ", max_attempts: 1}")
    said = everything_said(tmp_path, caplog, monkeypatch, project(tmp_path, settings),
                           {"SLA_TOKEN": TOKEN})
    assert "unreachable" in said
    assert_no_secret(said)


@pytest.mark.parametrize("kind", sorted(CONNECTORS))
@pytest.mark.parametrize("url", ["http://127.0.0.1:99999", "http://127.0.0.1:port",
                                 "http://[::1"], ids=["port-out-of-range", "port-not-a-number",
                                                      "unclosed-bracket"])
def test_an_unusable_helpdesk_url_never_shows_the_token(tmp_path: Path, caplog: Any,
                                                        monkeypatch: Any, kind: str,
                                                        url: str) -> None:
    settings = CONNECTORS[kind].replace("URL", f"'{url}'").replace("}", ", max_attempts: 1}")
    said = everything_said(tmp_path, caplog, monkeypatch, project(tmp_path, settings),
                           {"SLA_TOKEN": TOKEN})
    assert "Traceback" not in said
    assert_no_secret(said)


@pytest.mark.parametrize("kind", sorted(CONNECTORS))
@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_to_another_host_carries_no_credentials(
        tmp_path: Path, caplog: Any, monkeypatch: Any, servers: Any, kind: str,
        status: int) -> None:
    elsewhere = servers("127.0.0.2", 401)
    server = servers("127.0.0.1", status, {"Location": f"{elsewhere.url}/stolen"})
    settings = CONNECTORS[kind].replace("URL", server.url).replace("}", ", max_attempts: 1}")
    said = everything_said(tmp_path, caplog, monkeypatch, project(tmp_path, settings),
                           {"SLA_TOKEN": TOKEN})
    assert server.requests and server.requests[0][2].get("Authorization"), \
        "the helpdesk itself should have been sent the credentials"
    for _, _, headers in elsewhere.requests:
        assert "Authorization" not in headers
        assert_no_secret(json.dumps(headers))
    assert_no_secret(said)


def test_the_state_file_failing_to_write_never_shows_the_token(
        tmp_path: Path, caplog: Any, monkeypatch: Any, servers: Any) -> None:
    server = servers("127.0.0.1", 401)
    config = project(tmp_path, CONNECTORS["zendesk"].replace("URL", server.url))

    def broken(*args: Any, **kwargs: Any) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr("sla_sync.sync_state.StateStore.finish_run", broken)
    said = everything_said(tmp_path, caplog, monkeypatch, config, {"SLA_TOKEN": TOKEN})
    assert "unexpected OperationalError" in said
    assert_no_secret(said)


# -- TLS and plain http -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: Any) -> ssl.SSLContext:
    folder = tmp_path_factory.mktemp("tls")
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                        "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem")],
                       check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"this test makes a self-signed certificate with the openssl command: {exc}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context


@pytest.mark.parametrize("kind", sorted(CONNECTORS))
def test_tls_is_verified_a_self_signed_helpdesk_is_refused(
        tmp_path: Path, caplog: Any, monkeypatch: Any, servers: Any, kind: str,
        self_signed: ssl.SSLContext) -> None:
    server = servers("127.0.0.1", 200, context=self_signed)
    settings = CONNECTORS[kind].replace("URL", server.url).replace("}", ", max_attempts: 1}")
    said = everything_said(tmp_path, caplog, monkeypatch, project(tmp_path, settings),
                           {"SLA_TOKEN": TOKEN})
    assert "SSLError" in said and "run failed, cursor not moved" in said
    assert not server.requests  # no request got through the handshake
    assert_no_secret(said)


def test_a_self_signed_webhook_is_refused(tmp_path: Path, caplog: Any, monkeypatch: Any,
                                          servers: Any, self_signed: ssl.SSLContext) -> None:
    hook = servers("127.0.0.1", 200, context=self_signed)
    url = f"{hook.url}/hooks/{HOOK_SECRET}"
    config = project(tmp_path, "{type: file, path: helpdesk.json}", url)
    said = everything_said(tmp_path, caplog, monkeypatch, config, {"SLA_HOOK_URL": url})
    assert "notification to 'oncall' failed" in said and not hook.requests
    assert_no_secret(said)


@pytest.mark.parametrize("kind", sorted(CONNECTORS))
def test_plain_http_to_a_host_that_is_not_loopback_is_refused(tmp_path: Path, monkeypatch: Any,
                                                              kind: str) -> None:
    monkeypatch.setenv("SLA_TOKEN", TOKEN)
    config = project(tmp_path, CONNECTORS[kind].replace("URL", "http://helpdesk.example.com"))
    result = cli("run", "--config", str(config), "--now", NOW)
    assert result.exit_code == 2
    assert "connector.url: plain http is accepted for loopback addresses only" in result.stderr


def test_plain_http_to_a_webhook_that_is_not_loopback_is_refused(tmp_path: Path,
                                                                  monkeypatch: Any) -> None:
    url = f"http://hooks.example.com/{HOOK_SECRET}"
    monkeypatch.setenv("SLA_HOOK_URL", url)
    config = project(tmp_path, "{type: file, path: helpdesk.json}", url)
    result = cli("run", "--config", str(config), "--now", NOW)
    assert result.exit_code == 2
    assert "webhooks.oncall.url: expected an https URL (or http to a loopback address)" \
        in result.stderr
    assert_no_secret(result.output)


# -- webhook URLs are secrets ------------------------------------------------------------------

HOOK_FAULTS = {"403": (403, {}), "500-after-retries": (500, {"Retry-After": "0"}),
               "429-after-retries": (429, {"Retry-After": "0"})}


@pytest.mark.parametrize("fault", sorted(HOOK_FAULTS))
def test_a_failing_webhook_never_shows_its_url(tmp_path: Path, caplog: Any, monkeypatch: Any,
                                               servers: Any, fault: str) -> None:
    status, headers = HOOK_FAULTS[fault]
    hook = servers("127.0.0.1", status, headers, {"error": "bad", "message": "bad"})
    url = f"{hook.url}/hooks/{HOOK_SECRET}"
    config = project(tmp_path, "{type: file, path: helpdesk.json}", url)
    said = everything_said(tmp_path, caplog, monkeypatch, config, {"SLA_HOOK_URL": url})
    assert hook.requests and "kept for the next run" in said
    assert f"webhook 'oncall': POST {hook.url}/(withheld): HTTP {status} in " in said
    assert_no_secret(said)


@pytest.mark.parametrize("url", [
    f"http://127.0.0.1:99999/hooks/{HOOK_SECRET}", f"http://127.0.0.1:port/hooks/{HOOK_SECRET}",
    f"http://[::1/hooks/{HOOK_SECRET}"], ids=["port-out-of-range", "port-not-a-number",
                                               "unclosed-bracket"])
def test_an_unusable_webhook_url_is_refused_by_key_without_showing_it(
        tmp_path: Path, caplog: Any, monkeypatch: Any, url: str) -> None:
    config = project(tmp_path, "{type: file, path: helpdesk.json}", url)
    said = everything_said(tmp_path, caplog, monkeypatch, config, {"SLA_HOOK_URL": url})
    assert "webhooks.oncall.url:" in said and "\n2\n" in said  # exit 2
    assert_no_secret(said)


def test_a_refused_webhook_connection_never_shows_its_url(tmp_path: Path, caplog: Any,
                                                          monkeypatch: Any) -> None:
    url = f"http://127.0.0.1:{free_port()}/hooks/{HOOK_SECRET}"
    config = project(tmp_path, "{type: file, path: helpdesk.json}", url)
    said = everything_said(tmp_path, caplog, monkeypatch, config, {"SLA_HOOK_URL": url})
    assert "notification to 'oncall' failed" in said
    assert_no_secret(said)


def test_a_webhook_redirect_is_not_followed_and_its_url_never_shown(
        tmp_path: Path, caplog: Any, monkeypatch: Any, servers: Any) -> None:
    elsewhere = servers("127.0.0.2", 500)
    hook = servers("127.0.0.1", 307, {"Location": f"{elsewhere.url}/{HOOK_SECRET}/moved"})
    url = f"{hook.url}/hooks/{HOOK_SECRET}"
    config = project(tmp_path, "{type: file, path: helpdesk.json}", url)
    said = everything_said(tmp_path, caplog, monkeypatch, config, {"SLA_HOOK_URL": url})
    assert hook.requests and not elsewhere.requests  # not followed: the text is ticket data
    assert "POST answered with a redirect, which is not followed" in said
    assert_no_secret(said)
