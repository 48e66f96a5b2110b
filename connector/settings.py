"""Declarative connector settings: each connector states its `connector:` keys once, as a
`Schema` of `Setting`s (type, required, secret, default, description), and `Schema.check`
reads a config's mapping against it.

Errors are ValueErrors that start with the key's path (`connector.groups.360001: ...`), so
the config loader can show them as they are. Types are small objects with `read(value,
path)`; a connector whose setting has a rule no type states (two keys that exclude each
other, a URL without a path) checks it after `Schema.check`, on the values it returns.
The settings tables in docs/connectors/*.md are tested against these schemas
(`documented_keys`), so the docs cannot drift from the code.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class Kind(Protocol):
    """A setting's type: `read` returns the value as the connector uses it, or raises
    ValueError starting with `path`."""

    def read(self, value: Any, path: str) -> Any: ...


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Text:
    """A string; by default non-empty (whitespace alone is empty), else `expected`."""

    expected: str = "a non-empty string"
    empty: bool = False
    pattern: str | None = None
    strip: bool = False

    def read(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or (not self.empty and not value.strip()) or (
                self.pattern is not None and not re.fullmatch(self.pattern, value)):
            raise ValueError(f"{path}: expected {self.expected}, got {value!r}")
        return value.strip() if self.strip else value


@dataclass(frozen=True)
class Number:
    """A number above `above` (at least `least`, at most `most` when set); `whole` for
    integers only."""

    above: float | None = 0
    least: float | None = None
    whole: bool = False
    expected: str = ""
    most: float | None = None

    def read(self, value: Any, path: str) -> float | int:
        ok = _whole(value) if self.whole else (
            isinstance(value, int | float) and not isinstance(value, bool))
        if ok and self.above is not None and value <= self.above:
            ok = False
        if ok and self.least is not None and value < self.least:
            ok = False
        if ok and self.most is not None and value > self.most:
            ok = False
        if not ok:
            raise ValueError(f"{path}: expected {self.expected or self._expected()}, "
                             f"got {value!r}")
        return value if self.whole else float(value)

    def _expected(self) -> str:
        noun = "whole number" if self.whole else "number"
        if self.least is not None and self.most is not None:
            return f"a {noun} from {self.least:g} to {self.most:g}"
        if self.least is not None:
            return f"a {noun} >= {self.least:g}"
        if self.above == 0:
            return f"a positive {noun}"
        return f"a {noun}" if self.above is None else f"a {noun} > {self.above:g}"


@dataclass(frozen=True)
class Flag:
    def read(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"{path}: expected true or false")
        return value


@dataclass(frozen=True)
class Choice:
    options: tuple[str, ...]
    expected: str = ""  # default: "a or b"

    def read(self, value: Any, path: str) -> str:
        if value not in self.options:
            raise ValueError(f"{path}: expected {self.expected or ' or '.join(self.options)}")
        return str(value)


@dataclass(frozen=True)
class Instant:
    """An ISO 8601 timestamp with an offset (or a datetime YAML already read)."""

    def read(self, value: Any, path: str) -> datetime:
        from sla_sync.connector.model import parse_instant
        if not isinstance(value, str | datetime):
            raise ValueError(f"{path}: expected an ISO 8601 timestamp with an offset, e.g. "
                             "2026-01-01T00:00:00Z")
        return parse_instant(value, path)


@dataclass(frozen=True)
class Zone:
    """An IANA timezone name."""

    hint: str = ""

    def read(self, value: Any, path: str) -> ZoneInfo:
        try:
            if isinstance(value, str) and value:
                return ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            pass
        raise ValueError(f"{path}: {value!r} is not an IANA timezone name{self.hint}")


@dataclass(frozen=True)
class Url:
    """A helpdesk base URL: https, or plain http to a loopback address only."""

    def read(self, value: Any, path: str) -> str:
        from sla_sync.connector.http import check_base_url
        return check_base_url(value, path)


@dataclass(frozen=True)
class Id:
    """A helpdesk's numeric id, given as a number or as digits (YAML keys are either)."""

    expected: str = "a numeric id"

    def read(self, value: Any, path: str) -> int:
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        if not _whole(value):
            raise ValueError(f"{path}: expected {self.expected}")
        return int(value)


@dataclass(frozen=True)
class Key:
    """A mapping key kept as text (YAML reads `1: new` with an integer key)."""

    def read(self, value: Any, path: str) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError(f"{path}: expected text")
        return str(value)


@dataclass(frozen=True)
class Table:
    """A mapping `{key: value}`; each entry checked at `path.key`. `unique`: no value twice
    (a name written back must have one id). `expected` says what the whole mapping is."""

    keys: Kind = field(default_factory=Key)
    values: Kind = field(default_factory=Text)
    expected: str = "a mapping"
    unique: str = ""  # the message for a repeated value; empty: repeats allowed
    whole: bool = False  # one message for any bad entry (the mapping's `expected`)

    def read(self, value: Any, path: str) -> dict[Any, Any]:
        if not isinstance(value, Mapping):
            raise ValueError(f"{path}: expected {self.expected}")
        table: dict[Any, Any] = {}
        for raw_key, raw_value in value.items():
            try:
                key = self.keys.read(raw_key, f"{path}.{raw_key}")
                item = self.values.read(raw_value, f"{path}.{raw_key}")
            except ValueError:
                if self.whole:
                    raise ValueError(f"{path}: expected {self.expected}") from None
                raise
            if self.unique and item in table.values():
                raise ValueError(f"{path}.{raw_key}: " + self.unique.format(value=item))
            table[key] = item
        return table


@dataclass(frozen=True)
class Items:
    """A non-empty list of distinct items of `item`."""

    item: Kind
    expected: str = "a list"

    def read(self, value: Any, path: str) -> tuple[Any, ...]:
        if not isinstance(value, list) or not value:
            raise ValueError(f"{path}: expected {self.expected}")
        try:
            items = tuple(self.item.read(v, f"{path}.{i}") for i, v in enumerate(value))
        except ValueError:
            raise ValueError(f"{path}: expected {self.expected}") from None
        if len(set(items)) != len(items):
            raise ValueError(f"{path}: expected {self.expected}")
        return items


@dataclass(frozen=True)
class Nullable:
    """`kind`, or null (read as None)."""

    kind: Kind

    def read(self, value: Any, path: str) -> Any:
        return None if value is None else self.kind.read(value, path)


@dataclass(frozen=True)
class Custom:
    """A rule no type states: `check(value, path)` returns the value or raises ValueError."""

    check: Callable[[Any, str], Any]

    def read(self, value: Any, path: str) -> Any:
        return self.check(value, path)


@dataclass(frozen=True)
class Setting:
    """One `connector:` key. `default` is what a missing key reads as (not checked: it is
    the code's own); `missing` is the message when a required key is absent or null."""

    key: str
    kind: Kind
    description: str
    required: bool = False
    secret: bool = False  # read from the environment (`${VAR}`): never shown
    default: Any = None
    missing: str = ""
    shown: str = ""  # the default as the docs' table says it, where `default` does not


@dataclass(frozen=True)
class Block:
    """A nested mapping of its own settings (`tier: {field: 360001}`), unknown keys refused
    at `path.key`."""

    settings: tuple[Setting, ...]

    def read(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise ValueError(f"{path}: expected a mapping of "
                             f"{', '.join(s.key for s in self.settings)}")
        return _check(self.settings, value, path, lambda key: (
            f"{path}.{key}: unknown key (known: "
            f"{', '.join(sorted(s.key for s in self.settings))})"))


@dataclass(frozen=True)
class Schema:
    """Every `connector:` key of one kind of connector (`type` is always known)."""

    kind: str  # the `type:` value, for messages: "an rt connector"
    settings: tuple[Setting, ...]
    root: str = "connector"

    @property
    def keys(self) -> frozenset[str]:
        return frozenset({"type", *(s.key for s in self.settings)})

    @property
    def secrets(self) -> frozenset[str]:
        return frozenset(s.key for s in self.settings if s.secret)

    def __getitem__(self, key: str) -> Setting:
        for setting in self.settings:
            if setting.key == key:
                return setting
        raise KeyError(key)

    def check(self, settings: Mapping[str, Any], partial: bool = False) -> dict[str, Any]:
        """The checked values of every key (a missing key: its default); a ValueError
        naming the first wrong key's path. `partial`: a required key may be missing (reading
        the mapping options alone, as tests and benchmarks do)."""
        known = sorted(self.keys)
        article = "an" if self.kind[0] in "aeiou" else "a"
        return _check(self.settings, settings, self.root, lambda key: (
            f"{self.root}.{key}: unknown setting for {article} {self.kind} connector "
            f"(known: {', '.join(known)})"), ignore={"type"}, partial=partial)


def _check(settings: Iterable[Setting], given: Mapping[str, Any], root: str,
           unknown: Callable[[str], str], ignore: frozenset[str] | set[str] = frozenset(),
           partial: bool = False) -> dict[str, Any]:
    settings = tuple(settings)
    known = {s.key for s in settings} | set(ignore)
    strange = sorted(str(k) for k in given if k not in known)
    if strange:
        raise ValueError(unknown(strange[0]))
    values: dict[str, Any] = {}
    for setting in settings:
        path = f"{root}.{setting.key}"
        value = given.get(setting.key)
        blank = value is None or (isinstance(value, str) and not value.strip())
        if setting.required and blank and not partial:
            why = setting.missing or f"{setting.description} is required"
            raise ValueError(f"{path}: {why}")
        if setting.key not in given:
            values[setting.key] = setting.default
        else:
            values[setting.key] = setting.kind.read(value, path)
    return values


#: The HTTP layer's settings, shared by every connector that talks HTTP (see
#: connector/http.py `client_from_settings`).
HTTP = (
    Setting("requests_per_minute", Nullable(Number()), "the client-side throttle's budget"),
    Setting("timeout", Nullable(Number()), "seconds a whole answer, body included, may take",
            default=30.0),
    Setting("max_retry_seconds", Nullable(Number()), "the longest total wait for retries",
            default=120.0),
    Setting("max_attempts", Nullable(Number()), "attempts per request", default=8),
    Setting("max_body_bytes", Nullable(Number()), "the largest answer read",
            default=64 * 1024 * 1024),
)


def url_setting(description: str = "the helpdesk's base URL") -> Setting:
    return Setting("url", Url(), description, required=True,
                   missing="the helpdesk's base URL is required")


def table(schema: Schema) -> str:
    """The schema as a doc page's settings table (`| key | default | meaning |`), one row a
    key in the schema's order: what docs/connectors/*.md show where the table is
    generated."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for setting in schema.settings:
        if setting.shown or setting.required:
            default = setting.shown or "required"
        elif setting.default in (None, "", {}, ()):
            default = "none"
        else:
            shown = setting.default
            if isinstance(shown, tuple):
                shown = f"[{', '.join(map(str, shown))}]"
            elif isinstance(shown, float) and shown.is_integer():
                shown = int(shown)
            default = f"`{shown}`"
        meaning = setting.description + ("; read from the environment (`${VAR}`)"
                                         if setting.secret else "")
        rows.append(f"| `{setting.key}` | {default} | {meaning} |")
    return "\n".join(rows) + "\n"


_DOC_KEY = re.compile(r"`([a-z_][a-z0-9_]*)`")


def documented_keys(markdown: str) -> set[str]:
    """The keys a connector's doc page lists in its settings table: the backticked names in
    the first column of the table whose header starts `| key |`."""
    keys: set[str] = set()
    in_table = False
    for line in markdown.splitlines():
        if line.startswith("| key |"):
            in_table = True
            continue
        if in_table and not line.startswith("|"):
            in_table = False
        if in_table and not line.startswith("|---"):
            first = line.split("|")[1]
            keys.update(_DOC_KEY.findall(first))
    return keys


if __name__ == "__main__":  # print a connector's settings table for its doc page
    import importlib
    import sys

    print(table(importlib.import_module(f"sla_sync.connector.{sys.argv[1]}").SCHEMA), end="")
