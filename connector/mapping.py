"""Mapping a helpdesk's own values to the Record vocabulary and back.

A `ValueMap` turns a helpdesk value (a Freshdesk priority code, a Zendesk via channel) into
a Record value, with a documented fallback for values it does not know: those are reported
once per run as notices, never crashed on. Maps can be extended from the config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ValueMap:
    name: str  # e.g. "priority", for messages
    table: Mapping[Any, str]  # helpdesk value -> Record value
    fallback: str
    unknown: set[str] = field(default_factory=set)

    def read(self, value: Any, notices: list[str]) -> str:
        if value in self.table:
            return self.table[value]
        if value is None or value == "":
            return self.fallback
        key = repr(value)
        if key not in self.unknown:
            self.unknown.add(key)
            notices.append(f"unknown {self.name} {value!r}: read as {self.fallback!r} (map it "
                           f"in the connector's {self.name}_map setting)")
        return self.fallback

    def write(self, value: str) -> Any:
        """The helpdesk value for a Record value; ValueError when there is none."""
        for theirs, ours in self.table.items():
            if ours == value:
                return theirs
        raise ValueError(f"no helpdesk {self.name} for {value!r} (known: "
                         f"{', '.join(sorted(set(self.table.values())))})")

    def extended(self, overrides: Mapping[Any, str] | None) -> ValueMap:
        return ValueMap(self.name, {**self.table, **(overrides or {})}, self.fallback)
