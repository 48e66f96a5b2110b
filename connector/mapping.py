"""Mapping a helpdesk's own values to the Record vocabulary and back, and telling the admin
about values that are not mapped.

A `ValueMap` turns a helpdesk value (a Freshdesk priority code, a Zendesk via channel) into
a Record value, with a documented fallback for values it does not know. A `NameMap` names a
helpdesk's ids (groups, agents) as the config does; an id it does not name reads as itself.
Neither crashes on what it does not know: it says so in the fetch's `Notices`, once per
fetch, so a process that syncs every few minutes (`run --every`) reports an unmapped value
in every run, not only in its first. Maps can be extended from the config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


class NoticeSink(Protocol):
    """Where a map tells what it read with a fallback: a fetch's `Notices`, or a plain list
    (reading one record, outside a fetch)."""

    def append(self, message: str, /) -> None: ...


class Notices:
    """The notices of one fetch: each distinct message once per fetch, whichever page it
    comes up on. A connector makes a new one at the start of every fetch (so nothing said in
    an earlier run is held back) and gives each page what came up since the last (`take`)."""

    def __init__(self) -> None:
        self._said: set[str] = set()
        self._new: list[str] = []

    def append(self, message: str) -> None:
        if message not in self._said:
            self._said.add(message)
            self._new.append(message)

    def take(self) -> list[str]:
        """The messages added since the last take, in order."""
        new, self._new = self._new, []
        return new


@dataclass
class ValueMap:
    name: str  # e.g. "priority", for messages
    table: Mapping[Any, str]  # helpdesk value -> Record value
    fallback: str

    def read(self, value: Any, notices: NoticeSink) -> str:
        if value in self.table:
            return self.table[value]
        if value is None or value == "":
            return self.fallback
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


@dataclass
class NameMap:
    """A helpdesk's ids (of groups, agents, owners) and the names the config gives them
    (`setting`, e.g. `groups`), one id per name so a name can be written back. Without a
    configured map the id itself is the name; with one, an id it lacks is read as itself
    and noticed. `attribute` names the id in messages (`group_id`)."""

    setting: str
    attribute: str
    names: dict[Any, str] = field(default_factory=dict)
    vendor: str = "helpdesk"
    #: The refusal of a name without an id (`{attribute}`, `{name}`, `{vendor}`,
    #: `{setting}`), in the vendor connector's words.
    unnamed: str = ("no {vendor} {attribute} for {name!r} (name it in the connector's "
                    "{setting} setting)")

    def name(self, value: Any) -> str:
        """The name of an id ('' for none), the id itself where the map has none."""
        if value is None or value == "":
            return ""
        return self.names.get(value, str(value))

    def read(self, value: Any, notices: NoticeSink) -> str:
        """`name`, noticing an id a configured map lacks."""
        if value is None or value == "" or value in self.names:
            return self.name(value)
        if self.names:
            notices.append(f"unknown {self.attribute} {value!r}: read as {str(value)!r} (name "
                           f"it in the connector's {self.setting} setting)")
        return str(value)

    def write(self, name: str) -> Any:
        """The id for a name ('' for none: None); a name that is all digits is an id
        itself; ValueError for any other name the map lacks."""
        if name == "":
            return None
        for number, known in self.names.items():
            if known == name:
                return number
        if name.isdigit():
            return int(name)
        raise ValueError(self.unnamed.format(vendor=self.vendor, attribute=self.attribute,
                                             name=name, setting=self.setting))

    def known(self) -> set[str]:
        return set(self.names.values())


@dataclass(frozen=True)
class FieldMap:
    """The `set_field` mapping of a connector (its `custom_fields` setting): a Record's
    custom field NAME (`custom.NAME` in a policy) -> the helpdesk's own field (a Zendesk
    ticket field id, a Freshdesk `cf_` name, a HubSpot property, an RT CustomField, a JSM
    `customfield_NNN`). Reads put each mapped field's value in `Record.custom[NAME]`, so a
    rerun compares with what the helpdesk holds and writes nothing when it holds the value."""

    connector: str
    fields: Mapping[str, Any] = field(default_factory=dict)

    def theirs(self, name: str) -> Any:
        """The helpdesk's field for custom.NAME; ValueError naming the setting to add."""
        found = self.fields.get(name)
        if found is None:
            mapped = ", ".join(sorted(self.fields)) or "none"
            raise ValueError(f"cannot write custom.{name}: no field of the helpdesk is mapped "
                             f"to it; add it to connector.custom_fields (mapped: {mapped})")
        return found

    def read(self, value_of: Any) -> dict[str, Any]:
        """custom NAME -> value for every mapped field `value_of(their field)` has (None:
        the record has no value there)."""
        out = {}
        for name, theirs in self.fields.items():
            value = value_of(theirs)
            if value is not None:
                out[name] = value
        return out
