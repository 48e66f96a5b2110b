"""Generate the demo data of sla-sync's embedded, file-backed helpdesk.

Writes ``examples/helpdesk.json``: ``{"records": [...]}`` with 160 support
tickets (``kind: "ticket"``) and 40 sales leads (``kind: "lead"``). The data is
anchored at the demo "now" of 2026-03-02T12:00:00+00:00 (a Monday): records are
created between 2026-02-16 and 2026-03-02 11:58 UTC, skewed toward the last two
days, so that a 24x7 SLA policy sees a realistic mix of tickets inside their
first-response target, close to it (75-99%), breached, solved in time and
solved late. No timestamp is after "now"; about 15% of records are written with
the Europe/Berlin winter offset (+01:00).

The output is deterministic (fixed seed, no wall-clock reads). Regenerate with:

    python examples/generate_helpdesk.py              # -> examples/helpdesk.json
    python examples/generate_helpdesk.py --out PATH   # write elsewhere
"""

import argparse
import json
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
MAX_AGE = 14 * 1440 + 12 * 60  # minutes back to 2026-02-16T00:00Z
UTC, BERLIN = UTC, timezone(timedelta(hours=1))
# First-response targets in minutes (24x7), by tier and priority.
FR_TARGET = {
    "vip": {"urgent": 30, "high": 30, "normal": 120, "low": 240},
    "gold": {"urgent": 60, "high": 60, "normal": 240, "low": 480},
    "standard": {"urgent": 240, "high": 240, "normal": 480, "low": 1440},
}
# Reporting target for not-yet-answered tickets (the demo's urgent/high row).
FR_SHAPE = {"vip": 30, "gold": 60, "standard": 240}
RES_TARGET = {"vip": 240, "gold": 480, "standard": 1440}  # x2 normal, x3 low
RES_FACTOR = {"urgent": 1, "high": 1, "normal": 2, "low": 3}
GAPS = {"open": (30, 900), "pending": (20, 600), "hold": (30, 600), "closed": (1440, 5760)}

TICKET_SUBJECTS = {
    "account": [
        "Password reset link not arriving",
        "Locked out after 2FA phone change",
        "SSO login loops back to sign-in page",
        "How do I add a new admin user?",
    ],
    "billing": [
        "Question about invoice INV-{n}",
        "Refund request for duplicate charge",
        "Card declined on renewal",
        "Change plan from monthly to annual",
        "VAT number missing on invoice",
    ],
    "outage": [
        "Dashboard not loading (502 Bad Gateway)",
        "Outage: sync stopped since this morning",
        "Email notifications delayed by hours",
        "Reports page extremely slow",
    ],
    "api": [
        "API error 500 on POST /v2/orders",
        "Webhook deliveries failing with timeout",
        "API rate limit (429) hit unexpectedly",
        "OAuth token refresh returns invalid_grant",
    ],
    "howto": [
        "Export tickets to CSV",
        "Configure business hours for team",
        "Bulk import contacts from spreadsheet",
        "Set up email forwarding",
    ],
}
CATEGORY_TAGS = {
    "account": ["login"],
    "billing": ["billing"],
    "outage": ["outage"],
    "api": ["api"],
    "howto": ["how-to"],
}
LEAD_SUBJECTS = [
    "Demo request",
    "Pricing question for {n} seats",
    "Enterprise plan inquiry",
    "Trial extension request",
    "Volume discount for nonprofits",
    "Webinar follow-up: SLA automation",
    "Migration from legacy helpdesk",
    "Partnership inquiry",
]
AGENTS = {
    "support": ["Anna Schmidt", "Ben Carter", "Chloe Martin", "Diego Alvarez", "Emma Novak"],
    "billing": ["Farah Khan", "George Lee"],
    "tier2": ["Hiro Tanaka", "Ines Duarte"],
    "sales": ["Jonas Weber", "Kara Brooks", "Liam O'Neill"],
}
TICKET_NOTES = [
    "Asked customer for a HAR file and browser version.",
    "Checked logs, no errors on our side so far.",
    "Customer confirmed workaround works for now.",
    "Refund approved by finance, processing in 3-5 days.",
    "Linked to known issue, waiting for engineering fix.",
]
LEAD_NOTES = [
    "Called, left voicemail.",
    "Sent pricing sheet and case studies.",
    "Qualified: ~50 seats, budget approved for Q2.",
    "Disqualified: looking for a free tool only.",
    "Booked demo for Thursday.",
]
COMPANY_A = ["Northwind", "Bluefin", "Acme", "Helio", "Granite", "Lumen", "Vertex", "Orchard"]
COMPANY_B = ["Logistics", "Health", "Retail GmbH", "Labs", "Systems", "Foods", "Travel", "Media"]

# Ticket scenarios: (name, count, status changes after the first response).
TICKET_PLAN = [
    ("new", 24, None),
    ("waiting", 6, None),
    ("open", 22, [["open"], ["open"], ["open", "pending", "open"]]),
    ("pending", 14, [["pending"], ["open", "pending"], ["open", "pending", "open", "pending"]]),
    ("hold", 6, [["open", "hold"]]),
    ("escalated", 6, [["open"], ["open", "hold"], ["open", "pending"]]),
    ("reopened", 4, [["open", "solved", "open"]]),
    (
        "solved",
        38,
        [["open", "solved"], ["open", "solved"], ["solved"], ["open", "pending", "open", "solved"]],
    ),
    (
        "closed",
        40,
        [
            ["open", "solved", "closed"],
            ["solved", "closed"],
            ["open", "pending", "open", "solved", "closed"],
        ],
    ),
]
LEAD_PLAN = [
    ("fresh", 10, None),
    ("new", 4, None),
    ("open", 10, [["open"]]),
    ("solved", 8, [["open", "solved"]]),
    ("closed", 8, [["open", "solved", "closed"]]),
]


def iso(dt, tz):
    return dt.astimezone(tz).isoformat()


def shuffled(rng, counts):
    items = [value for value, n in counts for _ in range(n)]
    rng.shuffle(items)
    return items


def unanswered_age(rng, bucket, target):
    """Minutes since creation putting a not-yet-answered record in `bucket`."""
    lo, hi = {"inside": (0.1, 0.7), "warning": (0.76, 0.98), "breached": (1.1, 4.0)}[bucket]
    return max(3, round(target * rng.uniform(lo, hi)))


def timeline(rng, steps, fr_target, res_target):
    """Return (age, first_response_offset, [(offset, status), ...]) in minutes."""
    while True:
        late = rng.random() < 0.15
        fr = max(
            1, round(fr_target * (rng.uniform(1.05, 2.5) if late else rng.uniform(0.15, 0.95)))
        )
        history, t = [(fr, steps[0])], fr
        for status in steps[1:]:
            if status == "solved":
                late = rng.random() < 0.2
                t = max(
                    t + 10,
                    round(res_target * (rng.uniform(1.1, 2.5) if late else rng.uniform(0.2, 0.9))),
                )
            else:
                t += rng.randint(*GAPS[status])
            history.append((t, status))
        recent = rng.random() < 0.6
        if steps[-1] in ("open", "pending", "hold"):  # minutes since the last change
            age = t + (rng.randint(2, 600) if recent else rng.randint(600, 4320))
        else:  # done: anywhere in the window, skewed toward the last ~2 days
            age = t + (rng.randint(1, 2880) if recent else rng.randint(1, MAX_AGE))
        if age <= MAX_AGE:
            return age, fr, history


def make_record(rng, kind, tier, priority, channel, subject, age, fr, history, region):
    """Assemble one record; offsets are minutes after creation."""
    tz = BERLIN if region == "emea" and rng.random() < 0.4 else UTC
    created = NOW - timedelta(minutes=age)
    at = lambda off: iso(created + timedelta(minutes=off), tz)  # noqa: E731
    solved = [off for off, st in history if st == "solved"]
    status = history[-1][1] if history else "new"
    return {
        "id": "",
        "kind": kind,
        "subject": subject,
        "status": status,
        "priority": priority,
        "tier": tier,
        "channel": channel,
        "source": "",
        "group": "",
        "assignee": "",
        "tags": [],
        "created_at": at(0),
        "updated_at": at(max([0] + [off for off, _ in history])),
        "first_response_at": None if fr is None else at(fr),
        "solved_at": at(solved[-1]) if solved and status in ("solved", "closed") else None,
        "status_history": [{"at": at(off), "status": st} for off, st in history],
        "escalation_level": 0,
        "notes": [],
        "custom": {"region": region, "account_id": f"ACC-{rng.randint(100, 99999)}"},
        "_at": at,
        "_last": max([0] + [off for off, _ in history]),
    }


def add_note(rng, rec, text, after=1):
    rec["notes"].append({"at": rec["_at"](rng.randint(after, rec["_last"])), "text": text})


def make_ticket(rng, scenario, steps, tier, bucket, vip_tags):
    priority = rng.choices(["urgent", "high", "normal", "low"], [8, 22, 55, 15])[0]
    category = rng.choices(list(TICKET_SUBJECTS), [20, 22, 14, 16, 28])[0]
    if scenario == "escalated":
        category = rng.choice(["outage", "api"])
    subject = rng.choice(TICKET_SUBJECTS[category]).format(n=rng.randint(24000, 26999))
    channel = rng.choices(["email", "web", "chat", "phone"], [40, 30, 18, 12])[0]
    region = rng.choices(["emea", "amer", "apac"], [35, 45, 20])[0]
    fr_target = FR_TARGET[tier][priority]
    if steps is None:  # not answered yet: age shaped against the report target
        age, fr = unanswered_age(rng, bucket, FR_SHAPE[tier]), None
        history = [(rng.randint(1, min(age - 1, 30)), "open")] if scenario == "waiting" else []
    else:
        age, fr, history = timeline(
            rng, rng.choice(steps), fr_target, RES_TARGET[tier] * RES_FACTOR[priority]
        )
    rec = make_record(rng, "ticket", tier, priority, channel, subject, age, fr, history, region)
    rec["group"] = (
        "tier2" if scenario == "escalated" else "billing" if category == "billing" else "support"
    )
    if scenario != "new" or rng.random() < 0.15:
        rec["assignee"] = rng.choice(AGENTS[rec["group"]])
    rec["tags"] = list(CATEGORY_TAGS[category])
    if category == "billing" and "Refund" in subject:
        rec["tags"].append("refund")
    if tier == "vip" and vip_tags[0] > 0:
        vip_tags[0] -= 1
        rec["tags"].append("vip")
    if scenario == "escalated":
        rec["escalation_level"] = 1
        add_note(
            rng,
            rec,
            "Escalated to tier2: reproducible on customer's account, needs engineering.",
            fr,
        )
    elif history and rng.random() < 0.25:
        add_note(rng, rec, rng.choice(TICKET_NOTES))
    return rec


def make_lead(rng, scenario, steps, tier, source):
    priority = rng.choices(["normal", "high", "low"], [60, 35, 5])[0]
    subject = rng.choice(LEAD_SUBJECTS).format(n=rng.choice([10, 25, 50, 120]))
    channel = (
        "web" if scenario == "fresh" else rng.choices(["web", "email", "phone"], [55, 30, 15])[0]
    )
    region = rng.choices(["emea", "amer", "apac"], [35, 45, 20])[0]
    if steps is None:
        age, fr, history = (
            (rng.randint(2, 40) if scenario == "fresh" else rng.randint(120, 1200)),
            None,
            [],
        )
    else:
        fr_target = FR_TARGET[tier][priority]
        age, fr, history = timeline(rng, rng.choice(steps), fr_target, 3 * 1440)
    rec = make_record(rng, "lead", tier, priority, channel, subject, age, fr, history, region)
    rec.update(source=source, group="sales")
    rec["assignee"] = rng.choice(AGENTS["sales"]) if history else ""
    rec["tags"] = {"campaign": ["newsletter"], "event": ["event"], "referral": ["referral"]}.get(
        source, []
    )
    rec["custom"]["company"] = f"{rng.choice(COMPANY_A)} {rng.choice(COMPANY_B)}"
    if history:
        note = rng.choice(LEAD_NOTES[:2] + LEAD_NOTES[4:])
        if rec["status"] in ("solved", "closed"):
            qualified = rng.random() < 0.6
            rec["tags"].append("qualified" if qualified else "disqualified")
            note = LEAD_NOTES[2] if qualified else LEAD_NOTES[3]
        if rec["status"] != "open" or rng.random() < 0.5:
            add_note(rng, rec, note)
    return rec


def number(records, prefix, start):
    records.sort(key=lambda r: r["_created"])  # stable: ids follow creation time
    for i, rec in enumerate(records):
        rec["id"] = f"{prefix}-{start + i}"
        for key in ("_at", "_last", "_created"):
            del rec[key]
    return records


def generate(scale=1, seed=20260302):
    """The demo desk; `scale` multiplies every count (200 * scale records, the same mix),
    for benchmarks. scale=1 with the default seed is the committed demo, byte for byte."""
    rng = random.Random(seed)

    def scaled(counts):
        return [(value, n * scale) for value, n in counts]

    tiers = shuffled(rng, scaled([("vip", 16), ("gold", 40), ("standard", 104)]))
    buckets = shuffled(rng, scaled([("inside", 11), ("warning", 9), ("breached", 10)]))
    tickets, vip_tags = [], [3 * scale]
    for scenario, count, steps in TICKET_PLAN:
        for _ in range(count * scale):
            bucket = buckets.pop() if steps is None else None
            tickets.append(make_ticket(rng, scenario, steps, tiers.pop(), bucket, vip_tags))
    tiers = shuffled(rng, scaled([("vip", 4), ("gold", 10), ("standard", 26)]))
    sources = shuffled(rng, scaled([("campaign", 4), ("website", 12), ("referral", 8),
                                    ("event", 6)]))
    leads = []
    for scenario, count, steps in LEAD_PLAN:
        for _ in range(count * scale):
            source = "campaign" if scenario == "fresh" else sources.pop()
            leads.append(make_lead(rng, scenario, steps, tiers.pop(), source))
    for rec in tickets + leads:
        rec["_created"] = datetime.fromisoformat(rec["created_at"])
    return {"records": number(tickets, "T", 1001) + number(leads, "L", 2001)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("helpdesk.json"))
    args = parser.parse_args()
    with open(args.out, "w", encoding="utf-8", newline="\n") as fh:
        json.dump(generate(), fh, indent=2, sort_keys=False, ensure_ascii=False)
        fh.write("\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
