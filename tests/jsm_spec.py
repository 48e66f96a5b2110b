"""Test tooling: checks the requests the JSM connector sends against Atlassian's OpenAPI
description of the Jira Cloud platform REST API (v3).

The spec is vendor material: it is read from outside the repository ($SLA_SYNC_JIRA_SPEC,
else ../shared/specs/jira-cloud-platform-swagger-v3.v3.json beside the checkout), loaded once
per session, and never copied here. The service desk API (/rest/servicedeskapi) has no
published machine-readable spec; `OVERLAYS` adds the one operation pair the connector uses,
as Atlassian's reference documents it, to the loaded copy in memory (each overlay says where).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openapi_check

ROOT = Path(__file__).resolve().parent.parent
SPEC = Path(os.environ.get("SLA_SYNC_JIRA_SPEC")
            or ROOT.parent / "shared" / "specs" / "jira-cloud-platform-swagger-v3.v3.json")
MISSING = (f"the Jira Cloud platform OpenAPI spec is not at {SPEC} (set SLA_SYNC_JIRA_SPEC to "
           "its path to run the conformance checks)")
#: Where the overlay's operations are documented.
SERVICE_DESK_DOCS = ("https://developer.atlassian.com/cloud/jira/service-desk/rest/"
                     "api-group-request/#api-rest-servicedeskapi-request-issueidorkey-comment-get")


def available() -> bool:
    return SPEC.is_file()


def _service_desk_request_comments(spec: dict[str, Any]) -> None:
    # "Get request comments" (GET) takes public, internal (booleans, default true), start
    # and limit (integers); "Create request comment" (POST) takes a body {body: string,
    # public: boolean}. Both documented at SERVICE_DESK_DOCS; the platform spec itself points
    # there for internal comments (Comment.jsdPublic). Unknown body keys are refused here,
    # so a misspelt key fails the check.
    def query(name: str, kind: str) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": False, "schema": {"type": kind}}

    spec["paths"]["/rest/servicedeskapi/request/{issueIdOrKey}/comment"] = {
        "parameters": [{"name": "issueIdOrKey", "in": "path", "required": True,
                        "schema": {"type": "string"}}],
        "get": {"operationId": "getRequestComments",
                "parameters": [query("public", "boolean"), query("internal", "boolean"),
                               query("start", "integer"), query("limit", "integer")],
                "responses": {"200": {"description": "PagedDTOCommentDTO"}}},
        "post": {"operationId": "createRequestComment",
                 "requestBody": {"required": True, "content": {"application/json": {
                     "schema": {"type": "object", "required": ["body", "public"],
                                "additionalProperties": False,
                                "properties": {"body": {"type": "string", "minLength": 1},
                                               "public": {"type": "boolean"}}}}}},
                 "responses": {"201": {"description": "CommentDTO"}}}}


def _issue_edits_name_their_keys(spec: dict[str, Any]) -> None:
    # IssueUpdateDetails allows any property (additionalProperties: true), so a misspelt
    # `updates` would pass; an edit has the documented keys only ("Edit issue").
    spec["components"]["schemas"]["IssueUpdateDetails"]["additionalProperties"] = False


def _any_site(spec: dict[str, Any]) -> None:
    # The spec's one server is the placeholder https://your-domain.atlassian.net; every
    # Jira Cloud site is its own host.
    spec["servers"] = [{"url": "https://{site}", "variables": {
        "site": {"default": "your-domain.atlassian.net"}}}]


OVERLAYS: tuple[Callable[[dict[str, Any]], None], ...] = (
    _any_site,
    _service_desk_request_comments,
    _issue_edits_name_their_keys,
)


def _load() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(SPEC.read_text(encoding="utf-8"))
    for overlay in OVERLAYS:
        overlay(spec)
    return spec


CHECKER = openapi_check.Checker(_load, "Jira")
spec_dict, check, check_all = CHECKER.spec_dict, CHECKER.check, CHECKER.check_all
