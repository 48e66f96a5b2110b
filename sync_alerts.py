"""Alerts: the channels under `notify:` in the config, who an alert goes to, what it says
and when it may go.

- Channels: `email` (SMTP through smtplib, STARTTLS or TLS; plain SMTP only to a loopback
  host), `slack` (an incoming webhook, Block Kit), `teams` (a workflow webhook, an
  Adaptive Card) and `webhook` (a JSON body, signed with HMAC-SHA256 when a `secret` is
  given). The `webhooks:` of the config stay plain text posts (connector/webhook.py).
- Every alert is an outbox row (sync_state.py), committed with its record's write. Before
  sending, a row of a channel with recipients is fanned out into one row per recipient,
  in one transaction; each recipient is resolved when its message is sent (`{assignee}`
  through the helpdesk's directory, `{manager}` through the `teams:` map, `{oncall:NAME}`
  through a rotation of the `oncall:` map); one that cannot be resolved goes to the
  channel's `fallback`, and the run says so.
- Content: a subject and a body per event kind (warning, breach, escalation), with the
  placeholders of rule notes plus `{rule}`, `{event}`, `{text}` (the rule's notify text)
  and `{recipient}`; due times are shown in the recipient's time zone (the directory's),
  else the calendar's.
- When: `quiet: calendar` holds an alert raised while its record's calendar was closed
  until it opens (alerts of an `urgent` event kind or priority go at once); `digest: 15m`
  sends a recipient one message per interval, the interval an alert was raised in, once
  it has passed. Time is the run's `now`: nothing here reads the clock.
"""

from __future__ import annotations

import hashlib
import hmac
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sla_sync.connector.base import ConnectorError
from sla_sync.connector.model import parse_instant
from sla_sync.rules.actions import PLACEHOLDERS, render_note
from sla_sync.rules.durations import parse_duration

if TYPE_CHECKING:
    from sla_sync.connector.webhook import Webhooks

EVENTS = ("warning", "breach", "escalation")
TYPES = ("email", "slack", "teams", "webhook")
EXTRA_PLACEHOLDERS = ("rule", "event", "text", "recipient")
SIGNATURE_HEADER = "X-SLA-Sync-Signature"
_DETAILS = ("Record: {id} ({subject})\nSLA: {sla}, priority {priority}\n"
            "Assignee: {assignee}, group {group}\n"
            "First response due: {first_response_due_at}\nResolution due: {resolution_due_at}\n"
            "{url}")
DEFAULT_TEMPLATES: dict[str, tuple[str, str]] = {
    "warning": ("SLA warning: {id} {subject}",
                "{text}\n\nThis record is close to its SLA target.\n\n" + _DETAILS),
    "breach": ("SLA breached: {id} {subject}",
               "{text}\n\nThis record has missed its SLA target.\n\n" + _DETAILS),
    "escalation": ("Escalated: {id} {subject}",
                   "{text}\n\nThis record was escalated to you.\n\n" + _DETAILS),
}
COMMON_KEYS = ("type", "to", "fallback", "templates", "quiet", "digest", "urgent")
TYPE_KEYS = {"email": ("host", "port", "security", "user", "password", "from"),
             "slack": ("url",), "teams": ("url",), "webhook": ("url", "secret")}
SECURITY = ("starttls", "tls", "none")


class AlertConfigError(ValueError):
    """A `notify:`, `teams:` or `oncall:` setting that cannot be used; names the key."""


@dataclass(frozen=True)
class Message:
    channel: str
    recipient: str
    subject: str
    body: str
    delivery_id: str
    alerts: tuple[dict[str, Any], ...]  # what each alert of the message was about


@dataclass(frozen=True)
class Channel:
    name: str
    type: str
    send: Callable[[Message], None]
    to: tuple[str, ...] = ()
    fallback: str | None = None
    templates: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    quiet: bool = False
    digest: int = 0  # seconds; 0: each alert on its own
    urgent_events: frozenset[str] = frozenset({"escalation"})
    urgent_priorities: frozenset[str] = frozenset({"urgent"})


@dataclass
class Delivery:
    """One message to send: its outbox rows, and when it may go."""

    channel: str
    recipient: str
    items: list[dict[str, Any]]
    ready_at: datetime
    problems: list[str] = field(default_factory=list)
    error: str = ""  # why it cannot be sent (its recipient cannot be resolved)

    @property
    def ids(self) -> list[int]:
        return [item["id"] for item in self.items]


@dataclass(frozen=True)
class Rotation:
    schedule: tuple[str, ...]
    start: datetime
    every: int  # seconds each person is on call

    def at(self, instant: datetime) -> str:
        turn = int((instant - self.start).total_seconds() // self.every)
        return self.schedule[turn % len(self.schedule)]


Directory = Callable[[], Mapping[str, Mapping[str, str]]]


class Alerts:
    """What the sync loop sends the outbox through: the plain `webhooks:` and the
    `notify:` channels, by name."""

    def __init__(self, webhooks: Webhooks, channels: Mapping[str, Channel],
                 managers: Mapping[str, str] | None = None,
                 oncall: Mapping[str, Rotation] | None = None,
                 directory: Directory | None = None):
        self.webhooks = webhooks
        self.channels = channels
        self.managers = managers or {}
        self.oncall = oncall or {}
        self.directory = directory
        self._agents: Mapping[str, Mapping[str, str]] | None = None

    @classmethod
    def from_config(cls, webhooks: Any, notify: Any, teams: Any = None, oncall: Any = None,
                    directory: Directory | None = None) -> Alerts:
        """ValueError naming the key for any setting that cannot be used."""
        from sla_sync.connector.webhook import Webhooks  # HTTP loads only when alerts exist
        plain = Webhooks.from_settings(webhooks)
        if notify is not None and not isinstance(notify, dict):
            raise AlertConfigError("notify: expected a mapping of channel names to settings")
        rotations = _rotations(oncall)
        managers = _managers(teams)
        channels = {}
        for name, spec in (notify or {}).items():
            if name in plain.names:
                raise AlertConfigError(f"notify.{name}: also defined under `webhooks:`; "
                                       "give each a name of its own")
            channels[name] = _channel(str(name), spec, rotations)
        return cls(plain, channels, managers, rotations, directory)

    @property
    def names(self) -> frozenset[str]:
        return self.webhooks.names | frozenset(self.channels)

    def __call__(self, webhook: str, text: str, context: Mapping[str, Any]) -> None:
        """A plain webhook post (the Notifier of sync_run)."""
        self.webhooks(webhook, text, context)

    # -- which messages, when --------------------------------------------------------------

    def fan_out(self, items: Iterable[dict[str, Any]]) -> dict[int, list[str]]:
        """The rows still to be split into one row per recipient: id -> recipients."""
        return {item["id"]: list(self.channels[item["webhook"]].to or ("",))
                for item in items
                if item["recipient"] is None and item["webhook"] in self.channels}

    def deliveries(self, items: Iterable[dict[str, Any]], now: datetime) -> list[Delivery]:
        """The messages the rows make: one per row, or one per digest interval and
        recipient; each with the instant it may be sent at."""
        grouped: dict[tuple[Any, ...], Delivery] = {}
        for item in items:
            channel = self.channels.get(item["webhook"])
            # A run whose `now` is before the one that raised it does not hold it back.
            created = min(parse_instant(item["created_at"], "created_at"), now)
            if channel is None:  # a plain webhook, or a channel no longer configured
                grouped[("row", item["id"])] = Delivery(item["webhook"], "", [item], created)
                continue
            try:
                recipient, problem = self.resolve(channel, item.get("recipient") or "",
                                                  item.get("data") or {}, now)
            except ValueError as exc:  # sending it fails, reported, and it stays
                grouped[("row", item["id"])] = Delivery(channel.name, "", [item], created,
                                                        error=str(exc))
                continue
            ready = created
            data = item.get("data") or {}
            if channel.quiet and not self._urgent(channel, data) and data.get("opens_at"):
                ready = max(ready, parse_instant(data["opens_at"], "opens_at"))
            key: tuple[Any, ...] = ("row", item["id"])
            if channel.digest:
                window = int(created.timestamp()) // channel.digest
                ready = max(ready, datetime.fromtimestamp((window + 1) * channel.digest, UTC))
                key = (channel.name, recipient, window)
            delivery = grouped.setdefault(key, Delivery(channel.name, recipient, [], ready))
            delivery.items.append(item)
            delivery.ready_at = max(delivery.ready_at, ready)
            if problem:
                delivery.problems.append(f"record {item['record_id']!r}: {problem}")
        return list(grouped.values())

    def _urgent(self, channel: Channel, data: Mapping[str, Any]) -> bool:
        return (data.get("event") in channel.urgent_events
                or (data.get("values") or {}).get("priority") in channel.urgent_priorities)

    def resolve(self, channel: Channel, spec: str, data: Mapping[str, Any],
                now: datetime) -> tuple[str, str]:
        """(address, why it fell back or ""): a recipient spec resolved at `now`."""
        values = data.get("values") or {}
        if not spec.startswith("{"):
            return spec, ""
        name = spec.strip("{}")
        found = ""
        if name == "assignee":
            agent = self.agents().get(str(values.get("assignee") or ""), {})
            found = agent.get("email", "")
            why = (f"assignee {values.get('assignee')!r} has no address in the helpdesk's "
                   "directory" if values.get("assignee") else "the record has no assignee")
        elif name == "manager":
            found = self.managers.get(str(values.get("group") or ""), "")
            why = f"group {values.get('group')!r} has no manager under `teams:`"
        else:
            rotation = self.oncall.get(_rotation_name(name))
            found = rotation.at(now) if rotation is not None else ""
            why = f"no rotation {_rotation_name(name)!r} under `oncall:` (any more)"
        if found:
            return found, ""
        if channel.fallback is None:  # a row fanned out under an earlier config
            raise ValueError(f"{why}, and channel {channel.name!r} has no fallback")
        return channel.fallback, f"{why}; sent to the fallback {channel.fallback!r}"

    def agents(self) -> Mapping[str, Mapping[str, str]]:
        if self._agents is None:
            self._agents = self.directory() if self.directory is not None else {}
        return self._agents

    # -- sending ---------------------------------------------------------------------------

    def send(self, delivery: Delivery, delivery_id: str) -> None:
        """Send one delivery; ConnectorError when it failed (it stays for the next run)."""
        if delivery.error:
            raise ValueError(delivery.error)
        channel = self.channels.get(delivery.channel)
        if channel is None:
            item = delivery.items[0]
            self.webhooks(item["webhook"], item["text"], {**item, "delivery_id": delivery_id})
            return
        rendered = [self.render(channel, item, delivery.recipient) for item in delivery.items]
        if len(rendered) == 1:
            subject, body = rendered[0]
        else:
            subject = f"{len(rendered)} SLA alerts"
            body = "\n\n".join(f"== {s}\n{b}" for s, b in rendered)
        alerts = tuple({"record_id": item["record_id"], "rule": item["rule"],
                        "event": (item.get("data") or {}).get("event", "warning"),
                        "subject": s, "body": b}
                       for item, (s, b) in zip(delivery.items, rendered, strict=True))
        channel.send(Message(channel.name, delivery.recipient, subject, body, delivery_id,
                             alerts))

    def render(self, channel: Channel, item: Mapping[str, Any],
               recipient: str) -> tuple[str, str]:
        data = item.get("data") or {}
        event = data.get("event", "warning")
        values = dict(data.get("values") or {})
        zone = self._zone(recipient, data)
        for key, value in list(values.items()):
            if key.endswith("_due_at") and value:
                values[key] = parse_instant(value, key).astimezone(zone)\
                    .isoformat(timespec="minutes")
        values.update(rule=item["rule"], event=event, text=item["text"], recipient=recipient)
        subject, body = channel.templates.get(event) or DEFAULT_TEMPLATES[event]
        return render_note(subject, values), render_note(body, values)

    def _zone(self, recipient: str, data: Mapping[str, Any]) -> ZoneInfo:
        for agent in self.agents().values():
            if agent.get("email") == recipient and agent.get("timezone"):
                try:
                    return ZoneInfo(agent["timezone"])
                except (ZoneInfoNotFoundError, ValueError):
                    break  # a directory's unknown zone: the calendar's
        return ZoneInfo(data.get("timezone") or "UTC")


# -- the config -------------------------------------------------------------------------------

def _channel(name: str, spec: Any, rotations: Mapping[str, Rotation]) -> Channel:
    where = f"notify.{name}"
    if not isinstance(spec, dict) or spec.get("type") not in TYPES:
        raise AlertConfigError(f"{where}.type: expected one of {', '.join(TYPES)}")
    kind = spec["type"]
    known = (*COMMON_KEYS, *TYPE_KEYS[kind])
    unknown = sorted(str(key) for key in spec if key not in known)
    if unknown:
        raise AlertConfigError(f"{where}.{unknown[0]}: unknown key for a {kind} channel "
                               f"(known: {', '.join(known)})")
    to, fallback = _recipients(where, spec, kind, rotations)
    digest, quiet, events, priorities = _timing(where, spec)
    return Channel(name, kind, _sender(where, kind, spec), tuple(to), fallback,
                   _templates(where, spec.get("templates")), quiet == "calendar", digest,
                   frozenset(events), frozenset(priorities))


def _recipients(where: str, spec: Mapping[str, Any], kind: str,
                rotations: Mapping[str, Rotation]) -> tuple[list[str], str | None]:
    """A channel's `to` and `fallback`."""
    to = spec.get("to", [])
    to = [to] if isinstance(to, str) else to
    if not isinstance(to, list) or not all(isinstance(t, str) and t for t in to):
        raise AlertConfigError(f"{where}.to: expected an address or a list of addresses")
    if kind == "email" and not to:
        raise AlertConfigError(f"{where}.to: an email channel needs its recipients")
    for position, target in enumerate(to):
        _check_recipient(f"{where}.to[{position}]", target, kind, rotations)
    fallback = spec.get("fallback")
    if fallback is not None:
        if not isinstance(fallback, str) or fallback.startswith("{"):
            raise AlertConfigError(f"{where}.fallback: expected a fixed address")
        _check_recipient(f"{where}.fallback", fallback, kind, rotations)
    if fallback is None and any(t in ("{assignee}", "{manager}") for t in to):
        raise AlertConfigError(f"{where}.fallback: required when `to` names {{assignee}} or "
                               "{manager} (an alert whose recipient cannot be found goes there)")
    return to, fallback


def _timing(where: str, spec: Mapping[str, Any]) -> tuple[int, Any, list[str], list[str]]:
    """A channel's `digest` (seconds), `quiet` and the events and priorities it sends at once."""
    digest = 0
    if spec.get("digest") is not None:
        try:
            digest = parse_duration(spec["digest"])
        except ValueError as exc:
            raise AlertConfigError(f"{where}.digest: {exc}") from None
        if digest < 60:
            raise AlertConfigError(f"{where}.digest: expected at least 1m")
    quiet = spec.get("quiet")
    if quiet not in (None, "calendar"):
        raise AlertConfigError(f"{where}.quiet: expected `calendar` (held while the record's "
                               "calendar is closed)")
    urgent = spec.get("urgent", {})
    if not isinstance(urgent, dict) or set(urgent) - {"events", "priorities"}:
        raise AlertConfigError(f"{where}.urgent: expected {{events: [...], priorities: [...]}}")
    events = urgent.get("events", ["escalation"])
    if not isinstance(events, list) or any(e not in EVENTS for e in events):
        raise AlertConfigError(f"{where}.urgent.events: expected a list of "
                               f"{', '.join(EVENTS)}")
    priorities = urgent.get("priorities", ["urgent"])
    if not isinstance(priorities, list) or not all(isinstance(p, str) for p in priorities):
        raise AlertConfigError(f"{where}.urgent.priorities: expected a list of priorities")
    return digest, quiet, events, priorities

def _check_recipient(where: str, target: str, kind: str,
                     rotations: Mapping[str, Rotation]) -> None:
    from email.utils import parseaddr  # here: email.utils loads socket
    if target.startswith("{"):
        name = target.strip("{}")
        if name == "oncall" or name.startswith("oncall:"):
            rotation = _rotation_name(name)
            if rotation not in rotations:
                raise AlertConfigError(f"{where}: no rotation {rotation!r} under `oncall:`")
        elif name not in ("assignee", "manager") or target != "{" + name + "}":
            raise AlertConfigError(f"{where}: unknown recipient {target!r} (known: {{assignee}}, "
                                   "{manager}, {oncall:NAME}, or a fixed address)")
    elif kind == "email" and "@" not in parseaddr(target)[1]:
        raise AlertConfigError(f"{where}: {target!r} is not an email address")


def _rotation_name(name: str) -> str:
    """`oncall:NAME` -> NAME; a bare `oncall` is the rotation called `default`."""
    return name.removeprefix("oncall").removeprefix(":") or "default"


def _templates(where: str, value: Any) -> dict[str, tuple[str, str]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise AlertConfigError(f"{where}.templates: expected {{EVENT: {{subject, body}}}}")
    found = {}
    for event, spec in value.items():
        path = f"{where}.templates.{event}"
        if event not in EVENTS:
            raise AlertConfigError(f"{path}: expected one of {', '.join(EVENTS)}")
        if not isinstance(spec, dict) or set(spec) - {"subject", "body"}:
            raise AlertConfigError(f"{path}: expected {{subject: ..., body: ...}}")
        default = DEFAULT_TEMPLATES[event]
        subject, body = spec.get("subject", default[0]), spec.get("body", default[1])
        for key, text in (("subject", subject), ("body", body)):
            problem = template_problem(text)
            if problem:
                raise AlertConfigError(f"{path}.{key}: {problem}")
        found[event] = (subject, body)
    return found


def template_problem(text: Any) -> str:
    """Why a template cannot be rendered, or "" (only plain `{name}` placeholders)."""
    if not isinstance(text, str):
        return "expected text"
    allowed = (*PLACEHOLDERS, *EXTRA_PLACEHOLDERS)
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        return f"malformed template ({exc}); write {{{{ and }}}} for braces"
    for _, name, spec, conversion in parsed:
        if name is not None and (spec or conversion or name not in allowed):
            return (f"unknown placeholder {{{name}}} (allowed: "
                    + ", ".join("{" + p + "}" for p in allowed) + ")")
    return ""


def _managers(teams: Any) -> dict[str, str]:
    if teams is None:
        return {}
    if not isinstance(teams, dict):
        raise AlertConfigError("teams: expected {GROUP: {manager: ADDRESS}}")
    found = {}
    for group, spec in teams.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("manager"), str) \
                or set(spec) - {"manager"}:
            raise AlertConfigError(f"teams.{group}: expected {{manager: ADDRESS}}")
        found[str(group)] = spec["manager"]
    return found


def _rotations(oncall: Any) -> dict[str, Rotation]:
    if oncall is None:
        return {}
    if not isinstance(oncall, dict):
        raise AlertConfigError("oncall: expected {NAME: {schedule: [...], start: ISO, "
                               "every: DURATION}}")
    found = {}
    for name, spec in oncall.items():
        where = f"oncall.{name}"
        if not isinstance(spec, dict) or set(spec) - {"schedule", "start", "every"}:
            raise AlertConfigError(f"{where}: expected {{schedule: [...], start: ISO, "
                                   "every: DURATION}")
        schedule = spec.get("schedule")
        if not isinstance(schedule, list) or not schedule or \
                not all(isinstance(s, str) and s and not s.startswith("{") for s in schedule):
            raise AlertConfigError(f"{where}.schedule: expected a list of addresses, in turn")
        try:
            start = parse_instant(str(spec.get("start")), f"{where}.start")
        except ValueError as exc:
            raise AlertConfigError(str(exc)) from None
        try:
            every = parse_duration(spec.get("every", "7d"))
        except ValueError as exc:
            raise AlertConfigError(f"{where}.every: {exc}") from None
        if every <= 0:
            raise AlertConfigError(f"{where}.every: expected a positive duration")
        found[str(name)] = Rotation(tuple(schedule), start, every)
    return found


def _sender(where: str, kind: str, spec: Mapping[str, Any]) -> Callable[[Message], None]:
    if kind == "email":
        return _email_sender(where, spec)
    from sla_sync.connector.webhook import post, webhook_client
    client, url = webhook_client(where, spec.get("url"))
    secret = spec.get("secret")
    if kind == "webhook" and secret is not None and (not isinstance(secret, str) or not secret):
        raise AlertConfigError(f"{where}.secret: expected a text (from the environment: "
                               "secret: ${WEBHOOK_SECRET})")
    shape = {"slack": slack_body, "teams": teams_body, "webhook": webhook_body}[kind]
    name = where.removeprefix("notify.")

    def send(message: Message) -> None:
        body = shape(message)
        headers = {"Idempotency-Key": message.delivery_id}
        if secret:
            headers[SIGNATURE_HEADER] = "sha256=" + sign(secret, body)
        post(name, client, url, body, headers)
    return send


def sign(secret: str, body: Any) -> str:
    """HMAC-SHA256 of the exact bytes requests sends for this JSON body."""
    import requests.compat

    encoder: Any = requests.compat.json  # type: ignore[attr-defined]  # what requests uses
    raw = encoder.dumps(body, allow_nan=False)
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    return hmac.new(secret.encode("utf-8"), data, hashlib.sha256).hexdigest()


def slack_body(message: Message) -> dict[str, Any]:
    """Block Kit: a header with the subject, the body as a section (`text` is the
    notification's plain fallback)."""
    return {"text": f"{message.subject}\n{message.body}", "blocks": [
        {"type": "header", "text": {"type": "plain_text", "text": message.subject[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": message.body[:3000]}}]}


def teams_body(message: Message) -> dict[str, Any]:
    """A Teams workflow's 'post to a channel when a webhook request is received' takes a
    message with an Adaptive Card attachment."""
    card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard", "version": "1.4", "body": [
                {"type": "TextBlock", "text": message.subject, "weight": "Bolder",
                 "size": "Medium", "wrap": True},
                {"type": "TextBlock", "text": message.body, "wrap": True}]}
    return {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
         "content": card}]}


def webhook_body(message: Message) -> dict[str, Any]:
    return {"id": message.delivery_id, "channel": message.channel, "to": message.recipient,
            "subject": message.subject, "body": message.body, "alerts": list(message.alerts)}


def _email_sender(where: str, spec: Mapping[str, Any]) -> Callable[[Message], None]:
    # Imported here: smtplib and ssl cost a plain sync of the file helpdesk 70 ms.
    import smtplib
    import ssl
    from email.message import EmailMessage
    from email.utils import format_datetime, parseaddr

    from sla_sync.connector.http import is_loopback  # loaded with the channels' webhooks anyway
    host, port = spec.get("host"), spec.get("port")
    security = spec.get("security", "starttls")
    if not isinstance(host, str) or not host:
        raise AlertConfigError(f"{where}.host: expected the SMTP server's host name")
    if security not in SECURITY:
        raise AlertConfigError(f"{where}.security: expected one of {', '.join(SECURITY)}")
    if security == "none" and not is_loopback(host):
        raise AlertConfigError(f"{where}.security: `none` (no TLS) only to a loopback host; "
                               "use starttls or tls")
    port = port if port is not None else {"tls": 465, "starttls": 587, "none": 25}[security]
    if not isinstance(port, int) or not 0 < port < 65536:
        raise AlertConfigError(f"{where}.port: expected a number from 1 to 65535")
    sender = spec.get("from")
    if not isinstance(sender, str) or "@" not in parseaddr(sender)[1]:
        raise AlertConfigError(f"{where}.from: expected the sender's email address")
    user, password = spec.get("user"), spec.get("password")
    if (user is None) != (password is None) or \
            any(v is not None and not isinstance(v, str) for v in (user, password)):
        raise AlertConfigError(f"{where}.user: give user and password together (from the "
                               "environment: password: ${SMTP_PASSWORD})")
    name = where.removeprefix("notify.")
    domain = parseaddr(sender)[1].rpartition("@")[2]

    def send(message: Message) -> None:
        mail = EmailMessage()
        mail["From"] = sender
        mail["To"] = message.recipient
        mail["Subject"] = " ".join(message.subject.splitlines())  # one header line
        # The delivery id: a repeat after a crash between sending and recording it carries
        # the same Message-ID, which mail systems and people can recognise.
        mail["Message-ID"] = f"<{message.delivery_id}@{domain}>"
        mail["Date"] = format_datetime(datetime.now(UTC))
        mail.set_content(message.body)
        try:
            smtp: smtplib.SMTP
            if security == "tls":
                smtp = smtplib.SMTP_SSL(host, port, timeout=30,
                                        context=ssl.create_default_context())
            else:
                smtp = smtplib.SMTP(host, port, timeout=30)
            with smtp:
                if security == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                if user is not None and password is not None:
                    smtp.login(user, password)
                smtp.send_message(mail)
        except (smtplib.SMTPException, OSError) as exc:
            # Never the password; smtplib's own messages hold the server's answer only.
            raise ConnectorError(f"email {name!r}: sending to {message.recipient} failed "
                                 f"({type(exc).__name__}: {_short(exc)})",
                                 retriable=True) from None
    return send


def _short(exc: Exception) -> str:
    import smtplib
    if isinstance(exc, smtplib.SMTPResponseException):
        error = exc.smtp_error
        text = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
        return f"{exc.smtp_code} {text[:200]}"
    return str(exc)[:200]


def alert_data(event: str, values: Mapping[str, Any], timezone: str,
               opens_at: datetime | None) -> dict[str, Any]:
    """What an outbox row keeps for its channel to render and time: JSON-ready."""
    keep = {key: value for key, value in values.items()
            if key in PLACEHOLDERS and isinstance(value, (str, int, float, bool))}
    return {"event": event, "values": keep, "timezone": timezone,
            "opens_at": opens_at.isoformat() if opens_at is not None else None}


def next_opening(is_open: Callable[[datetime], bool],
                 add_business_seconds: Callable[[datetime, float], datetime],
                 now: datetime) -> datetime | None:
    """None when the calendar is open at `now`, else the instant it opens."""
    if is_open(now):
        return None
    return add_business_seconds(now, 1) - timedelta(seconds=1)
