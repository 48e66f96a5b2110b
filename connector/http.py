"""One HTTP layer for every connector: a requests.Session with timeouts and auth, a
tenacity retry policy, a client-side throttle, and paginators: by cursor or Link header
(`follow`, `Tokens`), by page number (`PageNumbers`) and by page number up to a short page
(`ShortPages`, `numbered`).

- Retries: an idempotent request (a read, or a write the connector makes idempotent with a
  version check) is retried on 429, 5xx, timeouts and dropped connections. Any other write
  is retried only where the server guarantees it was not processed: the connection was
  never established, a 429, a 503 with Retry-After (RFC 9110 9.2.2). After a read timeout,
  a reset, another 5xx or an unreadable answer its outcome is unknown: OutcomeUnknown is
  raised, never a resend, and the sync loop reads the record back. A version-checked write
  that runs out of retries after such a failure raises OutcomeUnknown too. `Retry-After` (seconds
  or an HTTP date) is honoured, else the wait backs off exponentially with jitter. The
  total wait is bounded (`max_retry_seconds`), and so is the number of attempts; then a
  retriable ConnectorError is raised and the run fails with its cursor unmoved.
- Bounded answers: the whole response, body included, must arrive within `timeout`
  seconds of sending (a server trickling bytes cannot hold a run), and a body larger than
  `max_body_bytes` is refused, not read into memory.
- Throttle: requests are spaced to stay under a requests-per-minute budget; when the API
  reports its remaining quota in headers and it runs out, the client waits for the reset.
- Errors the admin can act on (401, 403, 404, 422) become ConnectorErrors that say what to
  check. Secrets (tokens, passwords, auth headers) never appear in messages or logs: only
  the method, the path and the status are ever quoted.
- Every attempt is logged at debug level (logger `sla_sync.http`): method, URL (no
  credentials, the values of query parameters that look secret elided, no path at all
  where the URL is a secret), status, duration and attempt number; never a header or body.
- `sleep` and `clock` are injectable, so tests retry and throttle without waiting.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlparse, urlsplit, urlunsplit

import requests
import urllib3.exceptions
from tenacity import RetryCallState, Retrying, retry_if_exception

from sla_sync.connector.base import ConnectorError, OutcomeUnknown
from sla_sync.connector.settings import HTTP

log = logging.getLogger("sla_sync.http")

#: Query parameters whose values are not logged: anything named like a credential.
SECRET_PARAM = re.compile(r"key|token|secret|pass|auth|sig|session|credential|code", re.I)
RETRIABLE_STATUS = frozenset({429, 500, 502, 503, 504})
#: Methods that change nothing: retried after any transient failure.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_BODY_BYTES = 64 * 1024 * 1024  # far above any page the connectors ask for
CHUNK = 64 * 1024
#: Headers that may carry the server's remaining quota and its reset, by vendor.
REMAINING_HEADERS = ("X-Rate-Limit-Remaining", "X-RateLimit-Remaining",
                     "X-Ratelimit-Remaining", "X-HubSpot-RateLimit-Remaining",
                     "ratelimit-remaining")
RESET_HEADERS = ("X-RateLimit-Reset", "ratelimit-reset", "X-Rate-Limit-Reset")
INTERVAL_HEADERS = ("X-HubSpot-RateLimit-Interval-Milliseconds",)


class HeaderToken(requests.auth.AuthBase):
    """A token sent as `Authorization: <scheme> <token>` (HubSpot's `Bearer`, RT's `token`);
    its repr never shows the token."""

    def __init__(self, scheme: str, token: str):
        self.scheme = scheme
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"{self.scheme} {self._token}"
        return request

    def __repr__(self) -> str:
        return f"HeaderToken({self.scheme!r}, ***)"


class RetriableResponse(Exception):
    """A response worth trying again (429, 5xx); carries the server's wait if it gave one."""

    def __init__(self, response: requests.Response, wait: float | None):
        super().__init__(f"HTTP {response.status_code}")
        self.response = response
        self.wait = wait


class BodyUnread(Exception):
    """The answer's body did not arrive whole: past the deadline, or larger than allowed."""

    def __init__(self, reason: str, status: int, transient: bool = True):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.transient = transient  # a body too large stays too large: not worth a retry


def check_base_url(url: Any, key: str = "connector.url") -> str:
    """An https URL, or plain http to a loopback address only (without a trailing slash);
    ValueError naming the key."""
    if not isinstance(url, str) or not url:
        raise ValueError(f"{key}: the helpdesk's base URL is required")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"{key}: {url!r} is not an http(s) URL")
    try:
        port = parsed.port  # urlparse checks the port only when asked for it
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError(f"{key}: {url!r} has a port that is not a number from 1 to 65535")
    if parsed.username or parsed.password:
        raise ValueError(f"{key}: put credentials in their own keys (from the environment), "
                         "not in the URL")
    if parsed.scheme == "http" and not is_loopback(parsed.hostname):
        raise ValueError(f"{key}: plain http is accepted for loopback addresses only; use "
                         "https")
    return url.rstrip("/")


#: Set by the CLI when it is asked to stop (SIGTERM, Ctrl-C): a wait before a retry or for
#: the throttle then ends at once instead of holding the stop up for minutes.
STOPPING = threading.Event()


class StoppedWaiting(ConnectorError):
    """A stop was asked for while waiting to try the helpdesk again: nothing more was sent."""


def wait(seconds: float) -> None:
    """Sleep between attempts; ends at once, raising StoppedWaiting, once STOPPING is set."""
    if STOPPING.wait(max(0.0, seconds)):
        raise StoppedWaiting("stopped while waiting to try the helpdesk again; nothing more "
                             "was sent")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def retry_after(response: requests.Response, now: Callable[[], float] = time.time,
                ) -> float | None:
    """Seconds the server asks to wait: `Retry-After` as seconds or an HTTP date."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now())
    except (TypeError, ValueError):
        return None


@dataclass
class Throttle:
    """Spaces requests to stay under `per_minute`; waits for the reset when the server says
    its quota is spent."""

    per_minute: float | None
    sleep: Callable[[float], None]
    clock: Callable[[], float]
    _next: float = 0.0

    def before(self) -> None:
        now = self.clock()
        if self._next > now:
            self.sleep(self._next - now)
        if self.per_minute:
            self._next = max(self._next, self.clock()) + 60.0 / self.per_minute

    def after(self, response: requests.Response) -> None:
        remaining = _header_number(response, REMAINING_HEADERS)
        if remaining is None or remaining > 0:
            return
        reset = _header_number(response, RESET_HEADERS)
        interval_ms = _header_number(response, INTERVAL_HEADERS)
        # Reset headers are seconds-until-reset on every API we speak to. Without one, wait
        # out the quota's window: HubSpot names it; Freshdesk's is a minute.
        if reset is not None and reset < 3600:
            wait = reset
        elif interval_ms is not None:
            wait = interval_ms / 1000
        else:
            wait = 60.0
        self._next = max(self._next, self.clock() + wait)


def _header_number(response: requests.Response, names: tuple[str, ...]) -> float | None:
    for name in names:
        value = response.headers.get(name)
        if value is not None:
            try:
                return float(value)
            except ValueError:
                return None
    return None


def _gave_up(exc: Exception, where: str, maybe_written: bool,
             record_id: str | None) -> ConnectorError:
    """The error for a request given up on: `maybe_written` when it is a write that may
    have reached the server (the caller then reads the record back)."""
    if maybe_written:
        return OutcomeUnknown(
            f"{where}: {_describe(exc)}: the write may or may not have been applied; "
            "sla-sync reads the record back instead of sending it again",
            record_id=record_id)
    if isinstance(exc, RetriableResponse):
        return ConnectorError(
            f"{where} still failing after retries (HTTP {exc.response.status_code}): "
            "the helpdesk is unavailable or rate-limiting; try again later",
            retriable=True, record_id=record_id)
    if isinstance(exc, BodyUnread):
        return ConnectorError(f"{where}: {exc.reason}", retriable=exc.transient,
                              record_id=record_id)
    return ConnectorError(f"{where} unreachable after retries ({_describe(exc)})",
                          retriable=True, record_id=record_id)


def server_date(response: requests.Response) -> int | None:
    """The server's clock when it answered, in Unix seconds: the `Date` header (RFC 9110
    section 6.6.1); None where it is missing or unreadable."""
    try:
        return int(parsedate_to_datetime(response.headers["Date"]).timestamp())
    except (KeyError, TypeError, ValueError, IndexError, OverflowError):
        return None


class ServerClock:
    """The server's clock as its answers show it: the `Date` header (RFC 9110 section
    6.6.1: the origin server's time when it wrote the answer, in whole seconds, so never
    later than its time when the answer came). `now()` is a lower bound of the server's time
    now, in whole seconds: of the answers seen, the one whose `Date` is furthest ahead of
    this machine's clock when it came, plus the time this clock has run since. None before
    any answer with a `Date`."""

    def __init__(self, clock: Callable[[], float]):
        self.clock = clock
        self._anchor: tuple[int, float] | None = None  # a Date, and this clock when it came

    def saw(self, response: requests.Response) -> None:
        date = server_date(response)
        if date is None:
            return
        at = self.clock()
        if self._anchor is None or date - at > self._anchor[0] - self._anchor[1]:
            self._anchor = (date, at)

    def now(self) -> int | None:
        if self._anchor is None:
            return None
        date, at = self._anchor
        return date + math.floor(self.clock() - at)

    def until(self, second: int) -> float:
        """Seconds of this machine's clock until `now()` reaches `second` (0: it has)."""
        if self._anchor is None:
            return 0.0
        date, at = self._anchor
        left = (second - date) - (self.clock() - at)
        return left + 0.001 if left > 0 else 0.0  # a millisecond against rounding


class HttpClient:
    def __init__(self, base_url: str, *, auth: Any = None,
                 headers: Mapping[str, str] | None = None, timeout: float = 30.0,
                 max_retry_seconds: float = 120.0, max_attempts: int = 8,
                 requests_per_minute: float | None = None, name: str = "helpdesk",
                 sleep: Callable[[float], None] | None = None,
                 clock: Callable[[], float] | None = None,
                 session: requests.Session | None = None, quote_paths: bool = True,
                 max_body_bytes: int = MAX_BODY_BYTES):
        self.base_url = base_url.rstrip("/") + "/"
        self.name = name
        self.timeout = timeout  # seconds for the whole answer of one attempt, body included
        self.max_body_bytes = max_body_bytes
        self.max_retry_seconds = max_retry_seconds
        self.max_attempts = max_attempts
        # Looked up at call time, so tests can patch connector.http.wait.
        self.sleep = sleep or (lambda seconds: wait(seconds))
        self.session = session or requests.Session()
        self.session.auth = auth
        self.session.headers.update({"Accept": "application/json",
                                     "User-Agent": "sla-sync"})
        self.session.headers.update(headers or {})
        self.throttle = Throttle(requests_per_minute, self.sleep,
                                 clock or (lambda: time.monotonic()))
        self.server_clock = ServerClock(self.throttle.clock)
        self.requests_sent = 0
        # False where the URL itself is a secret (webhooks): messages then name no path.
        self.quote_paths = quote_paths

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else \
            urljoin(self.base_url, path.lstrip("/"))

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                json: Any = None, ok: tuple[int, ...] = (200, 201, 202, 204, 207),
                record_id: str | None = None,
                headers: Mapping[str, str] | None = None,
                write: bool | None = None,
                idempotent: bool | None = None) -> requests.Response:
        """Send one request with retries; return a response whose status is in `ok`.
        `headers` are this request's own (e.g. If-Match), on top of the session's.
        `write` says whether the request changes the helpdesk (by default every method but
        GET, HEAD and OPTIONS; a search sent as POST is not), `idempotent` whether sending
        it twice is harmless (by default: a request that is not a write; a write guarded by
        a version check is too). A write that is not idempotent is never resent once it may
        have reached the server; a write that fails after an attempt may have been
        processed raises OutcomeUnknown, so that the caller reads the record back."""
        url = self.url(path)
        where = f"{self.name}: {method}" + (f" {urlparse(url).path}" if self.quote_paths else "")
        if write is None:
            write = method.upper() not in SAFE_METHODS
        if idempotent is None:
            idempotent = not write
        reached = False  # an attempt may have been processed by the server

        def retriable(error: BaseException) -> bool:
            nonlocal reached
            if not isinstance(error, RetriableResponse | BodyUnread | requests.ConnectionError
                              | requests.Timeout):
                return False
            unprocessed = _unprocessed(error)
            reached = reached or not unprocessed
            if isinstance(error, BodyUnread) and not error.transient:
                return False
            return idempotent or unprocessed

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            if isinstance(error, RetriableResponse) and error.wait is not None:
                return error.wait
            return min(30.0, random.uniform(0, 0.5 * 2 ** state.attempt_number))

        def stop(state: RetryCallState) -> bool:
            return (state.attempt_number >= self.max_attempts
                    or state.idle_for + wait(state) > self.max_retry_seconds)

        def log_retry(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            delay = state.next_action.sleep if state.next_action else 0
            log.warning("%s: %s; retrying in %.1fs", where, _describe(error), delay,
                        extra={"event": "retry", "connector": self.name, "method": method,
                               "attempt": state.attempt_number, "wait_s": round(delay, 1)})

        retrying = Retrying(retry=retry_if_exception(retriable), wait=wait, stop=stop,
                            sleep=self.sleep, before_sleep=log_retry, reraise=True)
        attempts = 0

        def attempt() -> requests.Response:
            nonlocal attempts
            attempts += 1
            return self._send(method, url, params, json, headers, where, attempts)

        try:
            response = retrying(attempt)
        except (RetriableResponse, requests.ConnectionError, requests.Timeout,
                BodyUnread) as exc:
            raise _gave_up(exc, where, write and (reached or not _unprocessed(exc)),
                           record_id) from None
        if response.status_code in ok:
            return response
        # Bad credentials or rights concern the helpdesk as a whole, never one record.
        raise ConnectorError(f"{where}: {_explain(response)}", retriable=False,
                             record_id=None if response.status_code in (401, 403)
                             else record_id)

    def _send(self, method: str, url: str, params: Mapping[str, Any] | None,
              body: Any, headers: Mapping[str, str] | None = None,
              where: str = "", attempt: int = 1) -> requests.Response:
        self.throttle.before()
        self.requests_sent += 1
        started = time.monotonic()
        try:
            response = self.session.request(method, url, params=params, json=body,
                                            headers=headers, timeout=self.timeout, stream=True)
            try:
                self._read_body(response, started + self.timeout)
            finally:
                if response.raw is not None:
                    response.close()
        except (requests.RequestException, BodyUnread) as exc:
            self._log(method, url, params, None, started, attempt, _describe(exc)
                      if isinstance(exc, BodyUnread) else type(exc).__name__)
            raise
        self._log(method, url, params, response.status_code, started, attempt)
        self.server_clock.saw(response)
        self.throttle.after(response)
        if response.status_code in RETRIABLE_STATUS and not _daily_quota_spent(response):
            raise RetriableResponse(response, retry_after(response))
        return response

    def _log(self, method: str, url: str, params: Mapping[str, Any] | None,
             status: int | None, started: float, attempt: int, error: str = "") -> None:
        if not log.isEnabledFor(logging.DEBUG):
            return
        shown = self.shown_url(url, params)
        ms = round((time.monotonic() - started) * 1000)
        answer = f"HTTP {status}" if status is not None else f"failed ({error})"
        log.debug("%s: %s %s: %s in %d ms (attempt %d)", self.name, method, shown, answer, ms,
                  attempt, extra={"event": "http", "connector": self.name, "method": method,
                                  "url": shown, "status": status, "duration_ms": ms,
                                  "attempt": attempt, "retries": attempt - 1,
                                  **({"error": error} if error else {})})

    def shown_url(self, url: str, params: Mapping[str, Any] | None = None) -> str:
        """The URL as a log may show it: scheme, host and port (never credentials), the path
        unless the URL is a secret (a webhook's), and the query with the values of
        secret-looking parameters elided."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        try:
            netloc += f":{parts.port}" if parts.port else ""
        except ValueError:
            pass
        if not self.quote_paths:
            return f"{parts.scheme}://{netloc}/(withheld)"
        query = parse_qsl(parts.query, keep_blank_values=True)
        for key, value in (params or {}).items():
            values = value if isinstance(value, list | tuple) else [value]
            query += [(str(key), str(v)) for v in values if v is not None]
        query = [(k, "***" if SECRET_PARAM.search(k) else v) for k, v in query]
        return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe="[]:,*"),
                           ""))

    def _read_body(self, response: requests.Response, deadline: float) -> None:
        """Read the streamed body into `response` by `deadline`, at most max_body_bytes."""
        if response.raw is None or getattr(response, "_content_consumed", False):
            return  # already read (a stand-in session in tests)
        limit = self.max_body_bytes
        status = response.status_code
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise BodyUnread(f"the answer is {int(declared)} bytes, more than the {limit} "
                             "bytes allowed (max_body_bytes)", status, transient=False)
        raw = response.raw
        # read1 returns after one socket read, so the deadline is checked between reads.
        read = getattr(raw, "read1", None) or raw.read
        sock = getattr(getattr(raw, "_connection", None), "sock", None)
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BodyUnread(f"the answer did not arrive whole within "
                                     f"{self.timeout:g}s (timeout)", status)
                _socket_timeout(sock, left)
                chunk = read(CHUNK, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise BodyUnread(f"the answer is more than the {limit} bytes allowed "
                                     "(max_body_bytes)", status, transient=False)
                chunks.append(chunk)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if isinstance(exc, TimeoutError | urllib3.exceptions.ReadTimeoutError):
                raise BodyUnread(f"the answer did not arrive whole within "
                                 f"{self.timeout:g}s (timeout)", status) from None
            raise BodyUnread(f"the answer was cut short ({type(exc).__name__})",
                             status) from None
        finally:
            _socket_timeout(sock, self.timeout)  # as it was, for the next request on it
        response._content = b"".join(chunks)
        response._content_consumed = True  # type: ignore[attr-defined]

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PUT", path, **kwargs)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """The decoded JSON body; a malformed body is a ConnectorError, not a crash (for a
        write that is not idempotent, OutcomeUnknown: it may have been applied)."""
        response = self.request(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        path = f" {urlparse(response.url).path}" if self.quote_paths else ""
        # A write that was answered was processed, whatever the answer looks like.
        write = kwargs.get("write")
        written = method.upper() not in SAFE_METHODS if write is None else write
        return decode_json(response, f"{self.name}: {method}{path}", written=written,
                           record_id=kwargs.get("record_id"))


def client_from_settings(settings: Mapping[str, Any], name: str, *, auth: Any = None,
                         headers: Mapping[str, str] | None = None,
                         requests_per_minute: float | None = None) -> HttpClient:
    """An HttpClient from a connector's config: `url` (https, or http to loopback) and the
    optional HTTP settings (connector/settings.py `HTTP`); ValueError naming the key."""
    url = check_base_url(settings.get("url"))
    numbers: dict[str, float] = {
        s.key: float(s.kind.read(settings[s.key], f"connector.{s.key}"))
        for s in HTTP if settings.get(s.key) is not None}
    return HttpClient(url, auth=auth, headers=headers, name=name,
                      timeout=numbers.get("timeout", 30.0),
                      max_retry_seconds=numbers.get("max_retry_seconds", 120.0),
                      max_attempts=int(numbers.get("max_attempts", 8)),
                      max_body_bytes=int(numbers.get("max_body_bytes", MAX_BODY_BYTES)),
                      requests_per_minute=numbers.get("requests_per_minute",
                                                      requests_per_minute or 0) or None)


def decode_json(response: requests.Response, where: str, *, written: bool = False,
                record_id: str | None = None) -> Any:
    """The decoded body; a body that is not JSON is a ConnectorError naming `where`. With
    `written` (the answer to a write that is not idempotent) it is OutcomeUnknown: the
    helpdesk may have applied the write whatever its answer looks like."""
    try:
        return response.json()
    except ValueError:
        if written:
            raise OutcomeUnknown(f"{where}: the answer is not JSON, so whether the write "
                                 "was applied is unknown; sla-sync reads the record back",
                                 record_id=record_id) from None
        raise ConnectorError(f"{where}: the response is not JSON") from None


def _not_processed(response: requests.Response) -> bool:
    """Statuses after which the server guarantees it did not process the request: 429 (the
    vendors refuse before processing) and 503 with Retry-After, the server saying it could
    not handle the request and when to come back (RFC 9110 15.6.4, 10.2.3)."""
    status = response.status_code
    return status == 429 or (status == 503 and "Retry-After" in response.headers)


def _unprocessed(error: BaseException) -> bool:
    """The failed attempt cannot have been processed: the server refused it unprocessed, or
    it never reached the server. A body that did not arrive whole came from a server that
    answered, so it processed the request."""
    if isinstance(error, RetriableResponse):
        return _not_processed(error.response)
    if isinstance(error, requests.ConnectionError | requests.Timeout):
        return _never_sent(error)
    return False


def _never_sent(error: BaseException) -> bool:
    """The connection was never established, so the request cannot have been processed."""
    seen: set[int] = set()
    pending: list[Any] = [error]
    while pending:
        item = pending.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, requests.ConnectTimeout | urllib3.exceptions.NewConnectionError
                      | urllib3.exceptions.ConnectTimeoutError):
            return True
        if isinstance(item, BaseException):
            pending += [getattr(item, "reason", None), item.__cause__, item.__context__,
                        *[a for a in item.args if isinstance(a, BaseException)]]
    return False


def _socket_timeout(sock: Any, seconds: float) -> None:
    """Bound the next socket read by what is left of the deadline (urllib3 keeps the
    connection on the response while it streams); without it, a read still ends within
    `timeout`."""
    if sock is not None:
        try:
            sock.settimeout(max(0.001, seconds))
        except OSError:
            pass


def _daily_quota_spent(response: requests.Response) -> bool:
    """A 429 for a daily quota (HubSpot says `"policyName": "DAILY"`): waiting minutes will
    not help, so it is not retried."""
    if response.status_code != 429 or b"DAILY" not in response.content:
        return False
    try:
        return response.json().get("policyName") == "DAILY"
    except (ValueError, AttributeError):
        return False


def _describe(error: BaseException | None) -> str:
    if isinstance(error, RetriableResponse):
        return f"HTTP {error.response.status_code}"
    if isinstance(error, BodyUnread):
        return error.reason
    return type(error).__name__ if error is not None else "error"


def _explain(response: requests.Response) -> str:
    status = response.status_code
    hint = {
        401: "authentication failed: check the credentials the config reads from the "
             "environment",
        403: "permission denied: the API user lacks a permission sla-sync needs (see the "
             "README section for this helpdesk)",
        404: "not found (deleted, or the URL points at the wrong account)",
        429: "the daily API quota is spent; the next run after it resets continues",
        409: "conflict: the record changed since it was read",
        412: "precondition failed: the record changed since it was read",
        422: "the helpdesk refused the change",
    }.get(status, "unexpected response")
    detail = ""
    try:
        body = response.json()
        if isinstance(body, dict):
            detail = str(body.get("description") or body.get("message") or
                         body.get("error") or "")[:200]
    except ValueError:
        pass
    return f"HTTP {status}: {hint}" + (f" ({detail})" if detail else "")


# -- asynchronous jobs -------------------------------------------------------------------

def poll_delays(timeout: float, first: float = 1.0, most: float = 10.0) -> Iterator[float]:
    """Waits between polls of an asynchronous job (a bulk update): 1, 2, 4, 8, then 10 s,
    until they add up to `timeout`."""
    waited, delay = 0.0, first
    while waited < timeout:
        yield delay
        waited += delay
        delay = min(delay * 2, most)


# -- pagination --------------------------------------------------------------------------

class LoopDetected(ConnectorError):
    def __init__(self, where: str, token: str):
        super().__init__(f"{where}: the API returned the same page token twice ({token[:40]}); "
                         "stopping instead of looping")


def follow(first: str, next_of: Callable[[Any, requests.Response], str | None],
           fetch: Callable[[str], tuple[Any, requests.Response]], where: str,
           ahead: bool = False) -> Iterator[Any]:
    """Pages from `first` on: `next_of(body, response)` gives the next URL or token, None at
    the end. A token seen twice is an error, never an endless loop.

    With `ahead`, the next page is read in a thread of its own while the caller works on
    the one it was given, so that the helpdesk's time to answer overlaps the caller's: for
    long exports whose `fetch` and `next_of` depend on nothing the caller does with a page
    (`next_of` is called once the page is read, before the next read starts; `fetch` runs
    in that thread, so it must not share a throttle with requests the caller makes
    meanwhile). A read that fails raises when its page is asked for, after the caller has
    finished with the pages before it; a caller that stops early waits for the read in
    flight, and its page is dropped."""
    if not ahead:
        seen: set[str] = set()
        token: str | None = first
        while token is not None:
            if token in seen:
                raise LoopDetected(where, token)
            seen.add(token)
            body, response = fetch(token)
            yield body
            token = next_of(body, response)
        return
    with ThreadPoolExecutor(1, thread_name_prefix="sla-sync-read-ahead") as pool:
        seen = {first}
        reading: Future[tuple[Any, requests.Response]] | None = pool.submit(fetch, first)
        while reading is not None:
            body, response = reading.result()
            reading, loop = None, None
            token = next_of(body, response)
            if token is not None and token in seen:
                loop = LoopDetected(where, token)  # after this page, as without `ahead`
            elif token is not None:
                seen.add(token)
                reading = pool.submit(fetch, token)
            yield body
            if loop is not None:
                raise loop


def link_next(response: requests.Response) -> str | None:
    """The `rel="next"` URL of a Link header (Freshdesk, GitHub-style paging)."""
    return response.links.get("next", {}).get("url")


class PageNumbers:
    """Page-number paging (`page=1, 2, ...`) as a small object: read page `page`, then
    `advance(more)` with whether the answer says there is another. `restart()` goes back to
    the first page, for a query re-anchored on a new edge."""

    def __init__(self, where: str, first: int = 1):
        self.where = where
        self.first = first
        self.page = first
        self.more = True

    def advance(self, more: bool) -> None:
        self.more = more
        if more:
            self.page += 1

    def restart(self) -> None:
        self.page = self.first


class ShortPages(PageNumbers):
    """Page-number paging that ends at a short page (fewer than `size` items), for APIs
    that say nothing else about the end (RT's REST2 collections). A page the same as the one
    before is an error (a server that ignores `page` would otherwise be read for ever)."""

    def __init__(self, where: str, size: int, first: int = 1):
        super().__init__(where, first)
        self.size = size
        self._last: list[Any] | None = None

    def advance(self, items: list[Any]) -> None:  # type: ignore[override]
        if items and items == self._last:
            raise LoopDetected(self.where, f"page {self.page}")
        self._last = list(items)
        super().advance(len(items) >= self.size)

    def restart(self) -> None:
        super().restart()
        self._last = None


class Tokens:
    """Cursor paging as a small object: `token` is None for a query's first page; `advance`
    with the answer's next token (None at the end). A token seen twice in one query is an
    error, never an endless loop. `restart()` starts a new query (re-anchored)."""

    def __init__(self, where: str):
        self.where = where
        self.token: str | None = None
        self.more = True
        self._seen: set[str] = set()

    def advance(self, token: str | None) -> None:
        if token is not None and token in self._seen:
            raise LoopDetected(self.where, token)
        if token is not None:
            self._seen.add(token)
        self.token = token
        self.more = token is not None

    def restart(self) -> None:
        self.token = None
        self._seen.clear()


def numbered(read: Callable[[int], list[Any]], size: int, where: str, first: int = 1,
             ) -> Iterator[list[Any]]:
    """The pages of a page-numbered listing that ends at a short page: `read(n)` gives page
    n's items."""
    pages = ShortPages(where, size, first)
    while pages.more:
        items = read(pages.page)
        pages.advance(items)  # a repeated page is refused before it is used
        yield items
