"""The HTTP layer, against a real server on 127.0.0.1: retries, waits, throttle, errors."""

from __future__ import annotations

import logging
import socket
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from conftest import Waits
from sla_sync.connector.base import ConnectorError, OutcomeUnknown
from sla_sync.connector.http import (
    MAX_BODY_BYTES,
    HttpClient,
    LoopDetected,
    ServerClock,
    check_base_url,
    client_from_settings,
    follow,
    link_next,
)


def client(server, waits: Waits, **kwargs) -> HttpClient:
    return HttpClient(server.url, name="testdesk", sleep=waits.sleep, clock=waits.clock,
                      **kwargs)


def test_a_429_waits_what_retry_after_says_then_succeeds(local_server):
    waits = Waits()
    local_server.script = [(429, {"Retry-After": "7"}, {"error": "slow down"}),
                           (200, {}, {"tickets": []})]
    assert client(local_server, waits).json("GET", "/api/tickets") == {"tickets": []}
    assert waits.slept == [7.0]
    assert len(local_server.requests) == 2


def test_retry_after_as_an_http_date_is_honoured(local_server):
    waits = Waits()
    local_server.script = [(503, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, None)]
    client(local_server, waits).get("/x")
    assert waits.slept == [0.0]  # a date in the past: no wait, but one retry


def test_a_5xx_without_retry_after_backs_off_with_growing_jittered_waits(local_server):
    waits = Waits()
    local_server.script = [(502, {}, None), (500, {}, None), (504, {}, None)]
    client(local_server, waits).get("/x")
    assert len(waits.slept) == 3
    assert all(0 <= wait <= 0.5 * 2 ** (n + 1) for n, wait in enumerate(waits.slept))


def test_a_5xx_storm_exhausts_the_attempts_and_fails_retriably(local_server):
    waits = Waits()
    local_server.default = (503, {}, None)
    with pytest.raises(ConnectorError) as info:
        client(local_server, waits, max_attempts=4).get("/api/tickets")
    assert info.value.retriable and info.value.record_id is None
    assert str(info.value) == ("testdesk: GET /api/tickets still failing after retries "
                               "(HTTP 503): the helpdesk is unavailable or rate-limiting; "
                               "try again later")
    assert len(local_server.requests) == 4 and len(waits.slept) == 3


def test_the_total_wait_is_bounded(local_server):
    waits = Waits()
    local_server.default = (429, {"Retry-After": "50"}, None)
    with pytest.raises(ConnectorError):
        client(local_server, waits, max_retry_seconds=120).get("/x")
    assert waits.slept == [50.0, 50.0]  # a third wait would pass 120 s


def test_an_unreachable_host_is_retried_then_reported(local_server):
    waits = Waits()
    url = local_server.url
    local_server.httpd.shutdown()
    local_server.httpd.server_close()
    with pytest.raises(ConnectorError) as info:
        HttpClient(url, name="testdesk", sleep=waits.sleep, max_attempts=3).get("/x")
    assert "unreachable after retries (ConnectionError)" in str(info.value)
    assert len(waits.slept) == 2


@pytest.mark.parametrize(("status", "hint"), [
    (401, "authentication failed: check the credentials"),
    (403, "permission denied: the API user lacks a permission"),
    (404, "not found"),
    (422, "the helpdesk refused the change (Priority is invalid)"),
])
def test_errors_the_admin_can_act_on_are_not_retried_and_say_what_to_check(
        local_server, status, hint):
    waits = Waits()
    local_server.script = [(status, {}, {"description": "Priority is invalid"}
                            if status == 422 else {})]
    with pytest.raises(ConnectorError) as info:
        client(local_server, waits).put("/api/tickets/7", json={"priority": "x"},
                                        record_id="7")
    assert not info.value.retriable
    # Credentials and rights concern the helpdesk, not the record the request was about.
    assert info.value.record_id == (None if status in (401, 403) else "7")
    assert f"testdesk: PUT /api/tickets/7: HTTP {status}: {hint}" in str(info.value)
    assert waits.slept == []


def test_secrets_appear_in_no_message_or_log(local_server, caplog):
    caplog.set_level(logging.DEBUG)
    waits = Waits()
    secret = "s3cr3t-token-value"
    local_server.script = [(500, {}, None)]
    local_server.default = (401, {}, {"error": "bad token"})
    http = client(local_server, waits, auth=("agent@example.com/token", secret))
    with pytest.raises(ConnectorError) as info:
        http.get("/api/tickets", params={"page": 2})
    sent = local_server.requests[0][2]["Authorization"]
    assert sent.startswith("Basic ")  # the credentials did reach the server
    for leak in (secret, sent, sent.removeprefix("Basic ")):
        assert leak not in str(info.value) and leak not in caplog.text
    assert "retrying" in caplog.text  # the retry was logged, without the secret


def test_the_throttle_spaces_requests_to_the_budget(local_server):
    waits = Waits()
    http = client(local_server, waits, requests_per_minute=10)
    for _ in range(3):
        http.get("/x")
    assert waits.slept == [6.0, 6.0]


def test_a_spent_quota_waits_for_the_reset_the_server_announces(local_server):
    waits = Waits()
    local_server.script = [(200, {"X-Rate-Limit-Remaining": "0", "X-RateLimit-Reset": "12"},
                            {}), (200, {}, {})]
    http = client(local_server, waits)
    http.get("/x")
    http.get("/x")
    assert waits.slept == [12.0]


def test_a_spent_quota_without_a_reset_waits_out_the_window(local_server):
    waits = Waits()
    local_server.script = [(200, {"X-Ratelimit-Remaining": "0"}, {}), (200, {}, {}),
                           (200, {"X-HubSpot-RateLimit-Remaining": "0",
                                  "X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}, {}),
                           (200, {}, {})]
    http = client(local_server, waits)
    for _ in range(4):
        http.get("/x")
    assert waits.slept == [60.0, 10.0]


def test_a_spent_daily_quota_is_not_retried(local_server):
    waits = Waits()
    local_server.script = [(429, {}, {"status": "error", "policyName": "DAILY",
                                      "message": "You have reached your daily limit."})]
    with pytest.raises(ConnectorError, match="the daily API quota is spent") as info:
        client(local_server, waits).get("/crm/v3/objects/tickets")
    assert waits.slept == [] and len(local_server.requests) == 1
    assert not info.value.retriable


def test_a_body_that_is_not_json_is_a_connector_error(local_server):
    local_server.script = [(200, {}, None)]
    assert client(local_server, Waits()).json("GET", "/x") is None  # empty: nothing to decode

    http = client(local_server, Waits())
    http.session.request = lambda *a, **k: _text_response("<html>oops</html>")  # type: ignore
    with pytest.raises(ConnectorError, match="testdesk: GET /x: the response is not JSON"):
        http.json("GET", "/x")


def _text_response(text: str) -> requests.Response:
    response = requests.Response()
    response.status_code = 200
    response._content = text.encode()
    response.url = "http://127.0.0.1/x"
    return response


@pytest.mark.parametrize(("url", "message"), [
    ("http://acme.zendesk.com", "plain http is accepted for loopback addresses only"),
    ("ftp://acme.example.com", "is not an http(s) URL"),
    ("https://user:pw@acme.example.com", "put credentials in their own keys"),
    (None, "the helpdesk's base URL is required"),
    ("http://127.0.0.1:99999", "has a port that is not a number from 1 to 65535"),
    ("http://127.0.0.1:0", "has a port that is not a number from 1 to 65535"),
    ("https://acme.example.com:x1", "has a port that is not a number from 1 to 65535"),
])
def test_base_urls_are_https_or_loopback_http(url, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_base_url(url)


@pytest.mark.parametrize("url", ["https://acme.zendesk.com/", "http://127.0.0.1:8080",
                                 "http://localhost:9000", "http://[::1]:80"])
def test_https_and_loopback_urls_are_accepted(url):
    assert check_base_url(url) == url.rstrip("/")


def test_client_settings_are_checked_by_key():
    with pytest.raises(ValueError, match="connector.requests_per_minute: expected a positive"):
        client_from_settings({"url": "https://x.example.com", "requests_per_minute": 0}, "x")
    http = client_from_settings({"url": "https://x.example.com", "timeout": 5}, "x",
                                requests_per_minute=10)
    assert (http.timeout, http.throttle.per_minute) == (5.0, 10)


@pytest.mark.parametrize("ahead", [False, True])
def test_follow_gives_every_page_once_and_stops_on_a_repeated_token_after_its_page(ahead):
    pages = {"a": ("b", 1), "b": ("c", 2), "c": ("a", 3)}
    walked = follow("a", lambda body, _: body[0], lambda token: (pages[token], None),
                    "testdesk tickets", ahead=ahead)
    assert [next(walked) for _ in range(3)] == [("b", 1), ("c", 2), ("a", 3)]
    with pytest.raises(LoopDetected, match="the API returned the same page token twice"):
        next(walked)


def test_follow_ahead_reads_the_next_page_while_the_caller_works_on_this_one():
    read_two = threading.Event()
    asked: list[str] = []

    def fetch(token: str) -> tuple[Any, None]:
        asked.append(token)
        if token == "2":
            read_two.set()
        return {"next": None if token == "3" else str(int(token) + 1)}, None

    walked = follow("1", lambda body, _: body["next"], fetch, "testdesk", ahead=True)
    assert next(walked) == {"next": "2"}
    # Page 2 is read without being asked for (a bounded wait, not a sleep: it returns as
    # soon as the read happened; without the read-ahead it would never happen here).
    assert read_two.wait(10), "page 2 was not read while page 1 was being worked on"
    assert list(walked) == [{"next": "3"}, {"next": None}]
    assert asked == ["1", "2", "3"]


def test_follow_ahead_raises_a_failed_read_only_when_its_page_is_asked_for():
    def fetch(token: str) -> tuple[Any, None]:
        if token == "2":
            raise ConnectorError("testdesk: page 2 failed", retriable=True)
        return {"next": "2"}, None

    walked = follow("1", lambda body, _: body["next"], fetch, "testdesk", ahead=True)
    assert next(walked) == {"next": "2"}  # the caller gets page 1 whole, to commit it
    with pytest.raises(ConnectorError, match="page 2 failed"):
        next(walked)


def test_follow_ahead_stopped_early_waits_for_the_read_in_flight():
    release, started = threading.Event(), threading.Event()
    done: list[str] = []

    def fetch(token: str) -> tuple[Any, None]:
        if token == "2":
            started.set()
            assert release.wait(10)
        done.append(token)
        return {"next": str(int(token) + 1)}, None

    walked = follow("1", lambda body, _: body["next"], fetch, "testdesk", ahead=True)
    assert next(walked) == {"next": "2"}
    assert started.wait(10)
    closing = threading.Thread(target=walked.close)
    closing.start()
    release.set()
    closing.join(10)
    # The read in flight finished before close returned, and nothing more was read.
    assert not closing.is_alive() and done == ["1", "2"]


def test_link_next_reads_the_link_header(local_server):
    local_server.script = [(200, {"Link": f'<{local_server.url}/p2>; rel="next"'}, [])]
    response = client(local_server, Waits()).get("/p1")
    assert link_next(response) == f"{local_server.url}/p2"


# -- writes that must not be resent, and bounded answers, against a real server ----------

class FaultHandler(BaseHTTPRequestHandler):
    """Answers every request with the fault its FaultyServer's `mode` names."""

    faulty: FaultyServer
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        try:
            self._fault()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should

    def _fault(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.faulty.received += 1
        faults = {"reset": self._reset, "late": self._late, "trickle": self._trickle,
                  "huge-declared": self._huge_declared, "huge": self._huge}
        faults.get(self.faulty.mode, self._status)()

    def _reset(self) -> None:
        self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True

    def _late(self) -> None:
        self.faulty.release.wait(10)
        self._status()

    def _trickle(self) -> None:
        self._head(200, 1000)
        for _ in range(1000):
            if self.faulty.release.wait(0.05):
                return
            self.wfile.write(b" ")
            self.wfile.flush()
            self.faulty.sent += 1

    def _huge_declared(self) -> None:
        self._head(200, 100 * 1024 * 1024)

    def _huge(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for _ in range(64):
            chunk = b"[" + b"1," * 500 + b"1]"
            self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")

    def _status(self) -> None:
        body = b'{"ok": true}'
        self.send_response(self.faulty.status)
        for name, value in self.faulty.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _head(self, status: int, length: int) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.flush()

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *args: Any) -> None:
        pass


class FaultyServer:
    """A real HTTP server on 127.0.0.1 whose every answer is one of FaultHandler's faults, after
    reading the whole request (so a write has reached it). `mode` picks the fault:
    `late` answers only once `release` is set (after the client's timeout), `reset` closes
    the connection without an answer, `trickle` sends a body a byte at a time, `huge`
    declares or sends a body larger than allowed; `status` answers `status` with `headers`.
    `received` counts the requests that reached it."""

    def __init__(self) -> None:
        self.mode = "status"
        self.status = 200
        self.headers: dict[str, str] = {}
        self.received = 0
        self.sent = 0
        self.release = threading.Event()
        server = self

        class Handler(FaultHandler):
            faulty = server

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,),
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def faulty():
    server = FaultyServer()
    server.thread.start()
    yield server
    server.release.set()
    server.httpd.shutdown()
    server.httpd.server_close()


def fast(server, waits: Waits, **kwargs) -> HttpClient:
    return HttpClient(server.url, name="testdesk", sleep=waits.sleep, clock=waits.clock,
                      auth=("agent@example.com/token", SECRET), **{"timeout": 0.3,
                                                                    "max_attempts": 3,
                                                                    **kwargs})


SECRET = "s3cr3t-token-value"


def test_a_post_answered_after_the_timeout_is_not_resent(faulty):
    faulty.mode = "late"
    with pytest.raises(OutcomeUnknown) as info:
        fast(faulty, Waits()).post("/api/tickets/7/notes", json={"body": "Overdue"},
                                   record_id="7")
    assert faulty.received == 1, "a write that may have been applied was sent again"
    assert info.value.record_id == "7" and info.value.retriable
    assert "may or may not have been applied" in str(info.value)
    assert SECRET not in str(info.value)


def test_a_put_that_appends_is_not_resent_after_a_reset_mid_request(faulty):
    faulty.mode = "reset"
    with pytest.raises(OutcomeUnknown):
        fast(faulty, Waits()).put("/api/v2/tickets/update_many", json={"tickets": []})
    assert faulty.received == 1


def test_a_write_made_idempotent_by_its_caller_is_retried_after_a_timeout(faulty):
    faulty.mode = "late"
    with pytest.raises(OutcomeUnknown, match="may or may not have been applied"):
        fast(faulty, Waits()).put("/api/v2/tickets/7", json={"ticket": {"safe_update": True}},
                                  idempotent=True, record_id="7")
    # Resent (its version check makes a second one harmless), and since some attempt may
    # have been processed, the caller is told to read the record back.
    assert faulty.received == 3


def test_a_search_sent_as_post_is_a_read(faulty):
    faulty.mode = "late"
    with pytest.raises(ConnectorError, match="unreachable after retries") as info:
        fast(faulty, Waits()).post("/crm/v3/objects/tickets/search", json={}, write=False)
    assert not isinstance(info.value, OutcomeUnknown)
    assert faulty.received == 3


def test_a_get_that_times_out_is_retried(faulty):
    faulty.mode = "late"
    waits = Waits()
    with pytest.raises(ConnectorError, match="unreachable after retries") as info:
        fast(faulty, waits).get("/api/tickets")
    assert not isinstance(info.value, OutcomeUnknown)
    assert faulty.received == 3 and len(waits.slept) == 2


@pytest.mark.parametrize(("status", "headers"), [(429, {"Retry-After": "2"}),
                                                 (503, {"Retry-After": "3"})])
def test_a_post_refused_unprocessed_is_retried(faulty, status, headers):
    faulty.status, faulty.headers = status, headers
    waits = Waits()
    with pytest.raises(ConnectorError, match="still failing after retries"):
        fast(faulty, waits).post("/api/tickets/7/notes", json={})
    assert faulty.received == 3
    assert waits.slept == [float(headers["Retry-After"])] * 2


@pytest.mark.parametrize(("status", "headers"), [(503, {}), (500, {}), (502, {}), (504, {})])
def test_a_post_answered_with_another_5xx_is_not_resent(faulty, status, headers):
    faulty.status, faulty.headers = status, headers
    with pytest.raises(OutcomeUnknown, match=f"HTTP {status}"):
        fast(faulty, Waits()).post("/api/tickets/7/notes", json={})
    assert faulty.received == 1


def test_a_post_whose_connection_is_refused_is_retried():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    waits = Waits()
    http = HttpClient(f"http://127.0.0.1:{port}", name="testdesk", sleep=waits.sleep,
                      max_attempts=3, timeout=1)
    with pytest.raises(ConnectorError, match="unreachable after retries") as info:
        http.post("/api/tickets/7/notes", json={})
    assert not isinstance(info.value, OutcomeUnknown)
    assert len(waits.slept) == 2  # three attempts: the request never left


def test_a_trickling_body_stops_at_the_deadline(faulty):
    faulty.mode = "trickle"
    with pytest.raises(ConnectorError, match=r"did not arrive whole within 0.3s"):
        fast(faulty, Waits(), max_attempts=1).get("/api/tickets")
    # Every byte came well within the per-read timeout; only the whole-answer deadline
    # could stop it (the whole body takes 50 s).
    assert faulty.sent < 1000


def test_a_trickling_answer_to_a_write_is_an_unknown_outcome(faulty):
    faulty.mode = "trickle"
    with pytest.raises(OutcomeUnknown, match="did not arrive whole"):
        fast(faulty, Waits()).post("/api/tickets/7/notes", json={})
    assert faulty.received == 1


@pytest.mark.parametrize("mode", ["huge-declared", "huge"])
def test_a_body_larger_than_allowed_is_refused(faulty, mode):
    faulty.mode = mode
    with pytest.raises(ConnectorError, match=r"more than the 10000 bytes allowed "
                                             r"\(max_body_bytes\)") as info:
        fast(faulty, Waits(), max_attempts=1, max_body_bytes=10_000).get(
            "/api/tickets", params={"token": SECRET})
    assert "testdesk: GET /api/tickets" in str(info.value)
    assert SECRET not in str(info.value)


def test_a_body_under_the_limit_is_read_whole(faulty):
    faulty.mode = "huge"  # 64 chunks of 1003 bytes, chunked
    body = fast(faulty, Waits(), max_body_bytes=100_000).get("/api/tickets").content
    assert len(body) == 64 * 1003


def test_max_body_bytes_is_a_setting():
    http = client_from_settings({"url": "https://x.example.com", "max_body_bytes": 5000}, "x")
    assert http.max_body_bytes == 5000
    assert client_from_settings({"url": "https://x.example.com"}, "x").max_body_bytes \
        == MAX_BODY_BYTES


# -- the server's clock ------------------------------------------------------------------------

def answered(date: str | None) -> requests.Response:
    response = requests.Response()
    if date is not None:
        response.headers["Date"] = date
    return response


def test_the_server_clock_is_a_lower_bound_kept_from_the_dates_of_its_answers():
    waits = Waits()
    clock = ServerClock(waits.clock)
    for date in (None, "yesterday", "Sat, 99 Foo 2026 99:00:00 GMT"):
        clock.saw(answered(date))
    assert clock.now() is None and clock.until(5) == 0.0  # nothing known: nothing waited
    second = 1_772_000_000
    clock.saw(answered(formatdate(second, usegmt=True)))
    assert clock.now() == second
    waits.now += 0.9
    assert clock.now() == second  # the answer may have been written at the second's end
    clock.saw(answered(formatdate(second + 1, usegmt=True)))  # it ticked: a tighter bound
    assert clock.now() == second + 1
    waits.now += 0.5
    clock.saw(answered(formatdate(second, usegmt=True)))  # a slow answer: the bound holds
    assert clock.now() == second + 1
    assert clock.until(second + 2) == pytest.approx(0.501)
    waits.sleep(clock.until(second + 2))
    assert clock.now() == second + 2 and clock.until(second + 2) == 0.0


def test_every_answer_with_a_date_sets_the_clients_server_clock(local_server):
    waits = Waits()
    http = client(local_server, waits)
    assert http.server_clock.now() is None
    local_server.script = [(503, {}, {"error": "busy"}), (200, {}, {"tickets": []})]
    http.json("GET", "/api/tickets")
    # The test server stamps its answers with this machine's time (http.server).
    assert http.server_clock.now() is not None
    assert abs(http.server_clock.now() - time.time()) <= 2
