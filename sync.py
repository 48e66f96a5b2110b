"""The sla-sync command line: run a sync, validate a policy, explain a record, report.

A thin click layer over sync_run (the loop), sync_config, sync_state and rules; library
errors become clean exits with a message naming the file, path or record involved.

Exit codes: 0 done (and `run --every` stopped by SIGTERM or Ctrl-C); 1 the run failed (the
helpdesk could not be read or written, or an unexpected error; the cursor did not move), or
`--every` gave up after N failed syncs in a row; 2 bad usage, configuration, policy or state
file (nothing was read or written), or a file that cannot be read or written (a missing
path, a folder, permissions, a full disk; the file helpdesk's file too); 3 the run finished
but some records could not be written or evaluated; 4 another sync holds the state file;
130 / 143 a single run stopped by Ctrl-C / SIGTERM after recording the write in flight.

What a command says about its work (warnings, skipped records, errors, the summary of a
run under --every) goes through `logging`, configured here once per command by sync_log
(-v, -q, --log-format); stdout carries the command's own output.
"""

from __future__ import annotations

import ast
import gc
import importlib
import json
import logging
import os
import re
import signal
import sqlite3
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from sla_sync import sync_log
from sla_sync.connector import ConnectorError, Record, RecordError, open_connector
from sla_sync.connector.file import FileHelpdesk, FileProblem, file_problem
from sla_sync.connector.model import format_instant, parse_instant
from sla_sync.rules.breaches import breaches as breach_audit
from sla_sync.rules.calendar import Holidays
from sla_sync.rules.durations import format_duration, parse_duration
from sla_sync.rules.engine import SlaMark
from sla_sync.rules.explain import explain as explain_plan
from sla_sync.rules.explain import explain_data
from sla_sync.rules.metrics import (
    DEFAULT_WORK_STATUSES,
    EVERY,
    SEGMENT_FIELDS,
    escalation_totals,
)
from sla_sync.rules.metrics import queue as open_queue
from sla_sync.rules.metrics import report as metrics_report
from sla_sync.rules.planner import plan
from sla_sync.rules.policy import Policy, PolicyError, load_policy
from sla_sync.sync_config import Config, ConfigError, load_config, locate
from sla_sync.sync_options import breakdowns, instant_option
from sla_sync.sync_report import (
    FORMATS,
    as_csv,
    as_json,
    breaches_csv,
    breaches_table,
    html_report,
    prometheus,
    queue_table,
    table,
    write_report,
)
from sla_sync.sync_run import RunReport, agent_pool, desk_load, run_sync, uses_assign_next
from sla_sync.sync_state import StateError, StateLock, StateLocked, StateStore

if TYPE_CHECKING:
    from sla_sync.sync_alerts import Alerts

log = logging.getLogger("sla_sync.cli")
EXIT_FAILED, EXIT_INVALID, EXIT_PARTIAL, EXIT_LOCKED = 1, 2, 3, 4
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: A run stopped by a signal before it finished exits 128 + the signal, as shells report it.
EXIT_STOPPED: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}
MIN_INTERVAL = 10  # seconds between syncs, at least
MAX_BACKOFF = 3600  # seconds: failed syncs double the wait up to this (or the interval)
DEFAULT_GIVE_UP_AFTER = 10
#: SQLite's errors that are the state file's disk or permissions, and what to do about them.
STATE_FILE_PROBLEMS = {
    "SQLITE_FULL": "the disk is full: free space on it, then run again (what was recorded "
                   "before stays; the write in flight is settled by the next run)",
    "SQLITE_READONLY": "make the file and its folder writable by the user sla-sync runs as",
    "SQLITE_CANTOPEN": "check that the state file's folder exists and is writable",
    "SQLITE_IOERR": "the disk failed to write: check it (dmesg), then run again",
}


class Exit(click.ClickException):
    def __init__(self, message: str, code: int):
        super().__init__(message)
        # click declares exit_code on the class; each of our exits carries its own.
        self.exit_code = code  # type: ignore[misc]

    def show(self, file: Any = None) -> None:
        """The error as one log record (timestamped, or JSON) once logging is set up."""
        if sync_log.active() is None:
            super().show(file)
            return
        log.error(self.message, extra={"event": "exit", "exit_code": self.exit_code})


def _now(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        return parse_instant(value, "--now")
    except ValueError as exc:
        raise click.BadParameter(str(exc).removeprefix("--now: "), param_hint="--now") from None


def _config(path: str | None) -> Config:
    try:
        return load_config(locate(path))
    except ConfigError as exc:
        raise Exit(str(exc), EXIT_INVALID) from None


def _policy(path: Path, holidays: Holidays | None = None) -> Policy:
    try:
        policy = load_policy(path, holidays)
    except PolicyError as exc:
        raise Exit(str(exc), EXIT_INVALID) from None
    for warning in policy.warnings:
        log.warning(f"{path}: {warning}", extra={"event": "policy"})
    return policy


def _kept_holidays(config: Config, dry_run: bool) -> Holidays | None:
    """A run keeps the public holidays it computed beside the state (rules/holiday_store.py):
    the next run's policy load then needs no `holidays` import. A dry run writes nothing."""
    if dry_run:
        return None
    from sla_sync.rules.holiday_store import HolidayStore
    return HolidayStore(config.state.with_name(config.state.name + "-holidays"))


def _connector(config: Config) -> Any:
    try:
        return open_connector(dict(config.connector), config.base_dir)
    except ValueError as exc:
        raise Exit(f"{config.path}: {exc}", EXIT_INVALID) from None


def _webhooks(config: Config, policy: Policy, connector: Any = None) -> Alerts | None:
    """The plain webhooks and the alert channels; `connector`'s directory (where it has one)
    finds the address of an `{assignee}`. None when the config defines neither (the HTTP
    library is then never loaded: a sync of the file helpdesk starts faster)."""
    webhooks = None
    if config.webhooks is not None or config.notify is not None:
        from sla_sync.sync_alerts import Alerts
        try:
            webhooks = Alerts.from_config(config.webhooks, config.notify, config.teams,
                                          config.oncall, getattr(connector, "directory", None))
        except ValueError as exc:
            raise Exit(f"{config.path}: {exc}", EXIT_INVALID) from None
    _check_webhooks(config, policy, webhooks)
    return webhooks


def _check_webhooks(config: Config, policy: Policy, webhooks: Alerts | None) -> None:
    names = webhooks.names if webhooks is not None else frozenset()
    missing = [(path, name) for path, name in policy.webhooks if name not in names]
    if missing:
        lines = "\n".join(f"  {path}: webhook {name!r} is not defined under `webhooks:` or "
                          f"`notify:` in {config.path}" for path, name in missing)
        raise Exit(f"{policy.source}: notify names unknown webhooks:\n{lines}", EXIT_INVALID)


config_option = click.option(
    "--config", "config_path", metavar="FILE",
    help="Configuration file (default: $SLA_SYNC_CONFIG, else ./config.yaml).")
now_option = click.option(
    "--now", "now_text", metavar="ISO",
    help="Evaluate as if it were this instant (ISO 8601 with an offset); default: now.")


def _late_log_option(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """-v, -q or --log-format given after the command: set up logging again with it."""
    setup = sync_log.active()
    if not value or ctx.resilient_parsing or setup is None:
        return value
    verbose = setup.verbose or param.name == "verbose"
    quiet = setup.level >= logging.WARNING or param.name == "quiet"
    fmt = value if param.name == "log_format" else setup.format
    if verbose and quiet:
        raise click.UsageError("-v and -q contradict each other: give one")
    sync_log.configure(verbose=verbose, quiet=quiet, fmt=fmt)
    return value


#: The global options, accepted after the command too (`sla-sync run -v ...`).
LATE_LOG_OPTIONS = [
    click.Option(["-v", "--verbose"], is_flag=True, expose_value=False, is_eager=True,
                 callback=_late_log_option, help="As before the command: debug records too."),
    click.Option(["-q", "--quiet"], is_flag=True, expose_value=False, is_eager=True,
                 callback=_late_log_option, help="As before the command: only warnings and "
                                                 "errors."),
    click.Option(["--log-format"], type=click.Choice(sync_log.FORMATS), expose_value=False,
                 is_eager=True, callback=_late_log_option, help="As before the command."),
]


def _http() -> Any:
    """The HTTP layer if a connector or webhook loaded it, else None: without it no request
    can be waiting to be retried (it is loaded where needed, not at start-up, and not
    imported from a signal handler)."""
    return sys.modules.get("sla_sync.connector.http")


class Cli(click.Group):
    """The command group; the logging a command set up is undone when it ends (the CLI may
    run several times in one process: tests, or a program that embeds it). Every command
    also takes the global log options after its name."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().main(*args, **kwargs)
        finally:
            sync_log.reset()

    #: Commands whose module is imported when the command is asked for, not at start-up:
    #: name -> (module, its command or tuple of commands). A sync never pays for their
    #: imports: the rule author's (test, lint, schema, backtest), audit and undo, check.
    LAZY = {**dict.fromkeys(("test", "lint", "schema", "backtest"),
                            ("sla_sync.sync_author", "AUTHOR_COMMANDS")),
            **dict.fromkeys(("audit", "revert"), ("sla_sync.sync_audit", "AUDIT_COMMANDS")),
            "check": ("sla_sync.sync_check", "check"),
            "extend": ("sla_sync.sync_extend", "extend_command"),
            "serve": ("sla_sync.sync_serve", "serve")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.LAZY and cmd_name not in self.commands:
            module, name = self.LAZY[cmd_name]
            found = getattr(importlib.import_module(module), name)
            for lazy in (found,) if isinstance(found, click.Command) else found:
                self.add_command(lazy)
        command = super().get_command(ctx, cmd_name)
        if command is not None and not any(p in command.params for p in LATE_LOG_OPTIONS):
            taken = {o for p in command.params for o in getattr(p, "opts", [])}
            command.params.extend(p for p in LATE_LOG_OPTIONS if not taken & set(p.opts))
        return command


@click.group(cls=Cli)
@click.version_option(package_name="sla-sync")
@click.option("-v", "--verbose", is_flag=True,
              help="Also debug records: every HTTP request (method, URL without secrets, "
                   "status, duration, attempt), every page and write.")
@click.option("-q", "--quiet", is_flag=True,
              help="Only warnings and errors: no summary line, no progress line.")
@click.option("--log-format", type=click.Choice(sync_log.FORMATS), default="text",
              show_default=True, envvar="SLA_SYNC_LOG_FORMAT",
              help="Log lines on stderr as text (UTC timestamp, level, message) or one JSON "
                   "object per line ($SLA_SYNC_LOG_FORMAT).")
def main(verbose: bool, quiet: bool, log_format: str) -> None:
    """SLA rules for your helpdesk: clocks, escalations and tags, written once.

    Global options (-v, -q, --log-format) go before the command (`sla-sync -q run`) or
    after it."""
    if verbose and quiet:
        raise click.UsageError("-v and -q contradict each other: give one")
    sync_log.configure(verbose=verbose, quiet=quiet, fmt=log_format)


@main.command()
@config_option
@now_option
@click.option("--dry-run", is_flag=True, help="Plan and report; write nothing, keep the cursor.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object per changed record on stdout.")
@click.option("--every", metavar="DURATION",
              help=f"Repeat every DURATION (e.g. 5m; at least {MIN_INTERVAL}s) until stopped "
                   "(SIGTERM or Ctrl-C).")
@click.option("--give-up-after", "give_up_after", type=click.IntRange(min=1),
              default=DEFAULT_GIVE_UP_AFTER, show_default=True, metavar="N",
              help="With --every: exit 1 after N failed syncs in a row (failures back off, "
                   "doubling the interval up to an hour).")
@click.option("--policy", "policy_path", type=click.Path(path_type=Path), metavar="FILE",
              help="With --dry-run: plan with this draft policy instead of the config's.")
@click.option("--full", is_flag=True,
              help="Evaluate every record, not only those read or due by their wake-up time.")
def run(config_path: str | None, now_text: str | None, dry_run: bool, as_json: bool,
        every: str | None, give_up_after: int, policy_path: Path | None, full: bool) -> None:
    """Run one sync: read what changed, evaluate it and every record time has made due, write
    what must change."""
    if policy_path is not None and (not dry_run or every is not None):
        raise click.UsageError("--policy evaluates a draft: it takes --dry-run (a draft never "
                               "writes) and not --every")
    interval = None if every is None else _interval(every, now_text, full)
    now = _now(now_text)
    config = _config(config_path)
    policy = _policy(policy_path or config.policy, _kept_holidays(config, dry_run))
    connector = _connector(config)
    if now_text is not None and not dry_run and connector.capabilities.real_helpdesk:
        raise Exit(f"--now writes to a real helpdesk ({config.connector['type']}) as if it "
                   "were another instant: give --dry-run with it to try an instant, or leave "
                   "--now out; nothing was read or written", EXIT_INVALID)
    notifier = _webhooks(config, policy, connector)
    with Stop() as stop, _settled_heap():
        try:
            with StateLock(config.state), StateStore(config.state) as store:
                _announce_first_run(config, store)
                if store.backup is not None:
                    log.warning(f"{config.state}: migrated; the previous file is kept as "
                                f"{store.backup}", extra={"event": "state"})
                if interval is not None:
                    _run_every(config, connector, policy, store, interval, dry_run, as_json,
                               notifier, stop, give_up_after)
                    return
                report = _run_once(connector, policy, store, now, dry_run, as_json, notifier,
                                   stop, full, first_run=config.first_run)
        except StateLocked as exc:
            raise Exit(str(exc), EXIT_LOCKED) from None
        except StateError as exc:
            raise Exit(str(exc), EXIT_INVALID) from None
        except OSError as exc:
            raise _os_exit(exc, config.state) from None
        except StopNow as exc:
            raise Exit(f"stopped at once by a second {exc.name}: the record in flight was "
                       "rolled back in the state file; the next run settles it",
                       EXIT_STOPPED[exc.signum]) from None
    if report.stopped:
        assert stop.signum is not None
        raise Exit(f"stopped by {stop.name} after recording what was in flight; the cursor "
                   "did not move and the next run continues", EXIT_STOPPED[stop.signum])
    if report.errors or report.notify_failures:
        sys.exit(EXIT_PARTIAL)


@contextmanager
def _settled_heap() -> Iterator[None]:
    """For the length of a run, what start-up made (modules, the policy, the connector) is
    moved out of the cyclic garbage collector's reach and young collections are made rarer
    (every 10,000 allocations, not 700): a sync allocates millions of short-lived objects,
    and with CPython's defaults collecting took 73 of the 234 CPU s of a 1M first sync
    through the Zendesk fake (18 of 186 so; docs/performance.md, "The garbage collector").
    Both are undone on the way out, for a caller that goes on in the same process (the
    tests' CliRunner)."""
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def _interval(every: str, now_text: str | None, full: bool) -> int:
    """The seconds between runs that `--every` asks for, refused below MIN_INTERVAL or with
    an option that belongs to a single run."""
    try:
        interval = parse_duration(every)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--every") from None
    if interval < MIN_INTERVAL:
        raise click.BadParameter(
            f"{every!r} is below the minimum interval of {MIN_INTERVAL}s (a helpdesk "
            "is not polled faster than that)", param_hint="--every")
    if now_text is not None:
        raise click.UsageError("--every runs on the real clock; it cannot take --now")
    if full:
        raise click.UsageError("--full is for one run; it cannot take --every")
    return interval


FIRST_RUN_DOES = {
    "baseline": "rules that already hold are recorded as active and nothing is written",
    "act": "every rule that holds acts now: writes, notes and notifications",
}


def _announce_first_run(config: Config, store: StateStore) -> None:
    """A new state file is said loudly: against a helpdesk sla-sync already works, it means
    the old one was lost (a container without its volume, a typo in `state:`)."""
    does = FIRST_RUN_DOES[config.first_run]
    if store.created:
        log.warning(f"NEW STATE FILE: {config.state} did not exist and was created; "
                    f"first_run: {config.first_run}: {does} (if sla-sync has synced this "
                    "helpdesk before, its state file is lost: stop and restore it)",
                    extra={"event": "state", "first_run": config.first_run})
    elif not store.completed_a_run():
        log.warning(f"{config.state}: no run has completed on this state file yet; "
                    f"first_run: {config.first_run}: {does}",
                    extra={"event": "state", "first_run": config.first_run})


def _os_exit(exc: OSError, state: Path) -> Exit:
    """An OSError outside a sync (those are the run's): the state file's lock, whose folder
    is missing or unwritable, or another file it names; an unnamed one is unexpected."""
    if exc.filename is None:
        return Exit(f"unexpected {_where(exc)}", EXIT_FAILED)
    where = Path(exc.filename)
    lock = Path(f"{state}.lock")
    if where in (lock, *lock.parents):
        return Exit(file_problem(where, exc, "create the state file's lock") +
                    "; nothing was read or written", EXIT_INVALID)
    return Exit(file_problem(where, exc, "use the file"), EXIT_INVALID)


class StopNow(KeyboardInterrupt):
    """A second SIGTERM or Ctrl-C: stop where we are (SQLite rolls back the transaction in
    flight, as after a kill)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.name = signal.Signals(signum).name


class Stop:
    """SIGTERM and SIGINT ask the sync to stop once the record or batch in flight is written
    and recorded, instead of raising wherever Python happens to be (inside a transaction,
    say). A wait between syncs ends at once."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> Stop:
        http = _http()
        if http is not None:
            http.STOPPING.clear()
        for signum in STOP_SIGNALS:
            self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: object) -> None:
        if self.event.is_set():
            raise StopNow(signum)
        self.signum = signum
        self.event.set()
        http = _http()
        if http is not None:  # a wait to retry the helpdesk ends now, not minutes later
            http.STOPPING.set()
        message = f"{self.name}: stopping after the write in flight (send it again to stop " \
                  "at once)"
        setup = sync_log.active()
        line = setup.line(logging.WARNING, message, event="signal") if setup else message + "\n"
        # os.write, not logging: a handler may run in the middle of another write, holding
        # the logging handler's lock.
        os.write(2, ((sync_log.CLEAR if setup and setup.progress else "") + line).encode())

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else "a signal"

    def requested(self) -> bool:
        return self.event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True as soon as a stop is asked for."""
        return self.event.wait(seconds)


def _run_once(connector: Any, policy: Policy, store: StateStore, now: datetime,
              dry_run: bool, as_json: bool, notifier: Alerts | None, stop: Stop,
              full: bool = False, every: bool = False,
              first_run: str = "baseline") -> RunReport:
    """One sync and what it says. Under `every` (the --every loop), a run in which nothing
    happened says nothing unless -v is given."""
    setup = sync_log.active()
    progress = setup.progress if setup is not None else None
    try:
        try:
            report = run_sync(connector, policy, store, now, dry_run=dry_run,
                              notifier=notifier, should_stop=stop.requested, full=full,
                              progress=progress, first_run=first_run)
        finally:
            if progress is not None:
                progress.close()
    except FileProblem as exc:
        raise Exit(f"run failed, cursor not moved: {exc}", EXIT_INVALID) from None
    except (ConnectorError, RecordError) as exc:
        http = _http()
        if http is not None and isinstance(exc, http.StoppedWaiting) \
                and stop.signum is not None:
            raise Exit(f"stopped by {stop.name} while waiting to try the helpdesk again; the "
                       "cursor did not move and the next run continues",
                       EXIT_STOPPED[stop.signum]) from None
        raise Exit(f"run failed, cursor not moved: {exc}", EXIT_FAILED) from None
    except OSError as exc:
        if exc.filename is None:
            raise Exit(f"run failed, cursor not moved: unexpected {_where(exc)}",
                       EXIT_FAILED) from None
        raise Exit(f"run failed, cursor not moved: "
                   f"{file_problem(Path(exc.filename), exc, 'write')}", EXIT_INVALID) from None
    except sqlite3.OperationalError as exc:
        if getattr(exc, "sqlite_errorname", None) not in STATE_FILE_PROBLEMS:
            raise Exit(f"run failed, cursor not moved: unexpected {_where(exc)}",
                       EXIT_FAILED) from None
        raise Exit(f"run failed, cursor not moved: {store.path}: cannot write the state file "
                   f"({exc}); {STATE_FILE_PROBLEMS[exc.sqlite_errorname]}", EXIT_INVALID)\
            from None
    except Exception as exc:  # a bug or a broken disk: one failed run, never a traceback
        raise Exit(f"run failed, cursor not moved: unexpected {_where(exc)}", EXIT_FAILED)\
            from None
    if as_json:
        for change in report.changes:
            click.echo(json.dumps(change, ensure_ascii=False))
    left_out = [row for row in store.skipped() if row["last_run"] != report.run_id]
    # Records still left out are warned about below whatever the run did.
    quiet = every and report.quiet()
    _summary(report, as_json, shown=not quiet or bool(setup and setup.verbose))
    for row in left_out:  # not read this run: say it is still left out
        log.warning(f"skipped: record {row['record_id']!r}: {row['reason']} (as read in run "
                    f"{row['last_run']}; left out until the helpdesk has a usable version)",
                    extra={"event": "skipped", "run": report.run_id,
                           "record": row["record_id"]})
    return report


def _where(exc: BaseException) -> str:
    """An unexpected error as its type and the line that raised it. Its text is left out: it
    may quote a URL or a header, and those can hold secrets."""
    frames = traceback.extract_tb(exc.__traceback__)
    place = ""
    if frames:
        last = frames[-1]
        place = f" at {Path(last.filename).name}:{last.lineno}"
    if isinstance(exc, sqlite3.Error | OSError):
        detail = getattr(exc, "strerror", None) or getattr(exc, "sqlite_errorname", None)
        return f"{type(exc).__name__}{place} ({detail})" if detail else \
            f"{type(exc).__name__}{place}"
    return f"{type(exc).__name__}{place}"


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _run_every(config: Config, connector: Any, policy: Policy, store: StateStore,
               interval: int, dry_run: bool, as_json: bool, notifier: Alerts | None, stop: Stop,
               give_up_after: int) -> None:
    policy_mtime = _mtime(config.policy)
    log.info(f"syncing every {format_duration(interval)}; SIGTERM or Ctrl-C stops after the "
             "write in flight", extra={"event": "every", "interval": interval})
    failures = 0
    while not stop.requested():
        started = time.monotonic()
        if _mtime(config.policy) != policy_mtime:  # gone or unreadable: load_policy says why
            policy_mtime = _mtime(config.policy)
            try:
                candidate = load_policy(config.policy, _kept_holidays(config, dry_run))
                _check_webhooks(config, candidate, notifier)
                policy = candidate
                log.info(f"{config.policy}: reloaded", extra={"event": "policy"})
            except (PolicyError, Exit) as exc:
                log.error(f"{exc}\nkeeping the previous policy", extra={"event": "policy"})
        try:
            report = _run_once(connector, policy, store, datetime.now(UTC), dry_run, as_json,
                               notifier, stop, every=True, first_run=config.first_run)
        except Exit as exc:
            if stop.requested():  # stopped while waiting to retry: not a failed sync
                break
            failures += 1
            if failures >= give_up_after:
                raise Exit(f"{exc.message}\ngiving up after {failures} failed syncs in a row "
                           "(--give-up-after)", EXIT_FAILED) from None
            delay = min(interval * 2 ** (failures - 1), max(interval, MAX_BACKOFF))
            log.error(f"{exc.message}\nsync failed ({failures} in a row, giving up at "
                      f"{give_up_after}); next try in {format_duration(delay)}",
                      extra={"event": "sync_failed", "failures": failures,
                             "exit_code": exc.exit_code})
        else:
            failures = 0
            if report.stopped:
                break
            delay = max(0.0, interval - (time.monotonic() - started))
            # After a run that said nothing, the wait says nothing either (but with -v).
            level = logging.DEBUG if report.quiet() else logging.INFO
            log.log(level, f"next sync in {format_duration(delay)}",
                    extra={"event": "wait", "seconds": round(delay)})
        if stop.wait(delay):
            break
    log.info(f"stopped by {stop.name}", extra={"event": "stopped"})


def _summary(report: RunReport, as_json: bool, shown: bool = True) -> None:
    """The run's summary: with --json, as a JSON object on the last line of stdout; without,
    as a line on stdout in text logs (the command's output, as it always was), as a log
    record in JSON logs. Then what went wrong, one record each. `shown`: False for a quiet
    run under --every (nothing but the JSON line, if asked for)."""
    summary = report.summary()
    if as_json:
        click.echo(json.dumps({"event": "summary", **summary}, ensure_ascii=False))
    mode = " (dry run: nothing written)" if report.dry_run else ""
    cursor = "cursor moved" if report.cursor_moved else "cursor unchanged"
    text = (f"run {report.run_id}{mode}: read {report.read}, evaluated {report.evaluated}, "
            f"changed {report.changed}, writes {report.writes}, skipped {report.skipped}, "
            f"errors {report.errors} in {report.duration_ms / 1000:.2f}s; {cursor}"
            + (f"; notified {report.notified}" if report.notified else "")
            + (f", {report.notify_failures} notifications kept for the next run"
               if report.notify_failures else "")
            + (f"; {report.held} alerts held (quiet hours or a digest)" if report.held else ""))
    if report.baseline:
        would = "would be recorded" if report.dry_run else "recorded"
        text += (f"\nfirst run, baseline: {report.baselined} records already meet rules; "
                 f"{report.baseline_rules} rule activations {would} as active, nothing "
                 "written or notified (later runs act on what becomes true after this one)")
    setup = sync_log.active()
    if shown and setup is not None and setup.shows(logging.INFO):
        if setup.format == "text" and not as_json:
            click.echo(text)
        else:
            log.info(text, extra={"event": "summary", **summary})
    elif shown and setup is None:
        click.echo(text, err=as_json)
    run = report.run_id
    for line in report.problems:
        log.warning(f"skipped: {line}", extra={"event": "skipped", "run": run,
                                               **_record_of(line)})
    for line in report.failures:
        log.error(line, extra={"event": "failure", "run": run, **_record_of(line)})
    for line in report.warnings:
        log.warning(line, extra={"event": "warning", "run": run, **_record_of(line)})


_RECORD = re.compile(r"record ('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")")


def _record_of(line: str) -> dict[str, str]:
    """The record a message of the loop names (`record 'T-7': ...`, as repr() quotes ids),
    as a structured field."""
    found = _RECORD.match(line)
    if found is None:
        return {}
    try:
        return {"record": str(ast.literal_eval(found.group(1)))}
    except (ValueError, SyntaxError):
        return {}


@main.command()
@click.argument("policy_file", metavar="POLICY", type=click.Path(path_type=Path))
def validate(policy_file: Path) -> None:
    """Check a policy: exit 0 when valid, else one line per problem with its JSON path."""
    try:
        policy = load_policy(policy_file)
    except PolicyError as exc:
        click.echo(f"{policy_file}: invalid policy", err=True)
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        sys.exit(EXIT_INVALID)
    for warning in policy.warnings:
        click.echo(f"warning: {warning}")
    click.echo(f"{policy_file}: valid ({len(policy.slas)} SLAs, {len(policy.rules)} rules)")


@main.command()
@click.argument("record_id", metavar="ID")
@config_option
@now_option
@click.option("--policy", "policy_path", type=click.Path(path_type=Path), metavar="FILE",
              help="Evaluate this (draft) policy instead of the config's.")
@click.option("--json", "as_json", is_flag=True, help="The same content as JSON, for tools.")
def explain(record_id: str, config_path: str | None, now_text: str | None,
            policy_path: Path | None, as_json: bool) -> None:
    """Explain one record: its SLA, its clocks, each rule's verdict and the change set."""
    now = _now(now_text)
    config = _config(config_path)
    policy = _policy(policy_path or config.policy)
    connector = _connector(config)
    try:
        record = connector.get(record_id)
    except FileProblem as exc:
        raise Exit(str(exc), EXIT_INVALID) from None
    except (ConnectorError, RecordError) as exc:
        raise Exit(str(exc), EXIT_FAILED) from None
    active: frozenset[str] = frozenset()
    since: dict[str, str] = {}
    previous = None
    pool = None
    load = None
    if config.state.exists():
        try:
            with StateStore(config.state, readonly=True) as store:
                record = record or store.record(record_id)
                active = store.active_rules().get(record_id, frozenset())
                since = store.activation_times(record_id)
                previous = store.sla_marks().get(record_id)
                if uses_assign_next(policy):  # the agents as the next sync would see them
                    pool = agent_pool(policy, store, connector)
                if policy.load_variables:  # and the desk's load
                    load = desk_load(policy, store, now)
        except StateError as exc:
            raise Exit(str(exc), EXIT_INVALID) from None
    if record is None:
        raise Exit(f"no record {record_id!r} in {connector.identity}", EXIT_INVALID)
    p = plan(record, policy, now, active, previous, pool, load)
    if as_json:
        click.echo(json.dumps(explain_data(p, policy, since), indent=2, ensure_ascii=False))
        return
    click.echo(explain_plan(p, policy, since))


# -- reports -----------------------------------------------------------------------------------




class ReportInputs(NamedTuple):
    records: list[Record]
    policy: Policy
    marks: dict[str, SlaMark]
    last_run: dict[str, float] | None
    audit: dict[str, list[dict[str, Any]]] | None  # by record; None: from a file, no audit
    totals: dict[str, Any] | None  # the state file's run totals; None: from a file


def _report_inputs(config_path: str | None, from_file: Path | None, policy_path: Path | None,
                   ) -> ReportInputs:
    """Records (the mirror, or --from FILE), the policy, SLA marks, the last run and the
    audit by record."""
    config = None
    if config_path is not None or from_file is None or policy_path is None:
        config = _config(config_path)
    policy = _policy(policy_path or config.policy)  # type: ignore[union-attr]
    if from_file is not None:
        try:
            pages = list(FileHelpdesk(from_file).fetch(None))
        except ConnectorError as exc:
            raise Exit(str(exc), EXIT_INVALID) from None
        skipped = [p for page in pages for p in page.problems]
        for problem in skipped:
            log.warning(f"skipped: {problem}", extra={"event": "skipped"})
        if skipped:
            log.warning(f"skipped {len(skipped)} record(s) of {from_file} that cannot be "
                        "measured (they are left out of every figure)",
                        extra={"event": "skipped", "count": len(skipped)})
        return ReportInputs([r for page in pages for r in page.records], policy, {}, None,
                            None, None)
    assert config is not None
    if not config.state.exists():
        raise Exit(f"{config.state}: no state file yet: run `sla-sync run` first, or report "
                   "on a file with --from FILE", EXIT_INVALID)
    try:
        with StateStore(config.state, readonly=True) as store:
            audit: dict[str, list[dict[str, Any]]] = {}
            for row in store.audit():
                audit.setdefault(row["record_id"], []).append(row)
            return ReportInputs(store.all_records(), policy, store.sla_marks(),
                                store.last_run(), audit, store.run_totals())
    except StateError as exc:
        raise Exit(str(exc), EXIT_INVALID) from None


source_options = [
    click.option("--from", "from_file", type=click.Path(path_type=Path), metavar="FILE",
                 help="Read records from a file in the embedded helpdesk's format instead "
                      "of the state file's record mirror."),
    click.option("--policy", "policy_path", type=click.Path(path_type=Path), metavar="FILE",
                 help="The policy (default: the config's)."),
]


def with_source(command: Any) -> Any:
    for option in reversed(source_options):
        command = option(command)
    return command


@main.command()
@config_option
@with_source
@now_option
@click.option("--since", metavar="ISO", help="Records created from (default: 30 days before "
                                               "--until).")
@click.option("--until", metavar="ISO", help="Records created before (default: --now).")
@click.option("--by", multiple=True, metavar="FIELD[,FIELD]",
              help=f"Break down by a field ({', '.join(SEGMENT_FIELDS)}); repeat for "
                   "several breakdowns, join with commas to combine fields.")
@click.option("--every", type=click.Choice(EVERY), default="day", show_default=True,
              help="Trend buckets (UTC days, weeks from Monday, or months); with "
                   "--breaches, the periods breaches are listed under.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table",
              show_default=True)
@click.option("--out", type=click.Path(path_type=Path), metavar="FILE",
              help="Write to FILE instead of stdout.")
@click.option("--work-statuses", default=",".join(DEFAULT_WORK_STATUSES), show_default=True,
              help="Statuses that count as handling time.")
@click.option("--breaches", "list_breaches", is_flag=True,
              help="List every clock that breached in the window instead (table, json or "
                   "csv): record, SLA, target, due, time over, team and assignee then, what "
                   "sla-sync did.")
@click.option("--goal", type=click.FloatRange(0, 1), default=0.95, show_default=True,
              help="The compliance goal the HTML report's charts draw (0..1).")
@click.option("--timezone", "zone_name", default="UTC", show_default=True, metavar="ZONE",
              help="The IANA time zone the HTML report and the --breaches table and CSV "
                   "show times in (e.g. Europe/Berlin); JSON keeps UTC instants.")
def report(config_path: str | None, from_file: Path | None, policy_path: Path | None,
           now_text: str | None, since: str | None, until: str | None, by: tuple[str, ...],
           every: str, fmt: str, out: Path | None, work_statuses: str,
           list_breaches: bool, goal: float, zone_name: str) -> None:
    """The SLA metrics of the records the sync has seen, as a table, JSON, CSV, an HTML page
    with charts, or Prometheus text; or, with --breaches, the breached clocks."""
    now = _now(now_text)
    end = instant_option(until, "--until") or now
    start = instant_option(since, "--since") or end - timedelta(days=30)
    if start >= end:
        raise click.BadParameter(f"{format_instant(start)} is not before --until "
                                 f"{format_instant(end)}", param_hint="--since")
    groups = breakdowns(by)
    zone = _zone(zone_name)
    if list_breaches and (by or fmt not in ("table", "json", "csv")):
        raise click.UsageError("--breaches lists clocks: it takes --format table, json or csv "
                               "and no --by")
    records, policy, marks, last_run, audit, totals = _report_inputs(config_path, from_file,
                                                                     policy_path)
    if not records:
        source = f"{from_file} has no usable records" if from_file else \
            "the record mirror is empty (run `sla-sync run` first)"
        raise Exit(f"no records to report on: {source}", EXIT_INVALID)
    if list_breaches:
        found = breach_audit(records, policy, now, start, end, every, marks, audit)
        text = as_json(found) if fmt == "json" else \
            {"table": breaches_table, "csv": breaches_csv}[fmt](found, zone)
        _emit(text, out, f"{len(found['breaches'])} breached clocks")
        return
    work = [s.strip() for s in work_statuses.split(",") if s.strip()]
    data = metrics_report(records, policy, now, start, end, groups, every, work, marks, audit)
    if data["segments"][0]["records"] == 0:
        log.warning(f"note: no record was created between {format_instant(start)} and "
                    f"{format_instant(end)}; every figure is empty", extra={"event": "report"})
    if fmt == "table":
        text = table(data)
    elif fmt == "json":
        text = as_json(data)
    elif fmt == "csv":
        text = as_csv(data)
    elif fmt == "prometheus":
        text = prometheus(data, last_run, open_queue(records, policy, now, marks),
                          None if totals is None else {
                              **totals, "escalations": escalation_totals(
                                  records, policy, now, audit or {}, marks)})
    else:
        # the period of equal length before, for the headline figures' comparison
        previous = metrics_report(records, policy, now, start - (end - start), start, (),
                                  every, work, marks, audit)
        agents = metrics_report(records, policy, now, start, end, [("assignee",)], every,
                                work, marks, audit)["segments"][1:]
        found = breach_audit(records, policy, now, start, end, every, marks, audit)
        text = html_report(data, open_queue(records, policy, now, marks), previous=previous,
                           agents=agents, found=found["breaches"], goal=goal, zone=zone)
    _emit(text, out, f"{data['segments'][0]['records']} records in the window")


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise click.BadParameter(f"{name!r} is not an IANA time zone (e.g. Europe/Berlin)",
                                 param_hint="--timezone") from None


def _emit(text: str, out: Path | None, what: str) -> None:
    """A report on stdout, or written to `out` (beside and renamed)."""
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        write_report(out, text)
    except OSError as exc:
        raise Exit(file_problem(out, exc, "write the report") + "; nothing was written",
                   EXIT_INVALID) from None
    log.info(f"wrote {out} ({what})", extra={"event": "report", "path": str(out)})


@main.command()
@config_option
@with_source
@now_option
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--by", type=click.Choice(SEGMENT_FIELDS),
              help="Group the queue by a field (one queue per team, say).")
@click.option("--json", "as_json_lines", is_flag=True, help="One JSON object per record.")
def queue(config_path: str | None, from_file: Path | None, policy_path: Path | None,
          now_text: str | None, limit: int, by: str | None, as_json_lines: bool) -> None:
    """Open records by time left on their nearest target, breached ones first."""
    now = _now(now_text)
    records, policy, marks, *_ = _report_inputs(config_path, from_file, policy_path)
    rows = open_queue(records, policy, now, marks)
    if by:
        shown: Counter[str] = Counter()
        kept = []
        for row in rows:  # the first `limit` of each group, the queue's order kept
            shown[str(row[by])] += 1
            if shown[str(row[by])] <= limit:
                kept.append(row)
        rows = kept
    else:
        rows = rows[:limit]
    if as_json_lines:
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False))
    else:
        click.echo(queue_table(rows, by), nl=False)


if __name__ == "__main__":
    main()
