"""Talking to helpdesks: the Record/ChangeSet model and one module per system.

`open_connector` turns the `connector:` section of a config into a connector.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from connector.base import (
    Capabilities,
    ConflictError,
    Connector,
    ConnectorError,
    Page,
    RecordGone,
)
from connector.model import ChangeSet, Note, Record, RecordError, StatusChange

__all__ = [
    "Capabilities",
    "ChangeSet",
    "ConflictError",
    "Connector",
    "ConnectorError",
    "Note",
    "Page",
    "Record",
    "RecordError",
    "RecordGone",
    "StatusChange",
    "open_connector",
]


def open_connector(settings: dict[str, Any], base_dir: Path) -> Connector:
    """Build the connector a config's `connector:` mapping names.

    Raises ValueError with a message naming the offending key; the caller turns it into a
    configuration error.
    """
    kind = settings.get("type")
    if kind == "file":
        from connector.file import FileHelpdesk

        return FileHelpdesk.from_settings(settings, base_dir)
    known = "file"
    raise ValueError(f"connector.type: unknown connector type {kind!r} (known: {known})")
