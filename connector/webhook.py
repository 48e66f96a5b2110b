"""Webhooks for the `notify` action: a JSON POST per notification, through the same HTTP
layer as the connectors (retries, Retry-After, bounded waits).

Config: `webhooks: {NAME: {url: ${SLACK_WEBHOOK_URL}, format: slack}}`. `slack` (the
default) posts `{"text": ...}`, which Slack-compatible incoming webhooks (Slack,
Mattermost, Rocket.Chat, Teams workflows) accept; `json` posts the text with the record id,
rule and webhook name for tools of your own. Webhook URLs are secrets: they never appear in
messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connector.http import HttpClient, check_base_url

FORMATS = ("slack", "json")


class Webhooks:
    def __init__(self, clients: Mapping[str, tuple[HttpClient, str, str]]):
        self.clients = clients  # name -> (client, format, the exact URL to post to)

    @classmethod
    def from_settings(cls, settings: Any) -> Webhooks:
        """From the config's `webhooks` mapping; ValueError naming the key."""
        if settings is None:
            return cls({})
        if not isinstance(settings, dict):
            raise ValueError("webhooks: expected a mapping of webhook names to {url, format}")
        clients = {}
        for name, spec in settings.items():
            where = f"webhooks.{name}"
            if not isinstance(spec, dict):
                raise ValueError(f"{where}: expected {{url: ..., format: slack|json}}")
            unknown = sorted(set(spec) - {"url", "format"})
            if unknown:
                raise ValueError(f"{where}.{unknown[0]}: unknown key (known: url, format)")
            fmt = spec.get("format", "slack")
            if fmt not in FORMATS:
                raise ValueError(f"{where}.format: expected one of {', '.join(FORMATS)}")
            try:
                url = check_base_url(spec.get("url"), f"{where}.url")
            except ValueError as exc:
                # The message names the key, never the URL (webhook URLs carry secrets).
                raise ValueError(str(exc).split(": ")[0] + ": expected an https URL (or "
                                 "http to a loopback address)") from None
            clients[name] = (HttpClient(url, name=f"webhook {name!r}", max_retry_seconds=60,
                                        quote_paths=False), fmt, url)
        return cls(clients)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.clients)

    def __call__(self, webhook: str, text: str, context: Mapping[str, Any]) -> None:
        if webhook not in self.clients:
            raise ValueError(f"webhook {webhook!r} is not defined in the config")
        client, fmt, url = self.clients[webhook]
        body: dict[str, Any] = {"text": text}
        if fmt == "json":
            body.update(record_id=context.get("record_id"), rule=context.get("rule"),
                        webhook=webhook)
        client.post(url, json=body, ok=(200, 201, 202, 204))
