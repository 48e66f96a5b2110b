"""Test tooling shared by the vendor spec modules (tests/zendesk_spec.py, tests/jsm_spec.py):
a vendor's OpenAPI description, loaded once per session by the module's own loader (which
reads it from outside the repository and applies its overlays), and the checks of the
requests a connector sent against it with openapi-core."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import requests


class Checker:
    def __init__(self, load: Callable[[], dict[str, Any]], vendor: str):
        self._load = load
        self.vendor = vendor

    @functools.cached_property
    def spec(self) -> dict[str, Any]:
        return self._load()

    @functools.cached_property
    def openapi(self) -> Any:
        from openapi_core import Config, OpenAPI

        # The published vendor files fail strict spec validation (Zendesk: an unresolved
        # path parameter; Jira: an empty enum value); the operations used are sound, so the
        # validator of the spec itself is switched off.
        return OpenAPI.from_dict(self.spec, config=Config(spec_validator_cls=None))

    def spec_dict(self) -> dict[str, Any]:
        return self.spec

    def check(self, request: requests.PreparedRequest) -> None:
        """Raises openapi-core's validation error when the request does not fit the spec."""
        from openapi_core.contrib.requests import RequestsOpenAPIRequest

        self.openapi.validate_request(RequestsOpenAPIRequest(request))

    def check_all(self, requests_sent: list[requests.PreparedRequest]) -> None:
        """Every request, with the method and path of the first that does not fit."""
        for request in requests_sent:
            try:
                self.check(request)
            except Exception as exc:
                raise AssertionError(f"{request.method} {request.path_url} does not conform "
                                     f"to the {self.vendor} OpenAPI spec: {exc}") from exc
