"""The sla-sync command line: run a sync, validate a policy, explain a record.

A thin click layer over sync_run (the loop), sync_config, sync_state and rules; library
errors become clean exits with a message naming the file, path or record involved.

Exit codes: 0 done; 1 the run failed (the helpdesk could not be read or written; the
cursor did not move); 2 bad usage, configuration, policy or state file (nothing was read or
written); 3 the run finished but some records could not be written or evaluated;
4 another sync holds the state file.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from connector import ConnectorError, RecordError, open_connector
from connector.model import parse_instant
from rules.durations import parse_duration
from rules.explain import explain as explain_plan
from rules.planner import plan
from rules.policy import Policy, PolicyError, load_policy
from sync_config import Config, ConfigError, load_config, locate
from sync_run import RunReport, run_sync
from sync_state import StateError, StateLock, StateStore

EXIT_FAILED, EXIT_INVALID, EXIT_PARTIAL, EXIT_LOCKED = 1, 2, 3, 4


class Exit(click.ClickException):
    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.exit_code = code


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


def _policy(path: Path) -> Policy:
    try:
        policy = load_policy(path)
    except PolicyError as exc:
        raise Exit(str(exc), EXIT_INVALID) from None
    for warning in policy.warnings:
        click.echo(f"warning: {path}: {warning}", err=True)
    return policy


def _connector(config: Config) -> Any:
    try:
        return open_connector(dict(config.connector), config.base_dir)
    except ValueError as exc:
        raise Exit(f"{config.path}: {exc}", EXIT_INVALID) from None


config_option = click.option(
    "--config", "config_path", metavar="FILE",
    help="Configuration file (default: $SLA_SYNC_CONFIG, else ./config.yaml).")
now_option = click.option(
    "--now", "now_text", metavar="ISO",
    help="Evaluate as if it were this instant (ISO 8601 with an offset); default: now.")


@click.group()
@click.version_option(package_name="sla-sync")
def main() -> None:
    """SLA rules for your helpdesk: clocks, escalations and tags, written once."""


@main.command()
@config_option
@now_option
@click.option("--dry-run", is_flag=True, help="Plan and report; write nothing, keep the cursor.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object per changed record on stdout.")
@click.option("--every", metavar="DURATION",
              help="Repeat every DURATION (e.g. 5m) until interrupted.")
def run(config_path: str | None, now_text: str | None, dry_run: bool, as_json: bool,
        every: str | None) -> None:
    """Run one sync: read what changed, evaluate every open record, write what must change."""
    interval = None
    if every is not None:
        try:
            interval = parse_duration(every)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--every") from None
        if now_text is not None:
            raise click.UsageError("--every runs on the real clock; it cannot take --now")
    now = _now(now_text)
    config = _config(config_path)
    policy = _policy(config.policy)
    connector = _connector(config)
    try:
        with StateLock(config.state), StateStore(config.state) as store:
            if interval is None:
                report = _run_once(connector, policy, store, now, dry_run, as_json)
                if report.errors:
                    sys.exit(EXIT_PARTIAL)
                return
            _run_every(config, connector, policy, store, interval, dry_run, as_json)
    except StateError as exc:
        raise Exit(str(exc), EXIT_LOCKED if "held by" in str(exc) else EXIT_INVALID) from None


def _run_once(connector: Any, policy: Policy, store: StateStore, now: datetime,
              dry_run: bool, as_json: bool) -> RunReport:
    try:
        report = run_sync(connector, policy, store, now, dry_run=dry_run)
    except (ConnectorError, RecordError) as exc:
        raise Exit(f"run failed, cursor not moved: {exc}", EXIT_FAILED) from None
    if as_json:
        for change in report.changes:
            click.echo(json.dumps(change, ensure_ascii=False))
    _summary(report, err=as_json)
    return report


def _run_every(config: Config, connector: Any, policy: Policy, store: StateStore,
               interval: int, dry_run: bool, as_json: bool) -> None:
    policy_mtime = config.policy.stat().st_mtime
    click.echo(f"syncing every {interval}s; Ctrl-C to stop", err=True)
    try:
        while True:
            started = time.monotonic()
            if config.policy.stat().st_mtime != policy_mtime:
                policy_mtime = config.policy.stat().st_mtime
                try:
                    policy = load_policy(config.policy)
                    click.echo(f"{config.policy}: reloaded", err=True)
                except PolicyError as exc:
                    click.echo(f"{exc}\nkeeping the previous policy", err=True)
            try:
                _run_once(connector, policy, store, datetime.now(UTC), dry_run, as_json)
            except Exit as exc:
                click.echo(f"error: {exc.message}; retrying at the next interval", err=True)
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    except KeyboardInterrupt:
        click.echo("stopped", err=True)


def _summary(report: RunReport, err: bool) -> None:
    mode = " (dry run: nothing written)" if report.dry_run else ""
    cursor = "cursor moved" if report.cursor_moved else "cursor unchanged"
    click.echo(
        f"run {report.run_id}{mode}: read {report.read}, evaluated {report.evaluated}, "
        f"changed {report.changed}, writes {report.writes}, skipped {report.skipped}, "
        f"errors {report.errors} in {report.duration_ms / 1000:.2f}s; {cursor}", err=err)
    for line in report.problems:
        click.echo(f"skipped: {line}", err=True)
    for line in report.failures:
        click.echo(f"error: {line}", err=True)
    for line in report.warnings:
        click.echo(f"warning: {line}", err=True)


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
def explain(record_id: str, config_path: str | None, now_text: str | None) -> None:
    """Explain one record: its SLA, its clocks, each rule's verdict and the change set."""
    now = _now(now_text)
    config = _config(config_path)
    policy = _policy(config.policy)
    connector = _connector(config)
    try:
        record = connector.get(record_id)
    except (ConnectorError, RecordError) as exc:
        raise Exit(str(exc), EXIT_FAILED) from None
    active: frozenset[str] = frozenset()
    since: dict[str, str] = {}
    previous = None
    if config.state.exists():
        try:
            with StateStore(config.state) as store:
                record = record or store.record(record_id)
                active = store.active_rules().get(record_id, frozenset())
                since = store.activation_times(record_id)
                previous = store.sla_marks().get(record_id)
        except StateError as exc:
            raise Exit(str(exc), EXIT_INVALID) from None
    if record is None:
        raise Exit(f"no record {record_id!r} in {connector.identity}", EXIT_INVALID)
    click.echo(explain_plan(plan(record, policy, now, active, previous), policy, since))


if __name__ == "__main__":
    main()
