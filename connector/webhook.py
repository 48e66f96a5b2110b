"""Webhooks for the `notify` action: a JSON POST per notification, through the same HTTP
layer as the connectors (retries, Retry-After, bounded waits).

Config: `webhooks: {NAME: {url: ${SLACK_WEBHOOK_URL}, format: slack}}`. `slack` (the
default) posts `{"text": ...}`, which Slack-compatible incoming webhooks (Slack,
Mattermost, Rocket.Chat, Teams workflows) accept; `json` posts the text with the record id,
rule and webhook name for tools of your own, and `id`, the notification's delivery id. Every
post carries the delivery id in an `Idempotency-Key` header too: a post repeated after a
crash (between sending it and recording it sent) has the same id, so a receiver that keeps
the ids it has seen can drop the repeat. Webhook URLs are secrets: they never appear in
messages, nor in urllib3's DEBUG log lines; a webhook's redirect is not followed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

import requests

from sla_sync.connector.base import ConnectorError
from sla_sync.connector.http import HttpClient, check_base_url
from sla_sync.connector.settings import Block, Choice, Custom, Key, Setting, Table

FORMATS = ("slack", "json")
#: urllib3 logs each request's path at DEBUG, and the path of a webhook URL is its secret.
URLLIB3_LOGGERS = ("urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry",
                   "urllib3.poolmanager", "urllib3.response")


class _Redact(logging.Filter):
    """Rewrites a log record that would show a webhook URL's path."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(secret in message for secret in self.secrets):
            for secret in sorted(self.secrets, key=len, reverse=True):
                message = message.replace(secret, "<webhook URL>")
            record.msg, record.args = message, ()
        return True


_redact = _Redact()
for _name in URLLIB3_LOGGERS:
    logging.getLogger(_name).addFilter(_redact)


def _hide(url: str) -> None:
    parsed = urlparse(url)
    _redact.secrets.add(url)
    if parsed.path.strip("/"):
        _redact.secrets.add(parsed.path + (f"?{parsed.query}" if parsed.query else ""))
        _redact.secrets.add(parsed.path)


def _url(raw: Any, path: str) -> str:
    """The webhook's URL; a message names the key, never the URL (it carries secrets)."""
    try:
        if isinstance(raw, str) and urlparse(raw).port == 0:
            raise ValueError("port 0")
    except ValueError:
        raise ValueError(f"{path}: the port is not a number from 1 to 65535 (the URL is not "
                         "shown: webhook URLs are secrets)") from None
    try:
        return check_base_url(raw, path)
    except ValueError:
        raise ValueError(f"{path}: expected an https URL (or http to a loopback "
                         "address)") from None


_HTTPS = "expected an https URL (or http to a loopback address)"
#: The `webhooks:` mapping: name -> {url, format}.
WEBHOOKS = Table(Key(), Block((
    Setting("url", Custom(_url), "the webhook's URL", required=True, secret=True,
            missing=_HTTPS),
    Setting("format", Choice(FORMATS, f"one of {', '.join(FORMATS)}"), "what is posted",
            default="slack"),
)), "a mapping of webhook names to {url, format}")


class Webhooks:
    def __init__(self, clients: Mapping[str, tuple[HttpClient, str, str]]):
        self.clients = clients  # name -> (client, format, the exact URL to post to)

    @classmethod
    def from_settings(cls, settings: Any) -> Webhooks:
        """From the config's `webhooks` mapping; ValueError naming the key."""
        if settings is None:
            return cls({})
        clients = {}
        for name, spec in WEBHOOKS.read(settings, "webhooks").items():
            url, fmt = spec["url"], spec["format"]
            _hide(url)
            # A redirect is not followed: it would carry the notification (ticket data) to a
            # host nobody configured.
            session = requests.Session()
            session.max_redirects = 0
            clients[name] = (HttpClient(url, name=f"webhook {name!r}", max_retry_seconds=60,
                                        quote_paths=False, session=session), fmt, url)
        return cls(clients)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.clients)

    def __call__(self, webhook: str, text: str, context: Mapping[str, Any]) -> None:
        if webhook not in self.clients:
            raise ValueError(f"webhook {webhook!r} is not defined in the config")
        client, fmt, url = self.clients[webhook]
        body: dict[str, Any] = {"text": text}
        delivery = context.get("delivery_id")
        if fmt == "json":
            body.update(record_id=context.get("record_id"), rule=context.get("rule"),
                        webhook=webhook)
            if delivery:
                body["id"] = delivery
        try:
            client.post(url, json=body, ok=(200, 201, 202, 204),
                        headers={"Idempotency-Key": delivery} if delivery else None)
        except requests.TooManyRedirects:
            raise ConnectorError(f"webhook {webhook!r}: POST answered with a redirect, which is "
                                 "not followed; give the URL it points to", retriable=True)\
                from None
        except (requests.RequestException, ValueError) as exc:
            # requests quotes the URL in what it raises for a URL it cannot use.
            raise ConnectorError(f"webhook {webhook!r}: POST failed ({type(exc).__name__}; "
                                 "the URL is not shown: webhook URLs are secrets)",
                                 retriable=True) from None
