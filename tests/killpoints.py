"""Test-only entry point: the sla-sync CLI (`sync.main`, what the `sla-sync` script runs)
with kill points, for crash tests. `python -m tests.killpoints run --config ...`, or
`python -m tests.killpoints --serve`: a launcher that imports sla-sync once and forks one
child process per run (see `serve`), which saves the half second of imports per run.

- `SLA_SYNC_KILL=POINT:N` SIGKILLs the process the Nth time it reaches POINT (see POINTS).
- `SLA_SYNC_POINTS=FILE`: at a normal exit, FILE receives {"points": {POINT: times reached},
  "waits": [seconds...]}, so a test can first count a run's points, then kill at each.
- The sync's waits (retry backoff, Retry-After, job polls, throttle) are recorded in that
  file instead of slept, as tests/test_zendesk.py does in-process: the waits' lengths are
  asserted, no test waits them out.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

POINTS = {
    "journal": "a write was journalled (pending), not sent yet",
    "request": "an HTTP request is about to be sent",
    "write": "an HTTP write (any method but GET) is about to be sent",
    "answered": "an HTTP write was answered, before the caller sees the answer",
    "applied": "the connector's apply/apply_many returned, nothing recorded yet",
    "commit": "inside the ledger commit of one record, just before its COMMIT",
    "committed": "the ledger commit of one record returned",
    "cursor": "inside the cursor move (and the memory's with it), just before its COMMIT",
    "memory": "inside a keep of the connector's memory (a page's stories), before its COMMIT",
    "cursor_moved": "the cursor move returned",
    "fsync": "the file helpdesk is about to fsync its new file",
    "rename": "the file helpdesk is about to rename its new file into place",
    "renamed": "the file helpdesk renamed its new file into place",
}

reached: Counter[str] = Counter()
waits: list[float] = []
target: list[Any] = [None, 0]  # the point to kill at, and at which time it is reached


def hit(point: str) -> None:
    reached[point] += 1
    if point == target[0] and reached[point] == target[1]:
        os.kill(os.getpid(), signal.SIGKILL)


def _after(point: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        result = function(*args, **kwargs)
        hit(point)
        return result
    return wrapped


def _before(point: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        hit(point)
        return function(*args, **kwargs)
    return wrapped


def install() -> None:
    wanted = os.environ.get("SLA_SYNC_KILL", "")
    point, _, nth = wanted.partition(":")
    if wanted and (point not in POINTS or not nth.isdigit()):
        raise SystemExit(f"SLA_SYNC_KILL={wanted!r}: expected POINT:N, POINT one of "
                         f"{', '.join(POINTS)}")
    target[:] = [point or None, int(nth or 0)]

    import requests

    from sla_sync import sync, sync_state
    from sla_sync.connector import file as connector_file
    from sla_sync.connector import http as connector_http
    store = sync_state.StateStore
    inside: list[str] = []  # "commit" / "cursor" while one of those runs

    def traced(statement: str) -> None:
        if statement.strip().upper().startswith("COMMIT") and inside:
            hit(inside[-1])

    original_init = store.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.db.set_trace_callback(traced)

    def within(point: str, after: str | None, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            inside.append(point)
            try:
                result = function(*args, **kwargs)
            finally:
                inside.pop()
            if after:
                hit(after)
            return result
        return wrapped

    store.__init__ = init  # type: ignore[method-assign]
    store.begin_write = _after("journal", store.begin_write)  # type: ignore[method-assign]
    store.commit = within("commit", "committed", store.commit)  # type: ignore[method-assign]
    store.move_cursor = within("cursor", "cursor_moved",  # type: ignore[method-assign]
                               store.move_cursor)
    staged = sync_state.StagedMemory
    staged.keep = within("memory", None, staged.keep)  # type: ignore[method-assign]

    send = requests.Session.send

    def sending(self: Any, request: Any, **kwargs: Any) -> Any:
        hit("request")
        if request.method != "GET":
            hit("write")
        response = send(self, request, **kwargs)
        if request.method != "GET":
            hit("answered")
        return response

    requests.Session.send = sending  # type: ignore[method-assign]

    opened = sync.open_connector
    depth = [0]

    def outermost(function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            depth[0] += 1
            try:
                result = function(*args, **kwargs)
            finally:
                depth[0] -= 1
            if depth[0] == 0:
                hit("applied")
            return result
        return wrapped

    def open_connector(*args: Any, **kwargs: Any) -> Any:
        instance = opened(*args, **kwargs)
        instance.apply = outermost(instance.apply)  # type: ignore[method-assign]
        instance.apply_many = outermost(instance.apply_many)  # type: ignore[method-assign]
        return instance

    sync.open_connector = open_connector  # type: ignore[assignment]

    file_os = connector_file.os
    # connector.file calls os.fsync / os.replace; nothing else in a sync does.
    file_os.fsync = _before("fsync", file_os.fsync)  # type: ignore[assignment]
    replace = file_os.replace
    file_os.replace = _after("renamed", _before("rename", replace))  # type: ignore[assignment]

    connector_http.wait = waits.append  # type: ignore[assignment]


def _report() -> None:
    path = os.environ.get("SLA_SYNC_POINTS")
    if path:
        with open(path, "w") as out:
            json.dump({"points": dict(reached), "waits": waits}, out)


def main() -> None:
    install()
    atexit.register(_report)
    from sla_sync.sync import main as cli
    cli(prog_name="sla-sync", args=sys.argv[1:])


def serve() -> None:
    """The launcher: reads one JSON line per run on stdin ({"args", "cwd", "env", "stdout",
    "stderr"}), forks a child that runs the CLI there with that environment (its output in
    those files) and answers `pid N`, then `exit CODE` (-9: SIGKILLed) when it ended."""
    import traceback

    from sla_sync import sync
    from sla_sync.connector import file as connector_file  # noqa: F401 (imported once, before the forks)
    from sla_sync.connector import zendesk as connector_zendesk  # noqa: F401
    for line in sys.stdin:
        job = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:  # the child: one sla-sync run
            code = 1
            try:
                os.chdir(job["cwd"])
                os.environ.clear()
                os.environ.update(job["env"])
                for fd, path in ((1, job["stdout"]), (2, job["stderr"])):
                    out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    os.dup2(out, fd)
                    os.close(out)
                sys.stdin.close()
                install()
                try:
                    sync.main(prog_name="sla-sync", args=job["args"])
                    code = 0
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else (exc.code is not None)
            except BaseException:
                traceback.print_exc()  # what the interpreter would print
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                _report()
                os._exit(code)
        print(f"pid {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"exit {os.waitstatus_to_exitcode(status)}", flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        main()
