"""Talking to helpdesks: the Record/ChangeSet model and one module per system.

`open_connector` turns the `connector:` section of a config into a connector.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any

from sla_sync.connector.base import (
    Capabilities,
    ConflictError,
    Connector,
    ConnectorError,
    OutcomeUnknown,
    Page,
    RecordGone,
    WriteResult,
)
from sla_sync.connector.model import ChangeSet, Note, Record, RecordError, StatusChange

__all__ = [
    "Capabilities",
    "ChangeSet",
    "ConflictError",
    "Connector",
    "ConnectorError",
    "Note",
    "OutcomeUnknown",
    "Page",
    "Record",
    "RecordError",
    "RecordGone",
    "StatusChange",
    "WriteResult",
    "open_connector",
]


def open_connector(settings: dict[str, Any], base_dir: Path) -> Connector:
    """Build the connector a config's `connector:` mapping names. `sandbox: true`, for any
    type, says the helpdesk is a test or sandbox instance that no one works in: its
    capabilities then say it is not a real helpdesk, so `run --now` may write to it.

    Raises ValueError with a message naming the offending key; the caller turns it into a
    configuration error.
    """
    kind = settings.get("type")
    if kind not in CONNECTORS:
        raise ValueError(f"connector.type: unknown connector type {kind!r} "
                         f"(known: {', '.join(CONNECTORS)})")
    settings = dict(settings)
    sandbox = settings.pop("sandbox", False)
    if not isinstance(sandbox, bool):
        raise ValueError(f"connector.sandbox: expected true or false, got {sandbox!r}")
    module_name, class_name = CONNECTORS[kind].rsplit(".", 1)
    module = importlib.import_module(module_name)
    connector: Connector = getattr(module, class_name).from_settings(settings, base_dir)
    if sandbox:  # a test or sandbox instance: not a helpdesk people work in
        connector.capabilities = dataclasses.replace(connector.capabilities,
                                                     real_helpdesk=False)
    return connector


#: type -> the class that speaks to it (imported only when a config names it).
CONNECTORS = {
    "file": "sla_sync.connector.file.FileHelpdesk",
    "zendesk": "sla_sync.connector.zendesk.Zendesk",
    "freshdesk": "sla_sync.connector.freshdesk.Freshdesk",
    "hubspot": "sla_sync.connector.hubspot.HubSpot",
    "rt": "sla_sync.connector.rt.RT",
    "jsm": "sla_sync.connector.jsm.JSM",
}
