"""Option values shared by the CLI's commands: an instant or a date (`--since`, `--until`)
and `--by` breakdowns, each refused with click's usage error naming the option."""

from __future__ import annotations

from datetime import datetime

import click

from sla_sync.connector.model import parse_instant
from sla_sync.rules.metrics import SEGMENT_FIELDS


def instant_option(value: str | None, name: str) -> datetime | None:
    """An ISO 8601 instant with an offset, or a date (its UTC midnight); None when absent."""
    if value is None:
        return None
    text = f"{value}T00:00:00+00:00" if len(value) == 10 else value  # a date: UTC midnight
    try:
        return parse_instant(text, name)
    except ValueError as exc:
        raise click.BadParameter(str(exc).removeprefix(f"{name}: "), param_hint=name) from None


def breakdowns(values: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Each `--by` value (fields joined by commas) as a tuple of segment fields."""
    groups = []
    for value in values:
        fields = tuple(f.strip() for f in value.split(",") if f.strip())
        unknown = [f for f in fields if f not in SEGMENT_FIELDS]
        if unknown or not fields:
            raise click.BadParameter(
                f"unknown field {unknown[0] if unknown else value!r} "
                f"(choose from {', '.join(SEGMENT_FIELDS)})", param_hint="--by")
        groups.append(fields)
    return groups
