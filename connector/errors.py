"""One mapping from a helpdesk's refusal of one record's write to the error the sync loop
acts on: 404 the record is gone (RecordGone), 409/412 it changed since it was read
(ConflictError, retried after a read-back), 400/422 the helpdesk refused this change
(ConnectorError for this record alone; the run goes on). A vendor gives only how to read
its error body (`detail`) and, where its API differs, which statuses mean what.

Statuses that concern the helpdesk as a whole (401, 403, 429, 5xx) are the HTTP layer's
(connector/http.py); this map sees only the ones a write lets through with `ok=`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from sla_sync.connector.base import ConflictError, ConnectorError, RecordGone


def body_detail(response: requests.Response) -> str:
    """The status and the usual error body (`description`, `message` or `error`),
    shortened."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        text = body.get("description") or body.get("message") or body.get("error")
        if text:
            return f"HTTP {response.status_code}: {str(text)[:300]}"
    return f"HTTP {response.status_code}"


@dataclass(frozen=True)
class ErrorMap:
    """`vendor` and `noun` name the record in messages ("zendesk: ticket 7 ..."); `detail`
    says what a refusal's body says (with its status, where the vendor's reader gives it)."""

    vendor: str
    noun: str = "ticket"
    detail: Callable[[requests.Response], str] = body_detail
    gone: frozenset[int] = frozenset({404})
    conflict: frozenset[int] = frozenset({409, 412})
    refused: frozenset[int] = frozenset({400, 422})

    @property
    def statuses(self) -> tuple[int, ...]:
        """Every status this map turns into a record error (for a request's `ok=`)."""
        return tuple(sorted(self.gone | self.conflict | self.refused))

    def ok(self, *success: int) -> tuple[int, ...]:
        """`success` and every status this map handles: what a write lets through."""
        return tuple(sorted({*success, *self.statuses}))

    def error(self, response: requests.Response, record_id: str,
              what: str = "the change") -> ConnectorError | None:
        """The record error `response` means, or None when it is none of this map's."""
        status = response.status_code
        name = f"{self.vendor}: {self.noun} {record_id}"
        if status in self.gone:
            return RecordGone(f"{name} no longer exists", record_id=record_id)
        if status in self.conflict:
            return ConflictError(f"{name} changed since it was read (HTTP {status}); nothing "
                                 "was written", record_id=record_id)
        if status in self.refused:
            return ConnectorError(f"{name}: the helpdesk refused {what} "
                                  f"({self.detail(response)})", record_id=record_id)
        return None

    def check(self, response: requests.Response, record_id: str,
              what: str = "the change") -> None:
        """Raise the record error `response` means, if any."""
        error = self.error(response, record_id, what)
        if error is not None:
            raise error

    def extended(self, **changes: Any) -> ErrorMap:
        """This map with some fields changed (a vendor whose 409 is a refusal)."""
        return ErrorMap(**{**self.__dict__, **changes})
