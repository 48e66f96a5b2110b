"""`sla-sync check`: the config, the policy and the helpdesk together, before anything runs.

The config is loaded and its connector and webhooks built as `run` builds them; the policy is
checked as `validate` checks it; then the connector reads what the helpdesk has
(`Connector.catalog()`, read-only) and every priority, status, group, agent, queue, custom
field and webhook the policy names is looked up in it or in the config. One line per problem,
`config: PATH: why`, `policy: PATH: why` or `helpdesk: why`, then a summary; exit 0 when
there is none, 2 when there is any. Where `lint --config` checks the policy against the
connector's static maps without connecting, check asks the helpdesk itself; the webhook
and priority checks are the same ones (`sync_author.priority_check` where the helpdesk
cannot list its priorities). Secrets never appear: connector errors are worded without them
and values are never quoted from the config.
"""

from __future__ import annotations

import difflib
import sys
import traceback
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from sla_sync.connector import ConnectorError, open_connector
from sla_sync.connector.base import Catalog
from sla_sync.rules.lint import formula, leaves
from sla_sync.rules.policy import Policy, PolicyError, Sla, load_policy, parse_json
from sla_sync.sync_alerts import Alerts
from sla_sync.sync_author import priority_check
from sla_sync.sync_config import ConfigError, load_config, locate

EXIT_OK, EXIT_PROBLEMS = 0, 2
#: Record variables whose values name something in the helpdesk -> the kind of name.
NAMED = {"priority": "priority", "status": "status", "group": "group", "assignee": "agent"}
#: Operators whose value is compared exactly, so a value the helpdesk lacks never matches.
EXACT = ("equal_to", "not_equal_to", "is_one_of", "is_not_one_of")
#: How many known names a message lists before it says how many more there are.
SHOWN = 12


@dataclass(frozen=True)
class Use:
    """A name the policy uses: where, what kind of name, and the name."""

    path: str
    kind: str  # priority, status, group, agent, field, written field (set_field), tag
    value: str


def names_used(policy: Policy) -> list[Use]:
    """Every priority, status, group, agent and custom field name the policy uses, with its
    JSON path, in policy order (conditions through rules.lint's own reading of them)."""
    uses: list[Use] = [Use(f"fields.{name}", "field", name.removeprefix("custom."))
                       for name in policy.fields]
    raw = _raw(policy)
    for i, status in enumerate(raw.get("closed_statuses") or []):
        uses.append(Use(f"closed_statuses[{i}]", "status", status))
    # the OLAs name groups, statuses and calendars' fields just as SLAs do
    for key, slas in (("slas", policy.slas), ("olas", policy.olas)):
        uses += _sla_names(raw, key, slas)
    for rule in policy.every_rule():
        uses += _conditions(rule.conditions, f"{rule.path}.conditions")
        for j, action in enumerate(rule.actions):
            params, where = action["params"], f"{rule.path}.actions[{j}].params"
            if action["name"] == "add_tag":
                uses.append(Use(f"{where}.tag", "tag", params["tag"]))
            if action["name"] == "set_field":
                uses.append(Use(f"{where}.field", "written field",
                                params["field"].removeprefix("custom.")))
            for param, kind in (("priority", "priority"), ("group", "group"),
                                ("assignee", "agent")):
                value = params.get(param)
                if isinstance(value, str) and value:
                    uses.append(Use(f"{where}.{param}", kind, value))
    return uses


def _sla_names(raw: Mapping[str, Any], key: str, slas: Sequence[Sla]) -> list[Use]:
    """The names the SLAs (or OLAs) under `key` use: pause statuses, `when`s, calendars'
    record fields' values."""
    uses: list[Use] = []
    raw_slas = raw.get(key) or []
    for sla in slas:
        spec = raw_slas[sla.index] if sla.index < len(raw_slas) else {}
        where = f"{key}[{sla.index}]"
        for j, status in enumerate(spec.get("pause_statuses") or []):
            uses.append(Use(f"{where}.pause_statuses[{j}]", "status", status))
        if sla.when is not None:
            uses += _conditions(sla.when, f"{where}.when")
        choice = sla.calendar
        if choice.record_field is not None:
            field_path = f"{where}.calendar_by"
            if choice.record_field.startswith("custom."):
                uses.append(Use(f"{field_path}.field", "field",
                                choice.record_field.removeprefix("custom.")))
            elif choice.record_field in NAMED:
                uses += [Use(f"{field_path}.calendars.{value}", NAMED[choice.record_field],
                             value) for value in choice.by_value]
    return uses


def writes_needed(policy: Policy) -> dict[str, str]:
    """What the policy writes, by the write kinds of `Catalog.denied` -> the first path that
    needs it."""
    needed: dict[str, str] = {}
    for rule in policy.every_rule():
        for j, action in enumerate(rule.actions):
            name, params = action["name"], action["params"]
            where = f"{rule.path}.actions[{j}]"
            kinds = {"set_priority": ["fields"], "assign": ["fields"],
                     "assign_group": ["fields"], "add_tag": ["tags"], "remove_tag": ["tags"],
                     "add_note": ["notes"], "escalate": ["escalation"],
                     "set_field": ["fields"]}.get(name, [])
            if name == "escalate":
                kinds += ["fields"] if params.get("group") or params.get("assignee") else []
                kinds += ["notes"] if params.get("note") else []
            if params.get("group"):
                kinds.append(f"group:{params['group']}")
            for kind in kinds:
                needed.setdefault(kind, where)
    return needed


def _raw(policy: Policy) -> dict[str, Any]:
    """The policy's JSON as written (for paths the checked Policy does not keep: the index of
    a closed or pause status). The policy validated, so it parses."""
    try:
        data = parse_json(Path(policy.source).read_bytes(), policy.source)
    except (OSError, PolicyError):
        return {}
    return data if isinstance(data, dict) else {}


def _conditions(conditions: Any, path: str) -> list[Use]:
    uses = []
    for leaf in leaves(formula(conditions, path)):
        if leaf.name not in NAMED or leaf.op not in EXACT:
            continue
        if isinstance(leaf.value, tuple):
            uses += [Use(f"{leaf.path}.value[{k}]", NAMED[leaf.name], v)
                     for k, v in enumerate(leaf.value) if isinstance(v, str) and v]
        elif isinstance(leaf.value, str) and leaf.value:
            uses.append(Use(f"{leaf.path}.value", NAMED[leaf.name], leaf.value))
    return uses


def problems_with(policy: Policy, catalog: Catalog, connector: Any) -> list[str]:
    """The lines for every name the policy uses that the helpdesk lacks, and every write the
    policy makes that the credentials cannot."""
    known: dict[str, Collection[str] | None] = {
        "priority": catalog.priorities, "status": catalog.statuses, "group": catalog.groups,
        "agent": catalog.agents, "field": catalog.fields, "tag": catalog.tags,
        "written field": None if getattr(connector, "capabilities", None) is not None
        and connector.capabilities.any_custom_field else catalog.fields}
    words = {"priority": "a priority", "status": "a status",
             "group": _article(catalog.group_word), "agent": _article(catalog.agent_word),
             "field": "a custom field", "tag": _article(catalog.tag_word),
             "written field": "a custom field the connector maps (connector.custom_fields)"}
    writable = priority_check(connector) if catalog.priorities is None else None
    lines = []
    for use in names_used(policy):
        names = known[use.kind]
        if names is None:
            if use.kind == "priority" and writable is not None and use.path.endswith(
                    ".params.priority") and not writable(use.value):
                lines.append(f"policy: {use.path}: the connector cannot write priority "
                             f"{use.value!r}")
            continue
        if use.value in names:
            continue
        hint = catalog.hints.get((use.kind, use.value))
        lines.append(f"policy: {use.path}: {use.value!r} is not {words[use.kind]} in "
                     f"{catalog.helpdesk}" + _known(use.value, names)
                     + (f"; {hint}" if hint else ""))
    for kind, path in writes_needed(policy).items():
        why = catalog.denied.get(kind)
        if why is not None:
            lines.append(f"policy: {path}: the credentials cannot make this write: {why}")
    return lines


def _article(word: str) -> str:
    return f"{'an' if word[0] in 'aeio' else 'a'} {word}"


def _known(value: str, names: Collection[str]) -> str:
    ordered = sorted(names, key=str.casefold)
    close = difflib.get_close_matches(value, ordered, n=1, cutoff=0.82)
    listed = ", ".join(ordered[:SHOWN]) + (f", ... ({len(ordered) - SHOWN} more)"
                                            if len(ordered) > SHOWN else "")
    return (f" (did you mean {close[0]!r}?)" if close else "") + \
        (f" (known: {listed})" if ordered else " (it has none)")


def webhook_problems(policy: Policy, webhooks: Alerts) -> list[str]:
    """The notify actions that name a webhook the config does not define (as lint words
    them)."""
    names = sorted(webhooks.names)
    return [f"policy: {path}: webhook {name!r} is not defined under `webhooks:` in the config"
            + (f" (known: {', '.join(names)})" if names else " (it defines none)")
            for path, name in policy.webhooks if name not in webhooks.names]


def run_check(config_path: Path) -> tuple[list[str], str]:
    """(one line per problem, the summary line)."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        return [f"config: {exc}"], f"check: {config_path}: the config cannot be used; " \
            "nothing else was checked"
    lines: list[str] = []
    policy = connector = None
    try:
        connector = open_connector(dict(config.connector), config.base_dir)
    except ValueError as exc:
        lines.append(f"config: {exc}")
    try:
        webhooks: Alerts | None = Alerts.from_config(config.webhooks, config.notify,
                                                     config.teams, config.oncall)
    except ValueError as exc:
        lines.append(f"config: {exc}")
        webhooks = None
    try:
        policy = load_policy(config.policy)
    except PolicyError as exc:
        lines += [f"policy: {problem}" for problem in exc.problems]
    if policy is not None and webhooks is not None:
        lines += webhook_problems(policy, webhooks)
    if connector is None:
        return lines, _summary(lines, "the helpdesk was not asked: fix the connector first")
    try:
        catalog = connector.catalog()
    except ConnectorError as exc:
        lines.append(f"helpdesk: {exc}")
        return lines, _summary(lines, f"{connector.identity} cannot be read")
    except Exception as exc:  # a bug must not look like a finding, nor a traceback
        lines.append(f"helpdesk: reading what the helpdesk has failed unexpectedly "
                     f"({_where(exc)})")
        return lines, _summary(lines, f"{connector.identity} cannot be read")
    lines += [f"config: {path}: {why}" for path, why in catalog.problems]
    if policy is not None:
        lines += problems_with(policy, catalog, connector)
    return lines, _summary(lines, f"{catalog.helpdesk} ({connector.identity}) read in "
                                  f"{catalog.requests} request"
                                  f"{'s' if catalog.requests != 1 else ''}")


def _summary(lines: list[str], what: str) -> str:
    if not lines:
        return f"check: no problems: config, policy and helpdesk agree; {what}"
    return f"check: {len(lines)} problem{'s' if len(lines) != 1 else ''}; {what}"


def _where(exc: BaseException) -> str:
    """An unexpected error as its type and line, without its text (it could quote a secret)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return type(exc).__name__ + (f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}"
                                 if frames else "")


@click.command("check")
@click.option("--config", "config_path", metavar="FILE",
              help="Configuration file (default: $SLA_SYNC_CONFIG, else ./config.yaml).")
def check(config_path: str | None) -> None:
    """Check the config, the policy and the helpdesk together before anything runs:
    connectivity and credentials, the writes the policy needs, and every priority, status,
    group, agent, queue, custom field and webhook it names. Reads only. One line per problem
    with its path, then a summary; exit 0 when there is none, 2 when there is any."""
    lines, summary = run_check(locate(config_path))
    for line in lines:
        click.echo(line)
    click.echo(summary, err=True)
    sys.exit(EXIT_PROBLEMS if lines else EXIT_OK)
