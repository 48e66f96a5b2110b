"""Test tooling: checks the requests the Zendesk connector sends against Zendesk's official
OpenAPI description.

The spec is vendor material: it is read from outside the repository ($SLA_SYNC_ZENDESK_SPEC,
else ../shared/specs/zendesk-support-oas.yaml beside the checkout), loaded once per session,
and never copied here. Where it falls short of Zendesk's documented API, `OVERLAYS` patches
the loaded copy in memory; each overlay says why.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

import openapi_check

ROOT = Path(__file__).resolve().parent.parent
SPEC = Path(os.environ.get("SLA_SYNC_ZENDESK_SPEC")
            or ROOT.parent / "shared" / "specs" / "zendesk-support-oas.yaml")
MISSING = (f"the Zendesk OpenAPI spec is not at {SPEC} (set SLA_SYNC_ZENDESK_SPEC to its "
           "path to run the conformance checks)")


def available() -> bool:
    return SPEC.is_file()


_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present


class _Loader(_SafeLoader):
    """PyYAML reads a plain `=` scalar (e.g. `change: =`) as the YAML 1.1 `value` tag and
    refuses it; here it is the string it looks like."""


_Loader.add_constructor("tag:yaml.org,2002:value",
                        lambda loader, node: loader.construct_scalar(node))


# -- overlays: where the published spec does not describe what Zendesk documents ----------

def _cursor_pages_need_no_start_time(spec: dict[str, Any]) -> None:
    # The cursor-based ticket export takes start_time on the first request only; later
    # pages send `cursor` alone, but the spec marks start_time required for both.
    item = spec["paths"]["/api/v2/incremental/tickets/cursor"]
    start = copy.deepcopy(spec["components"]["parameters"]["IncrementalUnixTime"])
    start["required"] = False
    item["parameters"] = [start, {"$ref": "#/components/parameters/IncrementalCursor"}]


def _ticket_updates_merge_tags_and_set_field_values(spec: dict[str, Any]) -> None:
    # Ticket updates take `additional_tags` / `remove_tags` (documented under "Updating tag
    # lists"), which the schema lacks; and it types `custom_fields` items as field
    # definitions (key, type, title required) where an update sends {id, value} pairs.
    # Unknown properties are refused, so that a misspelt key fails the check instead of
    # being ignored by Zendesk.
    schema = spec["components"]["schemas"]["TicketUpdateInput"]
    properties = schema["properties"]
    tags = {"type": "array", "items": {"type": "string"}}
    properties["additional_tags"] = dict(tags)
    properties["remove_tags"] = dict(tags)
    properties["custom_fields"] = {"type": "array", "items": {
        "type": "object", "required": ["id", "value"], "additionalProperties": False,
        "properties": {"id": {"type": "integer"}, "value": {}}}}
    schema["additionalProperties"] = False


def _update_many_takes_a_tickets_array(spec: dict[str, Any]) -> None:
    # update_many documents a body of up to 100 ticket objects, each with its id; the spec
    # gives the operation no request body at all.
    item = copy.deepcopy(spec["components"]["schemas"]["TicketUpdateInput"])
    item["properties"]["id"] = {"type": "integer"}
    item["required"] = ["id"]
    spec["paths"]["/api/v2/tickets/update_many"]["put"]["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": {
            "type": "object", "required": ["tickets"], "additionalProperties": False,
            "properties": {"tickets": {"type": "array", "minItems": 1, "maxItems": 100,
                                       "items": item}}}}}}


def _list_groups_takes_no_user_id(spec: dict[str, Any]) -> None:
    # "List Groups" (GET /api/v2/groups) lists the account's groups; the spec gives it the
    # `user_id` path parameter of "List Groups by user" (/api/v2/users/{user_id}/groups),
    # which its path has no place for.
    item = spec["paths"]["/api/v2/groups"]["get"]
    item["parameters"] = [p for p in item["parameters"]
                          if p.get("$ref") != "#/components/parameters/UserId"]


OVERLAYS: tuple[Callable[[dict[str, Any]], None], ...] = (
    _list_groups_takes_no_user_id,
    _cursor_pages_need_no_start_time,
    _ticket_updates_merge_tags_and_set_field_values,
    _update_many_takes_a_tickets_array,  # after the one above: its items copy the schema
)


def _load() -> dict[str, Any]:
    with SPEC.open(encoding="utf-8") as stream:
        spec: dict[str, Any] = yaml.load(stream, Loader=_Loader)  # a safe loader
    for overlay in OVERLAYS:
        overlay(spec)
    return spec


CHECKER = openapi_check.Checker(_load, "Zendesk")
spec_dict, check, check_all = CHECKER.spec_dict, CHECKER.check, CHECKER.check_all
