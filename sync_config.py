"""The configuration file: which helpdesk, which policy, which state file.

YAML; `${VAR}` anywhere in a value is taken from the environment (a missing variable is
an error naming it, never an empty string). Relative paths are relative to the config
file. Secret values are never echoed back in messages.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sla_sync.connector.file import file_problem

KEYS = ("connector", "policy", "state")
OPTIONAL_KEYS = ("webhooks", "first_run", "notify", "teams", "oncall")
#: What a sync does on a state file that has never completed a run (see sync_run.run_sync).
FIRST_RUN = ("baseline", "act")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file and key."""


@dataclass(frozen=True)
class Config:
    path: Path
    connector: Mapping[str, Any]
    policy: Path
    state: Path
    webhooks: Mapping[str, Any] | None = None
    #: baseline: rules that already hold are recorded as active, nothing is written; act:
    #: the first run acts on every rule that holds, as every later run does
    first_run: str = "baseline"
    #: alert channels, group managers and on-call rotations (sync_alerts.py checks them)
    notify: Mapping[str, Any] | None = None
    teams: Mapping[str, Any] | None = None
    oncall: Mapping[str, Any] | None = None

    @property
    def base_dir(self) -> Path:
        return self.path.parent


def locate(explicit: str | None) -> Path:
    """--config, else $SLA_SYNC_CONFIG, else ./config.yaml."""
    return Path(explicit or os.environ.get("SLA_SYNC_CONFIG") or "config.yaml")


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    environ = os.environ if environ is None else environ
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (give --config FILE or set "
                          "SLA_SYNC_CONFIG)") from None
    except OSError as exc:
        raise ConfigError(file_problem(path, exc, "read the config file")) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 (byte 0x{raw[exc.start]:02x})") from None
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: invalid YAML ({getattr(exc, 'problem', exc)})")\
            from None
    except _Refused as exc:
        key = f"{exc.key}: " if exc.key else ""
        raise ConfigError(f"{path}:{exc.line}:{exc.column}: {key}{exc.reason}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with keys {', '.join(KEYS)}")
    problems = [f"{key}: unknown key" for key in data if key not in (*KEYS, *OPTIONAL_KEYS)]
    problems += [f"{key}: missing" for key in KEYS if key not in data]
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    data = _expand(data, "", environ, path)
    connector = data["connector"]
    if not isinstance(connector, dict) or "type" not in connector:
        raise ConfigError(f"{path}: connector: expected a mapping with a 'type'")
    if not isinstance(connector["type"], str):
        raise ConfigError(f"{path}: connector.type: expected the name of a helpdesk")
    for key in ("policy", "state"):
        if not isinstance(data[key], str) or not data[key]:
            raise ConfigError(f"{path}: {key}: expected a file path")
    first_run = data.get("first_run", "baseline")
    if first_run not in FIRST_RUN:
        raise ConfigError(f"{path}: first_run: expected one of {', '.join(FIRST_RUN)}, got "
                          f"{first_run!r}")
    base = path.parent
    return Config(path=path, connector=connector, policy=base / data["policy"],
                  state=base / data["state"], webhooks=data.get("webhooks"),
                  first_run=first_run, notify=data.get("notify"), teams=data.get("teams"),
                  oncall=data.get("oncall"))


#: Deeper YAML nesting than any configuration needs is refused, not recursed into.
MAX_DEPTH = 32


class _Refused(Exception):
    def __init__(self, event: Any, key: str, reason: str):
        self.line, self.column = event.start_mark.line + 1, event.start_mark.column + 1
        self.key, self.reason = key, reason


class _Loader(yaml.SafeLoader):
    """SafeLoader without aliases and with a nesting bound: `*alias` lets a few lines
    expand into gigabytes (the "billion laughs"), and a configuration never needs one."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self.where: list[str] = []

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        step = None  # a mapping's keys themselves (index None) add no step
        if isinstance(index, int):
            step = f"[{index}]"
        elif index is not None:
            name = str(index.value) if isinstance(index, yaml.ScalarNode) else "?"
            step = f".{name}" if self.where else name
        if step is not None:
            self.where.append(step)
        try:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise _Refused(event, "".join(self.where),
                               f"YAML aliases (*{event.anchor}) are not allowed in the "
                               "configuration; write the value out")
            if len(self.where) > MAX_DEPTH:
                raise _Refused(self.peek_event(), "".join(self.where),
                               f"nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            if step is not None:
                self.where.pop()

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        # int() refuses more than 4300 digits with a ValueError; no setting needs 40
        if len(str(node.value)) > 40:
            raise _Refused(node, "", f"a number of {len(str(node.value))} characters")
        return int(super().construct_yaml_int(node))


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


def _expand(value: Any, where: str, environ: Mapping[str, str], path: Path) -> Any:
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}" if where else str(k), environ, path)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{where}[{i}]", environ, path) for i, v in enumerate(value)]
    if isinstance(value, str):
        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in environ:
                raise ConfigError(f"{path}: {where}: environment variable {name} is not set")
            return environ[name]
        value = _VAR.sub(fill, value)
        if "\0" in value:  # no file name, URL or token holds one; open() would raise
            raise ConfigError(f"{path}: {where}: a NUL character is not allowed")
        return value
    return value
