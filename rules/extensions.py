"""Extensions: extra time an agent grants one record's SLA clocks, read off the record itself.

An extension is a tag `sla_extend_DURATION` (first response and resolution) or
`sla_extend_TARGET_DURATION` (that target; a cyclic target gets it in every cycle), or the
custom field `custom.sla_extend` holding the same words without the prefix ("2h",
"resolution 2h", several separated by commas). DURATION is a target's duration (`2h`,
`1h30m`, `2bd`). `sla-sync extend ID 2h --reason TEXT` writes such a tag and a note, and
its audit rows say who and why.

Because the extension is part of the record, reading it is idempotent by construction: the
same tag is there once however often a sync reads it, and a rerun extends nothing twice
(two different tags add up). Removing the tag withdraws the extension. The engine adds the
time where it picks a record's target seconds (rules.engine.run_clocks), so every clock
fact, wake-up time and explain sees the due time moved; reports count a clock met with an
extension as "extended", not as met.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass

from sla_sync.connector.model import Record
from sla_sync.rules.calendar import Calendar
from sla_sync.rules.clock import ALL_TARGETS, TARGETS
from sla_sync.rules.durations import Target, parse_target

TAG_PREFIX = "sla_extend_"
#: The custom field an extension may also be written to (custom.sla_extend).
FIELD = "sla_extend"
_WORDS = re.compile(r"(?:(?P<target>[a-z_]+?)[_ :])?(?P<duration>\d[\d.a-z]*)",
                    re.IGNORECASE)


@dataclass(frozen=True)
class Extension:
    """One grant: `targets` extended by `duration`, as `source` says (the tag or field)."""

    targets: tuple[str, ...]
    duration: Target
    text: str  # the duration as written
    source: str


@dataclass(frozen=True)
class Extensions:
    granted: tuple[Extension, ...] = ()
    #: Tags or field values that look like extensions but cannot be read, with why.
    ignored: tuple[str, ...] = ()

    def seconds(self, target: str, calendar: Calendar) -> int:
        """The extra seconds `target` gets on `calendar` (business days as it counts them)."""
        return sum(e.duration.seconds_on(calendar) for e in self.granted
                   if target in e.targets)

    def targets(self) -> frozenset[str]:
        return frozenset(t for e in self.granted for t in e.targets)


NONE = Extensions()


def extension_tag(duration: str, target: str | None = None) -> str:
    """The tag `sla-sync extend` writes; ValueError for a duration or target it cannot be."""
    parse_target(duration)
    if target is not None and target not in ALL_TARGETS:
        raise ValueError(f"unknown target {target!r} (known: {', '.join(ALL_TARGETS)})")
    return f"{TAG_PREFIX}{target}_{duration}" if target else f"{TAG_PREFIX}{duration}"


def extensions_of(record: Record) -> Extensions:
    """The extensions the record carries (NONE, at no cost, for a record without any)."""
    tags = [t for t in record.tags if t.lower().startswith(TAG_PREFIX)]
    field = record.custom.get(FIELD) if record.custom else None
    if not tags and field in (None, ""):
        return NONE
    granted: list[Extension] = []
    ignored: list[str] = []
    seen: set[str] = set()
    for source, words in _sources(tags, field):
        key = words.lower()
        if key in seen:  # the same grant twice (a tag and the field): once
            continue
        seen.add(key)
        found = _read(words, source)
        if isinstance(found, str):
            ignored.append(found)
        else:
            granted.append(found)
    return Extensions(tuple(granted), tuple(ignored))


def _sources(tags: list[str], field: object) -> Iterator[tuple[str, str]]:
    for tag in tags:
        yield f"tag {tag}", tag[len(TAG_PREFIX):]
    if isinstance(field, str):
        for part in field.split(","):
            if part.strip():
                yield f"field custom.{FIELD} {part.strip()!r}", part.strip()
    elif field is not None:
        yield f"field custom.{FIELD}", str(field)


def _read(words: str, source: str) -> Extension | str:
    match = _WORDS.fullmatch(words.strip())
    if match is None:
        return f"{source}: expected DURATION or TARGET_DURATION (e.g. 2h, resolution_4h)"
    target, text = match.group("target"), match.group("duration").lower()
    if target is not None and target.lower() not in ALL_TARGETS:
        return f"{source}: unknown target {target!r} (known: {', '.join(ALL_TARGETS)})"
    try:
        duration = parse_target(text)
    except ValueError as exc:
        return f"{source}: {exc}"
    return Extension((target.lower(),) if target else TARGETS, duration, text, source)


def describe(extensions: Extensions, targets: Collection[str]) -> list[str]:
    """Lines for explain: each grant and the targets it moves (of `targets`, those the
    record's SLA sets), and what was ignored."""
    lines = []
    for e in extensions.granted:
        names = [t for t in e.targets if t in targets]
        lines.append(f"{e.source}: +{e.text} on "
                     + (", ".join(names) if names else "no target this SLA sets"))
    lines += [f"ignored: {why}" for why in extensions.ignored]
    return lines
